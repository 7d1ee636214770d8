package server

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Tests of group commit (appender.go): sends written one after another
// without waiting for their acks, as cmd/load's fanout does.

// writeSend writes a send of body to room (mid: the message id, "" for
// the request id) and returns it.
func writeSend(t *testing.T, c *client.Conn, room, body, mid string) *protocol.Message {
	t.Helper()
	m := &protocol.Message{Type: protocol.MsgSend, ID: uuid.NewString(), TS: time.Now().UnixMilli(), Room: room, Body: body, Mid: mid}
	if err := c.WriteMessage(m); err != nil {
		t.Fatalf("write send %q: %v", body, err)
	}
	return m
}

// answers collects the answers (acks and errors) to the requests ids, in
// the order they arrive; messages of other types are skipped.
func answers(t *testing.T, c *client.Conn, n int) []*protocol.Message {
	t.Helper()
	var got []*protocol.Message
	timeout := time.After(20 * time.Second)
	for len(got) < n {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				t.Fatalf("connection ended after %d answers of %d: %v", len(got), n, c.Err())
			}
			if m.Ref != "" {
				got = append(got, m)
			}
		case <-timeout:
			t.Fatalf("%d answers of %d", len(got), n)
		}
	}
	return got
}

// wantAcksInOrder fails unless got answers sent, in order, with acks
// whose seqs rise; it returns the seqs.
func wantAcksInOrder(t *testing.T, who string, sent, got []*protocol.Message) []int64 {
	t.Helper()
	var seqs []int64
	for i, a := range got {
		if a.Ref != sent[i].ID {
			t.Fatalf("%s: answer %d refers to %s, want %s (send %q): answers out of order", who, i, a.Ref, sent[i].ID, sent[i].Body)
		}
		if a.Type != protocol.MsgAck || a.Epoch == "" {
			t.Fatalf("%s: answer %d to %q is %+v, want an ack with an epoch", who, i, sent[i].Body, a)
		}
		if i > 0 && a.Seq <= seqs[i-1] {
			t.Fatalf("%s: ack %d has seq %d after %d", who, i, a.Seq, seqs[i-1])
		}
		seqs = append(seqs, a.Seq)
	}
	return seqs
}

func joinRoom(t *testing.T, room string, cs ...*client.Conn) {
	t.Helper()
	for _, c := range cs {
		if _, err := c.Join(ctxT(t), room, ""); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPipelinedSends: one connection writes many sends without waiting.
// Every one is stored once, its acks come in the order of the sends with
// rising seqs (1..n: the only sender), the members get them all in seq
// order, and a history request written right after them is answered
// after the last ack and holds them all.
func TestPipelinedSends(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	ca := registered(t, ts, identity(t, "alice", 0))
	cb := registered(t, ts, identity(t, "bob", 1))
	joinRoom(t, "general", ca, cb)

	const n = 150 // more than maxSendsInFlight: the reader waits, then goes on
	var sent []*protocol.Message
	for i := range n {
		sent = append(sent, writeSend(t, ca, "general", fmt.Sprintf("alice/%d", i), ""))
	}
	after := int64(0)
	hist := &protocol.Message{Type: protocol.MsgHistory, ID: uuid.NewString(), TS: time.Now().UnixMilli(), Room: "general", After: &after, Limit: store.MaxHistoryLimit}
	if err := ca.WriteMessage(hist); err != nil {
		t.Fatal(err)
	}
	got := answers(t, ca, n+1)
	seqs := wantAcksInOrder(t, "alice", sent, got[:n])
	if seqs[0] != 1 || seqs[n-1] != n {
		t.Errorf("acks run from seq %d to %d, want 1 to %d", seqs[0], seqs[n-1], n)
	}
	h := got[n]
	if h.Ref != hist.ID || h.Type != protocol.MsgHistory {
		t.Fatalf("last answer %+v, want the history", h)
	}
	wantExactlyOnce(t, "history", h.Msgs, n)
	wantExactlyOnce(t, "bob", roomMsgs(t, cb, "general", n), n)
}

// TestConcurrentPipelinedSenders: two connections pipeline sends to one
// room at once. Each gets its acks in its own order; a third member gets
// all of them once, in seq order and each sender's in its order.
func TestConcurrentPipelinedSenders(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	ca := registered(t, ts, identity(t, "alice", 0))
	cb := registered(t, ts, identity(t, "bob", 1))
	cc := registered(t, ts, identity(t, "carol", 2))
	joinRoom(t, "general", ca, cb, cc)

	const n = 100
	sent := make([][]*protocol.Message, 2)
	done := make(chan error, 2)
	for k, c := range []*client.Conn{ca, cb} {
		go func() {
			name := []string{"alice", "bob"}[k]
			for i := range n {
				m := &protocol.Message{Type: protocol.MsgSend, ID: uuid.NewString(), TS: time.Now().UnixMilli(), Room: "general", Body: fmt.Sprintf("%s/%d", name, i)}
				if err := c.WriteMessage(m); err != nil {
					done <- err
					return
				}
				sent[k] = append(sent[k], m)
			}
			done <- nil
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	var all []int64
	for k, c := range []*client.Conn{ca, cb} {
		all = append(all, wantAcksInOrder(t, []string{"alice", "bob"}[k], sent[k], answers(t, c, n))...)
	}
	seen := map[int64]bool{}
	for _, s := range all {
		if seen[s] || s < 1 || s > 2*n {
			t.Fatalf("seq %d acked twice or out of 1..%d", s, 2*n)
		}
		seen[s] = true
	}
	wantExactlyOnce(t, "carol", roomMsgs(t, cc, "general", 2*n), 2*n)
}

// TestPipelinedSendRefusals: in a pipeline, a send whose message id
// another sender took gets conflict, one to a room the sender is not in
// gets bad_request, and a retry of the sender's own stored message gets
// its first ack again; each in its turn, the others are stored, and the
// members get each message once.
func TestPipelinedSendRefusals(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	ca := registered(t, ts, identity(t, "alice", 0))
	cb := registered(t, ts, identity(t, "bob", 1))
	cc := registered(t, ts, identity(t, "carol", 2))
	joinRoom(t, "general", ca, cb, cc)

	takenMid := uuid.NewString()
	if _, err := ca.SendMessage(ctxT(t), "general", "alice/0", takenMid); err != nil {
		t.Fatal(err)
	}
	bobFirst := writeSend(t, cb, "general", "bob/0", "")
	sent := []*protocol.Message{
		bobFirst,
		writeSend(t, cb, "general", "stolen", takenMid),
		writeSend(t, cb, "elsewhere", "not a member", ""),
		writeSend(t, cb, "general", "bob/1", ""),
		writeSend(t, cb, "general", "bob/0 again", bobFirst.ID),
		writeSend(t, cb, "general", "bob/2", ""),
	}
	got := answers(t, cb, len(sent))
	for i, a := range got {
		if a.Ref != sent[i].ID {
			t.Fatalf("answer %d refers to %s, want %s (%q)", i, a.Ref, sent[i].ID, sent[i].Body)
		}
	}
	if got[1].Type != protocol.MsgError || got[1].Code != protocol.CodeConflict {
		t.Errorf("stolen id: %+v, want conflict", got[1])
	}
	if got[2].Type != protocol.MsgError || got[2].Code != protocol.CodeBadRequest {
		t.Errorf("not a member: %+v, want bad_request", got[2])
	}
	for _, i := range []int{0, 3, 4, 5} {
		if got[i].Type != protocol.MsgAck {
			t.Fatalf("answer %d (%q): %+v, want an ack", i, sent[i].Body, got[i])
		}
	}
	if got[0].Seq != 2 || got[3].Seq != 3 || got[4].Seq != 2 || got[5].Seq != 4 {
		t.Errorf("acks have seqs %d %d %d %d, want 2 3 2 4 (the retry gets its first seq)", got[0].Seq, got[3].Seq, got[4].Seq, got[5].Seq)
	}
	wantExactlyOnce(t, "carol", roomMsgs(t, cc, "general", 4), 4)
	// Nothing more reached carol: no second copy of the retry, nothing
	// of the conflict. A send after them comes next, with seq 5.
	if _, err := ca.SendMessage(ctxT(t), "general", "alice/1", ""); err != nil {
		t.Fatal(err)
	}
	if m := roomMsgs(t, cc, "general", 1)[0]; m.Seq != 5 || m.Body != "alice/1" {
		t.Errorf("next message %d %q, want 5 alice/1", m.Seq, m.Body)
	}
}

// TestPipelinedSendsToStreamlessRoom: a room whose row is gone from the
// database (so that it has no stream) has its sends relayed without a
// seq, in order among stored ones.
func TestPipelinedSendsToStreamlessRoom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "messenger.db")
	db, err := store.OpenSQLite(context.Background(), path, store.WithKeyring(testKeyring(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ts := startServer(t, withoutRateLimits, func(_ *Config, d *Deps) { d.Store = db })
	ca, cb := ts.dial(t), ts.dial(t)
	joinRoom(t, "drop-in", ca, cb)
	joinRoom(t, "kept", ca, cb)

	// Behind the server's back: the room "drop-in" is gone, with no
	// stream yet. ("kept" keeps its row.)
	raw, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`DELETE FROM rooms WHERE name = 'drop-in'`); err != nil {
		t.Fatal(err)
	}

	const n = 40
	var sent []*protocol.Message
	for i := range n {
		room := "drop-in"
		if i%4 == 3 {
			room = "kept"
		}
		sent = append(sent, writeSend(t, ca, room, fmt.Sprintf("%s %d", room, i), ""))
	}
	got := answers(t, ca, n)
	var keptSeq int64
	for i, a := range got {
		if a.Ref != sent[i].ID || a.Type != protocol.MsgAck {
			t.Fatalf("answer %d: %+v, want the ack of %q", i, a, sent[i].Body)
		}
		if sent[i].Room == "kept" {
			if a.Seq != keptSeq+1 {
				t.Fatalf("ack %d in kept: seq %d after %d", i, a.Seq, keptSeq)
			}
			keptSeq = a.Seq
		} else if a.Seq != 0 || a.Epoch != "" {
			t.Fatalf("ack %d of a relayed message: %+v, want no seq", i, a)
		}
	}
	// Bob gets every message, in the order sent (one sender, one node).
	var bodies []string
	for len(bodies) < n {
		m := next(t, cb, protocol.MsgMessage)
		if (m.Room == "drop-in") != (m.Seq == 0) {
			t.Fatalf("bob got %+v: a relayed message has no seq, a kept one has", m)
		}
		bodies = append(bodies, m.Body)
	}
	for i := range n {
		if bodies[i] != sent[i].Body {
			t.Fatalf("bob's message %d is %q, want %q", i, bodies[i], sent[i].Body)
		}
	}
}

// TestShutdownWithSendsInFlight: Shutdown while a connection has sends in
// flight returns only once they are stored and published. What is stored
// is a prefix of the sends, in order, each once; every ack the sender got
// names its send's seq; and nothing is stored after Shutdown returned.
func TestShutdownWithSendsInFlight(t *testing.T) {
	db, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "messenger.db"), store.WithKeyring(testKeyring(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ts := startServer(t, withoutRateLimits, func(_ *Config, d *Deps) { d.Store = db })
	ca, cb := ts.dial(t), ts.dial(t)
	joinRoom(t, "general", ca, cb)

	const n, first = 200, 10
	var sent []*protocol.Message
	acks := map[string]int64{}
	for i := range n {
		m := &protocol.Message{Type: protocol.MsgSend, ID: uuid.NewString(), TS: time.Now().UnixMilli(), Room: "general", Body: fmt.Sprintf("m%d", i)}
		if err := ca.WriteMessage(m); err != nil {
			break // the server is going away
		}
		sent = append(sent, m)
		if i == first {
			// Shut down once one send is acked, while the others are
			// being read and committed and more are written.
			a := answers(t, ca, 1)[0]
			if a.Type != protocol.MsgAck || a.Ref != sent[0].ID {
				t.Fatalf("first answer %+v, want the ack of the first send", a)
			}
			acks[a.Ref] = a.Seq
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := ts.Shutdown(ctx); err != nil {
					t.Errorf("shutdown: %v", err)
				}
			}()
		}
	}
	for m := range ca.Messages() { // until going_away ends the connection
		if m.Type == protocol.MsgAck {
			acks[m.Ref] = m.Seq
		}
	}
	// Shutdown has returned once the server refuses new connections and
	// its handlers are done: wait for it through a second call.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	stored := func() []store.StoredMessage {
		ms, _, err := db.History(ctx, store.RoomStream("general"), store.HistoryQuery{After: new(int64), Limit: store.MaxHistoryLimit})
		if err != nil {
			t.Fatal(err)
		}
		return ms
	}
	ms := stored()
	for i, m := range ms {
		if i >= len(sent) || m.ID.String() != sent[i].ID || m.Seq != int64(i+1) {
			t.Fatalf("stored message %d is %q (seq %d), want send %d in order", i, m.Body, m.Seq, i)
		}
	}
	for i, m := range sent {
		seq, ok := acks[m.ID]
		if ok && (seq != int64(i+1) || i >= len(ms)) {
			t.Errorf("send %d acked with seq %d, but %d messages are stored", i, seq, len(ms))
		}
	}
	time.Sleep(200 * time.Millisecond)
	if again := stored(); len(again) != len(ms) {
		t.Errorf("%d messages stored when Shutdown returned, %d a little later", len(ms), len(again))
	}
	t.Logf("%d sends written, %d stored, %d acked", len(sent), len(ms), len(acks))
}

// TestClusterPipelinedSends: two senders on two nodes (one PostgreSQL
// database, one Redis) pipeline sends to one room at once. Each gets its
// acks in its order; members on both nodes get every message once, in
// seq order, each sender's in the order sent.
func TestClusterPipelinedSends(t *testing.T) {
	tc := newTestCluster(t, 2, withoutRateLimits)
	ids := clusterUsers(t, tc)
	senders := []*client.Conn{authOn(t, tc.nodes[0], ids[0]), authOn(t, tc.nodes[1], ids[1])}
	readers := []*client.Conn{authOn(t, tc.nodes[0], ids[2]), authOn(t, tc.nodes[1], ids[2])}
	joinRoom(t, "r", append(slices.Clone(senders), readers...)...)
	var cols []*collector
	for _, c := range readers {
		cols = append(cols, collect(c, "r"))
	}

	const n = 100
	sent := make([][]*protocol.Message, len(senders))
	errs := make(chan error, len(senders))
	for k, c := range senders {
		go func() {
			for i := range n {
				m := &protocol.Message{Type: protocol.MsgSend, ID: uuid.NewString(), TS: time.Now().UnixMilli(), Room: "r", Body: fmt.Sprintf("%s/%d", ids[k].User, i)}
				if err := c.WriteMessage(m); err != nil {
					errs <- err
					return
				}
				sent[k] = append(sent[k], m)
			}
			errs <- nil
		}()
	}
	for range senders {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for k, c := range senders {
		wantAcksInOrder(t, ids[k].User, sent[k], answers(t, c, n))
	}
	for i, col := range cols {
		wantExactlyOnce(t, fmt.Sprintf("carol on node %d", i), col.wait(t, "carol", 2*n), 2*n)
	}
}
