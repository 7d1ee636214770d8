// Package redistest connects tests to a real Redis server and keeps each
// test's keys apart from every other test's.
//
// The server address comes from the MESSENGER_TEST_REDIS environment
// variable (default 127.0.0.1:6379). When no server answers there, tests that
// ask for a client are skipped rather than failed, so that `go test ./...`
// works on a machine without Redis.
package redistest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// EnvAddr names the environment variable that holds the test server's
// address (host:port).
const EnvAddr = "MESSENGER_TEST_REDIS"

// DefaultAddr is the address used when EnvAddr is unset or empty.
const DefaultAddr = "127.0.0.1:6379"

// Addr returns the address of the Redis server that tests use.
func Addr() string {
	if a := os.Getenv(EnvAddr); a != "" {
		return a
	}
	return DefaultAddr
}

// Client returns a client connected to the test Redis server and a key prefix
// of the form "msgrtest:<uuid>:" that is unique to this call. It skips the
// test when the server does not answer a PING within one second.
//
// When the test ends, every key starting with the prefix is deleted and the
// client is closed. Keys the test creates must therefore start with the
// prefix; the code under test is expected to take it as its configured key
// prefix.
func Client(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	addr := Addr()
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}})

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		t.Skipf("redis not reachable at %s: %v (set %s)", addr, err, EnvAddr)
	}

	prefix := "msgrtest:" + uuid.NewString() + ":"
	t.Cleanup(func() {
		defer client.Close()
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := DeletePrefix(ctx, client, prefix); err != nil {
			t.Errorf("redistest: delete keys %s*: %v", prefix, err)
		}
	})
	return client, prefix
}

// DeletePrefix deletes every key that starts with prefix, using SCAN so that
// the server is never blocked by a KEYS call. The prefix must not contain the
// glob characters *, ?, [ or \ (prefixes made by Client never do). On a
// Redis Cluster it scans every master and deletes one key at a time, since
// one DEL may not name keys of different slots.
func DeletePrefix(ctx context.Context, client redis.UniversalClient, prefix string) error {
	if cc, ok := client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
			for iter.Next(ctx) {
				if err := c.Del(ctx, iter.Val()).Err(); err != nil {
					return err
				}
			}
			return iter.Err()
		})
	}
	var cursor uint64
	for {
		keys, next, err := client.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := client.Del(ctx, keys...).Err(); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}
