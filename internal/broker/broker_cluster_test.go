package broker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secure-messenger/messenger/internal/redistest"
)

// TestRedisBrokerCluster runs the broker contract on a 3-shard Redis
// Cluster started for the test, where the broker uses sharded Pub/Sub,
// then checks what is particular to it.
func TestRedisBrokerCluster(t *testing.T) {
	addrs := redistest.StartCluster(t, 3)
	ctx := context.Background()
	newBroker := func(t *testing.T, h Handler) (*RedisBroker, *redis.ClusterClient, RedisConfig) {
		client, prefix := redistest.ClusterClient(t, addrs)
		cfg := RedisConfig{Prefix: prefix, Key: testKey(t)}
		b := newTestRedisBroker(t, client, cfg, h)
		if b.cluster == nil {
			t.Fatal("the broker on a cluster client does not use sharded Pub/Sub")
		}
		return b, client, cfg
	}

	t.Run("Contract", func(t *testing.T) {
		testBroker(t, func(t *testing.T, h Handler) Broker {
			b, _, _ := newBroker(t, h)
			return b
		})
	})

	t.Run("TwoNodes", func(t *testing.T) {
		r1, r2 := newRecorder(), newRecorder()
		n1, _, cfg := newBroker(t, r1.handle)
		other := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
		t.Cleanup(func() { _ = other.Close() })
		n2 := newTestRedisBroker(t, other, cfg, r2.handle)
		var rooms []string
		for i := range 20 {
			rooms = append(rooms, fmt.Sprintf("room:%d", i))
		}
		for _, room := range rooms {
			mustDo(t, "Subscribe n1", n1.Subscribe(ctx, room))
			mustDo(t, "Subscribe n2", n2.Subscribe(ctx, room))
		}
		for _, room := range rooms {
			mustDo(t, "Publish n1", n1.Publish(ctx, room, []byte("from n1")))
			mustDo(t, "Publish n2", n2.Publish(ctx, room, []byte("from n2")))
		}
		for _, room := range rooms {
			for _, r := range []*recorder{r1, r2} {
				r.waitFor(t, room, "from n1")
				r.waitFor(t, room, "from n2")
			}
		}
	})

	t.Run("SpreadsOverShards", func(t *testing.T) {
		b, client, _ := newBroker(t, func(string, []byte) {})
		shards := map[string]bool{}
		for i := range 64 {
			rc := b.redisChannel(fmt.Sprintf("room:r%d", i))
			if !strings.HasPrefix(rc, b.chanPrefix+"{") {
				t.Fatalf("channel %q has no hash tag", rc)
			}
			c, err := client.MasterForKey(ctx, rc)
			if err != nil {
				t.Fatal(err)
			}
			shards[c.Options().Addr] = true
		}
		if len(shards) != 3 {
			t.Fatalf("64 rooms' channels are on %d shards (%v), want 3", len(shards), shards)
		}
	})

	// What goes over Redis is sealed, under the sharded channel name, and
	// only SPUBLISH carries it: a plain SUBSCRIBE gets nothing.
	t.Run("PayloadIsSealedAndSharded", func(t *testing.T) {
		b, client, _ := newBroker(t, func(string, []byte) {})
		rc := b.redisChannel("room")
		sharded := client.SSubscribe(ctx, rc)
		t.Cleanup(func() { _ = sharded.Close() })
		plain := client.Subscribe(ctx, rc)
		t.Cleanup(func() { _ = plain.Close() })
		for _, ps := range []*redis.PubSub{sharded, plain} {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if _, err := ps.Receive(rctx); err != nil {
				t.Fatalf("raw subscribe: %v", err)
			}
			cancel()
		}
		mustDo(t, "Publish", b.Publish(ctx, "room", []byte("the plaintext")))
		sealed := rawReceive(t, sharded)
		if strings.Contains(string(sealed), "the plaintext") || len(sealed) != sealOverhead+len("the plaintext") {
			t.Fatalf("sealed payload = %q", sealed)
		}
		if o, err := b.open(rc, sealed); err != nil || string(o.payload) != "the plaintext" {
			t.Fatalf("open = %q, %v", o.payload, err)
		}
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		if m, err := plain.ReceiveMessage(rctx); err == nil {
			t.Fatalf("a plain SUBSCRIBE got %q", m.Payload)
		}
	})

	// When Redis drops the Pub/Sub connections, go-redis reconnects each
	// partition to the shard that owns it and subscribes again: Reconnects
	// counts it and messages flow again, on every partition.
	t.Run("Reconnect", func(t *testing.T) {
		r := newRecorder()
		b, _, _ := newBroker(t, r.handle)
		var rooms []string
		for i := range 20 {
			room := fmt.Sprintf("room:%d", i)
			rooms = append(rooms, room)
			mustDo(t, "Subscribe", b.Subscribe(ctx, room))
		}
		killer := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
		t.Cleanup(func() { _ = killer.Close() })
		err := killer.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.ClientKillByFilter(ctx, "TYPE", "pubsub").Err()
		})
		mustDo(t, "CLIENT KILL TYPE pubsub", err)
		deadline := time.Now().Add(30 * time.Second)
		for b.Reconnects() < uint64(len(rooms)) {
			if time.Now().After(deadline) {
				t.Fatalf("Reconnects() = %d after the connections were killed, want ≥ %d", b.Reconnects(), len(rooms))
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, room := range rooms {
			mustDo(t, "Publish", b.Publish(ctx, room, []byte("after")))
		}
		for _, room := range rooms {
			r.waitFor(t, room, "after")
		}
	})
}

// TestRedisBrokerClusterSlotMoves: when the slot of a subscribed channel
// moves to another shard, Redis unsubscribes the broker from it; the
// broker reconnects that partition to the new owner, counts a reconnect,
// and delivers again.
func TestRedisBrokerClusterSlotMoves(t *testing.T) {
	addrs := redistest.StartCluster(t, 3)
	ctx := context.Background()
	client, prefix := redistest.ClusterClient(t, addrs)
	r := newRecorder()
	b := newTestRedisBroker(t, client, RedisConfig{Prefix: prefix, Key: testKey(t)}, r.handle)
	mustDo(t, "Subscribe", b.Subscribe(ctx, "room"))
	mustDo(t, "Publish", b.Publish(ctx, "room", []byte("before")))
	r.waitFor(t, "room", "before")

	rc := b.redisChannel("room")
	slot, err := client.ClusterKeySlot(ctx, rc).Result()
	mustDo(t, "CLUSTER KEYSLOT", err)
	owner, err := client.MasterForKey(ctx, rc)
	mustDo(t, "owner", err)
	var target string
	for _, a := range addrs {
		if a != owner.Options().Addr {
			c := redis.NewClient(&redis.Options{Addr: a})
			target, err = c.ClusterMyID(ctx).Result()
			_ = c.Close()
			mustDo(t, "CLUSTER MYID", err)
			break
		}
	}
	// The slot holds no keys, so assigning it is the whole migration.
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		err := c.Do(ctx, "cluster", "setslot", slot, "node", target).Err()
		_ = c.Close()
		mustDo(t, "CLUSTER SETSLOT "+a, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for b.Reconnects() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the broker did not reconnect the partition whose slot moved")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Reconnects counts the new shard's confirmation, so a message
	// published now (the client follows the MOVED answer to the new owner)
	// is delivered.
	mustDo(t, "Publish", b.Publish(ctx, "room", []byte("after")))
	r.waitFor(t, "room", "after")
}
