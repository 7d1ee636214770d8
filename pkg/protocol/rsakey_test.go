package protocol_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"math/big"
	"testing"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// craftedRSAKey returns the PKIX DER of an RSA public key with an odd
// random modulus of exactly bits bits and exponent e: what a hostile peer
// sends. Nobody knows its factors, and none are needed to make a server
// compute with it.
func craftedRSAKey(t testing.TB, bits, e int) []byte {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits-1)))
	if err != nil {
		t.Fatal(err)
	}
	n.SetBit(n, bits-1, 1) // exactly bits bits
	n.SetBit(n, 0, 1)      // odd
	der, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n, E: e})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestRSAKeyRule: only exponent 65537 with a modulus of exactly 2048, 3072
// or 4096 bits is accepted, through every path that takes a public key.
func TestRSAKeyRule(t *testing.T) {
	for _, bits := range protocol.RSAKeySizes {
		der := craftedRSAKey(t, bits, protocol.RSAExponent)
		if _, err := protocol.ParseRSAPublicKey(der); err != nil {
			t.Errorf("%d-bit key, e = 65537: %v", bits, err)
		}
	}
	even := craftedRSAKey(t, 2048, protocol.RSAExponent)
	pub, _ := protocol.ParseRSAPublicKey(even)
	pub.N.SetBit(pub.N, 0, 0)
	evenDER, _ := x509.MarshalPKIXPublicKey(pub)
	bad := []struct {
		name string
		der  []byte
	}{
		{"16000 bits, e = 2^31-1", craftedRSAKey(t, 16000, 1<<31-1)},
		{"16000 bits", craftedRSAKey(t, 16000, protocol.RSAExponent)},
		{"e = 3", craftedRSAKey(t, 2048, 3)},
		{"e = 2^31-1", craftedRSAKey(t, 2048, 1<<31-1)},
		{"e = 65539", craftedRSAKey(t, 3072, 65539)},
		{"2047 bits", craftedRSAKey(t, 2047, protocol.RSAExponent)},
		{"2049 bits", craftedRSAKey(t, 2049, protocol.RSAExponent)},
		{"3071 bits", craftedRSAKey(t, 3071, protocol.RSAExponent)},
		{"5000 bits", craftedRSAKey(t, 5000, protocol.RSAExponent)},
		{"8192 bits", craftedRSAKey(t, 8192, protocol.RSAExponent)},
		{"even modulus", evenDER},
	}
	signing, encryption := rsaKeys(t)
	kb, err := protocol.NewKeyBundle("alice", signing, &encryption.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := protocol.ParseRSAPublicKey(tc.der)
			wantCode(t, err, protocol.CodeBadKey)
			// A bundle with such a key is refused for the key, before its
			// self-signature is looked at, whichever of the two it is.
			_, err = (&protocol.KeyBundle{Signing: tc.der, Encryption: kb.Encryption, SelfSignature: kb.SelfSignature}).Verify("alice")
			wantCode(t, err, protocol.CodeBadKey)
			_, err = (&protocol.KeyBundle{Signing: kb.Signing, Encryption: tc.der, SelfSignature: kb.SelfSignature}).Verify("alice")
			wantCode(t, err, protocol.CodeBadKey)
		})
	}
	if protocol.CheckRSAPublicKey(nil) == nil || protocol.CheckRSAPublicKey(&rsa.PublicKey{E: protocol.RSAExponent}) == nil {
		t.Fatal("a missing key passed the rule")
	}
	for _, bits := range []int{0, 1024, 2047, 2049, 4095, 8192} {
		if protocol.ValidRSAKeySize(bits) {
			t.Errorf("ValidRSAKeySize(%d) = true", bits)
		}
	}
}

// TestRSAKeyRuleBundleSignedWithBadKey: a bundle whose keys are both
// properly self-signed but whose encryption key breaks the rule is still
// refused (the self-signature is no excuse).
func TestRSAKeyRuleBundleSignedWithBadKey(t *testing.T) {
	signing, _ := rsaKeys(t)
	e3, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// The same primes with e = 3 is a valid RSA key; only the rule refuses it.
	pub := &rsa.PublicKey{N: e3.N, E: 3}
	kb, err := protocol.NewKeyBundle("alice", signing, pub)
	if err != nil {
		t.Fatal(err)
	}
	_, err = kb.Verify("alice")
	wantCode(t, err, protocol.CodeBadKey)
}
