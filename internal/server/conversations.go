package server

// Direct conversations (docs/protocol.md §8.5): two users, one stream
// "conv:<id>" of pkg/e2e records the server cannot read, and the key
// envelopes that wrap each key version to every device of both. The
// server checks who may touch a conversation and that what is stored is
// addressed to it; it cannot check the cryptography, and does not try.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/internal/metrics"
	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/e2e"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// errNoConversation is the answer to anyone but its two users, and for a
// conversation that does not exist: the two cannot be told apart.
var errNoConversation = &requestError{protocol.CodeNotFound, "no such conversation", store.ErrNotFound}

// conversationOf returns the conversation m.Conv names and its other
// user, if the caller is one of its two users.
func (c *peer) conversationOf(ctx context.Context, m *protocol.Message) (store.Conversation, store.User, error) {
	if c.user == nil {
		return store.Conversation{}, store.User{}, fmt.Errorf("log in first: %w", protocol.CodeUnauthenticated)
	}
	id, _ := uuid.Parse(m.Conv) // checked by ValidateRequest
	cv, err := c.srv.store.ConversationByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) || err == nil && !cv.Has(c.user.ID) {
		return store.Conversation{}, store.User{}, errNoConversation
	}
	if err != nil {
		return store.Conversation{}, store.User{}, storeError(err)
	}
	peerID := cv.UserA
	if peerID == c.user.ID {
		peerID = cv.UserB
	}
	peer, err := c.srv.store.UserByID(ctx, peerID)
	if err != nil {
		return store.Conversation{}, store.User{}, storeError(err)
	}
	return cv, peer, nil
}

// latestKeyVersion is the conversation's highest key version, 0 if none.
func (c *peer) latestKeyVersion(ctx context.Context, cv store.Conversation) (int, error) {
	// Key versions are few (one per rotation), so reading them all is
	// cheap; the store has no call for the highest alone.
	keys, err := c.srv.store.ConversationKeys(ctx, cv.ID, 0)
	if err != nil {
		return 0, storeError(err)
	}
	if len(keys) == 0 {
		return 0, nil
	}
	return keys[len(keys)-1].Version, nil
}

// allowSend counts a conversation request that stores something against
// the caller's send rate.
func (c *peer) allowSend(ctx context.Context) error {
	err := c.srv.allow(ctx, "send:user:"+c.user.ID.String(), c.srv.cfg.Limits.SendRate, "you are sending too fast")
	c.logLimiterError(err)
	return err
}

// convOpen answers conv_open: the caller's conversation with m.User,
// created if the pair has none.
func (c *peer) convOpen(ctx context.Context, m *protocol.Message) error {
	if c.user == nil {
		return fmt.Errorf("log in first: %w", protocol.CodeUnauthenticated)
	}
	if m.User == c.user.Name {
		return fmt.Errorf("a conversation is with another user: %w", protocol.CodeBadRequest)
	}
	peer, err := c.srv.store.UserByName(ctx, m.User)
	if errors.Is(err, store.ErrNotFound) {
		return &requestError{protocol.CodeNotFound, "no such user", err}
	}
	if err != nil {
		return storeError(err)
	}
	if err := c.allowSend(ctx); err != nil {
		return err
	}
	cv, err := c.srv.store.CreateConversation(ctx, c.user.ID, peer.ID)
	if err != nil {
		return storeError(err)
	}
	version, err := c.latestKeyVersion(ctx, cv)
	if err != nil {
		return err
	}
	pos, err := c.srv.store.StreamHead(ctx, cv.Stream())
	if err != nil {
		return storeError(err)
	}
	read, err := c.srv.store.ReadPosition(ctx, c.user.ID, cv.Stream())
	if err != nil {
		return storeError(err)
	}
	c.reply(&protocol.Message{
		Type: protocol.MsgConv, Ref: m.ID, TS: time.Now().UnixMilli(), Conv: cv.ID.String(), User: peer.Name,
		Version: version, Head: pos.Seq, Epoch: pos.Epoch, Seq: read,
	})
	return nil
}

// convList answers convs: the caller's conversations with their heads and
// read positions, as many as fit in one record (More if not all did).
func (c *peer) convList(ctx context.Context, m *protocol.Message) error {
	if c.user == nil {
		return fmt.Errorf("log in first: %w", protocol.CodeUnauthenticated)
	}
	convs, err := c.srv.store.ConversationsOf(ctx, c.user.ID)
	if err != nil {
		return storeError(err)
	}
	read, err := c.srv.store.ReadPositions(ctx, c.user.ID)
	if err != nil {
		return storeError(err)
	}
	answer := &protocol.Message{Type: protocol.MsgConvs, Ref: m.ID, TS: time.Now().UnixMilli(), Convs: []protocol.ConvPosition{}}
	size := 200 // the answer without its conversations, generously
	for _, cv := range convs {
		peerID := cv.UserA
		if peerID == c.user.ID {
			peerID = cv.UserB
		}
		peer, err := c.srv.store.UserByID(ctx, peerID)
		if err != nil {
			return storeError(err)
		}
		pos, err := c.srv.store.StreamHead(ctx, cv.Stream())
		if err != nil {
			return storeError(err)
		}
		version, err := c.latestKeyVersion(ctx, cv)
		if err != nil {
			return err
		}
		cp := protocol.ConvPosition{Conv: cv.ID.String(), User: peer.Name, Version: version, Head: pos.Seq, Read: read[cv.Stream()], Epoch: pos.Epoch}
		if size += len(cp.Conv) + len(cp.User) + len(cp.Epoch) + 120; size > protocol.MaxPlaintext {
			answer.More = true
			break
		}
		answer.Convs = append(answer.Convs, cp)
	}
	c.reply(answer)
	return nil
}

// convKeyMessage is the conv_key every connection of both users receives
// for a stored key version, and the entry of a conv_keys answer.
func convKeyMessage(k store.ConversationKey, from string) *protocol.Message {
	return &protocol.Message{
		Type: protocol.MsgConvKey, Conv: k.ConversationID.String(), From: from,
		Version: k.Version, TS: k.CreatedAt.UnixMilli(), Envelope: k.Envelope,
	}
}

// convPutKey stores a new key version: an envelope that parses, names this
// conversation, this version and a current device of the caller as its
// creator, and wraps to the two users of the conversation.
func (c *peer) convPutKey(ctx context.Context, m *protocol.Message) error {
	cv, peer, err := c.conversationOf(ctx, m)
	if err != nil {
		return err
	}
	env, err := e2e.ParseKeyEnvelope(m.Envelope)
	if err != nil {
		return fmt.Errorf("envelope: %s: %w", e2e.ErrorName(err), protocol.CodeBadRequest)
	}
	switch {
	case env.Conversation != cv.ID:
		return fmt.Errorf("envelope of conversation %s sent to %s: %w", env.Conversation, cv.ID, protocol.CodeBadRequest)
	case int64(env.KeyVersion) != int64(m.Version):
		return fmt.Errorf("envelope of key version %d sent as version %d: %w", env.KeyVersion, m.Version, protocol.CodeBadRequest)
	case env.Creator.User != c.user.Name:
		return fmt.Errorf("envelope created by %s, not by you: %w", env.Creator.User, protocol.CodeBadRequest)
	case !sameUserPair(env.Users(), c.user.Name, peer.Name):
		return fmt.Errorf("envelope wraps to %v, not to you and %s: %w", env.Users(), peer.Name, protocol.CodeBadRequest)
	}
	if err := c.checkOwnDevice(ctx, env.Creator.ID); err != nil {
		return err
	}
	if err := c.checkRecipients(ctx, env, peer); err != nil {
		return err
	}
	if err := c.allowSend(ctx); err != nil {
		return err
	}
	k, err := c.srv.store.PutConversationKey(ctx, cv.ID, m.Version, c.user.ID, m.Envelope)
	if errors.Is(err, store.ErrConflict) {
		return &requestError{protocol.CodeConflict, fmt.Sprintf("key version %d is not the next one: fetch the versions since yours", m.Version), err}
	}
	if err != nil {
		return storeError(err)
	}
	if payload, err := convKeyMessage(k, c.user.Name).Encode(); err == nil {
		c.srv.logins.tellUsers(ctx, []uuid.UUID{cv.UserA, cv.UserB}, c, payload)
	}
	c.reply(&protocol.Message{Type: protocol.MsgAck, Ref: m.ID, TS: time.Now().UnixMilli(), Conv: m.Conv, Version: k.Version})
	return nil
}

// checkOwnDevice refuses a device that is not a current device of the
// caller: an envelope or record must come from one.
func (c *peer) checkOwnDevice(ctx context.Context, device uuid.UUID) error {
	ds, err := c.srv.store.DevicesOf(ctx, c.user.ID)
	if err != nil {
		return storeError(err)
	}
	for _, d := range ds {
		if d.ID == device {
			return nil
		}
	}
	return fmt.Errorf("device %s is not a current device of yours: %w", device, protocol.CodeBadRequest)
}

// checkRecipients refuses an envelope that wraps the key to a device that
// is not a current device of its user: a removed device gets no new key
// (docs/protocol.md §8.5). A device added meanwhile that the envelope
// leaves out is the clients' business (their key policy rotates).
func (c *peer) checkRecipients(ctx context.Context, env *e2e.KeyEnvelope, peer store.User) error {
	current := make(map[uuid.UUID]string)
	for _, u := range []store.User{*c.user, peer} {
		ds, err := c.srv.store.DevicesOf(ctx, u.ID)
		if err != nil {
			return storeError(err)
		}
		for _, d := range ds {
			current[d.ID] = u.Name
		}
	}
	for _, st := range env.Stanzas {
		if user, ok := current[st.Device]; !ok || user != st.User {
			return fmt.Errorf("envelope wraps to %s's device %s, which is not a current device: %w", st.User, st.Device, protocol.CodeBadRequest)
		}
	}
	return nil
}

// sameUserPair reports whether users (in byte order) are a and b.
func sameUserPair(users [2]string, a, b string) bool {
	if a > b {
		a, b = b, a
	}
	return users == [2]string{a, b}
}

// convKeys answers conv_keys: the key versions above m.Version, oldest
// first, as many as fit in one record (More if not all did).
func (c *peer) convKeys(ctx context.Context, m *protocol.Message) error {
	cv, peer, err := c.conversationOf(ctx, m)
	if err != nil {
		return err
	}
	keys, err := c.srv.store.ConversationKeys(ctx, cv.ID, m.Version)
	if err != nil {
		return storeError(err)
	}
	answer := &protocol.Message{Type: protocol.MsgConvKeys, Ref: m.ID, TS: time.Now().UnixMilli(), Conv: m.Conv, Envelopes: []*protocol.Message{}}
	size := 200
	for _, k := range keys {
		from := c.user.Name
		if k.CreatedBy != c.user.ID {
			from = peer.Name
		}
		e := convKeyMessage(k, from)
		b, err := e.Encode()
		if err != nil {
			return protocol.CodeInternal
		}
		if size += len(b) + 1; size > protocol.MaxPlaintext {
			answer.More = true
			break
		}
		answer.Envelopes = append(answer.Envelopes, e)
	}
	c.reply(answer)
	return nil
}

// convMessage is the conv_msg both users receive for a stored record.
func convMessage(cv uuid.UUID, sm store.StoredMessage, epoch string) *protocol.Message {
	return &protocol.Message{
		Type: protocol.MsgConvMsg, Conv: cv.String(), ID: sm.ID.String(), From: sm.SenderName,
		Seq: sm.Seq, Epoch: epoch, TS: sm.CreatedAt.UnixMilli(), Record: sm.Body,
	}
}

// convSend stores a record in the conversation's stream, then delivers it
// to every connection of both users and acknowledges it with its sequence
// number. The record's header must name this conversation, the caller as
// sender (one of its current devices) and the other user as recipient,
// and a key version the conversation has.
func (c *peer) convSend(ctx context.Context, m *protocol.Message) error {
	cv, peer, err := c.conversationOf(ctx, m)
	if err != nil {
		return err
	}
	rec, err := e2e.ParseRecord(m.Record)
	if err != nil {
		return fmt.Errorf("record: %s: %w", e2e.ErrorName(err), protocol.CodeBadRequest)
	}
	switch {
	case rec.Conversation != cv.ID:
		return fmt.Errorf("record of conversation %s sent to %s: %w", rec.Conversation, cv.ID, protocol.CodeBadRequest)
	case rec.Sender != c.user.Name:
		return fmt.Errorf("record from %s, not from you: %w", rec.Sender, protocol.CodeBadRequest)
	case rec.Recipient != peer.Name:
		return fmt.Errorf("record to %s, not to %s: %w", rec.Recipient, peer.Name, protocol.CodeBadRequest)
	}
	if err := c.checkOwnDevice(ctx, rec.SenderDevice); err != nil {
		return err
	}
	keys, err := c.srv.store.ConversationKeys(ctx, cv.ID, int(rec.KeyVersion)-1)
	if err != nil {
		return storeError(err)
	}
	if len(keys) == 0 || keys[0].Version != int(rec.KeyVersion) {
		return fmt.Errorf("record under key version %d, which the conversation does not have: %w", rec.KeyVersion, protocol.CodeBadRequest)
	}
	if err := c.allowSend(ctx); err != nil {
		return err
	}
	sm := store.StoredMessage{
		Stream: cv.Stream(), ID: rec.MessageID, Sender: c.user.ID, SenderName: c.user.Name,
		Kind: store.KindE2E, Body: m.Record, CreatedAt: time.Now(),
	}
	// As in rooms: append and deliver under the stream's lock, so that
	// this node delivers a conversation's records in order.
	mu := c.srv.roomMu.of(sm.Stream)
	mu.Lock()
	defer mu.Unlock()
	stored, created, err := c.srv.store.AppendMessage(ctx, sm)
	if errors.Is(err, store.ErrConflict) {
		return &requestError{protocol.CodeConflict, fmt.Sprintf("message id %s was sent by someone else", rec.MessageID), err}
	}
	if err != nil {
		return storeError(err)
	}
	pos, err := c.srv.store.StreamHead(ctx, sm.Stream)
	if err != nil {
		c.log.Warn().Err(err).Msg("stream head for conversation ack")
	}
	if created {
		live := convMessage(cv.ID, stored, pos.Epoch)
		live.Stream = m.Stream // links a streamed answer (§8.6); history does not keep it
		payload, err := live.Encode()
		if err != nil {
			// Committed all the same: history has it.
			c.log.Error().Err(err).Int64("seq", stored.Seq).Msg("encode conversation record")
		} else {
			c.srv.logins.tellUsers(ctx, []uuid.UUID{cv.UserA, cv.UserB}, c, payload)
		}
	}
	c.reply(&protocol.Message{Type: protocol.MsgAck, Ref: m.ID, TS: time.Now().UnixMilli(), Conv: m.Conv, Seq: stored.Seq, Epoch: pos.Epoch})
	return nil
}

// convHistory answers a page of the conversation's records, cut to fit
// one record like room history.
func (c *peer) convHistory(ctx context.Context, m *protocol.Message) error {
	cv, _, err := c.conversationOf(ctx, m)
	if err != nil {
		return err
	}
	q := store.HistoryQuery{After: m.After, Before: m.Before, Limit: min(m.Limit, store.MaxHistoryLimit)}
	msgs, pos, err := c.srv.store.History(ctx, cv.Stream(), q)
	if err != nil {
		return storeError(err)
	}
	limit := q.Limit
	if limit == 0 {
		limit = store.DefaultHistoryLimit
	}
	answer := &protocol.Message{Type: protocol.MsgHistory, Ref: m.ID, Conv: m.Conv, TS: time.Now().UnixMilli(), Head: pos.Seq, Epoch: pos.Epoch, More: len(msgs) == limit}
	answer.Msgs = make([]*protocol.Message, len(msgs))
	for i, sm := range msgs {
		answer.Msgs[i] = convMessage(cv.ID, sm, pos.Epoch)
	}
	if err := fitPage(answer, m.After != nil); err != nil {
		return err
	}
	c.reply(answer)
	return nil
}

// convRead advances the caller's read position in a conversation.
func (c *peer) convRead(ctx context.Context, m *protocol.Message) error {
	cv, _, err := c.conversationOf(ctx, m)
	if err != nil {
		return err
	}
	if err := c.srv.store.SetReadPosition(ctx, c.user.ID, cv.Stream(), m.Seq); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return fmt.Errorf("seq %d is beyond the conversation's last record: %w", m.Seq, protocol.CodeBadRequest)
		}
		return storeError(err)
	}
	c.reply(&protocol.Message{Type: protocol.MsgAck, Ref: m.ID, TS: time.Now().UnixMilli(), Conv: m.Conv, Seq: m.Seq})
	return nil
}

// convChannel carries conversation deliveries between nodes: a count n
// (one byte), n user ids, the sending node's id (logins.node), then the
// encoded conv_msg or conv_key to push to those users' connections.
const convChannel = "ctl:conv"

// tellUsers pushes payload to every connection of users but except: on
// this node at once, on the others through the broker. A connection whose
// send queue is full is dropped as a slow consumer (it reloads what it
// missed with conv_history); nobody else waits for it.
func (r *logins) tellUsers(ctx context.Context, users []uuid.UUID, except *peer, payload []byte) {
	r.deliverOrDrop(users, except, payload)
	msg := make([]byte, 0, 1+16*len(users)+16+len(payload))
	msg = append(msg, byte(len(users)))
	for _, u := range users {
		msg = append(msg, u[:]...)
	}
	msg = append(append(msg, r.node[:]...), payload...)
	if err := r.broker.Publish(ctx, convChannel, msg); err != nil {
		r.log.Warn().Err(err).Msg("conversation delivery not published: the users' connections on other nodes fetch it with conv_history")
	}
}

// receiveConv delivers what another node published on convChannel; this
// node's own come back too and are skipped.
func (r *logins) receiveConv(msg []byte) {
	if len(msg) < 1 || len(msg) <= 1+16*int(msg[0])+16 {
		r.log.Warn().Int("size", len(msg)).Msg("conversation delivery of the wrong size dropped")
		return
	}
	n := int(msg[0])
	users := make([]uuid.UUID, n)
	for i := range users {
		users[i] = uuid.UUID(msg[1+16*i : 1+16*(i+1)])
	}
	rest := msg[1+16*n:]
	if uuid.UUID(rest[:16]) == r.node {
		return
	}
	r.deliverOrDrop(users, nil, rest[16:])
}

// deliverOrDrop queues payload on every connection of users on this node
// but except, failing those whose queue is full.
func (r *logins) deliverOrDrop(users []uuid.UUID, except *peer, payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range users {
		for p := range r.byUser[u] {
			if p != except && !p.enqueue(payload) {
				p.srv.metrics.QueueDrop(metrics.DropQueueFull)
				p.fail(protocol.CodeSlowConsumer, "send queue full")
			}
		}
	}
}
