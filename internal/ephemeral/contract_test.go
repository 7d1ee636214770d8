package ephemeral

import (
	"bytes"
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"
)

// The contract tests run one body against every backend. A backend's factory
// returns a fresh, empty instance and an elapse function that lets time pass:
// the memory backends move their fake clock, the Redis backends sleep. Checks
// that something has expired poll (waitFor) instead of relying on exact
// timing, since Redis expires keys on its own clock.

const (
	// shortTTL is long enough for a few Redis round trips and short enough to
	// wait out.
	shortTTL = 250 * time.Millisecond
	// longTTL never runs out during a test.
	longTTL = time.Minute
)

// elapseFunc lets d pass for the backend under test.
type elapseFunc func(d time.Duration)

// waitFor polls cond until it reports true, failing the test after a few
// seconds. cond's error, if any, fails the test at once.
func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after 5s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeClock is a MemoryConfig.Now that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func testSessionStore(t *testing.T, newStore func(t *testing.T) (SessionStore, elapseFunc)) {
	ctx := context.Background()

	t.Run("RoundTrip", func(t *testing.T) {
		s, _ := newStore(t)
		all := make([]byte, 256)
		for i := range all {
			all[i] = byte(i)
		}
		for name, rec := range map[string][]byte{
			"AllByteValues": all,
			"Empty":         {},
			"Large":         bytes.Repeat([]byte("sealed"), 10_000),
		} {
			t.Run(name, func(t *testing.T) {
				id := "sess-" + name
				if err := s.Put(ctx, id, rec, longTTL); err != nil {
					t.Fatalf("Put: %v", err)
				}
				got, err := s.Get(ctx, id)
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				if !bytes.Equal(got, rec) {
					t.Fatalf("Get = %d bytes, want the %d bytes put", len(got), len(rec))
				}
			})
		}
	})

	t.Run("CallerOwnsSlices", func(t *testing.T) {
		s, _ := newStore(t)
		rec := []byte("record")
		if err := s.Put(ctx, "a", rec, longTTL); err != nil {
			t.Fatalf("Put: %v", err)
		}
		rec[0] = 'X' // the caller reuses its buffer
		got, err := s.Get(ctx, "a")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if string(got) != "record" {
			t.Fatalf("Get after the caller changed its slice = %q, want %q", got, "record")
		}
		got[0] = 'Y' // the caller changes what it got
		again, err := s.Get(ctx, "a")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if string(again) != "record" {
			t.Fatalf("Get after the caller changed a result = %q, want %q", again, "record")
		}
	})

	t.Run("Replace", func(t *testing.T) {
		s, elapse := newStore(t)
		if err := s.Put(ctx, "a", []byte("one"), longTTL); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if err := s.Put(ctx, "a", []byte("two"), shortTTL); err != nil {
			t.Fatalf("Put again: %v", err)
		}
		got, err := s.Get(ctx, "a")
		if err != nil || string(got) != "two" {
			t.Fatalf("Get = %q, %v; want %q, nil", got, err, "two")
		}
		// The replacement's TTL applies, not the original's.
		elapse(shortTTL)
		waitFor(t, "replaced session expires with its new TTL", func() (bool, error) {
			_, err := s.Get(ctx, "a")
			return errors.Is(err, ErrNotFound), nil
		})
	})

	t.Run("Missing", func(t *testing.T) {
		s, _ := newStore(t)
		if _, err := s.Get(ctx, "never-put"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of an unknown id: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("IdsAreIndependent", func(t *testing.T) {
		s, _ := newStore(t)
		for _, id := range []string{"a", "b", "a:b", ""} {
			if err := s.Put(ctx, id, []byte("rec-"+id), longTTL); err != nil {
				t.Fatalf("Put(%q): %v", id, err)
			}
		}
		if err := s.Delete(ctx, "a"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		for _, id := range []string{"b", "a:b", ""} {
			got, err := s.Get(ctx, id)
			if err != nil || string(got) != "rec-"+id {
				t.Fatalf("Get(%q) = %q, %v; want %q", id, got, err, "rec-"+id)
			}
		}
	})

	t.Run("Expires", func(t *testing.T) {
		s, elapse := newStore(t)
		if err := s.Put(ctx, "a", []byte("rec"), shortTTL); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if _, err := s.Get(ctx, "a"); err != nil {
			t.Fatalf("Get before expiry: %v", err)
		}
		elapse(shortTTL)
		waitFor(t, "session expires", func() (bool, error) {
			_, err := s.Get(ctx, "a")
			if err != nil && !errors.Is(err, ErrNotFound) {
				return false, err
			}
			return errors.Is(err, ErrNotFound), nil
		})
	})

	t.Run("TouchExtends", func(t *testing.T) {
		s, elapse := newStore(t)
		if err := s.Put(ctx, "a", []byte("rec"), shortTTL); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if err := s.Touch(ctx, "a", longTTL); err != nil {
			t.Fatalf("Touch: %v", err)
		}
		elapse(2 * shortTTL) // the original TTL is over
		got, err := s.Get(ctx, "a")
		if err != nil || string(got) != "rec" {
			t.Fatalf("Get after the original TTL = %q, %v; want the record", got, err)
		}
	})

	t.Run("TouchShortens", func(t *testing.T) {
		s, elapse := newStore(t)
		if err := s.Put(ctx, "a", []byte("rec"), longTTL); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if err := s.Touch(ctx, "a", shortTTL); err != nil {
			t.Fatalf("Touch: %v", err)
		}
		elapse(shortTTL)
		waitFor(t, "session expires with the TTL given to Touch", func() (bool, error) {
			_, err := s.Get(ctx, "a")
			return errors.Is(err, ErrNotFound), nil
		})
	})

	t.Run("Replace", func(t *testing.T) {
		s, _ := newStore(t)
		if err := s.Replace(ctx, "none", []byte("x"), longTTL); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Replace of an unknown id: err = %v, want ErrNotFound", err)
		}
		if _, err := s.Get(ctx, "none"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Replace of an unknown id created it: Get err = %v", err)
		}
		if err := s.Put(ctx, "a", []byte("one"), longTTL); err != nil {
			t.Fatal(err)
		}
		if err := s.Replace(ctx, "a", []byte("two"), longTTL); err != nil {
			t.Fatalf("Replace of a live id: %v", err)
		}
		if got, err := s.Get(ctx, "a"); err != nil || string(got) != "two" {
			t.Fatalf("after Replace: %q, %v", got, err)
		}
		if err := s.Delete(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if err := s.Replace(ctx, "a", []byte("three"), longTTL); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Replace after Delete: err = %v, want ErrNotFound", err)
		}
		if _, err := s.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Replace after Delete brought the record back: %v", err)
		}
	})

	t.Run("TouchMissing", func(t *testing.T) {
		s, elapse := newStore(t)
		if err := s.Touch(ctx, "never-put", longTTL); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Touch of an unknown id: err = %v, want ErrNotFound", err)
		}
		if _, err := s.Get(ctx, "never-put"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Touch of an unknown id created it: Get err = %v", err)
		}
		if err := s.Put(ctx, "a", []byte("rec"), shortTTL); err != nil {
			t.Fatalf("Put: %v", err)
		}
		elapse(shortTTL)
		// Poll with Get: a Touch that came just in time would extend it.
		waitFor(t, "session expires", func() (bool, error) {
			_, err := s.Get(ctx, "a")
			return errors.Is(err, ErrNotFound), nil
		})
		if err := s.Touch(ctx, "a", longTTL); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Touch of an expired session: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		s, _ := newStore(t)
		if err := s.Put(ctx, "a", []byte("rec"), longTTL); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if err := s.Delete(ctx, "a"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := s.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after Delete: err = %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "a"); err != nil {
			t.Fatalf("second Delete: %v", err)
		}
		if err := s.Delete(ctx, "never-put"); err != nil {
			t.Fatalf("Delete of an unknown id: %v", err)
		}
	})

	t.Run("InvalidTTL", func(t *testing.T) {
		s, _ := newStore(t)
		for _, ttl := range []time.Duration{0, -time.Second} {
			if err := s.Put(ctx, "a", []byte("rec"), ttl); !errors.Is(err, ErrInvalidTTL) {
				t.Errorf("Put with ttl %v: err = %v, want ErrInvalidTTL", ttl, err)
			}
		}
		if _, err := s.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a rejected Put stored the session: Get err = %v", err)
		}
		if err := s.Put(ctx, "a", []byte("rec"), longTTL); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if err := s.Touch(ctx, "a", 0); !errors.Is(err, ErrInvalidTTL) {
			t.Fatalf("Touch with ttl 0: err = %v, want ErrInvalidTTL", err)
		}
		if _, err := s.Get(ctx, "a"); err != nil {
			t.Fatalf("a rejected Touch changed the session: Get err = %v", err)
		}
	})
}

func testLimiter(t *testing.T, newLimiter func(t *testing.T) (Limiter, elapseFunc)) {
	ctx := context.Background()

	hit := func(t *testing.T, l Limiter, key string, window time.Duration, want int64) {
		t.Helper()
		got, err := l.Hit(ctx, key, window)
		if err != nil {
			t.Fatalf("Hit(%q): %v", key, err)
		}
		if got != want {
			t.Fatalf("Hit(%q) = %d, want %d", key, got, want)
		}
	}
	count := func(t *testing.T, l Limiter, key string, want int64) {
		t.Helper()
		got, err := l.Count(ctx, key)
		if err != nil {
			t.Fatalf("Count(%q): %v", key, err)
		}
		if got != want {
			t.Fatalf("Count(%q) = %d, want %d", key, got, want)
		}
	}

	t.Run("Counts", func(t *testing.T) {
		l, _ := newLimiter(t)
		count(t, l, "acct:alice", 0)
		for i := int64(1); i <= 3; i++ {
			hit(t, l, "acct:alice", longTTL, i)
		}
		count(t, l, "acct:alice", 3)
		count(t, l, "acct:alice", 3) // Count does not add
		hit(t, l, "addr:192.0.2.1", longTTL, 1)
		count(t, l, "acct:bob", 0)
	})

	t.Run("WindowStartsAtFirstHit", func(t *testing.T) {
		l, elapse := newLimiter(t)
		hit(t, l, "k", shortTTL, 1)
		// A later hit with a longer window must not extend the window.
		hit(t, l, "k", longTTL, 2)
		elapse(shortTTL)
		waitFor(t, "window ends", func() (bool, error) {
			n, err := l.Count(ctx, "k")
			return n == 0, err
		})
		hit(t, l, "k", longTTL, 1) // a new window
		count(t, l, "k", 1)
	})

	t.Run("Reset", func(t *testing.T) {
		l, _ := newLimiter(t)
		hit(t, l, "k", longTTL, 1)
		hit(t, l, "k", longTTL, 2)
		hit(t, l, "other", longTTL, 1)
		if err := l.Reset(ctx, "k"); err != nil {
			t.Fatalf("Reset: %v", err)
		}
		count(t, l, "k", 0)
		hit(t, l, "k", longTTL, 1)
		count(t, l, "other", 1)
		if err := l.Reset(ctx, "never-hit"); err != nil {
			t.Fatalf("Reset of an unknown key: %v", err)
		}
	})

	t.Run("ConcurrentHits", func(t *testing.T) {
		l, _ := newLimiter(t)
		const goroutines, hits = 20, 10
		results := make(chan int64, goroutines*hits)
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for range hits {
					n, err := l.Hit(ctx, "k", longTTL)
					if err != nil {
						t.Errorf("Hit: %v", err)
						return
					}
					results <- n
				}
			})
		}
		wg.Wait()
		close(results)
		var got []int64
		for n := range results {
			got = append(got, n)
		}
		sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
		for i, n := range got {
			if n != int64(i+1) {
				t.Fatalf("concurrent Hits returned %v; want each of 1..%d once", got, goroutines*hits)
			}
		}
		count(t, l, "k", goroutines*hits)
	})

	t.Run("InvalidWindow", func(t *testing.T) {
		l, _ := newLimiter(t)
		for _, w := range []time.Duration{0, -time.Second} {
			if _, err := l.Hit(ctx, "k", w); !errors.Is(err, ErrInvalidTTL) {
				t.Errorf("Hit with window %v: err = %v, want ErrInvalidTTL", w, err)
			}
			if _, _, err := l.Reserve(ctx, "k", 5, w); !errors.Is(err, ErrInvalidTTL) {
				t.Errorf("Reserve with window %v: err = %v, want ErrInvalidTTL", w, err)
			}
		}
		count(t, l, "k", 0)
	})

	reserve := func(t *testing.T, l Limiter, key string, limit int64, window time.Duration, wantOK bool, wantN int64) {
		t.Helper()
		ok, n, err := l.Reserve(ctx, key, limit, window)
		if err != nil {
			t.Fatalf("Reserve(%q, %d): %v", key, limit, err)
		}
		if ok != wantOK || n != wantN {
			t.Fatalf("Reserve(%q, %d) = %v, %d; want %v, %d", key, limit, ok, n, wantOK, wantN)
		}
	}
	release := func(t *testing.T, l Limiter, key string) {
		t.Helper()
		if err := l.Release(ctx, key); err != nil {
			t.Fatalf("Release(%q): %v", key, err)
		}
	}

	t.Run("ReserveUpToLimit", func(t *testing.T) {
		l, _ := newLimiter(t)
		for i := int64(1); i <= 3; i++ {
			reserve(t, l, "k", 3, longTTL, true, i)
		}
		for range 3 {
			reserve(t, l, "k", 3, longTTL, false, 3) // refused, and not counted
		}
		count(t, l, "k", 3)
		reserve(t, l, "k", 4, longTTL, true, 4) // a higher limit lets one more in
		reserve(t, l, "other", 3, longTTL, true, 1)
	})

	t.Run("ReserveSharesTheCountWithHit", func(t *testing.T) {
		l, _ := newLimiter(t)
		hit(t, l, "k", longTTL, 1)
		hit(t, l, "k", longTTL, 2)
		reserve(t, l, "k", 3, longTTL, true, 3)
		reserve(t, l, "k", 3, longTTL, false, 3)
		hit(t, l, "k", longTTL, 4)
		reserve(t, l, "k", 3, longTTL, false, 4)
	})

	t.Run("ReserveLimitBelowOne", func(t *testing.T) {
		l, _ := newLimiter(t)
		reserve(t, l, "k", 0, longTTL, false, 0)
		reserve(t, l, "k", -1, longTTL, false, 0)
		count(t, l, "k", 0)
	})

	t.Run("ReserveWindowStartsAtFirstAttempt", func(t *testing.T) {
		l, elapse := newLimiter(t)
		reserve(t, l, "k", 2, shortTTL, true, 1)
		// A later attempt with a longer window must not extend the window.
		reserve(t, l, "k", 2, longTTL, true, 2)
		reserve(t, l, "k", 2, longTTL, false, 2)
		elapse(shortTTL)
		waitFor(t, "window ends", func() (bool, error) {
			n, err := l.Count(ctx, "k")
			return n == 0, err
		})
		reserve(t, l, "k", 2, longTTL, true, 1) // a new window
	})

	t.Run("ConcurrentReserves", func(t *testing.T) {
		l, _ := newLimiter(t)
		const goroutines, limit, before = 40, 10, 3
		for i := int64(1); i <= before; i++ {
			reserve(t, l, "k", limit, longTTL, true, i)
		}
		type result struct {
			ok bool
			n  int64
		}
		results := make([]result, goroutines)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range goroutines {
			wg.Go(func() {
				<-start
				ok, n, err := l.Reserve(ctx, "k", limit, longTTL)
				if err != nil {
					t.Errorf("Reserve: %v", err)
				}
				results[i] = result{ok, n}
			})
		}
		close(start)
		wg.Wait()
		var granted []int64
		for _, r := range results {
			switch {
			case r.ok:
				granted = append(granted, r.n)
			case r.n != limit:
				t.Errorf("a refused Reserve returned count %d, want %d", r.n, limit)
			}
		}
		sort.Slice(granted, func(i, j int) bool { return granted[i] < granted[j] })
		if len(granted) != limit-before {
			t.Fatalf("%d of %d concurrent Reserves were granted with %d of %d taken before; want %d",
				len(granted), goroutines, before, limit, limit-before)
		}
		for i, n := range granted {
			if n != int64(before+i+1) {
				t.Fatalf("granted Reserves returned counts %v; want each of %d..%d once", granted, before+1, limit)
			}
		}
		count(t, l, "k", limit)
	})

	t.Run("Release", func(t *testing.T) {
		l, _ := newLimiter(t)
		reserve(t, l, "k", 2, longTTL, true, 1)
		reserve(t, l, "k", 2, longTTL, true, 2)
		reserve(t, l, "k", 2, longTTL, false, 2)
		release(t, l, "k")
		count(t, l, "k", 1)
		reserve(t, l, "k", 2, longTTL, true, 2) // the released attempt is free again
		release(t, l, "k")
		release(t, l, "k")
		release(t, l, "k") // never below zero
		count(t, l, "k", 0)
		reserve(t, l, "k", 2, longTTL, true, 1)
		release(t, l, "never-counted") // creates nothing
		count(t, l, "never-counted", 0)
		hit(t, l, "h", longTTL, 1)
		release(t, l, "h") // Hit's count too
		count(t, l, "h", 0)
	})

	t.Run("ReleaseKeepsTheWindow", func(t *testing.T) {
		l, elapse := newLimiter(t)
		reserve(t, l, "k", 5, shortTTL, true, 1)
		reserve(t, l, "k", 5, shortTTL, true, 2)
		release(t, l, "k")
		elapse(shortTTL)
		waitFor(t, "window ends after a Release", func() (bool, error) {
			n, err := l.Count(ctx, "k")
			return n == 0, err
		})
	})
}

// memoryFactory adapts a memory constructor to the contract tests: a fake
// clock, and Close at the end of the test.
func memoryFactory[T interface{ Close() error }](newT func(MemoryConfig) T) func(t *testing.T) (T, elapseFunc) {
	return func(t *testing.T) (T, elapseFunc) {
		clk := newFakeClock()
		v := newT(MemoryConfig{Now: clk.Now})
		t.Cleanup(func() {
			if err := v.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return v, clk.Advance
	}
}

func TestMemorySessionStore(t *testing.T) {
	f := memoryFactory(NewMemorySessionStore)
	testSessionStore(t, func(t *testing.T) (SessionStore, elapseFunc) { return f(t) })
}

func TestMemoryLimiter(t *testing.T) {
	f := memoryFactory(NewMemoryLimiter)
	testLimiter(t, func(t *testing.T) (Limiter, elapseFunc) { return f(t) })
}
