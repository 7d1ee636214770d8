package ephemeral

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Limiter = (*RedisLimiter)(nil)

//go:embed limiter_hit.lua
var limiterHitSource string

// limiterHit runs INCR and, on the first hit, PEXPIRE in one atomic step.
var limiterHit = redis.NewScript(limiterHitSource)

//go:embed limiter_reserve.lua
var limiterReserveSource string

// limiterReserve compares the count with the limit and, below it, counts
// the attempt, in one atomic step.
var limiterReserve = redis.NewScript(limiterReserveSource)

//go:embed limiter_release.lua
var limiterReleaseSource string

// limiterRelease lowers a count by one, never below zero.
var limiterRelease = redis.NewScript(limiterReleaseSource)

// RedisLimiter is a Limiter kept in Redis, shared by every node that uses the
// same Redis and prefix. Each key is one counter, <prefix>limit:<key>, whose
// Redis TTL is the rest of its window.
type RedisLimiter struct {
	client redis.UniversalClient
	prefix string
}

// NewRedisLimiter returns a RedisLimiter that uses client. The client stays
// owned by the caller, who closes it.
func NewRedisLimiter(client redis.UniversalClient, cfg RedisConfig) *RedisLimiter {
	return &RedisLimiter{client: client, prefix: cfg.keyPrefix("limit")}
}

// Hit counts one event for key and returns the count of the current window.
func (l *RedisLimiter) Hit(ctx context.Context, key string, window time.Duration) (int64, error) {
	if err := checkTTL("limiter hit", window); err != nil {
		return 0, err
	}
	ms := redisTTL(window).Milliseconds()
	n, err := limiterHit.Run(ctx, l.client, []string{l.prefix + key}, ms).Int64()
	if err != nil {
		return 0, unavailable("redis limiter hit", err)
	}
	return n, nil
}

// Count returns the count of the current window of key, or 0.
func (l *RedisLimiter) Count(ctx context.Context, key string) (int64, error) {
	v, err := l.client.Get(ctx, l.prefix+key).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable("redis limiter count", err)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		// Only something other than this package can have written it.
		return 0, fmt.Errorf("ephemeral: redis limiter count: counter is not an integer: %w", err)
	}
	return n, nil
}

// Reset forgets key.
func (l *RedisLimiter) Reset(ctx context.Context, key string) error {
	if err := l.client.Del(ctx, l.prefix+key).Err(); err != nil {
		return unavailable("redis limiter reset", err)
	}
	return nil
}

// Reserve takes one attempt for key if fewer than limit are counted.
func (l *RedisLimiter) Reserve(ctx context.Context, key string, limit int64, window time.Duration) (bool, int64, error) {
	if err := checkTTL("limiter reserve", window); err != nil {
		return false, 0, err
	}
	ms := redisTTL(window).Milliseconds()
	r, err := limiterReserve.Run(ctx, l.client, []string{l.prefix + key}, limit, ms).Int64Slice()
	if err != nil {
		return false, 0, unavailable("redis limiter reserve", err)
	}
	if len(r) != 2 {
		return false, 0, unavailable("redis limiter reserve", fmt.Errorf("script returned %d values, want 2", len(r)))
	}
	return r[0] == 1, r[1], nil
}

// Release gives back one attempt counted for key.
func (l *RedisLimiter) Release(ctx context.Context, key string) error {
	if err := limiterRelease.Run(ctx, l.client, []string{l.prefix + key}).Err(); err != nil {
		return unavailable("redis limiter release", err)
	}
	return nil
}
