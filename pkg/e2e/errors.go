package e2e

import "errors"

// The errors of the package. Every error it returns wraps exactly one of
// them (with %w), so callers and tests tell failures apart with errors.Is.
// docs/e2e.md lists which check yields which, in the order the checks run.
var (
	// ErrMalformed: the bytes are not a canonical encoding — truncated,
	// trailing bytes, a length or value out of range, stanzas out of order
	// or duplicated, a field that breaks a structural rule. Also a value
	// the caller passed to Seal that the format cannot carry.
	ErrMalformed = errors.New("e2e: malformed")
	// ErrUnsupportedFormat: the format version byte is not FormatVersion
	// (for example a later ratchet format this code does not know).
	ErrUnsupportedFormat = errors.New("e2e: unsupported format version")
	// ErrUnsupportedSuite: the suite code is neither SuiteGCM nor SuiteCBC.
	ErrUnsupportedSuite = errors.New("e2e: unsupported suite")
	// ErrTooManyRecipients: a key envelope announces more than
	// MaxRecipients stanzas, or a caller asked for more. Checked while
	// parsing, before any signature check or unwrap.
	ErrTooManyRecipients = errors.New("e2e: too many recipients")
	// ErrBadDevice: a Device, LocalDevice or device list the caller gave is
	// unusable: an invalid user name, a duplicate device, devices of the
	// wrong users, none at all.
	ErrBadDevice = errors.New("e2e: bad device")
	// ErrBadKey: a device key breaks the RSA key rule of pkg/protocol
	// (PKIX DER, RSA, e = 65537, 2048, 3072 or 4096 bits).
	ErrBadKey = errors.New("e2e: bad key")
	// ErrWrongDevice: the Device the caller supplied to verify with is not
	// the device the envelope or record names as its creator or sender.
	ErrWrongDevice = errors.New("e2e: supplied device is not the one named")
	// ErrBadSignature: the RSA-PSS signature does not verify with the
	// creator's or sender's signing key.
	ErrBadSignature = errors.New("e2e: bad signature")
	// ErrWrongConversation: a signed envelope or record belongs to another
	// conversation (another id, or another pair of users) than the one the
	// caller opens.
	ErrWrongConversation = errors.New("e2e: wrong conversation")
	// ErrNotARecipient: a key envelope has no stanza for the opening
	// device, or a record's sender and recipient are not the conversation's
	// two users.
	ErrNotARecipient = errors.New("e2e: not a recipient")
	// ErrUnwrap: the opening device's own stanza does not decrypt to a
	// conversation key (RSA-OAEP failed or gave other than 32 bytes). No
	// more detail is given (no padding oracle).
	ErrUnwrap = errors.New("e2e: cannot unwrap the conversation key")
	// ErrKeyConflict: a Keyring already holds a different key for the same
	// key version.
	ErrKeyConflict = errors.New("e2e: conflicting key for a key version")
	// ErrUnknownKeyVersion: a record's key version is not in the Keyring.
	ErrUnknownKeyVersion = errors.New("e2e: unknown key version")
	// ErrUnknownDevice: a record's sender device has no stanza in the key
	// envelope of the record's key version (for example a removed device),
	// or Seal was called by such a device.
	ErrUnknownDevice = errors.New("e2e: device not in the key envelope")
	// ErrSuiteMismatch: a record's suite is not the suite of its key
	// version.
	ErrSuiteMismatch = errors.New("e2e: suite does not match the key")
	// ErrBadAD: the AES-GCM tag or the HMAC does not authenticate the
	// header, IV and ciphertext under the record keys of the key version:
	// other additional data, another key, or an altered ciphertext.
	ErrBadAD = errors.New("e2e: record authentication failed")
	// ErrBadPlaintext: the decrypted (or to be sealed) text is empty, not
	// UTF-8, longer than MaxPlaintext, or (CBC) badly padded.
	ErrBadPlaintext = errors.New("e2e: bad plaintext")
	// ErrReplay: the record's message id was already accepted in this
	// conversation.
	ErrReplay = errors.New("e2e: message id already seen")
	// ErrStaleCounter: the record's counter is not above the last one
	// accepted from its sender device for its key version.
	ErrStaleCounter = errors.New("e2e: counter not above the last seen")
)

// errorNames maps each sentinel to its Go name: the golden failure vectors
// name the error they expect this way.
var errorNames = map[error]string{
	ErrMalformed:         "ErrMalformed",
	ErrUnsupportedFormat: "ErrUnsupportedFormat",
	ErrUnsupportedSuite:  "ErrUnsupportedSuite",
	ErrTooManyRecipients: "ErrTooManyRecipients",
	ErrBadDevice:         "ErrBadDevice",
	ErrBadKey:            "ErrBadKey",
	ErrWrongDevice:       "ErrWrongDevice",
	ErrBadSignature:      "ErrBadSignature",
	ErrWrongConversation: "ErrWrongConversation",
	ErrNotARecipient:     "ErrNotARecipient",
	ErrUnwrap:            "ErrUnwrap",
	ErrKeyConflict:       "ErrKeyConflict",
	ErrUnknownKeyVersion: "ErrUnknownKeyVersion",
	ErrUnknownDevice:     "ErrUnknownDevice",
	ErrSuiteMismatch:     "ErrSuiteMismatch",
	ErrBadAD:             "ErrBadAD",
	ErrBadPlaintext:      "ErrBadPlaintext",
	ErrReplay:            "ErrReplay",
	ErrStaleCounter:      "ErrStaleCounter",
}

// ErrorName returns the name of the sentinel error err wraps
// ("ErrBadSignature"), or "" if it wraps none.
func ErrorName(err error) string {
	for sentinel, name := range errorNames {
		if errors.Is(err, sentinel) {
			return name
		}
	}
	return ""
}
