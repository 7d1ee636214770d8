// Command servicecheck tells, before the tests run, which of the services
// the tests use can be reached: the Redis at MESSENGER_TEST_REDIS and the
// PostgreSQL at MESSENGER_TEST_POSTGRES (defaults 127.0.0.1:6379 and
// 127.0.0.1:5432). Tests that need a missing one skip themselves; this is
// where `make test` says so, since `go test` hides the skip messages of
// passing packages. It always exits 0.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/secure-messenger/messenger/internal/pgtest"
	"github.com/secure-messenger/messenger/internal/redistest"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()

	addr := redistest.Addr()
	rc := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1})
	if err := rc.Ping(ctx).Err(); err != nil {
		fmt.Fprintf(os.Stderr, "test services: Redis at %s not reachable (%v): the tests that need it will be SKIPPED (set %s)\n", addr, err, redistest.EnvAddr)
	} else {
		fmt.Fprintf(os.Stderr, "test services: Redis at %s reachable\n", addr)
	}
	rc.Close()

	url := os.Getenv(pgtest.EnvVar)
	if url == "" {
		url = pgtest.DefaultURL
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		fmt.Fprintf(os.Stderr, "test services: %s is not a PostgreSQL URL: %v\n", pgtest.EnvVar, err)
		return
	}
	where := fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "test services: PostgreSQL at %s not reachable (%v): the tests that need it will be SKIPPED (set %s)\n", where, err, pgtest.EnvVar)
		return
	}
	conn.Close(ctx)
	fmt.Fprintf(os.Stderr, "test services: PostgreSQL at %s reachable\n", where)
}
