package ephemeral

import (
	"context"
	"time"
)

var _ NonceSet = (*MemoryNonceSet)(nil)

// MemoryNonceSet is a NonceSet held in this process's memory, for a
// single-node deployment. Call Close when done with it to stop its sweep
// goroutine.
type MemoryNonceSet struct {
	t *memoryTable[struct{}]
}

// NewMemoryNonceSet returns an empty MemoryNonceSet.
func NewMemoryNonceSet(cfg MemoryConfig) *MemoryNonceSet {
	return &MemoryNonceSet{t: newMemoryTable[struct{}]("nonce set", cfg)}
}

// Add records id for ttl, or returns ErrReplay if it is already recorded. It
// fails with ErrUnavailable when the set is full of unexpired ids: refusing a
// message is safer than forgetting ids that could then be replayed.
func (n *MemoryNonceSet) Add(_ context.Context, id string, ttl time.Duration) error {
	if err := checkTTL("add nonce", ttl); err != nil {
		return err
	}
	n.t.mu.Lock()
	defer n.t.mu.Unlock()
	now := n.t.now()
	if _, ok := n.t.getLocked(id, now); ok {
		return ErrReplay
	}
	if err := n.t.roomLocked("add nonce", now); err != nil {
		return err
	}
	n.t.entries[id] = memoryEntry[struct{}]{expires: now.Add(ttl)}
	return nil
}

// Close stops the sweep goroutine. The set keeps working afterwards, but
// expired ids are then removed only when they are added again or when the
// set is full. Close always returns nil.
func (n *MemoryNonceSet) Close() error {
	n.t.close()
	return nil
}
