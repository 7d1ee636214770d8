package ephemeral

import (
	"context"
	"time"
)

var _ Limiter = (*MemoryLimiter)(nil)

// MemoryLimiter is a Limiter held in this process's memory, for a
// single-node deployment. Call Close when done with it to stop its sweep
// goroutine.
type MemoryLimiter struct {
	t *memoryTable[int64]
}

// NewMemoryLimiter returns an empty MemoryLimiter.
func NewMemoryLimiter(cfg MemoryConfig) *MemoryLimiter {
	return &MemoryLimiter{t: newMemoryTable[int64]("limiter", cfg)}
}

// Hit counts one event for key and returns the count of the current window.
// It fails with ErrUnavailable when it would start a window for a new key
// while the limiter is full of live windows.
func (l *MemoryLimiter) Hit(_ context.Context, key string, window time.Duration) (int64, error) {
	if err := checkTTL("limiter hit", window); err != nil {
		return 0, err
	}
	l.t.mu.Lock()
	defer l.t.mu.Unlock()
	now := l.t.now()
	e, ok := l.t.getLocked(key, now)
	if !ok {
		if err := l.t.roomLocked("limiter hit", now); err != nil {
			return 0, err
		}
		e = memoryEntry[int64]{expires: now.Add(window)}
	}
	e.value++
	l.t.entries[key] = e
	return e.value, nil
}

// Count returns the count of the current window of key, or 0.
func (l *MemoryLimiter) Count(_ context.Context, key string) (int64, error) {
	l.t.mu.Lock()
	defer l.t.mu.Unlock()
	e, ok := l.t.getLocked(key, l.t.now())
	if !ok {
		return 0, nil
	}
	return e.value, nil
}

// Reserve takes one attempt for key if fewer than limit are counted. Like
// Hit, it fails with ErrUnavailable when it would start a window for a new
// key while the limiter is full of live windows.
func (l *MemoryLimiter) Reserve(_ context.Context, key string, limit int64, window time.Duration) (bool, int64, error) {
	if err := checkTTL("limiter reserve", window); err != nil {
		return false, 0, err
	}
	l.t.mu.Lock()
	defer l.t.mu.Unlock()
	now := l.t.now()
	e, ok := l.t.getLocked(key, now)
	if !ok {
		e = memoryEntry[int64]{expires: now.Add(window)}
	}
	if e.value >= limit {
		return false, e.value, nil
	}
	if !ok {
		if err := l.t.roomLocked("limiter reserve", now); err != nil {
			return false, 0, err
		}
	}
	e.value++
	l.t.entries[key] = e
	return true, e.value, nil
}

// Release gives back one attempt counted for key.
func (l *MemoryLimiter) Release(_ context.Context, key string) error {
	l.t.mu.Lock()
	defer l.t.mu.Unlock()
	e, ok := l.t.getLocked(key, l.t.now())
	if ok && e.value > 0 {
		e.value--
		l.t.entries[key] = e
	}
	return nil
}

// Reset forgets key.
func (l *MemoryLimiter) Reset(_ context.Context, key string) error {
	l.t.mu.Lock()
	defer l.t.mu.Unlock()
	delete(l.t.entries, key)
	return nil
}

// Close stops the sweep goroutine. The limiter keeps working afterwards, but
// expired windows are then removed only when their key is used again or when
// the limiter is full. Close always returns nil.
func (l *MemoryLimiter) Close() error {
	l.t.close()
	return nil
}
