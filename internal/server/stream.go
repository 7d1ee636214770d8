package server

// Streamed answers (docs/protocol.md §8.6): a member of a room (in
// practice the bot) shows an answer growing as it is produced, with
// start, delta and end events that the server relays to the room and
// does not store; any member may ask it to stop. The final answer is an
// ordinary send whose "stream" links it to the stream. In a direct
// conversation the same events carry end-to-end records (conv_stream)
// that the server relays to both users' connections without being able
// to read them. And a mention ("@user") of a user who is not a member of
// the room is told to that user (mention), so that a bot learns where it
// is wanted.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/e2e"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// allowStream counts one stream event against the sender's stream rate:
// per user, or per address for an anonymous connection.
func (c *peer) allowStream(ctx context.Context) error {
	key := "stream:anon:" + c.addr
	if c.user != nil {
		key = "stream:user:" + c.user.ID.String()
	}
	err := c.srv.allow(ctx, key, c.srv.cfg.Limits.StreamRate, "you are streaming too fast")
	c.logLimiterError(err)
	return err
}

// roomStream relays a stream event to every member of its room, the
// sender included, after checking that the sender is a member and within
// its stream rate. Nothing is stored.
func (c *peer) roomStream(ctx context.Context, m *protocol.Message) error {
	if !c.srv.hub.IsMember(c, m.Room) {
		return fmt.Errorf("join %q before streaming to it: %w", m.Room, protocol.CodeBadRequest)
	}
	if err := c.allowStream(ctx); err != nil {
		return err
	}
	out := &protocol.Message{
		Type: protocol.MsgStream, Room: m.Room, From: c.displayName(), Anon: c.user == nil, Stream: m.Stream,
		Event: m.Event, Body: m.Body, Reason: m.Reason, TS: time.Now().UnixMilli(),
	}
	payload, err := out.Encode()
	if err != nil {
		return fmt.Errorf("body too large once encoded (%d bytes at most in a record): %w", protocol.MaxPlaintext, protocol.CodeTooLarge)
	}
	if err := c.srv.hub.Publish(ctx, m.Room, 0, payload); err != nil {
		return &requestError{protocol.CodeUnavailable, "unavailable", err}
	}
	c.reply(&protocol.Message{Type: protocol.MsgAck, Ref: m.ID, TS: time.Now().UnixMilli()})
	return nil
}

// convStream relays a conv_stream event to every connection of both
// users of the conversation but the sender's. A record must parse and be
// addressed from the caller to the other user in this conversation, as a
// conv_send's (the device and key version are not looked up for each
// delta: the receiving clients check the signature). Nothing is stored.
func (c *peer) convStream(ctx context.Context, m *protocol.Message) error {
	cv, peer, err := c.conversationOf(ctx, m)
	if err != nil {
		return err
	}
	if len(m.Record) > 0 {
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
	}
	if err := c.allowStream(ctx); err != nil {
		return err
	}
	out := &protocol.Message{
		Type: protocol.MsgConvStream, Conv: m.Conv, From: c.user.Name, Stream: m.Stream,
		Event: m.Event, Record: m.Record, Reason: m.Reason, TS: time.Now().UnixMilli(),
	}
	payload, err := out.Encode()
	if err != nil {
		return fmt.Errorf("record too large once encoded: %w", protocol.CodeTooLarge)
	}
	c.srv.logins.tellUsers(ctx, []uuid.UUID{cv.UserA, cv.UserB}, c, payload)
	c.reply(&protocol.Message{Type: protocol.MsgAck, Ref: m.ID, TS: time.Now().UnixMilli(), Conv: m.Conv})
	return nil
}

// maxMentions bounds the users one message can mention to notice.
const maxMentions = 4

// mentionTimeout bounds the lookups and the delivery of one message's
// mentions.
const mentionTimeout = 5 * time.Second

// mentionedUsers returns the distinct user names body mentions: "@name"
// at the start or after a space, name a valid user name (lower-cased),
// trailing '.', '-' and '_' dropped (the end of a sentence), at most
// maxMentions of them.
func mentionedUsers(body string) []string {
	if !strings.Contains(body, "@") {
		return nil
	}
	var out []string
	for _, w := range strings.Fields(body) {
		name, ok := strings.CutPrefix(w, "@")
		if !ok {
			continue
		}
		if i := strings.IndexFunc(name, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-')
		}); i >= 0 {
			name = name[:i]
		}
		name = strings.ToLower(strings.TrimRight(name, "._-"))
		if !protocol.ValidUserName(name) || containsString(out, name) {
			continue
		}
		if out = append(out, name); len(out) == maxMentions {
			break
		}
	}
	return out
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// noticeMentions tells each user that a stored room message mentions, and
// who is not a member of the room, that they were mentioned there (a
// mention message, without the text), on every node. It runs on its own
// goroutine, after the send was answered; failures are logged and
// dropped. Only logged-in senders' mentions are told.
func (s *Server) noticeMentions(room string, sm store.StoredMessage) {
	if sm.Sender == uuid.Nil {
		return
	}
	names := mentionedUsers(string(sm.Body))
	if len(names) == 0 {
		return
	}
	s.handlers.Add(1)
	go func() {
		defer s.handlers.Done()
		ctx, cancel := context.WithTimeout(context.Background(), mentionTimeout)
		defer cancel()
		for _, name := range names {
			u, err := s.store.UserByName(ctx, name)
			if err != nil || u.ID == sm.Sender {
				continue // no such user (or the store failed): nobody to tell
			}
			rooms, err := s.store.RoomsOf(ctx, u.ID)
			if err != nil {
				s.log.Warn().Err(err).Msg("mention: rooms of the mentioned user")
				continue
			}
			member := false
			for _, r := range rooms {
				member = member || r.Name == room
			}
			if member {
				continue
			}
			out := &protocol.Message{Type: protocol.MsgMention, Room: room, From: sm.SenderName, User: u.Name, Seq: sm.Seq, TS: sm.CreatedAt.UnixMilli()}
			if payload, err := out.Encode(); err == nil {
				s.logins.tellUsers(ctx, []uuid.UUID{u.ID}, nil, payload)
			}
		}
	}()
}
