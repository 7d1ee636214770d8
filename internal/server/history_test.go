package server

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/broker"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// account registers user (keys of slot) on a fresh connection and returns
// it, logged in.
func account(t *testing.T, ts *testServer, user string, slot int) *client.Conn {
	t.Helper()
	c := ts.dial(t, func(cfg *client.Config) { cfg.Incoming = 1024 })
	if _, err := c.Register(ctxT(t), identity(t, user, slot), user+" password"); err != nil {
		t.Fatalf("register %s: %v", user, err)
	}
	return c
}

// authed dials a new connection logged in as user (keys of slot).
func authed(t *testing.T, ts *testServer, user string, slot int) *client.Conn {
	t.Helper()
	c := ts.dial(t, func(cfg *client.Config) { cfg.Incoming = 1024 })
	if _, err := c.Auth(ctxT(t), identity(t, user, slot)); err != nil {
		t.Fatalf("auth %s: %v", user, err)
	}
	return c
}

// roomMsgs returns the next n msg messages of room, skipping other types.
func roomMsgs(t *testing.T, c *client.Conn, room string, n int) []*protocol.Message {
	t.Helper()
	var got []*protocol.Message
	for len(got) < n {
		m := next(t, c, protocol.MsgMessage)
		if m.Room == room {
			got = append(got, m)
		}
	}
	return got
}

// wantSeqs fails unless msgs carry the sequence numbers from..to, in order,
// each once.
func wantSeqs(t *testing.T, msgs []*protocol.Message, from, to int64) {
	t.Helper()
	if len(msgs) != int(to-from+1) {
		t.Fatalf("%d messages, want %d (seq %d..%d)", len(msgs), to-from+1, from, to)
	}
	for i, m := range msgs {
		if m.Seq != from+int64(i) {
			t.Fatalf("message %d has seq %d, want %d (body %q)", i, m.Seq, from+int64(i), m.Body)
		}
		if want := fmt.Sprintf("m%d", m.Seq); m.Body != want {
			t.Fatalf("seq %d carries %q, want %q", m.Seq, m.Body, want)
		}
	}
}

// TestOfflineCatchUp: bob, a member of the room, is offline while alice
// sends 100 messages; when he joins again he gets all of them in order,
// each once, and alice's messages sent while he catches up follow without
// a gap or a duplicate, then live traffic.
func TestOfflineCatchUp(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	alice := account(t, ts, "alice", 0)
	bob := account(t, ts, "bob", 1)
	for _, c := range []*client.Conn{alice, bob} {
		if _, err := c.Join(ctxT(t), "r", ""); err != nil {
			t.Fatal(err)
		}
	}
	bob.Close()
	for i := 1; i <= 100; i++ {
		s, err := alice.SendMessage(ctxT(t), "r", fmt.Sprintf("m%d", i), client.NewMessageID())
		if err != nil || s.Seq != int64(i) || s.Epoch == "" {
			t.Fatalf("send %d: %+v, %v", i, s, err)
		}
	}

	bob = authed(t, ts, "bob", 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // alice goes on while bob catches up
		defer wg.Done()
		for i := 101; i <= 150; i++ {
			if _, err := alice.SendMessage(ctxT(t), "r", fmt.Sprintf("m%d", i), ""); err != nil {
				t.Errorf("send %d: %v", i, err)
				return
			}
		}
	}()
	j, err := bob.JoinAfter(ctxT(t), "r", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if j.After == nil || *j.After != 0 || j.More || j.Head < 100 || j.Epoch == "" {
		t.Fatalf("joined: after %v, head %d, more %v, epoch %q", j.After, j.Head, j.More, j.Epoch)
	}
	wantSeqs(t, roomMsgs(t, bob, "r", 150), 1, 150)
	wg.Wait()
	if _, err := alice.SendMessage(ctxT(t), "r", "m151", ""); err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, roomMsgs(t, bob, "r", 1), 151, 151)
}

// TestJoinTooFarBehind: a member that missed more than maxCatchUp messages
// gets none of them on join, a joined answer saying so, and live traffic;
// history pages the rest.
func TestJoinTooFarBehind(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	alice := account(t, ts, "alice", 0)
	if _, err := alice.Join(ctxT(t), "r", ""); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= maxCatchUp+1; i++ {
		if _, err := alice.SendMessage(ctxT(t), "r", fmt.Sprintf("m%d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	bob := account(t, ts, "bob", 1)
	zero := int64(0)
	j, err := bob.JoinAfter(ctxT(t), "r", "", &zero)
	if err != nil || !j.More || j.Head != maxCatchUp+1 {
		t.Fatalf("joined: %+v, %v", j, err)
	}
	if _, err := alice.SendMessage(ctxT(t), "r", fmt.Sprintf("m%d", maxCatchUp+2), ""); err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, roomMsgs(t, bob, "r", 1), maxCatchUp+2, maxCatchUp+2)
	page, err := bob.History(ctxT(t), "r", client.HistoryQuery{After: &zero, Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, page.Msgs, 1, 3)
}

// TestNewMemberStartsAtHead: an account joining a room for the first time
// is not sent the room's old messages, and later catches up from there.
func TestNewMemberStartsAtHead(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	alice := account(t, ts, "alice", 0)
	if _, err := alice.Join(ctxT(t), "r", ""); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if _, err := alice.SendMessage(ctxT(t), "r", fmt.Sprintf("m%d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	bob := account(t, ts, "bob", 1)
	j, err := bob.JoinAfter(ctxT(t), "r", "", nil)
	if err != nil || j.After == nil || *j.After != 3 || j.Head != 3 {
		t.Fatalf("joined: %+v, %v", j, err)
	}
	bob.Close()
	if _, err := alice.SendMessage(ctxT(t), "r", "m4", ""); err != nil {
		t.Fatal(err)
	}
	bob = authed(t, ts, "bob", 1)
	if _, err := bob.Join(ctxT(t), "r", ""); err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, roomMsgs(t, bob, "r", 1), 4, 4)
}

// TestSendRetry: a send retried with the same mid and a new request id
// gets the first one's sequence number and is delivered once; someone
// else's mid is refused.
func TestSendRetry(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	alice := account(t, ts, "alice", 0)
	bob := account(t, ts, "bob", 1)
	for _, c := range []*client.Conn{alice, bob} {
		if _, err := c.Join(ctxT(t), "r", ""); err != nil {
			t.Fatal(err)
		}
	}
	mid := client.NewMessageID()
	first, err := alice.SendMessage(ctxT(t), "r", "m1", mid)
	if err != nil || first.Seq != 1 {
		t.Fatalf("send: %+v, %v", first, err)
	}
	again, err := alice.SendMessage(ctxT(t), "r", "m1", mid)
	if err != nil || again != first {
		t.Fatalf("retry: %+v, %v; want %+v", again, err, first)
	}
	_, err = bob.SendMessage(ctxT(t), "r", "m1", mid)
	wantCode(t, err, protocol.CodeConflict)
	if _, err := alice.SendMessage(ctxT(t), "r", "m2", ""); err != nil {
		t.Fatal(err)
	}
	got := roomMsgs(t, bob, "r", 2)
	wantSeqs(t, got, 1, 2)
	if got[0].ID != mid || got[0].From != "alice" {
		t.Fatalf("delivered %+v, want id %s from alice", got[0], mid)
	}
}

// TestHistoryPaging: pages after and before a seq, the newest page, the
// limit, and a page cut to fit one record.
func TestHistoryPaging(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	alice := account(t, ts, "alice", 0)
	seq := func(n int64) *int64 { return &n }
	if _, err := alice.History(ctxT(t), "r", client.HistoryQuery{}); err == nil {
		t.Fatal("history of a room not joined: no error")
	} else {
		wantCode(t, err, protocol.CodeBadRequest)
	}
	if _, err := alice.Join(ctxT(t), "r", ""); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 30; i++ {
		if _, err := alice.SendMessage(ctxT(t), "r", fmt.Sprintf("m%d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name     string
		q        client.HistoryQuery
		from, to int64
		more     bool
	}{
		{"after", client.HistoryQuery{After: seq(10), Limit: 5}, 11, 15, true},
		{"after to the end", client.HistoryQuery{After: seq(25), Limit: 10}, 26, 30, false},
		{"before", client.HistoryQuery{Before: seq(10), Limit: 3}, 7, 9, true},
		{"newest", client.HistoryQuery{Limit: 4}, 27, 30, true},
		{"all", client.HistoryQuery{}, 1, 30, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page, err := alice.History(ctxT(t), "r", tc.q)
			if err != nil {
				t.Fatal(err)
			}
			wantSeqs(t, page.Msgs, tc.from, tc.to)
			if page.More != tc.more || page.Head != 30 || page.Epoch == "" {
				t.Fatalf("more %v head %d epoch %q, want more %v head 30", page.More, page.Head, page.Epoch, tc.more)
			}
		})
	}
	_, err := alice.History(ctxT(t), "r", client.HistoryQuery{After: seq(1), Before: seq(5)})
	wantCode(t, err, protocol.CodeBadRequest)

	// Ten bodies of 15 KiB do not fit in one 64 KiB record: the page is cut
	// and paging on from its edge gets the rest.
	big := strings.Repeat("x", 15<<10)
	for range 10 {
		if _, err := alice.SendMessage(ctxT(t), "r", big, ""); err != nil {
			t.Fatal(err)
		}
	}
	var got []int64
	after := int64(30)
	for pages := 0; ; pages++ {
		page, err := alice.History(ctxT(t), "r", client.HistoryQuery{After: &after})
		if err != nil {
			t.Fatal(err)
		}
		if pages == 0 && (!page.More || len(page.Msgs) >= 10 || len(page.Msgs) == 0) {
			t.Fatalf("first page: %d messages, more %v; want a cut page", len(page.Msgs), page.More)
		}
		for _, m := range page.Msgs {
			got = append(got, m.Seq)
			after = m.Seq
		}
		if !page.More {
			break
		}
	}
	if len(got) != 10 || got[0] != 31 || got[9] != 40 {
		t.Fatalf("paged seqs %v, want 31..40", got)
	}
	// Backwards too: the page keeps the newest.
	page, err := alice.History(ctxT(t), "r", client.HistoryQuery{Before: seq(41)})
	if err != nil || !page.More || page.Msgs[len(page.Msgs)-1].Seq != 40 {
		t.Fatalf("before page: %v", err)
	}
}

// TestReadPositions: read moves the account's position forward only, the
// rooms request reports it with the head, and a later join catches up
// from it.
func TestReadPositions(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	alice := account(t, ts, "alice", 0)
	bob := account(t, ts, "bob", 1)
	for _, c := range []*client.Conn{alice, bob} {
		if _, err := c.Join(ctxT(t), "r", ""); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 8; i++ {
		if _, err := alice.SendMessage(ctxT(t), "r", fmt.Sprintf("m%d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := bob.Read(ctxT(t), "r", 5); err != nil {
		t.Fatal(err)
	}
	if err := bob.Read(ctxT(t), "r", 3); err != nil { // ignored: backwards
		t.Fatal(err)
	}
	wantCode(t, bob.Read(ctxT(t), "r", 9), protocol.CodeBadRequest)
	wantCode(t, bob.Read(ctxT(t), "nowhere", 1), protocol.CodeNotFound)
	rooms, err := bob.Rooms(ctxT(t))
	if err != nil || len(rooms) != 1 || rooms[0] != (protocol.RoomPosition{Room: "r", Head: 8, Read: 5, Epoch: rooms[0].Epoch}) || rooms[0].Epoch == "" {
		t.Fatalf("rooms: %+v, %v", rooms, err)
	}
	bob.Close()
	bob = authed(t, ts, "bob", 1)
	if _, err := bob.Join(ctxT(t), "r", ""); err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, roomMsgs(t, bob, "r", 3), 6, 8)
}

// TestAnonymousRoomStored: a room only anonymous connections use is
// stored like any other: its messages get a seq, history pages them, and
// an anonymous connection that joins later with "after" catches up; read
// positions still need an account.
func TestAnonymousRoomStored(t *testing.T) {
	ts := startServer(t, withoutRateLimits)
	a, b := ts.dial(t), ts.dial(t)
	for _, c := range []*client.Conn{a, b} {
		if _, err := c.Join(ctxT(t), "free", ""); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 3; i++ {
		s, err := a.SendMessage(ctxT(t), "free", fmt.Sprint("m", i), "")
		if err != nil || s.Seq != int64(i) || s.Epoch == "" {
			t.Fatalf("send %d: %+v, %v", i, s, err)
		}
	}
	if ms := roomMsgs(t, b, "free", 3); ms[0].Seq != 1 || ms[0].Body != "m1" || !ms[0].Anon {
		t.Fatalf("delivered %+v", ms[0])
	}
	wantCode(t, a.Read(ctxT(t), "free", 1), protocol.CodeUnauthenticated)
	page, err := a.History(ctxT(t), "free", client.HistoryQuery{})
	if err != nil || len(page.Msgs) != 3 || page.Head != 3 {
		t.Fatalf("history: %+v, %v", page, err)
	}
	late := ts.dial(t)
	after := int64(1)
	if _, err := late.JoinAfter(ctxT(t), "free", "", &after); err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, roomMsgs(t, late, "free", 2), 2, 3)
}

// TestHubCatchUpBuffer: a catching-up member gets no live message until
// FinishCatchUp, which passes on, in arrival order, those with seq 0 or
// above what the catch-up sent; after an overflow it passes on nothing
// and asks for another round.
func TestHubCatchUpBuffer(t *testing.T) {
	hub, err := NewHub(zerolog.Nop(), func(h broker.Handler) (broker.Broker, error) { return broker.NewMemoryBroker(h), nil })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go hub.Run(ctx)
	newPeer := func(id string) *peer {
		return &peer{log: zerolog.Nop(), id: id, queue: newSendQueue(2 * maxCatchUpBuffer), closeCh: make(chan closeRequest, 1), writerEnd: make(chan struct{})}
	}
	live := func(seqs ...int64) {
		hub.do(func() {
			for _, s := range seqs {
				hub.fanout(inbound{room: "r", seq: s, payload: []byte(fmt.Sprint(s))})
			}
		})
	}
	queued := func(p *peer) string {
		var got []string
		for _, b := range p.queue.take(nil) {
			got = append(got, string(b))
		}
		return strings.Join(got, " ")
	}

	p := newPeer("p")
	if _, _, err := hub.Join(ctx, p, "r", true); err != nil {
		t.Fatal(err)
	}
	live(1, 2, 0, 3)
	if got := queued(p); got != "" {
		t.Fatalf("delivered while catching up: %q", got)
	}
	if !hub.FinishCatchUp(p, "r", 2) {
		t.Fatal("FinishCatchUp without overflow: false")
	}
	live(4)
	if got := queued(p); got != "0 3 4" {
		t.Fatalf("after catching up to 2: %q, want \"0 3 4\"", got)
	}

	q := newPeer("q")
	if _, _, err := hub.Join(ctx, q, "r", true); err != nil {
		t.Fatal(err)
	}
	for s := int64(5); s <= 5+maxCatchUpBuffer; s++ {
		live(s)
	}
	if hub.FinishCatchUp(q, "r", 4) {
		t.Fatal("FinishCatchUp after an overflow: true")
	}
	if got := queued(q); got != "" {
		t.Fatalf("delivered after an overflow: %d messages", len(strings.Fields(got)))
	}
	last := int64(5 + maxCatchUpBuffer)
	live(last + 1)
	if !hub.FinishCatchUp(q, "r", last) {
		t.Fatal("second FinishCatchUp: false")
	}
	if got := queued(q); got != fmt.Sprint(last+1) {
		t.Fatalf("after the second round: %q, want %d", got, last+1)
	}
	if len(p.closeCh) != 0 || len(q.closeCh) != 0 {
		t.Fatal("a member was disconnected")
	}
}
