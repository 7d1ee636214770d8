package protocol

import (
	"crypto"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"hash"
)

// Context strings. Each signature and derived key is bound to one of them,
// so a value made for one purpose is never valid for another.
const (
	// ContextServerSignature prefixes the content of ServerVerify.
	ContextServerSignature = "messenger v1 server signature"
	// LabelWrap is the RSA-OAEP label used to wrap the session secret.
	LabelWrap   = "messenger v1 session secret"
	labelPrefix = "messenger v1 "
	extractSalt = "messenger v1 extract"
)

// The RSA key rule. Every RSA public key the protocol accepts — a client's
// session key, the server's identity key, both keys of a key bundle, the
// key of a key challenge — has the public exponent RSAExponent and a
// modulus of exactly one of RSAKeySizes bits. The rule bounds the work a
// peer can make the other side do with a key before anything is proved: a
// huge modulus or exponent would make each encryption or verification
// arbitrarily slow. CheckRSAPublicKey applies it, ParseRSAPublicKey parses
// and applies it.
const (
	// RSAExponent is the only public exponent accepted: 65537 (F4), what
	// every common RSA implementation generates.
	RSAExponent = 65537
	// MinRSABits is the smallest of RSAKeySizes.
	MinRSABits = 2048
	// MaxRSABits is the largest of RSAKeySizes.
	MaxRSABits = 4096
)

// RSAKeySizes lists the only RSA modulus sizes, in bits, that are
// accepted. An array, so that no caller can change the rule by appending
// to it.
var RSAKeySizes = [...]int{2048, 3072, 4096}

// ValidRSAKeySize reports whether bits is one of RSAKeySizes: the sizes a
// client or server may generate keys of.
func ValidRSAKeySize(bits int) bool {
	for _, b := range RSAKeySizes {
		if bits == b {
			return true
		}
	}
	return false
}

// CheckRSAPublicKey applies the RSA key rule to pub: public exponent
// RSAExponent, an odd modulus of exactly one of RSAKeySizes bits. A
// failure is CodeBadKey.
func CheckRSAPublicKey(pub *rsa.PublicKey) error {
	if pub == nil || pub.N == nil {
		return fmt.Errorf("protocol: RSA key missing: %w", CodeBadKey)
	}
	if pub.E != RSAExponent {
		return fmt.Errorf("protocol: RSA public exponent %d, want %d: %w", pub.E, RSAExponent, CodeBadKey)
	}
	if bits := pub.N.BitLen(); !ValidRSAKeySize(bits) {
		return fmt.Errorf("protocol: RSA key of %d bits, want one of %v: %w", bits, RSAKeySizes, CodeBadKey)
	}
	if pub.N.Bit(0) != 1 {
		return fmt.Errorf("protocol: RSA modulus is even: %w", CodeBadKey)
	}
	return nil
}

// Transcript is the running SHA-256 hash of every handshake frame sent and
// received, in order, type byte included. The read and write helpers of
// both handshakes feed it, so no step can forget it.
type Transcript struct{ h hash.Hash }

// NewTranscript returns an empty transcript.
func NewTranscript() *Transcript { return &Transcript{h: sha256.New()} }

// Add appends one frame.
func (t *Transcript) Add(frame []byte) { t.h.Write(frame) }

// Sum returns the hash of the frames so far.
func (t *Transcript) Sum() []byte { return t.h.Sum(nil) }

// SignedContent returns what an RSA-PSS handshake signature covers: 64
// bytes of 0x20, the context string, one zero byte and the transcript hash
// (the layout of TLS 1.3's CertificateVerify, RFC 8446 section 4.4.3).
func SignedContent(context string, transcriptHash []byte) []byte {
	out := make([]byte, 0, 64+len(context)+1+len(transcriptHash))
	for range 64 {
		out = append(out, 0x20)
	}
	out = append(out, context...)
	out = append(out, 0)
	return append(out, transcriptHash...)
}

// PSSOptions are the RSA-PSS parameters of every signature: SHA-256 and a
// salt as long as the hash.
var PSSOptions = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}

// SignTranscript signs SignedContent(context, transcriptHash) with key.
func SignTranscript(key *rsa.PrivateKey, context string, transcriptHash []byte) ([]byte, error) {
	d := sha256.Sum256(SignedContent(context, transcriptHash))
	sig, err := rsa.SignPSS(rand.Reader, key, crypto.SHA256, d[:], PSSOptions)
	if err != nil {
		return nil, fmt.Errorf("protocol: sign transcript: %w", err)
	}
	return sig, nil
}

// VerifyTranscript checks a SignTranscript signature. Any failure is
// CodeBadSignature.
func VerifyTranscript(pub *rsa.PublicKey, context string, transcriptHash, sig []byte) error {
	d := sha256.Sum256(SignedContent(context, transcriptHash))
	if err := rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, PSSOptions); err != nil {
		return fmt.Errorf("protocol: transcript signature: %w", CodeBadSignature)
	}
	return nil
}

// WrapSecret encrypts the session secret to the client's session key with
// RSA-OAEP-SHA256 and label LabelWrap.
func WrapSecret(pub *rsa.PublicKey, secret []byte) ([]byte, error) {
	out, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, secret, []byte(LabelWrap))
	if err != nil {
		return nil, fmt.Errorf("protocol: wrap secret: %w", err)
	}
	return out, nil
}

// UnwrapSecret reverses WrapSecret. Any failure is CodeMalformed, without
// saying why (no padding oracle).
func UnwrapSecret(priv *rsa.PrivateKey, wrapped []byte) ([]byte, error) {
	out, err := rsa.DecryptOAEP(sha256.New(), nil, priv, wrapped, []byte(LabelWrap))
	if err != nil || len(out) != SecretSize {
		return nil, fmt.Errorf("protocol: unwrap secret: %w", CodeMalformed)
	}
	return out, nil
}

// ParseRSAPublicKey parses a PKIX DER public key of at most
// MaxPublicKeySize bytes and checks that it is RSA and follows the RSA key
// rule (CheckRSAPublicKey). Failures are CodeBadKey.
func ParseRSAPublicKey(der []byte) (*rsa.PublicKey, error) {
	if len(der) > MaxPublicKeySize {
		return nil, fmt.Errorf("protocol: public key of %d bytes, limit %d: %w", len(der), MaxPublicKeySize, CodeBadKey)
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("protocol: parse public key: %w", CodeBadKey)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("protocol: public key is %T, not RSA: %w", k, CodeBadKey)
	}
	if err := CheckRSAPublicKey(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// Fingerprint is SHA-256 of a public key's PKIX DER encoding.
type Fingerprint [sha256.Size]byte

// FingerprintOf returns the fingerprint of a PKIX DER public key.
func FingerprintOf(der []byte) Fingerprint { return sha256.Sum256(der) }

// String returns the fingerprint as lower-case hex.
func (f Fingerprint) String() string { return hex.EncodeToString(f[:]) }

// ParseFingerprint parses the hex form String returns (colons and spaces
// between digits are ignored, so copied forms like "ab:cd…" work).
func ParseFingerprint(s string) (Fingerprint, error) {
	var f Fingerprint
	clean := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != ':' && c != ' ' {
			clean = append(clean, c)
		}
	}
	if len(clean) != 2*len(f) {
		return Fingerprint{}, fmt.Errorf("protocol: fingerprint %q: want 64 hex digits", s)
	}
	n, err := hex.Decode(f[:], clean)
	if err != nil || n != len(f) {
		return Fingerprint{}, fmt.Errorf("protocol: fingerprint %q: want 64 hex digits", s)
	}
	return f, nil
}

// KeySchedule derives every key of a connection from the session secret.
// master = HKDF-Extract(SHA-256, salt "messenger v1 extract", secret); each
// value is HKDF-Expand(master, "messenger v1 " + label + 0x00 + transcript
// hash, length).
type KeySchedule struct {
	master []byte
}

// NewKeySchedule extracts the master key from the session secret.
func NewKeySchedule(secret []byte) (*KeySchedule, error) {
	m, err := hkdf.Extract(sha256.New, secret, []byte(extractSalt))
	if err != nil {
		return nil, fmt.Errorf("protocol: extract: %w", err)
	}
	return &KeySchedule{master: m}, nil
}

// Expand derives length bytes for label bound to a transcript hash.
func (k *KeySchedule) Expand(label string, transcriptHash []byte, length int) []byte {
	info := make([]byte, 0, len(labelPrefix)+len(label)+1+len(transcriptHash))
	info = append(info, labelPrefix...)
	info = append(info, label...)
	info = append(info, 0)
	info = append(info, transcriptHash...)
	out, err := hkdf.Expand(sha256.New, k.master, string(info), length)
	if err != nil {
		// Only possible for length > 255*32, which no caller asks for.
		panic("protocol: hkdf expand: " + err.Error())
	}
	return out
}

// Labels of the key schedule.
const (
	LabelServerFinished = "server finished"
	LabelClientFinished = "client finished"
	LabelClientWrite    = "c2s key"
	LabelServerWrite    = "s2c key"
	LabelClientIV       = "c2s iv"
	LabelServerIV       = "s2c iv"
	LabelExporter       = "exporter"
)

// FinishedMAC returns HMAC-SHA256 keyed with the Finished key of label
// (bound to keyTranscript, the hash after ServerHello) over
// finishedTranscript, the hash of everything before this Finished.
func (k *KeySchedule) FinishedMAC(label string, keyTranscript, finishedTranscript []byte) [FinishedSize]byte {
	key := k.Expand(label, keyTranscript, sha256.Size)
	m := hmac.New(sha256.New, key)
	m.Write(finishedTranscript)
	var out [FinishedSize]byte
	copy(out[:], m.Sum(nil))
	return out
}

// TrafficKeys derives the record layers of both directions from the hash
// after ServerHello. isServer picks which one seals and which one opens.
func (k *KeySchedule) TrafficKeys(suite Suite, keyTranscript []byte, isServer bool) (seal, open *RecordLayer, err error) {
	c2s, err := k.direction(suite, LabelClientWrite, LabelClientIV, keyTranscript)
	if err != nil {
		return nil, nil, err
	}
	s2c, err := k.direction(suite, LabelServerWrite, LabelServerIV, keyTranscript)
	if err != nil {
		return nil, nil, err
	}
	if isServer {
		return s2c, c2s, nil
	}
	return c2s, s2c, nil
}

func (k *KeySchedule) direction(suite Suite, keyLabel, ivLabel string, th []byte) (*RecordLayer, error) {
	switch suite {
	case SuiteAES256GCM:
		return NewGCMRecordLayer(k.Expand(keyLabel, th, 32), k.Expand(ivLabel, th, 12))
	case SuiteAES256CBCHMAC:
		km := k.Expand(keyLabel, th, 64)
		return NewCBCRecordLayer(km[:32], km[32:])
	}
	return nil, fmt.Errorf("protocol: suite %#04x: %w", uint16(suite), CodeNoCommonSuite)
}

// Exporter returns the channel-binding value of a finished handshake:
// Expand("exporter", hash of the whole handshake, 32). Later protocol steps
// (user authentication) sign it to bind themselves to this connection.
func (k *KeySchedule) Exporter(fullTranscript []byte) []byte {
	return k.Expand(LabelExporter, fullTranscript, 32)
}
