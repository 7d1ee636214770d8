package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/presence"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// TestPresenceCountsAboveThreshold: with a threshold of 3, joins are sent
// one by one while the room is small; once it has more members, members
// receive the room's count instead, and never a join event of the 4th or
// a later member. Each join answer lists every member and the count.
func TestPresenceCountsAboveThreshold(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *Deps) { c.PresenceThreshold = 3; c.PresenceInterval = 50 * time.Millisecond })
	first := ts.dial(t, func(c *client.Config) { c.Incoming = 1024 })
	if _, err := first.Join(ctxT(t), "r", "m0"); err != nil {
		t.Fatal(err)
	}
	const n = 7
	for i := 1; i < n; i++ {
		c := ts.dial(t)
		j, err := c.JoinAfter(ctxT(t), "r", fmt.Sprintf("m%d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		if j.Count != i+1 || len(j.Members) != i+1 || j.Members[i] != fmt.Sprintf("m%d", i) {
			t.Fatalf("join %d: members %v, count %d", i, j.Members, j.Count)
		}
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m := <-first.Messages():
			if m.Type != protocol.MsgPresence {
				continue
			}
			switch m.Event {
			case "join":
				var k int
				if _, err := fmt.Sscanf(m.From, "m%d", &k); err != nil || k >= 3 {
					t.Fatalf("join event for %q in a room above the threshold", m.From)
				}
			case protocol.PresenceCount:
				if m.Count > n || m.Count < 4 {
					t.Fatalf("count %d", m.Count)
				}
				if m.Count == n {
					return
				}
			default:
				t.Fatalf("presence event %q", m.Event)
			}
		case <-deadline:
			t.Fatal("no count event with every member")
		}
	}
}

// TestPresenceJoinLeaveCancel: a join and a leave of one connection in
// one batch cancel out; another connection's join stays queued.
func TestPresenceJoinLeaveCancel(t *testing.T) {
	p := newRoomPresence(presence.NewMemory(0), nil, zerolog.Nop(), time.Hour, 100)
	brief, stays := &peer{id: "c1", name: "brief"}, &peer{id: "c2", name: "stays"}
	for _, c := range []*peer{brief, stays} {
		if err := p.add(ctxT(t), "r", c); err != nil {
			t.Fatal(err)
		}
		p.event(ctxT(t), "r", c, "join")
	}
	p.event(ctxT(t), "r", brief, "leave")
	if got := p.pending["r"]; len(got) != 1 || got[0].m.Name != "stays" || got[0].event != "join" {
		t.Fatalf("pending %+v, want only stays's join", got)
	}
	if _, n, _ := p.reg.List(ctxT(t), "r", 10); n != 1 {
		t.Fatalf("%d members recorded, want 1", n)
	}
	p.event(ctxT(t), "r", stays, "leave")
	if len(p.pending) != 0 {
		t.Fatalf("pending %+v, want none", p.pending)
	}
}
