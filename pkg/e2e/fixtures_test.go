package e2e

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/cryptotest"

	"github.com/google/uuid"
)

// update rewrites testdata/golden/e2e_vectors.json from the current code
// (and creates any missing key in testdata/keys; existing keys are never
// replaced). Run it only for an intended format change, and update
// docs/e2e.md to match.
var update = flag.Bool("update", false, "rewrite testdata/golden and create missing testdata/keys")

// The test devices. Their keys are PEM files in testdata/keys, generated
// once (Go's rsa.GenerateKey is not reproducible across Go versions, so
// the files, not a seed, are the fixture). bob-2 has 3072-bit keys so that
// envelopes mix key sizes; carol is a third user, outside the
// conversation.
var deviceSpecs = []struct {
	name string
	user string
	id   uuid.UUID
	bits int
}{
	{"alice-1", "alice", uuid.MustParse("a11ce000-0000-4000-8000-000000000001"), 2048},
	{"alice-2", "alice", uuid.MustParse("a11ce000-0000-4000-8000-000000000002"), 2048},
	{"bob-1", "bob", uuid.MustParse("b0b00000-0000-4000-8000-000000000001"), 2048},
	{"bob-2", "bob", uuid.MustParse("b0b00000-0000-4000-8000-000000000002"), 3072},
	{"carol-1", "carol", uuid.MustParse("ca201000-0000-4000-8000-000000000001"), 2048},
}

// testConversation is the conversation of the vectors, between alice and
// bob.
var testConversation = uuid.MustParse("c0c0c0c0-0000-4000-8000-000000000001")

// otherConversation is another conversation's id.
var otherConversation = uuid.MustParse("c0c0c0c0-0000-4000-8000-000000000002")

type testDevice struct {
	name   string
	local  *LocalDevice
	public Device
}

var (
	devicesOnce sync.Once
	devicesErr  error
	devicesMap  map[string]*testDevice
)

// devices returns the test devices by name, loading the PEM files once.
func devices(t testing.TB) map[string]*testDevice {
	t.Helper()
	if *update {
		// Create missing keys before anything loads them.
		if tt, ok := t.(*testing.T); ok {
			generateMissingKeys(tt)
		}
	}
	devicesOnce.Do(func() {
		devicesMap = map[string]*testDevice{}
		for _, s := range deviceSpecs {
			sig, err := readKey(keyPath(s.name, "signing"))
			if err != nil {
				devicesErr = err
				return
			}
			enc, err := readKey(keyPath(s.name, "encryption"))
			if err != nil {
				devicesErr = err
				return
			}
			l := &LocalDevice{User: s.user, ID: s.id, Signing: sig, Encryption: enc}
			pub, err := l.Public()
			if err != nil {
				devicesErr = fmt.Errorf("%s: %w", s.name, err)
				return
			}
			devicesMap[s.name] = &testDevice{name: s.name, local: l, public: pub}
		}
	})
	if devicesErr != nil {
		t.Fatalf("test keys: %v (run go test ./pkg/e2e -run TestGolden -update once to create them)", devicesErr)
	}
	return devicesMap
}

// dev returns one test device.
func dev(t testing.TB, name string) *testDevice {
	t.Helper()
	d, ok := devices(t)[name]
	if !ok {
		t.Fatalf("no test device %s", name)
	}
	return d
}

// publics returns the public Devices of the named test devices.
func publics(t testing.TB, names ...string) []Device {
	t.Helper()
	out := make([]Device, len(names))
	for i, n := range names {
		out[i] = dev(t, n).public
	}
	return out
}

// deviceByRef finds the test device with that user and id.
func deviceByRef(t testing.TB, r DeviceRef) (*testDevice, bool) {
	t.Helper()
	for _, d := range devices(t) {
		if d.local.Ref() == r {
			return d, true
		}
	}
	return nil, false
}

func keyPath(device, use string) string {
	return filepath.Join("testdata", "keys", device+"-"+use+".pem")
}

func readKey(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: %T, not RSA", path, k)
	}
	return rk, nil
}

// generateMissingKeys writes a PKCS#8 PEM file for every missing test key.
// The global random source is fixed so that the same Go version makes the
// same keys, but the files are what the tests use.
func generateMissingKeys(t *testing.T) {
	for i, s := range deviceSpecs {
		for j, use := range []string{"signing", "encryption"} {
			path := keyPath(s.name, use)
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				continue
			}
			cryptotest.SetGlobalRandom(t, uint64(1000+10*i+j))
			k, err := rsa.GenerateKey(nil, s.bits)
			if err != nil {
				t.Fatal(err)
			}
			der, err := x509.MarshalPKCS8PrivateKey(k)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("created %s (%d bits)", path, s.bits)
		}
	}
}

// countRSA counts the RSA-PSS verifications and RSA-OAEP decryptions made
// until the test ends. Tests that use it must not run in parallel.
func countRSA(t *testing.T) (verifies, decrypts *int) {
	t.Helper()
	var v, d int
	var mu sync.Mutex
	oldV, oldD := rsaVerifyPSS, rsaDecryptOAEP
	rsaVerifyPSS = func(pub *rsa.PublicKey, digest, sig []byte) error {
		mu.Lock()
		v++
		mu.Unlock()
		return oldV(pub, digest, sig)
	}
	rsaDecryptOAEP = func(priv *rsa.PrivateKey, ct, label []byte) ([]byte, error) {
		mu.Lock()
		d++
		mu.Unlock()
		return oldD(priv, ct, label)
	}
	t.Cleanup(func() { rsaVerifyPSS, rsaDecryptOAEP = oldV, oldD })
	return &v, &d
}

// wantErr fails the test unless err wraps want (nil: no error).
func wantErr(t testing.TB, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %v (%s), want %s", err, ErrorName(err), errorNames[want])
	}
}
