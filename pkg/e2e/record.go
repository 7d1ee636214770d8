package e2e

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"golang.org/x/crypto/cryptobyte"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Suite identifies how the records of a key version are sealed. The
// codes are those of the transport's suites (protocol.Suite); the record
// construction is this package's (docs/e2e.md §5).
type Suite uint16

// The suites.
const (
	// SuiteGCM is AES-256-GCM with a random 12-byte IV per record; the
	// additional data is the record header.
	SuiteGCM Suite = 0x0001
	// SuiteCBC is AES-256-CBC with a random 16-byte IV and PKCS#7
	// padding, then HMAC-SHA256 over header ‖ IV ‖ CBC ciphertext on a
	// separate key (encrypt-then-MAC).
	SuiteCBC Suite = 0x0002
)

func (s Suite) known() bool { return s == SuiteGCM || s == SuiteCBC }

// String names the suite.
func (s Suite) String() string {
	switch s {
	case SuiteGCM:
		return "AES-256-GCM"
	case SuiteCBC:
		return "AES-256-CBC-HMAC-SHA256"
	}
	return fmt.Sprintf("suite(%#04x)", uint16(s))
}

// ivSize is the IV length of the suite.
func (s Suite) ivSize() int {
	if s == SuiteCBC {
		return aes.BlockSize
	}
	return 12
}

// Constants of the record (docs/e2e.md §5).
const (
	// MaxPlaintext bounds a message's text: 16 KiB of UTF-8. Records are
	// not padded, so their size shows the text's size.
	MaxPlaintext = 16 << 10
	// ContextMessage is the signature context of a record.
	ContextMessage = "messenger v1 message"
	// RecordKeySalt is the HKDF salt of every record key.
	RecordKeySalt = "messenger v1 e2e"
	// InfoGCMKey, InfoCBCEncKey and InfoCBCMACKey start the HKDF info of
	// the AES-GCM key, the AES-CBC key and the HMAC key of a key version.
	InfoGCMKey    = "messenger v1 e2e gcm key"
	InfoCBCEncKey = "messenger v1 e2e cbc enc key"
	InfoCBCMACKey = "messenger v1 e2e cbc mac key"

	gcmTagSize = 16
	macSize    = sha256.Size
	// maxHeaderSize is the largest header encoding.
	maxHeaderSize = 1 + 16 + 4 + 1 + maxUserLen + 16 + 1 + maxUserLen + 16 + 8 + 8 + 2
	// maxCiphertext is the largest ciphertext field (CBC: a full block of
	// padding after MaxPlaintext, then the MAC).
	maxCiphertext = MaxPlaintext + aes.BlockSize + macSize
	// MaxRecordSize is the largest valid record, in bytes.
	MaxRecordSize = maxHeaderSize + 1 + aes.BlockSize + 2 + maxCiphertext + 2 + maxRSABytes
)

// recordKeys are the keys of one key version, derived from the
// conversation key.
type recordKeys struct {
	aead   cipher.AEAD  // SuiteGCM
	block  cipher.Block // SuiteCBC
	macKey []byte       // SuiteCBC
}

// recordKeyInfo is the HKDF info of one record key:
// label ‖ 0x00 ‖ conversation id ‖ uint32 key version.
func recordKeyInfo(label string, conversation uuid.UUID, version uint32) string {
	info := make([]byte, 0, len(label)+1+16+4)
	info = append(info, label...)
	info = append(info, 0)
	info = append(info, conversation[:]...)
	info = binary.BigEndian.AppendUint32(info, version)
	return string(info)
}

// recordKey is HKDF-SHA256(ikm = secret, salt = RecordKeySalt, info, 32).
func recordKey(secret []byte, label string, conversation uuid.UUID, version uint32) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, secret, []byte(RecordKeySalt), recordKeyInfo(label, conversation, version), 32)
	if err != nil {
		return nil, fmt.Errorf("e2e: record key: %w", err)
	}
	return k, nil
}

func deriveRecordKeys(secret []byte, conversation uuid.UUID, version uint32, suite Suite) (recordKeys, error) {
	var rk recordKeys
	switch suite {
	case SuiteGCM:
		k, err := recordKey(secret, InfoGCMKey, conversation, version)
		if err != nil {
			return rk, err
		}
		b, err := aes.NewCipher(k)
		if err != nil {
			return rk, fmt.Errorf("e2e: record key: %w", err)
		}
		if rk.aead, err = cipher.NewGCM(b); err != nil {
			return rk, fmt.Errorf("e2e: record key: %w", err)
		}
	case SuiteCBC:
		k, err := recordKey(secret, InfoCBCEncKey, conversation, version)
		if err != nil {
			return rk, err
		}
		if rk.block, err = aes.NewCipher(k); err != nil {
			return rk, fmt.Errorf("e2e: record key: %w", err)
		}
		if rk.macKey, err = recordKey(secret, InfoCBCMACKey, conversation, version); err != nil {
			return rk, err
		}
	default:
		return rk, fmt.Errorf("e2e: suite %#04x: %w", uint16(suite), ErrUnsupportedSuite)
	}
	return rk, nil
}

// Header is the authenticated, unencrypted part of a record. Its encoding
// is the additional data of the record's encryption. The format version
// (FormatVersion) is implicit.
type Header struct {
	// Conversation is the conversation's id.
	Conversation uuid.UUID
	// KeyVersion is the key version the record is sealed under.
	KeyVersion uint32
	// Sender and SenderDevice name the device that sealed and signed it.
	Sender       string
	SenderDevice uuid.UUID
	// Recipient is the conversation's other user.
	Recipient string
	// MessageID is chosen by the sender and stays the same across retries.
	MessageID uuid.UUID
	// Counter is the sender device's counter for the key version: 1, 2, …
	Counter uint64
	// Timestamp is the sender's clock when it sealed, Unix milliseconds.
	Timestamp uint64
	// Suite is the suite of the key version.
	Suite Suite
}

// Time returns the Timestamp as a time.
func (h *Header) Time() time.Time { return time.UnixMilli(int64(h.Timestamp)) }

// Sending returns the sender device's user and id.
func (h *Header) Sending() DeviceRef { return DeviceRef{User: h.Sender, ID: h.SenderDevice} }

func (h *Header) add(b *cryptobyte.Builder) {
	b.AddUint8(FormatVersion)
	b.AddBytes(h.Conversation[:])
	b.AddUint32(h.KeyVersion)
	addString8(b, h.Sender)
	b.AddBytes(h.SenderDevice[:])
	addString8(b, h.Recipient)
	b.AddBytes(h.MessageID[:])
	b.AddUint64(h.Counter)
	b.AddUint64(h.Timestamp)
	b.AddUint16(uint16(h.Suite))
}

// Marshal encodes the header: the additional data of its record.
func (h *Header) Marshal() ([]byte, error) {
	var b cryptobyte.Builder
	h.add(&b)
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("e2e: record header: %v: %w", err, ErrMalformed)
	}
	return out, nil
}

// Record is one sealed message: the header, the IV, the ciphertext (with
// the GCM tag or the HMAC at its end) and the sender's signature.
// ParseRecord returns one whose structure is valid but which is not yet
// authenticated.
type Record struct {
	Header
	// IV is 12 random bytes (GCM) or 16 (CBC).
	IV []byte
	// Ciphertext is the GCM ciphertext and tag, or the CBC ciphertext and
	// HMAC.
	Ciphertext []byte
	// Signature is the sender device's RSA-PSS signature.
	Signature []byte
}

// ParseRecord decodes a record and checks its structure: the format
// version (ErrUnsupportedFormat), the suite (ErrUnsupportedSuite) and
// everything else of docs/e2e.md §5.3 (ErrMalformed). It does no
// cryptography.
func ParseRecord(data []byte) (*Record, error) {
	if len(data) > MaxRecordSize {
		return nil, fmt.Errorf("e2e: record of %d bytes, limit %d: %w", len(data), MaxRecordSize, ErrMalformed)
	}
	s := cryptobyte.String(data)
	var format uint8
	if !s.ReadUint8(&format) {
		return nil, fmt.Errorf("e2e: record: empty: %w", ErrMalformed)
	}
	if format != FormatVersion {
		return nil, fmt.Errorf("e2e: record format %d: %w", format, ErrUnsupportedFormat)
	}
	r := new(Record)
	var suite uint16
	if !s.CopyBytes(r.Conversation[:]) || !s.ReadUint32(&r.KeyVersion) ||
		!readUser(&s, &r.Sender) || !s.CopyBytes(r.SenderDevice[:]) ||
		!readUser(&s, &r.Recipient) || !s.CopyBytes(r.MessageID[:]) ||
		!s.ReadUint64(&r.Counter) || !s.ReadUint64(&r.Timestamp) || !s.ReadUint16(&suite) {
		return nil, fmt.Errorf("e2e: record: header: %w", ErrMalformed)
	}
	r.Suite = Suite(suite)
	if !r.Suite.known() {
		return nil, fmt.Errorf("e2e: record: suite %#04x: %w", suite, ErrUnsupportedSuite)
	}
	var iv, ct, sig cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&iv) || !s.ReadUint16LengthPrefixed(&ct) ||
		!s.ReadUint16LengthPrefixed(&sig) || !s.Empty() {
		return nil, fmt.Errorf("e2e: record: %w", ErrMalformed)
	}
	r.IV, r.Ciphertext, r.Signature = bytes.Clone(iv), bytes.Clone(ct), bytes.Clone(sig)
	if err := r.check(); err != nil {
		return nil, err
	}
	return r, nil
}

// check applies the structural rules of docs/e2e.md §5.3 beyond what the
// decoder reads, so that a record built in memory is held to them too.
func (r *Record) check() error {
	bad := func(what string) error { return fmt.Errorf("e2e: record: %s: %w", what, ErrMalformed) }
	switch {
	case !r.Suite.known():
		return fmt.Errorf("e2e: record: suite %#04x: %w", uint16(r.Suite), ErrUnsupportedSuite)
	case r.KeyVersion == 0:
		return bad("key version 0")
	case !protocol.ValidUserName(r.Sender) || !protocol.ValidUserName(r.Recipient):
		return bad("user name")
	case r.Sender == r.Recipient:
		return bad("sender is the recipient")
	case r.Counter == 0:
		return bad("counter 0")
	case len(r.IV) != r.Suite.ivSize():
		return bad(fmt.Sprintf("IV of %d bytes", len(r.IV)))
	case !rsaSizeOK(len(r.Signature)):
		return bad(fmt.Sprintf("signature of %d bytes", len(r.Signature)))
	}
	n := len(r.Ciphertext)
	switch r.Suite {
	case SuiteGCM:
		if n < 1+gcmTagSize || n > MaxPlaintext+gcmTagSize {
			return bad(fmt.Sprintf("ciphertext of %d bytes", n))
		}
	case SuiteCBC:
		if n < aes.BlockSize+macSize || n > maxCiphertext || (n-macSize)%aes.BlockSize != 0 {
			return bad(fmt.Sprintf("ciphertext of %d bytes", n))
		}
	}
	return nil
}

// signedPart encodes every field before the signature field.
func (r *Record) signedPart() ([]byte, error) {
	var b cryptobyte.Builder
	r.Header.add(&b)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(r.IV) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(r.Ciphertext) })
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("e2e: record: %v: %w", err, ErrMalformed)
	}
	return out, nil
}

// Marshal encodes the record as it is, without checking it; it fails only
// for a value the encoding cannot carry.
func (r *Record) Marshal() ([]byte, error) {
	body, err := r.signedPart()
	if err != nil {
		return nil, err
	}
	b := cryptobyte.NewBuilder(body)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(r.Signature) })
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("e2e: record: %v: %w", err, ErrMalformed)
	}
	return out, nil
}

// Outgoing is a message to seal.
type Outgoing struct {
	// Recipient is the conversation's other user.
	Recipient string
	// MessageID is chosen once per message and kept across retries; a
	// retry sends the same record bytes again, not a new seal.
	MessageID uuid.UUID
	// Counter is the sending device's counter for this key version: 1 for
	// its first record under the key, then one more each time (the caller
	// keeps it, and must never reuse one: the receiver drops a record
	// whose counter is not above the last it accepted).
	Counter uint64
	// Time is the sending time; zero means now.
	Time time.Time
	// Text is the message: 1 to MaxPlaintext bytes of UTF-8.
	Text string
}

// Seal seals m under key as from, the local device: it encrypts with a
// fresh random IV and signs. Errors: ErrBadPlaintext (text empty, too long
// or not UTF-8), ErrUnknownDevice (from has no stanza in the key's
// envelope), ErrNotARecipient (the recipient is not the conversation's
// other user), ErrMalformed (counter 0, time before 1970).
func Seal(key *ConversationKey, from *LocalDevice, m Outgoing) ([]byte, error) {
	iv := make([]byte, key.Suite().ivSize())
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("e2e: record IV: %w", err)
	}
	return seal(key, from, m, iv)
}

// seal is Seal with a given IV (the golden vectors fix it).
func seal(key *ConversationKey, from *LocalDevice, m Outgoing, iv []byte) ([]byte, error) {
	if err := checkText([]byte(m.Text)); err != nil {
		return nil, err
	}
	if from == nil || from.Signing == nil {
		return nil, fmt.Errorf("e2e: seal: no local device: %w", ErrBadDevice)
	}
	if !key.HasDevice(from.Ref()) {
		return nil, fmt.Errorf("e2e: seal: %s/%s is not a recipient of key version %d: %w", from.User, from.ID, key.Version(), ErrUnknownDevice)
	}
	if m.Recipient != key.Peer(from.User) {
		return nil, fmt.Errorf("e2e: seal: recipient %q is not the other user of the conversation: %w", m.Recipient, ErrNotARecipient)
	}
	if m.Counter == 0 {
		return nil, fmt.Errorf("e2e: seal: counter 0: %w", ErrMalformed)
	}
	t := m.Time
	if t.IsZero() {
		t = time.Now()
	}
	if t.UnixMilli() < 0 {
		return nil, fmt.Errorf("e2e: seal: time before 1970: %w", ErrMalformed)
	}
	r := &Record{
		Header: Header{
			Conversation: key.Conversation(),
			KeyVersion:   key.Version(),
			Sender:       from.User,
			SenderDevice: from.ID,
			Recipient:    m.Recipient,
			MessageID:    m.MessageID,
			Counter:      m.Counter,
			Timestamp:    uint64(t.UnixMilli()),
			Suite:        key.Suite(),
		},
		IV: iv,
	}
	ad, err := r.Header.Marshal()
	if err != nil {
		return nil, err
	}
	r.Ciphertext = key.records.encrypt(key.Suite(), ad, iv, []byte(m.Text))
	body, err := r.signedPart()
	if err != nil {
		return nil, err
	}
	if r.Signature, err = sign(from.Signing, ContextMessage, body); err != nil {
		return nil, err
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return r.Marshal()
}

// encrypt returns the ciphertext field: GCM ciphertext ‖ tag, or CBC
// ciphertext ‖ HMAC(header ‖ IV ‖ CBC ciphertext).
func (k *recordKeys) encrypt(suite Suite, ad, iv, plaintext []byte) []byte {
	if suite == SuiteGCM {
		return k.aead.Seal(nil, iv, plaintext, ad)
	}
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	body := make([]byte, len(plaintext)+pad, len(plaintext)+pad+macSize)
	copy(body, plaintext)
	for i := len(plaintext); i < len(body); i++ {
		body[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(k.block, iv).CryptBlocks(body, body)
	return append(body, k.mac(ad, iv, body)...)
}

func (k *recordKeys) mac(ad, iv, ct []byte) []byte {
	m := hmac.New(sha256.New, k.macKey)
	m.Write(ad)
	m.Write(iv)
	m.Write(ct)
	return m.Sum(nil)
}

// decrypt authenticates and decrypts a ciphertext field (ErrBadAD), then
// removes CBC padding (ErrBadPlaintext).
func (k *recordKeys) decrypt(suite Suite, ad, iv, ct []byte) ([]byte, error) {
	if suite == SuiteGCM {
		pt, err := k.aead.Open(nil, iv, ct, ad)
		if err != nil {
			return nil, ErrBadAD
		}
		return pt, nil
	}
	body, tag := ct[:len(ct)-macSize], ct[len(ct)-macSize:]
	if !hmac.Equal(k.mac(ad, iv, body), tag) {
		return nil, ErrBadAD
	}
	pt := make([]byte, len(body))
	cipher.NewCBCDecrypter(k.block, iv).CryptBlocks(pt, body)
	// The MAC has authenticated the padding: a bad one is the sender's bug
	// (or malice), not an oracle.
	pad := int(pt[len(pt)-1])
	if pad == 0 || pad > aes.BlockSize {
		return nil, ErrBadPlaintext
	}
	for _, b := range pt[len(pt)-pad:] {
		if int(b) != pad {
			return nil, ErrBadPlaintext
		}
	}
	return pt[:len(pt)-pad], nil
}

func checkText(t []byte) error {
	switch {
	case len(t) == 0:
		return fmt.Errorf("e2e: empty text: %w", ErrBadPlaintext)
	case len(t) > MaxPlaintext:
		return fmt.Errorf("e2e: text of %d bytes, limit %d: %w", len(t), MaxPlaintext, ErrBadPlaintext)
	case !utf8.Valid(t):
		return fmt.Errorf("e2e: text is not UTF-8: %w", ErrBadPlaintext)
	}
	return nil
}

// Message is an opened record: its authenticated header and its text.
type Message struct {
	Header
	// Text is the message, valid UTF-8.
	Text string
}

// Open authenticates and decrypts a record with the keys of ring. sender
// is the Device the record names as its sender, as the caller looked it
// up and pinned it. guard, if not nil, rejects replays and records the
// message as accepted; pass nil only to re-read records already accepted
// once (history from the server or a local cache). The checks run in this
// order, each with its error:
//
//  1. structure, as ParseRecord (ErrUnsupportedFormat,
//     ErrUnsupportedSuite, ErrMalformed);
//  2. sender is the device the header names (ErrWrongDevice) and its
//     signing key follows the RSA key rule (ErrBadKey);
//  3. the signature, over "messenger v1 message" and the SHA-256 of every
//     byte before the signature field (ErrBadSignature);
//  4. the conversation id is the keyring's (ErrWrongConversation);
//  5. the key version is in the keyring (ErrUnknownKeyVersion);
//  6. sender and recipient are the conversation's two users
//     (ErrNotARecipient);
//  7. the sender device has a stanza in that key version's envelope
//     (ErrUnknownDevice);
//  8. the suite is the key version's (ErrSuiteMismatch);
//  9. the GCM tag or the HMAC (ErrBadAD), then the CBC padding and the
//     text: 1 to MaxPlaintext bytes of UTF-8 (ErrBadPlaintext);
//  10. guard: the message id is new in the conversation (ErrReplay) and
//     the counter is above the last accepted from that sender device for
//     that key version (ErrStaleCounter); then both are recorded.
func Open(ring *Keyring, rec *Record, sender Device, guard *ReplayGuard) (*Message, error) {
	if ring == nil || rec == nil {
		return nil, fmt.Errorf("e2e: open: no keyring or no record: %w", ErrMalformed)
	}
	if err := rec.check(); err != nil {
		return nil, err
	}
	if sender.Ref() != rec.Sending() {
		return nil, fmt.Errorf("e2e: record sent by %s/%s, key given for %s/%s: %w",
			rec.Sender, rec.SenderDevice, sender.User, sender.ID, ErrWrongDevice)
	}
	pub, err := sender.signingKey()
	if err != nil {
		return nil, err
	}
	body, err := rec.signedPart()
	if err != nil {
		return nil, err
	}
	if err := verify(pub, ContextMessage, body, rec.Signature); err != nil {
		return nil, fmt.Errorf("e2e: record %s: %w", rec.MessageID, err)
	}
	if rec.Conversation != ring.Conversation() {
		return nil, fmt.Errorf("e2e: record of conversation %s, keyring of %s: %w", rec.Conversation, ring.Conversation(), ErrWrongConversation)
	}
	key, ok := ring.Key(rec.KeyVersion)
	if !ok {
		return nil, fmt.Errorf("e2e: record %s: key version %d: %w", rec.MessageID, rec.KeyVersion, ErrUnknownKeyVersion)
	}
	if !sameUsers(key.Users(), rec.Sender, rec.Recipient) {
		return nil, fmt.Errorf("e2e: record %s from %s to %s in the conversation of %v: %w", rec.MessageID, rec.Sender, rec.Recipient, key.Users(), ErrNotARecipient)
	}
	if !key.HasDevice(rec.Sending()) {
		return nil, fmt.Errorf("e2e: record %s: %s/%s is not a recipient of key version %d: %w", rec.MessageID, rec.Sender, rec.SenderDevice, rec.KeyVersion, ErrUnknownDevice)
	}
	if rec.Suite != key.Suite() {
		return nil, fmt.Errorf("e2e: record %s: suite %s, key version %d is %s: %w", rec.MessageID, rec.Suite, rec.KeyVersion, key.Suite(), ErrSuiteMismatch)
	}
	ad, err := rec.Header.Marshal()
	if err != nil {
		return nil, err
	}
	pt, err := key.records.decrypt(rec.Suite, ad, rec.IV, rec.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("e2e: record %s: %w", rec.MessageID, err)
	}
	if err := checkText(pt); err != nil {
		return nil, fmt.Errorf("e2e: record %s: %w", rec.MessageID, err)
	}
	if guard != nil {
		if err := guard.accept(&rec.Header); err != nil {
			return nil, err
		}
	}
	return &Message{Header: rec.Header, Text: string(pt)}, nil
}
