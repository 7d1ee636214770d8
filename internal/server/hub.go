package server

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/broker"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// roomChannel is the broker channel carrying one room's traffic.
func roomChannel(room string) string { return "room:" + room }

// inbound is one message from the broker, already encoded as the
// application message every member receives.
type inbound struct {
	room    string
	payload []byte
}

// Hub routes room traffic on this node. One goroutine (Run) owns the room
// table; other goroutines talk to it through channels. It publishes nothing
// itself: senders publish through the broker (Publish), and the broker's
// deliveries come back to the hub, which fans them out to local members by
// non-blocking pushes into their bounded send queues. A member whose queue
// is full is disconnected with protocol.CodeSlowConsumer; nobody else waits.
type Hub struct {
	log     zerolog.Logger
	broker  broker.Broker
	ops     chan func()
	inbound chan inbound
	done    chan struct{}

	// Owned by the Run goroutine.
	rooms map[string]map[*peer]struct{}
}

// hubBrokerTimeout bounds the hub's own broker calls (subscribe and
// unsubscribe), so a dead Redis cannot stall the hub for long.
const hubBrokerTimeout = 2 * time.Second

// NewHub returns a hub that publishes through the broker newBroker builds
// with the hub's delivery handler.
func NewHub(log zerolog.Logger, newBroker func(broker.Handler) (broker.Broker, error)) (*Hub, error) {
	h := &Hub{
		log:     log,
		ops:     make(chan func(), 64),
		inbound: make(chan inbound, 1024),
		done:    make(chan struct{}),
		rooms:   make(map[string]map[*peer]struct{}),
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
	if !ok {
		return
	}
	select {
	case h.inbound <- inbound{room: room, payload: payload}:
	case <-h.done:
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
	for c := range h.rooms[m.room] {
		if c.dropped {
			continue
		}
		if !c.enqueue(m.payload) {
			c.dropped = true
			h.log.Warn().Str("conn", c.id).Str("room", m.room).Msg("send queue full: disconnecting slow consumer")
			c.fail(protocol.CodeSlowConsumer, "send queue full")
		}
	}
}

// Join adds c to room and returns the display names of the room's members
// on this node, sorted.
func (h *Hub) Join(ctx context.Context, c *peer, room string) ([]string, error) {
	var members []string
	var err error
	ok := h.do(func() {
		m := h.rooms[room]
		if m == nil {
			bctx, cancel := context.WithTimeout(ctx, hubBrokerTimeout)
			err = h.broker.Subscribe(bctx, roomChannel(room))
			cancel()
			if err != nil {
				return
			}
			m = make(map[*peer]struct{})
			h.rooms[room] = m
		}
		m[c] = struct{}{}
		for o := range m {
			members = append(members, o.displayName())
		}
	})
	if !ok {
		return nil, protocol.CodeGoingAway
	}
	sort.Strings(members)
	return members, err
}

// Leave removes c from room. It reports whether c was a member.
func (h *Hub) Leave(ctx context.Context, c *peer, room string) bool {
	var was bool
	h.do(func() { was = h.removeLocked(ctx, c, room) })
	return was
}

// IsMember reports whether c is in room.
func (h *Hub) IsMember(c *peer, room string) bool {
	var in bool
	h.do(func() { _, in = h.rooms[room][c] })
	return in
}

// LeaveAll removes c from every room and returns the rooms it was in.
func (h *Hub) LeaveAll(ctx context.Context, c *peer) []string {
	var rooms []string
	h.do(func() {
		for room, m := range h.rooms {
			if _, in := m[c]; in {
				rooms = append(rooms, room)
			}
		}
		for _, room := range rooms {
			h.removeLocked(ctx, c, room)
		}
	})
	sort.Strings(rooms)
	return rooms
}

// removeLocked runs on the hub goroutine.
func (h *Hub) removeLocked(ctx context.Context, c *peer, room string) bool {
	m := h.rooms[room]
	if _, in := m[c]; !in {
		return false
	}
	delete(m, c)
	if len(m) == 0 {
		delete(h.rooms, room)
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hubBrokerTimeout)
		if err := h.broker.Unsubscribe(bctx, roomChannel(room)); err != nil {
			h.log.Warn().Err(err).Str("room", room).Msg("broker unsubscribe failed")
		}
		cancel()
	}
	return true
}

// Publish sends an encoded application message to every member of room on
// every node. It runs on the caller's goroutine.
func (h *Hub) Publish(ctx context.Context, room string, payload []byte) error {
	return h.broker.Publish(ctx, roomChannel(room), payload)
}

// Close stops the broker.
func (h *Hub) Close() error { return h.broker.Close() }
