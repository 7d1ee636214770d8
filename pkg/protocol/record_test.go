package protocol_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

var suites = []protocol.Suite{protocol.SuiteAES256GCM, protocol.SuiteAES256CBCHMAC}

// layerPair returns a sealing and an opening record layer of suite under
// the same fresh random keys: the two ends of one direction.
func layerPair(t testing.TB, suite protocol.Suite) (seal, open *protocol.RecordLayer) {
	t.Helper()
	k1, k2 := randomKeys()
	return newLayer(t, suite, k1, k2), newLayer(t, suite, k1, k2)
}

func randomKeys() (k1, k2 []byte) {
	k1, k2 = make([]byte, 32), make([]byte, 32)
	rand.Read(k1)
	rand.Read(k2)
	return k1, k2
}

// newLayer builds a layer of suite from two 32-byte keys: for GCM the key
// and (the first 12 bytes of k2 as) the IV, for CBC the AES and HMAC keys.
func newLayer(t testing.TB, suite protocol.Suite, k1, k2 []byte) *protocol.RecordLayer {
	t.Helper()
	var l *protocol.RecordLayer
	var err error
	switch suite {
	case protocol.SuiteAES256GCM:
		l, err = protocol.NewGCMRecordLayer(k1, k2[:12])
	case protocol.SuiteAES256CBCHMAC:
		l, err = protocol.NewCBCRecordLayer(k1, k2)
	default:
		t.Fatalf("suite %s", suite)
	}
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// recordLen is the documented frame size of a record of n plaintext bytes.
func recordLen(suite protocol.Suite, n int) int {
	if suite == protocol.SuiteAES256GCM {
		return protocol.RecordHeaderSize + n + 16
	}
	return protocol.RecordHeaderSize + aes.BlockSize + (n/aes.BlockSize+1)*aes.BlockSize + sha256.Size
}

func mustSeal(t testing.TB, l *protocol.RecordLayer, pt []byte) []byte {
	t.Helper()
	f, err := l.Seal(pt)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// gcmRecord computes, with crypto/cipher alone, the GCM record the docs
// describe: header 0x17 || seq (8 bytes, big-endian); nonce = the 12-byte IV
// with its last 8 bytes XORed with seq; additional data = the header.
func gcmRecord(t testing.TB, key, iv []byte, seq uint64, pt []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 9)
	hdr[0] = protocol.TypeRecord
	binary.BigEndian.PutUint64(hdr[1:], seq)
	nonce := bytes.Clone(iv)
	for i := range 8 {
		nonce[4+i] ^= hdr[1+i]
	}
	return g.Seal(bytes.Clone(hdr), nonce, pt, hdr)
}

func TestRecordRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 15, 16, 17, 1000, protocol.MaxPlaintext}
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			seal, open := layerPair(t, suite)
			for i, n := range sizes {
				pt := make([]byte, n)
				rand.Read(pt)
				frame := mustSeal(t, seal, pt)
				if len(frame) != recordLen(suite, n) {
					t.Errorf("%d bytes: frame of %d bytes, want %d", n, len(frame), recordLen(suite, n))
				}
				if len(frame) > protocol.MaxFrameSize {
					t.Errorf("%d bytes: frame of %d bytes exceeds MaxFrameSize", n, len(frame))
				}
				if frame[0] != protocol.TypeRecord || binary.BigEndian.Uint64(frame[1:9]) != uint64(i) {
					t.Errorf("%d bytes: header %x, want type 0x17 and sequence %d", n, frame[:9], i)
				}
				if n >= 16 && bytes.Contains(frame, pt[:16]) {
					t.Errorf("%d bytes: plaintext visible in the frame", n)
				}
				got, err := open.Open(frame)
				if err != nil {
					t.Fatalf("%d bytes: open: %v", n, err)
				}
				if !bytes.Equal(got, pt) {
					t.Fatalf("%d bytes: opened something else", n)
				}
			}
			if seal.Seq() != uint64(len(sizes)) || open.Seq() != uint64(len(sizes)) {
				t.Fatalf("Seq = %d/%d, want %d", seal.Seq(), open.Seq(), len(sizes))
			}
		})
	}
}

func TestRecordSealTooLarge(t *testing.T) {
	for _, suite := range suites {
		seal, _ := layerPair(t, suite)
		_, err := seal.Seal(make([]byte, protocol.MaxPlaintext+1))
		wantCode(t, err, protocol.CodeTooLarge)
		if seal.Seq() != 0 {
			t.Fatalf("%s: a refused seal used sequence number 0", suite)
		}
	}
}

func TestRecordSequence(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			k1, k2 := randomKeys()
			seal := newLayer(t, suite, k1, k2)
			var frames [][]byte
			for i := range 3 {
				frames = append(frames, mustSeal(t, seal, fmt.Appendf(nil, "record %d", i)))
			}
			// Each case opens with a fresh layer; the last open must fail.
			cases := []struct {
				name  string
				order []int
			}{
				{"replayed", []int{0, 0}},
				{"replayed later", []int{0, 1, 0}},
				{"reordered", []int{1}},
				{"dropped", []int{0, 2}},
				{"replayed last", []int{0, 1, 2, 2}},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					open := newLayer(t, suite, k1, k2)
					last := len(tc.order) - 1
					for _, i := range tc.order[:last] {
						if _, err := open.Open(frames[i]); err != nil {
							t.Fatalf("open #%d: %v", i, err)
						}
					}
					_, err := open.Open(frames[tc.order[last]])
					wantCode(t, err, protocol.CodeBadSequence)
				})
			}
			t.Run("a rejected record leaves the state alone", func(t *testing.T) {
				open := newLayer(t, suite, k1, k2)
				if _, err := open.Open(frames[1]); !errors.Is(err, protocol.CodeBadSequence) {
					t.Fatalf("open #1 first: %v, want bad sequence", err)
				}
				for i := range frames {
					if _, err := open.Open(frames[i]); err != nil {
						t.Fatalf("open #%d: %v", i, err)
					}
				}
			})
		})
	}
}

// TestRecordBitFlips flips every bit of a small record, header included:
// each altered frame must fail with the code of the part it touched, and
// the failures must leave the opener able to open the real record.
func TestRecordBitFlips(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			seal, open := layerPair(t, suite)
			pt := []byte("hello, bit flips")
			frame := mustSeal(t, seal, pt)
			for i := range frame {
				want := protocol.CodeBadRecord
				switch {
				case i == 0:
					want = protocol.CodeMalformed // no longer a record
				case i < protocol.RecordHeaderSize:
					want = protocol.CodeBadSequence
				}
				for bit := range 8 {
					bad := bytes.Clone(frame)
					bad[i] ^= 1 << bit
					got, err := open.Open(bad)
					if err == nil {
						t.Fatalf("byte %d bit %d: altered record opened to %q", i, bit, got)
					}
					if !errors.Is(err, want) {
						t.Fatalf("byte %d bit %d: err = %v, want %s", i, bit, err, want)
					}
				}
			}
			if got, err := open.Open(frame); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("the real record after the altered ones: %q, %v", got, err)
			}
		})
	}
}

func TestRecordTruncatedAndExtended(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			seal, open := layerPair(t, suite)
			frame := mustSeal(t, seal, []byte("truncate me, every way"))
			for n := range len(frame) {
				want := protocol.CodeBadRecord
				if n < protocol.RecordHeaderSize {
					want = protocol.CodeMalformed
				}
				_, err := open.Open(frame[:n])
				if !errors.Is(err, want) {
					t.Fatalf("prefix of %d/%d bytes: err = %v, want %s", n, len(frame), err, want)
				}
			}
			for _, extra := range [][]byte{{0}, make([]byte, 16), make([]byte, 32)} {
				_, err := open.Open(append(bytes.Clone(frame), extra...))
				wantCode(t, err, protocol.CodeBadRecord)
			}
			if _, err := open.Open(frame); err != nil {
				t.Fatalf("the real record: %v", err)
			}
		})
	}
}

func TestRecordRejectsNonRecords(t *testing.T) {
	for _, suite := range suites {
		seal, open := layerPair(t, suite)
		frame := mustSeal(t, seal, []byte("x"))
		for _, typ := range []byte{protocol.TypeAlert, protocol.TypeFinished, 0x00, 0x16, 0x18} {
			bad := bytes.Clone(frame)
			bad[0] = typ
			_, err := open.Open(bad)
			wantCode(t, err, protocol.CodeMalformed)
		}
		huge := make([]byte, protocol.MaxFrameSize+1)
		huge[0] = protocol.TypeRecord
		_, err := open.Open(huge)
		wantCode(t, err, protocol.CodeFrameTooLarge)
	}
}

// TestRecordOtherDirection opens a record with the keys of the opposite
// direction, as a reflected record would be.
func TestRecordOtherDirection(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			secret := make([]byte, protocol.SecretSize)
			rand.Read(secret)
			th := seq(1, 32)
			ks, err := protocol.NewKeySchedule(secret)
			if err != nil {
				t.Fatal(err)
			}
			cSeal, cOpen, err := ks.TrafficKeys(suite, th, false)
			if err != nil {
				t.Fatal(err)
			}
			sSeal, sOpen, err := ks.TrafficKeys(suite, th, true)
			if err != nil {
				t.Fatal(err)
			}
			toServer := mustSeal(t, cSeal, []byte("to the server"))
			toClient := mustSeal(t, sSeal, []byte("to the client"))
			_, err = cOpen.Open(toServer)
			wantCode(t, err, protocol.CodeBadRecord)
			_, err = sOpen.Open(toClient)
			wantCode(t, err, protocol.CodeBadRecord)
			// The right ends still open them.
			if _, err := sOpen.Open(toServer); err != nil {
				t.Fatal(err)
			}
			if _, err := cOpen.Open(toClient); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRecordCBCRandomIV(t *testing.T) {
	k1, k2 := randomKeys()
	a := newLayer(t, protocol.SuiteAES256CBCHMAC, k1, k2)
	b := newLayer(t, protocol.SuiteAES256CBCHMAC, k1, k2)
	pt := bytes.Repeat([]byte("same plaintext. "), 4)
	fa, fb := mustSeal(t, a, pt), mustSeal(t, b, pt)
	if bytes.Equal(fa[9:25], fb[9:25]) {
		t.Fatal("two records at sequence 0 share their IV")
	}
	if bytes.Equal(fa[25:], fb[25:]) {
		t.Fatal("two seals of the same plaintext under the same keys and sequence gave the same ciphertext")
	}
}

// TestRecordCBCLayout opens a CBC record with crypto/cipher and crypto/hmac
// alone: header || IV || AES-256-CBC(plaintext || PKCS#7 padding) ||
// HMAC-SHA256(mac key, everything before it).
func TestRecordCBCLayout(t *testing.T) {
	encKey, macKey := randomKeys()
	l := newLayer(t, protocol.SuiteAES256CBCHMAC, encKey, macKey)
	for _, pt := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("b"), 16), bytes.Repeat([]byte("c"), 37)} {
		frame := mustSeal(t, l, pt)
		macStart := len(frame) - sha256.Size
		if !hmac.Equal(frame[macStart:], hmacSHA256(macKey, frame[:macStart])) {
			t.Fatalf("%d bytes: the MAC is not HMAC-SHA256 over header, IV and ciphertext", len(pt))
		}
		b, _ := aes.NewCipher(encKey)
		body := bytes.Clone(frame[9+16 : macStart])
		cipher.NewCBCDecrypter(b, frame[9:9+16]).CryptBlocks(body, body)
		pad := 16 - len(pt)%16
		want := append(bytes.Clone(pt), bytes.Repeat([]byte{byte(pad)}, pad)...)
		if !bytes.Equal(body, want) {
			t.Fatalf("%d bytes: decrypted body %x, want %x", len(pt), body, want)
		}
	}
}

// TestRecordGCMKnownAnswer checks the nonce construction against
// crypto/cipher: a 12-byte IV whose last 8 bytes are XORed with the
// big-endian sequence number, and the 9-byte header as additional data.
func TestRecordGCMKnownAnswer(t *testing.T) {
	key := seq(0x10, 32)
	iv := seq(0xa0, 12)
	l, err := protocol.NewGCMRecordLayer(key, iv)
	if err != nil {
		t.Fatal(err)
	}
	open, _ := protocol.NewGCMRecordLayer(key, iv)
	for n := range uint64(3) {
		pt := fmt.Appendf(nil, "record number %d", n)
		got := mustSeal(t, l, pt)
		want := gcmRecord(t, key, iv, n, pt)
		if !bytes.Equal(got, want) {
			t.Fatalf("seq %d:\n got %x\nwant %x", n, got, want)
		}
		if _, err := open.Open(want); err != nil {
			t.Fatalf("seq %d: open: %v", n, err)
		}
	}
	// Same plaintext, consecutive records: different nonces, so different
	// ciphertexts and tags.
	a, b := mustSeal(t, l, []byte("same")), mustSeal(t, l, []byte("same"))
	if bytes.Equal(a[9:], b[9:]) {
		t.Fatal("two records with the same plaintext have the same ciphertext")
	}
}

func TestRecordLayerKeySizes(t *testing.T) {
	k := make([]byte, 64)
	gcm := []struct{ key, iv int }{{16, 12}, {24, 12}, {31, 12}, {33, 12}, {32, 8}, {32, 16}, {32, 0}, {0, 0}}
	for _, c := range gcm {
		if _, err := protocol.NewGCMRecordLayer(k[:c.key], k[:c.iv]); err == nil {
			t.Errorf("GCM layer with a %d-byte key and a %d-byte IV", c.key, c.iv)
		}
	}
	cbc := []struct{ enc, mac int }{{16, 32}, {32, 16}, {32, 64}, {0, 32}, {32, 0}}
	for _, c := range cbc {
		if _, err := protocol.NewCBCRecordLayer(k[:c.enc], k[:c.mac]); err == nil {
			t.Errorf("CBC layer with a %d-byte key and a %d-byte MAC key", c.enc, c.mac)
		}
	}
}

func TestSuiteString(t *testing.T) {
	for s, want := range map[protocol.Suite]string{
		protocol.SuiteAES256GCM:     "AES-256-GCM",
		protocol.SuiteAES256CBCHMAC: "AES-256-CBC-HMAC-SHA256",
		0x7777:                      "suite(0x7777)",
	} {
		if got := s.String(); got != want {
			t.Errorf("Suite(%#04x).String() = %q, want %q", uint16(s), got, want)
		}
	}
	if len(protocol.SupportedSuites) == 0 || protocol.SupportedSuites[0] != protocol.SuiteAES256GCM {
		t.Errorf("SupportedSuites = %v, want GCM first", protocol.SupportedSuites)
	}
}

// AppendSeal appends the same frame Seal would make after whatever dst
// holds, leaves dst's bytes alone, and with room enough allocates nothing.
func TestRecordAppendSeal(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			seal, open := layerPair(t, suite)
			prefix := []byte("kept")
			buf := append(make([]byte, 0, 64<<10), prefix...)
			for i, n := range []int{0, 17, 256, 1000} {
				pt := make([]byte, n)
				rand.Read(pt)
				out, err := seal.AppendSeal(buf, pt)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out[:len(prefix)], prefix) {
					t.Fatalf("%d bytes: dst's bytes changed", n)
				}
				frame := out[len(prefix):]
				if len(frame) != recordLen(suite, n) || binary.BigEndian.Uint64(frame[1:9]) != uint64(i) {
					t.Fatalf("%d bytes: frame of %d bytes, sequence %d", n, len(frame), binary.BigEndian.Uint64(frame[1:9]))
				}
				got, err := open.Open(frame)
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("%d bytes: open: %v", n, err)
				}
			}
			// A too-large plaintext appends nothing and keeps the sequence.
			seq := seal.Seq()
			out, err := seal.AppendSeal(buf, make([]byte, protocol.MaxPlaintext+1))
			if !errors.Is(err, protocol.CodeTooLarge) || len(out) != len(buf) || seal.Seq() != seq {
				t.Fatalf("too large: %v, %d bytes appended, seq %d → %d", err, len(out)-len(buf), seq, seal.Seq())
			}
			if suite == protocol.SuiteAES256GCM {
				pt := make([]byte, 256)
				allocs := testing.AllocsPerRun(100, func() {
					if _, err := seal.AppendSeal(buf[:0], pt); err != nil {
						t.Fatal(err)
					}
				})
				if allocs != 0 {
					t.Errorf("GCM seal into a buffer with room: %.0f allocations per record, want 0", allocs)
				}
			}
		})
	}
}
