package protocol

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Proof of possession of an encryption key (docs/protocol.md §10.4). An
// RSA-OAEP key that may live in a browser as a non-extractable WebCrypto
// key cannot sign, so the client proves it holds the private half by
// decrypting: the server wraps ChallengeSize random bytes to the key
// (key_challenge → challenge), and the client answers, in the register or
// login that publishes the key, with an HMAC keyed by those bytes over
// this connection's exporter, the user name and the key.
const (
	// LabelKeyPossession is the RSA-OAEP label of a key challenge, distinct
	// from LabelWrap so that neither ciphertext can stand in for the other.
	LabelKeyPossession = "messenger v1 key possession"
	// ContextKeyPossession starts the HMAC input of a proof.
	ContextKeyPossession = "messenger v1 key possession proof"
	// ChallengeSize is the number of random bytes in a key challenge, and
	// the size of a proof (HMAC-SHA256).
	ChallengeSize = 32
)

// NewKeyChallenge draws ChallengeSize random bytes and wraps them to pub
// with RSA-OAEP-SHA256 and the label LabelKeyPossession. The server keeps
// challenge and sends wrapped.
func NewKeyChallenge(pub *rsa.PublicKey) (challenge, wrapped []byte, err error) {
	challenge = make([]byte, ChallengeSize)
	if _, err := rand.Read(challenge); err != nil {
		return nil, nil, fmt.Errorf("protocol: key challenge: %w", err)
	}
	wrapped, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, challenge, []byte(LabelKeyPossession))
	if err != nil {
		return nil, nil, fmt.Errorf("protocol: key challenge: %w", err)
	}
	return challenge, wrapped, nil
}

// OpenKeyChallenge decrypts a challenge's wrapped bytes with the private
// encryption key. Any failure is CodeMalformed, without saying why.
func OpenKeyChallenge(priv *rsa.PrivateKey, wrapped []byte) ([]byte, error) {
	out, err := rsa.DecryptOAEP(sha256.New(), nil, priv, wrapped, []byte(LabelKeyPossession))
	if err != nil || len(out) != ChallengeSize {
		return nil, fmt.Errorf("protocol: open key challenge: %w", CodeMalformed)
	}
	return out, nil
}

// KeyPossessionProof returns the proof that goes with a register or login
// publishing the encryption key encryption (PKIX DER) for user on the
// connection whose exporter is given:
//
//	HMAC-SHA256(challenge, ContextKeyPossession ‖ 0x00 ‖ exporter ‖
//	            uint32 len(user) ‖ user ‖ uint32 len(encryption) ‖ encryption)
//
// The exporter ties it to one connection, the user name and the key to one
// account and one key.
func KeyPossessionProof(challenge, exporter []byte, user string, encryption []byte) []byte {
	m := hmac.New(sha256.New, challenge)
	m.Write([]byte(ContextKeyPossession))
	m.Write([]byte{0})
	m.Write(exporter)
	for _, part := range [][]byte{[]byte(user), encryption} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		m.Write(n[:])
		m.Write(part)
	}
	return m.Sum(nil)
}

// VerifyKeyPossession compares proof with KeyPossessionProof in constant
// time. A mismatch is CodeBadKey.
func VerifyKeyPossession(challenge, exporter []byte, user string, encryption, proof []byte) error {
	if !hmac.Equal(proof, KeyPossessionProof(challenge, exporter, user, encryption)) {
		return fmt.Errorf("protocol: proof of possession of the encryption key does not match: %w", CodeBadKey)
	}
	return nil
}
