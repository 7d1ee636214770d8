package protocol_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Benchmarks of the protocol's primitives, quoted in docs/benchmarks.md.
// None asserts a timing.

var benchSizes = []struct {
	name string
	n    int
}{{"64B", 64}, {"1KiB", 1 << 10}, {"16KiB", 16 << 10}}

func BenchmarkSeal(b *testing.B) {
	for _, suite := range suites {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%s", suite, size.name), func(b *testing.B) {
				seal, _ := layerPair(b, suite)
				pt := make([]byte, size.n)
				b.SetBytes(int64(size.n))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := seal.Seal(pt); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	const batch = 512
	for _, suite := range suites {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%s", suite, size.name), func(b *testing.B) {
				seal, open := layerPair(b, suite)
				pt := make([]byte, size.n)
				frames := make([][]byte, batch)
				refill := func() {
					for i := range frames {
						frames[i] = mustSeal(b, seal, pt)
					}
				}
				refill()
				b.SetBytes(int64(size.n))
				b.ReportAllocs()
				b.ResetTimer()
				// Records must be opened in order, so seal them in batches
				// with the timer stopped.
				for i := 0; i < b.N; i++ {
					if i > 0 && i%batch == 0 {
						b.StopTimer()
						refill()
						b.StartTimer()
					}
					if _, err := open.Open(frames[i%batch]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

var (
	benchKeysMu sync.Mutex
	benchKeys   = map[int]*rsa.PrivateKey{}
)

// benchKey returns an RSA key of bits, made once per test binary.
func benchKey(b *testing.B, bits int) *rsa.PrivateKey {
	b.Helper()
	benchKeysMu.Lock()
	defer benchKeysMu.Unlock()
	if k, ok := benchKeys[bits]; ok {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		b.Fatal(err)
	}
	benchKeys[bits] = k
	return k
}

func benchSign(b *testing.B, bits int) {
	key := benchKey(b, bits)
	th := sha256.Sum256([]byte("transcript"))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := protocol.SignTranscript(key, protocol.ContextServerSignature, th[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRSAPSSSign2048 is the server's ServerVerify signature with a
// 2048-bit identity: the bound on new handshakes per second per core.
func BenchmarkRSAPSSSign2048(b *testing.B) { benchSign(b, 2048) }

// BenchmarkRSAPSSSign3072 is the same with a 3072-bit identity.
func BenchmarkRSAPSSSign3072(b *testing.B) { benchSign(b, 3072) }

func benchVerify(b *testing.B, bits int) {
	key := benchKey(b, bits)
	th := sha256.Sum256([]byte("transcript"))
	sig, err := protocol.SignTranscript(key, protocol.ContextServerSignature, th[:])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := protocol.VerifyTranscript(&key.PublicKey, protocol.ContextServerSignature, th[:], sig); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRSAPSSVerify2048/3072 are the client's check of ServerVerify.
func BenchmarkRSAPSSVerify2048(b *testing.B) { benchVerify(b, 2048) }
func BenchmarkRSAPSSVerify3072(b *testing.B) { benchVerify(b, 3072) }

func benchWrap(b *testing.B, bits int) {
	key := benchKey(b, bits)
	secret := make([]byte, protocol.SecretSize)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := protocol.WrapSecret(&key.PublicKey, secret); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRSAOAEPWrap2048/3072 are the server wrapping the session secret
// to a client session key of that size (the client's choice; 2048 is the
// client library's default).
func BenchmarkRSAOAEPWrap2048(b *testing.B) { benchWrap(b, 2048) }
func BenchmarkRSAOAEPWrap3072(b *testing.B) { benchWrap(b, 3072) }

func benchUnwrap(b *testing.B, bits int) {
	key := benchKey(b, bits)
	wrapped, err := protocol.WrapSecret(&key.PublicKey, make([]byte, protocol.SecretSize))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := protocol.UnwrapSecret(key, wrapped); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnwrap2048/3072 are the client unwrapping the session secret.
func BenchmarkUnwrap2048(b *testing.B) { benchUnwrap(b, 2048) }
func BenchmarkUnwrap3072(b *testing.B) { benchUnwrap(b, 3072) }

// BenchmarkKeySchedule is one side's whole symmetric key schedule for a
// handshake: extract, both Finished MACs, both traffic keys (GCM), the
// exporter.
func BenchmarkKeySchedule(b *testing.B) {
	secret := seq(0, protocol.SecretSize)
	keyTH, finTH, fullTH := seq(0x20, 32), seq(0x40, 32), seq(0x60, 32)
	b.ReportAllocs()
	for b.Loop() {
		ks, err := protocol.NewKeySchedule(secret)
		if err != nil {
			b.Fatal(err)
		}
		ks.FinishedMAC(protocol.LabelServerFinished, keyTH, finTH)
		ks.FinishedMAC(protocol.LabelClientFinished, keyTH, finTH)
		if _, _, err := ks.TrafficKeys(protocol.SuiteAES256GCM, keyTH, true); err != nil {
			b.Fatal(err)
		}
		ks.Exporter(fullTH)
	}
}
