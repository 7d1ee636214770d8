package protocol_test

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// These tests run Project Wycheproof's vectors through the primitives the
// protocol uses, with exactly the protocol's parameters: RSA-OAEP with
// SHA-256 and MGF1-SHA-256 (UnwrapSecret), RSA-PSS with SHA-256 and a
// 32-byte salt (PSSOptions), AES-256-GCM with a 96-bit nonce and a 128-bit
// tag (the GCM record suite), HKDF-SHA-256 (the key schedule) and full-length
// HMAC-SHA-256 (Finished and the CBC suite's MAC). The vectors are not in
// this repository: they sit in shared/testdata/wycheproof beside the clone
// (WYCHEPROOF_DIR overrides); without them the tests skip.

// wycheproofDir finds shared/testdata/wycheproof in the package directory
// or one of its parents.
func wycheproofDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("WYCHEPROOF_DIR"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		cand := filepath.Join(dir, "shared", "testdata", "wycheproof")
		if fi, err := os.Stat(cand); err == nil && fi.IsDir() {
			return cand
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("Wycheproof vectors not found: no shared/testdata/wycheproof in this directory or a parent (set WYCHEPROOF_DIR)")
		}
		dir = parent
	}
}

// wpFile is the part of a Wycheproof file these tests read. Group fields
// that only some schemas have are left zero by the others.
type wpFile struct {
	Algorithm     string    `json:"algorithm"`
	NumberOfTests int       `json:"numberOfTests"`
	TestGroups    []wpGroup `json:"testGroups"`
}

type wpGroup struct {
	Type    string `json:"type"`
	KeySize int    `json:"keySize"`
	IVSize  int    `json:"ivSize"`
	TagSize int    `json:"tagSize"`
	SHA     string `json:"sha"`
	MGF     string `json:"mgf"`
	MGFSHA  string `json:"mgfSha"`
	SLen    int    `json:"sLen"`
	// RSA keys.
	PrivateKeyPkcs8 hexBytes `json:"privateKeyPkcs8"`
	PublicKeyDer    hexBytes `json:"publicKeyDer"`
	Tests           []wpTest `json:"tests"`
}

type wpTest struct {
	TcID    int      `json:"tcId"`
	Comment string   `json:"comment"`
	Flags   []string `json:"flags"`
	Result  string   `json:"result"` // valid, invalid, acceptable
	Key     hexBytes `json:"key"`
	IV      hexBytes `json:"iv"`
	AAD     hexBytes `json:"aad"`
	Msg     hexBytes `json:"msg"`
	CT      hexBytes `json:"ct"`
	Tag     hexBytes `json:"tag"`
	Label   hexBytes `json:"label"`
	Sig     hexBytes `json:"sig"`
	IKM     hexBytes `json:"ikm"`
	Salt    hexBytes `json:"salt"`
	Info    hexBytes `json:"info"`
	Size    int      `json:"size"`
	OKM     hexBytes `json:"okm"`
}

func (tc wpTest) String() string {
	return fmt.Sprintf("tcId %d (%s; %v)", tc.TcID, tc.Comment, tc.Flags)
}

type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	*h = d
	return err
}

func loadWycheproof(t *testing.T, name string) *wpFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(wycheproofDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	var f wpFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	n := 0
	for _, g := range f.TestGroups {
		n += len(g.Tests)
	}
	if n != f.NumberOfTests {
		t.Fatalf("%s: read %d tests, the file says %d", name, n, f.NumberOfTests)
	}
	return &f
}

// wpCounter counts the vectors run, so that a filter that silently
// matches nothing fails the test.
type wpCounter map[string]int

func (c wpCounter) check(t *testing.T, min int) {
	t.Helper()
	total := 0
	for _, n := range c {
		total += n
	}
	t.Logf("vectors run: %v", map[string]int(c))
	if total < min {
		t.Fatalf("ran %d vectors, want at least %d", total, min)
	}
}

func TestWycheproofRSAOAEP(t *testing.T) {
	files := []string{
		"rsa_oaep_2048_sha256_mgf1sha256_test.json",
		"rsa_oaep_3072_sha256_mgf1sha256_test.json",
		// The misc file mixes hashes and sizes; only its SHA-256/MGF1-SHA-256
		// groups of at least MinRSABits are ours.
		"rsa_oaep_misc_test.json",
	}
	count := wpCounter{}
	for _, name := range files {
		f := loadWycheproof(t, name)
		for _, g := range f.TestGroups {
			if g.SHA != "SHA-256" || g.MGF != "MGF1" || g.MGFSHA != "SHA-256" || g.KeySize < protocol.MinRSABits {
				continue
			}
			k, err := x509.ParsePKCS8PrivateKey(g.PrivateKeyPkcs8)
			if err != nil {
				t.Fatalf("%s: %d-bit key: %v", name, g.KeySize, err)
			}
			priv := k.(*rsa.PrivateKey)
			for _, tc := range g.Tests {
				// The call UnwrapSecret makes, with the vector's label.
				pt, err := rsa.DecryptOAEP(sha256.New(), nil, priv, tc.CT, tc.Label)
				switch {
				case tc.Result == "invalid" && err == nil:
					t.Errorf("%s %d-bit %s: decrypted an invalid ciphertext to %x", name, g.KeySize, tc, pt)
				case tc.Result == "valid" && err != nil:
					t.Errorf("%s %d-bit %s: %v", name, g.KeySize, tc, err)
				case err == nil && !bytes.Equal(pt, tc.Msg):
					t.Errorf("%s %d-bit %s: decrypted to %x, want %x", name, g.KeySize, tc, pt, tc.Msg)
				}
				count[tc.Result]++
			}
		}
	}
	count.check(t, 2*37)
}

func TestWycheproofRSAPSS(t *testing.T) {
	count := wpCounter{}
	for _, name := range []string{"rsa_pss_2048_sha256_mgf1_32_test.json", "rsa_pss_3072_sha256_mgf1_32_test.json"} {
		f := loadWycheproof(t, name)
		for _, g := range f.TestGroups {
			if g.SHA != "SHA-256" || g.MGF != "MGF1" || g.MGFSHA != "SHA-256" || g.SLen != 32 {
				t.Fatalf("%s: unexpected group parameters %s/%s/%s/%d", name, g.SHA, g.MGF, g.MGFSHA, g.SLen)
			}
			// The key parses with the protocol's own parser.
			pub, err := protocol.ParseRSAPublicKey(g.PublicKeyDer)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for _, tc := range g.Tests {
				d := sha256.Sum256(tc.Msg)
				// The call VerifyTranscript makes.
				err := rsa.VerifyPSS(pub, crypto.SHA256, d[:], tc.Sig, protocol.PSSOptions)
				switch tc.Result {
				case "valid":
					if err != nil {
						t.Errorf("%s %s: %v", name, tc, err)
					}
				case "invalid":
					if err == nil {
						t.Errorf("%s %s: an invalid signature verified", name, tc)
					}
				}
				count[tc.Result]++
			}
		}
	}
	count.check(t, 2*108)
}

func TestWycheproofAESGCM(t *testing.T) {
	f := loadWycheproof(t, "aes_gcm_test.json")
	count := wpCounter{}
	for _, g := range f.TestGroups {
		// The record suite's parameters only.
		if g.KeySize != 256 || g.IVSize != 96 || g.TagSize != 128 {
			continue
		}
		for _, tc := range g.Tests {
			b, err := aes.NewCipher(tc.Key)
			if err != nil {
				t.Fatal(err)
			}
			// The construction NewGCMRecordLayer uses.
			aead, err := cipher.NewGCM(b)
			if err != nil {
				t.Fatal(err)
			}
			sealed := append(bytes.Clone(tc.CT), tc.Tag...)
			pt, err := aead.Open(nil, tc.IV, sealed, tc.AAD)
			switch tc.Result {
			case "valid":
				if err != nil || !bytes.Equal(pt, tc.Msg) {
					t.Errorf("%s: open = %x, %v; want %x", tc, pt, err, tc.Msg)
				}
				if got := aead.Seal(nil, tc.IV, tc.Msg, tc.AAD); !bytes.Equal(got, sealed) {
					t.Errorf("%s: seal = %x, want %x", tc, got, sealed)
				}
			case "invalid":
				if err == nil {
					t.Errorf("%s: an invalid ciphertext opened to %x", tc, pt)
				}
			}
			count[tc.Result]++
		}
	}
	count.check(t, 60)
}

func TestWycheproofHKDF(t *testing.T) {
	f := loadWycheproof(t, "hkdf_sha256_test.json")
	count := wpCounter{}
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			// The two steps the key schedule takes.
			prk, err := hkdf.Extract(sha256.New, tc.IKM, tc.Salt)
			if err != nil {
				t.Fatalf("%s: extract: %v", tc, err)
			}
			okm, err := hkdf.Expand(sha256.New, prk, string(tc.Info), tc.Size)
			switch tc.Result {
			case "valid":
				if err != nil || !bytes.Equal(okm, tc.OKM) {
					t.Errorf("%s: okm = %x, %v; want %x", tc, okm, err, tc.OKM)
				}
			case "invalid":
				if err == nil {
					t.Errorf("%s: expanded %d bytes", tc, tc.Size)
				}
			}
			count[tc.Result]++
		}
	}
	count.check(t, 80)
}

func TestWycheproofHMAC(t *testing.T) {
	f := loadWycheproof(t, "hmac_sha256_test.json")
	count := wpCounter{}
	for _, g := range f.TestGroups {
		// Finished values and the CBC suite's MAC are full-length tags.
		if g.TagSize != 256 {
			continue
		}
		for _, tc := range g.Tests {
			ok := hmac.Equal(hmacSHA256(tc.Key, tc.Msg), tc.Tag)
			if ok != (tc.Result == "valid") {
				t.Errorf("%s: tag match = %v, result %s", tc, ok, tc.Result)
			}
			count[tc.Result]++
		}
	}
	count.check(t, 80)
}
