package server

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"math/big"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// craftedRSAKey returns the PKIX DER of an RSA public key with a random odd
// modulus of exactly bits bits and exponent e, as a hostile client would
// send it: no factors needed to make a server compute with it.
func craftedRSAKey(t *testing.T, bits, e int) []byte {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits-1)))
	if err != nil {
		t.Fatal(err)
	}
	n.SetBit(n, bits-1, 1)
	n.SetBit(n, 0, 1)
	der, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n, E: e})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// outsideKeyRule are session or bundle keys the RSA key rule refuses, and
// which a check of "at least 2048 bits" alone let through (but for 2047).
func outsideKeyRule(t *testing.T) []struct {
	name string
	der  []byte
} {
	return []struct {
		name string
		der  []byte
	}{
		{"16000 bits, e = 2^31-1", craftedRSAKey(t, 16000, 1<<31-1)},
		{"16000 bits", craftedRSAKey(t, 16000, protocol.RSAExponent)},
		{"e = 3", craftedRSAKey(t, 2048, 3)},
		{"e = 2^31-1", craftedRSAKey(t, 2048, 1<<31-1)},
		{"2047 bits", craftedRSAKey(t, 2047, protocol.RSAExponent)},
		{"2049 bits", craftedRSAKey(t, 2049, protocol.RSAExponent)},
		{"5000 bits", craftedRSAKey(t, 5000, protocol.RSAExponent)},
	}
}

// TestHandshakeRefusesKeysOutsideTheRule: a ClientHello whose session key
// breaks the RSA key rule gets an Alert bad_key before the server does any
// RSA work with it, over a real WebSocket.
func TestHandshakeRefusesKeysOutsideTheRule(t *testing.T) {
	ts := startServer(t)
	for _, tc := range outsideKeyRule(t) {
		t.Run(tc.name, func(t *testing.T) {
			h := &protocol.ClientHello{Version: protocol.Version, Suites: protocol.SupportedSuites, SessionKey: tc.der}
			_, _ = rand.Read(h.Random[:])
			ws := rawConn(t, ts)
			if err := ws.WriteMessage(websocket.BinaryMessage, h.Marshal()); err != nil {
				t.Fatal(err)
			}
			expectAlert(t, ws, protocol.CodeBadKey)
		})
	}
	// A 3072-bit session key (2048 is every other test's) still makes a
	// session; 4096 is left to pkg/protocol's test of the rule, being slow
	// to generate.
	c := ts.dial(t, func(cfg *client.Config) { cfg.SessionKeyBits = 3072 })
	if c.Session().ID == "" {
		t.Fatal("3072-bit session key: no session")
	}
}

// TestRegisterRefusesKeysOutsideTheRule: a key bundle with such a key, in
// either place, is refused with bad_key and nothing is stored.
func TestRegisterRefusesKeysOutsideTheRule(t *testing.T) {
	ts := authServer(t)
	alice := identity(t, "alice", 0)
	for _, tc := range outsideKeyRule(t) {
		for _, which := range []string{"signing", "encryption"} {
			t.Run(tc.name+"/"+which, func(t *testing.T) {
				c := ts.dial(t)
				b, err := alice.Bundle()
				if err != nil {
					t.Fatal(err)
				}
				if which == "signing" {
					b.Signing = tc.der
				} else {
					b.Encryption = tc.der
				}
				sig, _ := protocol.SignClientAuth(alice.Signing, c.ChannelBinding(), "alice")
				_, err = c.Request(ctxT(t), &protocol.Message{Type: protocol.MsgRegister, User: "alice", Password: "a fine password", Keys: b, Sig: sig})
				wantCode(t, err, protocol.CodeBadKey)
				if _, err := ts.store.UserByName(ctxT(t), "alice"); err == nil {
					t.Fatal("alice was registered with a key outside the rule")
				}
			})
		}
	}
}

// TestNewRefusesIdentityOutsideTheRule: a server does not start with an
// identity key its clients would refuse.
func TestNewRefusesIdentityOutsideTheRule(t *testing.T) {
	for _, tc := range []struct {
		name string
		der  []byte
	}{
		{"2560 bits", craftedRSAKey(t, 2560, protocol.RSAExponent)},
		{"e = 3", craftedRSAKey(t, 2048, 3)},
	} {
		pub, err := x509.ParsePKIXPublicKey(tc.der)
		if err != nil {
			t.Fatal(err)
		}
		// Only the public half is looked at before New refuses.
		_, err = New(Config{}, Deps{Identity: &rsa.PrivateKey{PublicKey: *pub.(*rsa.PublicKey)}})
		if !errors.Is(err, protocol.CodeBadKey) {
			t.Errorf("%s: New: %v, want an identity key error", tc.name, err)
		}
	}
}
