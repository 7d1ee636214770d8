package protocol_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

func newKS(t testing.TB, secret []byte) *protocol.KeySchedule {
	t.Helper()
	ks, err := protocol.NewKeySchedule(secret)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func trafficKeys(t testing.TB, ks *protocol.KeySchedule, suite protocol.Suite, th []byte, isServer bool) (seal, open *protocol.RecordLayer) {
	t.Helper()
	seal, open, err := ks.TrafficKeys(suite, th, isServer)
	if err != nil {
		t.Fatal(err)
	}
	return seal, open
}

// TestTrafficKeysMatch checks that each side's sealer pairs with the other
// side's opener, in both directions, for several records.
func TestTrafficKeysMatch(t *testing.T) {
	secret := seq(7, protocol.SecretSize)
	th := sha256.Sum256([]byte("transcript"))
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			// Each side derives from its own KeySchedule, as in a real handshake.
			cSeal, cOpen := trafficKeys(t, newKS(t, secret), suite, th[:], false)
			sSeal, sOpen := trafficKeys(t, newKS(t, secret), suite, th[:], true)
			for i := range 3 {
				msg := []byte(strings.Repeat("c", i*20))
				if got, err := sOpen.Open(mustSeal(t, cSeal, msg)); err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("client → server #%d: %q, %v", i, got, err)
				}
				msg = []byte(strings.Repeat("s", i*20+1))
				if got, err := cOpen.Open(mustSeal(t, sSeal, msg)); err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("server → client #%d: %q, %v", i, got, err)
				}
			}
		})
	}
}

func TestTrafficKeysUnknownSuite(t *testing.T) {
	for _, s := range []protocol.Suite{0, 3, 0xffff} {
		_, _, err := newKS(t, seq(0, 32)).TrafficKeys(s, seq(0, 32), true)
		wantCode(t, err, protocol.CodeNoCommonSuite)
	}
}

// TestKeysDependOnEverything checks that a different transcript or secret
// gives keys that open nothing of the original's.
func TestKeysDependOnEverything(t *testing.T) {
	secret := seq(7, protocol.SecretSize)
	th := seq(0x20, 32)
	otherTH := bytes.Clone(th)
	otherTH[31] ^= 1
	otherSecret := bytes.Clone(secret)
	otherSecret[0] ^= 0x80
	for _, suite := range suites {
		cSeal, _ := trafficKeys(t, newKS(t, secret), suite, th, false)
		frame := mustSeal(t, cSeal, []byte("hello"))
		for name, ks := range map[string]struct {
			secret, th []byte
		}{"other transcript": {secret, otherTH}, "other secret": {otherSecret, th}} {
			_, sOpen := trafficKeys(t, newKS(t, ks.secret), suite, ks.th, true)
			_, err := sOpen.Open(frame)
			if !errors.Is(err, protocol.CodeBadRecord) {
				t.Errorf("%s, %s: err = %v, want bad record", suite, name, err)
			}
		}
	}

	// Every derived value differs from every other.
	ks := newKS(t, secret)
	seen := map[string]string{}
	add := func(name string, v []byte) {
		if prev, dup := seen[string(v)]; dup {
			t.Errorf("%s equals %s", name, prev)
		}
		seen[string(v)] = name
	}
	for _, label := range []string{
		protocol.LabelServerFinished, protocol.LabelClientFinished, protocol.LabelClientWrite,
		protocol.LabelServerWrite, protocol.LabelClientIV, protocol.LabelServerIV, protocol.LabelExporter,
	} {
		add(label, ks.Expand(label, th, 32))
		add(label+" (other transcript)", ks.Expand(label, otherTH, 32))
		add(label+" (other secret)", newKS(t, otherSecret).Expand(label, th, 32))
	}
	sf := ks.FinishedMAC(protocol.LabelServerFinished, th, seq(0x40, 32))
	cf := ks.FinishedMAC(protocol.LabelClientFinished, th, seq(0x40, 32))
	sf2 := ks.FinishedMAC(protocol.LabelServerFinished, otherTH, seq(0x40, 32))
	sf3 := ks.FinishedMAC(protocol.LabelServerFinished, th, seq(0x41, 32))
	add("server finished MAC", sf[:])
	add("client finished MAC", cf[:])
	add("server finished MAC, other key transcript", sf2[:])
	add("server finished MAC, other finished transcript", sf3[:])
	if !bytes.Equal(ks.Exporter(th), ks.Expand(protocol.LabelExporter, th, 32)) {
		t.Error("Exporter is not Expand(\"exporter\", th, 32)")
	}
}

func TestTranscript(t *testing.T) {
	tr := protocol.NewTranscript()
	empty := sha256.Sum256(nil)
	if !bytes.Equal(tr.Sum(), empty[:]) {
		t.Fatal("empty transcript")
	}
	tr.Add([]byte("client hello"))
	first := tr.Sum()
	tr.Add([]byte("server hello"))
	want := sha256.Sum256([]byte("client helloserver hello"))
	if !bytes.Equal(tr.Sum(), want[:]) {
		t.Fatal("Sum is not SHA-256 of the frames in order")
	}
	if h := sha256.Sum256([]byte("client hello")); !bytes.Equal(first, h[:]) {
		t.Fatal("Sum after one frame")
	}
}

func TestSignedContent(t *testing.T) {
	th := seq(0, 32)
	got := protocol.SignedContent("ctx", th)
	want := append(append(bytes.Repeat([]byte{0x20}, 64), "ctx\x00"...), th...)
	if !bytes.Equal(got, want) {
		t.Fatalf("SignedContent = %x, want %x", got, want)
	}
}

func TestSignTranscript(t *testing.T) {
	key, other := rsaKeys(t)
	th := sha256.Sum256([]byte("transcript"))
	sig, err := protocol.SignTranscript(key, protocol.ContextServerSignature, th[:])
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != key.Size() {
		t.Fatalf("signature of %d bytes, want %d", len(sig), key.Size())
	}
	if err := protocol.VerifyTranscript(&key.PublicKey, protocol.ContextServerSignature, th[:], sig); err != nil {
		t.Fatalf("verify: %v", err)
	}
	// PSS is randomized: a second signature differs and verifies too.
	sig2, _ := protocol.SignTranscript(key, protocol.ContextServerSignature, th[:])
	if bytes.Equal(sig, sig2) {
		t.Error("two PSS signatures are equal")
	}
	if err := protocol.VerifyTranscript(&key.PublicKey, protocol.ContextServerSignature, th[:], sig2); err != nil {
		t.Fatalf("verify second: %v", err)
	}
	otherTH := bytes.Clone(th[:])
	otherTH[0] ^= 1
	flipped := bytes.Clone(sig)
	flipped[len(flipped)/2] ^= 0x10
	cases := []struct {
		name    string
		pub     *rsa.PublicKey
		context string
		th, sig []byte
	}{
		{"another key", &other.PublicKey, protocol.ContextServerSignature, th[:], sig},
		{"another context", &key.PublicKey, "messenger v1 client signature", th[:], sig},
		{"another transcript", &key.PublicKey, protocol.ContextServerSignature, otherTH, sig},
		{"flipped bit", &key.PublicKey, protocol.ContextServerSignature, th[:], flipped},
		{"truncated", &key.PublicKey, protocol.ContextServerSignature, th[:], sig[:len(sig)-1]},
		{"extended", &key.PublicKey, protocol.ContextServerSignature, th[:], append(bytes.Clone(sig), 0)},
		{"empty", &key.PublicKey, protocol.ContextServerSignature, th[:], nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, protocol.VerifyTranscript(tc.pub, tc.context, tc.th, tc.sig), protocol.CodeBadSignature)
		})
	}
}

func TestWrapSecret(t *testing.T) {
	key, other := rsaKeys(t)
	secret := seq(1, protocol.SecretSize)
	wrapped, err := protocol.WrapSecret(&key.PublicKey, secret)
	if err != nil {
		t.Fatal(err)
	}
	got, err := protocol.UnwrapSecret(key, wrapped)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("unwrap = %x, %v", got, err)
	}
	again, _ := protocol.WrapSecret(&key.PublicKey, secret)
	if bytes.Equal(again, wrapped) {
		t.Error("OAEP wrapping is not randomized")
	}

	t.Run("wrong key", func(t *testing.T) {
		_, err := protocol.UnwrapSecret(other, wrapped)
		wantCode(t, err, protocol.CodeMalformed)
	})
	t.Run("flipped bit", func(t *testing.T) {
		bad := bytes.Clone(wrapped)
		bad[10] ^= 1
		_, err := protocol.UnwrapSecret(key, bad)
		wantCode(t, err, protocol.CodeMalformed)
	})
	t.Run("truncated", func(t *testing.T) {
		_, err := protocol.UnwrapSecret(key, wrapped[:len(wrapped)-1])
		wantCode(t, err, protocol.CodeMalformed)
	})
	t.Run("empty", func(t *testing.T) {
		_, err := protocol.UnwrapSecret(key, nil)
		wantCode(t, err, protocol.CodeMalformed)
	})
	t.Run("secret of the wrong length", func(t *testing.T) {
		for _, n := range []int{0, 16, 31, 33} {
			w, err := protocol.WrapSecret(&key.PublicKey, make([]byte, n))
			if err != nil {
				t.Fatal(err)
			}
			_, err = protocol.UnwrapSecret(key, w)
			wantCode(t, err, protocol.CodeMalformed)
		}
	})
	t.Run("another label", func(t *testing.T) {
		w, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &key.PublicKey, secret, []byte("messenger v1 other"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = protocol.UnwrapSecret(key, w)
		wantCode(t, err, protocol.CodeMalformed)
	})
	t.Run("label LabelWrap, made with crypto/rsa", func(t *testing.T) {
		w, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &key.PublicKey, secret, []byte(protocol.LabelWrap))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := protocol.UnwrapSecret(key, w); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("unwrap = %x, %v", got, err)
		}
	})
}

func TestParseRSAPublicKey(t *testing.T) {
	key, _ := rsaKeys(t)
	good, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := protocol.ParseRSAPublicKey(good)
	if err != nil || !pub.Equal(&key.PublicKey) {
		t.Fatalf("2048-bit key: %v", err)
	}

	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKIXPublicKey(edPub)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallDER, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	cases := []struct {
		name string
		der  []byte
	}{
		{"ECDSA P-256", ecDER},
		{"Ed25519", edDER},
		{"1024-bit RSA", smallDER},
		{"PKCS#1, not PKIX", x509.MarshalPKCS1PublicKey(&key.PublicKey)},
		{"garbage", []byte("not a key")},
		{"empty", nil},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := protocol.ParseRSAPublicKey(tc.der)
			wantCode(t, err, protocol.CodeBadKey)
		})
	}
}

func TestFingerprint(t *testing.T) {
	key, _ := rsaKeys(t)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	fp := protocol.FingerprintOf(der)
	if want := sha256.Sum256(der); fp != protocol.Fingerprint(want) {
		t.Fatal("FingerprintOf is not SHA-256 of the DER")
	}
	s := fp.String()
	if len(s) != 64 || strings.ToLower(s) != s {
		t.Fatalf("String() = %q, want 64 lower-case hex digits", s)
	}
	var colons []string
	for i := 0; i < len(s); i += 2 {
		colons = append(colons, s[i:i+2])
	}
	forms := map[string]string{
		"plain":       s,
		"upper case":  strings.ToUpper(s),
		"colons":      strings.Join(colons, ":"),
		"spaces":      strings.Join(colons, " "),
		"upper colon": strings.ToUpper(strings.Join(colons, ":")),
		"groups of 4": s[:4] + " " + s[4:8] + ":" + s[8:],
	}
	for name, form := range forms {
		got, err := protocol.ParseFingerprint(form)
		if err != nil || got != fp {
			t.Errorf("%s %q: %s, %v", name, form, got, err)
		}
	}
	bad := map[string]string{
		"empty":          "",
		"63 digits":      s[:63],
		"62 digits":      s[:62],
		"not hex":        "zz" + s[2:],
		"separator only": strings.Repeat(":", 64),
		"dash separated": strings.Join(colons, "-"),
		"0x prefix":      "0x" + s[2:],
		// Inputs of more than 64 digits are not listed yet: ParseFingerprint
		// panics on them (hex.Decode writes past the 32-byte array). Add
		// "66 digits" and "two fingerprints" once it checks the length
		// before decoding.
	}
	for name, form := range bad {
		if got, err := protocol.ParseFingerprint(form); err == nil {
			t.Errorf("%s %q: accepted as %s", name, form, got)
		}
	}
}

func TestParseFingerprintTooLong(t *testing.T) {
	fp := protocol.FingerprintOf([]byte("key"))
	for _, s := range []string{strings.Repeat("ab", 33), fp.String() + fp.String()} {
		if _, err := protocol.ParseFingerprint(s); err == nil {
			t.Errorf("ParseFingerprint accepted %d digits", len(s))
		}
	}
}

func FuzzParseFingerprint(f *testing.F) {
	f.Add(protocol.FingerprintOf([]byte("key")).String())
	f.Add(strings.Repeat("0", 66))
	f.Fuzz(func(t *testing.T, s string) {
		if fp, err := protocol.ParseFingerprint(s); err == nil {
			if again, err := protocol.ParseFingerprint(fp.String()); err != nil || again != fp {
				t.Fatalf("%q: String does not parse back", s)
			}
		}
	})
}
