package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/secure-messenger/messenger/internal/pgtest"
)

// countRows implements rowCounter for the contract test.
func (p *Postgres) countRows(ctx context.Context, table string) (int, error) {
	var q string
	switch table {
	case "users":
		q = `SELECT count(*) FROM users`
	case "key_sets":
		q = `SELECT count(*) FROM key_sets`
	case "rooms":
		q = `SELECT count(*) FROM rooms`
	case "room_members":
		q = `SELECT count(*) FROM room_members`
	case "streams":
		q = `SELECT count(*) FROM streams`
	case "messages":
		q = `SELECT count(*) FROM messages`
	case "read_positions":
		q = `SELECT count(*) FROM read_positions`
	case "conversations":
		q = `SELECT count(*) FROM conversations`
	case "conversation_keys":
		q = `SELECT count(*) FROM conversation_keys`
	case "schema_migrations":
		q = `SELECT count(*) FROM schema_migrations`
	default:
		return 0, fmt.Errorf("countRows: unknown table %q", table)
	}
	var n int
	err := p.with(ctx, "count", func(c pgQuerier) error { return c.QueryRow(ctx, q).Scan(&n) })
	return n, err
}

// rawMessage implements messageTamperer for the contract test.
func (p *Postgres) rawMessage(ctx context.Context, stream string, seq int64) (int64, []byte, error) {
	var (
		keyID int64
		body  []byte
	)
	err := p.with(ctx, "raw message", func(c pgQuerier) error {
		return c.QueryRow(ctx, `SELECT key_id, body FROM messages WHERE stream = $1 AND seq = $2`, stream, seq).Scan(&keyID, &body)
	})
	return keyID, body, err
}

// setMessageColumn implements messageTamperer for the contract test.
func (p *Postgres) setMessageColumn(ctx context.Context, stream string, seq int64, column string, value any) error {
	if !tamperableColumns[column] {
		return fmt.Errorf("setMessageColumn: unknown column %q", column)
	}
	return p.with(ctx, "set message column", func(c pgQuerier) error {
		// The column name is one of tamperableColumns.
		tag, err := c.Exec(ctx, `UPDATE messages SET `+column+` = $1 WHERE stream = $2 AND seq = $3`, value, stream, seq)
		if err == nil && tag.RowsAffected() != 1 {
			err = fmt.Errorf("%d rows updated, want 1", tag.RowsAffected())
		}
		return err
	})
}

// openPostgresTest opens a store on dbURL and closes it when t ends (before
// pgtest drops the database, since this Cleanup is registered later).
func openPostgresTest(t *testing.T, dbURL string, opts ...Option) *Postgres {
	t.Helper()
	p, err := OpenPostgres(context.Background(), dbURL, opts...)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestPostgres(t *testing.T) {
	pgtest.URL(t) // skips the whole contract at once when the server is down
	testStore(t, func(t *testing.T, opts ...Option) Store {
		return openPostgresTest(t, pgtest.URL(t), opts...)
	})
}

// TestPostgresOneConnection runs the contract on a pool of one connection,
// so a method that held one pooled connection while acquiring another would
// deadlock here.
func TestPostgresOneConnection(t *testing.T) {
	pgtest.URL(t)
	testStore(t, func(t *testing.T, opts ...Option) Store {
		return openPostgresTest(t, withParam(t, pgtest.URL(t), "pool_max_conns", "1"), opts...)
	})
}

func TestPostgresReopen(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.URL(t)
	p1, err := OpenPostgres(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	alice := mustCreateUser(t, p1, "alice")
	var appliedAt time.Time
	readAppliedAt := func(p *Postgres, dst *time.Time) error {
		return p.with(ctx, "test", func(c pgQuerier) error {
			return c.QueryRow(ctx, `SELECT applied_at FROM schema_migrations WHERE version = 1`).Scan(dst)
		})
	}
	if err := readAppliedAt(p1, &appliedAt); err != nil {
		t.Fatal(err)
	}
	p1.Close()

	p2 := openPostgresTest(t, dbURL)
	if got, err := p2.UserByID(ctx, alice.ID); err != nil || got != alice {
		t.Errorf("after reopening: UserByID = %+v, %v; want %+v", got, err, alice)
	}
	if n := countRows(t, p2, "schema_migrations"); n != numMigrations(t, "postgres") {
		t.Errorf("schema_migrations has %d rows, want %d", n, numMigrations(t, "postgres"))
	}
	var again time.Time
	if err := readAppliedAt(p2, &again); err != nil {
		t.Fatal(err)
	}
	if !again.Equal(appliedAt) {
		t.Errorf("migration 1 re-applied: applied_at %v, then %v", appliedAt, again)
	}
}

func TestPostgresConcurrentOpen(t *testing.T) {
	dbURL := pgtest.URL(t)
	const n = 8
	stores := make([]*Postgres, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = OpenPostgres(context.Background(), dbURL)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("open %d: %v", i, errs[i])
			continue
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	if t.Failed() {
		return
	}
	if got := countRows(t, stores[0], "schema_migrations"); got != numMigrations(t, "postgres") {
		t.Errorf("schema_migrations has %d rows, want %d", got, numMigrations(t, "postgres"))
	}
}

func TestPostgresRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.URL(t)
	p := openPostgresTest(t, dbURL)
	err := p.with(ctx, "test", func(c pgQuerier) error {
		_, err := c.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, 1000)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if p2, err := OpenPostgres(ctx, dbURL); !errors.Is(err, errSchemaTooNew) {
		if p2 != nil {
			p2.Close()
		}
		t.Fatalf("OpenPostgres on a newer schema: %v, want %v", err, errSchemaTooNew)
	}
}

func TestOpenPicksPostgres(t *testing.T) {
	dbURL := pgtest.URL(t)
	for _, c := range []struct {
		name, dsn string
		maxConns  int
	}{
		{"postgres URL", dbURL, max(4, runtime.NumCPU())},
		{"postgresql URL", "postgresql://" + strings.TrimPrefix(dbURL, "postgres://"), max(4, runtime.NumCPU())},
		{"pool_max_conns", withParam(t, dbURL, "pool_max_conns", "2"), 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := Open(context.Background(), c.dsn, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			p, ok := st.(*Postgres)
			if !ok {
				t.Fatalf("Open returned %T, want *Postgres", st)
			}
			if err := p.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := p.pool.Stat().MaxConns(); int(got) != c.maxConns {
				t.Errorf("pool allows %d connections, want %d", got, c.maxConns)
			}
		})
	}
	for _, bad := range []string{"0", "-1", "many"} {
		t.Run("pool_max_conns="+bad, func(t *testing.T) {
			st, err := Open(context.Background(), withParam(t, dbURL, "pool_max_conns", bad), "")
			if err == nil {
				st.Close()
				t.Fatal("accepted")
			}
		})
	}
}

func withParam(t *testing.T, rawURL, key, value string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// pgxpoolPingAfterIdle is how long a connection must sit idle before
// pgxpool's default ShouldPing checks it with a round trip on Acquire.
const pgxpoolPingAfterIdle = time.Second

// TestPostgresSurvivesTerminatedConnections kills the store's idle server
// connections, as a database restart would, and expects the next calls to
// reconnect instead of failing: pgxpool pings a connection that sat idle
// past pgxpoolPingAfterIdle, destroys it when the ping fails and dials anew.
func TestPostgresSurvivesTerminatedConnections(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.URL(t)
	p := openPostgresTest(t, dbURL)
	u := mustCreateUser(t, p, "survivor")

	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var killed int
	if err := admin.QueryRow(ctx, `
		SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatal("no store connection to terminate")
	}
	time.Sleep(pgxpoolPingAfterIdle + 200*time.Millisecond)
	for i := range 3 {
		if got, err := p.UserByID(ctx, u.ID); err != nil || got != u {
			t.Fatalf("call %d after the connections were terminated: %+v, %v", i, got, err)
		}
	}
}

// TestOpenPostgresBadDSNHidesPassword checks that a DSN pgxpool rejects is
// reported without its password (it fails before any connection attempt).
func TestOpenPostgresBadDSNHidesPassword(t *testing.T) {
	const secret = "s3cr3t-pw"
	for _, dsn := range []string{
		"postgres://u:" + secret + "@127.0.0.1:1/db?pool_max_conns=many",
		"postgres://u:" + secret + "@127.0.0.1:1/db?pool_max_conns=0",
		"user=u password=" + secret + " host=127.0.0.1 port=1 pool_max_conns=-1",
	} {
		p, err := OpenPostgres(context.Background(), dsn)
		if err == nil {
			p.Close()
			t.Errorf("OpenPostgres accepted a bad pool_max_conns")
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

// TestPostgresUpgradeGivesGeneration: a database made before the
// credential generation existed (migration 1 only) keeps its users, each
// at generation 1, once opened by this program.
func TestPostgresUpgradeGivesGeneration(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.URL(t)
	ms, err := loadMigrations(migrationFiles, "migrations/postgres")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	for _, q := range []string{pgCreateMigrationsTable, ms[0].sql, `INSERT INTO schema_migrations (version) VALUES (1)`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, `INSERT INTO users (id, name, password_hash, created_at) VALUES ($1, 'old', $2, now())`,
		id, []byte(testHash)); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	p := openPostgresTest(t, dbURL)
	if u, err := p.UserByName(ctx, "old"); err != nil || u.ID != id || u.Generation != 1 {
		t.Fatalf("after the upgrade: %+v, %v; want the old user at generation 1", u, err)
	}
	if g, err := p.ChangePassword(ctx, id, testHash+"-new"); err != nil || g != 2 {
		t.Errorf("ChangePassword after the upgrade: %d, %v; want 2", g, err)
	}
}

// TestPostgresUpgradeMakesDevices: as TestSQLiteUpgradeMakesDevices.
func TestPostgresUpgradeMakesDevices(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.URL(t)
	ms, err := loadMigrations(migrationFiles, "migrations/postgres")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, pgCreateMigrationsTable); err != nil {
		t.Fatal(err)
	}
	// Every migration before the one that made devices (0004).
	for _, m := range ms[:3] {
		if _, err := conn.Exec(ctx, m.sql); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, m.version); err != nil {
			t.Fatal(err)
		}
	}
	withKeys, without := uuid.New(), uuid.New()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO users (id, name, password_hash, created_at) VALUES ($1, 'old', $2, now())`, []any{withKeys, []byte(testHash)}},
		{`INSERT INTO users (id, name, password_hash, created_at) VALUES ($1, 'nokeys', $2, now())`, []any{without, []byte(testHash)}},
		{`INSERT INTO key_sets VALUES ($1, 1, 'sig-1', 'enc-1', 'self-1', now())`, []any{withKeys}},
		{`INSERT INTO key_sets VALUES ($1, 2, 'sig-2', 'enc-2', 'self-2', now())`, []any{withKeys}},
	} {
		if _, err := conn.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)

	checkUpgradedDevices(t, openPostgresTest(t, dbURL), withKeys, without)
}
