package protocol

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"

	"github.com/google/uuid"
)

// Devices (docs/protocol.md §10.1). A user has one or more devices, each
// with its own key bundle; a device's bundle carries the device id, and
// its self-signature covers the device fingerprint, so the id is bound to
// the keys.

// MaxDeviceName bounds a device's optional label, in bytes.
const MaxDeviceName = 64

// ValidDeviceName reports whether s may label a device: at most
// MaxDeviceName bytes of printable ASCII (0x20..0x7e); empty is allowed.
func ValidDeviceName(s string) bool {
	if len(s) > MaxDeviceName {
		return false
	}
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// ParseDeviceID parses a device id: a UUID in canonical lower-case form,
// not the nil UUID. Anything else is CodeBadRequest.
func ParseDeviceID(s string) (uuid.UUID, error) {
	u, err := uuid.Parse(s)
	if err != nil || u.String() != s || u == uuid.Nil {
		return uuid.Nil, fmt.Errorf("protocol: device id must be a non-nil UUID in canonical lower-case form: %w", CodeBadRequest)
	}
	return u, nil
}

// DeviceFingerprint identifies one device of user:
//
//	SHA-256("messenger v1 device" ‖ 0x00 ‖ uint8 len(user) ‖ user ‖ id[16] ‖
//	        uint16 len(signing) ‖ signing ‖ uint16 len(encryption) ‖ encryption)
//
// the device fingerprint of docs/e2e.md §3.1, which pkg/e2e's
// Device.Fingerprint computes too (a test holds them equal). user is at
// most MaxUserLen bytes and the keys at most MaxPublicKeySize, so the
// lengths fit.
func DeviceFingerprint(user string, id uuid.UUID, signing, encryption []byte) Fingerprint {
	h := sha256.New()
	h.Write([]byte(ContextDeviceFingerprint))
	h.Write([]byte{0, byte(len(user))})
	h.Write([]byte(user))
	h.Write(id[:])
	for _, k := range [][]byte{signing, encryption} {
		h.Write(binary.BigEndian.AppendUint16(nil, uint16(len(k))))
		h.Write(k)
	}
	var f Fingerprint
	h.Sum(f[:0])
	return f
}

// NewDeviceBundle builds the bundle of device id of user from the private
// signing key and the public encryption key, its self-signature over the
// device fingerprint with ContextDeviceBundle.
func NewDeviceBundle(user string, id uuid.UUID, signing *rsa.PrivateKey, encryption *rsa.PublicKey) (*KeyBundle, error) {
	if !ValidUserName(user) {
		return nil, fmt.Errorf("protocol: key bundle for %q: not a valid user name: %w", user, CodeBadRequest)
	}
	if id == uuid.Nil {
		return nil, fmt.Errorf("protocol: key bundle for %q: nil device id: %w", user, CodeBadRequest)
	}
	sder, err := x509.MarshalPKIXPublicKey(&signing.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("protocol: key bundle: %w", err)
	}
	eder, err := x509.MarshalPKIXPublicKey(encryption)
	if err != nil {
		return nil, fmt.Errorf("protocol: key bundle: %w", err)
	}
	fp := DeviceFingerprint(user, id, sder, eder)
	sig, err := SignTranscript(signing, ContextDeviceBundle, fp[:])
	if err != nil {
		return nil, err
	}
	return &KeyBundle{Device: id.String(), Signing: sder, Encryption: eder, SelfSignature: sig}, nil
}

// VerifyDevice checks a device's bundle for user, as the server does
// before it stores one: the device id is a canonical non-nil UUID (else
// CodeBadKey), the sizes and keys as Verify (CodeBadKey), and the
// self-signature with ContextDeviceBundle over the device fingerprint
// (else CodeBadSignature). It returns the parsed signing key and the id.
func (k *KeyBundle) VerifyDevice(user string) (*rsa.PublicKey, uuid.UUID, error) {
	return k.verifyDevice(user, false)
}

// VerifyListed checks a bundle the directory lists for user: as
// VerifyDevice, except that a self-signature of version 1 (Verify, which
// does not cover the device id) is accepted too. Only devices made from a
// key set published before devices existed carry one (docs/protocol.md
// §10.1).
func (k *KeyBundle) VerifyListed(user string) (*rsa.PublicKey, uuid.UUID, error) {
	return k.verifyDevice(user, true)
}

func (k *KeyBundle) verifyDevice(user string, legacy bool) (*rsa.PublicKey, uuid.UUID, error) {
	if k == nil {
		return nil, uuid.Nil, fmt.Errorf("protocol: key bundle missing: %w", CodeBadKey)
	}
	id, err := ParseDeviceID(k.Device)
	if err != nil {
		return nil, uuid.Nil, fmt.Errorf("protocol: key bundle: bad device id: %w", CodeBadKey)
	}
	sig, err := k.checkKeys(user)
	if err != nil {
		return nil, uuid.Nil, err
	}
	fp := DeviceFingerprint(user, id, k.Signing, k.Encryption)
	if err := VerifyTranscript(sig, ContextDeviceBundle, fp[:], k.SelfSignature); err == nil {
		return sig, id, nil
	}
	if legacy && VerifyTranscript(sig, ContextKeyBundle, bundleDigest(user, k.Signing, k.Encryption), k.SelfSignature) == nil {
		return sig, id, nil
	}
	return nil, uuid.Nil, fmt.Errorf("protocol: key bundle self-signature: %w", CodeBadSignature)
}

// DeviceInfo is one device in a lookup or devices answer.
type DeviceInfo struct {
	// Keys is the device's bundle; Keys.Device is its id.
	Keys *KeyBundle `json:"keys"`
	// Name is the device's label, if any.
	Name string `json:"name,omitempty"`
	// Fingerprint is DeviceFingerprint, 64 hex digits.
	Fingerprint string `json:"fingerprint"`
	// Created is when the device was added, Unix milliseconds.
	Created int64 `json:"created"`
}
