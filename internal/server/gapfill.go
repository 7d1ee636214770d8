package server

// Gap filling (docs/protocol.md §8.7): the broker is a fast path that may
// lose messages (Redis Pub/Sub keeps nothing for a node that is
// disconnected, or a publish that failed), but every stored room message
// has a sequence number in its room's stream and is committed before it
// is published. So each node remembers, per room it receives, the last
// sequence number it passed to its hub; a message that skips numbers makes
// it read the skipped ones from the store and pass them first, and a
// message it has passed already is dropped. The hub therefore sees each
// room's stored messages once each, in ascending order, whichever node
// published them and whatever the broker lost.
//
// A loss followed by no further message is found by a sweep
// (Hub.GapCheck) that compares each room's head in the store with the
// last number passed on, sooner after the broker reports a reconnect.

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/store"
)

const (
	// maxGapFill bounds how many messages one fill reads from the store;
	// members of a room that missed more page the rest with history
	// (the later messages still arrive, and their seq shows the hole).
	maxGapFill = 5000
	// gapFillTimeout bounds the store reads of one fill.
	gapFillTimeout = 5 * time.Second
)

// gapStore is what the gap filler reads from the store.
type gapStore interface {
	StreamHead(ctx context.Context, stream string) (store.StreamPosition, error)
	History(ctx context.Context, stream string, q store.HistoryQuery) ([]store.StoredMessage, store.StreamPosition, error)
}

// gapFiller keeps each subscribed room's last passed sequence number and
// fills holes from the store. Its methods are safe for concurrent use.
type gapFiller struct {
	store gapStore
	log   zerolog.Logger
	// filled, if not nil, is called with the number of messages each
	// fill recovered (Deps.OnGapFilled).
	filled func(messages int)

	mu    sync.Mutex
	rooms map[string]*roomSeq
}

// roomSeq is the state of one room. Until ready (the baseline head read
// after the broker subscribed), arriving messages wait in pending.
type roomSeq struct {
	mu      sync.Mutex
	ready   bool
	known   bool  // last is a sequence number in the room's stream
	last    int64 // the last sequence number passed on
	pending []inbound
}

func newGapFiller(st gapStore, log zerolog.Logger, filled func(int)) *gapFiller {
	return &gapFiller{store: st, log: log, filled: filled, rooms: make(map[string]*roomSeq)}
}

// start begins tracking room, before the broker subscribes to it:
// messages that arrive meanwhile wait for baseline.
func (g *gapFiller) start(room string) *roomSeq {
	rs := &roomSeq{}
	g.mu.Lock()
	g.rooms[room] = rs
	g.mu.Unlock()
	return rs
}

// forget stops tracking room (its subscription ended or failed), unless
// a newer start replaced rs.
func (g *gapFiller) forget(room string, rs *roomSeq) {
	g.mu.Lock()
	if rs == nil || g.rooms[room] == rs {
		delete(g.rooms, room)
	}
	g.mu.Unlock()
}

// baseline reads the room's head once the broker is subscribed, then
// passes on what arrived meanwhile. Messages up to the head are in the
// store already, where a joiner's catch-up reads them.
func (g *gapFiller) baseline(ctx context.Context, room string, rs *roomSeq, pass func(inbound)) {
	ctx, cancel := context.WithTimeout(ctx, gapFillTimeout)
	defer cancel()
	pos, err := g.store.StreamHead(ctx, store.RoomStream(room))
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if err != nil {
		g.log.Warn().Err(err).Str("room", room).Msg("stream head for gap detection; starting from the first message received")
	} else {
		rs.known, rs.last = true, pos.Seq
	}
	rs.ready = true
	pending := rs.pending
	rs.pending = nil
	for _, m := range pending {
		g.admitLocked(ctx, rs, m, pass)
	}
}

// admit passes m on in order: at once if it is the next of its room (or
// not stored), after the messages it skipped if it skips some, not at all
// if it was passed already.
func (g *gapFiller) admit(m inbound, pass func(inbound)) {
	if m.seq == 0 {
		pass(m)
		return
	}
	g.mu.Lock()
	rs := g.rooms[m.room]
	g.mu.Unlock()
	if rs == nil { // not (or no longer) subscribed: the hub drops it
		pass(m)
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if !rs.ready {
		rs.pending = append(rs.pending, m)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), gapFillTimeout)
	defer cancel()
	g.admitLocked(ctx, rs, m, pass)
}

// admitLocked is admit with rs locked and ready.
func (g *gapFiller) admitLocked(ctx context.Context, rs *roomSeq, m inbound, pass func(inbound)) {
	if rs.known && m.seq <= rs.last {
		return // passed on already: a fill read it first, or the broker repeated it
	}
	if rs.known && m.seq > rs.last+1 {
		g.fillLocked(ctx, m.room, rs, m.seq-1, pass)
	}
	rs.known, rs.last = true, max(rs.last, m.seq)
	pass(m)
}

// fillLocked reads the room's messages after rs.last up to upTo from the
// store and passes them on. On a store failure it leaves the rest of the
// hole (members page it with history).
func (g *gapFiller) fillLocked(ctx context.Context, room string, rs *roomSeq, upTo int64, pass func(inbound)) {
	n := 0
	defer func() {
		if n > 0 && g.filled != nil {
			g.filled(n)
		}
	}()
	for rs.last < upTo && n < maxGapFill {
		after := rs.last
		page, _, err := g.store.History(ctx, store.RoomStream(room), store.HistoryQuery{After: &after, Limit: store.MaxHistoryLimit})
		if err != nil {
			g.log.Error().Err(err).Str("room", room).Int64("after", after).Int64("upto", upTo).Msg("gap not filled: store unavailable")
			return
		}
		if len(page) == 0 {
			g.log.Error().Str("room", room).Int64("after", after).Int64("upto", upTo).Msg("gap not filled: the store has no such messages")
			return
		}
		for _, sm := range page {
			if sm.Seq > upTo {
				return
			}
			payload, err := roomMessage(room, sm).Encode()
			if err != nil {
				g.log.Error().Err(err).Str("room", room).Int64("seq", sm.Seq).Msg("gap fill: encode")
				rs.last = sm.Seq
				continue
			}
			pass(inbound{room: room, seq: sm.Seq, payload: payload})
			rs.last = sm.Seq
			n++
		}
	}
	if rs.last < upTo {
		g.log.Warn().Str("room", room).Int64("last", rs.last).Int64("upto", upTo).Msg("gap larger than one fill: members page the rest with history")
	}
}

// sweep compares every tracked room's head with the last number passed
// on and fills what is missing: the messages the broker lost with none
// after them.
func (g *gapFiller) sweep(ctx context.Context, pass func(inbound)) {
	g.mu.Lock()
	rooms := make(map[string]*roomSeq, len(g.rooms))
	for room, rs := range g.rooms {
		rooms[room] = rs
	}
	g.mu.Unlock()
	for room, rs := range rooms {
		if ctx.Err() != nil {
			return
		}
		hctx, cancel := context.WithTimeout(ctx, gapFillTimeout)
		pos, err := g.store.StreamHead(hctx, store.RoomStream(room))
		if err != nil {
			cancel()
			g.log.Warn().Err(err).Str("room", room).Msg("gap sweep: stream head")
			continue
		}
		rs.mu.Lock()
		if rs.ready && rs.known && pos.Seq > rs.last {
			g.fillLocked(hctx, room, rs, pos.Seq, pass)
		}
		rs.mu.Unlock()
		cancel()
	}
}
