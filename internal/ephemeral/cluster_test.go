package ephemeral

import (
	"testing"
	"time"

	"github.com/secure-messenger/messenger/internal/redistest"
)

// TestRedisCluster runs the session store, limiter and rate limiter
// contracts on a 3-shard Redis Cluster started for the test: every script
// and command of this package names one key, so none may fail with
// CROSSSLOT, and the keys of one store spread over the shards.
func TestRedisCluster(t *testing.T) {
	addrs := redistest.StartCluster(t, 3)
	t.Run("SessionStore", func(t *testing.T) {
		testSessionStore(t, func(t *testing.T) (SessionStore, elapseFunc) {
			client, prefix := redistest.ClusterClient(t, addrs)
			return NewRedisSessionStore(client, RedisConfig{Prefix: prefix}), time.Sleep
		})
	})
	t.Run("Limiter", func(t *testing.T) {
		testLimiter(t, func(t *testing.T) (Limiter, elapseFunc) {
			client, prefix := redistest.ClusterClient(t, addrs)
			return NewRedisLimiter(client, RedisConfig{Prefix: prefix}), time.Sleep
		})
	})
	t.Run("RateLimiter", func(t *testing.T) {
		testRateLimiter(t, func(t *testing.T) (RateLimiter, elapseFunc) {
			client, prefix := redistest.ClusterClient(t, addrs)
			return NewRedisRateLimiter(client, RedisConfig{Prefix: prefix}), time.Sleep
		})
	})
}
