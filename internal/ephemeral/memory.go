package ephemeral

import (
	"fmt"
	"sync"
	"time"
)

// MemoryConfig configures the memory backends. The zero value is ready to
// use.
type MemoryConfig struct {
	// MaxEntries bounds how many entries the backend holds, expired or not.
	// When it is full, an operation that would add an entry first removes the
	// expired ones and, if it is still full, fails with an error wrapping
	// ErrUnavailable. Replacing or updating an existing entry always works.
	// Zero value means 1,000,000.
	MaxEntries int
	// SweepInterval is how often a background goroutine removes expired
	// entries (they are also removed when touched). Zero value means one
	// minute.
	SweepInterval time.Duration
	// Now returns the current time. Tests set it to move time forward without
	// sleeping. Zero value (nil) means time.Now.
	Now func() time.Time
}

const (
	defaultMaxEntries    = 1_000_000
	defaultSweepInterval = time.Minute
)

// memoryEntry is one value with the time it expires at.
type memoryEntry[V any] struct {
	value   V
	expires time.Time
}

// expired reports whether the entry has expired at now.
func (e memoryEntry[V]) expired(now time.Time) bool {
	return !now.Before(e.expires)
}

// memoryTable is the bounded, expiring map shared by the memory backends.
// Its users lock mu and work on entries directly.
type memoryTable[V any] struct {
	mu      sync.Mutex
	entries map[string]memoryEntry[V]

	max  int
	now  func() time.Time
	kind string // for error messages: "session store", "nonce set", "limiter"

	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// newMemoryTable returns an empty table and starts its sweep goroutine, which
// runs until close.
func newMemoryTable[V any](kind string, cfg MemoryConfig) *memoryTable[V] {
	t := &memoryTable[V]{
		entries: make(map[string]memoryEntry[V]),
		max:     cfg.MaxEntries,
		now:     cfg.Now,
		kind:    kind,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if t.max <= 0 {
		t.max = defaultMaxEntries
	}
	if t.now == nil {
		t.now = time.Now
	}
	interval := cfg.SweepInterval
	if interval <= 0 {
		interval = defaultSweepInterval
	}
	go t.sweepLoop(interval)
	return t
}

func (t *memoryTable[V]) sweepLoop(interval time.Duration) {
	defer close(t.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			t.mu.Lock()
			t.sweepLocked(t.now())
			t.mu.Unlock()
		}
	}
}

// sweepLocked removes the entries expired at now. t.mu must be held.
func (t *memoryTable[V]) sweepLocked(now time.Time) {
	for k, e := range t.entries {
		if e.expired(now) {
			delete(t.entries, k)
		}
	}
}

// getLocked returns the live entry for key, deleting it if it has expired.
// t.mu must be held.
func (t *memoryTable[V]) getLocked(key string, now time.Time) (memoryEntry[V], bool) {
	e, ok := t.entries[key]
	if !ok {
		return e, false
	}
	if e.expired(now) {
		delete(t.entries, key)
		return e, false
	}
	return e, true
}

// roomLocked makes sure a new key can be added, sweeping expired entries
// when the table is full. op names the operation for the error. t.mu must be
// held.
func (t *memoryTable[V]) roomLocked(op string, now time.Time) error {
	if len(t.entries) < t.max {
		return nil
	}
	t.sweepLocked(now)
	if len(t.entries) < t.max {
		return nil
	}
	return unavailable(op, fmt.Errorf("memory %s full (%d entries)", t.kind, t.max))
}

// close stops the sweep goroutine and waits for it to exit. It may be called
// more than once.
func (t *memoryTable[V]) close() {
	t.closeOnce.Do(func() { close(t.stop) })
	<-t.done
}

// len returns the number of entries, expired or not.
func (t *memoryTable[V]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}
