package protocol_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

func TestKeyChallengeRoundTrip(t *testing.T) {
	key, other := rsaKeys(t)
	challenge, wrapped, err := protocol.NewKeyChallenge(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(challenge) != protocol.ChallengeSize || len(wrapped) != key.Size() {
		t.Fatalf("challenge %d bytes, wrapped %d", len(challenge), len(wrapped))
	}
	got, err := protocol.OpenKeyChallenge(key, wrapped)
	if err != nil || !bytes.Equal(got, challenge) {
		t.Fatalf("open = %x, %v; want %x", got, err, challenge)
	}
	// Another key, or the session secret's label, does not open it; nor
	// does a challenge open a wrapped session secret.
	_, err = protocol.OpenKeyChallenge(other, wrapped)
	wantCode(t, err, protocol.CodeMalformed)
	_, err = protocol.UnwrapSecret(key, wrapped)
	wantCode(t, err, protocol.CodeMalformed)
	ws, err := protocol.WrapSecret(&key.PublicKey, challenge)
	if err != nil {
		t.Fatal(err)
	}
	_, err = protocol.OpenKeyChallenge(key, ws)
	wantCode(t, err, protocol.CodeMalformed)
	// Two challenges are never the same.
	again, _, _ := protocol.NewKeyChallenge(&key.PublicKey)
	if bytes.Equal(again, challenge) {
		t.Fatal("two challenges with the same bytes")
	}
}

func TestKeyPossessionProof(t *testing.T) {
	challenge, exporter, der := seq(0xa0, 32), seq(0x80, 32), []byte("encryption-der")
	proof := protocol.KeyPossessionProof(challenge, exporter, "alice", der)
	if err := protocol.VerifyKeyPossession(challenge, exporter, "alice", der, proof); err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte) []byte {
		b = bytes.Clone(b)
		b[0] ^= 1
		return b
	}
	cases := []struct {
		name                string
		challenge, exporter []byte
		user                string
		der, proof          []byte
	}{
		{"another challenge", flip(challenge), exporter, "alice", der, proof},
		{"another connection", challenge, flip(exporter), "alice", der, proof},
		{"another user", challenge, exporter, "bob", der, proof},
		{"another key", challenge, exporter, "alice", flip(der), proof},
		// The length prefixes keep user and key apart.
		{"user and key shifted", challenge, exporter, "alicee", der[1:], proof},
		{"altered proof", challenge, exporter, "alice", der, flip(proof)},
		{"short proof", challenge, exporter, "alice", der, proof[:31]},
		{"no proof", challenge, exporter, "alice", der, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := protocol.VerifyKeyPossession(tc.challenge, tc.exporter, tc.user, tc.der, tc.proof)
			wantCode(t, err, protocol.CodeBadKey)
		})
	}
}

// The proof vector of docs/protocol.md §10.4: fixed inputs, the exporter
// of the key-schedule vector (§5.5), a placeholder for the key's DER.
var (
	kpChallenge = seq(0xa0, 32)
	kpUser      = "alice"
	kpKey       = []byte("encryption-der")
)

const keyPossessionHeader = `# Proof-of-possession test vector. docs/protocol.md (§10.4) quotes it.
#   proof = HMAC-SHA256(challenge, "messenger v1 key possession proof" || 0x00 || exporter ||
#                       uint32 len(user) || user || uint32 len(encryption) || encryption)
# exporter is the one of key_schedule.txt; encryption is a placeholder for PKIX DER.
# Regenerate (only for an intended protocol change): go test ./pkg/protocol -run TestGolden -update
`

func TestGoldenKeyPossession(t *testing.T) {
	const file = "key_possession.txt"
	exporter := newKS(t, ksSecret).Exporter(ksFullTH)
	vec := []kv{
		{"challenge", kpChallenge},
		{"exporter", exporter},
		{"user", []byte(kpUser)},
		{"encryption", kpKey},
		{"hmac_input", nil},
		{"proof", protocol.KeyPossessionProof(kpChallenge, exporter, kpUser, kpKey)},
	}
	// The HMAC input as the document spells it, built by hand.
	var in bytes.Buffer
	in.WriteString("messenger v1 key possession proof")
	in.WriteByte(0)
	in.Write(exporter)
	in.Write([]byte{0, 0, 0, byte(len(kpUser))})
	in.WriteString(kpUser)
	in.Write([]byte{0, 0, 0, byte(len(kpKey))})
	in.Write(kpKey)
	vec[4].value = in.Bytes()
	m := hmac.New(sha256.New, kpChallenge)
	m.Write(in.Bytes())
	if want := m.Sum(nil); !bytes.Equal(vec[5].value, want) {
		t.Fatalf("KeyPossessionProof = %x, the documented construction gives %x", vec[5].value, want)
	}
	if *update {
		var b strings.Builder
		b.WriteString(keyPossessionHeader)
		for _, e := range vec {
			fmt.Fprintf(&b, "%s: %x\n", e.name, e.value)
		}
		writeGolden(t, file, []byte(b.String()))
	}
	data, err := os.ReadFile(goldenPath(file))
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	for _, e := range vec {
		line := e.name + ": " + hex.EncodeToString(e.value) + "\n"
		if !strings.Contains(string(data), line) {
			t.Errorf("%s lacks or changed %s (the proof is part of the wire protocol): want %s", file, e.name, line)
		}
	}
}

// OAEP with the key-possession label is what WebCrypto's RSA-OAEP decrypt
// with {hash: SHA-256, label} computes; a browser client can answer.
func TestKeyChallengeIsPlainOAEP(t *testing.T) {
	key, _ := rsaKeys(t)
	challenge, wrapped, err := protocol.NewKeyChallenge(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rsa.DecryptOAEP(sha256.New(), nil, key, wrapped, []byte("messenger v1 key possession"))
	if err != nil || !bytes.Equal(got, challenge) {
		t.Fatalf("decrypt with the documented parameters: %v", err)
	}
}
