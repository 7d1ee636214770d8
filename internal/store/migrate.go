package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Migrations are numbered files, NNNN_description.sql, one directory per
// dialect. Each is applied once, in its own transaction, and recorded in
// schema_migrations. Both dialects must have the same versions; a test
// checks that.
//
//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrationFiles embed.FS

// migration is one numbered schema change.
type migration struct {
	version int
	name    string // file name, for error messages
	sql     string
}

var migrationName = regexp.MustCompile(`^([0-9]+)_[a-z0-9_]+\.sql$`)

// loadMigrations reads dir of fsys and returns its migrations in version
// order. Versions must run 1, 2, 3... without gaps or duplicates, so that a
// file added on two branches at once fails loudly instead of being skipped.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("store: migrations: %s: name is not NNNN_description.sql", e.Name())
		}
		v, err := strconv.Atoi(m[1])
		if err != nil {
			return nil, fmt.Errorf("store: migrations: %s: %w", e.Name(), err)
		}
		body, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("store: migrations: %w", err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(body)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("store: migrations: %s: version %d, want %d (versions must run 1, 2, 3... once each)", m.name, m.version, i+1)
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("store: migrations: none in %s", dir)
	}
	return ms, nil
}

// errSchemaTooNew is returned by Open for a database migrated by a newer
// build: running old code on it could corrupt data the newer schema expects.
var errSchemaTooNew = errors.New("store: database schema is newer than this program")

func checkNotNewer(applied int, ms []migration) error {
	if latest := ms[len(ms)-1].version; applied > latest {
		return fmt.Errorf("%w: database at version %d, program knows up to %d", errSchemaTooNew, applied, latest)
	}
	return nil
}

const sqliteCreateMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    applied_at INTEGER NOT NULL
) STRICT`

// migrateSQLite applies pending migrations through db, which must begin
// transactions with BEGIN IMMEDIATE so that two processes opening the same
// file take turns: the second finds each version already recorded.
func migrateSQLite(ctx context.Context, db *sql.DB) error {
	ms, err := loadMigrations(migrationFiles, "migrations/sqlite")
	if err != nil {
		return err
	}
	for _, m := range ms {
		if err := applySQLite(ctx, db, m); err != nil {
			return err
		}
	}
	var applied int
	if err := db.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&applied); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	return checkNotNewer(applied, ms)
}

// sqliteForeignKeysOff is the first line of a SQLite migration that must
// run with foreign keys off: one that rebuilds a table other tables refer
// to (https://sqlite.org/lang_altertable.html#otheralter). The runner
// turns them off on its connection outside the transaction (SQLite ignores
// the pragma inside one), checks every foreign key before committing, and
// turns them on again.
const sqliteForeignKeysOff = "-- migrate: foreign_keys off\n"

func applySQLite(ctx context.Context, db *sql.DB, m migration) (err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate %s: %w", m.name, err)
	}
	defer conn.Close()
	fkOff := strings.HasPrefix(m.sql, sqliteForeignKeysOff)
	if fkOff {
		if _, err := conn.ExecContext(ctx, `PRAGMA foreign_keys = OFF`); err != nil {
			return fmt.Errorf("store: migrate %s: %w", m.name, err)
		}
		defer func() {
			if _, onErr := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA foreign_keys = ON`); onErr != nil {
				// A connection left without foreign keys must not go back
				// to the pool.
				_ = conn.Raw(func(any) error { return driver.ErrBadConn })
				err = errors.Join(err, fmt.Errorf("store: migrate %s: foreign keys back on: %w", m.name, onErr))
			}
		}()
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: migrate %s: %w", m.name, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, sqliteCreateMigrationsTable); err != nil {
		return fmt.Errorf("store: migrate %s: %w", m.name, err)
	}
	var done bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?)`, m.version).Scan(&done); err != nil {
		return fmt.Errorf("store: migrate %s: %w", m.name, err)
	}
	if done {
		return tx.Commit()
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("store: migrate %s: %w", m.name, err)
	}
	if fkOff {
		var broken bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pragma_foreign_key_check)`).Scan(&broken); err != nil {
			return fmt.Errorf("store: migrate %s: foreign key check: %w", m.name, err)
		}
		if broken {
			return fmt.Errorf("store: migrate %s: it leaves rows whose foreign keys point nowhere", m.name)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
		m.version, time.Now().UnixMicro()); err != nil {
		return fmt.Errorf("store: migrate %s: %w", m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: migrate %s: %w", m.name, err)
	}
	return nil
}

// pgMigrationLock is the pg_advisory_xact_lock key that serialises
// migrations of one database across processes ("msgr" in ASCII).
const pgMigrationLock int64 = 0x6d736772

const pgCreateMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     NOT NULL PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)`

// migratePostgres applies pending migrations through conn, one connection
// acquired from the pool for the whole run. Each migration
// runs in a transaction that first takes an advisory lock, so concurrent
// Opens of one database apply every version exactly once; even the
// CREATE TABLE IF NOT EXISTS runs under the lock, since it is not safe
// against a concurrent twin.
func migratePostgres(ctx context.Context, conn *pgx.Conn) error {
	ms, err := loadMigrations(migrationFiles, "migrations/postgres")
	if err != nil {
		return err
	}
	for _, m := range ms {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, pgMigrationLock); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, pgCreateMigrationsTable); err != nil {
				return err
			}
			var done bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.version).Scan(&done); err != nil {
				return err
			}
			if done {
				return nil
			}
			// No arguments: pgx sends this with the simple protocol, which
			// accepts a file of several statements.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, m.version)
			return err
		})
		if err != nil {
			return fmt.Errorf("store: migrate %s: %w", m.name, err)
		}
	}
	var applied int
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&applied); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	return checkNotNewer(applied, ms)
}
