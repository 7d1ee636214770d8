package broker

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secure-messenger/messenger/internal/redistest"
)

// The replay guard alone, without Redis.

func nonceOf(i int) (n [nonceSize]byte) {
	n[0], n[1], n[2] = byte(i), byte(i>>8), byte(i>>16)
	return n
}

func TestReplayGuardWindow(t *testing.T) {
	const age, now = 120_000, 1_700_000_000_000
	g := newReplayGuard(age, 100)
	for i, tc := range []struct {
		published int64
		want      error
	}{
		{now, nil},
		{now - age, nil}, // the window is inclusive
		{now + age, nil},
		{now - age - 1, errStale},
		{now + age + 1, errStale},
		{now - 3*60_000, errStale},
		{now + 3*60_000, errStale},
		{0, errStale},
		{-1 << 63, errStale},
		{1<<63 - 1, errStale},
	} {
		if err := g.admit(nonceOf(i), tc.published, now); !errors.Is(err, tc.want) {
			t.Errorf("published %d at %d: err = %v, want %v", tc.published, int64(now), err, tc.want)
		}
	}
	if g.len() != 3 {
		t.Errorf("remembers %d nonces, want 3 (stale ones are not recorded)", g.len())
	}
}

func TestReplayGuardRemembersUntilExpiry(t *testing.T) {
	const age = 1000
	g := newReplayGuard(age, 100)
	n := nonceOf(1)
	if err := g.admit(n, 5000, 5000); err != nil {
		t.Fatalf("first: %v", err)
	}
	// A copy is a replay for as long as it passes the time check...
	for _, now := range []int64{5000, 5500, 6000} {
		if err := g.admit(n, 5000, now); !errors.Is(err, errReplayed) {
			t.Fatalf("copy at %d: err = %v, want errReplayed", now, err)
		}
	}
	// ...and stale afterwards, when the nonce can be (and is) forgotten.
	if err := g.admit(n, 5000, 6001); !errors.Is(err, errStale) {
		t.Fatalf("copy at 6001: err = %v, want errStale", err)
	}
	if err := g.admit(nonceOf(2), 6001, 6001); err != nil {
		t.Fatal(err)
	}
	if g.len() != 1 {
		t.Fatalf("remembers %d nonces after the sweep, want 1", g.len())
	}
	// A payload from the future is remembered until its own time + age.
	if err := g.admit(nonceOf(3), 7001, 6001); err != nil {
		t.Fatal(err)
	}
	if err := g.admit(nonceOf(3), 7001, 8001); !errors.Is(err, errReplayed) {
		t.Fatalf("future payload's copy at 8001: err = %v, want errReplayed", err)
	}
}

func TestReplayGuardBound(t *testing.T) {
	const age, now = 1000, 10_000
	g := newReplayGuard(age, 3)
	// Arrival order differs from expiry order: 2 expires first, then 0.
	for i, published := range []int64{now - 10, now + 10, now - 20, now} {
		if err := g.admit(nonceOf(i), published, now); err != nil {
			t.Fatalf("admit %d: %v", i, err)
		}
		if g.len() > 3 {
			t.Fatalf("remembers %d nonces, bound is 3", g.len())
		}
	}
	// 2 was forgotten to make room for 3: its copy gets through, once.
	for i, published := range []int64{now - 10, now + 10, now} {
		idx := []int{0, 1, 3}[i]
		if err := g.admit(nonceOf(idx), published, now); !errors.Is(err, errReplayed) {
			t.Errorf("copy of %d: err = %v, want errReplayed", idx, err)
		}
	}
	if err := g.admit(nonceOf(2), now-20, now); err != nil {
		t.Errorf("copy of the forgotten 2: err = %v, want nil", err)
	}
	if err := g.admit(nonceOf(2), now-20, now); !errors.Is(err, errReplayed) {
		t.Errorf("second copy of 2: err = %v, want errReplayed", err)
	}
}

// TestReplayGuardHeap admits random publish times and checks that the
// guard forgets them in expiry order.
func TestReplayGuardHeap(t *testing.T) {
	const age, now, n = 1_000_000, 10_000_000, 5000
	g := newReplayGuard(age, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		if err := g.admit(nonceOf(i), now-age+r.Int64N(2*age+1), now); err != nil {
			t.Fatal(err)
		}
	}
	var expiries []int64
	for g.len() > 0 {
		top := g.heap[0]
		if _, ok := g.seen[top.nonce]; !ok {
			t.Fatal("heap and set disagree")
		}
		expiries = append(expiries, top.expires)
		g.pop()
	}
	if len(expiries) != n || !slices.IsSorted(expiries) || len(g.seen) != 0 {
		t.Fatalf("popped %d entries, sorted %v, %d left in the set", len(expiries), slices.IsSorted(expiries), len(g.seen))
	}
}

func TestReplayGuardGivesMemoryBack(t *testing.T) {
	const age = 1000
	g := newReplayGuard(age, 100_000)
	for i := range 10_000 {
		if err := g.admit(nonceOf(i), 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if g.peak != 10_000 {
		t.Fatalf("peak = %d, want 10000", g.peak)
	}
	// All expire; the next admit sweeps them and rebuilds the set.
	if err := g.admit(nonceOf(1<<20), age+1, age+1); err != nil {
		t.Fatal(err)
	}
	if g.len() != 1 || len(g.seen) != 1 || g.peak != 1 || cap(g.heap) > 2 {
		t.Fatalf("after the sweep: len %d, set %d, peak %d, heap cap %d", g.len(), len(g.seen), g.peak, cap(g.heap))
	}
}

// The guard in the Redis broker.

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct{ ms atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ms.Store(time.Now().UnixMilli())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }
func skewedClock(d time.Duration) func() time.Time {
	return func() time.Time { return time.Now().Add(d) }
}

// TestRedisBrokerDropsReplayed: a sealed payload captured from Redis and
// published again, raw, is dropped by every node.
func TestRedisBrokerDropsReplayed(t *testing.T) {
	ctx := context.Background()
	client, prefix := redistest.Client(t)
	cfg := RedisConfig{Prefix: prefix, Key: testKey(t)}
	r1, r2 := newRecorder(), newRecorder()
	n1 := newTestRedisBroker(t, client, cfg, r1.handle)
	n2 := newTestRedisBroker(t, secondClient(t), cfg, r2.handle)
	mustDo(t, "Subscribe n1", n1.Subscribe(ctx, "room"))
	mustDo(t, "Subscribe n2", n2.Subscribe(ctx, "room"))

	raw := rawSubscribe(t, client, prefix+"broker:room")
	mustDo(t, "Publish", n1.Publish(ctx, "room", []byte("genuine")))
	sealed := rawReceive(t, raw)
	r1.waitFor(t, "room", "genuine")
	r2.waitFor(t, "room", "genuine")

	// The attacker can write to Redis with any client.
	attacker := secondClient(t)
	for range 3 {
		mustDo(t, "raw re-publish", attacker.Publish(ctx, prefix+"broker:room", sealed).Err())
	}
	mustDo(t, "Publish", n2.Publish(ctx, "room", []byte("marker")))
	want := []delivery{{"room", "genuine"}, {"room", "marker"}}
	for name, n := range map[string]struct {
		b *RedisBroker
		r *recorder
	}{"n1": {n1, r1}, "n2": {n2, r2}} {
		if got := n.r.waitFor(t, "room", "marker"); !slices.Equal(got, want) {
			t.Errorf("%s: deliveries = %v, want %v", name, got, want)
		}
		if d := n.b.Dropped(); d != 3 {
			t.Errorf("%s: Dropped() = %d, want 3", name, d)
		}
	}
}

// TestRedisBrokerDropsStale: payloads sealed by nodes whose clocks are 3
// minutes off are dropped; 90 seconds off is within the default window.
func TestRedisBrokerDropsStale(t *testing.T) {
	ctx := context.Background()
	client, prefix := redistest.Client(t)
	cfg := RedisConfig{Prefix: prefix, Key: testKey(t)}
	r := newRecorder()
	b := newTestRedisBroker(t, client, cfg, r.handle)
	mustDo(t, "Subscribe", b.Subscribe(ctx, "room"))

	for _, skew := range []time.Duration{-3 * time.Minute, 3 * time.Minute, -90 * time.Second, 90 * time.Second} {
		c := cfg
		c.now = skewedClock(skew)
		other := newTestRedisBroker(t, secondClient(t), c, func(string, []byte) {})
		mustDo(t, "Publish", other.Publish(ctx, "room", []byte(skew.String())))
	}
	mustDo(t, "Publish", b.Publish(ctx, "room", []byte("marker")))
	got := r.waitFor(t, "room", "marker")
	want := []delivery{{"room", "-1m30s"}, {"room", "1m30s"}, {"room", "marker"}}
	if !slices.Equal(got, want) {
		t.Fatalf("deliveries = %v, want %v", got, want)
	}
	if d := b.Dropped(); d != 2 {
		t.Fatalf("Dropped() = %d, want 2", d)
	}
}

// TestRedisBrokerReplayAfterWindow: once the window has passed, a replayed
// payload is dropped as stale, though its nonce has been forgotten.
func TestRedisBrokerReplayAfterWindow(t *testing.T) {
	ctx := context.Background()
	client, prefix := redistest.Client(t)
	clock := newFakeClock()
	r := newRecorder()
	b := newTestRedisBroker(t, client, RedisConfig{Prefix: prefix, Key: testKey(t), MaxAge: time.Minute, now: clock.Now}, r.handle)
	mustDo(t, "Subscribe", b.Subscribe(ctx, "room"))
	raw := rawSubscribe(t, client, prefix+"broker:room")
	mustDo(t, "Publish", b.Publish(ctx, "room", []byte("old")))
	sealed := rawReceive(t, raw)
	r.waitFor(t, "room", "old")

	clock.Advance(time.Minute + time.Millisecond)
	mustDo(t, "raw re-publish", client.Publish(ctx, prefix+"broker:room", sealed).Err())
	mustDo(t, "Publish", b.Publish(ctx, "room", []byte("marker")))
	got := r.waitFor(t, "room", "marker")
	if want := []delivery{{"room", "old"}, {"room", "marker"}}; !slices.Equal(got, want) {
		t.Fatalf("deliveries = %v, want %v", got, want)
	}
	if d := b.Dropped(); d != 1 {
		t.Fatalf("Dropped() = %d, want 1", d)
	}
}

// TestRedisBrokerMaxSeen: with room for two nonces, the third payload
// pushes out the one that expires first, whose copy then gets through once
// (the documented limit); the two remembered ones are still caught.
func TestRedisBrokerMaxSeen(t *testing.T) {
	ctx := context.Background()
	client, prefix := redistest.Client(t)
	clock := newFakeClock()
	r := newRecorder()
	b := newTestRedisBroker(t, client, RedisConfig{Prefix: prefix, Key: testKey(t), MaxSeen: 2, now: clock.Now}, r.handle)
	mustDo(t, "Subscribe", b.Subscribe(ctx, "room"))
	raw := rawSubscribe(t, client, prefix+"broker:room")

	var sealed [][]byte
	for _, p := range []string{"m1", "m2", "m3"} {
		clock.Advance(time.Millisecond) // distinct publish times: m1 expires first
		mustDo(t, "Publish", b.Publish(ctx, "room", []byte(p)))
		sealed = append(sealed, rawReceive(t, raw))
		r.waitFor(t, "room", p)
	}
	for _, i := range []int{2, 1, 0} {
		mustDo(t, "raw re-publish", client.Publish(ctx, prefix+"broker:room", sealed[i]).Err())
	}
	mustDo(t, "Publish", b.Publish(ctx, "room", []byte("marker")))
	got := r.waitFor(t, "room", "marker")
	want := []delivery{{"room", "m1"}, {"room", "m2"}, {"room", "m3"}, {"room", "m1"}, {"room", "marker"}}
	if !slices.Equal(got, want) {
		t.Fatalf("deliveries = %v, want %v", got, want)
	}
	if d := b.Dropped(); d != 2 {
		t.Fatalf("Dropped() = %d, want 2 (the copies of m3 and m2)", d)
	}
}
