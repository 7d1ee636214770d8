package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

var (
	fakeKeyOnce sync.Once
	fakeKey     *rsa.PrivateKey
)

func fakeIdentity(t *testing.T) (*rsa.PrivateKey, []byte) {
	t.Helper()
	fakeKeyOnce.Do(func() {
		var err error
		if fakeKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	der, err := x509.MarshalPKIXPublicKey(&fakeKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return fakeKey, der
}

// fakeServer answers a ClientHello with a ServerHello whose wrapped_secret
// is wrapped(session key) and a ServerVerify whose signature is
// sign(transcript hash after ServerHello), then reports the code of the
// Alert the client sends back.
func fakeServer(t *testing.T, wrapped func(*rsa.PublicKey) []byte, sign func(th []byte) []byte) (url string, alerts <-chan protocol.Code) {
	t.Helper()
	_, der := fakeIdentity(t)
	out := make(chan protocol.Code, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, chFrame, err := ws.ReadMessage()
		if err != nil {
			return
		}
		ch, err := protocol.UnmarshalClientHello(chFrame)
		if err != nil {
			return
		}
		k, err := x509.ParsePKIXPublicKey(ch.SessionKey)
		if err != nil {
			return
		}
		sh := &protocol.ServerHello{Version: protocol.Version, Suite: ch.Suites[0], IdentityKey: der, WrappedSecret: wrapped(k.(*rsa.PublicKey))}
		_, _ = rand.Read(sh.SessionID[:])
		shFrame := sh.Marshal()
		h := sha256.New()
		h.Write(chFrame)
		h.Write(shFrame)
		for _, f := range [][]byte{shFrame, (&protocol.ServerVerify{Signature: sign(h.Sum(nil))}).Marshal()} {
			if err := ws.WriteMessage(websocket.BinaryMessage, f); err != nil {
				return
			}
		}
		_, frame, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if a, err := protocol.UnmarshalAlert(frame); err == nil {
			out <- a.Code
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), out
}

// TestHandshakeVerifiesBeforeUnwrapping: the client checks ServerVerify
// and the pin before it decrypts wrapped_secret. A ServerHello with
// garbage in wrapped_secret is reported as the forgery it is
// (bad_signature), not as an undecryptable secret (malformed), which it
// would be if the client had run RSA-OAEP on it first.
func TestHandshakeVerifiesBeforeUnwrapping(t *testing.T) {
	key, der := fakeIdentity(t)
	garbage := func(pub *rsa.PublicKey) []byte {
		b := make([]byte, pub.Size())
		_, _ = rand.Read(b)
		return b
	}
	wrapOK := func(pub *rsa.PublicKey) []byte {
		w, err := protocol.WrapSecret(pub, make([]byte, protocol.SecretSize))
		if err != nil {
			panic(err)
		}
		return w
	}
	forged := func([]byte) []byte {
		b := make([]byte, key.Size())
		_, _ = rand.Read(b)
		return b
	}
	signed := func(th []byte) []byte {
		sig, err := protocol.SignTranscript(key, protocol.ContextServerSignature, th)
		if err != nil {
			panic(err)
		}
		return sig
	}
	var other protocol.Fingerprint
	other[0] = 1
	cases := []struct {
		name    string
		wrapped func(*rsa.PublicKey) []byte
		sign    func([]byte) []byte
		pin     protocol.Fingerprint
		want    protocol.Code
	}{
		{"forged signature, garbage secret", garbage, forged, protocol.FingerprintOf(der), protocol.CodeBadSignature},
		{"forged signature, good secret", wrapOK, forged, protocol.FingerprintOf(der), protocol.CodeBadSignature},
		{"valid signature, other pin, garbage secret", garbage, signed, other, protocol.CodeBadSignature},
		// Once the server proved itself, an undecryptable secret is what
		// it always was.
		{"valid signature, pinned, garbage secret", garbage, signed, protocol.FingerprintOf(der), protocol.CodeMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url, alerts := fakeServer(t, tc.wrapped, tc.sign)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := Dial(ctx, Config{URL: url, VerifyIdentity: Pin(tc.pin)})
			if !errors.Is(err, tc.want) {
				t.Fatalf("dial: %v (code %s), want %s", err, protocol.CodeOf(err), tc.want)
			}
			select {
			case got := <-alerts:
				if got != tc.want {
					t.Fatalf("the client's alert says %s, want %s", got, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no alert from the client")
			}
		})
	}
}

// TestDialRefusesKeySizesOutsideTheRule: a session key the server would
// refuse is refused before anything is sent.
func TestDialRefusesKeySizesOutsideTheRule(t *testing.T) {
	for _, bits := range []int{1024, 2047, 2560, 8192} {
		_, err := Dial(context.Background(), Config{URL: "ws://127.0.0.1:1/ws", VerifyIdentity: Pin(protocol.Fingerprint{}), SessionKeyBits: bits})
		if err == nil || !strings.Contains(err.Error(), "SessionKeyBits") {
			t.Errorf("%d-bit session key: %v", bits, err)
		}
		if _, err := NewIdentity("alice", bits); err == nil {
			t.Errorf("NewIdentity made %d-bit keys", bits)
		}
	}
}

// TestDialSendsTheSuppliedSessionKey: a Config.SessionKey is the key the
// ClientHello carries (nothing is generated), and a key that breaks the
// RSA key rule is refused before anything is sent.
func TestDialSendsTheSuppliedSessionKey(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *rsa.PublicKey, 1)
	url, _ := fakeServer(t, func(k *rsa.PublicKey) []byte {
		got <- k
		return []byte("not a wrapped secret")
	}, func([]byte) []byte { return []byte("not a signature") })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Dial(ctx, Config{URL: url, VerifyIdentity: Pin(protocol.Fingerprint{}), SessionKey: key}); err == nil {
		t.Fatal("dial succeeded against a server with a bad signature")
	}
	select {
	case k := <-got:
		if !k.Equal(&key.PublicKey) {
			t.Fatal("the ClientHello carried another session key than the one supplied")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server saw no ClientHello")
	}

	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Dial(ctx, Config{URL: "ws://127.0.0.1:1/ws", VerifyIdentity: Pin(protocol.Fingerprint{}), SessionKey: small})
	if err == nil || !strings.Contains(err.Error(), "Config.SessionKey") {
		t.Fatalf("1024-bit supplied key: %v, want it refused by name", err)
	}
}

// The parsed identity key is reused only for the very same DER bytes: a
// different key is parsed anew, and one that breaks the RSA key rule is
// refused even right after a good one was parsed.
func TestParseIdentityReusesOnlyTheSameKey(t *testing.T) {
	good, goodDER := fakeIdentity(t)
	k1, err := parseIdentity(goodDER)
	if err != nil || k1.N.Cmp(good.N) != 0 {
		t.Fatalf("good key: %v", err)
	}
	if k2, err := parseIdentity(bytes.Clone(goodDER)); err != nil || k2 != k1 {
		t.Errorf("the same DER again: %p, %v; want the parsed %p", k2, err, k1)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallDER, err := x509.MarshalPKIXPublicKey(&small.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseIdentity(smallDER); !errors.Is(err, protocol.CodeBadKey) {
		t.Errorf("a 1,024-bit identity after a good one: %v, want bad_key", err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherDER, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	if k3, err := parseIdentity(otherDER); err != nil || k3.N.Cmp(other.N) != 0 {
		t.Errorf("another key: %v", err)
	}
	// A change to the cached key's DER bytes by the caller cannot change
	// what is cached.
	again := bytes.Clone(otherDER)
	k4, _ := parseIdentity(again)
	again[len(again)-1] ^= 1
	if k5, err := parseIdentity(otherDER); err != nil || k5 != k4 {
		t.Errorf("cached key changed through the caller's slice: %v", err)
	}
}
