package protocol_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"flag"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// update rewrites the golden files in testdata/golden from the current
// code. Run it only for an intended wire change, and update
// docs/protocol.md to match.
var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// seed fixes the seed of the random message contents; zero means a fresh
// seed, which the test logs so that a failure can be replayed.
var seed = flag.Uint64("seed", 0, "seed for random message contents (0: time-based)")

// newRand returns a PRNG for message contents (not for keys) and logs its
// seed.
func newRand(t testing.TB) *mrand.Rand {
	t.Helper()
	s := *seed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("random contents: -seed=%d", s)
	return mrand.New(mrand.NewPCG(s, s^0x6d657373656e6765))
}

func randBytes(r *mrand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// randUTF8 returns a random valid UTF-8 string of at most max bytes, mixing
// one- to four-byte runes.
func randUTF8(r *mrand.Rand, max int) string {
	var sb strings.Builder
	target := r.IntN(max + 1)
	for {
		var c rune
		switch r.IntN(4) {
		case 0:
			c = rune(0x20 + r.IntN(0x5f))
		case 1:
			c = rune(0x80 + r.IntN(0x780))
		case 2:
			c = rune(0x800 + r.IntN(0xd800-0x800))
		default:
			c = rune(0x10000 + r.IntN(0x100000))
		}
		if sb.Len()+utf8.RuneLen(c) > target {
			return sb.String()
		}
		sb.WriteRune(c)
	}
}

// seq returns n bytes counting up from start, for readable fixed values.
func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// wantCode fails unless err carries code.
func wantCode(t testing.TB, err error, code protocol.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %s", code)
	}
	if !errors.Is(err, code) {
		t.Fatalf("err = %v (code %s), want %s", err, protocol.CodeOf(err), code)
	}
}

var (
	rsaOnce          sync.Once
	rsaKeyA, rsaKeyB *rsa.PrivateKey
)

// rsaKeys returns two 2048-bit keys made once per test binary.
func rsaKeys(t testing.TB) (a, b *rsa.PrivateKey) {
	t.Helper()
	rsaOnce.Do(func() {
		var err error
		if rsaKeyA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKeyB, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return rsaKeyA, rsaKeyB
}

// Golden files hold hex with '#' comment lines; whitespace is ignored.

func goldenPath(name string) string { return filepath.Join("testdata", "golden", name) }

// readGoldenHex returns the bytes of a golden hex file.
func readGoldenHex(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(goldenPath(name))
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	var digits strings.Builder
	for line := range strings.SplitSeq(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

// writeGoldenHex writes b as a golden hex file under a comment header,
// 32 bytes per line.
func writeGoldenHex(t *testing.T, name, comment string, b []byte) {
	t.Helper()
	var out bytes.Buffer
	for line := range strings.SplitSeq(strings.TrimSpace(comment), "\n") {
		out.WriteString("# " + line + "\n")
	}
	out.WriteString("# Regenerate (only for an intended wire change): go test ./pkg/protocol -run TestGolden -update\n")
	h := hex.EncodeToString(b)
	for len(h) > 64 {
		out.WriteString(h[:64] + "\n")
		h = h[64:]
	}
	out.WriteString(h + "\n")
	writeGolden(t, name, out.Bytes())
}

func writeGolden(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(goldenPath(name)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(goldenPath(name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}
