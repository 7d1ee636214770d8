package redistest_test

import (
	"context"
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
