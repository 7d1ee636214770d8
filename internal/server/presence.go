package server

// Presence across nodes (docs/protocol.md §8.3): every node records the
// connections it holds in each room in a presence.Registry shared by the
// deployment (Redis; memory on one node), refreshes those records while it
// runs, and lists them in join answers. Presence events are batched per
// room: a node collects the joins and leaves of each room for
// Config.PresenceInterval and then publishes them, with a join and a
// leave of the same connection within one batch cancelling out; a room
// with more than Config.PresenceThreshold members, or a batch with more
// events than that, gets one "count" event instead. So a member receives
// at most PresenceThreshold presence events per interval from each node,
// however fast a large room fills or empties.
//
// A room's counts are spaced further apart the larger it is: a node sends
// a room of N members (N above the threshold) at most one count per
// countSpacing(N) = interval × N / threshold, and at least one every
// maxCountSpacing while it keeps changing. Each count reaches N members,
// so a room that keeps changing costs at most threshold / interval
// deliveries per second per node (500/s with the defaults) up to the
// size where the spacing reaches maxCountSpacing, instead of N per
// interval (25,000/s for 5,000 members). The last change is never lost:
// a deferred count is sent once its spacing has passed.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/presence"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

const (
	defaultPresenceInterval  = 200 * time.Millisecond
	defaultPresenceThreshold = 100
	// presenceTimeout bounds one registry call.
	presenceTimeout = 5 * time.Second
	// maxCountSpacing is the longest a changing room's members wait for
	// its next count.
	maxCountSpacing = 10 * time.Second
)

// countSpacing is the least time between two counts a node sends for a
// room of n members: interval × n / threshold, at least interval, at most
// maxCountSpacing.
func countSpacing(interval time.Duration, threshold, n int) time.Duration {
	if threshold < 1 || n <= threshold {
		return interval
	}
	d := time.Duration(int64(interval) * int64(n) / int64(threshold))
	return min(max(d, interval), max(maxCountSpacing, interval))
}

// presenceEvent is one pending join or leave.
type presenceEvent struct {
	m     presence.Member
	event string // "join" or "leave"
}

// roomPresence is the node's side of presence: its entries in the
// registry, and the batches of events not yet published.
type roomPresence struct {
	reg       presence.Registry
	hub       *Hub
	log       zerolog.Logger
	interval  time.Duration
	threshold int

	// now is the clock (time.Now; tests replace it).
	now func() time.Time

	mu        sync.Mutex
	local     map[string]map[string]presence.Member // room → connection id → member
	pending   map[string][]presenceEvent            // room → events in order
	lastCount map[string]time.Time                  // room → when its last count was sent
	counting  map[string]bool                       // room → its next batch is a count (a deferred one)
}

func newRoomPresence(reg presence.Registry, hub *Hub, log zerolog.Logger, interval time.Duration, threshold int) *roomPresence {
	return &roomPresence{
		reg: reg, hub: hub, log: log, interval: interval, threshold: threshold,
		now:       time.Now,
		local:     make(map[string]map[string]presence.Member),
		pending:   make(map[string][]presenceEvent),
		lastCount: make(map[string]time.Time),
		counting:  make(map[string]bool),
	}
}

// memberOf is c as the registry records it.
func memberOf(c *peer) presence.Member {
	return presence.Member{ID: c.id, Name: c.displayName(), Anon: c.user == nil}
}

// add records c in room deployment-wide. It fails with
// protocol.CodeUnavailable when the registry cannot be reached.
func (p *roomPresence) add(ctx context.Context, room string, c *peer) error {
	m := memberOf(c)
	ctx, cancel := context.WithTimeout(ctx, presenceTimeout)
	defer cancel()
	if err := p.reg.Add(ctx, room, m); err != nil {
		return fmt.Errorf("%w: %w", protocol.CodeUnavailable, err)
	}
	p.mu.Lock()
	if p.local[room] == nil {
		p.local[room] = make(map[string]presence.Member)
	}
	p.local[room][m.ID] = m
	p.mu.Unlock()
	return nil
}

// remove forgets c in room. A registry that cannot be reached lets the
// entry expire by itself, within its TTL.
func (p *roomPresence) remove(ctx context.Context, room string, c *peer) {
	p.mu.Lock()
	m, ok := p.local[room][c.id]
	delete(p.local[room], c.id)
	if len(p.local[room]) == 0 {
		delete(p.local, room)
	}
	p.mu.Unlock()
	if !ok {
		m = memberOf(c)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), presenceTimeout)
	defer cancel()
	if err := p.reg.Remove(ctx, room, m); err != nil {
		p.log.Warn().Err(err).Str("room", room).Msg("presence entry not removed: it expires by itself")
	}
}

// list returns up to maxMembersListed names of room's members on every
// node, sorted, and how many there are.
func (p *roomPresence) list(ctx context.Context, room string) ([]string, int, error) {
	ctx, cancel := context.WithTimeout(ctx, presenceTimeout)
	defer cancel()
	ms, n, err := p.reg.List(ctx, room, maxMembersListed)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", protocol.CodeUnavailable, err)
	}
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	return names, n, nil
}

// event queues a join or leave of c in room for the next batch; a leave
// also removes c's entry. A join and a leave of one connection in one
// batch cancel out.
func (p *roomPresence) event(ctx context.Context, room string, c *peer, event string) {
	if event == "leave" {
		p.remove(ctx, room, c)
	}
	m := memberOf(c)
	p.mu.Lock()
	defer p.mu.Unlock()
	evs := p.pending[room]
	for i, e := range evs {
		if e.m.ID == m.ID && e.event != event {
			p.pending[room] = append(evs[:i:i], evs[i+1:]...)
			if len(p.pending[room]) == 0 && !p.counting[room] { // a deferred count stays due
				delete(p.pending, room)
			}
			return
		}
	}
	p.pending[room] = append(evs, presenceEvent{m: m, event: event})
}

// run publishes the batches every interval and refreshes the node's
// entries three times per TTL, until ctx ends.
func (p *roomPresence) run(ctx context.Context) {
	flush := time.NewTicker(p.interval)
	defer flush.Stop()
	refresh := time.NewTicker(max(p.reg.TTL()/3, 10*time.Millisecond))
	defer refresh.Stop()
	for {
		select {
		case <-flush.C:
			p.flush(ctx)
		case <-refresh.C:
			p.refresh(ctx)
		case <-ctx.Done():
			return
		}
	}
}

// refresh pushes the expiry of every entry of this node forward.
func (p *roomPresence) refresh(ctx context.Context) {
	p.mu.Lock()
	var entries []presence.Entry
	for room, ms := range p.local {
		for _, m := range ms {
			entries = append(entries, presence.Entry{Room: room, Member: m})
		}
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, presenceTimeout)
	defer cancel()
	if err := p.reg.Refresh(ctx, entries); err != nil {
		p.log.Warn().Err(err).Int("entries", len(entries)).Msg("presence refresh failed: entries expire unless the next one succeeds")
	}
}

// flush publishes the pending batches: per room, its events one by one,
// or one count event for a room above the threshold, unless the room's
// last count was sent less than countSpacing ago: then the batch waits.
func (p *roomPresence) flush(ctx context.Context) {
	p.mu.Lock()
	pending := p.pending
	p.pending = make(map[string][]presenceEvent)
	p.forgetCountsLocked(p.now())
	p.mu.Unlock()
	for room, evs := range pending {
		lctx, cancel := context.WithTimeout(ctx, presenceTimeout)
		_, count, err := p.reg.List(lctx, room, 0)
		cancel()
		if err != nil {
			p.log.Warn().Err(err).Str("room", room).Int("events", len(evs)).Msg("presence batch dropped: registry unavailable")
			continue
		}
		at := p.now()
		now := at.UnixMilli()
		var msgs []*protocol.Message
		p.mu.Lock()
		countIt := count > p.threshold || len(evs) > p.threshold || p.counting[room]
		if countIt {
			if last, sent := p.lastCount[room]; sent && at.Sub(last) < countSpacing(p.interval, p.threshold, count) {
				p.deferLocked(room, evs)
				p.mu.Unlock()
				continue
			}
			p.lastCount[room] = at
			delete(p.counting, room)
		}
		p.mu.Unlock()
		if countIt {
			msgs = []*protocol.Message{{Type: protocol.MsgPresence, Room: room, Event: protocol.PresenceCount, Count: count, TS: now}}
		} else {
			for _, e := range evs {
				msgs = append(msgs, &protocol.Message{Type: protocol.MsgPresence, Room: room, From: e.m.Name, Anon: e.m.Anon, Event: e.event, TS: now})
			}
		}
		for _, m := range msgs {
			payload, err := m.Encode()
			if err != nil {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, presenceTimeout)
			err = p.hub.Publish(pctx, room, 0, payload)
			cancel()
			if err != nil {
				p.log.Warn().Err(err).Str("room", room).Msg("publish presence")
				break
			}
		}
	}
}

// deferLocked puts a batch whose count is not yet due back in front of
// the room's newer events and marks the room's next batch a count. A
// count names no one, so only the newest event is kept: enough for the
// room to be flushed again. p.mu is held.
func (p *roomPresence) deferLocked(room string, evs []presenceEvent) {
	all := append(evs, p.pending[room]...)
	if len(all) > 1 {
		all = all[len(all)-1:]
	}
	if all == nil {
		all = []presenceEvent{} // the room stays pending
	}
	p.pending[room] = all
	p.counting[room] = true
}

// forgetCountsLocked drops the count times that no longer hold a room
// back (older than maxCountSpacing), so that rooms that went quiet or
// away are not remembered for ever. p.mu is held.
func (p *roomPresence) forgetCountsLocked(now time.Time) {
	for room, last := range p.lastCount {
		if now.Sub(last) >= max(maxCountSpacing, p.interval) && !p.counting[room] {
			delete(p.lastCount, room)
		}
	}
}
