package ephemeral

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ NonceSet = (*RedisNonceSet)(nil)

// RedisNonceSet is a NonceSet kept in Redis, shared by every node that uses
// the same Redis and prefix. Each id is one key, <prefix>nonce:<id>, set with
// SET NX so that exactly one node can add it.
type RedisNonceSet struct {
	client redis.UniversalClient
	prefix string
}

// NewRedisNonceSet returns a RedisNonceSet that uses client. The client stays
// owned by the caller, who closes it.
func NewRedisNonceSet(client redis.UniversalClient, cfg RedisConfig) *RedisNonceSet {
	return &RedisNonceSet{client: client, prefix: cfg.keyPrefix("nonce")}
}

// Add records id for ttl with SET key 1 NX PX (or EX for whole seconds), or
// returns ErrReplay if the key already exists.
func (n *RedisNonceSet) Add(ctx context.Context, id string, ttl time.Duration) error {
	if err := checkTTL("add nonce", ttl); err != nil {
		return err
	}
	added, err := n.client.SetNX(ctx, n.prefix+id, 1, redisTTL(ttl)).Result()
	if err != nil {
		return unavailable("redis add nonce", err)
	}
	if !added {
		return ErrReplay
	}
	return nil
}
