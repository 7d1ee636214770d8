package server

// Group commit of room sends (docs/protocol.md §8.4: a send is
// acknowledged only once it is committed).
//
// Storing one message costs a commit, and on SQLite with synchronous=FULL
// a commit is an fsync: storing each send on its own, under its room's
// lock, on the connection's reader, bounded one connection, and one room
// on one node, to about one send per commit. Instead, every reader hands
// its sends to the node's appender, which stores all the sends pending at
// that moment (up to maxAppendBatch) with one AppendMessages call (one
// transaction, one commit), then publishes the new ones in commit order
// and hands each result back to its connection. While a batch commits,
// the next one gathers, so the more senders, the larger the batches.
//
// Order: the appender is one goroutine that publishes batch after batch
// in the order the store numbered them, so the node publishes a room's
// messages in seq order. A connection's sends are answered (ack or error)
// in the order they were read, by the connection's sendPipe, which also
// bounds how many may be in flight (maxSendsInFlight: then the reader
// waits, which stops it reading). Any other request first waits for the
// connection's sends in flight to be answered (waitSends), so that what
// it reads or answers comes after them, as when a send was answered
// before the next frame was read.
//
// Shutdown: each send in flight holds a count in the server's handlers
// group from when the reader hands it over to when it is published, so
// Shutdown waits for it as it waits for the readers (and the broker is
// closed only after it).

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

const (
	// maxAppendBatch is the most sends one AppendMessages call stores.
	maxAppendBatch = 256
	// maxSendsInFlight is the most sends of one connection that are read
	// but not yet answered.
	maxSendsInFlight = 64
	// appendTimeout bounds the store and the broker's work for one batch.
	appendTimeout = requestTimeout
)

// roomSend is one send on its way through the appender.
type roomSend struct {
	c   *peer
	log zerolog.Logger // the reader's, as it was when the send was read
	m   *protocol.Message
	sm  store.StoredMessage

	// Set by the appender before it closes done.
	ack *protocol.Message
	err error
	// done is closed when the send is answered: stored and published,
	// relayed, or refused.
	done chan struct{}
	// passed, for a fence (no message), is closed when the pipe reaches
	// it: every send before it is answered.
	passed chan struct{}
}

// appender stores the node's room sends in batches; its goroutine runs
// while there is work and ends when there is none.
type appender struct {
	srv     *Server
	mu      sync.Mutex
	pending []*roomSend
	running bool
}

// submit queues rs for the next batch. The caller holds a count in
// srv.handlers for it, which the appender releases once rs is done.
func (a *appender) submit(rs *roomSend) {
	a.mu.Lock()
	a.pending = append(a.pending, rs)
	start := !a.running
	a.running = true
	a.mu.Unlock()
	if start {
		go a.run()
	}
}

// run stores and publishes batches until none is pending.
func (a *appender) run() {
	var batch []*roomSend
	for {
		a.mu.Lock()
		if len(a.pending) == 0 {
			a.running = false
			a.pending = nil // let a burst's backing array go
			a.mu.Unlock()
			return
		}
		n := min(len(a.pending), maxAppendBatch)
		batch = append(batch[:0], a.pending[:n]...)
		clear(a.pending[:n])
		a.pending = a.pending[n:]
		a.mu.Unlock()
		a.commit(batch)
		clear(batch)
	}
}

// commit stores batch with one AppendMessages call, then, in batch
// order, publishes what it stored (or relays a send to a room without a
// stream) and answers each send. One goroutine publishing in batch order,
// batch after batch, keeps both orders docs/protocol.md promises: a
// room's messages in seq order, and one sender's messages, whatever
// their rooms, in the order sent.
func (a *appender) commit(batch []*roomSend) {
	ctx, cancel := context.WithTimeout(context.Background(), appendTimeout)
	defer cancel()
	ms := make([]store.StoredMessage, len(batch))
	for i, rs := range batch {
		ms[i] = rs.sm
	}
	results, err := a.srv.store.AppendMessages(ctx, ms)
	for i, rs := range batch {
		if err != nil {
			rs.log.Error().Err(err).Str("room", rs.m.Room).Int("batch", len(batch)).Msg("store message")
			rs.err = protocol.CodeUnavailable
		} else {
			a.publish(ctx, rs, results[i])
		}
		a.finish(rs)
	}
}

// finish marks rs answered and releases its count in the handlers group.
func (a *appender) finish(rs *roomSend) {
	close(rs.done)
	a.srv.handlers.Done()
}

// publish carries out one send's result, as say did when it stored the
// send itself.
func (a *appender) publish(ctx context.Context, rs *roomSend, r store.AppendResult) {
	m := rs.m
	switch {
	case errors.Is(r.Err, store.ErrNotFound):
		// A room that only anonymous connections used has no stream:
		// its messages are relayed, not kept, and carry no seq.
		rs.ack, rs.err = a.publishUnstored(ctx, rs)
		return
	case errors.Is(r.Err, store.ErrConflict):
		rs.err = fmt.Errorf("message id %s was sent by someone else: %w", rs.sm.ID, protocol.CodeConflict)
		return
	case r.Err != nil:
		rs.log.Error().Err(r.Err).Str("room", m.Room).Msg("store message")
		rs.err = protocol.CodeUnavailable
		return
	}
	stored := r.Message
	if r.Created {
		live := roomMessage(m.Room, stored)
		live.Stream = m.Stream // the live msg links a streamed answer (§8.6); history does not keep it
		payload, err := live.Encode()
		if err == nil {
			err = a.srv.hub.Publish(ctx, m.Room, stored.Seq, payload)
		}
		if err != nil {
			// Committed all the same: members see the gap and fetch it
			// with history, and a retry gets this ack.
			rs.log.Error().Err(err).Str("room", m.Room).Int64("seq", stored.Seq).Msg("publish stored message")
		}
		a.srv.noticeMentions(m.Room, stored) // stream.go
	}
	rs.ack = &protocol.Message{Type: protocol.MsgAck, Ref: m.ID, TS: time.Now().UnixMilli(), Seq: stored.Seq, Epoch: r.Epoch}
}

// publishUnstored relays a message of a room without a stream, as the
// server did before it kept history.
func (a *appender) publishUnstored(ctx context.Context, rs *roomSend) (*protocol.Message, error) {
	m := rs.m
	out := roomMessage(m.Room, rs.sm)
	out.Seq, out.Stream = 0, m.Stream
	payload, err := out.Encode()
	if err == nil {
		err = a.srv.hub.Publish(ctx, m.Room, 0, payload)
	}
	if err != nil {
		rs.log.Error().Err(err).Str("room", m.Room).Msg("publish")
		return nil, protocol.CodeUnavailable
	}
	return &protocol.Message{Type: protocol.MsgAck, Ref: m.ID, TS: time.Now().UnixMilli()}, nil
}

// sendPipe answers one connection's sends in the order they were read.
// Its goroutine runs while answers are due and ends when none is.
type sendPipe struct {
	c *peer
	// slots holds a token per send read and not yet answered.
	slots chan struct{}

	mu      sync.Mutex
	queue   []*roomSend // in the order read, not yet answered
	running bool
}

// pipe returns the connection's sendPipe, made on its first send. Reader
// goroutine only.
func (c *peer) pipe() *sendPipe {
	if c.sends == nil {
		c.sends = &sendPipe{c: c, slots: make(chan struct{}, maxSendsInFlight)}
	}
	return c.sends
}

// enter takes a slot for rs, waiting while the connection has
// maxSendsInFlight sends in flight, and queues rs for its answer. It
// returns false, having queued nothing, if the connection ended first.
// Once it has returned false it always does: the sends the reader still
// finds after the writer ended are all refused, so that what is stored
// of a connection's sends is a prefix of them (a free slot must not win
// a random select against the ended writer and store a later send after
// an earlier one was dropped).
func (p *sendPipe) enter(rs *roomSend) bool {
	select {
	case <-p.c.writerEnd:
		return false
	default:
	}
	select {
	case p.slots <- struct{}{}:
	case <-p.c.writerEnd:
		return false
	}
	p.mu.Lock()
	p.queue = append(p.queue, rs)
	start := !p.running
	p.running = true
	p.mu.Unlock()
	if start {
		go p.run()
	}
	return true
}

// run answers queued sends in order as each is done.
func (p *sendPipe) run() {
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.running = false
			p.queue = nil
			p.mu.Unlock()
			return
		}
		rs := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.mu.Unlock()
		<-rs.done // the appender finishes every send it was given
		p.answer(rs)
		<-p.slots
	}
}

// answer writes rs's answer: an ack, an error, or, for a fence (no
// message), nothing. It returns at once once the writer has ended.
func (p *sendPipe) answer(rs *roomSend) {
	c := p.c
	var msg *protocol.Message
	switch {
	case rs.m == nil:
		close(rs.passed)
		return
	case rs.err != nil:
		msg = c.rejection(rs.log, rs.m.ID, rs.err)
	default:
		msg = rs.ack
	}
	c.replyWith(rs.log, msg)
}

// busy reports whether sends of the connection are waiting for their
// answers. Nil-safe; reader goroutine only.
func (p *sendPipe) busy() bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running
}

// queueError answers the request ref with err in its turn, after the
// connection's sends in flight, if it has any; false if it has none (the
// caller answers at once). Reader goroutine only.
func (c *peer) queueError(ref string, err error) bool {
	if !c.sends.busy() {
		return false
	}
	done := make(chan struct{})
	close(done)
	c.sends.enter(&roomSend{c: c, log: c.log, m: &protocol.Message{ID: ref}, err: err, done: done})
	return true // queued, or the connection is over
}

// waitSends waits until every send the connection read so far is
// answered (or the connection ended). Reader goroutine only.
func (c *peer) waitSends() {
	if !c.sends.busy() {
		return
	}
	done := make(chan struct{})
	close(done)
	fence := &roomSend{c: c, done: done, passed: make(chan struct{})}
	if !c.sends.enter(fence) {
		return
	}
	select {
	case <-fence.passed:
	case <-c.writerEnd:
	}
}
