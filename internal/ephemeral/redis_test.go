package ephemeral

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secure-messenger/messenger/internal/redistest"
)

// redisFactory adapts a Redis constructor to the contract tests: a client to
// the test server under a fresh prefix, and real time.
func redisFactory[T any](newT func(redis.UniversalClient, RedisConfig) T) func(t *testing.T) (T, elapseFunc) {
	return func(t *testing.T) (T, elapseFunc) {
		client, prefix := redistest.Client(t)
		return newT(client, RedisConfig{Prefix: prefix}), time.Sleep
	}
}

func TestRedisSessionStore(t *testing.T) {
	f := redisFactory(NewRedisSessionStore)
	testSessionStore(t, func(t *testing.T) (SessionStore, elapseFunc) { return f(t) })
}

func TestRedisLimiter(t *testing.T) {
	f := redisFactory(NewRedisLimiter)
	testLimiter(t, func(t *testing.T) (Limiter, elapseFunc) { return f(t) })
}

// TestRedisKeyLayout pins the documented key names and that every key gets a
// TTL, since operators and other tools rely on both.
func TestRedisKeyLayout(t *testing.T) {
	ctx := context.Background()
	client, prefix := redistest.Client(t)
	cfg := RedisConfig{Prefix: prefix}

	if err := NewRedisSessionStore(client, cfg).Put(ctx, "s1", []byte("rec"), 90*time.Second); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if _, err := NewRedisLimiter(client, cfg).Hit(ctx, "acct:alice", time.Minute); err != nil {
		t.Fatalf("Hit: %v", err)
	}

	for _, tc := range []struct {
		key    string
		value  string
		maxTTL time.Duration
	}{
		{prefix + "session:s1", "rec", 90 * time.Second},
		{prefix + "limit:acct:alice", "1", time.Minute},
	} {
		v, err := client.Get(ctx, tc.key).Result()
		if err != nil {
			t.Errorf("GET %s: %v", tc.key, err)
			continue
		}
		if v != tc.value {
			t.Errorf("GET %s = %q, want %q", tc.key, v, tc.value)
		}
		ttl, err := client.PTTL(ctx, tc.key).Result()
		if err != nil {
			t.Errorf("PTTL %s: %v", tc.key, err)
			continue
		}
		if ttl <= 0 || ttl > tc.maxTTL {
			t.Errorf("PTTL %s = %v, want in (0, %v]", tc.key, ttl, tc.maxTTL)
		}
	}
}

func TestRedisDefaultPrefix(t *testing.T) {
	for kind, want := range map[string]string{
		"session": "msgr:session:",
		"nonce":   "msgr:nonce:",
		"limit":   "msgr:limit:",
	} {
		if got := (RedisConfig{}).keyPrefix(kind); got != want {
			t.Errorf("zero RedisConfig key prefix for %s = %q, want %q", kind, got, want)
		}
	}
	if got := (RedisConfig{Prefix: "x/"}).keyPrefix("nonce"); got != "x/nonce:" {
		t.Errorf("key prefix with Prefix x/ = %q, want %q", got, "x/nonce:")
	}
}

func TestRedisTTLRounding(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{time.Nanosecond, time.Millisecond},
		{300 * time.Microsecond, time.Millisecond},
		{time.Millisecond, time.Millisecond},
		{1500 * time.Microsecond, 2 * time.Millisecond},
		{150 * time.Millisecond, 150 * time.Millisecond},
		{time.Minute, time.Minute},
	} {
		if got := redisTTL(tc.in); got != tc.want {
			t.Errorf("redisTTL(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestRedisLimiterRepairsCounterWithoutTTL: a counter left without an expiry
// (by an older version or by hand) must not throttle its key forever.
func TestRedisLimiterRepairsCounterWithoutTTL(t *testing.T) {
	ctx := context.Background()
	client, prefix := redistest.Client(t)
	if err := client.Set(ctx, prefix+"limit:k", 5, 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	n, err := NewRedisLimiter(client, RedisConfig{Prefix: prefix}).Hit(ctx, "k", time.Minute)
	if err != nil || n != 6 {
		t.Fatalf("Hit = %d, %v; want 6, nil", n, err)
	}
	if ttl := client.PTTL(ctx, prefix+"limit:k").Val(); ttl <= 0 {
		t.Fatalf("PTTL after Hit = %v, want a positive TTL", ttl)
	}
}

// TestRedisLimiterReserveRepairsCounterWithoutTTL: Reserve, like Hit, gives
// a counter left without an expiry one, whether it counts or refuses.
func TestRedisLimiterReserveRepairsCounterWithoutTTL(t *testing.T) {
	ctx := context.Background()
	client, prefix := redistest.Client(t)
	l := NewRedisLimiter(client, RedisConfig{Prefix: prefix})
	for _, tc := range []struct {
		limit  int64
		wantOK bool
		wantN  int64
	}{{10, true, 6}, {5, false, 5}} {
		if err := client.Set(ctx, prefix+"limit:k", 5, 0).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
		ok, n, err := l.Reserve(ctx, "k", tc.limit, time.Minute)
		if err != nil || ok != tc.wantOK || n != tc.wantN {
			t.Fatalf("Reserve with limit %d = %v, %d, %v; want %v, %d, nil", tc.limit, ok, n, err, tc.wantOK, tc.wantN)
		}
		if ttl := client.PTTL(ctx, prefix+"limit:k").Val(); ttl <= 0 {
			t.Fatalf("PTTL after Reserve with limit %d = %v, want a positive TTL", tc.limit, ttl)
		}
	}
}

// TestRedisUnavailable needs no Redis: the client points at a port nothing
// listens on, and every method must fail with ErrUnavailable while keeping
// the network error visible and the secrets out of the message.
func TestRedisUnavailable(t *testing.T) {
	client := redis.NewClient(&redis.Options{
		Addr:        "127.0.0.1:1",
		DialTimeout: 200 * time.Millisecond,
		MaxRetries:  -1,
		// One dial per call keeps the test fast.
		DialerRetries: 1,
	})
	t.Cleanup(func() { _ = client.Close() })
	cfg := RedisConfig{}
	sessions := NewRedisSessionStore(client, cfg)
	rates := NewRedisRateLimiter(client, cfg)
	limiter := NewRedisLimiter(client, cfg)

	const secret = "s3cr3t-session-id"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, call := range map[string]func() error{
		"SessionStore.Put":     func() error { return sessions.Put(ctx, secret, []byte(secret), time.Minute) },
		"SessionStore.Get":     func() error { _, err := sessions.Get(ctx, secret); return err },
		"SessionStore.Touch":   func() error { return sessions.Touch(ctx, secret, time.Minute) },
		"SessionStore.Replace": func() error { return sessions.Replace(ctx, secret, []byte(secret), time.Minute) },
		"SessionStore.Delete":  func() error { return sessions.Delete(ctx, secret) },
		"RateLimiter.Allow":    func() error { _, _, err := rates.Allow(ctx, secret, PerSecond(1, 1)); return err },
		"Limiter.Hit":          func() error { _, err := limiter.Hit(ctx, secret, time.Minute); return err },
		"Limiter.Count":        func() error { _, err := limiter.Count(ctx, secret); return err },
		"Limiter.Reset":        func() error { return limiter.Reset(ctx, secret) },
		"Limiter.Reserve":      func() error { _, _, err := limiter.Reserve(ctx, secret, 10, time.Minute); return err },
		"Limiter.Release":      func() error { return limiter.Release(ctx, secret) },
	} {
		t.Run(name, func(t *testing.T) {
			err := call()
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want one wrapping ErrUnavailable", err)
			}
			var netErr net.Error
			if !errors.As(err, &netErr) {
				t.Errorf("err = %v (%T), want the net.Error cause to stay visible", err, err)
			}
			if !strings.HasPrefix(err.Error(), "ephemeral: ") {
				t.Errorf("err = %q, want the package prefix", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("err = %q contains the id or record", err)
			}
		})
	}
}
