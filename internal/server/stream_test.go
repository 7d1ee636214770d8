package server

import (
	"reflect"
	"testing"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// registered dials a connection and registers id on it.
func registered(t *testing.T, ts *testServer, id *client.Identity) *client.Conn {
	t.Helper()
	c := ts.dial(t)
	if _, err := c.Register(ctxT(t), id, id.User+" password"); err != nil {
		t.Fatalf("register %s: %v", id.User, err)
	}
	return c
}

func streamEvent(room, stream, event, body, reason string) *protocol.Message {
	return &protocol.Message{Type: protocol.MsgStream, Room: room, Stream: stream, Event: event, Body: body, Reason: reason}
}

// TestRoomStream: a member's start, delta and end reach every member with
// its name; another member's stop reaches the producer; the final send
// with "stream" is delivered live with it and stored without it; a
// non-member's event is bad_request.
func TestRoomStream(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	ca := registered(t, ts, identity(t, "alice", 0))
	cb := registered(t, ts, identity(t, "bob", 1))
	cc := registered(t, ts, identity(t, "carol", 2))
	for _, c := range []*client.Conn{ca, cb} {
		if _, err := c.Join(ctxT(t), "general", ""); err != nil {
			t.Fatal(err)
		}
	}
	sid := uuid.NewString()
	for _, ev := range []*protocol.Message{
		streamEvent("general", sid, "start", "", ""),
		streamEvent("general", sid, "delta", "Hel", ""),
		streamEvent("general", sid, "delta", "lo <b>", ""),
	} {
		r, err := ca.Request(ctxT(t), ev)
		if err != nil || r.Type != protocol.MsgAck {
			t.Fatalf("%s: %v %+v", ev.Event, err, r)
		}
	}
	for _, want := range []struct{ event, body string }{{"start", ""}, {"delta", "Hel"}, {"delta", "lo <b>"}} {
		for name, c := range map[string]*client.Conn{"alice": ca, "bob": cb} {
			m := next(t, c, protocol.MsgStream)
			if m.Room != "general" || m.From != "alice" || m.Stream != sid || m.Event != want.event || m.Body != want.body || m.Anon || m.TS == 0 {
				t.Fatalf("%s got %+v, want %s %q", name, m, want.event, want.body)
			}
		}
	}
	// bob stops it; alice (the producer) hears it.
	if _, err := cb.Request(ctxT(t), streamEvent("general", sid, "stop", "", "")); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*client.Conn{"alice": ca, "bob": cb} { // the sender too
		if m := next(t, c, protocol.MsgStream); m.Event != "stop" || m.From != "bob" || m.Stream != sid {
			t.Fatalf("%s got %+v", name, m)
		}
	}
	if _, err := ca.Request(ctxT(t), streamEvent("general", sid, "end", "", "stop")); err != nil {
		t.Fatal(err)
	}
	if m := next(t, cb, protocol.MsgStream); m.Event != "end" || m.Reason != "stop" {
		t.Fatalf("bob got %+v", m)
	}
	// The final answer, stored and linked.
	r, err := ca.Request(ctxT(t), &protocol.Message{Type: protocol.MsgSend, Room: "general", Body: "Hello <b>", Stream: sid})
	if err != nil || r.Seq == 0 {
		t.Fatalf("send: %v %+v", err, r)
	}
	if m := next(t, cb, protocol.MsgMessage); m.Stream != sid || m.Body != "Hello <b>" || m.Seq != r.Seq {
		t.Fatalf("bob got %+v", m)
	}
	h, err := cb.History(ctxT(t), "general", client.HistoryQuery{})
	if err != nil || len(h.Msgs) != 1 || h.Msgs[0].Body != "Hello <b>" || h.Msgs[0].Stream != "" {
		t.Fatalf("history: %v %+v", err, h)
	}
	// carol is not in the room.
	_, err = cc.Request(ctxT(t), streamEvent("general", sid, "stop", "", ""))
	wantCode(t, err, protocol.CodeBadRequest)
	// A malformed event: bad_request, and the connection goes on.
	_, err = ca.Request(ctxT(t), streamEvent("general", sid, "delta", "", ""))
	wantCode(t, err, protocol.CodeBadRequest)
	if _, err := ca.Request(ctxT(t), streamEvent("general", sid, "end", "", "done")); err != nil {
		t.Fatal(err)
	}
}

// TestStreamRate: stream events beyond -stream-rate are rate_limited,
// and not relayed.
func TestStreamRate(t *testing.T) {
	ts := authServer(t, func(c *Config, _ *Deps) {
		c.Limits.RequestRate, c.Limits.UserRequestRate = off, off
		c.Limits.StreamRate = ephemeral.Rate{Limit: 1, Per: 3600e9, Burst: 2}
	})
	ca := registered(t, ts, identity(t, "alice", 0))
	if _, err := ca.Join(ctxT(t), "general", ""); err != nil {
		t.Fatal(err)
	}
	sid := uuid.NewString()
	for i := range 2 {
		if _, err := ca.Request(ctxT(t), streamEvent("general", sid, "delta", "x", "")); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	_, err := ca.Request(ctxT(t), streamEvent("general", sid, "delta", "x", ""))
	wantCode(t, err, protocol.CodeRateLimited)
}

// TestConvStream: a conv_stream delta sealed under the conversation key
// reaches the other user, who opens it; the sender's own connection does
// not get it back; an outsider gets not_found; a record that does not
// parse is bad_request.
func TestConvStream(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	u := registerConvUsers(t, ts)
	cva := openConv(t, u.ca, u.alice, "bob")
	cvb := openConv(t, u.cb1, u.bob1, "alice")
	sid := uuid.NewString()
	sealed, err := cva.Seal(ctxT(t), "a piece")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []*protocol.Message{
		{Type: protocol.MsgConvStream, Conv: cva.ID().String(), Stream: sid, Event: "start"},
		{Type: protocol.MsgConvStream, Conv: cva.ID().String(), Stream: sid, Event: "delta", Record: sealed.Record},
	} {
		if _, err := u.ca.Request(ctxT(t), ev); err != nil {
			t.Fatal(err)
		}
	}
	if m := next(t, u.cb1, protocol.MsgConvStream); m.Event != "start" || m.From != "alice" || m.Stream != sid || m.Conv != cva.ID().String() {
		t.Fatalf("bob got %+v", m)
	}
	m := next(t, u.cb1, protocol.MsgConvStream)
	opened := *m
	opened.Type = protocol.MsgConvMsg
	got, err := cvb.Receive(ctxT(t), &opened)
	if err != nil || got == nil || got.Text != "a piece" || got.From != "alice" {
		t.Fatalf("bob opened %+v, %v", got, err)
	}
	_, err = u.cc.Request(ctxT(t), &protocol.Message{Type: protocol.MsgConvStream, Conv: cva.ID().String(), Stream: sid, Event: "stop"})
	wantCode(t, err, protocol.CodeNotFound)
	_, err = u.ca.Request(ctxT(t), &protocol.Message{Type: protocol.MsgConvStream, Conv: cva.ID().String(), Stream: sid, Event: "delta", Record: []byte("not a record")})
	wantCode(t, err, protocol.CodeBadRequest)
	// bob's stop reaches alice; alice's own connection never got her events back.
	if _, err := u.cb1.Request(ctxT(t), &protocol.Message{Type: protocol.MsgConvStream, Conv: cva.ID().String(), Stream: sid, Event: "stop"}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, u.ca, protocol.MsgConvStream); m.Event != "stop" || m.From != "bob" {
		t.Fatalf("alice got %+v", m)
	}
	// The final answer links the stream.
	final, err := cva.Seal(ctxT(t), "a piece, whole")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.ca.Request(ctxT(t), &protocol.Message{Type: protocol.MsgConvSend, Conv: cva.ID().String(), Record: final.Record, Stream: sid}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, u.cb1, protocol.MsgConvMsg); m.Stream != sid {
		t.Fatalf("bob's conv_msg %+v has no stream", m)
	}
}

// TestMention: a message mentioning a user who is not in the room tells
// that user where and by whom, without the text.
func TestMention(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	ca := registered(t, ts, identity(t, "alice", 0))
	cb := registered(t, ts, identity(t, "bob", 1))
	if _, err := ca.Join(ctxT(t), "general", ""); err != nil {
		t.Fatal(err)
	}
	sent, err := ca.SendMessage(ctxT(t), "general", "hey @Bob, come here secretword", "")
	if err != nil {
		t.Fatal(err)
	}
	m := next(t, cb, protocol.MsgMention)
	if m.Room != "general" || m.From != "alice" || m.User != "bob" || m.Seq != sent.Seq || m.Body != "" {
		t.Fatalf("bob got %+v", m)
	}
}

func TestMentionedUsers(t *testing.T) {
	for body, want := range map[string][]string{
		"hi":                          nil,
		"@bot hello":                  {"bot"},
		"hello @Bot.":                 {"bot"},
		"mail a@b.c":                  nil,
		"@bot @bot @x, @y: @z! @w @v": {"bot", "x", "y", "z"},
		"@ @-bad @_ok":                nil,
		"(@bot)":                      nil,
	} {
		if got := mentionedUsers(body); !reflect.DeepEqual(got, want) {
			t.Errorf("mentionedUsers(%q) = %q, want %q", body, got, want)
		}
	}
}
