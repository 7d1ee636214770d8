package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the production Store, on PostgreSQL 13 or newer. It uses
// native uuid, bytea and timestamptz columns; names are kept lower-case in
// a plain text column with a UNIQUE constraint (citext is not assumed).
type Postgres struct {
	pool *pgxpool.Pool
	seal *sealer // nil without a keyring
}

var _ Store = (*Postgres)(nil)

// OpenPostgres connects to the database at dsn (a postgres:// URL or a
// key=value connection string) and applies pending migrations; concurrent
// Opens of one database are safe. The connections come from a pgxpool.Pool,
// so dsn may carry its pool_* parameters: pool_max_conns sets the connection
// limit (default: 4 or the number of CPUs, whichever is more).
//
// Idle connections are pinged before reuse once they have sat for more than
// a second (pgxpool's default), so connections the server dropped, as in a
// database restart, cost reconnects rather than failed requests.
//
// opts: WithKeyring, WithQueryTracer.
func OpenPostgres(ctx context.Context, dsn string, opts ...Option) (*Postgres, error) {
	// A ParseConfigError shows dsn with its password redacted.
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	cfg.ConnConfig.Tracer = applyOptions(opts).tracer
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	// NewWithConfig dials lazily; acquiring here makes an unreachable or
	// refusing server an Open error, and migrates on that connection.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	err = migratePostgres(ctx, conn.Conn())
	conn.Release()
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &Postgres{pool: pool, seal: newSealer(applyOptions(opts).keyring)}, nil
}

// Close closes the connections. It waits for calls in progress to give
// their connections back.
func (p *Postgres) Close() error {
	p.pool.Close()
	return nil
}

// Ping checks that the server answers.
func (p *Postgres) Ping(ctx context.Context) error {
	if err := p.pool.Ping(ctx); err != nil {
		return pgErr("ping", err)
	}
	return nil
}

// pgQuerier is what the queries need; *pgxpool.Conn and pgx.Tx provide it.
type pgQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// with runs fn on one pooled connection, outside a transaction, and maps
// its error for op.
func (p *Postgres) with(ctx context.Context, op string, fn func(pgQuerier) error) error {
	err := p.pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error { return fn(c) })
	if err != nil {
		return pgErr(op, err)
	}
	return nil
}

// inTx runs fn in a transaction on one pooled connection, committing if fn
// returns nil and rolling back otherwise, and maps its error for op.
func (p *Postgres) inTx(ctx context.Context, op string, fn func(pgx.Tx) error) error {
	if err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{}, fn); err != nil {
		return pgErr(op, err)
	}
	return nil
}

// CreateUser implements Store.
func (p *Postgres) CreateUser(ctx context.Context, u User) (User, error) {
	u, err := prepareUser(u)
	if err != nil {
		return User{}, fmt.Errorf("store: create user: %w", err)
	}
	err = p.with(ctx, "create user", func(c pgQuerier) error {
		_, err := c.Exec(ctx,
			`INSERT INTO users (id, name, password_hash, created_at) VALUES ($1, $2, $3, $4)`,
			u.ID, u.Name, []byte(u.PasswordHash), u.CreatedAt)
		return err
	})
	if err != nil {
		return User{}, err
	}
	return u, nil
}

// CreateUserWithKeys implements Store.
func (p *Postgres) CreateUserWithKeys(ctx context.Context, u User, k KeySet) (User, KeySet, error) {
	u, k, err := prepareUserWithKeys(u, k)
	if err != nil {
		return User{}, KeySet{}, err
	}
	err = p.inTx(ctx, "create user with keys", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx,
			`INSERT INTO users (id, name, password_hash, created_at) VALUES ($1, $2, $3, $4)`,
			u.ID, u.Name, []byte(u.PasswordHash), u.CreatedAt); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO key_sets (user_id, version, signing_key, encryption_key, self_signature, created_at)
			VALUES ($1, 1, $2, $3, $4, $5)`,
			k.UserID, k.SigningKey, k.EncryptionKey, k.SelfSignature, k.CreatedAt)
		return err
	})
	if err != nil {
		return User{}, KeySet{}, err
	}
	return u, k, nil
}

// UserByName implements Store.
func (p *Postgres) UserByName(ctx context.Context, name string) (User, error) {
	name, err := normalizeName("user.name", name, MaxUserNameLen)
	if err != nil {
		return User{}, fmt.Errorf("store: user by name: %w", err)
	}
	var u User
	err = p.with(ctx, "user by name", func(c pgQuerier) (err error) {
		u, err = scanPgUser(c.QueryRow(ctx,
			`SELECT id, name, password_hash, created_at, generation FROM users WHERE name = $1`, name))
		return err
	})
	return u, err
}

// UserByID implements Store.
func (p *Postgres) UserByID(ctx context.Context, id uuid.UUID) (User, error) {
	var u User
	err := p.with(ctx, "user by id", func(c pgQuerier) (err error) {
		u, err = scanPgUser(c.QueryRow(ctx,
			`SELECT id, name, password_hash, created_at, generation FROM users WHERE id = $1`, id))
		return err
	})
	return u, err
}

// SetPasswordHash implements Store.
func (p *Postgres) SetPasswordHash(ctx context.Context, id uuid.UUID, hash string) error {
	if err := checkPasswordHash(hash); err != nil {
		return fmt.Errorf("store: set password hash: %w", err)
	}
	return p.with(ctx, "set password hash", func(c pgQuerier) error {
		tag, err := c.Exec(ctx, `UPDATE users SET password_hash = $1 WHERE id = $2`, []byte(hash), id)
		if err == nil && tag.RowsAffected() == 0 {
			err = ErrNotFound
		}
		return err
	})
}

// ChangePassword implements Store.
func (p *Postgres) ChangePassword(ctx context.Context, id uuid.UUID, hash string) (int64, error) {
	if err := checkPasswordHash(hash); err != nil {
		return 0, fmt.Errorf("store: change password: %w", err)
	}
	var gen int64
	err := p.with(ctx, "change password", func(c pgQuerier) error {
		return c.QueryRow(ctx,
			`UPDATE users SET password_hash = $1, generation = generation + 1 WHERE id = $2 RETURNING generation`,
			[]byte(hash), id).Scan(&gen)
	})
	if err != nil {
		return 0, err
	}
	return gen, nil
}

// PublishKeys implements Store. It locks the user's row first, so
// concurrent publishes for one user take turns and each sees the version
// and the generation the previous one wrote. FOR NO KEY UPDATE does not
// block inserts that merely reference the user (memberships).
func (p *Postgres) PublishKeys(ctx context.Context, k KeySet) (KeySet, int64, error) {
	k, err := prepareKeySet(k)
	if err != nil {
		return KeySet{}, 0, fmt.Errorf("store: publish keys: %w", err)
	}
	var gen int64
	err = p.inTx(ctx, "publish keys", func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT generation FROM users WHERE id = $1 FOR NO KEY UPDATE`, k.UserID).Scan(&gen); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `
			INSERT INTO key_sets (user_id, version, signing_key, encryption_key, self_signature, created_at)
			SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5 FROM key_sets WHERE user_id = $1
			RETURNING version`,
			k.UserID, k.SigningKey, k.EncryptionKey, k.SelfSignature, k.CreatedAt,
		).Scan(&k.Version)
		if err != nil || k.Version == 1 {
			return err
		}
		return tx.QueryRow(ctx, `UPDATE users SET generation = generation + 1 WHERE id = $1 RETURNING generation`, k.UserID).Scan(&gen)
	})
	if err != nil {
		return KeySet{}, 0, err
	}
	return k, gen, nil
}

// CurrentKeys implements Store.
func (p *Postgres) CurrentKeys(ctx context.Context, userID uuid.UUID) (KeySet, error) {
	var k KeySet
	err := p.with(ctx, "current keys", func(c pgQuerier) (err error) {
		k, err = scanPgKeySet(c.QueryRow(ctx, `
			SELECT user_id, version, signing_key, encryption_key, self_signature, created_at
			FROM key_sets WHERE user_id = $1 ORDER BY version DESC LIMIT 1`, userID))
		return err
	})
	return k, err
}

// KeyHistory implements Store.
func (p *Postgres) KeyHistory(ctx context.Context, userID uuid.UUID) ([]KeySet, error) {
	var ks []KeySet
	err := p.with(ctx, "key history", func(c pgQuerier) error {
		rows, err := c.Query(ctx, `
			SELECT user_id, version, signing_key, encryption_key, self_signature, created_at
			FROM key_sets WHERE user_id = $1 ORDER BY version`, userID)
		if err != nil {
			return err
		}
		if ks, err = collectPg(rows, scanPgKeySet); err != nil || len(ks) > 0 {
			return err
		}
		return pgMustExist(ctx, c, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, userID)
	})
	if err != nil {
		return nil, err
	}
	return ks, nil
}

// CreateRoom implements Store.
func (p *Postgres) CreateRoom(ctx context.Context, r Room) (Room, error) {
	r, err := prepareRoom(r)
	if err != nil {
		return Room{}, fmt.Errorf("store: create room: %w", err)
	}
	err = p.with(ctx, "create room", func(c pgQuerier) error {
		_, err := c.Exec(ctx,
			`INSERT INTO rooms (id, name, created_by, created_at) VALUES ($1, $2, $3, $4)`,
			r.ID, r.Name, roomCreator(r.CreatedBy), r.CreatedAt)
		return err
	})
	if err != nil {
		return Room{}, err
	}
	return r, nil
}

// RoomByName implements Store.
func (p *Postgres) RoomByName(ctx context.Context, name string) (Room, error) {
	name, err := normalizeName("room.name", name, MaxRoomNameLen)
	if err != nil {
		return Room{}, fmt.Errorf("store: room by name: %w", err)
	}
	var r Room
	err = p.with(ctx, "room by name", func(c pgQuerier) (err error) {
		r, err = scanPgRoom(c.QueryRow(ctx,
			`SELECT id, name, created_by, created_at FROM rooms WHERE name = $1`, name))
		return err
	})
	return r, err
}

// AddMember implements Store.
func (p *Postgres) AddMember(ctx context.Context, roomID, userID uuid.UUID) error {
	return p.with(ctx, "add member", func(c pgQuerier) error {
		_, err := c.Exec(ctx, `
			INSERT INTO room_members (room_id, user_id) VALUES ($1, $2)
			ON CONFLICT (room_id, user_id) DO NOTHING`, roomID, userID)
		return err
	})
}

// RemoveMember implements Store.
func (p *Postgres) RemoveMember(ctx context.Context, roomID, userID uuid.UUID) error {
	return p.with(ctx, "remove member", func(c pgQuerier) error {
		tag, err := c.Exec(ctx, `DELETE FROM room_members WHERE room_id = $1 AND user_id = $2`, roomID, userID)
		if err != nil || tag.RowsAffected() > 0 {
			return err
		}
		return pgMustExist(ctx, c, `
			SELECT EXISTS (SELECT 1 FROM rooms WHERE id = $1) AND EXISTS (SELECT 1 FROM users WHERE id = $2)`,
			roomID, userID)
	})
}

// Members implements Store. PasswordHash is left empty: lists never carry
// credentials.
func (p *Postgres) Members(ctx context.Context, roomID uuid.UUID) ([]User, error) {
	var us []User
	err := p.with(ctx, "members", func(c pgQuerier) error {
		rows, err := c.Query(ctx, `
			SELECT u.id, u.name, u.created_at, u.generation
			FROM room_members m JOIN users u ON u.id = m.user_id
			WHERE m.room_id = $1
			ORDER BY u.name`, roomID)
		if err != nil {
			return err
		}
		if us, err = collectPg(rows, scanPgUserPublic); err != nil || len(us) > 0 {
			return err
		}
		return pgMustExist(ctx, c, `SELECT EXISTS (SELECT 1 FROM rooms WHERE id = $1)`, roomID)
	})
	if err != nil {
		return nil, err
	}
	return us, nil
}

// RoomsOf implements Store.
func (p *Postgres) RoomsOf(ctx context.Context, userID uuid.UUID) ([]Room, error) {
	var rs []Room
	err := p.with(ctx, "rooms of", func(c pgQuerier) error {
		rows, err := c.Query(ctx, `
			SELECT r.id, r.name, r.created_by, r.created_at
			FROM room_members m JOIN rooms r ON r.id = m.room_id
			WHERE m.user_id = $1
			ORDER BY r.name`, userID)
		if err != nil {
			return err
		}
		if rs, err = collectPg(rows, scanPgRoom); err != nil || len(rs) > 0 {
			return err
		}
		return pgMustExist(ctx, c, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, userID)
	})
	if err != nil {
		return nil, err
	}
	return rs, nil
}

// Contacts implements Store. PasswordHash is left empty.
func (p *Postgres) Contacts(ctx context.Context, userID uuid.UUID) ([]User, error) {
	var us []User
	err := p.with(ctx, "contacts", func(c pgQuerier) error {
		rows, err := c.Query(ctx, `
			SELECT DISTINCT u.id, u.name, u.created_at, u.generation
			FROM room_members mine
			JOIN room_members theirs ON theirs.room_id = mine.room_id AND theirs.user_id <> mine.user_id
			JOIN users u ON u.id = theirs.user_id
			WHERE mine.user_id = $1
			ORDER BY u.name`, userID)
		if err != nil {
			return err
		}
		if us, err = collectPg(rows, scanPgUserPublic); err != nil || len(us) > 0 {
			return err
		}
		return pgMustExist(ctx, c, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, userID)
	})
	if err != nil {
		return nil, err
	}
	return us, nil
}

// pgMustExist runs query, which selects one boolean, and returns
// ErrNotFound when it is false.
func pgMustExist(ctx context.Context, c pgQuerier, query string, args ...any) error {
	var ok bool
	if err := c.QueryRow(ctx, query, args...).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return ErrNotFound
	}
	return nil
}

func scanPgUser(row pgx.Row) (User, error) {
	var (
		u    User
		hash []byte
	)
	if err := row.Scan(&u.ID, &u.Name, &hash, &u.CreatedAt, &u.Generation); err != nil {
		return User{}, err
	}
	u.PasswordHash = string(hash)
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

func scanPgUserPublic(row pgx.Row) (User, error) {
	var u User
	if err := row.Scan(&u.ID, &u.Name, &u.CreatedAt, &u.Generation); err != nil {
		return User{}, err
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

func scanPgKeySet(row pgx.Row) (KeySet, error) {
	var k KeySet
	if err := row.Scan(&k.UserID, &k.Version, &k.SigningKey, &k.EncryptionKey, &k.SelfSignature, &k.CreatedAt); err != nil {
		return KeySet{}, err
	}
	k.CreatedAt = k.CreatedAt.UTC()
	return k, nil
}

func scanPgRoom(row pgx.Row) (Room, error) {
	var (
		r       Room
		creator uuid.NullUUID
	)
	if err := row.Scan(&r.ID, &r.Name, &creator, &r.CreatedAt); err != nil {
		return Room{}, err
	}
	r.CreatedBy = creator.UUID
	r.CreatedAt = r.CreatedAt.UTC()
	return r, nil
}

// collectPg scans every row with scan and closes rows. The result is never
// nil, so an empty list encodes as [] rather than null.
func collectPg[T any](rows pgx.Rows, scan func(pgx.Row) (T, error)) ([]T, error) {
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

// PostgreSQL error codes (SQLSTATE) the store maps to sentinels.
const (
	pgUniqueViolation     = "23505"
	pgForeignKeyViolation = "23503"
)

// pgErr maps a pgx error to the package's sentinels: no rows is
// ErrNotFound, a unique violation ErrConflict, a foreign-key violation
// ErrNotFound (the referenced row is missing). The driver error stays in the
// chain for logs.
func pgErr(op string, err error) error {
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && pe.Code == pgUniqueViolation:
		return fmt.Errorf("store: %s: %w: %w", op, ErrConflict, err)
	case errors.As(err, &pe) && pe.Code == pgForeignKeyViolation:
		return fmt.Errorf("store: %s: %w: %w", op, ErrNotFound, err)
	case errors.Is(err, pgx.ErrNoRows), errors.Is(err, ErrNotFound):
		return fmt.Errorf("store: %s: %w", op, ErrNotFound)
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

// WithQueryTracer has every PostgreSQL query reported to t (metrics: its
// latency and failures). Nil means none. SQLite stores ignore it.
func WithQueryTracer(t pgx.QueryTracer) Option { return func(o *options) { o.tracer = t } }
