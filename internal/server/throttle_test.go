package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/internal/redistest"
	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// countingHasher counts the password work the server does. With a gate,
// every Verify and DummyVerify waits at it (counted in waiting) until the
// test closes it, so that a test can hold the password checks until every
// concurrent request has either been answered or reached one.
type countingHasher struct {
	passwordHasher
	hashes, verifies, waiting atomic.Int64
	gate                      chan struct{}
}

// countHashes makes ts count its password work through the returned
// hasher. Call it before dialing: each request reads the server's hasher
// only after its connection was set up.
func countHashes(ts *testServer, gate chan struct{}) *countingHasher {
	h := &countingHasher{passwordHasher: ts.hasher, gate: gate}
	ts.hasher = h
	return h
}

func (h *countingHasher) wait(ctx context.Context) error {
	if h.gate == nil {
		return nil
	}
	h.waiting.Add(1)
	select {
	case <-h.gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *countingHasher) Hash(ctx context.Context, pw string) (string, error) {
	h.hashes.Add(1)
	return h.passwordHasher.Hash(ctx, pw)
}

func (h *countingHasher) Verify(ctx context.Context, encoded, pw string) (bool, error) {
	h.verifies.Add(1)
	if err := h.wait(ctx); err != nil {
		return false, err
	}
	return h.passwordHasher.Verify(ctx, encoded, pw)
}

func (h *countingHasher) DummyVerify(ctx context.Context, pw string) error {
	h.verifies.Add(1)
	if err := h.wait(ctx); err != nil {
		return err
	}
	return h.passwordHasher.DummyVerify(ctx, pw)
}

// limiterBackends are the two limiters, each fresh per test.
var limiterBackends = map[string]func(t *testing.T) ephemeral.Limiter{
	"Memory": func(t *testing.T) ephemeral.Limiter {
		l := ephemeral.NewMemoryLimiter(ephemeral.MemoryConfig{})
		t.Cleanup(func() { l.Close() })
		return l
	},
	"Redis": func(t *testing.T) ephemeral.Limiter {
		client, prefix := redistest.Client(t)
		return ephemeral.NewRedisLimiter(client, ephemeral.RedisConfig{Prefix: prefix})
	},
}

// codeOf is the code of a request's error, or 0 for success.
func codeOf(err error) protocol.Code {
	var pe *protocol.PeerError
	if errors.As(err, &pe) {
		return pe.Code
	}
	if err != nil {
		return protocol.CodeInternal
	}
	return 0
}

// TestConcurrentPasswordGuesses: many password guesses for one account sent
// at once, each with new keys (a takeover if one is right), get no more
// password checks than the per-account limit, however they interleave. The
// checks are held until every guess has been answered or has reached one,
// so code that counts a failure only after checking would let all of them
// through.
func TestConcurrentPasswordGuesses(t *testing.T) {
	const perUser, guesses = 10, 40
	for name, newLimiter := range limiterBackends {
		t.Run(name, func(t *testing.T) {
			lim := newLimiter(t)
			ts := authServer(t, func(c *Config, d *Deps) {
				c.LoginFailuresPerUser = perUser
				d.Limiter = lim
				// 40 connections at once from one address: a real attacker
				// spreads them over addresses; this test is about logins.
				c.Limits.HandshakeRate = off
			})
			const password = "alice's real password"
			if _, err := ts.dial(t).Register(ctxT(t), identity(t, "alice", 0), password); err != nil {
				t.Fatal(err)
			}
			gate := make(chan struct{})
			h := countHashes(ts, gate)
			var once sync.Once
			open := func() { once.Do(func() { close(gate) }) }
			t.Cleanup(open)

			// One session, resumed on every connection: 40 real connections
			// without 40 RSA key generations. Each has its own exporter.
			ticket := ts.dial(t).Ticket()
			conns := make([]*client.Conn, guesses)
			for i := range conns {
				conns[i] = ts.dial(t, func(cfg *client.Config) { cfg.Resume = &ticket; cfg.ResumeOnly = true })
			}
			mallory := identity(t, "alice", 1) // the attacker's keys, for alice
			right := rand.IntN(guesses)
			codes := make([]protocol.Code, guesses)
			var answered atomic.Int64
			var wg sync.WaitGroup
			for i, c := range conns {
				wg.Go(func() {
					pw := fmt.Sprintf("guess number %d", i)
					if i == right {
						pw = password
					}
					_, err := c.Login(ctxT(t), mallory, pw, true)
					codes[i] = codeOf(err)
					answered.Add(1)
				})
			}
			deadline := time.Now().Add(10 * time.Second)
			for answered.Load()+h.waiting.Load() < guesses && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			open()
			wg.Wait()

			tally := map[protocol.Code]int{}
			for _, code := range codes {
				tally[code]++
			}
			checked := tally[0] + tally[protocol.CodeAuthFailed]
			if checked+tally[protocol.CodeRateLimited] != guesses {
				t.Fatalf("answers %v, want only authed, auth_failed and rate_limited", tally)
			}
			if n := h.verifies.Load(); n > perUser || int(n) != checked {
				t.Fatalf("%d password checks for %d authed or auth_failed answers (%v); want as many, at most %d", n, checked, tally, perUser)
			}
			if tally[0] == 1 && codes[right] != 0 {
				t.Fatalf("a wrong guess logged in: %v", codes)
			}
			// The keys changed only if the right guess got through.
			u, err := ts.store.UserByName(ctxT(t), "alice")
			if err != nil {
				t.Fatal(err)
			}
			ds, err := ts.store.DevicesOf(ctxT(t), u.ID)
			if err != nil {
				t.Fatal(err)
			}
			if want := 1 + tally[0]; len(ds) != want {
				t.Fatalf("alice has %d devices after %v, want %d", len(ds), tally, want)
			}
			// Refused guesses are not counted: alice's devices are not
			// locked out, and alice's password works once the failures
			// expire or she logs in (which clears her account's counter).
			if _, err := ts.dial(t).Auth(ctxT(t), identity(t, "alice", len(ds)-1)); err != nil {
				t.Fatalf("auth after the guesses: %v", err)
			}
		})
	}
}

// TestLimiterFailureRefuses: a limiter that cannot count refuses register,
// login and auth with unavailable; it never lets an attempt through
// uncounted, whether nothing answers (Redis down) or it can read but not add
// (a full memory table).
func TestLimiterFailureRefuses(t *testing.T) {
	first := authServer(t)
	alice := identity(t, "alice", 0)
	const password = "alice password"
	if _, err := first.dial(t).Register(ctxT(t), alice, password); err != nil {
		t.Fatal(err)
	}
	for name, newLimiter := range map[string]func(t *testing.T) ephemeral.Limiter{
		"RedisDown": func(t *testing.T) ephemeral.Limiter {
			rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1, DialerRetries: 1})
			t.Cleanup(func() { rc.Close() })
			return ephemeral.NewRedisLimiter(rc, ephemeral.RedisConfig{})
		},
		"MemoryFull": func(t *testing.T) ephemeral.Limiter {
			l := ephemeral.NewMemoryLimiter(ephemeral.MemoryConfig{MaxEntries: 1})
			t.Cleanup(func() { l.Close() })
			if _, err := l.Hit(context.Background(), "someone else", time.Hour); err != nil {
				t.Fatal(err)
			}
			return l
		},
	} {
		t.Run(name, func(t *testing.T) {
			lim := newLimiter(t)
			ts := authServer(t, func(_ *Config, d *Deps) { d.Store = first.store; d.Limiter = lim })
			h := countHashes(ts, nil)
			c := ts.dial(t)
			_, err := c.Login(ctxT(t), alice, password, false)
			wantCode(t, err, protocol.CodeUnavailable)
			_, err = c.Login(ctxT(t), identity(t, "alice", 1), password, true)
			wantCode(t, err, protocol.CodeUnavailable)
			_, err = c.Auth(ctxT(t), alice)
			wantCode(t, err, protocol.CodeUnavailable)
			_, err = c.Register(ctxT(t), identity(t, "bob", 1), "bob password")
			wantCode(t, err, protocol.CodeUnavailable)
			if n, m := h.verifies.Load(), h.hashes.Load(); n+m != 0 {
				t.Fatalf("%d verifications and %d hashes without a counted attempt", n, m)
			}
			if _, err := ts.store.UserByName(ctxT(t), "bob"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("bob registered without a counted attempt: %v", err)
			}
			if c.Err() != nil || c.Session().User != "" {
				t.Fatalf("connection after refusals: err %v, user %q", c.Err(), c.Session().User)
			}
		})
	}
}

// TestRegisterLimitPerAddress: register requests are limited per address
// (an IPv6 client: per /64), counted before the password is hashed, and a
// taken name is refused before hashing.
func TestRegisterLimitPerAddress(t *testing.T) {
	ts := authServer(t, func(c *Config, _ *Deps) {
		c.RegisterPerAddr = 3
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	h := countHashes(ts, nil)
	from := func(addr string) func(*client.Config) {
		return func(cfg *client.Config) { cfg.Header = http.Header{"X-Forwarded-For": {addr}} }
	}
	register := func(addr, user string, slot int) error {
		_, err := ts.dial(t, from(addr)).Register(ctxT(t), identity(t, user, slot), user+" password")
		return err
	}
	wantHashes := func(want int64) {
		t.Helper()
		if n := h.hashes.Load(); n != want {
			t.Fatalf("%d password hashes, want %d", n, want)
		}
	}

	if err := register("2001:db8:1:1::1", "alice", 0); err != nil {
		t.Fatal(err)
	}
	wantHashes(1)
	// A taken name: conflict, without a hash, and it counts.
	wantCode(t, register("2001:db8:1:1::1", "alice", 1), protocol.CodeConflict)
	wantHashes(1)
	// Another address in the same /64 shares the count.
	if err := register("2001:db8:1:1:ffff::2", "bob", 1); err != nil {
		t.Fatal(err)
	}
	wantHashes(2)
	wantCode(t, register("2001:db8:1:1::3", "carol", 2), protocol.CodeRateLimited)
	wantHashes(2)
	if _, err := ts.store.UserByName(ctxT(t), "carol"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("carol registered over the limit: %v", err)
	}
	// Another /64 has its own count.
	if err := register("2001:db8:1:2::1", "carol", 2); err != nil {
		t.Fatalf("register from another /64: %v", err)
	}
	wantHashes(3)
	// Bad requests are refused before they are counted.
	c := ts.dial(t, from("192.0.2.1"))
	for range 5 {
		_, err := c.Register(ctxT(t), identity(t, "dave", 0), "short")
		wantCode(t, err, protocol.CodeBadRequest)
	}
	if _, err := c.Register(ctxT(t), identity(t, "dave", 0), "dave password"); err != nil {
		t.Fatalf("register after bad requests: %v", err)
	}
}
