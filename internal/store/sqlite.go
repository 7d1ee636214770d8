package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the embedded Store: one database file in WAL mode.
//
// It keeps two connection pools on the file. Writes go through a pool of
// exactly one connection whose transactions start with BEGIN IMMEDIATE, so
// writers queue in Go (where ctx can cancel the wait) instead of failing
// with SQLITE_BUSY. Reads use a pool of read-only connections, which WAL lets
// run alongside the writer. UUIDs are stored as TEXT, times as INTEGER unix
// microseconds, opaque values as BLOB.
type SQLite struct {
	path string
	w    *sql.DB // the single writer
	r    *sql.DB // readers, PRAGMA query_only
	seal *sealer // nil without a keyring
	// stmts are the append's statements, prepared once on w
	// (sqlite_history.go).
	stmts *sqliteStmts
}

var _ Store = (*SQLite)(nil)

// sqliteReaders is the size of the read pool.
const sqliteReaders = 4

// Connection settings, as modernc.org/sqlite DSN parameters. busy_timeout
// covers other processes (and the second pool) holding the lock; the
// writer's own queueing happens in database/sql. synchronous=FULL: an
// account or a published key must survive a power cut.
const (
	sqliteWriterParams = "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
	sqliteReaderParams = "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=query_only(1)"
)

// OpenSQLite opens (creating if needed) the SQLite database at path and
// applies pending migrations. A new file is created with mode 0600 (its
// directory, if missing, 0700); SQLite gives the -wal and -shm files the
// same mode. An existing file's mode is left alone. opts: WithKeyring.
func OpenSQLite(ctx context.Context, path string, opts ...Option) (*SQLite, error) {
	switch {
	case path == "":
		return nil, errors.New("store: open sqlite: empty path")
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		// Each pooled connection would get its own database, or the URI
		// parameters would fight ours.
		return nil, fmt.Errorf("store: open sqlite: %q: only plain file paths are supported", path)
	case strings.Contains(path, "?"):
		return nil, fmt.Errorf("store: open sqlite: %q: path must not contain '?'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}

	s := &SQLite{path: path, seal: newSealer(applyOptions(opts).keyring)}
	if s.w, err = sql.Open("sqlite", path+"?"+sqliteWriterParams); err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	if err := pingSQLite(ctx, s.w); err != nil {
		_ = s.w.Close()
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	if err := migrateSQLite(ctx, s.w); err != nil {
		_ = s.w.Close()
		return nil, err
	}
	if s.stmts, err = prepareSQLiteStmts(ctx, s.w); err != nil {
		_ = s.w.Close()
		return nil, err
	}
	if s.r, err = sql.Open("sqlite", path+"?"+sqliteReaderParams); err != nil {
		_ = s.w.Close()
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	s.r.SetMaxOpenConns(sqliteReaders)
	s.r.SetMaxIdleConns(sqliteReaders)
	if err := s.r.PingContext(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	return s, nil
}

// sqliteOpenWait bounds how long pingSQLite retries a first connection
// that SQLite refused as busy: as long as the busy timeout.
const sqliteOpenWait = 10 * time.Second

// pingSQLite makes the writer's first connection, which switches the file
// to WAL mode. While another process opening the same new file switches it
// too, SQLite may answer SQLITE_BUSY at once, without waiting for the busy
// timeout; such a refusal is retried, briefly, until sqliteOpenWait.
func pingSQLite(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(sqliteOpenWait)
	for {
		err := db.PingContext(ctx)
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
	}
}

// Close closes both pools; the last connection to go checkpoints the WAL.
func (s *SQLite) Close() error {
	var errR, errS error
	if s.r != nil {
		errR = s.r.Close()
	}
	if s.stmts != nil {
		errS = s.stmts.close()
	}
	if err := errors.Join(errR, errS, s.w.Close()); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Ping checks that both pools can reach the file.
func (s *SQLite) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// CreateUser implements Store.
func (s *SQLite) CreateUser(ctx context.Context, u User) (User, error) {
	u, err := prepareUser(u)
	if err != nil {
		return User{}, fmt.Errorf("store: create user: %w", err)
	}
	_, err = s.w.ExecContext(ctx,
		`INSERT INTO users (id, name, password_hash, created_at) VALUES (?, ?, ?, ?)`,
		u.ID, u.Name, []byte(u.PasswordHash), u.CreatedAt.UnixMicro())
	if err != nil {
		return User{}, sqliteErr("create user", err)
	}
	return u, nil
}

// CreateUserWithKeys implements Store.
func (s *SQLite) CreateUserWithKeys(ctx context.Context, u User, k KeySet) (User, KeySet, error) {
	u, k, err := prepareUserWithKeys(u, k)
	if err != nil {
		return User{}, KeySet{}, err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return User{}, KeySet{}, sqliteErr("create user with keys", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO users (id, name, password_hash, created_at) VALUES (?, ?, ?, ?)`,
		u.ID, u.Name, []byte(u.PasswordHash), u.CreatedAt.UnixMicro()); err != nil {
		return User{}, KeySet{}, sqliteErr("create user with keys", err)
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO key_sets (user_id, version, signing_key, encryption_key, self_signature, created_at)
		VALUES (?, 1, ?, ?, ?, ?)`,
		k.UserID, k.SigningKey, k.EncryptionKey, k.SelfSignature, k.CreatedAt.UnixMicro()); err != nil {
		return User{}, KeySet{}, sqliteErr("create user with keys", err)
	}
	if err := tx.Commit(); err != nil {
		return User{}, KeySet{}, sqliteErr("create user with keys", err)
	}
	return u, k, nil
}

// UserByName implements Store.
func (s *SQLite) UserByName(ctx context.Context, name string) (User, error) {
	name, err := normalizeName("user.name", name, MaxUserNameLen)
	if err != nil {
		return User{}, fmt.Errorf("store: user by name: %w", err)
	}
	row := s.r.QueryRowContext(ctx,
		`SELECT id, name, password_hash, created_at, generation FROM users WHERE name = ?`, name)
	u, err := scanSQLiteUser(row)
	if err != nil {
		return User{}, sqliteErr("user by name", err)
	}
	return u, nil
}

// UserByID implements Store.
func (s *SQLite) UserByID(ctx context.Context, id uuid.UUID) (User, error) {
	row := s.r.QueryRowContext(ctx,
		`SELECT id, name, password_hash, created_at, generation FROM users WHERE id = ?`, id)
	u, err := scanSQLiteUser(row)
	if err != nil {
		return User{}, sqliteErr("user by id", err)
	}
	return u, nil
}

// SetPasswordHash implements Store.
func (s *SQLite) SetPasswordHash(ctx context.Context, id uuid.UUID, hash string) error {
	if err := checkPasswordHash(hash); err != nil {
		return fmt.Errorf("store: set password hash: %w", err)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE id = ?`, []byte(hash), id)
	if err != nil {
		return sqliteErr("set password hash", err)
	}
	return expectOneRow("set password hash", res)
}

// ChangePassword implements Store.
func (s *SQLite) ChangePassword(ctx context.Context, id uuid.UUID, hash string) (int64, error) {
	if err := checkPasswordHash(hash); err != nil {
		return 0, fmt.Errorf("store: change password: %w", err)
	}
	var gen int64
	err := s.w.QueryRowContext(ctx,
		`UPDATE users SET password_hash = ?, generation = generation + 1 WHERE id = ? RETURNING generation`,
		[]byte(hash), id).Scan(&gen)
	if err != nil {
		return 0, sqliteErr("change password", err)
	}
	return gen, nil
}

// PublishKeys implements Store. The version is computed inside the INSERT,
// and the transaction holds SQLite's write lock from its start (BEGIN
// IMMEDIATE), so concurrent calls cannot compute the same version or
// generation.
func (s *SQLite) PublishKeys(ctx context.Context, k KeySet) (KeySet, int64, error) {
	k, err := prepareKeySet(k)
	if err != nil {
		return KeySet{}, 0, fmt.Errorf("store: publish keys: %w", err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return KeySet{}, 0, sqliteErr("publish keys", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	err = tx.QueryRowContext(ctx, `
		INSERT INTO key_sets (user_id, version, signing_key, encryption_key, self_signature, created_at)
		SELECT ?, coalesce(max(version), 0) + 1, ?, ?, ?, ? FROM key_sets WHERE user_id = ?
		RETURNING version`,
		k.UserID, k.SigningKey, k.EncryptionKey, k.SelfSignature, k.CreatedAt.UnixMicro(), k.UserID,
	).Scan(&k.Version)
	if err != nil {
		return KeySet{}, 0, sqliteErr("publish keys", err)
	}
	bump := `SELECT generation FROM users WHERE id = ?`
	if k.Version > 1 {
		bump = `UPDATE users SET generation = generation + 1 WHERE id = ? RETURNING generation`
	}
	var gen int64
	if err := tx.QueryRowContext(ctx, bump, k.UserID).Scan(&gen); err != nil {
		return KeySet{}, 0, sqliteErr("publish keys", err)
	}
	if err := tx.Commit(); err != nil {
		return KeySet{}, 0, sqliteErr("publish keys", err)
	}
	return k, gen, nil
}

// CurrentKeys implements Store.
func (s *SQLite) CurrentKeys(ctx context.Context, userID uuid.UUID) (KeySet, error) {
	row := s.r.QueryRowContext(ctx, `
		SELECT user_id, version, signing_key, encryption_key, self_signature, created_at
		FROM key_sets WHERE user_id = ? ORDER BY version DESC LIMIT 1`, userID)
	k, err := scanSQLiteKeySet(row)
	if err != nil {
		return KeySet{}, sqliteErr("current keys", err)
	}
	return k, nil
}

// KeyHistory implements Store.
func (s *SQLite) KeyHistory(ctx context.Context, userID uuid.UUID) ([]KeySet, error) {
	rows, err := s.r.QueryContext(ctx, `
		SELECT user_id, version, signing_key, encryption_key, self_signature, created_at
		FROM key_sets WHERE user_id = ? ORDER BY version`, userID)
	if err != nil {
		return nil, sqliteErr("key history", err)
	}
	ks, err := collectSQLite(rows, scanSQLiteKeySet)
	if err != nil {
		return nil, sqliteErr("key history", err)
	}
	if len(ks) == 0 {
		if err := s.mustExist(ctx, "key history", `SELECT EXISTS (SELECT 1 FROM users WHERE id = ?)`, userID); err != nil {
			return nil, err
		}
	}
	return ks, nil
}

// CreateRoom implements Store.
func (s *SQLite) CreateRoom(ctx context.Context, r Room) (Room, error) {
	r, err := prepareRoom(r)
	if err != nil {
		return Room{}, fmt.Errorf("store: create room: %w", err)
	}
	_, err = s.w.ExecContext(ctx,
		`INSERT INTO rooms (id, name, created_by, created_at) VALUES (?, ?, ?, ?)`,
		r.ID, r.Name, roomCreator(r.CreatedBy), r.CreatedAt.UnixMicro())
	if err != nil {
		return Room{}, sqliteErr("create room", err)
	}
	return r, nil
}

// RoomByName implements Store.
func (s *SQLite) RoomByName(ctx context.Context, name string) (Room, error) {
	name, err := normalizeName("room.name", name, MaxRoomNameLen)
	if err != nil {
		return Room{}, fmt.Errorf("store: room by name: %w", err)
	}
	row := s.r.QueryRowContext(ctx, `SELECT id, name, created_by, created_at FROM rooms WHERE name = ?`, name)
	r, err := scanSQLiteRoom(row)
	if err != nil {
		return Room{}, sqliteErr("room by name", err)
	}
	return r, nil
}

// AddMember implements Store.
func (s *SQLite) AddMember(ctx context.Context, roomID, userID uuid.UUID) error {
	_, err := s.w.ExecContext(ctx, `
		INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?, ?, ?)
		ON CONFLICT (room_id, user_id) DO NOTHING`,
		roomID, userID, stamp(time.Time{}).UnixMicro())
	if err != nil {
		return sqliteErr("add member", err)
	}
	return nil
}

// RemoveMember implements Store.
func (s *SQLite) RemoveMember(ctx context.Context, roomID, userID uuid.UUID) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM room_members WHERE room_id = ? AND user_id = ?`, roomID, userID)
	if err != nil {
		return sqliteErr("remove member", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return sqliteErr("remove member", err)
	} else if n > 0 {
		return nil
	}
	return s.mustExist(ctx, "remove member", `
		SELECT EXISTS (SELECT 1 FROM rooms WHERE id = ?) AND EXISTS (SELECT 1 FROM users WHERE id = ?)`,
		roomID, userID)
}

// Members implements Store. PasswordHash is left empty: lists never carry
// credentials.
func (s *SQLite) Members(ctx context.Context, roomID uuid.UUID) ([]User, error) {
	rows, err := s.r.QueryContext(ctx, `
		SELECT u.id, u.name, u.created_at, u.generation
		FROM room_members m JOIN users u ON u.id = m.user_id
		WHERE m.room_id = ?
		ORDER BY u.name`, roomID)
	if err != nil {
		return nil, sqliteErr("members", err)
	}
	us, err := collectSQLite(rows, scanSQLiteUserPublic)
	if err != nil {
		return nil, sqliteErr("members", err)
	}
	if len(us) == 0 {
		if err := s.mustExist(ctx, "members", `SELECT EXISTS (SELECT 1 FROM rooms WHERE id = ?)`, roomID); err != nil {
			return nil, err
		}
	}
	return us, nil
}

// RoomsOf implements Store.
func (s *SQLite) RoomsOf(ctx context.Context, userID uuid.UUID) ([]Room, error) {
	rows, err := s.r.QueryContext(ctx, `
		SELECT r.id, r.name, r.created_by, r.created_at
		FROM room_members m JOIN rooms r ON r.id = m.room_id
		WHERE m.user_id = ?
		ORDER BY r.name`, userID)
	if err != nil {
		return nil, sqliteErr("rooms of", err)
	}
	rs, err := collectSQLite(rows, scanSQLiteRoom)
	if err != nil {
		return nil, sqliteErr("rooms of", err)
	}
	if len(rs) == 0 {
		if err := s.mustExist(ctx, "rooms of", `SELECT EXISTS (SELECT 1 FROM users WHERE id = ?)`, userID); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

// Contacts implements Store. PasswordHash is left empty.
func (s *SQLite) Contacts(ctx context.Context, userID uuid.UUID) ([]User, error) {
	rows, err := s.r.QueryContext(ctx, `
		SELECT DISTINCT u.id, u.name, u.created_at, u.generation
		FROM room_members mine
		JOIN room_members theirs ON theirs.room_id = mine.room_id AND theirs.user_id <> mine.user_id
		JOIN users u ON u.id = theirs.user_id
		WHERE mine.user_id = ?
		ORDER BY u.name`, userID)
	if err != nil {
		return nil, sqliteErr("contacts", err)
	}
	us, err := collectSQLite(rows, scanSQLiteUserPublic)
	if err != nil {
		return nil, sqliteErr("contacts", err)
	}
	if len(us) == 0 {
		if err := s.mustExist(ctx, "contacts", `SELECT EXISTS (SELECT 1 FROM users WHERE id = ?)`, userID); err != nil {
			return nil, err
		}
	}
	return us, nil
}

// mustExist runs query, which selects one boolean, and returns ErrNotFound
// (wrapped with op) when it is false.
func (s *SQLite) mustExist(ctx context.Context, op, query string, args ...any) error {
	var ok bool
	if err := s.r.QueryRowContext(ctx, query, args...).Scan(&ok); err != nil {
		return sqliteErr(op, err)
	}
	if !ok {
		return fmt.Errorf("store: %s: %w", op, ErrNotFound)
	}
	return nil
}

// sqliteRow is what *sql.Row and *sql.Rows have in common.
type sqliteRow interface{ Scan(dest ...any) error }

func scanSQLiteUser(row sqliteRow) (User, error) {
	var (
		u       User
		hash    []byte
		created int64
	)
	if err := row.Scan(&u.ID, &u.Name, &hash, &created, &u.Generation); err != nil {
		return User{}, err
	}
	u.PasswordHash = string(hash)
	u.CreatedAt = time.UnixMicro(created).UTC()
	return u, nil
}

func scanSQLiteUserPublic(row sqliteRow) (User, error) {
	var (
		u       User
		created int64
	)
	if err := row.Scan(&u.ID, &u.Name, &created, &u.Generation); err != nil {
		return User{}, err
	}
	u.CreatedAt = time.UnixMicro(created).UTC()
	return u, nil
}

func scanSQLiteKeySet(row sqliteRow) (KeySet, error) {
	var (
		k       KeySet
		created int64
	)
	if err := row.Scan(&k.UserID, &k.Version, &k.SigningKey, &k.EncryptionKey, &k.SelfSignature, &created); err != nil {
		return KeySet{}, err
	}
	k.CreatedAt = time.UnixMicro(created).UTC()
	return k, nil
}

func scanSQLiteRoom(row sqliteRow) (Room, error) {
	var (
		r       Room
		creator uuid.NullUUID
		created int64
	)
	if err := row.Scan(&r.ID, &r.Name, &creator, &created); err != nil {
		return Room{}, err
	}
	r.CreatedBy = creator.UUID
	r.CreatedAt = time.UnixMicro(created).UTC()
	return r, nil
}

// collectSQLite scans every row with scan and closes rows. The result is
// never nil, so an empty list encodes as [] rather than null.
func collectSQLite[T any](rows *sql.Rows, scan func(sqliteRow) (T, error)) ([]T, error) {
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// expectOneRow turns an UPDATE that matched nothing into ErrNotFound.
func expectOneRow(op string, res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if n == 0 {
		return fmt.Errorf("store: %s: %w", op, ErrNotFound)
	}
	return nil
}

// sqliteErr maps a database/sql or SQLite error to the package's sentinels:
// no rows is ErrNotFound, a unique or primary-key violation ErrConflict, a
// foreign-key violation ErrNotFound (the referenced row is missing).
// The driver error stays in the chain for logs.
func sqliteErr(op string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store: %s: %w", op, ErrNotFound)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("store: %s: %w: %w", op, ErrConflict, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("store: %s: %w: %w", op, ErrNotFound, err)
		}
	}
	return fmt.Errorf("store: %s: %w", op, err)
}
