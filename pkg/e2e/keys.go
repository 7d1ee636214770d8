package e2e

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"golang.org/x/crypto/cryptobyte"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Context strings of the fingerprints and digests (docs/e2e.md §3).
const (
	contextDevice    = "messenger v1 device"
	contextUser      = "messenger v1 user"
	contextDeviceSet = "messenger v1 device set"
)

// Fingerprint is a SHA-256 value identifying a device, a user's set of
// devices, or both users' devices; it is protocol.Fingerprint, so it
// prints as 64 hex digits and parses with protocol.ParseFingerprint.
type Fingerprint = protocol.Fingerprint

// Device is the public half of one device of a user: its id and its two
// RSA public keys as PKIX DER, each following the RSA key rule of
// pkg/protocol (protocol.ParseRSAPublicKey). The caller obtains Devices
// from the directory and pins them (Pins); this package never fetches one.
type Device struct {
	// User is the owner's user name (protocol.ValidUserName).
	User string
	// ID identifies the device among the user's devices.
	ID uuid.UUID
	// Signing is the RSA-PSS public key the device signs with.
	Signing []byte
	// Encryption is the RSA-OAEP public key conversation keys are wrapped to.
	Encryption []byte
}

// LocalDevice is the device this program runs as: the private halves of
// both keys. It never leaves the device.
type LocalDevice struct {
	// User is the owner's user name.
	User string
	// ID identifies the device among the user's devices.
	ID uuid.UUID
	// Signing signs key envelopes and records (RSA-PSS).
	Signing *rsa.PrivateKey
	// Encryption unwraps conversation keys (RSA-OAEP).
	Encryption *rsa.PrivateKey
}

// DeviceRef names a device without its keys: what stanzas and headers
// carry.
type DeviceRef struct {
	// User is the owner's user name.
	User string
	// ID is the device id.
	ID uuid.UUID
}

// compareRefs orders devices by user name (byte-wise, a prefix first),
// then by device id (byte-wise): the canonical stanza order.
func compareRefs(a, b DeviceRef) int {
	if c := bytes.Compare([]byte(a.User), []byte(b.User)); c != 0 {
		return c
	}
	return bytes.Compare(a.ID[:], b.ID[:])
}

// Ref returns the device's user and id.
func (d Device) Ref() DeviceRef { return DeviceRef{User: d.User, ID: d.ID} }

// Ref returns the device's user and id.
func (l *LocalDevice) Ref() DeviceRef { return DeviceRef{User: l.User, ID: l.ID} }

// Check reports whether d is usable: a valid user name (else ErrBadDevice)
// and two keys that follow the RSA key rule (else ErrBadKey).
func (d Device) Check() error {
	if !protocol.ValidUserName(d.User) {
		return fmt.Errorf("e2e: device of %q: invalid user name: %w", d.User, ErrBadDevice)
	}
	if _, err := d.signingKey(); err != nil {
		return err
	}
	if _, err := d.encryptionKey(); err != nil {
		return err
	}
	return nil
}

func (d Device) signingKey() (*rsa.PublicKey, error) {
	k, err := protocol.ParseRSAPublicKey(d.Signing)
	if err != nil {
		return nil, fmt.Errorf("e2e: signing key of device %s/%s: %v: %w", d.User, d.ID, err, ErrBadKey)
	}
	return k, nil
}

func (d Device) encryptionKey() (*rsa.PublicKey, error) {
	k, err := protocol.ParseRSAPublicKey(d.Encryption)
	if err != nil {
		return nil, fmt.Errorf("e2e: encryption key of device %s/%s: %v: %w", d.User, d.ID, err, ErrBadKey)
	}
	return k, nil
}

// Public returns the public Device of l, checked like Device.Check.
func (l *LocalDevice) Public() (Device, error) {
	if l == nil || l.Signing == nil || l.Encryption == nil {
		return Device{}, fmt.Errorf("e2e: local device without keys: %w", ErrBadKey)
	}
	sig, err := x509.MarshalPKIXPublicKey(&l.Signing.PublicKey)
	if err != nil {
		return Device{}, fmt.Errorf("e2e: local signing key: %v: %w", err, ErrBadKey)
	}
	enc, err := x509.MarshalPKIXPublicKey(&l.Encryption.PublicKey)
	if err != nil {
		return Device{}, fmt.Errorf("e2e: local encryption key: %v: %w", err, ErrBadKey)
	}
	d := Device{User: l.User, ID: l.ID, Signing: sig, Encryption: enc}
	if err := d.Check(); err != nil {
		return Device{}, err
	}
	return d, nil
}

// Fingerprint returns the device fingerprint:
//
//	SHA-256("messenger v1 device" ‖ 0x00 ‖ uint8 len(user) ‖ user ‖ id[16] ‖
//	        uint16 len(signing) ‖ signing ‖ uint16 len(encryption) ‖ encryption)
//
// It does not check the keys; Check does.
func (d Device) Fingerprint() Fingerprint {
	var b cryptobyte.Builder
	b.AddBytes([]byte(contextDevice))
	b.AddUint8(0)
	addString8(&b, d.User)
	b.AddBytes(d.ID[:])
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(d.Signing) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(d.Encryption) })
	enc, err := b.Bytes()
	if err != nil {
		// Only a user name over 255 bytes or a key over 64 KiB gets here;
		// give such a device a fingerprint nothing else can have.
		return sha256.Sum256(append([]byte(contextDevice+" invalid\x00"), d.ID[:]...))
	}
	return sha256.Sum256(enc)
}

// UserFingerprint returns the fingerprint of user's set of devices: every
// device must belong to user, and there must be 1 to MaxRecipients of them,
// no two with the same id (else ErrBadDevice); each must pass Check.
//
//	SHA-256("messenger v1 user" ‖ 0x00 ‖ uint8 len(user) ‖ user ‖
//	        uint8 n ‖ fp_1 ‖ … ‖ fp_n)
//
// where fp_i are the device fingerprints in ascending byte order. It does
// not depend on the order of devices.
func UserFingerprint(user string, devices []Device) (Fingerprint, error) {
	if !protocol.ValidUserName(user) {
		return Fingerprint{}, fmt.Errorf("e2e: user fingerprint of %q: invalid user name: %w", user, ErrBadDevice)
	}
	if len(devices) == 0 || len(devices) > MaxRecipients {
		return Fingerprint{}, fmt.Errorf("e2e: user %s has %d devices, want 1 to %d: %w", user, len(devices), MaxRecipients, ErrBadDevice)
	}
	fps := make([]Fingerprint, 0, len(devices))
	ids := make(map[uuid.UUID]bool, len(devices))
	for _, d := range devices {
		if d.User != user {
			return Fingerprint{}, fmt.Errorf("e2e: device %s of %s in the devices of %s: %w", d.ID, d.User, user, ErrBadDevice)
		}
		if ids[d.ID] {
			return Fingerprint{}, fmt.Errorf("e2e: device %s of %s listed twice: %w", d.ID, user, ErrBadDevice)
		}
		ids[d.ID] = true
		if err := d.Check(); err != nil {
			return Fingerprint{}, err
		}
		fps = append(fps, d.Fingerprint())
	}
	slices.SortFunc(fps, func(a, b Fingerprint) int { return bytes.Compare(a[:], b[:]) })
	var b cryptobyte.Builder
	b.AddBytes([]byte(contextUser))
	b.AddUint8(0)
	addString8(&b, user)
	b.AddUint8(uint8(len(fps)))
	for _, fp := range fps {
		b.AddBytes(fp[:])
	}
	return sha256.Sum256(b.BytesOrPanic()), nil
}

// DeviceSetDigest returns the digest of the devices of a direct
// conversation's two users, stored in every key envelope so that a change
// of either user's devices (added, removed, or new keys) is noticed
// (KeyPolicy):
//
//	SHA-256("messenger v1 device set" ‖ 0x00 ‖ user_fp_1 ‖ user_fp_2)
//
// where user_fp are the two users' UserFingerprints in ascending byte
// order. devices must hold the devices of exactly two users (else
// ErrBadDevice).
func DeviceSetDigest(devices []Device) (Fingerprint, error) {
	users, byUser, err := splitUsers(devices)
	if err != nil {
		return Fingerprint{}, err
	}
	var fps [2]Fingerprint
	for i, u := range users {
		if fps[i], err = UserFingerprint(u, byUser[u]); err != nil {
			return Fingerprint{}, err
		}
	}
	return deviceSetDigest(fps[0], fps[1]), nil
}

func deviceSetDigest(a, b Fingerprint) Fingerprint {
	if bytes.Compare(a[:], b[:]) > 0 {
		a, b = b, a
	}
	h := sha256.New()
	h.Write([]byte(contextDeviceSet))
	h.Write([]byte{0})
	h.Write(a[:])
	h.Write(b[:])
	var out Fingerprint
	h.Sum(out[:0])
	return out
}

// splitUsers groups devices by user and checks that there are exactly two
// users, returned in byte order.
func splitUsers(devices []Device) ([2]string, map[string][]Device, error) {
	byUser := map[string][]Device{}
	for _, d := range devices {
		byUser[d.User] = append(byUser[d.User], d)
	}
	if len(byUser) != 2 {
		return [2]string{}, nil, fmt.Errorf("e2e: devices of %d users, want the 2 users of a conversation: %w", len(byUser), ErrBadDevice)
	}
	var users [2]string
	i := 0
	for u := range byUser {
		users[i] = u
		i++
	}
	if users[0] > users[1] {
		users[0], users[1] = users[1], users[0]
	}
	return users, byUser, nil
}

// addString8 appends a string with a one-byte length prefix.
func addString8(b *cryptobyte.Builder, s string) {
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
}

// rsaSizeOK reports whether n bytes is the size of a signature or an
// RSA-OAEP ciphertext under a key of one of protocol.RSAKeySizes.
func rsaSizeOK(n int) bool { return protocol.ValidRSAKeySize(8 * n) }

// The RSA operations go through these variables so that tests can count
// them (and prove that a check ran before any of them). Nothing else
// changes them.
var (
	rsaVerifyPSS = func(pub *rsa.PublicKey, digest, sig []byte) error {
		return rsa.VerifyPSS(pub, crypto.SHA256, digest, sig, protocol.PSSOptions)
	}
	rsaDecryptOAEP = func(priv *rsa.PrivateKey, ciphertext, label []byte) ([]byte, error) {
		return rsa.DecryptOAEP(sha256.New(), nil, priv, ciphertext, label)
	}
)

// verify checks an RSA-PSS signature made by sign over context and the
// SHA-256 of signed.
func verify(pub *rsa.PublicKey, context string, signed, sig []byte) error {
	h := sha256.Sum256(signed)
	d := sha256.Sum256(protocol.SignedContent(context, h[:]))
	if err := rsaVerifyPSS(pub, d[:], sig); err != nil {
		return ErrBadSignature
	}
	return nil
}

// sign signs, with RSA-PSS (SHA-256, MGF1-SHA-256, salt 32), the content
// 0x20×64 ‖ context ‖ 0x00 ‖ SHA-256(signed): the layout of
// protocol.SignedContent.
func sign(key *rsa.PrivateKey, context string, signed []byte) ([]byte, error) {
	h := sha256.Sum256(signed)
	sig, err := protocol.SignTranscript(key, context, h[:])
	if err != nil {
		return nil, fmt.Errorf("e2e: sign: %w", err)
	}
	return sig, nil
}
