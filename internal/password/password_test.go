package password

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

// fast are cheap parameters that keep tests quick under -race.
var fast = Params{Memory: 1024, Time: 1}

// phcRE is the shape every encoded hash must have.
var phcRE = regexp.MustCompile(`^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$`)

const goodPW = "correct horse battery staple"

// encodeByHand builds a PHC string without using this package's encoder.
func encodeByHand(m, t uint32, p uint8, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", m, t, p,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// mustHash hashes pw with a fresh Hasher at p, failing the test on error.
func mustHash(t *testing.T, p Params, pw string) string {
	t.Helper()
	enc, err := NewHasher(p, 1).Hash(context.Background(), pw)
	if err != nil {
		t.Fatalf("Hash(%q) with %+v: %v", pw, p, err)
	}
	return enc
}

func TestHashVerifyRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		params Params
		pw     string
	}{
		{"ascii", fast, goodPW},
		{"exactly 8", fast, "12345678"},
		{"multi-byte runes", fast, "пароль-密码-🔑🔑"},
		{"1024 bytes", fast, strings.Repeat("x", 1024)},
		{"two threads", Params{Memory: 1024, Time: 1, Threads: 2}, goodPW},
		{"short salt, long key", Params{Memory: 1024, Time: 1, SaltLen: 8, KeyLen: 128}, goodPW},
		{"long salt, short key", Params{Memory: 1024, Time: 1, SaltLen: 64, KeyLen: 16}, goodPW},
		{"minimum memory", Params{Memory: 8, Time: 1}, goodPW},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHasher(tt.params, 2)
			enc, err := h.Hash(context.Background(), tt.pw)
			if err != nil {
				t.Fatalf("Hash: %v", err)
			}
			needsRehash, err := h.Verify(context.Background(), enc, tt.pw)
			if err != nil {
				t.Fatalf("Verify(%q): %v", enc, err)
			}
			if needsRehash {
				t.Errorf("Verify(%q) needsRehash = true for a hash made with the same params", enc)
			}
		})
	}
}

func TestVerifyWrongPassword(t *testing.T) {
	h := NewHasher(fast, 1)
	enc := mustHash(t, fast, goodPW)
	tests := []struct {
		name, pw string
	}{
		{"empty", ""},
		{"one char changed", "correct horse battery stapla"},
		{"case changed", "Correct horse battery staple"},
		{"prefix", "correct horse battery stapl"},
		{"suffix added", goodPW + " "},
		{"trailing NUL", goodPW + "\x00"},
		{"entirely different", "hunter2hunter2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			needsRehash, err := h.Verify(context.Background(), enc, tt.pw)
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("Verify(%q) err = %v, want ErrMismatch", tt.pw, err)
			}
			if needsRehash {
				t.Error("needsRehash = true on a mismatch")
			}
		})
	}
}

func TestHashSaltsDiffer(t *testing.T) {
	h := NewHasher(fast, 2)
	a, err := h.Hash(context.Background(), goodPW)
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.Hash(context.Background(), goodPW)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatalf("two hashes of the same password are equal: %s", a)
	}
	pa, _ := parse(a)
	pb, _ := parse(b)
	if string(pa.salt) == string(pb.salt) {
		t.Errorf("two hashes share a salt: %x", pa.salt)
	}
}

func TestHashFormat(t *testing.T) {
	tests := []struct {
		name       string
		params     Params
		wantPrefix string
		saltLen    int
		keyLen     int
	}{
		// The only test at the full default cost (19 MiB, t=2).
		{"defaults", Params{}, "$argon2id$v=19$m=19456,t=2,p=1$", 16, 32},
		{"fast", fast, "$argon2id$v=19$m=1024,t=1,p=1$", 16, 32},
		{"custom", Params{Memory: 2048, Time: 3, Threads: 4, SaltLen: 24, KeyLen: 64}, "$argon2id$v=19$m=2048,t=3,p=4$", 24, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := mustHash(t, tt.params, goodPW)
			if !phcRE.MatchString(enc) {
				t.Errorf("hash %q does not match %s", enc, phcRE)
			}
			if !strings.HasPrefix(enc, tt.wantPrefix) {
				t.Errorf("hash %q, want prefix %q", enc, tt.wantPrefix)
			}
			f := strings.Split(enc, "$")
			salt, err := base64.RawStdEncoding.DecodeString(f[4])
			if err != nil || len(salt) != tt.saltLen {
				t.Errorf("salt %q: %d bytes, err %v; want %d bytes", f[4], len(salt), err, tt.saltLen)
			}
			key, err := base64.RawStdEncoding.DecodeString(f[5])
			if err != nil || len(key) != tt.keyLen {
				t.Errorf("hash %q: %d bytes, err %v; want %d bytes", f[5], len(key), err, tt.keyLen)
			}
		})
	}
}

// TestVerifyKnownAnswer checks Verify against a hash computed directly with
// argon2.IDKey and encoded by hand, and that any one-bit change is rejected.
func TestVerifyKnownAnswer(t *testing.T) {
	const (
		m  = 1024
		tc = 1
		p  = 1
		pw = "password"
	)
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(pw), salt, tc, m, p, 32)

	flip := func(b []byte, i int, bit byte) []byte {
		c := append([]byte(nil), b...)
		c[i] ^= bit
		return c
	}
	tests := []struct {
		name    string
		encoded string
		pw      string
		wantErr error
	}{
		{"exact", encodeByHand(m, tc, p, salt, key), pw, nil},
		{"password one bit off", encodeByHand(m, tc, p, salt, key), "passwore", ErrMismatch}, // 'd'^1 == 'e'
		{"hash first bit flipped", encodeByHand(m, tc, p, salt, flip(key, 0, 0x80)), pw, ErrMismatch},
		{"hash last bit flipped", encodeByHand(m, tc, p, salt, flip(key, len(key)-1, 0x01)), pw, ErrMismatch},
		{"salt bit flipped", encodeByHand(m, tc, p, flip(salt, 7, 0x04), key), pw, ErrMismatch},
		{"memory differs", encodeByHand(m+8, tc, p, salt, key), pw, ErrMismatch},
		{"time differs", encodeByHand(m, tc+1, p, salt, key), pw, ErrMismatch},
		{"threads differ", encodeByHand(m, tc, p+1, salt, key), pw, ErrMismatch},
	}
	h := NewHasher(fast, 1)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.Verify(context.Background(), tt.encoded, tt.pw)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Verify(%q, %q) = %v, want %v", tt.encoded, tt.pw, err, tt.wantErr)
			}
		})
	}
}

// TestVerifyReferenceVectors checks hashes produced by the Argon2 reference
// implementation (phc-winner-argon2, src/test.c), so that this package and
// golang.org/x/crypto/argon2 agree with an independent implementation.
func TestVerifyReferenceVectors(t *testing.T) {
	tests := []struct {
		encoded, pw string
	}{
		{"$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4", "password"},
		{"$argon2id$v=19$m=256,t=2,p=2$c29tZXNhbHQ$bQk8UB/VmZZF4Oo79iDXuL5/0ttZwg2f/5U52iv1cDc", "password"},
		{"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "password"},
	}
	h := NewHasher(fast, 1)
	for _, tt := range tests {
		t.Run(tt.encoded[:strings.LastIndexByte(tt.encoded, '$')], func(t *testing.T) {
			if _, err := h.Verify(context.Background(), tt.encoded, tt.pw); err != nil {
				t.Errorf("Verify(%q, %q) = %v, want nil", tt.encoded, tt.pw, err)
			}
			if _, err := h.Verify(context.Background(), tt.encoded, "passwore"); !errors.Is(err, ErrMismatch) {
				t.Errorf("Verify(%q, wrong) = %v, want ErrMismatch", tt.encoded, err)
			}
		})
	}
}

func TestVerifyNeedsRehash(t *testing.T) {
	small := Params{Memory: 2048, Time: 2, Threads: 2, SaltLen: 16, KeyLen: 32}
	tests := []struct {
		name   string
		hasher Params // the Hasher doing the Verify
		stored Params // the params the stored hash was made with
		want   bool
	}{
		// The two cases the policy exists for, at the real default cost.
		{"default: older m=8192,t=1", Params{}, Params{Memory: 8192, Time: 1}, true},
		{"default: current", Params{}, Params{}, false},

		{"same", small, small, false},
		{"lower memory", small, Params{Memory: 1024, Time: 2, Threads: 2}, true},
		{"lower time", small, Params{Memory: 2048, Time: 1, Threads: 2}, true},
		{"fewer threads", small, Params{Memory: 2048, Time: 2, Threads: 1}, true},
		{"shorter salt", small, Params{Memory: 2048, Time: 2, Threads: 2, SaltLen: 8}, true},
		{"longer salt", small, Params{Memory: 2048, Time: 2, Threads: 2, SaltLen: 32}, true},
		{"shorter key", small, Params{Memory: 2048, Time: 2, Threads: 2, KeyLen: 16}, true},
		{"longer key", small, Params{Memory: 2048, Time: 2, Threads: 2, KeyLen: 64}, true},
		{"higher memory", small, Params{Memory: 4096, Time: 2, Threads: 2}, false},
		{"higher time", small, Params{Memory: 2048, Time: 3, Threads: 2}, false},
		{"more threads", small, Params{Memory: 2048, Time: 2, Threads: 4}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := mustHash(t, tt.stored, goodPW)
			got, err := NewHasher(tt.hasher, 1).Verify(context.Background(), enc, goodPW)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got != tt.want {
				t.Errorf("needsRehash = %v, want %v (stored %s)", got, tt.want, enc)
			}
		})
	}
}

// TestVerifyUsesStoredParams verifies with a Hasher whose every parameter
// differs from the stored hash's: the match proves recomputation used the
// stored ones.
func TestVerifyUsesStoredParams(t *testing.T) {
	enc := mustHash(t, Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, goodPW)
	h := NewHasher(Params{Memory: 2048, Time: 3, Threads: 2, SaltLen: 8, KeyLen: 16}, 1)
	needsRehash, err := h.Verify(context.Background(), enc, goodPW)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !needsRehash {
		t.Error("needsRehash = false, want true")
	}
}

func TestVerifyMalformed(t *testing.T) {
	salt := base64.RawStdEncoding.EncodeToString([]byte("0123456789abcdef"))
	key := base64.RawStdEncoding.EncodeToString(make([]byte, 32))
	valid := "$argon2id$v=19$m=1024,t=1,p=1$" + salt + "$" + key
	if _, err := parse(valid); err != nil {
		t.Fatalf("base case %q: %v", valid, err)
	}
	withCosts := func(c string) string { return "$argon2id$v=19$" + c + "$" + salt + "$" + key }
	withSalt := func(s string) string { return "$argon2id$v=19$m=1024,t=1,p=1$" + s + "$" + key }
	withKey := func(k string) string { return "$argon2id$v=19$m=1024,t=1,p=1$" + salt + "$" + k }
	b64 := func(n int) string { return base64.RawStdEncoding.EncodeToString(make([]byte, n)) }

	tests := []struct {
		name, encoded string
	}{
		{"empty", ""},
		{"just $", "$"},
		{"no leading $", valid[1:]},
		{"argon2i", strings.Replace(valid, "argon2id", "argon2i", 1)},
		{"argon2d", strings.Replace(valid, "argon2id", "argon2d", 1)},
		{"upper case algorithm", strings.Replace(valid, "argon2id", "ARGON2ID", 1)},
		{"bcrypt", "$2a$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ012"},
		{"v=16", strings.Replace(valid, "v=19", "v=16", 1)},
		{"v=019", strings.Replace(valid, "v=19", "v=019", 1)},
		{"missing version", strings.Replace(valid, "v=19$", "", 1)},
		{"missing costs", "$argon2id$v=19$" + salt + "$" + key},
		{"missing salt", "$argon2id$v=19$m=1024,t=1,p=1$" + key},
		{"missing hash", "$argon2id$v=19$m=1024,t=1,p=1$" + salt},
		{"missing hash, trailing $", "$argon2id$v=19$m=1024,t=1,p=1$" + salt + "$"},
		{"extra trailing $", valid + "$"},
		{"extra field", valid + "$" + key},
		{"extra $ inside", strings.Replace(valid, "$m=", "$$m=", 1)},
		{"extra leading $", "$" + valid},
		{"missing m", withCosts("t=1,p=1")},
		{"missing t", withCosts("m=1024,p=1")},
		{"missing p", withCosts("m=1024,t=1")},
		{"extra cost", withCosts("m=1024,t=1,p=1,k=1")},
		{"trailing comma", withCosts("m=1024,t=1,p=1,")},
		{"reordered", withCosts("t=1,m=1024,p=1")},
		{"space", withCosts("m=1024, t=1,p=1")},
		{"m=0", withCosts("m=0,t=1,p=1")},
		{"m empty", withCosts("m=,t=1,p=1")},
		{"m negative", withCosts("m=-1024,t=1,p=1")},
		{"m plus sign", withCosts("m=+1024,t=1,p=1")},
		{"m leading zero", withCosts("m=01024,t=1,p=1")},
		{"m hex", withCosts("m=0x400,t=1,p=1")},
		{"m below 8 per lane", withCosts("m=15,t=1,p=2")},
		{"m just over 1 GiB", withCosts("m=1048577,t=1,p=1")},
		{"m huge", withCosts("m=4294967295,t=1,p=1")},
		{"m overflows uint32", withCosts("m=4294967296,t=1,p=1")},
		{"m overflows uint64", withCosts("m=99999999999999999999999,t=1,p=1")},
		{"t=0", withCosts("m=1024,t=0,p=1")},
		{"t=101", withCosts("m=1024,t=101,p=1")},
		{"p=0", withCosts("m=1024,t=1,p=0")},
		{"p=256", withCosts("m=4096,t=1,p=256")},
		{"empty salt", withSalt("")},
		{"salt 7 bytes", withSalt(b64(7))},
		{"salt 65 bytes", withSalt(b64(65))},
		{"salt bad base64 char", withSalt("AAAA*AAAAAAAAAAAAAAAAA")},
		{"salt url-safe base64", withSalt("AAAA-AAAAAAAAAAAAAAAAA")},
		{"salt padded", withSalt(salt + "==")},
		{"salt impossible length", withSalt(salt[:21])}, // 4n+1 characters
		{"salt with newline", withSalt(salt[:10] + "\n" + salt[10:])},
		{"salt non-canonical trailing bits", withSalt(salt[:len(salt)-1] + "x")},
		{"empty hash", withKey("")},
		{"hash 15 bytes", withKey(b64(15))},
		{"hash 129 bytes", withKey(b64(129))},
		{"hash bad base64", withKey(strings.Repeat("!", 43))},
		{"hash with CRLF", withKey(key[:20] + "\r\n" + key[20:])},
		{"non-ASCII", strings.Replace(valid, "argon2id", "argon2íd", 1)},
		{"NUL", valid + "\x00"},
		{"too long overall", valid + strings.Repeat("A", maxEncodedLen)},
	}
	h := NewHasher(fast, 1)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parse(tt.encoded); !errors.Is(err, ErrMalformed) {
				t.Errorf("parse(%q) err = %v, want ErrMalformed", tt.encoded, err)
			}
			needsRehash, err := h.Verify(context.Background(), tt.encoded, goodPW)
			if !errors.Is(err, ErrMalformed) || needsRehash {
				t.Errorf("Verify(%q) = %v, %v; want false, ErrMalformed", tt.encoded, needsRehash, err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		pw   string
		want error
	}{
		{"empty", "", ErrTooShort},
		{"7 chars", "1234567", ErrTooShort},
		{"8 chars", "12345678", nil},
		{"7 multi-byte runes (14 bytes)", strings.Repeat("é", 7), ErrTooShort},
		{"8 multi-byte runes", strings.Repeat("é", 8), nil},
		{"8 four-byte runes", strings.Repeat("🔑", 8), nil},
		{"1024 bytes", strings.Repeat("a", 1024), nil},
		{"1025 bytes", strings.Repeat("a", 1025), ErrTooLong},
		{"1025 bytes of multi-byte runes", strings.Repeat("é", 512) + "a", ErrTooLong},
		{"invalid UTF-8", "abcdefgh\xff", ErrInvalidUTF8},
		{"truncated rune", "abcdefgh\xc3", ErrInvalidUTF8},
		{"surrogate half", "abcdefgh\xed\xa0\x80", ErrInvalidUTF8},
		{"spaces only", "        ", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Validate(tt.pw); err != tt.want {
				t.Errorf("Validate(%q) = %v, want %v", tt.pw, err, tt.want)
			}
		})
	}
}

func TestLengthLimits(t *testing.T) {
	h := NewHasher(fast, 1)
	enc := mustHash(t, fast, goodPW)
	tooLong := strings.Repeat("a", 1025)
	tests := []struct {
		name string
		run  func() error
		want error
	}{
		{"Hash too short", func() error { _, err := h.Hash(context.Background(), "short"); return err }, ErrTooShort},
		{"Hash too long", func() error { _, err := h.Hash(context.Background(), tooLong); return err }, ErrTooLong},
		{"Hash invalid UTF-8", func() error { _, err := h.Hash(context.Background(), "abcdefgh\xff"); return err }, ErrInvalidUTF8},
		{"Verify too long", func() error { _, err := h.Verify(context.Background(), enc, tooLong); return err }, ErrTooLong},
		{"DummyVerify too long", func() error { return h.DummyVerify(context.Background(), tooLong) }, ErrTooLong},
		// Verify does not apply the minimum-length policy: it just mismatches.
		{"Verify short", func() error { _, err := h.Verify(context.Background(), enc, "short"); return err }, ErrMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDummyVerify(t *testing.T) {
	var ops atomic.Int32
	h := NewHasher(fast, 1)
	h.testHookAcquired = func() { ops.Add(1) }

	// The dummy hash is at h's own parameters, so DummyVerify costs what a
	// Verify of an up-to-date account costs.
	ph, err := parse(h.dummy)
	if err != nil {
		t.Fatalf("parse(dummy): %v", err)
	}
	if h.needsRehash(&ph) {
		t.Errorf("dummy hash %q is not at the Hasher's parameters %+v", h.dummy, h.params)
	}

	for _, pw := range []string{"", "short", goodPW, "12345678", strings.Repeat("x", 1024)} {
		t.Run(fmt.Sprintf("%.16q", pw), func(t *testing.T) {
			before := ops.Load()
			if err := h.DummyVerify(context.Background(), pw); err != ErrMismatch {
				t.Errorf("DummyVerify = %v, want ErrMismatch", err)
			}
			if ops.Load() != before+1 {
				t.Error("DummyVerify did not run a hash operation")
			}
		})
	}
}

// TestConcurrencyCap holds the only slot of a Hasher with an in-flight Hash
// and checks that other operations give up with ErrBusy when their context
// ends, then proceed once the slot is free.
func TestConcurrencyCap(t *testing.T) {
	h := NewHasher(fast, 1)
	enc := mustHash(t, fast, goodPW)

	inside := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	h.testHookAcquired = func() {
		once.Do(func() { // only the first operation blocks
			close(inside)
			<-release
		})
	}
	type result struct {
		enc string
		err error
	}
	first := make(chan result, 1)
	go func() {
		enc, err := h.Hash(context.Background(), goodPW)
		first <- result{enc, err}
	}()
	<-inside // the first Hash now holds the only slot

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	ops := []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"Hash", func(ctx context.Context) error { _, err := h.Hash(ctx, goodPW); return err }},
		{"Verify", func(ctx context.Context) error { _, err := h.Verify(ctx, enc, goodPW); return err }},
		{"DummyVerify", func(ctx context.Context) error { return h.DummyVerify(ctx, goodPW) }},
	}
	ctxs := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		wantCtx error
	}{
		{"cancelled", func() (context.Context, context.CancelFunc) { return cancelled, func() {} }, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, context.DeadlineExceeded},
	}
	for _, op := range ops {
		for _, c := range ctxs {
			t.Run(op.name+"/"+c.name, func(t *testing.T) {
				ctx, cancel := c.ctx()
				defer cancel()
				err := op.run(ctx)
				if !errors.Is(err, ErrBusy) || !errors.Is(err, c.wantCtx) {
					t.Fatalf("err = %v, want ErrBusy wrapping %v", err, c.wantCtx)
				}
			})
		}
	}

	close(release)
	r := <-first
	if r.err != nil {
		t.Fatalf("in-flight Hash: %v", r.err)
	}
	if _, err := h.Verify(context.Background(), r.enc, goodPW); err != nil {
		t.Fatalf("in-flight Hash produced a bad hash: %v", err)
	}
	// No slot leaked: with the cap at 1, this would block forever otherwise.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.Hash(ctx, goodPW); err != nil {
		t.Fatalf("Hash after release: %v", err)
	}
}

// TestConcurrencyCapBound runs many operations at once and checks that no
// more than maxConcurrent ever hash simultaneously.
func TestConcurrencyCapBound(t *testing.T) {
	for _, limit := range []int{1, 2, 4} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			h := NewHasher(Params{Memory: 64, Time: 1}, limit)
			var cur, peak atomic.Int32
			h.testHookAcquired = func() {
				n := cur.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				time.Sleep(time.Millisecond)
				cur.Add(-1)
			}
			var wg sync.WaitGroup
			for range 4 * limit {
				wg.Go(func() {
					if _, err := h.Hash(context.Background(), goodPW); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if p := peak.Load(); p > int32(limit) || p < 1 {
				t.Errorf("peak concurrent operations = %d, want 1..%d", p, limit)
			}
		})
	}
}

// TestCancelledContextFreeSlot: with a slot free, an already-ended context is
// not "busy"; the operation is skipped with the plain context error.
func TestCancelledContextFreeSlot(t *testing.T) {
	h := NewHasher(fast, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := h.Hash(ctx, goodPW)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrBusy) {
		t.Fatalf("err = %v, want context.Canceled without ErrBusy", err)
	}
	if len(h.sem) != 0 {
		t.Fatalf("slot leaked: %d in use", len(h.sem))
	}
}

func TestNewHasher(t *testing.T) {
	h := NewHasher(Params{}, 0)
	want := Params{Memory: 19456, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}
	if h.params != want {
		t.Errorf("defaults = %+v, want %+v", h.params, want)
	}
	if cap(h.sem) != runtime.NumCPU() {
		t.Errorf("maxConcurrent 0 gave %d slots, want NumCPU = %d", cap(h.sem), runtime.NumCPU())
	}
	if got := cap(NewHasher(fast, 3).sem); got != 3 {
		t.Errorf("maxConcurrent 3 gave %d slots", got)
	}
}

func TestParamsCheck(t *testing.T) {
	tests := []struct {
		name string
		p    Params
		ok   bool
	}{
		{"zero", Params{}, true},
		{"fast", fast, true},
		{"maximums", Params{Memory: 1 << 20, Time: 100, Threads: 255, SaltLen: 64, KeyLen: 128}, true},
		{"minimums", Params{Memory: 8, Time: 1, Threads: 1, SaltLen: 8, KeyLen: 16}, true},
		{"memory below 8 per thread", Params{Memory: 31, Threads: 4}, false},
		{"memory over 1 GiB", Params{Memory: 1<<20 + 1}, false},
		{"time over 100", Params{Time: 101}, false},
		{"salt too short", Params{SaltLen: 7}, false},
		{"salt too long", Params{SaltLen: 65}, false},
		{"key too short", Params{KeyLen: 15}, false},
		{"key too long", Params{KeyLen: 129}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Check()
			if (err == nil) != tt.ok {
				t.Fatalf("Check() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "password: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			func() {
				defer func() {
					if r := recover(); (r == nil) != tt.ok {
						t.Errorf("NewHasher panic = %v, want panic=%v", r, !tt.ok)
					}
				}()
				NewHasher(tt.p, 1)
			}()
		})
	}
	t.Run("negative maxConcurrent", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Error("NewHasher(fast, -1) did not panic")
			}
		}()
		NewHasher(fast, -1)
	})
}

// TestEncodeParseRoundTrip checks that every Params the package accepts
// produces hashes the parser accepts back unchanged.
func TestEncodeParseRoundTrip(t *testing.T) {
	tests := []phc{
		{memory: 8, time: 1, threads: 1, salt: make([]byte, 8), key: make([]byte, 16)},
		{memory: 1 << 20, time: 100, threads: 255, salt: make([]byte, 64), key: make([]byte, 128)},
		{memory: 19456, time: 2, threads: 1, salt: []byte("0123456789abcdef"), key: []byte("0123456789abcdef0123456789abcdef")},
	}
	for _, ph := range tests {
		enc := ph.encode()
		t.Run(enc, func(t *testing.T) {
			got, err := parse(enc)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if got.encode() != enc {
				t.Errorf("round trip gave %q", got.encode())
			}
			if len(enc) > maxEncodedLen {
				t.Errorf("encoding is %d bytes, over maxEncodedLen %d", len(enc), maxEncodedLen)
			}
		})
	}
}

// FuzzParse checks that the parser of stored hashes never panics, that what
// it accepts is within bounds, and that it accepts only canonical encodings.
func FuzzParse(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY")
	f.Add("$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4")
	f.Add("$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc")
	f.Add("$argon2id$v=19$m=1048576,t=100,p=255$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2i$v=19$m=256,t=2,p=1$c29tZXNhbHQ$iekCn0Y3spW+sCcFanM2xBT63UP2sghkUoHLIUpWRS8")
	f.Add("$argon2id$v=19$m=4294967295,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		ph, err := parse(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("parse(%q) error %v does not wrap ErrMalformed", s, err)
			}
			return
		}
		if ph.memory > maxMemory || ph.memory < minMemoryPerLane*uint32(ph.threads) ||
			ph.time < minTime || ph.time > maxTime || ph.threads < minThreads ||
			len(ph.salt) < minSaltLen || len(ph.salt) > maxSaltLen ||
			len(ph.key) < minKeyLen || len(ph.key) > maxKeyLen {
			t.Fatalf("parse(%q) accepted out-of-bounds %+v", s, ph)
		}
		if enc := ph.encode(); enc != s {
			t.Fatalf("parse accepted non-canonical %q (canonical %q)", s, enc)
		}
	})
}

// BenchmarkHash measures one Hash at the default parameters (19 MiB, t=2, p=1).
func BenchmarkHash(b *testing.B) {
	h := NewHasher(Params{}, 1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Hash(ctx, goodPW); err != nil {
			b.Fatal(err)
		}
	}
}
