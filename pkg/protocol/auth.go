package protocol

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
)

// Context strings of user signatures.
const (
	// ContextClientAuth prefixes what a user signs to authenticate a
	// connection: the connection's exporter and the user name.
	ContextClientAuth = "messenger v1 client auth"
	// ContextKeyBundle prefixes a key bundle's self-signature.
	ContextKeyBundle = "messenger v1 key bundle"
	// ContextDeviceBundle prefixes the self-signature of a device's key
	// bundle: one that carries a device id (docs/protocol.md §10.1).
	ContextDeviceBundle = "messenger v2 key bundle"
	// ContextDeviceFingerprint prefixes the encoding a device fingerprint
	// hashes; the same as pkg/e2e's (docs/e2e.md §3.1).
	ContextDeviceFingerprint = "messenger v1 device"
)

// KeyBundle is a user's published public identity: an RSA-PSS signing key
// and an RSA-OAEP encryption key, both PKIX DER, with a self-signature by
// the signing key over both (and the user name), so that any client can
// check a bundle the directory hands out.
type KeyBundle struct {
	// Device is the device's id, a UUID in canonical lower-case form,
	// chosen by the client; empty in a bundle of version 1 (NewKeyBundle).
	Device        string `json:"device,omitempty"`
	Signing       []byte `json:"signing"`
	Encryption    []byte `json:"encryption"`
	SelfSignature []byte `json:"self_sig"`
}

// bundleDigest is SHA-256 over the canonical encoding of the bundle's
// public part: the user name, the signing key and the encryption key, each
// preceded by its length as a 32-bit big-endian integer.
func bundleDigest(user string, signing, encryption []byte) []byte {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(user), signing, encryption} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return h.Sum(nil)
}

// UserFingerprint identifies a user's keys: SHA-256 over the canonical
// encoding of the user name and both public keys (see bundleDigest). Two people compare it
// to know they see the same keys (a "safety number").
func UserFingerprint(user string, signing, encryption []byte) Fingerprint {
	var f Fingerprint
	copy(f[:], bundleDigest(user, signing, encryption))
	return f
}

// NewKeyBundle builds a bundle for user from the private signing key and
// the public encryption key, self-signed.
func NewKeyBundle(user string, signing *rsa.PrivateKey, encryption *rsa.PublicKey) (*KeyBundle, error) {
	if !ValidUserName(user) {
		return nil, fmt.Errorf("protocol: key bundle for %q: not a valid user name: %w", user, CodeBadRequest)
	}
	sder, err := x509.MarshalPKIXPublicKey(&signing.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("protocol: key bundle: %w", err)
	}
	eder, err := x509.MarshalPKIXPublicKey(encryption)
	if err != nil {
		return nil, fmt.Errorf("protocol: key bundle: %w", err)
	}
	sig, err := SignTranscript(signing, ContextKeyBundle, bundleDigest(user, sder, eder))
	if err != nil {
		return nil, err
	}
	return &KeyBundle{Signing: sder, Encryption: eder, SelfSignature: sig}, nil
}

// Verify checks that both keys are RSA keys that follow the RSA key rule
// (ParseRSAPublicKey; else CodeBadKey) and that the self-signature is valid for user (CodeBadSignature). It
// returns the parsed signing key.
func (k *KeyBundle) Verify(user string) (*rsa.PublicKey, error) {
	if k == nil {
		return nil, fmt.Errorf("protocol: key bundle missing: %w", CodeBadKey)
	}
	if !ValidUserName(user) {
		return nil, fmt.Errorf("protocol: key bundle for %q: not a valid user name: %w", user, CodeBadRequest)
	}
	sig, err := k.checkKeys(user)
	if err != nil {
		return nil, err
	}
	if err := VerifyTranscript(sig, ContextKeyBundle, bundleDigest(user, k.Signing, k.Encryption), k.SelfSignature); err != nil {
		return nil, fmt.Errorf("protocol: key bundle self-signature: %w", CodeBadSignature)
	}
	return sig, nil
}

// checkKeys checks the user name, the sizes and both keys of k, and
// returns the parsed signing key.
func (k *KeyBundle) checkKeys(user string) (*rsa.PublicKey, error) {
	if !ValidUserName(user) {
		return nil, fmt.Errorf("protocol: key bundle for %q: not a valid user name: %w", user, CodeBadRequest)
	}
	if len(k.Signing) > MaxPublicKeySize || len(k.Encryption) > MaxPublicKeySize || len(k.SelfSignature) > 1024 {
		return nil, fmt.Errorf("protocol: key bundle field too large: %w", CodeBadKey)
	}
	sig, err := ParseRSAPublicKey(k.Signing)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if _, err := ParseRSAPublicKey(k.Encryption); err != nil {
		return nil, fmt.Errorf("encryption key: %w", err)
	}
	return sig, nil
}

// Fingerprint returns the bundle's UserFingerprint for user.
func (k *KeyBundle) Fingerprint(user string) Fingerprint {
	return UserFingerprint(user, k.Signing, k.Encryption)
}

// clientAuthDigest binds a user's signature to one connection (its
// exporter) and one user name.
func clientAuthDigest(exporter []byte, user string) []byte {
	h := sha256.New()
	h.Write(exporter)
	h.Write([]byte{0})
	h.Write([]byte(user))
	return h.Sum(nil)
}

// SignClientAuth signs the connection's exporter and the user name with
// the user's signing key: the proof of identity in register, login and
// auth requests.
func SignClientAuth(key *rsa.PrivateKey, exporter []byte, user string) ([]byte, error) {
	return SignTranscript(key, ContextClientAuth, clientAuthDigest(exporter, user))
}

// VerifyClientAuth checks a SignClientAuth signature (CodeBadSignature).
func VerifyClientAuth(pub *rsa.PublicKey, exporter []byte, user string, sig []byte) error {
	return VerifyTranscript(pub, ContextClientAuth, clientAuthDigest(exporter, user), sig)
}
