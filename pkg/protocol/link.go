package protocol

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// Device link codes (docs/protocol.md §10.5). An existing device E of a
// user asks the server for a link id (link_start → link), draws a secret
// that never reaches the server, and shows both as one short code. The
// new device N, on which the code is typed, proves knowing the secret with
// a MAC over its own device fingerprint (link_join); E checks that MAC,
// so a server that swaps in keys of its own is caught, and approves N by
// signing its fingerprint (link_approve).
const (
	// LinkIDSize is the size of a link id, drawn by the server.
	LinkIDSize = 8
	// LinkSecretSize is the size of the secret E draws and shows.
	LinkSecretSize = 10
	// LinkMACSize is the size of a link_join's mac (HMAC-SHA256).
	LinkMACSize = 32
	// ContextDeviceLink starts the HMAC input of LinkMAC.
	ContextDeviceLink = "messenger v1 device link"
	// ContextDeviceApproval is the context string of an approval signature.
	ContextDeviceApproval = "messenger v1 device approval"
)

// linkEncoding writes codes in upper-case RFC 4648 base32 without padding.
var linkEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// LinkCode is what E shows and N types: the server's link id and E's
// secret.
type LinkCode struct {
	ID     [LinkIDSize]byte
	Secret [LinkSecretSize]byte
}

// NewLinkCode returns a code for the link id the server gave, with a fresh
// random secret.
func NewLinkCode(id []byte) (LinkCode, error) {
	var c LinkCode
	if len(id) != LinkIDSize {
		return c, fmt.Errorf("protocol: link id of %d bytes, want %d: %w", len(id), LinkIDSize, CodeMalformed)
	}
	copy(c.ID[:], id)
	if _, err := rand.Read(c.Secret[:]); err != nil {
		return c, fmt.Errorf("protocol: link secret: %w", err)
	}
	return c, nil
}

// String is the code as shown: base32 (RFC 4648, upper case, no padding)
// of id ‖ secret, 29 characters, in groups of four joined by '-'.
func (c LinkCode) String() string {
	s := linkEncoding.EncodeToString(append(c.ID[:], c.Secret[:]...))
	var b strings.Builder
	for i := 0; i < len(s); i += 4 {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(s[i:min(i+4, len(s))])
	}
	return b.String()
}

// ParseLinkCode reads a code as String writes it. Case, '-' and spaces
// are ignored, so a code typed in lower case or without dashes works.
func ParseLinkCode(s string) (LinkCode, error) {
	var c LinkCode
	clean := strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, strings.ToUpper(strings.TrimSpace(s)))
	raw, err := linkEncoding.DecodeString(clean)
	if err != nil || len(raw) != LinkIDSize+LinkSecretSize {
		return c, fmt.Errorf("protocol: link code: want %d base32 characters: %w", (8*(LinkIDSize+LinkSecretSize)+4)/5, CodeMalformed)
	}
	copy(c.ID[:], raw[:LinkIDSize])
	copy(c.Secret[:], raw[LinkIDSize:])
	return c, nil
}

// LinkMAC is the mac of a link_join by the device whose fingerprint is fp:
//
//	HMAC-SHA256(secret, ContextDeviceLink ‖ 0x00 ‖ link id ‖ fp)
func LinkMAC(c LinkCode, fp Fingerprint) []byte {
	m := hmac.New(sha256.New, c.Secret[:])
	m.Write([]byte(ContextDeviceLink))
	m.Write([]byte{0})
	m.Write(c.ID[:])
	m.Write(fp[:])
	return m.Sum(nil)
}

// VerifyLinkMAC compares mac with LinkMAC in constant time
// (CodeBadSignature).
func VerifyLinkMAC(c LinkCode, fp Fingerprint, mac []byte) error {
	if !hmac.Equal(mac, LinkMAC(c, fp)) {
		return fmt.Errorf("protocol: link mac does not match the code: %w", CodeBadSignature)
	}
	return nil
}

// approvalDigest is SHA-256(uint8 len(user) ‖ user ‖ link id ‖ fp).
func approvalDigest(user string, linkID []byte, fp Fingerprint) []byte {
	h := sha256.New()
	h.Write([]byte{byte(len(user))})
	h.Write([]byte(user))
	h.Write(linkID)
	h.Write(fp[:])
	return h.Sum(nil)
}

// SignDeviceApproval is E's approval of the new device with fingerprint fp
// joining user through link linkID:
//
//	RSASSA-PSS-Sign(key, 0x20 × 64 ‖ ContextDeviceApproval ‖ 0x00 ‖
//	                SHA-256(uint8 len(user) ‖ user ‖ link id ‖ fp))
func SignDeviceApproval(key *rsa.PrivateKey, user string, linkID []byte, fp Fingerprint) ([]byte, error) {
	return SignTranscript(key, ContextDeviceApproval, approvalDigest(user, linkID, fp))
}

// VerifyDeviceApproval checks a SignDeviceApproval signature
// (CodeBadSignature).
func VerifyDeviceApproval(pub *rsa.PublicKey, user string, linkID []byte, fp Fingerprint, sig []byte) error {
	return VerifyTranscript(pub, ContextDeviceApproval, approvalDigest(user, linkID, fp), sig)
}

// BundleFingerprint is the device fingerprint of a bundle published for
// user; the bundle's device id must parse (CodeBadKey otherwise).
func BundleFingerprint(user string, k *KeyBundle) (Fingerprint, error) {
	id, err := uuid.Parse(k.Device)
	if err != nil {
		return Fingerprint{}, fmt.Errorf("protocol: bundle device id: %w", CodeBadKey)
	}
	return DeviceFingerprint(user, id, k.Signing, k.Encryption), nil
}
