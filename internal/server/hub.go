package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/broker"
	"github.com/secure-messenger/messenger/internal/metrics"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// roomChannel is the broker channel carrying one room's traffic.
func roomChannel(room string) string { return "room:" + room }

// inbound is one message from the broker, already encoded as the
// application message every member receives, with its sequence number in
// the room's stream (0 for what is not stored: presence, key changes,
// messages of rooms that have no stream).
type inbound struct {
	room    string
	seq     int64
	payload []byte
}

// brokerFrame is what travels through the broker: the message's sequence
// number (8 bytes, big-endian), then the encoded message. The hub reads
// the number without parsing the JSON.
func brokerFrame(seq int64, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint64(b, uint64(seq))
	return append(b, payload...)
}

// member is one local connection in a room. While catching is set the
// connection's join is still sending it the room's stored messages
// (history.go): live deliveries wait in buf, at most maxCatchUpBuffer of
// them (overflow records that more came and were dropped), until
// FinishCatchUp flushes them. Hub goroutine only.
type member struct {
	catching bool
	buf      []inbound
	overflow bool
}

// maxCatchUpBuffer bounds the live messages one catching-up member holds.
const maxCatchUpBuffer = 1024

// Hub routes room traffic on this node. One goroutine (Run) owns the room
// table; other goroutines talk to it through channels. It publishes nothing
// itself: senders publish through the broker (Publish), and the broker's
// deliveries come back to the hub, which fans them out to local members by
// non-blocking pushes into their bounded send queues. A member whose queue
// is full is disconnected with protocol.CodeSlowConsumer; nobody else waits.
//
// The hub never waits on the broker either: subscribing to a room's
// channel when its first local member joins, and unsubscribing when its
// last one leaves, are queued in decision order and carried out by a
// second goroutine; a joiner waits for its room's subscription, the hub
// does not.
type Hub struct {
	log     zerolog.Logger
	broker  broker.Broker
	ops     chan func()
	inbound chan inbound
	done    chan struct{}

	// MaxRooms is how many rooms one connection may be in, and MaxMembers
	// how many local connections one room may have; zero or less means no
	// limit. Set them before Run.
	MaxRooms, MaxMembers int

	// GapCheck is how often the hub compares the stream heads of its
	// rooms with what the broker delivered, to fill losses that no later
	// message revealed (gapfill.go); zero means 30 seconds. A broker that
	// reports reconnects (broker.Reconnecter) also triggers a check
	// within a second of each. Set it before Run.
	GapCheck time.Duration

	// gaps orders each room's stored messages and fills the broker's
	// losses from the store; nil passes messages on as they come.
	gaps *gapFiller

	// Owned by the Run goroutine.
	rooms map[string]*roomState

	subMu    sync.Mutex
	subQueue []subOp
	subWake  chan struct{}
}

// roomState is one room with local members.
type roomState struct {
	members map[*peer]*member
	ready   chan struct{} // closed once the broker subscription is in place (or failed)
	err     error         // the subscription's failure; set before ready closes
}

// subOp is a queued change of the broker subscriptions.
type subOp struct {
	room      string
	subscribe bool
	state     *roomState // for subscribe: whose ready to close
}

// hubBrokerTimeout bounds one subscribe or unsubscribe, so a dead Redis
// fails a join instead of hanging it.
const hubBrokerTimeout = 5 * time.Second

// NewHub returns a hub that publishes through the broker newBroker builds
// with the hub's delivery handler.
func NewHub(log zerolog.Logger, newBroker func(broker.Handler) (broker.Broker, error)) (*Hub, error) {
	h := &Hub{
		log:     log,
		ops:     make(chan func(), 64),
		inbound: make(chan inbound, 1024),
		done:    make(chan struct{}),
		rooms:   make(map[string]*roomState),
		subWake: make(chan struct{}, 1),
	}
	b, err := newBroker(h.deliver)
	if err != nil {
		return nil, fmt.Errorf("server: broker: %w", err)
	}
	h.broker = b
	return h, nil
}

// Run owns the room table until ctx ends. Call it once.
func (h *Hub) Run(ctx context.Context) {
	defer close(h.done)
	go h.runSubscriptions(ctx)
	if h.gaps != nil {
		go h.runGapChecks(ctx)
	}
	for {
		select {
		case op := <-h.ops:
			op()
		case m := <-h.inbound:
			h.fanout(m)
		case <-ctx.Done():
			return
		}
	}
}

// deliver is the broker's handler: it hands a message to the hub
// goroutine. It blocks while the hub is busy, which pushes back on the
// publisher, never on other members.
func (h *Hub) deliver(channel string, payload []byte) {
	room, ok := strings.CutPrefix(channel, "room:")
	if !ok || len(payload) < 8 {
		return
	}
	m := inbound{room: room, seq: int64(binary.BigEndian.Uint64(payload)), payload: payload[8:]}
	if h.gaps == nil {
		h.pass(m)
		return
	}
	h.gaps.admit(m, h.pass)
}

// pass hands m to the hub goroutine, waiting while the hub is busy.
func (h *Hub) pass(m inbound) {
	select {
	case h.inbound <- m:
	case <-h.done:
	}
}

// runGapChecks sweeps for lost messages every GapCheck, and soon after
// the broker reports that it reconnected.
func (h *Hub) runGapChecks(ctx context.Context) {
	every := h.GapCheck
	if every <= 0 {
		every = 30 * time.Second
	}
	rc, _ := h.broker.(broker.Reconnecter)
	var seen uint64
	if rc != nil {
		seen = rc.Reconnects()
	}
	tick := time.NewTicker(min(every, time.Second))
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		due := time.Since(last) >= every
		if rc != nil {
			if n := rc.Reconnects(); n != seen {
				seen, due = n, true
			}
		}
		if due {
			h.gaps.sweep(ctx, h.pass)
			last = time.Now()
		}
	}
}

// do runs f on the hub goroutine and waits for it. It returns false if the
// hub has stopped.
func (h *Hub) do(f func()) bool {
	finished := make(chan struct{})
	select {
	case h.ops <- func() { f(); close(finished) }:
	case <-h.done:
		return false
	}
	select {
	case <-finished:
		return true
	case <-h.done:
		return false
	}
}

func (h *Hub) fanout(m inbound) {
	r := h.rooms[m.room]
	if r == nil {
		return
	}
	for c, mb := range r.members {
		if mb.catching {
			if len(mb.buf) < maxCatchUpBuffer {
				mb.buf = append(mb.buf, m)
			} else {
				mb.overflow = true
				c.metrics().QueueDrop(metrics.DropCatchUpOverflow)
			}
			continue
		}
		h.push(c, m)
	}
}

// push queues m for c, disconnecting c if its queue is full. Hub
// goroutine only.
func (h *Hub) push(c *peer, m inbound) {
	if c.dropped {
		return
	}
	if !c.enqueue(m.payload) {
		c.metrics().QueueDrop(metrics.DropQueueFull)
		c.dropped = true
		h.log.Warn().Str("conn", c.id).Str("room", m.room).Msg("send queue full: disconnecting slow consumer")
		c.fail(protocol.CodeSlowConsumer, "send queue full")
	}
}

// FinishCatchUp ends c's catch-up in room, whose stored messages up to
// last it has been sent. Unless live messages overflowed the buffer, it
// queues the buffered ones that catch-up did not already send (seq 0, or
// above last), in the order they came, switches c to live delivery and
// returns true. After an overflow it empties the buffer, leaves c catching
// up and returns false: the caller sends the stored messages after last
// again and calls it once more. A c that is no longer in room gives true.
func (h *Hub) FinishCatchUp(c *peer, room string, last int64) bool {
	done := true
	h.do(func() {
		r := h.rooms[room]
		if r == nil || r.members[c] == nil {
			return
		}
		mb := r.members[c]
		if mb.overflow {
			mb.buf, mb.overflow, done = nil, false, false
			return
		}
		for _, m := range mb.buf {
			if m.seq == 0 || m.seq > last {
				h.push(c, m)
			}
		}
		mb.buf, mb.catching = nil, false
	})
	return done
}

// queueSub records a subscription change; runSubscriptions carries it out.
// Called on the hub goroutine, so the queue holds decisions in order.
func (h *Hub) queueSub(op subOp) {
	h.subMu.Lock()
	h.subQueue = append(h.subQueue, op)
	h.subMu.Unlock()
	select {
	case h.subWake <- struct{}{}:
	default:
	}
}

// runSubscriptions applies queued subscription changes, one at a time and
// in order, so the broker ends in the state the hub last decided.
func (h *Hub) runSubscriptions(ctx context.Context) {
	for {
		h.subMu.Lock()
		queue := h.subQueue
		h.subQueue = nil
		h.subMu.Unlock()
		for _, op := range queue {
			bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hubBrokerTimeout)
			if op.subscribe {
				var rs *roomSeq
				if h.gaps != nil {
					rs = h.gaps.start(op.room)
				}
				err := h.broker.Subscribe(bctx, roomChannel(op.room))
				if err != nil {
					h.log.Warn().Err(err).Str("room", op.room).Msg("broker subscribe failed")
					op.state.err = err
					if h.gaps != nil {
						h.gaps.forget(op.room, rs)
					}
				} else if h.gaps != nil {
					h.gaps.baseline(bctx, op.room, rs, h.pass)
				}
				close(op.state.ready)
			} else {
				if err := h.broker.Unsubscribe(bctx, roomChannel(op.room)); err != nil {
					h.log.Warn().Err(err).Str("room", op.room).Msg("broker unsubscribe failed")
				}
				if h.gaps != nil {
					h.gaps.forget(op.room, nil)
				}
			}
			cancel()
		}
		select {
		case <-h.subWake:
		case <-ctx.Done():
			return
		}
	}
}

// maxMembersListed bounds the member list a join answer carries, so that
// the answer of a large room stays far below the record size limit.
const maxMembersListed = 256

// Join adds c to room and returns up to maxMembersListed display names of
// the room's members on this node, sorted, and whether c was already a
// member. It returns once the node receives the room's traffic. With
// catchUp, a c that was not yet a member starts catching up: its live
// deliveries wait until FinishCatchUp.
func (h *Hub) Join(ctx context.Context, c *peer, room string, catchUp bool) (members []string, already bool, err error) {
	var r *roomState
	var refused error
	ok := h.do(func() {
		r = h.rooms[room]
		if r != nil {
			_, already = r.members[c]
		}
		if !already {
			if refused = h.admitLocked(c, r); refused != nil {
				return
			}
		}
		if r == nil {
			r = &roomState{members: make(map[*peer]*member), ready: make(chan struct{})}
			h.rooms[room] = r
			h.queueSub(subOp{room: room, subscribe: true, state: r})
		}
		if !already {
			r.members[c] = &member{catching: catchUp}
			c.rooms++
		}
		for o := range r.members {
			members = append(members, o.displayName())
		}
	})
	if !ok {
		return nil, false, protocol.CodeGoingAway
	}
	if refused != nil {
		return nil, false, refused
	}
	select {
	case <-r.ready:
	case <-ctx.Done():
		if !already {
			h.Leave(ctx, c, room)
		}
		return nil, already, fmt.Errorf("server: join %s: %w", room, ctx.Err())
	case <-h.done:
		return nil, already, protocol.CodeGoingAway
	}
	if r.err != nil {
		h.Leave(ctx, c, room)
		return nil, already, fmt.Errorf("server: join %s: %w", room, r.err)
	}
	sort.Strings(members)
	if len(members) > maxMembersListed {
		members = members[:maxMembersListed]
	}
	return members, already, nil
}

// admitLocked checks the limits on rooms per connection and members per
// room (r is nil for a room without local members). Hub goroutine only.
func (h *Hub) admitLocked(c *peer, r *roomState) error {
	if limited(h.MaxRooms) && c.rooms >= h.MaxRooms {
		return fmt.Errorf("in %d rooms already, the limit per connection: %w", c.rooms, protocol.CodeLimitReached)
	}
	if r != nil && limited(h.MaxMembers) && len(r.members) >= h.MaxMembers {
		return fmt.Errorf("the room is full (%d members): %w", len(r.members), protocol.CodeLimitReached)
	}
	return nil
}

// Leave removes c from room. It reports whether c was a member.
func (h *Hub) Leave(_ context.Context, c *peer, room string) bool {
	var was bool
	h.do(func() { was = h.removeLocked(c, room) })
	return was
}

// IsMember reports whether c is in room.
func (h *Hub) IsMember(c *peer, room string) bool {
	var in bool
	h.do(func() {
		if r := h.rooms[room]; r != nil {
			_, in = r.members[c]
		}
	})
	return in
}

// LeaveAll removes c from every room and returns the rooms it was in.
func (h *Hub) LeaveAll(_ context.Context, c *peer) []string {
	var rooms []string
	h.do(func() {
		for room, r := range h.rooms {
			if _, in := r.members[c]; in {
				rooms = append(rooms, room)
			}
		}
		for _, room := range rooms {
			h.removeLocked(c, room)
		}
	})
	sort.Strings(rooms)
	return rooms
}

// removeLocked runs on the hub goroutine.
func (h *Hub) removeLocked(c *peer, room string) bool {
	r := h.rooms[room]
	if r == nil {
		return false
	}
	if _, in := r.members[c]; !in {
		return false
	}
	delete(r.members, c)
	c.rooms--
	if len(r.members) == 0 {
		delete(h.rooms, room)
		h.queueSub(subOp{room: room})
	}
	return true
}

// Publish sends an encoded application message, whose sequence number in
// the room's stream is seq (0: not stored), to every member of room on
// every node. It runs on the caller's goroutine.
func (h *Hub) Publish(ctx context.Context, room string, seq int64, payload []byte) error {
	return h.broker.Publish(ctx, roomChannel(room), brokerFrame(seq, payload))
}

// Close stops the broker.
func (h *Hub) Close() error { return h.broker.Close() }
