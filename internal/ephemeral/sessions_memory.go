package ephemeral

import (
	"context"
	"time"
)

var _ SessionStore = (*MemorySessionStore)(nil)

// MemorySessionStore is a SessionStore held in this process's memory, for a
// single-node deployment. Call Close when done with it to stop its sweep
// goroutine.
type MemorySessionStore struct {
	t *memoryTable[[]byte]
}

// NewMemorySessionStore returns an empty MemorySessionStore.
func NewMemorySessionStore(cfg MemoryConfig) *MemorySessionStore {
	return &MemorySessionStore{t: newMemoryTable[[]byte]("session store", cfg)}
}

// Put stores a copy of record under id for ttl, replacing any record id had.
// It fails with ErrUnavailable when the store is full of live sessions.
func (s *MemorySessionStore) Put(_ context.Context, id string, record []byte, ttl time.Duration) error {
	if err := checkTTL("put session", ttl); err != nil {
		return err
	}
	rec := append([]byte(nil), record...)
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	now := s.t.now()
	if _, ok := s.t.getLocked(id, now); !ok {
		if err := s.t.roomLocked("put session", now); err != nil {
			return err
		}
	}
	s.t.entries[id] = memoryEntry[[]byte]{value: rec, expires: now.Add(ttl)}
	return nil
}

// Replace stores record under id for ttl if id has a live record, else
// returns ErrNotFound.
func (s *MemorySessionStore) Replace(_ context.Context, id string, record []byte, ttl time.Duration) error {
	if err := checkTTL("replace session", ttl); err != nil {
		return err
	}
	rec := append([]byte(nil), record...)
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	now := s.t.now()
	if _, ok := s.t.getLocked(id, now); !ok {
		return ErrNotFound
	}
	s.t.entries[id] = memoryEntry[[]byte]{value: rec, expires: now.Add(ttl)}
	return nil
}

// Get returns a copy of the record stored under id, or ErrNotFound.
func (s *MemorySessionStore) Get(_ context.Context, id string) ([]byte, error) {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	e, ok := s.t.getLocked(id, s.t.now())
	if !ok {
		return nil, ErrNotFound
	}
	return append([]byte(nil), e.value...), nil
}

// Touch sets the remaining time to live of id to ttl, or returns ErrNotFound.
func (s *MemorySessionStore) Touch(_ context.Context, id string, ttl time.Duration) error {
	if err := checkTTL("touch session", ttl); err != nil {
		return err
	}
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	now := s.t.now()
	e, ok := s.t.getLocked(id, now)
	if !ok {
		return ErrNotFound
	}
	e.expires = now.Add(ttl)
	s.t.entries[id] = e
	return nil
}

// Delete removes id; deleting an unknown id is not an error.
func (s *MemorySessionStore) Delete(_ context.Context, id string) error {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	delete(s.t.entries, id)
	return nil
}

// Close stops the sweep goroutine. The store keeps working afterwards, but
// expired sessions are then removed only when they are accessed or when the
// store is full. Close always returns nil.
func (s *MemorySessionStore) Close() error {
	s.t.close()
	return nil
}
