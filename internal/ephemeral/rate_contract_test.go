package ephemeral

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/secure-messenger/messenger/internal/redistest"
)

// testRateLimiter is the contract every RateLimiter backend passes.
func testRateLimiter(t *testing.T, newLimiter func(t *testing.T) (RateLimiter, elapseFunc)) {
	ctx := context.Background()
	// slow refills one token an hour: nothing refills during a test.
	slow := Rate{Limit: 1, Per: time.Hour, Burst: 5}

	t.Run("BurstThenRefuse", func(t *testing.T) {
		l, _ := newLimiter(t)
		for i := range 5 {
			ok, _, err := l.Allow(ctx, "k", slow)
			if err != nil || !ok {
				t.Fatalf("event %d: ok=%v err=%v, want allowed within the burst", i+1, ok, err)
			}
		}
		ok, retry, err := l.Allow(ctx, "k", slow)
		if err != nil || ok {
			t.Fatalf("event 6: ok=%v err=%v, want refused", ok, err)
		}
		if retry <= 0 || retry > time.Hour+time.Second {
			t.Errorf("retry after %v, want within (0, 1h]", retry)
		}
	})

	t.Run("KeysAreIndependent", func(t *testing.T) {
		l, _ := newLimiter(t)
		one := Rate{Limit: 1, Per: time.Hour, Burst: 1}
		for _, k := range []string{"a", "b", "c"} {
			if ok, _, err := l.Allow(ctx, k, one); err != nil || !ok {
				t.Fatalf("first event of %s: ok=%v err=%v", k, ok, err)
			}
		}
		if ok, _, _ := l.Allow(ctx, "a", one); ok {
			t.Fatal("second event of a allowed")
		}
	})

	t.Run("Refills", func(t *testing.T) {
		l, elapse := newLimiter(t)
		fast := Rate{Limit: 4, Per: time.Second, Burst: 1} // one token every 250ms
		if ok, _, err := l.Allow(ctx, "r", fast); err != nil || !ok {
			t.Fatalf("first: ok=%v err=%v", ok, err)
		}
		if ok, _, _ := l.Allow(ctx, "r", fast); ok {
			t.Fatal("second at once: allowed, want refused")
		}
		elapse(300 * time.Millisecond)
		waitFor(t, "a token refilled", func() (bool, error) {
			ok, _, err := l.Allow(ctx, "r", fast)
			return ok, err
		})
	})

	t.Run("UnlimitedAlwaysAllows", func(t *testing.T) {
		l, _ := newLimiter(t)
		for range 100 {
			if ok, _, err := l.Allow(ctx, "u", Rate{}); err != nil || !ok {
				t.Fatalf("unlimited refused: ok=%v err=%v", ok, err)
			}
		}
	})

	t.Run("ConcurrentTakesNoMoreThanBurst", func(t *testing.T) {
		l, _ := newLimiter(t)
		var allowed atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, _, err := l.Allow(ctx, "c", slow)
				if err != nil {
					errs <- err
					return
				}
				if ok {
					allowed.Add(1)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n := allowed.Load(); n != 5 {
			t.Fatalf("%d of 40 concurrent events allowed, want exactly the burst of 5", n)
		}
	})
}

func TestMemoryRateLimiter(t *testing.T) {
	testRateLimiter(t, func(t *testing.T) (RateLimiter, elapseFunc) {
		clock := newFakeClock()
		l := NewMemoryRateLimiter(MemoryConfig{Now: clock.Now})
		t.Cleanup(func() { _ = l.Close() })
		return l, clock.Advance
	})
}

func TestRedisRateLimiter(t *testing.T) {
	testRateLimiter(t, func(t *testing.T) (RateLimiter, elapseFunc) {
		client, prefix := redistest.Client(t)
		t.Cleanup(func() {
			// redis_rate puts "rate:" before the configured prefix.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = redistest.DeletePrefix(ctx, client, "rate:"+prefix)
		})
		return NewRedisRateLimiter(client, RedisConfig{Prefix: prefix}), time.Sleep
	})
}

// TestMemoryRateLimiterFull: a full limiter refuses new keys with
// ErrUnavailable (callers refuse the event) and keeps serving known ones;
// buckets that are full again are forgotten, which makes room.
func TestMemoryRateLimiterFull(t *testing.T) {
	clock := newFakeClock()
	l := NewMemoryRateLimiter(MemoryConfig{Now: clock.Now, MaxEntries: 3})
	t.Cleanup(func() { _ = l.Close() })
	ctx := context.Background()
	r := Rate{Limit: 10, Per: time.Second, Burst: 10}
	for i := range 3 {
		if ok, _, err := l.Allow(ctx, fmt.Sprint("k", i), r); err != nil || !ok {
			t.Fatalf("k%d: ok=%v err=%v", i, ok, err)
		}
	}
	if _, _, err := l.Allow(ctx, "new", r); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("new key in a full limiter: err=%v, want ErrUnavailable", err)
	}
	if ok, _, err := l.Allow(ctx, "k0", r); err != nil || !ok {
		t.Fatalf("known key in a full limiter: ok=%v err=%v", ok, err)
	}
	clock.Advance(time.Second) // every bucket is full again
	if ok, _, err := l.Allow(ctx, "new", r); err != nil || !ok {
		t.Fatalf("new key once others refilled: ok=%v err=%v", ok, err)
	}
}

// TestRedisRateLimiterUnavailable: a dead Redis is an error wrapping
// ErrUnavailable, never an allowed event.
func TestRedisRateLimiterUnavailable(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = client.Close() })
	l := NewRedisRateLimiter(client, RedisConfig{Prefix: uuid.NewString()})
	ok, _, err := l.Allow(context.Background(), "k", PerSecond(1, 1))
	if ok || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ok=%v err=%v, want refused with ErrUnavailable", ok, err)
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{
		"10/s:30":  {Limit: 10, Per: time.Second, Burst: 30},
		"10":       {Limit: 10, Per: time.Second, Burst: 10},
		"600/min":  {Limit: 600, Per: time.Minute, Burst: 600},
		"5/h:1":    {Limit: 5, Per: time.Hour, Burst: 1},
		"off":      {Limit: -1},
		"0":        {Limit: -1},
		" 2/s:4 ":  {Limit: 2, Per: time.Second, Burst: 4},
		"100/m:10": {Limit: 100, Per: time.Minute, Burst: 10},
	} {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if err == nil && !got.Unlimited() {
			back, err := ParseRate(got.String())
			if err != nil || back != got {
				t.Errorf("%q: String %q does not parse back: %+v, %v", in, got.String(), back, err)
			}
		}
	}
	for _, bad := range []string{"", "-1/s", "x/s", "10/d", "10/s:0", "10/s:x", "1.5/s"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
}
