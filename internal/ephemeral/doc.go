// Package ephemeral keeps the server state that may be lost on a restart
// without losing user data: login sessions, login-attempt counters
// (throttling) and the token buckets of rate limits.
//
// Each kind of state has one interface — [SessionStore], [Limiter] and
// [RateLimiter] — with two backends:
//
//   - memory (sessions_memory.go, limiter_memory.go, rate_memory.go) for a
//     single node: maps guarded by a mutex, bounded in size, expired lazily on
//     access and by a sweep goroutine that stops on Close;
//   - Redis (sessions_redis.go, limiter_redis.go, rate_redis.go) for several
//     nodes behind one Redis.
//
// The Redis backends use one key per entry, with the entry's TTL as the key's
// TTL:
//
//	<prefix>session:<id>   the sealed session record (SET, PEXPIRE)
//	<prefix>limit:<key>    the window's count (GET/INCR/DECR + PEXPIRE, in Lua
//	                       scripts, so that Reserve checks and counts atomically)
//	rate:<prefix>rate:<key> a token bucket's theoretical arrival time
//	                        (github.com/go-redis/redis_rate: GCRA, one Lua
//	                        script; the library puts "rate:" first)
//
// where the prefix defaults to "msgr:". The Redis client is owned by the
// caller; the Redis backends have no Close.
//
// Every entry carries a time to live; a non-positive TTL is rejected with
// [ErrInvalidTTL]. Redis stores TTLs in whole milliseconds, so a TTL below
// one millisecond is rounded up to one.
//
// Errors: an unknown or expired session is [ErrNotFound], and a backend that cannot answer (Redis unreachable,
// memory backend full) is [ErrUnavailable], which callers map to a
// "try again later" error for the client. Errors never contain session
// records, session ids or limiter keys, since those are secrets or
// personal data.
package ephemeral
