package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/broker"
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

// TestCountSpacing: counts of a room above the threshold are spaced by
// interval × members / threshold, between interval and maxCountSpacing.
func TestCountSpacing(t *testing.T) {
	const iv = 200 * time.Millisecond
	for _, tc := range []struct {
		threshold, n int
		want         time.Duration
	}{
		{100, 50, iv},
		{100, 100, iv},
		{100, 150, 300 * time.Millisecond},
		{100, 1000, 2 * time.Second},
		{100, 5000, maxCountSpacing},
		{100, 19500, maxCountSpacing},
		{0, 5000, iv},
	} {
		if got := countSpacing(iv, tc.threshold, tc.n); got != tc.want {
			t.Errorf("countSpacing(%v, %d, %d) = %v, want %v", iv, tc.threshold, tc.n, got, tc.want)
		}
	}
	if got := countSpacing(time.Minute, 100, 5000); got != time.Minute {
		t.Errorf("an interval above maxCountSpacing: spacing %v, want the interval", got)
	}
}

// publishLog is a memory broker that remembers what was published.
type publishLog struct {
	broker.Broker
	mu   sync.Mutex
	msgs []*protocol.Message
}

func (b *publishLog) Publish(ctx context.Context, channel string, payload []byte) error {
	m, err := protocol.DecodeMessage(payload[8:]) // after the hub's seq
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
	return b.Broker.Publish(ctx, channel, payload)
}

func (b *publishLog) take() []*protocol.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.msgs
	b.msgs = nil
	return out
}

// TestPresenceCountsSpacedInLargeRooms: a room above the threshold that
// keeps changing gets its next count only once countSpacing has passed
// since the last one; the deferred count then carries the latest member
// count, even when the change that caused it cancelled out meanwhile.
func TestPresenceCountsSpacedInLargeRooms(t *testing.T) {
	var pl *publishLog
	hub, err := NewHub(zerolog.Nop(), func(h broker.Handler) (broker.Broker, error) {
		pl = &publishLog{Broker: broker.NewMemoryBroker(h)}
		return pl, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hub.Close() })
	const iv, threshold = 200 * time.Millisecond, 2
	p := newRoomPresence(presence.NewMemory(0), hub, zerolog.Nop(), iv, threshold)
	clock := time.Unix(1_800_000_000, 0)
	p.now = func() time.Time { return clock }
	join := func(i int) *peer {
		c := &peer{id: fmt.Sprintf("c%d", i), name: fmt.Sprintf("m%d", i)}
		if err := p.add(ctxT(t), "r", c); err != nil {
			t.Fatal(err)
		}
		p.event(ctxT(t), "r", c, "join")
		return c
	}
	wantCounts := func(step string, want ...int) {
		t.Helper()
		var got []int
		for _, m := range pl.take() {
			if m.Event != protocol.PresenceCount {
				t.Fatalf("%s: presence %q from %q, want counts only", step, m.Event, m.From)
			}
			got = append(got, m.Count)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: counts %v, want %v", step, got, want)
		}
	}
	for i := range 10 {
		join(i)
	}
	p.flush(ctxT(t))
	wantCounts("first batch", 10)

	// 11 members: the next count is due 200 ms × 11 / 2 = 1.1 s later.
	join(10)
	for range 5 {
		clock = clock.Add(iv)
		p.flush(ctxT(t))
		wantCounts("within the spacing")
	}
	clock = clock.Add(iv) // 1.2 s
	p.flush(ctxT(t))
	wantCounts("after the spacing", 11)

	// A connection that comes and goes while the count is deferred: the
	// deferred count is still sent, once due.
	brief := join(11)
	clock = clock.Add(iv)
	p.flush(ctxT(t))
	wantCounts("deferred")
	p.event(ctxT(t), "r", brief, "leave") // cancels the only event kept
	clock = clock.Add(maxCountSpacing)
	p.flush(ctxT(t))
	wantCounts("due", 11)
	clock = clock.Add(maxCountSpacing)
	p.flush(ctxT(t))
	wantCounts("quiet")
	if len(p.lastCount) != 0 || len(p.counting) != 0 || len(p.pending) != 0 {
		t.Fatalf("a quiet room is still remembered: lastCount %v counting %v pending %v", p.lastCount, p.counting, p.pending)
	}
}
