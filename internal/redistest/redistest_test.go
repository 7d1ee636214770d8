package redistest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/secure-messenger/messenger/internal/redistest"
)

func TestClientDeletesItsKeysAfterTheTest(t *testing.T) {
	var prefix string
	var keep redis.UniversalClient
	t.Run("writer", func(t *testing.T) {
		client, p := redistest.Client(t)
		prefix = p
		if !strings.HasPrefix(p, "msgrtest:") || !strings.HasSuffix(p, ":") {
			t.Fatalf("prefix = %q, want msgrtest:<uuid>:", p)
		}
		ctx := context.Background()
		for _, k := range []string{"a", "b", "c:d"} {
			if err := client.Set(ctx, p+k, "v", 0).Err(); err != nil {
				t.Fatalf("set: %v", err)
			}
		}
	})
	if prefix == "" {
		t.Skip("writer subtest skipped (no redis)")
	}
	// A second client (with its own prefix) checks that the first one's keys
	// are gone.
	keep, _ = redistest.Client(t)
	var keys []string
	it := keep.Scan(context.Background(), 0, prefix+"*", 1000).Iterator()
	for it.Next(context.Background()) {
		keys = append(keys, it.Val())
	}
	if err := it.Err(); err != nil {
		t.Fatalf("scan: %v", err)
	}
	if len(keys) != 0 {
		t.Fatalf("keys left after cleanup: %v", keys)
	}
}

func TestClientPrefixesAreUnique(t *testing.T) {
	_, p1 := redistest.Client(t)
	_, p2 := redistest.Client(t)
	if p1 == p2 {
		t.Fatalf("two calls returned the same prefix %q", p1)
	}
}

// TestStartCluster: the cluster StartCluster starts serves keys of every
// slot from the client's view, spreads slots over all the shards, and
// ClusterClient's cleanup deletes the keys of its prefix on every shard.
func TestStartCluster(t *testing.T) {
	addrs := redistest.StartCluster(t, 3)
	if len(addrs) != 3 {
		t.Fatalf("addrs = %v", addrs)
	}
	ctx := context.Background()
	var prefix string
	t.Run("writer", func(t *testing.T) {
		client, p := redistest.ClusterClient(t, addrs)
		prefix = p
		owners := map[string]bool{}
		for i := range 100 {
			key := fmt.Sprintf("%sk%d", p, i)
			if err := client.Set(ctx, key, "v", 0).Err(); err != nil {
				t.Fatalf("set %s: %v", key, err)
			}
			c, err := client.MasterForKey(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			owners[c.Options().Addr] = true
		}
		if len(owners) != 3 {
			t.Fatalf("100 keys are on %d shards (%v), want 3", len(owners), owners)
		}
	})
	check := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer check.Close()
	err := check.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, prefix+"*").Result()
		if err == nil && len(keys) > 0 {
			err = fmt.Errorf("%s keeps %v after the test", c.Options().Addr, keys)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
