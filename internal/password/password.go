package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Sentinel errors. Errors returned by this package wrap one of these (or a
// context error) and can be told apart with [errors.Is].
var (
	// ErrMismatch means the password does not match the stored hash, or,
	// from DummyVerify, that there was no account to match.
	ErrMismatch = errors.New("password: mismatch")
	// ErrTooShort means the password has fewer than 8 characters (runes).
	ErrTooShort = errors.New("password: shorter than 8 characters")
	// ErrTooLong means the password is longer than 1024 bytes.
	ErrTooLong = errors.New("password: longer than 1024 bytes")
	// ErrInvalidUTF8 means the password is not valid UTF-8.
	ErrInvalidUTF8 = errors.New("password: not valid UTF-8")
	// ErrMalformed means an encoded hash is not a PHC string this package
	// accepts: not argon2id, not version 19, or parameters, salt or hash out
	// of bounds. Returned errors add a detail after the sentinel's text but
	// never echo the encoded hash itself.
	ErrMalformed = errors.New("password: malformed hash")
	// ErrBusy means the context ended while the operation waited for one of
	// the Hasher's concurrency slots. Errors wrapping it also wrap the
	// context's error (context.Canceled or context.DeadlineExceeded).
	ErrBusy = errors.New("password: too many concurrent hash operations")
)

// Password policy, enforced by Validate.
const (
	minRunes = 8
	maxBytes = 1024
)

// Bounds on Argon2id parameters. Parse rejects encoded hashes outside them
// and Params.Check rejects Hasher parameters outside them, so that every hash
// this package writes it can also read back.
const (
	minMemoryPerLane = 8       // KiB per lane; argon2 needs 2 blocks per sync point, 4 sync points
	maxMemory        = 1 << 20 // KiB = 1 GiB: bounds what a tampered stored hash can make us allocate
	minTime          = 1
	maxTime          = 100
	minThreads       = 1
	maxThreads       = 255
	minSaltLen       = 8
	maxSaltLen       = 64
	minKeyLen        = 16
	maxKeyLen        = 128

	// maxEncodedLen bounds the length of an encoded hash before any parsing.
	// The longest valid encoding is about 300 bytes.
	maxEncodedLen = 512
)

// Defaults applied to zero-valued Params fields.
const (
	defaultMemory  = 19456 // KiB = 19 MiB, OWASP's minimum for Argon2id with t=2, p=1
	defaultTime    = 2
	defaultThreads = 1
	defaultSaltLen = 16
	defaultKeyLen  = 32
)

// Params are Argon2id cost parameters. The zero value of every field selects
// a default, so Params{} is OWASP's minimum recommendation for Argon2id:
// m=19456 KiB, t=2, p=1.
type Params struct {
	// Memory is the memory cost in KiB; every hash operation allocates this
	// much. Zero means 19456 (19 MiB, OWASP's floor). It must be at least
	// 8 KiB per thread and at most 1048576 (1 GiB).
	Memory uint32
	// Time is the number of passes over memory. Zero means 2; at most 100.
	Time uint32
	// Threads is the number of lanes (and goroutines) per hash operation.
	// Zero means 1.
	Threads uint8
	// SaltLen is the length of the random salt in bytes. Zero means 16; it
	// must be between 8 and 64.
	SaltLen uint32
	// KeyLen is the length of the derived hash in bytes. Zero means 32; it
	// must be between 16 and 128.
	KeyLen uint32
}

// withDefaults returns p with every zero field replaced by its default.
func (p Params) withDefaults() Params {
	if p.Memory == 0 {
		p.Memory = defaultMemory
	}
	if p.Time == 0 {
		p.Time = defaultTime
	}
	if p.Threads == 0 {
		p.Threads = defaultThreads
	}
	if p.SaltLen == 0 {
		p.SaltLen = defaultSaltLen
	}
	if p.KeyLen == 0 {
		p.KeyLen = defaultKeyLen
	}
	return p
}

// Check reports whether p, after defaults are applied to its zero fields, is
// within the bounds this package accepts when it parses a stored hash.
// NewHasher panics on Params that fail Check; configuration loaders can call
// Check first to report a bad setting as an error instead.
func (p Params) Check() error {
	p = p.withDefaults()
	switch {
	case p.Memory < minMemoryPerLane*uint32(p.Threads):
		return fmt.Errorf("password: Memory %d KiB is below %d KiB per thread", p.Memory, minMemoryPerLane)
	case p.Memory > maxMemory:
		return fmt.Errorf("password: Memory %d KiB is above %d KiB", p.Memory, maxMemory)
	case p.Time > maxTime:
		return fmt.Errorf("password: Time %d is above %d", p.Time, maxTime)
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Errorf("password: SaltLen %d is outside %d..%d", p.SaltLen, minSaltLen, maxSaltLen)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("password: KeyLen %d is outside %d..%d", p.KeyLen, minKeyLen, maxKeyLen)
	}
	return nil
}

// Validate checks a new password against the account policy: valid UTF-8,
// at least 8 characters (runes, without Unicode normalization) and at most
// 1024 bytes. There are no composition rules. It returns ErrTooLong,
// ErrInvalidUTF8 or ErrTooShort, checked in that order, or nil.
func Validate(pw string) error {
	switch {
	case len(pw) > maxBytes:
		return ErrTooLong
	case !utf8.ValidString(pw):
		return ErrInvalidUTF8
	case utf8.RuneCountInString(pw) < minRunes:
		return ErrTooShort
	}
	return nil
}

// Hasher hashes and verifies passwords with Argon2id, running at most a fixed
// number of hash operations at once so that a login flood cannot exhaust
// memory: each operation allocates its memory cost for its whole duration.
// A Hasher is safe for concurrent use; create it with NewHasher.
type Hasher struct {
	params Params        // defaults applied; passes Check
	sem    chan struct{} // one token per running hash operation
	dummy  string        // random hash at params, verified against by DummyVerify

	// testHookAcquired, if set, runs after an operation takes a slot and
	// before it hashes. Tests use it to hold a slot; it is nil otherwise.
	testHookAcquired func()
}

// NewHasher returns a Hasher that writes hashes with p (zero fields take
// their defaults) and runs at most maxConcurrent hash operations at once;
// zero maxConcurrent means runtime.NumCPU().
//
// The cap counts operations, not bytes: verifying a stored hash costs that
// hash's memory parameter, which may exceed p.Memory (up to 1 GiB, the most
// Verify accepts).
//
// NewHasher panics if p fails Params.Check or maxConcurrent is negative;
// both are configuration errors.
func NewHasher(p Params, maxConcurrent int) *Hasher {
	if err := p.Check(); err != nil {
		panic(err)
	}
	if maxConcurrent < 0 {
		panic(fmt.Sprintf("password: negative maxConcurrent %d", maxConcurrent))
	}
	if maxConcurrent == 0 {
		maxConcurrent = runtime.NumCPU()
	}
	p = p.withDefaults()

	// The dummy hash has a random key, so no password matches it (but for a
	// 2^-128 chance at the smallest KeyLen); it exists so that DummyVerify
	// runs exactly Verify's code path at this Hasher's parameters.
	dummy := phc{
		memory:  p.Memory,
		time:    p.Time,
		threads: p.Threads,
		salt:    make([]byte, p.SaltLen),
		key:     make([]byte, p.KeyLen),
	}
	rand.Read(dummy.salt)
	rand.Read(dummy.key)

	return &Hasher{
		params: p,
		sem:    make(chan struct{}, maxConcurrent),
		dummy:  dummy.encode(),
	}
}

// Hash checks pw against the policy (see Validate), then hashes it with a
// fresh random salt at h's parameters and returns the PHC string
//
//	$argon2id$v=19$m=<Memory>,t=<Time>,p=<Threads>$<salt>$<hash>
//
// with salt and hash in unpadded standard base64. It waits for a concurrency
// slot; if ctx ends first, the error wraps ErrBusy and ctx.Err().
func (h *Hasher) Hash(ctx context.Context, pw string) (string, error) {
	if err := Validate(pw); err != nil {
		return "", err
	}
	ph := phc{
		memory:  h.params.Memory,
		time:    h.params.Time,
		threads: h.params.Threads,
		salt:    make([]byte, h.params.SaltLen),
	}
	rand.Read(ph.salt)
	key, err := h.derive(ctx, pw, &ph, h.params.KeyLen)
	if err != nil {
		return "", err
	}
	ph.key = key
	return ph.encode(), nil
}

// Verify reports whether pw matches the encoded hash, recomputing it with the
// parameters and salt stored in encoded and comparing in constant time. It
// returns nil on a match, ErrMismatch if pw does not match, ErrMalformed if
// encoded is not an acceptable PHC string, ErrTooLong if pw is longer than
// 1024 bytes (no stored hash can match it), or an error wrapping ErrBusy if
// ctx ends while waiting for a concurrency slot. Verify does not apply the
// rest of the policy, so passwords set under an older policy still verify.
//
// needsRehash is meaningful only when err is nil: it is true when the stored
// hash's memory, time or thread cost is below h's, or its salt or hash length
// differs from h's, so the caller should store Hash(ctx, pw) in its place.
func (h *Hasher) Verify(ctx context.Context, encoded, pw string) (needsRehash bool, err error) {
	ph, err := parse(encoded)
	if err != nil {
		return false, err
	}
	if len(pw) > maxBytes {
		return false, ErrTooLong
	}
	key, err := h.derive(ctx, pw, &ph, uint32(len(ph.key)))
	if err != nil {
		return false, err
	}
	if subtle.ConstantTimeCompare(key, ph.key) != 1 {
		return false, ErrMismatch
	}
	return h.needsRehash(&ph), nil
}

// DummyVerify does the work of a Verify against a hash made with h's
// parameters, then returns ErrMismatch. Call it when a login names an account
// that does not exist, so that an unknown account and a wrong password take
// the same time and return the same error. Like Verify it returns ErrTooLong
// for a password over 1024 bytes and an error wrapping ErrBusy if ctx ends
// while waiting for a slot.
//
// The times match for accounts whose stored hash uses h's parameters; accounts
// still on older parameters are told apart until they are re-hashed.
func (h *Hasher) DummyVerify(ctx context.Context, pw string) error {
	_, err := h.Verify(ctx, h.dummy, pw)
	if err == nil {
		// The dummy key is random; matching it would take a preimage.
		return ErrMismatch
	}
	return err
}

// needsRehash reports whether ph is weaker than, or shaped differently from,
// what h would write today.
func (h *Hasher) needsRehash(ph *phc) bool {
	return ph.memory < h.params.Memory ||
		ph.time < h.params.Time ||
		ph.threads < h.params.Threads ||
		len(ph.salt) != int(h.params.SaltLen) ||
		len(ph.key) != int(h.params.KeyLen)
}

// derive computes the Argon2id key of pw with ph's salt and costs while
// holding a concurrency slot.
func (h *Hasher) derive(ctx context.Context, pw string, ph *phc, keyLen uint32) ([]byte, error) {
	if err := h.acquire(ctx); err != nil {
		return nil, err
	}
	defer h.release()
	if h.testHookAcquired != nil {
		h.testHookAcquired()
	}
	return argon2.IDKey([]byte(pw), ph.salt, ph.time, ph.memory, ph.threads, keyLen), nil
}

// acquire takes a concurrency slot, waiting until one is free or ctx ends.
// If ctx ends while waiting, the error wraps ErrBusy and ctx.Err(). If a slot
// is free but ctx has already ended, the work would be wasted, so acquire
// gives the slot back and returns ctx.Err() without ErrBusy.
func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
	default:
		select {
		case h.sem <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
		}
	}
	if err := ctx.Err(); err != nil {
		h.release()
		return fmt.Errorf("password: %w", err)
	}
	return nil
}

// release gives back a slot taken by acquire.
func (h *Hasher) release() { <-h.sem }

// phc is a parsed argon2id PHC string.
type phc struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// phcPrefix starts every encoding this package writes or accepts.
const phcPrefix = "$argon2id$v=19$"

// encode returns ph as a PHC string. parse(ph.encode()) returns ph for every
// ph within bounds, and encode(parse(s)) returns s for every s parse accepts.
func (ph *phc) encode() string {
	enc := base64.RawStdEncoding
	b := make([]byte, 0, len(phcPrefix)+len("m=,t=,p=$$")+10+3+3+
		enc.EncodedLen(len(ph.salt))+enc.EncodedLen(len(ph.key)))
	b = append(b, phcPrefix...)
	b = append(b, "m="...)
	b = strconv.AppendUint(b, uint64(ph.memory), 10)
	b = append(b, ",t="...)
	b = strconv.AppendUint(b, uint64(ph.time), 10)
	b = append(b, ",p="...)
	b = strconv.AppendUint(b, uint64(ph.threads), 10)
	b = append(b, '$')
	b = enc.AppendEncode(b, ph.salt)
	b = append(b, '$')
	b = enc.AppendEncode(b, ph.key)
	return string(b)
}

// malformed returns an error wrapping ErrMalformed with a detail.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// parse decodes an encoded hash read from storage. It accepts exactly
//
//	$argon2id$v=19$m=<m>,t=<t>,p=<p>$<salt>$<hash>
//
// with canonical decimal numbers (no sign, no leading zeros), unpadded
// canonical standard base64, and every value within this package's bounds.
// Anything else is an error wrapping ErrMalformed. parse never panics and
// allocates at most a few hundred bytes whatever its input.
func parse(s string) (phc, error) {
	if len(s) > maxEncodedLen {
		return phc{}, malformed("longer than %d bytes", maxEncodedLen)
	}
	rest, ok := strings.CutPrefix(s, "$")
	if !ok {
		return phc{}, malformed("does not start with $")
	}
	fields := strings.Split(rest, "$")
	if len(fields) != 5 {
		return phc{}, malformed("%d $-separated fields, want 5", len(fields))
	}
	if fields[0] != "argon2id" {
		return phc{}, malformed("algorithm is not argon2id")
	}
	if fields[1] != "v=19" {
		return phc{}, malformed("version is not v=19")
	}

	var ph phc
	var err error
	if ph.memory, ph.time, ph.threads, err = parseCosts(fields[2]); err != nil {
		return phc{}, err
	}
	if ph.salt, err = decodeBase64("salt", fields[3], minSaltLen, maxSaltLen); err != nil {
		return phc{}, err
	}
	if ph.key, err = decodeBase64("hash", fields[4], minKeyLen, maxKeyLen); err != nil {
		return phc{}, err
	}
	return ph, nil
}

// parseCosts parses "m=<m>,t=<t>,p=<p>", in that order, and checks bounds.
func parseCosts(s string) (memory, time uint32, threads uint8, err error) {
	kvs := strings.Split(s, ",")
	if len(kvs) != 3 {
		return 0, 0, 0, malformed("%d parameters, want m, t, p", len(kvs))
	}
	var vals [3]uint32
	for i, name := range [3]string{"m=", "t=", "p="} {
		digits, ok := strings.CutPrefix(kvs[i], name)
		if !ok {
			return 0, 0, 0, malformed("parameter %d is not %s", i+1, name[:1])
		}
		if vals[i], ok = parseDecimal(digits); !ok {
			return 0, 0, 0, malformed("parameter %s is not a canonical decimal", name[:1])
		}
	}
	m, t, p := vals[0], vals[1], vals[2]
	switch {
	case p < minThreads || p > maxThreads:
		return 0, 0, 0, malformed("p=%d outside %d..%d", p, minThreads, maxThreads)
	case m < minMemoryPerLane*p || m > maxMemory:
		return 0, 0, 0, malformed("m=%d outside %d..%d", m, minMemoryPerLane*p, maxMemory)
	case t < minTime || t > maxTime:
		return 0, 0, 0, malformed("t=%d outside %d..%d", t, minTime, maxTime)
	}
	return m, t, uint8(p), nil
}

// parseDecimal parses a canonical unsigned decimal that fits in 32 bits:
// one to ten ASCII digits, no sign, no leading zero unless it is "0".
func parseDecimal(s string) (uint32, bool) {
	if len(s) == 0 || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(n), true
}

// decodeBase64 decodes unpadded, canonical standard base64 of minLen..maxLen
// bytes. The alphabet is checked first because the decoder skips CR and LF.
func decodeBase64(what, s string, minLen, maxLen int) ([]byte, error) {
	enc := base64.RawStdEncoding
	if len(s) < enc.EncodedLen(minLen) || len(s) > enc.EncodedLen(maxLen) {
		return nil, malformed("%s length outside %d..%d bytes", what, minLen, maxLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return nil, malformed("%s is not unpadded standard base64", what)
		}
	}
	b, err := enc.Strict().DecodeString(s)
	if err != nil {
		return nil, malformed("%s is not canonical base64", what)
	}
	if len(b) < minLen || len(b) > maxLen { // unreachable given the length check; kept as a guard
		return nil, malformed("%s length %d outside %d..%d bytes", what, len(b), minLen, maxLen)
	}
	return b, nil
}
