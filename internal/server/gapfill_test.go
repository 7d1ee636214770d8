package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/client"
)

// storeBehindBroker appends a message to the room's stream without
// publishing it: what a broker that lost the publish leaves behind.
func storeBehindBroker(t *testing.T, ts *testServer, room, user, body string) int64 {
	t.Helper()
	u, err := ts.store.UserByName(ctxT(t), user)
	if err != nil {
		t.Fatal(err)
	}
	sm, _, err := ts.store.AppendMessage(ctxT(t), store.StoredMessage{
		Stream: store.RoomStream(room), ID: uuid.New(), Sender: u.ID, SenderName: user,
		Kind: store.KindMessage, Body: []byte(body), CreatedAt: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return sm.Seq
}

// TestGapFilledByNextMessage: messages stored but never published reach
// every member, in order and once, before the next published one; and a
// counted fill reports them.
func TestGapFilledByNextMessage(t *testing.T) {
	filled := make(chan int, 16)
	ts := authServer(t, withoutRateLimits, func(_ *Config, d *Deps) { d.OnGapFilled = func(n int) { filled <- n } })
	alice := account(t, ts, "alice", 0)
	bob := account(t, ts, "bob", 1)
	for _, c := range []*client.Conn{alice, bob} {
		if _, err := c.Join(ctxT(t), "r", ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := alice.SendMessage(ctxT(t), "r", "m1", ""); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 4; i++ {
		if seq := storeBehindBroker(t, ts, "r", "alice", fmt.Sprintf("m%d", i)); seq != int64(i) {
			t.Fatalf("stored seq %d, want %d", seq, i)
		}
	}
	if _, err := alice.SendMessage(ctxT(t), "r", "m5", ""); err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, roomMsgs(t, bob, "r", 5), 1, 5)
	wantSeqs(t, roomMsgs(t, alice, "r", 5), 1, 5)
	select {
	case n := <-filled:
		if n != 3 {
			t.Fatalf("fill reported %d messages, want 3", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no fill reported")
	}
}

// TestGapFilledBySweep: a lost last message, with nothing after it, is
// found by the periodic check.
func TestGapFilledBySweep(t *testing.T) {
	ts := authServer(t, withoutRateLimits, func(c *Config, _ *Deps) { c.GapCheck = 200 * time.Millisecond })
	alice := account(t, ts, "alice", 0)
	bob := account(t, ts, "bob", 1)
	for _, c := range []*client.Conn{alice, bob} {
		if _, err := c.Join(ctxT(t), "r", ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := alice.SendMessage(ctxT(t), "r", "m1", ""); err != nil {
		t.Fatal(err)
	}
	storeBehindBroker(t, ts, "r", "alice", "m2")
	wantSeqs(t, roomMsgs(t, bob, "r", 2), 1, 2)
	if _, err := alice.SendMessage(ctxT(t), "r", "m3", ""); err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, roomMsgs(t, bob, "r", 1), 3, 3)
}
