package ephemeral

import (
	"context"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

var _ RateLimiter = (*RedisRateLimiter)(nil)

// RedisRateLimiter is a RateLimiter kept in Redis, shared by every node
// that uses the same Redis and prefix. It is github.com/go-redis/redis_rate
// (GCRA in one Lua script, one round trip per event); each key is one
// Redis string, rate:<prefix>rate:<key>, that expires once its bucket is
// full again. (redis_rate puts its own "rate:" before the configured
// prefix.)
type RedisRateLimiter struct {
	lim    *redis_rate.Limiter
	prefix string
}

// NewRedisRateLimiter returns a RedisRateLimiter that uses client. The
// client stays owned by the caller, who closes it.
func NewRedisRateLimiter(client redis.UniversalClient, cfg RedisConfig) *RedisRateLimiter {
	return &RedisRateLimiter{lim: redis_rate.NewLimiter(client), prefix: cfg.keyPrefix("rate")}
}

// Allow takes a token from key's bucket.
func (l *RedisRateLimiter) Allow(ctx context.Context, key string, r Rate) (bool, time.Duration, error) {
	if r.Unlimited() {
		return true, 0, nil
	}
	r = r.normal()
	res, err := l.lim.Allow(ctx, l.prefix+key, redis_rate.Limit{Rate: r.Limit, Burst: r.Burst, Period: r.Per})
	if err != nil {
		return false, 0, unavailable("redis rate limiter", err)
	}
	if res.Allowed == 0 {
		return false, res.RetryAfter, nil
	}
	return true, 0, nil
}
