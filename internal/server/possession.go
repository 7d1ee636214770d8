package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"time"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Proof of possession of an encryption key (docs/protocol.md §10.4): before
// a register, or a login that publishes new keys, the client asks for a
// key_challenge to the bundle's encryption key; the server wraps random
// bytes to that key and remembers them, bound to the key, on this
// connection only. The request then carries an HMAC keyed by those bytes
// over this connection's exporter, the user name and the key: only a
// holder of the private key can make it, and it is worth nothing on any
// other connection, for any other key or user, or a second time.

// keyChallengeTTL is how long a challenge can be answered.
const keyChallengeTTL = 2 * time.Minute

// keyChallenge is a connection's one outstanding challenge.
type keyChallenge struct {
	keyHash   [sha256.Size]byte // SHA-256 of the challenged key's PKIX DER
	challenge []byte            // the random bytes wrapped to that key
	expires   time.Time
}

// keyChallenge answers a key_challenge request. A new challenge replaces
// the connection's previous one.
func (c *peer) keyChallenge(_ context.Context, m *protocol.Message) error {
	pub, err := protocol.ParseRSAPublicKey(m.Key)
	if err != nil {
		return err
	}
	challenge, wrapped, err := protocol.NewKeyChallenge(pub)
	if err != nil {
		return err
	}
	c.challenge = &keyChallenge{keyHash: sha256.Sum256(m.Key), challenge: challenge, expires: time.Now().Add(keyChallengeTTL)}
	c.reply(&protocol.Message{Type: protocol.MsgChallenge, Ref: m.ID, Wrapped: wrapped, TS: time.Now().UnixMilli()})
	return nil
}

// takeChallenge removes the connection's challenge and returns it (nil if
// there is none): every register, and every login with keys, uses up the
// challenge whether it then succeeds or not.
func (c *peer) takeChallenge() *keyChallenge {
	ch := c.challenge
	c.challenge = nil
	return ch
}

// verify checks a request's proof of possession of encryption (PKIX DER)
// for user on the connection with this exporter. Every failure is
// CodeBadKey.
func (ch *keyChallenge) verify(now time.Time, exporter []byte, user string, encryption, proof []byte) error {
	switch {
	case len(proof) == 0:
		return fmt.Errorf("proof of possession of the encryption key missing: ask with key_challenge first: %w", protocol.CodeBadKey)
	case ch == nil:
		return fmt.Errorf("no key challenge on this connection, or it was used: ask with key_challenge first: %w", protocol.CodeBadKey)
	case now.After(ch.expires):
		return fmt.Errorf("key challenge expired: ask again: %w", protocol.CodeBadKey)
	}
	h := sha256.Sum256(encryption)
	if subtle.ConstantTimeCompare(h[:], ch.keyHash[:]) != 1 {
		return fmt.Errorf("the key challenge was for another encryption key: %w", protocol.CodeBadKey)
	}
	if err := protocol.VerifyKeyPossession(ch.challenge, exporter, user, encryption, proof); err != nil {
		return fmt.Errorf("proof of possession of the encryption key does not match: %w", protocol.CodeBadKey)
	}
	return nil
}
