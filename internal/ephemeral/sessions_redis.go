package ephemeral

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ SessionStore = (*RedisSessionStore)(nil)

// RedisSessionStore is a SessionStore kept in Redis, shared by every node
// that uses the same Redis and prefix. Each session is one string key,
// <prefix>session:<id>, whose Redis TTL is the session's.
type RedisSessionStore struct {
	client redis.UniversalClient
	prefix string
}

// NewRedisSessionStore returns a RedisSessionStore that uses client. The
// client stays owned by the caller, who closes it.
func NewRedisSessionStore(client redis.UniversalClient, cfg RedisConfig) *RedisSessionStore {
	return &RedisSessionStore{client: client, prefix: cfg.keyPrefix("session")}
}

func (s *RedisSessionStore) key(id string) string { return s.prefix + id }

// Put stores record under id for ttl with SET ... PX (or EX for whole
// seconds), replacing any record id had.
func (s *RedisSessionStore) Put(ctx context.Context, id string, record []byte, ttl time.Duration) error {
	if err := checkTTL("put session", ttl); err != nil {
		return err
	}
	if err := s.client.Set(ctx, s.key(id), record, redisTTL(ttl)).Err(); err != nil {
		return unavailable("redis put session", err)
	}
	return nil
}

// Replace stores record under id for ttl if id has a live record (SET …
// XX), else returns ErrNotFound.
func (s *RedisSessionStore) Replace(ctx context.Context, id string, record []byte, ttl time.Duration) error {
	if err := checkTTL("replace session", ttl); err != nil {
		return err
	}
	err := s.client.SetArgs(ctx, s.key(id), record, redis.SetArgs{Mode: "XX", TTL: redisTTL(ttl)}).Err()
	if errors.Is(err, redis.Nil) {
		return ErrNotFound
	}
	if err != nil {
		return unavailable("redis replace session", err)
	}
	return nil
}

// Get returns the record stored under id, or ErrNotFound.
func (s *RedisSessionStore) Get(ctx context.Context, id string) ([]byte, error) {
	rec, err := s.client.Get(ctx, s.key(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, unavailable("redis get session", err)
	}
	return rec, nil
}

// Touch sets the remaining time to live of id to ttl with PEXPIRE, or
// returns ErrNotFound when the key does not exist.
func (s *RedisSessionStore) Touch(ctx context.Context, id string, ttl time.Duration) error {
	if err := checkTTL("touch session", ttl); err != nil {
		return err
	}
	ok, err := s.client.PExpire(ctx, s.key(id), redisTTL(ttl)).Result()
	if err != nil {
		return unavailable("redis touch session", err)
	}
	if !ok {
		return ErrNotFound
	}
	return nil
}

// Delete removes id; deleting an unknown id is not an error.
func (s *RedisSessionStore) Delete(ctx context.Context, id string) error {
	if err := s.client.Del(ctx, s.key(id)).Err(); err != nil {
		return unavailable("redis delete session", err)
	}
	return nil
}
