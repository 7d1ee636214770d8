package ephemeral

import (
	"time"
)

// RedisConfig configures the Redis backends. The zero value is ready to use.
type RedisConfig struct {
	// Prefix starts every key the backend writes, so that several
	// deployments (or tests) can share one Redis. Zero value means "msgr:".
	Prefix string
}

const defaultRedisPrefix = "msgr:"

// keyPrefix returns the configured prefix followed by kind and a colon,
// e.g. "msgr:session:".
func (c RedisConfig) keyPrefix(kind string) string {
	p := c.Prefix
	if p == "" {
		p = defaultRedisPrefix
	}
	return p + kind + ":"
}

// redisTTL rounds ttl up to Redis's resolution of one millisecond, so that a
// positive TTL never becomes zero (which Redis rejects). Whole seconds are
// sent as EX and anything else as PX by go-redis.
func redisTTL(ttl time.Duration) time.Duration {
	if r := ttl % time.Millisecond; r != 0 {
		ttl += time.Millisecond - r
	}
	return ttl
}
