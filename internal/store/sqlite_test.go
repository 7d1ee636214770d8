package store

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// countRows implements rowCounter for the contract test.
func (s *SQLite) countRows(ctx context.Context, table string) (int, error) {
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
	err := s.r.QueryRowContext(ctx, q).Scan(&n)
	return n, err
}

// rawMessage implements messageTamperer for the contract test.
func (s *SQLite) rawMessage(ctx context.Context, stream string, seq int64) (int64, []byte, error) {
	var (
		keyID int64
		body  []byte
	)
	err := s.r.QueryRowContext(ctx, `SELECT key_id, body FROM messages WHERE stream = ? AND seq = ?`, stream, seq).Scan(&keyID, &body)
	return keyID, body, err
}

// setMessageColumn implements messageTamperer for the contract test.
func (s *SQLite) setMessageColumn(ctx context.Context, stream string, seq int64, column string, value any) error {
	if !tamperableColumns[column] {
		return fmt.Errorf("setMessageColumn: unknown column %q", column)
	}
	if t, ok := value.(time.Time); ok {
		value = t.UnixMicro()
	}
	// The column name is one of tamperableColumns.
	res, err := s.w.ExecContext(ctx, `UPDATE messages SET `+column+` = ? WHERE stream = ? AND seq = ?`, value, stream, seq)
	if err != nil {
		return err
	}
	return expectOneRow("set message column", res)
}

func openSQLiteTest(t *testing.T, path string, opts ...Option) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), path, opts...)
	if err != nil {
		t.Fatalf("OpenSQLite(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestSQLite(t *testing.T) {
	testStore(t, func(t *testing.T, opts ...Option) Store {
		return openSQLiteTest(t, filepath.Join(t.TempDir(), "messenger.db"), opts...)
	})
}

func numMigrations(t *testing.T, dialect string) int {
	t.Helper()
	ms, err := loadMigrations(migrationFiles, "migrations/"+dialect)
	if err != nil {
		t.Fatal(err)
	}
	return len(ms)
}

func TestSQLiteFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "store")
	path := filepath.Join(dir, "messenger.db")
	s := openSQLiteTest(t, path)
	mustCreateUser(t, s, "alice") // makes sure the WAL has been written

	for _, c := range []struct {
		path string
		want os.FileMode
	}{
		{dir, 0o700 | os.ModeDir},
		{path, 0o600},
		{path + "-wal", 0o600},
		{path + "-shm", 0o600},
	} {
		t.Run(filepath.Base(c.path), func(t *testing.T) {
			fi, err := os.Stat(c.path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode(); got != c.want {
				t.Errorf("mode %v, want %v", got, c.want)
			}
		})
	}
}

func TestSQLiteSettings(t *testing.T) {
	ctx := context.Background()
	s := openSQLiteTest(t, filepath.Join(t.TempDir(), "messenger.db"))
	for _, c := range []struct {
		pool   string
		pragma string
		want   string
	}{
		{"writer", "journal_mode", "wal"},
		{"writer", "foreign_keys", "1"},
		{"writer", "busy_timeout", "10000"},
		{"writer", "synchronous", "2"},
		{"writer", "query_only", "0"},
		{"reader", "journal_mode", "wal"},
		{"reader", "foreign_keys", "1"},
		{"reader", "busy_timeout", "10000"},
		{"reader", "query_only", "1"},
	} {
		t.Run(c.pool+" "+c.pragma, func(t *testing.T) {
			db := s.w
			if c.pool == "reader" {
				db = s.r
			}
			var got string
			// PRAGMA names cannot be bound; these are constants from the table above.
			if err := db.QueryRowContext(ctx, "PRAGMA "+c.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("PRAGMA %s = %s, want %s", c.pragma, got, c.want)
			}
		})
	}
	if got := s.w.Stats().MaxOpenConnections; got != 1 {
		t.Errorf("writer pool allows %d connections, want 1", got)
	}
}

func TestSQLiteReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "messenger.db")
	s1, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	alice := mustCreateUser(t, s1, "alice")
	var appliedAt int64
	if err := s1.r.QueryRowContext(ctx, `SELECT applied_at FROM schema_migrations WHERE version = 1`).Scan(&appliedAt); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := openSQLiteTest(t, path)
	if got, err := s2.UserByID(ctx, alice.ID); err != nil || got != alice {
		t.Errorf("after reopening: UserByID = %+v, %v; want %+v", got, err, alice)
	}
	if n := countRows(t, s2, "schema_migrations"); n != numMigrations(t, "sqlite") {
		t.Errorf("schema_migrations has %d rows, want %d", n, numMigrations(t, "sqlite"))
	}
	var again int64
	if err := s2.r.QueryRowContext(ctx, `SELECT applied_at FROM schema_migrations WHERE version = 1`).Scan(&again); err != nil {
		t.Fatal(err)
	}
	if again != appliedAt {
		t.Errorf("migration 1 re-applied: applied_at %d, then %d", appliedAt, again)
	}
}

func TestSQLiteConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "messenger.db")
	const n = 5
	stores := make([]*SQLite, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = OpenSQLite(context.Background(), path) })
	}
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
	if got := countRows(t, stores[0], "schema_migrations"); got != numMigrations(t, "sqlite") {
		t.Errorf("schema_migrations has %d rows, want %d", got, numMigrations(t, "sqlite"))
	}
	u := mustCreateUser(t, stores[1], "shared")
	if got, err := stores[n-1].UserByID(context.Background(), u.ID); err != nil || got != u {
		t.Errorf("another handle sees %+v, %v; want %+v", got, err, u)
	}
}

func TestSQLiteRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "messenger.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)`, 1000); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := OpenSQLite(ctx, path); !errors.Is(err, errSchemaTooNew) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("OpenSQLite on a newer schema: %v, want %v", err, errSchemaTooNew)
	}
}

func TestOpenSQLiteRejectsPaths(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file:x.db", filepath.Join(t.TempDir(), "a?mode=ro")} {
		t.Run(fmt.Sprintf("%q", path), func(t *testing.T) {
			s, err := OpenSQLite(context.Background(), path)
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
		})
	}
}

func TestOpenPicksSQLite(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, dsn, dataDir, wantPath string
	}{
		{"default in data dir", "", filepath.Join(dir, "new", "data"), filepath.Join(dir, "new", "data", "messenger.db")},
		{"sqlite URL", "sqlite://" + filepath.Join(dir, "a.db"), "ignored", filepath.Join(dir, "a.db")},
		{"file URI", "file:" + filepath.Join(dir, "b.db"), "", filepath.Join(dir, "b.db")},
		{"file URL", "file://" + filepath.Join(dir, "c.db"), "", filepath.Join(dir, "c.db")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := Open(context.Background(), c.dsn, c.dataDir)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			s, ok := st.(*SQLite)
			if !ok {
				t.Fatalf("Open returned %T, want *SQLite", st)
			}
			if s.path != c.wantPath {
				t.Errorf("path %s, want %s", s.path, c.wantPath)
			}
			if _, err := os.Stat(c.wantPath); err != nil {
				t.Error(err)
			}
		})
	}
	for _, c := range []struct{ name, dsn, dataDir string }{
		{"no dsn, no data dir", "", ""},
		{"unknown scheme", "mysql://localhost/messenger", dir},
		{"mistyped postgres", "postgress://localhost/messenger", dir},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := Open(context.Background(), c.dsn, c.dataDir)
			if err == nil {
				st.Close()
				t.Fatalf("Open(%q, %q) succeeded", c.dsn, c.dataDir)
			}
		})
	}
}

// TestSQLiteUpgradeGivesGeneration: a database made before the credential
// generation existed (migration 1 only) keeps its users, each at
// generation 1, once opened by this program.
func TestSQLiteUpgradeGivesGeneration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "messenger.db")
	ms, err := loadMigrations(migrationFiles, "migrations/sqlite")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path+"?"+sqliteWriterParams)
	if err != nil {
		t.Fatal(err)
	}
	if err := applySQLite(ctx, db, ms[0]); err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	if _, err := db.ExecContext(ctx, `INSERT INTO users (id, name, password_hash, created_at) VALUES (?, 'old', ?, 0)`,
		id, []byte(testHash)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openSQLiteTest(t, path)
	if u, err := s.UserByName(ctx, "old"); err != nil || u.ID != id || u.Generation != 1 {
		t.Fatalf("after the upgrade: %+v, %v; want the old user at generation 1", u, err)
	}
	if g, err := s.ChangePassword(ctx, id, testHash+"-new"); err != nil || g != 2 {
		t.Errorf("ChangePassword after the upgrade: %d, %v; want 2", g, err)
	}
}

// killChildEnv names the database file a re-executed test binary appends
// to before it is killed (TestSQLiteSurvivesKill).
const killChildEnv = "MESSENGER_STORE_KILL_CHILD"

// TestSQLiteKillChild is the process TestSQLiteSurvivesKill kills: it
// appends one message, reports it on stdout, and waits to be killed. It
// does nothing in a normal test run.
func TestSQLiteKillChild(t *testing.T) {
	path := os.Getenv(killChildEnv)
	if path == "" {
		t.Skip("run by TestSQLiteSurvivesKill")
	}
	ctx := context.Background()
	kr, err := NewKeyring(map[uint32][]byte{1: testStorageKey(1)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenSQLite(ctx, path, WithKeyring(kr))
	if err != nil {
		t.Fatal(err)
	}
	owner := mustCreateUser(t, s, "owner")
	room := mustCreateRoom(t, s, "lobby", owner)
	m := mustAppend(t, s, newMessage(RoomStream(room.Name), "committed before the kill"))
	fmt.Printf("appended %d %s\n", m.Seq, m.ID)
	select {} // no Close: the parent kills this process
}

// TestSQLiteSurvivesKill: a message whose AppendMessage returned is in the
// database after the process is killed with SIGKILL (no Close, so no
// checkpoint: the message is only in the WAL), and reads back on reopening.
func TestSQLiteSurvivesKill(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("in the child")
	}
	path := filepath.Join(t.TempDir(), "messenger.db")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSQLiteKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()
	var (
		seq int64
		id  string
	)
	if _, serr := fmt.Sscanf(line, "appended %d %s", &seq, &id); err != nil || serr != nil {
		t.Fatalf("child said %q (%v, %v); stderr:\n%s", line, err, serr, stderr.String())
	}
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("no WAL left by the killed process (%v): the test would not show recovery from it", err)
	}

	kr, err := NewKeyring(map[uint32][]byte{1: testStorageKey(1)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	s := openSQLiteTest(t, path, WithKeyring(kr))
	ms, pos, err := s.History(context.Background(), "room:lobby", HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Seq != seq || ms[0].ID.String() != id || string(ms[0].Body) != "committed before the kill" || pos.Seq != seq {
		t.Errorf("after the kill: %+v at %+v; want the message %s at seq %d", ms, pos, id, seq)
	}
}

// TestSQLiteUpgradeMakesDevices: a database made before devices existed
// (migrations 1 to 4) turns each user's current key set, its highest
// version, into the user's first device, with the user's id as device id;
// a user without keys gets none.
func TestSQLiteUpgradeMakesDevices(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "messenger.db")
	ms, err := loadMigrations(migrationFiles, "migrations/sqlite")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path+"?"+sqliteWriterParams)
	if err != nil {
		t.Fatal(err)
	}
	// Every migration before the one that made devices (0004).
	for _, m := range ms[:3] {
		if err := applySQLite(ctx, db, m); err != nil {
			t.Fatal(err)
		}
	}
	withKeys, without := uuid.New(), uuid.New()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO users (id, name, password_hash, created_at) VALUES (?, 'old', ?, 0)`, []any{withKeys, []byte(testHash)}},
		{`INSERT INTO users (id, name, password_hash, created_at) VALUES (?, 'nokeys', ?, 0)`, []any{without, []byte(testHash)}},
		{`INSERT INTO key_sets VALUES (?, 1, CAST('sig-1' AS BLOB), CAST('enc-1' AS BLOB), CAST('self-1' AS BLOB), 10)`, []any{withKeys}},
		{`INSERT INTO key_sets VALUES (?, 2, CAST('sig-2' AS BLOB), CAST('enc-2' AS BLOB), CAST('self-2' AS BLOB), 20)`, []any{withKeys}},
	} {
		if _, err := db.ExecContext(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openSQLiteTest(t, path)
	checkUpgradedDevices(t, s, withKeys, without)
}

// checkUpgradedDevices checks what TestSQLiteUpgradeMakesDevices and
// TestPostgresUpgradeMakesDevices set up.
func checkUpgradedDevices(t *testing.T, s Store, withKeys, without uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	ds, err := s.DevicesOf(ctx, withKeys)
	if err != nil || len(ds) != 1 {
		t.Fatalf("devices after the upgrade: %+v, %v; want one", ds, err)
	}
	d := ds[0]
	if d.ID != withKeys || d.UserID != withKeys || d.Name != "" || string(d.SigningKey) != "sig-2" ||
		string(d.EncryptionKey) != "enc-2" || string(d.SelfSignature) != "self-2" || !d.RemovedAt.IsZero() {
		t.Errorf("migrated device %+v; want id = user id and the keys of version 2", d)
	}
	if ds, err := s.DevicesOf(ctx, without); err != nil || len(ds) != 0 {
		t.Errorf("user without keys has devices %+v, %v", ds, err)
	}
	if _, err := s.AddDevice(ctx, testDevice(withKeys, "new")); err != nil {
		t.Errorf("AddDevice after the upgrade: %v", err)
	}
}

// TestSQLiteUpgradeKeepsRoomsAndMembers: migration 0005 rebuilds rooms
// (to make created_by nullable) with foreign keys off; every room and
// membership, and the foreign keys themselves, survive it.
func TestSQLiteUpgradeKeepsRoomsAndMembers(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "messenger.db")
	ms, err := loadMigrations(migrationFiles, "migrations/sqlite")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path+"?"+sqliteWriterParams)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:4] { // every migration before 0005
		if err := applySQLite(ctx, db, m); err != nil {
			t.Fatal(err)
		}
	}
	owner, room := uuid.New(), uuid.New()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO users (id, name, password_hash, created_at) VALUES (?, 'owner', ?, 0)`, []any{owner, []byte(testHash)}},
		{`INSERT INTO rooms (id, name, created_by, created_at) VALUES (?, 'lobby', ?, 5)`, []any{room, owner}},
		{`INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?, ?, 6)`, []any{room, owner}},
	} {
		if _, err := db.ExecContext(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openSQLiteTest(t, path)
	r, err := s.RoomByName(ctx, "lobby")
	if err != nil || r.ID != room || r.CreatedBy != owner {
		t.Fatalf("lobby after the upgrade: %+v, %v", r, err)
	}
	if rooms, err := s.RoomsOf(ctx, owner); err != nil || len(rooms) != 1 || rooms[0].ID != room {
		t.Errorf("owner's rooms after the upgrade: %+v, %v", rooms, err)
	}
	if _, err := s.CreateRoom(ctx, Room{Name: "orphan", CreatedBy: uuid.New()}); !errors.Is(err, ErrNotFound) {
		t.Errorf("a room by an unknown user after the upgrade: %v; want ErrNotFound (foreign keys on)", err)
	}
	if err := s.AddMember(ctx, uuid.New(), owner); !errors.Is(err, ErrNotFound) {
		t.Errorf("a member of an unknown room after the upgrade: %v; want ErrNotFound", err)
	}
	if r, err := s.CreateRoom(ctx, Room{Name: "anon"}); err != nil || r.CreatedBy != uuid.Nil {
		t.Errorf("a room without a creator: %+v, %v", r, err)
	}
}
