package presence

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secure-messenger/messenger/internal/redistest"
)

// testRegistry runs the contract every Registry meets. newReg returns a
// registry whose entries live ttl; registries made by one test share
// their state (the nodes of one deployment).
func testRegistry(t *testing.T, newReg func(ttl time.Duration) Registry) {
	ctx := context.Background()
	alice := Member{ID: "c1", Name: "alice"}
	bob := Member{ID: "c2", Name: "bob"}
	anon := Member{ID: "c3", Name: "anon-1234", Anon: true}

	t.Run("add list remove", func(t *testing.T) {
		r := newReg(time.Minute)
		for _, m := range []Member{bob, anon, alice} {
			if err := r.Add(ctx, "room", m); err != nil {
				t.Fatal(err)
			}
		}
		got, n, err := r.List(ctx, "room", 10)
		if err != nil || n != 3 || fmt.Sprint(got) != fmt.Sprint([]Member{alice, anon, bob}) {
			t.Fatalf("list: %v, %d, %v", got, n, err)
		}
		if got, n, _ := r.List(ctx, "room", 0); len(got) != 0 || n != 3 {
			t.Fatalf("count only: %v, %d", got, n)
		}
		if got, n, _ := r.List(ctx, "room", 2); len(got) != 2 || n != 3 {
			t.Fatalf("limit 2: %v, %d", got, n)
		}
		if got, n, _ := r.List(ctx, "other", 10); len(got) != 0 || n != 0 {
			t.Fatalf("other room: %v, %d", got, n)
		}
		if err := r.Remove(ctx, "room", anon); err != nil {
			t.Fatal(err)
		}
		if err := r.Remove(ctx, "room", anon); err != nil {
			t.Fatalf("second remove: %v", err)
		}
		if got, n, _ := r.List(ctx, "room", 10); n != 2 || fmt.Sprint(got) != fmt.Sprint([]Member{alice, bob}) {
			t.Fatalf("after remove: %v, %d", got, n)
		}
		renamed := Member{ID: "c1", Name: "alice2"}
		if err := r.Add(ctx, "room", renamed); err != nil {
			t.Fatal(err)
		}
		if got, n, _ := r.List(ctx, "room", 10); n != 2 || got[0] != renamed {
			t.Fatalf("after re-add: %v, %d", got, n)
		}
	})

	t.Run("two nodes see each other", func(t *testing.T) {
		r1, r2 := newReg(time.Minute), newReg(time.Minute)
		if err := r1.Add(ctx, "shared", alice); err != nil {
			t.Fatal(err)
		}
		if err := r2.Add(ctx, "shared", bob); err != nil {
			t.Fatal(err)
		}
		for _, r := range []Registry{r1, r2} {
			if got, n, _ := r.List(ctx, "shared", 10); n != 2 || len(got) != 2 {
				t.Fatalf("list: %v, %d", got, n)
			}
		}
	})

	t.Run("expiry and refresh", func(t *testing.T) {
		r := newReg(1500 * time.Millisecond)
		if r.TTL() != 1500*time.Millisecond {
			t.Fatalf("TTL %v", r.TTL())
		}
		if err := r.Add(ctx, "exp", alice); err != nil {
			t.Fatal(err)
		}
		if err := r.Add(ctx, "exp", bob); err != nil {
			t.Fatal(err)
		}
		// Refresh alice until bob (never refreshed) is gone.
		deadline := time.Now().Add(20 * time.Second)
		for {
			if err := r.Refresh(ctx, []Entry{{Room: "exp", Member: alice}}); err != nil {
				t.Fatal(err)
			}
			got, n, err := r.List(ctx, "exp", 10)
			if err != nil {
				t.Fatal(err)
			}
			if n == 1 {
				if got[0] != alice {
					t.Fatalf("left: %v", got)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("bob never expired: %v", got)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// A removed member is not brought back by Refresh.
		if err := r.Remove(ctx, "exp", alice); err != nil {
			t.Fatal(err)
		}
		if err := r.Refresh(ctx, []Entry{{Room: "exp", Member: alice}}); err != nil {
			t.Fatal(err)
		}
		if _, n, _ := r.List(ctx, "exp", 10); n != 0 {
			t.Fatalf("refresh brought back a removed member: %d", n)
		}
		// Without refresh, everyone goes.
		if err := r.Add(ctx, "exp", alice); err != nil {
			t.Fatal(err)
		}
		for {
			if _, n, _ := r.List(ctx, "exp", 10); n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("alice never expired")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := r.Refresh(ctx, []Entry{{Room: "exp", Member: alice}}); err != nil {
			t.Fatal(err)
		}
		if _, n, _ := r.List(ctx, "exp", 10); n != 0 {
			t.Fatalf("refresh brought back an expired member: %d", n)
		}
	})
}

func TestMemory(t *testing.T) {
	shared := NewMemory(0)
	testRegistry(t, func(ttl time.Duration) Registry {
		// One memory registry is one node; "nodes" of a test share it.
		if ttl == time.Minute {
			return shared
		}
		return NewMemory(ttl)
	})
}

func TestRedis(t *testing.T) {
	rc, prefix := redistest.Client(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	testRegistry(t, func(ttl time.Duration) Registry {
		r, err := NewRedis(rc, RedisConfig{Prefix: prefix, Key: key, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return r
	})
}

// TestRedisSealsNames: Redis holds no member name, and a registry with
// another key counts the members but lists none of them.
func TestRedisSealsNames(t *testing.T) {
	rc, prefix := redistest.Client(t)
	key, other := make([]byte, 32), make([]byte, 32)
	_, _ = rand.Read(key)
	_, _ = rand.Read(other)
	r, _ := NewRedis(rc, RedisConfig{Prefix: prefix, Key: key})
	ctx := context.Background()
	if err := r.Add(ctx, "room", Member{ID: "c1", Name: "marker-name-xyz"}); err != nil {
		t.Fatal(err)
	}
	keys, err := rc.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		dump, err := rc.Dump(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(dump, "marker-name-xyz") {
			t.Fatalf("key %s holds the name in the clear", k)
		}
	}
	r2, _ := NewRedis(rc, RedisConfig{Prefix: prefix, Key: other})
	if got, n, err := r2.List(ctx, "room", 10); err != nil || n != 1 || len(got) != 0 {
		t.Fatalf("other key: %v, %d, %v", got, n, err)
	}
	if _, err := NewRedis(rc, RedisConfig{Key: key[:16]}); err == nil {
		t.Fatal("16-byte key accepted")
	}
}

// TestRedisDown: every call fails with ErrUnavailable.
func TestRedisDown(t *testing.T) {
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rc.Close()
	r, _ := NewRedis(rc, RedisConfig{Key: make([]byte, 32)})
	ctx := context.Background()
	m := Member{ID: "c1", Name: "a"}
	for name, err := range map[string]error{
		"add":     r.Add(ctx, "r", m),
		"remove":  r.Remove(ctx, "r", m),
		"refresh": r.Refresh(ctx, []Entry{{Room: "r", Member: m}}),
	} {
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, _, err := r.List(ctx, "r", 1); !errors.Is(err, ErrUnavailable) {
		t.Errorf("list: %v", err)
	}
}

// TestRedisCluster runs the contract on a 3-shard Redis Cluster started
// for the test: a room's two keys share the hash tag {room}, so the
// scripts and MULTI that name both never fail with CROSSSLOT, and Refresh
// pipelines rooms of different shards.
func TestRedisCluster(t *testing.T) {
	addrs := redistest.StartCluster(t, 3)
	rc, prefix := redistest.ClusterClient(t, addrs)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	testRegistry(t, func(ttl time.Duration) Registry {
		r, err := NewRedis(rc, RedisConfig{Prefix: prefix, Key: key, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return r
	})
}
