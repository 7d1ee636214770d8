package ephemeral

import (
	"context"
	"time"

	"golang.org/x/time/rate"
)

var _ RateLimiter = (*MemoryRateLimiter)(nil)

// MemoryRateLimiter is a RateLimiter held in this process's memory, for a
// single node. Each key is a golang.org/x/time/rate bucket that is
// forgotten once it has been full again for a while, so idle keys cost
// nothing. Call Close when done with it to stop its sweep goroutine.
type MemoryRateLimiter struct {
	t *memoryTable[*rate.Limiter]
}

// NewMemoryRateLimiter returns an empty MemoryRateLimiter.
func NewMemoryRateLimiter(cfg MemoryConfig) *MemoryRateLimiter {
	return &MemoryRateLimiter{t: newMemoryTable[*rate.Limiter]("rate limiter", cfg)}
}

// Allow takes a token from key's bucket. It fails with ErrUnavailable when
// the key is new and the limiter is full of live buckets.
func (l *MemoryRateLimiter) Allow(_ context.Context, key string, r Rate) (bool, time.Duration, error) {
	if r.Unlimited() {
		return true, 0, nil
	}
	every, burst := r.Interval(), r.BucketSize()
	l.t.mu.Lock()
	defer l.t.mu.Unlock()
	now := l.t.now()
	e, ok := l.t.getLocked(key, now)
	if !ok {
		if err := l.t.roomLocked("rate limiter allow", now); err != nil {
			return false, 0, err
		}
		e.value = rate.NewLimiter(rate.Every(every), burst)
	}
	lim := e.value
	lim.SetLimitAt(now, rate.Every(every))
	lim.SetBurstAt(now, burst)
	res := lim.ReserveN(now, 1)
	delay := res.DelayFrom(now)
	if delay > 0 {
		res.CancelAt(now)
	}
	// A bucket is full again (and so no different from a new one) once
	// every token taken has been refilled.
	missing := float64(burst) - lim.TokensAt(now)
	e.expires = now.Add(time.Duration(missing*float64(every)) + every)
	l.t.entries[key] = e
	if delay > 0 {
		return false, delay, nil
	}
	return true, 0, nil
}

// Close stops the sweep goroutine. Close always returns nil.
func (l *MemoryRateLimiter) Close() error {
	l.t.close()
	return nil
}
