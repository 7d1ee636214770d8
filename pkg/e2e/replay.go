package e2e

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// MaxRememberedIDs bounds the message ids a ReplayGuard remembers; past it
// the oldest are forgotten. A forgotten id replayed in its original record
// is still refused by the counter rule, which has no bound.
const MaxRememberedIDs = 4096

// ReplayGuard remembers what a device has accepted, so that Open refuses a
// record seen before: the message ids accepted, each with its
// conversation (the last MaxRememberedIDs in all), and for each sender
// device and key version of a conversation, the highest counter accepted. Only records that pass every
// other check of Open are recorded. The zero value is empty and ready;
// it is safe for concurrent use. A client persists it with
// json.Marshal and restores it with json.Unmarshal, so that a replay
// across restarts is refused too.
type ReplayGuard struct {
	mu       sync.Mutex
	counters map[replayStream]uint64
	ids      map[replayID]struct{}
	order    []replayID // oldest first
}

type replayStream struct {
	Conversation uuid.UUID
	Sender       DeviceRef
	KeyVersion   uint32
}

type replayID struct {
	Conversation uuid.UUID
	MessageID    uuid.UUID
}

// accept checks h against the guard and records it.
func (g *ReplayGuard) accept(h *Header) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	id := replayID{h.Conversation, h.MessageID}
	if _, seen := g.ids[id]; seen {
		return fmt.Errorf("e2e: record %s: %w", h.MessageID, ErrReplay)
	}
	st := replayStream{h.Conversation, h.Sending(), h.KeyVersion}
	if last := g.counters[st]; h.Counter <= last {
		return fmt.Errorf("e2e: record %s: counter %d of %s/%s for key version %d, last accepted %d: %w",
			h.MessageID, h.Counter, h.Sender, h.SenderDevice, h.KeyVersion, last, ErrStaleCounter)
	}
	if g.counters == nil {
		g.counters = map[replayStream]uint64{}
		g.ids = map[replayID]struct{}{}
	}
	g.counters[st] = h.Counter
	g.remember(id)
	return nil
}

func (g *ReplayGuard) remember(id replayID) {
	g.ids[id] = struct{}{}
	g.order = append(g.order, id)
	if len(g.order) > MaxRememberedIDs {
		delete(g.ids, g.order[0])
		g.order = slices.Delete(g.order, 0, 1)
	}
}

// LastCounter returns the highest counter accepted from sender for a key
// version of a conversation, 0 if none.
func (g *ReplayGuard) LastCounter(conversation uuid.UUID, sender DeviceRef, keyVersion uint32) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.counters[replayStream{conversation, sender, keyVersion}]
}

// replayJSON is the persisted form of a ReplayGuard.
type replayJSON struct {
	Counters []counterJSON `json:"counters"`
	IDs      []idJSON      `json:"ids"`
}

type counterJSON struct {
	Conversation uuid.UUID `json:"conversation"`
	User         string    `json:"user"`
	Device       uuid.UUID `json:"device"`
	KeyVersion   uint32    `json:"key_version"`
	Counter      uint64    `json:"counter"`
}

type idJSON struct {
	Conversation uuid.UUID `json:"conversation"`
	MessageID    uuid.UUID `json:"message_id"`
}

// MarshalJSON encodes the guard: the counters in a fixed order, the
// message ids oldest first.
func (g *ReplayGuard) MarshalJSON() ([]byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := replayJSON{Counters: []counterJSON{}, IDs: make([]idJSON, 0, len(g.order))}
	for st, c := range g.counters {
		out.Counters = append(out.Counters, counterJSON{st.Conversation, st.Sender.User, st.Sender.ID, st.KeyVersion, c})
	}
	slices.SortFunc(out.Counters, func(a, b counterJSON) int {
		if c := bytes.Compare(a.Conversation[:], b.Conversation[:]); c != 0 {
			return c
		}
		if c := compareRefs(DeviceRef{a.User, a.Device}, DeviceRef{b.User, b.Device}); c != 0 {
			return c
		}
		return cmp.Compare(a.KeyVersion, b.KeyVersion)
	})
	for _, id := range g.order {
		out.IDs = append(out.IDs, idJSON(id))
	}
	return json.Marshal(out)
}

// UnmarshalJSON restores a guard MarshalJSON encoded, replacing its
// contents. Invalid input (a bad user name, a zero counter or key version,
// a duplicate, more than MaxRememberedIDs ids) is ErrMalformed and leaves
// the guard unchanged.
func (g *ReplayGuard) UnmarshalJSON(data []byte) error {
	var in replayJSON
	if err := json.Unmarshal(data, &in); err != nil {
		return fmt.Errorf("e2e: replay guard: %v: %w", err, ErrMalformed)
	}
	if len(in.IDs) > MaxRememberedIDs {
		return fmt.Errorf("e2e: replay guard: %d ids, limit %d: %w", len(in.IDs), MaxRememberedIDs, ErrMalformed)
	}
	counters := make(map[replayStream]uint64, len(in.Counters))
	for _, c := range in.Counters {
		st := replayStream{c.Conversation, DeviceRef{c.User, c.Device}, c.KeyVersion}
		if !protocol.ValidUserName(c.User) || c.KeyVersion == 0 || c.Counter == 0 {
			return fmt.Errorf("e2e: replay guard: counter entry %+v: %w", c, ErrMalformed)
		}
		if _, dup := counters[st]; dup {
			return fmt.Errorf("e2e: replay guard: counter entry %+v twice: %w", c, ErrMalformed)
		}
		counters[st] = c.Counter
	}
	ids := make(map[replayID]struct{}, len(in.IDs))
	order := make([]replayID, 0, len(in.IDs))
	for _, j := range in.IDs {
		id := replayID(j)
		if _, dup := ids[id]; dup {
			return fmt.Errorf("e2e: replay guard: message id %s twice: %w", id.MessageID, ErrMalformed)
		}
		ids[id] = struct{}{}
		order = append(order, id)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.counters, g.ids, g.order = counters, ids, order
	return nil
}
