package ephemeral

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// These tests cover what only the memory backends have: an exact clock, a
// size bound and a sweep goroutine.

func TestMemoryExpiryBoundary(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := NewMemorySessionStore(MemoryConfig{Now: clk.Now})
	defer s.Close()

	if err := s.Put(ctx, "a", []byte("rec"), time.Minute); err != nil {
		t.Fatalf("Put: %v", err)
	}
	clk.Advance(time.Minute - time.Nanosecond)
	if _, err := s.Get(ctx, "a"); err != nil {
		t.Fatalf("Get just before the TTL ends: %v", err)
	}
	clk.Advance(time.Nanosecond)
	if _, err := s.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get when the TTL ends: err = %v, want ErrNotFound", err)
	}
}

func TestMemoryMaxEntries(t *testing.T) {
	ctx := context.Background()
	const max = 3

	// fill adds max entries named e0.., the first with a short TTL and the
	// rest with a long one, then checks that a new entry is refused, that the
	// refusal is ErrUnavailable, and that once the short entry has expired the
	// new one fits.
	fill := func(t *testing.T, clk *fakeClock, add func(id string, ttl time.Duration) error, size func() int) {
		t.Helper()
		for i := range max {
			ttl := time.Hour
			if i == 0 {
				ttl = time.Second
			}
			if err := add(fmt.Sprintf("e%d", i), ttl); err != nil {
				t.Fatalf("add #%d: %v", i, err)
			}
		}
		if err := add("new", time.Hour); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("add to a full backend: err = %v, want ErrUnavailable", err)
		}
		if n := size(); n != max {
			t.Fatalf("size after a refused add = %d, want %d", n, max)
		}
		clk.Advance(time.Second)
		if err := add("new", time.Hour); err != nil {
			t.Fatalf("add after an entry expired: %v", err)
		}
		if n := size(); n != max {
			t.Fatalf("size = %d, want %d", n, max)
		}
	}

	t.Run("SessionStore", func(t *testing.T) {
		clk := newFakeClock()
		s := NewMemorySessionStore(MemoryConfig{MaxEntries: max, Now: clk.Now})
		defer s.Close()
		put := func(id string, ttl time.Duration) error { return s.Put(ctx, id, []byte("rec"), ttl) }
		fill(t, clk, put, s.t.len)
		// Replacing a session that exists is not adding one.
		if err := put("e1", time.Hour); err != nil {
			t.Fatalf("replace in a full store: %v", err)
		}
	})

	t.Run("Limiter", func(t *testing.T) {
		clk := newFakeClock()
		l := NewMemoryLimiter(MemoryConfig{MaxEntries: max, Now: clk.Now})
		defer l.Close()
		hit := func(id string, ttl time.Duration) error { _, err := l.Hit(ctx, id, ttl); return err }
		fill(t, clk, hit, l.t.len)
		// Counting in an existing window is not adding one.
		if n, err := l.Hit(ctx, "e1", time.Hour); err != nil || n != 2 {
			t.Fatalf("Hit of an existing key in a full limiter = %d, %v; want 2, nil", n, err)
		}
	})

	t.Run("LimiterReserve", func(t *testing.T) {
		clk := newFakeClock()
		l := NewMemoryLimiter(MemoryConfig{MaxEntries: max, Now: clk.Now})
		defer l.Close()
		reserve := func(id string, ttl time.Duration) error {
			ok, _, err := l.Reserve(ctx, id, 5, ttl)
			if err == nil && !ok {
				t.Fatalf("Reserve(%q) refused below the limit", id)
			}
			return err
		}
		fill(t, clk, reserve, l.t.len)
		// Counting in an existing window is not adding one.
		if ok, n, err := l.Reserve(ctx, "e1", 5, time.Hour); err != nil || !ok || n != 2 {
			t.Fatalf("Reserve of an existing key in a full limiter = %v, %d, %v; want true, 2, nil", ok, n, err)
		}
	})

	t.Run("DefaultIsOneMillion", func(t *testing.T) {
		n := NewMemorySessionStore(MemoryConfig{})
		defer n.Close()
		if n.t.max != 1_000_000 {
			t.Fatalf("zero MaxEntries gives %d, want 1,000,000", n.t.max)
		}
	})
}

func TestMemorySweep(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := NewMemorySessionStore(MemoryConfig{Now: clk.Now, SweepInterval: time.Millisecond})
	defer s.Close()
	for i := range 10 {
		if err := s.Put(ctx, fmt.Sprint(i), []byte("rec"), time.Minute); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	if err := s.Put(ctx, "long", []byte("rec"), time.Hour); err != nil {
		t.Fatalf("Put: %v", err)
	}
	clk.Advance(time.Minute)
	// Nothing touches the expired sessions; only the sweep can remove them.
	waitFor(t, "sweep removes expired sessions", func() (bool, error) {
		return s.t.len() == 1, nil
	})
	if _, err := s.Get(ctx, "long"); err != nil {
		t.Fatalf("the sweep removed a live session: Get err = %v", err)
	}
}

func TestMemoryClose(t *testing.T) {
	ctx := context.Background()
	s := NewMemorySessionStore(MemoryConfig{})
	r := NewMemoryRateLimiter(MemoryConfig{})
	l := NewMemoryLimiter(MemoryConfig{})
	for _, c := range []interface{ Close() error }{s, r, l} {
		// Close waits for the sweep goroutine to exit; a second Close must
		// neither block nor panic.
		for range 2 {
			if err := c.Close(); err != nil {
				t.Fatalf("%T.Close: %v", c, err)
			}
		}
	}
	// The backends keep answering after Close.
	if err := s.Put(ctx, "a", []byte("rec"), time.Minute); err != nil {
		t.Fatalf("Put after Close: %v", err)
	}
	if ok, _, err := r.Allow(ctx, "a", PerSecond(1, 1)); err != nil || !ok {
		t.Fatalf("Allow after Close: %v, %v", ok, err)
	}
	if _, err := l.Hit(ctx, "a", time.Minute); err != nil {
		t.Fatalf("Hit after Close: %v", err)
	}
}
