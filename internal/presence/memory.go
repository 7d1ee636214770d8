package presence

import (
	"context"
	"sort"
	"sync"
	"time"
)

var _ Registry = (*Memory)(nil)

// Memory is the Registry of a single node, in its memory.
type Memory struct {
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	rooms map[string]map[string]memEntry // room → member id → entry
}

type memEntry struct {
	m       Member
	expires time.Time
}

// NewMemory returns an empty registry whose entries live ttl without a
// Refresh; zero means DefaultTTL.
func NewMemory(ttl time.Duration) *Memory {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Memory{ttl: ttl, now: time.Now, rooms: make(map[string]map[string]memEntry)}
}

// TTL returns the entries' lifetime without a Refresh.
func (r *Memory) TTL() time.Duration { return r.ttl }

// Add records m in room.
func (r *Memory) Add(_ context.Context, room string, m Member) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ms := r.rooms[room]
	if ms == nil {
		ms = make(map[string]memEntry)
		r.rooms[room] = ms
	}
	ms[m.ID] = memEntry{m: m, expires: r.now().Add(r.ttl)}
	return nil
}

// Remove forgets m in room.
func (r *Memory) Remove(_ context.Context, room string, m Member) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.rooms[room], m.ID)
	if len(r.rooms[room]) == 0 {
		delete(r.rooms, room)
	}
	return nil
}

// Refresh extends the entries that are still recorded.
func (r *Memory) Refresh(_ context.Context, entries []Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for _, e := range entries {
		if old, ok := r.rooms[e.Room][e.Member.ID]; ok && old.expires.After(now) {
			r.rooms[e.Room][e.Member.ID] = memEntry{m: e.Member, expires: now.Add(r.ttl)}
		}
	}
	return nil
}

// List returns up to limit members of room by name, and the count.
func (r *Memory) List(_ context.Context, room string, limit int) ([]Member, int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	var out []Member
	for id, e := range r.rooms[room] {
		if !e.expires.After(now) {
			delete(r.rooms[room], id)
			continue
		}
		out = append(out, e.m)
	}
	if len(r.rooms[room]) == 0 {
		delete(r.rooms, room)
	}
	n := len(out)
	sortMembers(out)
	if len(out) > limit {
		out = out[:max(limit, 0)]
	}
	return out, n, nil
}

// sortMembers orders by name, then id.
func sortMembers(ms []Member) {
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].Name != ms[j].Name {
			return ms[i].Name < ms[j].Name
		}
		return ms[i].ID < ms[j].ID
	})
}
