package server

import (
	"context"

	"errors"
	"fmt"
	"golang.org/x/time/rate"
	"sync"
	"time"

	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/internal/metrics"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Limits bound what one client, one address, one user or one room can take
// of a node. Counts (connections, handshakes in flight, rooms, members) are
// per node; rates are token buckets in the deployment's RateLimiter (Redis
// when configured, so they hold across nodes). Every zero value means the
// documented default; a negative value (or a zero Rate.Limit set through
// the flag "0") turns that limit off.
type Limits struct {
	// MaxConnections is the number of established connections this node
	// holds. Zero means 20,000.
	MaxConnections int
	// MaxConnectionsPerAddr is the number of connections one client
	// address (an IPv6 /64) may hold on this node. Zero means 64.
	MaxConnectionsPerAddr int
	// MaxHandshakes is the number of handshakes in progress on this node at
	// once. Zero means 512.
	MaxHandshakes int
	// MaxHandshakesPerAddr is the number of handshakes one address may have
	// in progress at once. Zero means 8.
	MaxHandshakesPerAddr int
	// HandshakeRate is how fast one address may start handshakes, full or
	// resumed. Zero means 10/s, burst 30.
	HandshakeRate ephemeral.Rate
	// RequestRate is how fast one connection may send requests. Zero means
	// 50/s, burst 100.
	RequestRate ephemeral.Rate
	// UserRequestRate is how fast one user may send requests over all of
	// its connections. Zero means 100/s, burst 200.
	UserRequestRate ephemeral.Rate
	// SendRate is how fast one user (or, for anonymous connections, one
	// address) may send messages. Zero means 10/s, burst 30.
	SendRate ephemeral.Rate
	// RoomSendRate is how fast messages may be sent to one room, by
	// everyone together, so that no member can flood the others out as slow
	// consumers. Zero means 100/s, burst 200.
	RoomSendRate ephemeral.Rate
	// StreamRate is how fast one user (or, for anonymous connections, one
	// address) may send stream and conv_stream events (docs/protocol.md
	// §8.6). Zero means 25/s, burst 50.
	StreamRate ephemeral.Rate
	// RoomsPerConnection is how many rooms one connection may be in. Zero
	// means 100.
	RoomsPerConnection int
	// MembersPerRoom is how many connections may be in one room on this
	// node. Zero means 10,000.
	MembersPerRoom int
}

// DefaultLimits returns the limits a zero Limits stands for.
func DefaultLimits() Limits {
	return Limits{
		MaxConnections:        20_000,
		MaxConnectionsPerAddr: 64,
		MaxHandshakes:         512,
		MaxHandshakesPerAddr:  8,
		HandshakeRate:         ephemeral.PerSecond(10, 30),
		RequestRate:           ephemeral.PerSecond(50, 100),
		UserRequestRate:       ephemeral.PerSecond(100, 200),
		SendRate:              ephemeral.PerSecond(10, 30),
		RoomSendRate:          ephemeral.PerSecond(100, 200),
		StreamRate:            ephemeral.PerSecond(25, 50),
		RoomsPerConnection:    100,
		MembersPerRoom:        10_000,
	}
}

func (l *Limits) setDefaults() {
	d := DefaultLimits()
	count := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	rate := func(v *ephemeral.Rate, def ephemeral.Rate) {
		if *v == (ephemeral.Rate{}) {
			*v = def
		}
	}
	count(&l.MaxConnections, d.MaxConnections)
	count(&l.MaxConnectionsPerAddr, d.MaxConnectionsPerAddr)
	count(&l.MaxHandshakes, d.MaxHandshakes)
	count(&l.MaxHandshakesPerAddr, d.MaxHandshakesPerAddr)
	count(&l.RoomsPerConnection, d.RoomsPerConnection)
	count(&l.MembersPerRoom, d.MembersPerRoom)
	rate(&l.HandshakeRate, d.HandshakeRate)
	rate(&l.RequestRate, d.RequestRate)
	rate(&l.UserRequestRate, d.UserRequestRate)
	rate(&l.SendRate, d.SendRate)
	rate(&l.RoomSendRate, d.RoomSendRate)
	rate(&l.StreamRate, d.StreamRate)
}

// limited reports whether a count limit is on (negative turns it off).
func limited(limit int) bool { return limit > 0 }

// counter counts things in use per address and in all, up to limits.
type counter struct {
	mu      sync.Mutex
	total   int
	perAddr map[string]int
}

// acquire takes one unit for addr, or returns an error wrapping
// CodeLimitReached naming which limit was reached.
func (c *counter) acquire(addr string, max, maxPerAddr int, what string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if limited(max) && c.total >= max {
		return fmt.Errorf("too many %s on this server (limit %d): %w", what, max, protocol.CodeLimitReached)
	}
	if limited(maxPerAddr) && c.perAddr[addr] >= maxPerAddr {
		return fmt.Errorf("too many %s from your address (limit %d): %w", what, maxPerAddr, protocol.CodeLimitReached)
	}
	if c.perAddr == nil {
		c.perAddr = make(map[string]int)
	}
	c.total++
	c.perAddr[addr]++
	return nil
}

// release gives back one unit taken by acquire.
func (c *counter) release(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if c.perAddr[addr]--; c.perAddr[addr] <= 0 {
		delete(c.perAddr, addr)
	}
}

// allow takes a token from the deployment-wide bucket key. Over the rate
// it returns an error wrapping CodeRateLimited that says when to retry; a
// rate limiter that cannot answer refuses, with CodeUnavailable.
func (s *Server) allow(ctx context.Context, key string, r ephemeral.Rate, what string) error {
	ok, retry, err := s.rates.Allow(ctx, key, r)
	if err != nil {
		if errors.Is(err, ephemeral.ErrUnavailable) {
			return &requestError{protocol.CodeUnavailable, "unavailable", err}
		}
		return &requestError{protocol.CodeInternal, "internal", err}
	}
	if !ok {
		s.metrics.RateLimited(metrics.RateKind(key))
		return fmt.Errorf("%s: over %s, retry in %s: %w", what, r, retry.Round(time.Millisecond), protocol.CodeRateLimited)
	}
	return nil
}

// admitHandshake decides whether a client at addr may run a handshake now:
// within its address's handshake rate and the handshakes in flight. On
// success the caller must call the returned release when the handshake
// ends.
func (s *Server) admitHandshake(ctx context.Context, addr string) (release func(), err error) {
	if err := s.allow(ctx, "hs:addr:"+addr, s.cfg.Limits.HandshakeRate, "handshakes from your address"); err != nil {
		return nil, err
	}
	if err := s.handshakes.acquire(addr, s.cfg.Limits.MaxHandshakes, s.cfg.Limits.MaxHandshakesPerAddr, "handshakes in progress"); err != nil {
		return nil, err
	}
	return func() { s.handshakes.release(addr) }, nil
}

// recentIDs remembers the request ids of one connection, so that an id is
// carried out at most once on it. Records cannot be replayed (sequence
// numbers), so only the client itself can repeat an id; the set is
// bounded (the oldest are forgotten first) and costs no shared state.
type recentIDs struct {
	seen  map[string]time.Time // id → when it may be forgotten
	order []string             // ring of ids, oldest at head
	head  int
}

// maxRecentIDs bounds the ids one connection remembers.
const maxRecentIDs = 1024

// add records id until ttl from now; false means it is already there.
func (r *recentIDs) add(id string, now time.Time, ttl time.Duration) bool {
	if r.seen == nil {
		r.seen = make(map[string]time.Time)
	}
	if exp, ok := r.seen[id]; ok {
		if now.Before(exp) {
			return false
		}
		r.seen[id] = now.Add(ttl) // already in the ring
		return true
	}
	if len(r.order) < maxRecentIDs {
		r.order = append(r.order, id)
	} else {
		delete(r.seen, r.order[r.head])
		r.order[r.head] = id
		r.head = (r.head + 1) % maxRecentIDs
	}
	r.seen[id] = now.Add(ttl)
	return true
}

// newRequestLimiter returns the token bucket of one connection's requests,
// or nil when r is unlimited. It is local: a connection lives on one node.
func newRequestLimiter(r ephemeral.Rate) *rate.Limiter {
	if r.Unlimited() {
		return nil
	}
	return rate.NewLimiter(rate.Every(r.Interval()), r.BucketSize())
}
