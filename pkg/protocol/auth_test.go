package protocol_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"strings"
	"testing"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

func TestKeyBundle(t *testing.T) {
	signing, encryption := rsaKeys(t)
	kb, err := protocol.NewKeyBundle("alice", signing, &encryption.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kb.Verify("alice")
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !pub.Equal(&signing.PublicKey) {
		t.Fatal("Verify returned another key than the signing key")
	}
	// A bundle survives its JSON encoding inside a message.
	enc, err := (&protocol.Message{Type: protocol.MsgKeys, Keys: kb}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	m, err := protocol.DecodeMessage(enc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Keys.Verify("alice"); err != nil {
		t.Fatalf("verify after JSON: %v", err)
	}

	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	flip := func(b []byte) []byte {
		b = bytes.Clone(b)
		b[len(b)/2] ^= 1
		return b
	}
	cases := []struct {
		name string
		user string
		kb   *protocol.KeyBundle
		want protocol.Code
	}{
		{"another user", "bob", kb, protocol.CodeBadSignature},
		{"user with a suffix", "alice2", kb, protocol.CodeBadSignature},
		{"keys swapped", "alice", &protocol.KeyBundle{Signing: kb.Encryption, Encryption: kb.Signing, SelfSignature: kb.SelfSignature}, protocol.CodeBadSignature},
		{"encryption key replaced", "alice", &protocol.KeyBundle{Signing: kb.Signing, Encryption: kb.Signing, SelfSignature: kb.SelfSignature}, protocol.CodeBadSignature},
		{"signature altered", "alice", &protocol.KeyBundle{Signing: kb.Signing, Encryption: kb.Encryption, SelfSignature: flip(kb.SelfSignature)}, protocol.CodeBadSignature},
		{"no signature", "alice", &protocol.KeyBundle{Signing: kb.Signing, Encryption: kb.Encryption}, protocol.CodeBadSignature},
		{"nil bundle", "alice", nil, protocol.CodeBadKey},
		{"empty bundle", "alice", &protocol.KeyBundle{}, protocol.CodeBadKey},
		{"ECDSA signing key", "alice", &protocol.KeyBundle{Signing: ecDER, Encryption: kb.Encryption, SelfSignature: kb.SelfSignature}, protocol.CodeBadKey},
		{"ECDSA encryption key", "alice", &protocol.KeyBundle{Signing: kb.Signing, Encryption: ecDER, SelfSignature: kb.SelfSignature}, protocol.CodeBadKey},
		{"oversize key", "alice", &protocol.KeyBundle{Signing: make([]byte, protocol.MaxPublicKeySize+1), Encryption: kb.Encryption, SelfSignature: kb.SelfSignature}, protocol.CodeBadKey},
		{"oversize signature", "alice", &protocol.KeyBundle{Signing: kb.Signing, Encryption: kb.Encryption, SelfSignature: make([]byte, protocol.MaxSignature+1)}, protocol.CodeBadKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.kb.Verify(tc.user)
			wantCode(t, err, tc.want)
		})
	}
}

func TestUserFingerprint(t *testing.T) {
	signing, encryption := rsaKeys(t)
	kb, err := protocol.NewKeyBundle("alice", signing, &encryption.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	fp := kb.Fingerprint("alice")
	if fp != protocol.UserFingerprint("alice", kb.Signing, kb.Encryption) {
		t.Fatal("KeyBundle.Fingerprint differs from UserFingerprint")
	}
	// Every input counts, and the length prefixes keep the boundaries
	// between them unambiguous.
	others := map[string]protocol.Fingerprint{
		"other user":         protocol.UserFingerprint("bob", kb.Signing, kb.Encryption),
		"keys swapped":       protocol.UserFingerprint("alice", kb.Encryption, kb.Signing),
		"byte moved to user": protocol.UserFingerprint("alice"+string(kb.Signing[:1]), kb.Signing[1:], kb.Encryption),
		"byte moved between": protocol.UserFingerprint("alice", kb.Signing[:len(kb.Signing)-1], append(kb.Signing[len(kb.Signing)-1:], kb.Encryption...)),
	}
	for name, o := range others {
		if o == fp {
			t.Errorf("%s: same fingerprint", name)
		}
	}
	if _, err := protocol.ParseFingerprint(fp.String()); err != nil {
		t.Fatal(err)
	}
}

func TestClientAuth(t *testing.T) {
	key, other := rsaKeys(t)
	exporter := seq(0x90, 32)
	sig, err := protocol.SignClientAuth(key, exporter, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.VerifyClientAuth(&key.PublicKey, exporter, "alice", sig); err != nil {
		t.Fatalf("verify: %v", err)
	}
	otherExporter := bytes.Clone(exporter)
	otherExporter[0] ^= 1
	bundleSig, _ := protocol.SignTranscript(key, protocol.ContextKeyBundle, exporter)
	cases := []struct {
		name     string
		pub      bool // true: the right key
		exporter []byte
		user     string
		sig      []byte
	}{
		{"another connection", true, otherExporter, "alice", sig},
		{"another user", true, exporter, "bob", sig},
		{"another key", false, exporter, "alice", sig},
		{"a signature made for another context", true, exporter, "alice", bundleSig},
		{"exporter and user boundary", true, exporter[:31], string(exporter[31:]) + "alice", sig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pub := &key.PublicKey
			if !tc.pub {
				pub = &other.PublicKey
			}
			wantCode(t, protocol.VerifyClientAuth(pub, tc.exporter, tc.user, tc.sig), protocol.CodeBadSignature)
		})
	}
	// The JSON form of a signature is what the server verifies.
	var m protocol.Message
	enc, _ := json.Marshal(protocol.Message{Type: protocol.MsgAuth, Sig: sig})
	if err := json.Unmarshal(enc, &m); err != nil || !bytes.Equal(m.Sig, sig) {
		t.Fatalf("sig through JSON: %v", err)
	}
}

func TestKeyBundleLongUserNames(t *testing.T) {
	signing, encryption := rsaKeys(t)
	long := strings.Repeat("a", 256)
	if _, err := protocol.NewKeyBundle(long, signing, &encryption.PublicKey); err == nil {
		t.Error("NewKeyBundle accepted a 256-byte user name")
	}
	kb, err := protocol.NewKeyBundle("alice", signing, &encryption.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kb.Verify(long); err == nil {
		t.Error("Verify accepted a 256-byte user name")
	}
	if protocol.UserFingerprint(long, []byte("k1"), nil) == protocol.UserFingerprint("x"+long, []byte("k2"), nil) {
		t.Error("long user names share one fingerprint")
	}
}
