// Package pgtest gives tests a throw-away PostgreSQL database.
//
// The server is the one named by the MESSENGER_TEST_POSTGRES environment
// variable (a postgres:// URL whose user may create databases), by default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable. Tests that
// call URL are skipped when that server cannot be reached, and fail when it
// answers but refuses (bad credentials, missing privileges), so a
// misconfiguration is not mistaken for an absent server.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// EnvVar names the environment variable that points at the test server.
const EnvVar = "MESSENGER_TEST_POSTGRES"

// DefaultURL is the server used when EnvVar is unset or empty.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// connectTimeout bounds the wait for an unreachable server.
const connectTimeout = 2 * time.Second

// unreachable remembers servers that did not answer, so a package full of
// tests skips at once instead of waiting connectTimeout per test.
var unreachable sync.Map // admin URL -> error

// URL creates a fresh, empty database named msgrtest_<random> on the test
// server and returns its URL. The database is dropped, connections and all,
// when t finishes; close what uses it in a Cleanup registered after URL
// (cleanups run last-registered first).
func URL(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvVar)
	if admin == "" {
		admin = DefaultURL
	}
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("pgtest: %s must be a postgres:// URL", EnvVar)
	}
	shown := u.Redacted()

	if err, ok := unreachable.Load(admin); ok {
		t.Skipf("postgres not reachable at %s: %v (set %s)", shown, err, EnvVar)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			t.Fatalf("pgtest: postgres at %s refused the connection: %v", shown, err)
		}
		unreachable.Store(admin, err)
		t.Skipf("postgres not reachable at %s: %v (set %s)", shown, err, EnvVar)
	}
	defer conn.Close(context.Background())

	name := "msgrtest_" + randomHex(8)
	// CREATE DATABASE takes no bind parameters; the name is ours and quoted.
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(context.Background(), "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})

	db := *u
	db.Path = "/" + name
	db.RawPath = ""
	return db.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
