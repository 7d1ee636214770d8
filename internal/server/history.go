package server

// Room history and durable delivery (docs/protocol.md §8.4): a send is
// committed to the room's stream before it is published, a join catches
// up on what the member missed before live traffic flows, and history,
// read and rooms requests page the stream and keep the account's read
// positions.

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

const (
	// maxCatchUp is the most stored messages a join sends; a member that
	// missed more is told so (joined's "more") and pages with history.
	maxCatchUp = 500
	// catchUpRetries bounds how often a join re-reads the stream because
	// live messages overflowed its buffer while it caught up.
	catchUpRetries = 3
)

// roomLocks serialize each conversation's append and delivery on this
// node (conversations.go), so that the node delivers a conversation's
// records in the order of their sequence numbers. Room sends need none:
// the appender (appender.go) publishes in commit order.
type roomLocks [64]sync.Mutex

func (l *roomLocks) of(room string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(room))
	return &l[h.Sum32()%uint32(len(l))]
}

// roomMessage is the msg every member receives for a stored message.
func roomMessage(room string, sm store.StoredMessage) *protocol.Message {
	return &protocol.Message{
		Type: protocol.MsgMessage, ID: sm.ID.String(), TS: sm.CreatedAt.UnixMilli(), Room: room,
		From: sm.SenderName, Anon: sm.Sender == uuid.Nil, Body: string(sm.Body), Seq: sm.Seq,
	}
}

// say hands a send to the node's appender (appender.go), which stores it
// in the room's stream, publishes it if it is new, and acknowledges it
// with its sequence number, in the order of the connection's sends. It
// returns once the send is handed over, so that the reader goes on;
// it waits while the connection has maxSendsInFlight sends in flight.
// Membership and rate limits are checked by the caller.
func (c *peer) say(ctx context.Context, m *protocol.Message) {
	mid := m.Mid
	if mid == "" {
		mid = m.ID
	}
	sender := uuid.Nil
	if c.user != nil {
		sender = c.user.ID
	}
	sm := store.StoredMessage{
		Stream: store.RoomStream(m.Room), ID: uuid.MustParse(mid), Sender: sender,
		SenderName: c.displayName(), Kind: store.KindMessage, Body: []byte(m.Body),
		CreatedAt: time.Now(),
	}
	// Check the size with the largest sequence number before anything is
	// stored: a body within the limit whose JSON escapes make the
	// delivered message larger than a record can carry is refused.
	probe := roomMessage(m.Room, sm)
	probe.Seq, probe.Stream = 1<<63-1, m.Stream
	if _, err := probe.Encode(); err != nil {
		c.replyError(m.ID, fmt.Errorf("body too large once encoded (%d bytes at most in a record): %w", protocol.MaxPlaintext, protocol.CodeTooLarge))
		return
	}
	rs := &roomSend{c: c, log: c.log, m: m, sm: sm, done: make(chan struct{})}
	if !c.pipe().enter(rs) {
		return // the connection ended: nothing was stored, the client sends it again
	}
	// Counted until published, so that Shutdown waits for it (the
	// reader's own count keeps the group above zero here).
	c.srv.handlers.Add(1)
	c.srv.appender.submit(rs)
}

// join adds the connection to a room. A logged-in connection, and any
// that gives "after", first receives the stored messages it missed: the
// hub holds its live deliveries back meanwhile and then passes on only
// those the catch-up did not send, so nothing is missed or sent twice.
func (c *peer) join(ctx context.Context, m *protocol.Message) {
	if m.Name != "" && c.user == nil { // a logged-in user speaks as the account
		c.setName(m.Name)
	}
	catchUp := c.user != nil || m.After != nil
	members, already, err := c.srv.hub.Join(ctx, c, m.Room, catchUp)
	if errors.Is(err, protocol.CodeLimitReached) {
		c.replyError(m.ID, err)
		return
	}
	if err != nil {
		c.log.Error().Err(err).Str("room", m.Room).Msg("join")
		c.replyError(m.ID, fmt.Errorf("%w: %w", protocol.CodeUnavailable, err))
		return
	}
	if err := c.srv.presence.add(ctx, m.Room, c); err != nil {
		c.log.Error().Err(err).Str("room", m.Room).Msg("join: presence")
		if !already {
			c.srv.hub.Leave(ctx, c, m.Room)
		}
		c.replyError(m.ID, err)
		return
	}
	catchUp = catchUp && !already
	undo := func(err error) {
		if !already {
			c.srv.hub.Leave(ctx, c, m.Room)
			c.srv.presence.remove(ctx, m.Room, c)
		}
		c.replyError(m.ID, err)
	}
	// The members on every node, this connection included.
	members, count, err := c.srv.presence.list(ctx, m.Room)
	if err != nil {
		undo(err)
		return
	}
	// Without "after", an account that was already a member catches up
	// from its read position; one that becomes a member now starts at
	// the head.
	member := false
	if catchUp && m.After == nil {
		if member, err = c.wasMember(ctx, m.Room); err != nil {
			undo(storeError(err))
			return
		}
	}
	if err := c.rememberMembership(ctx, m.Room, true); err != nil {
		undo(err)
		return
	}
	stream := store.RoomStream(m.Room)
	pos, err := c.srv.store.StreamHead(ctx, stream)
	if err != nil {
		undo(storeError(err))
		return
	}
	var after int64
	switch {
	case m.After != nil:
		after = *m.After
	case catchUp && member:
		after, err = c.srv.store.ReadPosition(ctx, c.user.ID, stream)
	case catchUp:
		after = pos.Seq
		if after > 0 {
			err = c.srv.store.SetReadPosition(ctx, c.user.ID, stream, after)
		}
	}
	if err != nil {
		undo(storeError(err))
		return
	}
	joined := &protocol.Message{Type: protocol.MsgJoined, Ref: m.ID, Room: m.Room, Members: members, Count: count, TS: time.Now().UnixMilli(), Head: pos.Seq, Epoch: pos.Epoch}
	if !catchUp {
		c.reply(joined)
		c.presence(ctx, m.Room, "join")
		return
	}
	joined.After = &after
	joined.More = pos.Seq-after > maxCatchUp
	var first []store.StoredMessage
	if !joined.More && after < pos.Seq {
		if first, _, err = c.srv.store.History(ctx, stream, store.HistoryQuery{After: &after, Limit: store.MaxHistoryLimit}); err != nil {
			undo(storeError(err))
			return
		}
	}
	c.reply(joined)
	last := after
	if joined.More {
		last = pos.Seq // the member pages (after, head] with history
	}
	if last, err = c.sendStored(ctx, m.Room, last, pos.Seq, first); err == nil {
		err = c.finishCatchUp(ctx, m.Room, last)
	}
	if err != nil {
		c.log.Error().Err(err).Str("room", m.Room).Msg("catch-up")
		c.fail(protocol.CodeUnavailable, "catch-up failed")
		return
	}
	c.presence(ctx, m.Room, "join")
}

// wasMember reports whether the account is a member of room in the store.
func (c *peer) wasMember(ctx context.Context, room string) (bool, error) {
	rooms, err := c.srv.store.RoomsOf(ctx, c.user.ID)
	if err != nil {
		return false, err
	}
	for _, r := range rooms {
		if r.Name == room {
			return true, nil
		}
	}
	return false, nil
}

// sendStored queues the room's stored messages after last, starting with
// the page first (nil: read it), until it has sent upTo (0: until the
// stream ends), and returns the last sequence number sent.
func (c *peer) sendStored(ctx context.Context, room string, last, upTo int64, first []store.StoredMessage) (int64, error) {
	page := first
	for {
		for _, sm := range page {
			b, err := roomMessage(room, sm).Encode()
			if err != nil {
				return last, err
			}
			if err := c.enqueueWait(ctx, b); err != nil {
				return last, err
			}
			last = sm.Seq
		}
		if upTo > 0 && last >= upTo || page != nil && len(page) < store.MaxHistoryLimit {
			return last, nil
		}
		var err error
		if page, _, err = c.srv.store.History(ctx, store.RoomStream(room), store.HistoryQuery{After: &last, Limit: store.MaxHistoryLimit}); err != nil {
			return last, err
		}
		if page == nil {
			page = []store.StoredMessage{}
		}
	}
}

// finishCatchUp switches the member to live delivery, re-reading the
// stream when live messages overflowed the hub's buffer meanwhile.
func (c *peer) finishCatchUp(ctx context.Context, room string, last int64) error {
	for range catchUpRetries {
		if c.srv.hub.FinishCatchUp(c, room, last) {
			return nil
		}
		var err error
		if last, err = c.sendStored(ctx, room, last, 0, nil); err != nil {
			return err
		}
	}
	return fmt.Errorf("server: room %s too busy to catch up", room)
}

// enqueueWait queues an encoded message, waiting while the queue is full:
// a catch-up may send more than the queue holds.
func (c *peer) enqueueWait(ctx context.Context, b []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !c.queue.answer(b, c.writerEnd) {
		return errors.New("server: connection closed")
	}
	return nil
}

// history answers a page of the room's stored messages, cut to fit one
// record.
func (c *peer) history(ctx context.Context, m *protocol.Message) error {
	if !c.srv.hub.IsMember(c, m.Room) {
		return fmt.Errorf("join %q before reading its history: %w", m.Room, protocol.CodeBadRequest)
	}
	q := store.HistoryQuery{After: m.After, Before: m.Before, Limit: min(m.Limit, store.MaxHistoryLimit)}
	msgs, pos, err := c.srv.store.History(ctx, store.RoomStream(m.Room), q)
	if err != nil {
		return storeError(err)
	}
	limit := q.Limit
	if limit == 0 {
		limit = store.DefaultHistoryLimit
	}
	answer := &protocol.Message{Type: protocol.MsgHistory, Ref: m.ID, Room: m.Room, TS: time.Now().UnixMilli(), Head: pos.Seq, Epoch: pos.Epoch, More: len(msgs) == limit}
	answer.Msgs = make([]*protocol.Message, len(msgs))
	for i, sm := range msgs {
		answer.Msgs[i] = roomMessage(m.Room, sm)
	}
	if err := fitPage(answer, m.After != nil); err != nil {
		return err
	}
	c.reply(answer)
	return nil
}

// markRead advances the account's read position in a room.
func (c *peer) markRead(ctx context.Context, m *protocol.Message) error {
	if c.user == nil {
		return fmt.Errorf("read positions belong to accounts: log in first: %w", protocol.CodeUnauthenticated)
	}
	if err := c.srv.store.SetReadPosition(ctx, c.user.ID, store.RoomStream(m.Room), m.Seq); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return fmt.Errorf("seq %d is beyond the room's last message: %w", m.Seq, protocol.CodeBadRequest)
		}
		return storeError(err)
	}
	c.reply(&protocol.Message{Type: protocol.MsgAck, Ref: m.ID, TS: time.Now().UnixMilli(), Room: m.Room, Seq: m.Seq})
	return nil
}

// roomPositions answers the account's rooms with their heads and read positions,
// as many as fit in one record (More if not all did).
func (c *peer) roomPositions(ctx context.Context, m *protocol.Message) error {
	if c.user == nil {
		return fmt.Errorf("log in first: %w", protocol.CodeUnauthenticated)
	}
	rooms, err := c.srv.store.RoomsOf(ctx, c.user.ID)
	if err != nil {
		return storeError(err)
	}
	read, err := c.srv.store.ReadPositions(ctx, c.user.ID)
	if err != nil {
		return storeError(err)
	}
	answer := &protocol.Message{Type: protocol.MsgRooms, Ref: m.ID, TS: time.Now().UnixMilli(), Rooms: []protocol.RoomPosition{}}
	size := 200 // the answer without its rooms, generously
	for _, r := range rooms {
		stream := store.RoomStream(r.Name)
		pos, err := c.srv.store.StreamHead(ctx, stream)
		if err != nil {
			return storeError(err)
		}
		rp := protocol.RoomPosition{Room: r.Name, Head: pos.Seq, Read: read[stream], Epoch: pos.Epoch}
		if size += len(rp.Room) + len(rp.Epoch) + 80; size > protocol.MaxPlaintext {
			answer.More = true
			break
		}
		answer.Rooms = append(answer.Rooms, rp)
	}
	c.reply(answer)
	return nil
}

// fitPage cuts a history answer to what one record carries, setting More
// when it cuts: a page read forwards (keepOldest) keeps its oldest
// messages, the others their newest, so that paging on from the page's
// edge misses nothing.
func fitPage(answer *protocol.Message, keepOldest bool) error {
	header := *answer
	header.Msgs, header.More = nil, true
	head, err := header.Encode()
	if err != nil {
		return protocol.CodeInternal
	}
	sizes := make([]int, len(answer.Msgs))
	total := len(head) + len(`,"msgs":[]`)
	for i, msg := range answer.Msgs {
		b, err := msg.Encode()
		if err != nil {
			return protocol.CodeInternal
		}
		sizes[i] = len(b) + 1
		total += sizes[i]
	}
	for total > protocol.MaxPlaintext && len(answer.Msgs) > 0 {
		answer.More = true
		if keepOldest {
			total -= sizes[len(answer.Msgs)-1]
			answer.Msgs = answer.Msgs[:len(answer.Msgs)-1]
		} else {
			total -= sizes[0]
			sizes, answer.Msgs = sizes[1:], answer.Msgs[1:]
		}
	}
	return nil
}
