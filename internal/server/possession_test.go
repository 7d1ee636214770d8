package server

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// openChallenge asks c for a key challenge to key's public half, as a
// client does, and opens it. It returns the challenge bytes and the key's
// PKIX DER.
func openChallenge(t *testing.T, c *client.Conn, key *rsa.PrivateKey) (challenge, der []byte) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Request(ctxT(t), &protocol.Message{Type: protocol.MsgKeyChallenge, Key: der})
	if err != nil {
		t.Fatalf("key_challenge: %v", err)
	}
	if r.Type != protocol.MsgChallenge || r.Ref == "" {
		t.Fatalf("key_challenge answered %+v", r)
	}
	challenge, err = protocol.OpenKeyChallenge(key, r.Wrapped)
	if err != nil {
		t.Fatal(err)
	}
	return challenge, der
}

// proofOn returns a valid proof for id's encryption key on c.
func proofOn(t *testing.T, c *client.Conn, id *client.Identity) []byte {
	t.Helper()
	ch, der := openChallenge(t, c, id.Encryption)
	return protocol.KeyPossessionProof(ch, c.ChannelBinding(), id.User, der)
}

// accountRequest builds a register (or, with typ, a login publishing id's
// keys) that is right in every respect but the proof, which is given.
func accountRequest(t *testing.T, c *client.Conn, typ string, id *client.Identity, password string, proof []byte) *protocol.Message {
	t.Helper()
	b, err := id.Bundle()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := protocol.SignClientAuth(id.Signing, c.ChannelBinding(), id.User)
	if err != nil {
		t.Fatal(err)
	}
	return &protocol.Message{Type: typ, User: id.User, Password: password, Keys: b, Sig: sig, Proof: proof}
}

// TestRegisterNeedsProofOfPossession: register publishes an encryption key
// only with a proof, made on this connection, for this key and this user,
// from a challenge used once. Every failure is bad_key and stores nothing.
func TestRegisterNeedsProofOfPossession(t *testing.T) {
	ts := authServer(t)
	alice, other := identity(t, "alice", 0), identity(t, "alice", 1)
	const pw = "a fine password"
	notRegistered := func(t *testing.T) {
		t.Helper()
		if _, err := ts.store.UserByName(ctxT(t), "alice"); err == nil {
			t.Fatal("alice was registered without a valid proof")
		}
	}
	cases := []struct {
		name  string
		proof func(t *testing.T, c *client.Conn) []byte
	}{
		{"no proof", func(*testing.T, *client.Conn) []byte { return nil }},
		{"no proof after a challenge", func(t *testing.T, c *client.Conn) []byte {
			openChallenge(t, c, alice.Encryption)
			return nil
		}},
		{"proof without a challenge", func(*testing.T, *client.Conn) []byte {
			p := make([]byte, protocol.ChallengeSize)
			_, _ = rand.Read(p)
			return p
		}},
		{"proof for another key", func(t *testing.T, c *client.Conn) []byte {
			// Challenged and proved for another key than the bundle's.
			ch, der := openChallenge(t, c, other.Encryption)
			return protocol.KeyPossessionProof(ch, c.ChannelBinding(), "alice", der)
		}},
		{"proof naming another key", func(t *testing.T, c *client.Conn) []byte {
			// The bundle's key was challenged, but the HMAC covers another.
			ch, _ := openChallenge(t, c, alice.Encryption)
			der, _ := x509.MarshalPKIXPublicKey(&other.Encryption.PublicKey)
			return protocol.KeyPossessionProof(ch, c.ChannelBinding(), "alice", der)
		}},
		{"proof for another user", func(t *testing.T, c *client.Conn) []byte {
			ch, der := openChallenge(t, c, alice.Encryption)
			return protocol.KeyPossessionProof(ch, c.ChannelBinding(), "bob", der)
		}},
		{"challenge not opened", func(t *testing.T, c *client.Conn) []byte {
			// What a client without the private key can do: guess.
			_, der := openChallenge(t, c, alice.Encryption)
			return protocol.KeyPossessionProof(make([]byte, protocol.ChallengeSize), c.ChannelBinding(), "alice", der)
		}},
		{"proof replayed on another connection", func(t *testing.T, c *client.Conn) []byte {
			// Made on a connection of its own, for the same key and user;
			// this connection has its own challenge for the same key.
			elsewhere := ts.dial(t)
			p := proofOn(t, elsewhere, alice)
			openChallenge(t, c, alice.Encryption)
			return p
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.dial(t)
			_, err := c.Request(ctxT(t), accountRequest(t, c, protocol.MsgRegister, alice, pw, tc.proof(t, c)))
			wantCode(t, err, protocol.CodeBadKey)
			notRegistered(t)
		})
	}

	t.Run("challenge used once", func(t *testing.T) {
		// A register refused for another reason (the name is taken) uses
		// up the challenge: the same proof is refused the second time.
		if _, err := ts.dial(t).Register(ctxT(t), identity(t, "bob", 2), pw); err != nil {
			t.Fatal(err)
		}
		bob := &client.Identity{User: "bob", Device: uuid.New(), Signing: alice.Signing, Encryption: alice.Encryption}
		c := ts.dial(t)
		proof := proofOn(t, c, bob)
		_, err := c.Request(ctxT(t), accountRequest(t, c, protocol.MsgRegister, bob, pw, proof))
		wantCode(t, err, protocol.CodeConflict)
		_, err = c.Request(ctxT(t), accountRequest(t, c, protocol.MsgRegister, bob, pw, proof))
		wantCode(t, err, protocol.CodeBadKey)
	})

	t.Run("a new challenge replaces the old", func(t *testing.T) {
		c := ts.dial(t)
		old := proofOn(t, c, alice)
		openChallenge(t, c, alice.Encryption)
		_, err := c.Request(ctxT(t), accountRequest(t, c, protocol.MsgRegister, alice, pw, old))
		wantCode(t, err, protocol.CodeBadKey)
		notRegistered(t)
	})

	// The session goes on after all that, and an honest register works.
	c := ts.dial(t)
	r, err := c.Request(ctxT(t), accountRequest(t, c, protocol.MsgRegister, alice, pw, proofOn(t, c, alice)))
	if err != nil || r.Type != protocol.MsgAuthed || r.Device != alice.Device.String() {
		t.Fatalf("honest register: %+v, %v", r, err)
	}
}

// TestLoginWithNewKeysNeedsProofOfPossession: publishing keys at login
// needs the proof too; a missing or wrong one is bad_key, not a failed
// password, and a proof works once.
func TestLoginWithNewKeysNeedsProofOfPossession(t *testing.T) {
	ts := authServer(t, func(c *Config, _ *Deps) { c.LoginFailuresPerUser = 1 })
	alice, device := identity(t, "alice", 0), identity(t, "alice", 1)
	const pw = "alice password"
	if _, err := ts.dial(t).Register(ctxT(t), alice, pw); err != nil {
		t.Fatal(err)
	}
	c := ts.dial(t)
	_, err := c.Request(ctxT(t), accountRequest(t, c, protocol.MsgLogin, device, pw, nil))
	wantCode(t, err, protocol.CodeBadKey)
	// Another connection's proof for the same key and user.
	p := proofOn(t, ts.dial(t), device)
	_, err = c.Request(ctxT(t), accountRequest(t, c, protocol.MsgLogin, device, pw, p))
	wantCode(t, err, protocol.CodeBadKey)
	// Neither counted as a failed password (the limit here is one), and
	// the published keys are still alice's first ones.
	if _, err := ts.dial(t).Auth(ctxT(t), alice); err != nil {
		t.Fatalf("alice's keys after refused key changes: %v", err)
	}

	proof := proofOn(t, c, device)
	r, err := c.Request(ctxT(t), accountRequest(t, c, protocol.MsgLogin, device, pw, proof))
	if err != nil || r.Device != device.Device.String() {
		t.Fatalf("login with new keys and a proof: %+v, %v", r, err)
	}
	// The same proof again: the challenge is gone.
	_, err = c.Request(ctxT(t), accountRequest(t, c, protocol.MsgLogin, device, pw, proof))
	wantCode(t, err, protocol.CodeBadKey)
	// A plain login needs no proof and uses no challenge.
	if _, err := ts.dial(t).Login(ctxT(t), device, pw, false); err != nil {
		t.Fatalf("plain login: %v", err)
	}
	// And the client library runs the challenge by itself.
	third := identity(t, "alice", 2)
	r, err = ts.dial(t).Login(ctxT(t), third, pw, true)
	if err != nil || r.Device != third.Device.String() {
		t.Fatalf("client Login publishing keys: %+v, %v", r, err)
	}
}

// TestKeyChallengeRequest: the challenged key follows the RSA key rule,
// and a request without a key is malformed.
func TestKeyChallengeRequest(t *testing.T) {
	ts := authServer(t)
	c := ts.dial(t)
	_, err := c.Request(ctxT(t), &protocol.Message{Type: protocol.MsgKeyChallenge, Key: craftedRSAKey(t, 16000, 1<<31-1)})
	wantCode(t, err, protocol.CodeBadKey)
	_, err = c.Request(ctxT(t), &protocol.Message{Type: protocol.MsgKeyChallenge, Key: []byte("not a key")})
	wantCode(t, err, protocol.CodeBadKey)
	_, err = c.Request(ctxT(t), &protocol.Message{Type: protocol.MsgKeyChallenge})
	wantCode(t, err, protocol.CodeBadRequest)
	// The wrapped bytes open only with the key's label: they are no
	// session secret.
	alice := identity(t, "alice", 0)
	der, _ := x509.MarshalPKIXPublicKey(&alice.Encryption.PublicKey)
	r, err := c.Request(ctxT(t), &protocol.Message{Type: protocol.MsgKeyChallenge, Key: der})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := protocol.UnwrapSecret(alice.Encryption, r.Wrapped); err == nil {
		t.Fatal("a key challenge opened as a session secret")
	}
	if c.Err() != nil {
		t.Fatalf("connection ended: %v", c.Err())
	}
}

// TestKeyChallengeExpires: a challenge answers for two minutes only.
func TestKeyChallengeExpires(t *testing.T) {
	alice := identity(t, "alice", 0)
	der, _ := x509.MarshalPKIXPublicKey(&alice.Encryption.PublicKey)
	exporter := make([]byte, 32)
	ch, _, err := protocol.NewKeyChallenge(&alice.Encryption.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	kc := &keyChallenge{challenge: ch, expires: now.Add(keyChallengeTTL)}
	kc.keyHash = sha256.Sum256(der)
	proof := protocol.KeyPossessionProof(ch, exporter, "alice", der)
	if err := kc.verify(now.Add(keyChallengeTTL-time.Second), exporter, "alice", der, proof); err != nil {
		t.Fatalf("within the time: %v", err)
	}
	err = kc.verify(now.Add(keyChallengeTTL+time.Second), exporter, "alice", der, proof)
	if protocol.CodeOf(err) != protocol.CodeBadKey {
		t.Fatalf("after the time: %v, want bad_key", err)
	}
}
