package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
)

// History on SQLite. Every write runs on the single writer connection in
// a BEGIN IMMEDIATE transaction, so appends to a stream are ordered by
// SQLite's write lock; reads run in a deferred transaction on the read
// pool, which WAL gives a snapshot.

const sqliteMessageColumns = `stream, seq, msg_id, sender, sender_name, created_at, kind, key_id, body`

// AppendMessage implements HistoryStore.
func (s *SQLite) AppendMessage(ctx context.Context, m StoredMessage) (StoredMessage, bool, error) {
	return appendOne(ctx, s, m)
}

// Statements of an append, prepared once on the writer connection (see
// sqliteStmts): every send runs them, and preparing them anew each time
// was a tenth of the server's CPU under fan-out.
const (
	sqliteSelectMessage = `SELECT ` + sqliteMessageColumns + ` FROM messages WHERE stream = ? AND msg_id = ?`
	// The first message of a room creates its stream, if the room exists.
	sqliteBumpRoomHead = `
		INSERT INTO streams (name, epoch, head, created_at)
		SELECT ?, ?, 1, ? WHERE EXISTS (SELECT 1 FROM rooms WHERE name = ?)
		ON CONFLICT (name) DO UPDATE SET head = head + 1
		RETURNING head, epoch`
	sqliteBumpHead      = `UPDATE streams SET head = head + 1 WHERE name = ? RETURNING head, epoch`
	sqliteInsertMessage = `INSERT INTO messages (` + sqliteMessageColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// AppendMessages implements HistoryStore: one BEGIN IMMEDIATE transaction
// on the writer for the whole batch, so one commit (one fsync of the WAL)
// for all of it.
func (s *SQLite) AppendMessages(ctx context.Context, ms []StoredMessage) ([]AppendResult, error) {
	if s.seal == nil {
		return nil, fmt.Errorf("store: append message: %w", ErrNoKeyring)
	}
	out := make([]AppendResult, len(ms))
	valid := 0
	for i := range ms {
		m, err := prepareMessage(ms[i])
		if err != nil {
			out[i].Err = fmt.Errorf("store: append message: %w", err)
			continue
		}
		out[i].Message = m
		valid++
	}
	if valid == 0 {
		return out, nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, sqliteErr("append message", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	st := s.stmts.in(ctx, tx)
	defer st.close()
	for i := range out {
		if out[i].Err != nil {
			continue
		}
		r, err := s.appendInTx(ctx, st, out[i].Message)
		if err != nil {
			return nil, sqliteErr("append message", err)
		}
		out[i] = r
	}
	if err := tx.Commit(); err != nil {
		return nil, sqliteErr("append message", err)
	}
	return out, nil
}

// appendInTx appends one validated message in the batch's transaction. An
// error returned fails the batch; one in the result is the message's own.
func (s *SQLite) appendInTx(ctx context.Context, st sqliteTxStmts, m StoredMessage) (AppendResult, error) {
	old, err := s.scanMessage(st.selectMessage.QueryRowContext(ctx, m.Stream, m.ID))
	switch {
	case err == nil:
		if old.Sender != m.Sender {
			return AppendResult{Err: fmt.Errorf("store: append message: %w: message id taken by another sender", ErrConflict)}, nil
		}
		var pos StreamPosition
		if pos, err = sqliteStreamHead(ctx, st.tx, m.Stream); err != nil {
			return AppendResult{}, err
		}
		return AppendResult{Message: old, Epoch: pos.Epoch}, nil
	case !errors.Is(err, sql.ErrNoRows):
		return AppendResult{}, err
	}
	var epoch string
	if room, ok := streamRoom(m.Stream); ok {
		err = st.bumpRoomHead.QueryRowContext(ctx, m.Stream, uuid.NewString(), m.CreatedAt.UnixMicro(), room).Scan(&m.Seq, &epoch)
	} else {
		err = st.bumpHead.QueryRowContext(ctx, m.Stream).Scan(&m.Seq, &epoch)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return AppendResult{Err: sqliteErr("append message", err)}, nil // ErrNotFound
	}
	if err != nil {
		return AppendResult{}, err
	}
	keyID, sealed, err := s.seal.seal(&m)
	if err != nil {
		return AppendResult{}, err
	}
	if _, err := st.insertMessage.ExecContext(ctx,
		m.Stream, m.Seq, m.ID, m.Sender, m.SenderName, m.CreatedAt.UnixMicro(), m.Kind, keyID, sealed); err != nil {
		return AppendResult{}, err
	}
	return AppendResult{Message: m, Created: true, Epoch: epoch}, nil
}

// sqliteStmts are the append's statements, prepared on the writer pool.
// With its single connection, tx.StmtContext finds them prepared on the
// transaction's connection and reuses them.
type sqliteStmts struct {
	selectMessage, bumpRoomHead, bumpHead, insertMessage *sql.Stmt
}

func prepareSQLiteStmts(ctx context.Context, db *sql.DB) (*sqliteStmts, error) {
	var st sqliteStmts
	for _, p := range []struct {
		dst   **sql.Stmt
		query string
	}{
		{&st.selectMessage, sqliteSelectMessage},
		{&st.bumpRoomHead, sqliteBumpRoomHead},
		{&st.bumpHead, sqliteBumpHead},
		{&st.insertMessage, sqliteInsertMessage},
	} {
		stmt, err := db.PrepareContext(ctx, p.query)
		if err != nil {
			st.close()
			return nil, fmt.Errorf("store: open sqlite: prepare: %w", err)
		}
		*p.dst = stmt
	}
	return &st, nil
}

func (st *sqliteStmts) close() error {
	var errs []error
	for _, stmt := range []*sql.Stmt{st.selectMessage, st.bumpRoomHead, st.bumpHead, st.insertMessage} {
		if stmt != nil {
			errs = append(errs, stmt.Close())
		}
	}
	return errors.Join(errs...)
}

// sqliteTxStmts are sqliteStmts bound to one transaction.
type sqliteTxStmts struct {
	tx                                                   *sql.Tx
	selectMessage, bumpRoomHead, bumpHead, insertMessage *sql.Stmt
}

func (st *sqliteStmts) in(ctx context.Context, tx *sql.Tx) sqliteTxStmts {
	return sqliteTxStmts{tx: tx,
		selectMessage: tx.StmtContext(ctx, st.selectMessage),
		bumpRoomHead:  tx.StmtContext(ctx, st.bumpRoomHead),
		bumpHead:      tx.StmtContext(ctx, st.bumpHead),
		insertMessage: tx.StmtContext(ctx, st.insertMessage),
	}
}

// close releases the transaction's handles; the prepared statements stay.
func (t sqliteTxStmts) close() {
	for _, stmt := range []*sql.Stmt{t.selectMessage, t.bumpRoomHead, t.bumpHead, t.insertMessage} {
		_ = stmt.Close()
	}
}

// History implements HistoryStore.
func (s *SQLite) History(ctx context.Context, stream string, q HistoryQuery) ([]StoredMessage, StreamPosition, error) {
	if s.seal == nil {
		return nil, StreamPosition{}, fmt.Errorf("store: history: %w", ErrNoKeyring)
	}
	stream, err := checkStream(stream)
	if err != nil {
		return nil, StreamPosition{}, fmt.Errorf("store: history: %w", err)
	}
	page, err := prepareHistoryQuery(q)
	if err != nil {
		return nil, StreamPosition{}, fmt.Errorf("store: history: %w", err)
	}
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, StreamPosition{}, sqliteErr("history", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only

	var rows *sql.Rows
	if page.ascending {
		rows, err = tx.QueryContext(ctx, `SELECT `+sqliteMessageColumns+` FROM messages
			WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ?`, stream, page.after, page.limit)
	} else {
		rows, err = tx.QueryContext(ctx, `SELECT `+sqliteMessageColumns+` FROM messages
			WHERE stream = ? AND seq < ? ORDER BY seq DESC LIMIT ?`, stream, page.before, page.limit)
	}
	if err != nil {
		return nil, StreamPosition{}, sqliteErr("history", err)
	}
	ms, err := collectSQLite(rows, s.scanMessage)
	if err != nil {
		return nil, StreamPosition{}, sqliteErr("history", err)
	}
	if !page.ascending {
		slices.Reverse(ms)
	}
	pos, err := sqliteStreamHead(ctx, tx, stream)
	if err != nil {
		return nil, StreamPosition{}, sqliteErr("history", err)
	}
	return ms, pos, nil
}

// StreamHead implements HistoryStore.
func (s *SQLite) StreamHead(ctx context.Context, stream string) (StreamPosition, error) {
	stream, err := checkStream(stream)
	if err != nil {
		return StreamPosition{}, fmt.Errorf("store: stream head: %w", err)
	}
	pos, err := sqliteStreamHead(ctx, s.r, stream)
	if err != nil {
		return StreamPosition{}, sqliteErr("stream head", err)
	}
	return pos, nil
}

// sqliteQuerier is what *sql.DB and *sql.Tx have in common.
type sqliteQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// sqliteStreamHead reads the stream's position; StreamPosition{} if the
// stream does not exist.
func sqliteStreamHead(ctx context.Context, q sqliteQuerier, stream string) (StreamPosition, error) {
	var pos StreamPosition
	err := q.QueryRowContext(ctx, `SELECT head, epoch FROM streams WHERE name = ?`, stream).Scan(&pos.Seq, &pos.Epoch)
	if errors.Is(err, sql.ErrNoRows) {
		return StreamPosition{}, nil
	}
	return pos, err
}

// scanMessage scans a row of sqliteMessageColumns and opens its body.
// An authentication failure is returned as is (ErrCorrupt, ErrUnknownKey),
// never as sql.ErrNoRows.
func (s *SQLite) scanMessage(row sqliteRow) (StoredMessage, error) {
	var (
		m       StoredMessage
		created int64
		keyID   int64
		sealed  []byte
	)
	if err := row.Scan(&m.Stream, &m.Seq, &m.ID, &m.Sender, &m.SenderName, &created, &m.Kind, &keyID, &sealed); err != nil {
		return StoredMessage{}, err
	}
	m.CreatedAt = time.UnixMicro(created).UTC()
	if err := s.seal.open(&m, keyID, sealed); err != nil {
		return StoredMessage{}, err
	}
	return m, nil
}

// Prune implements HistoryStore.
func (s *SQLite) Prune(ctx context.Context, stream string, policy RetentionPolicy) (int, error) {
	stream, err := checkStream(stream)
	if err != nil {
		return 0, fmt.Errorf("store: prune: %w", err)
	}
	if err := checkRetention(policy); err != nil {
		return 0, fmt.Errorf("store: prune: %w", err)
	}
	if policy == (RetentionPolicy{}) {
		return 0, nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, sqliteErr("prune", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	pos, err := sqliteStreamHead(ctx, tx, stream)
	if err != nil {
		return 0, sqliteErr("prune", err)
	}
	var newestOld int64
	if policy.MaxAge > 0 {
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM messages WHERE stream = ? AND created_at < ?`,
			stream, pruneCutoff(policy).UnixMicro()).Scan(&newestOld); err != nil {
			return 0, sqliteErr("prune", err)
		}
	}
	cut := pruneCut(policy, pos.Seq, newestOld)
	if cut <= 0 {
		return 0, nil
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE stream = ? AND seq <= ?`, stream, cut)
	if err != nil {
		return 0, sqliteErr("prune", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, sqliteErr("prune", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, sqliteErr("prune", err)
	}
	return int(n), nil
}

// PruneAll implements HistoryStore.
func (s *SQLite) PruneAll(ctx context.Context, policy func(stream string) RetentionPolicy) (int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name FROM streams ORDER BY name`)
	if err != nil {
		return 0, sqliteErr("prune all", err)
	}
	names, err := collectSQLite(rows, func(r sqliteRow) (n string, err error) { return n, r.Scan(&n) })
	if err != nil {
		return 0, sqliteErr("prune all", err)
	}
	return pruneEach(ctx, s, names, policy)
}

// Rewrap implements HistoryStore.
func (s *SQLite) Rewrap(ctx context.Context, batch int) (int, error) {
	if s.seal == nil {
		return 0, fmt.Errorf("store: rewrap: %w", ErrNoKeyring)
	}
	batch, err := checkRewrapBatch(batch)
	if err != nil {
		return 0, fmt.Errorf("store: rewrap: %w", err)
	}
	current, _ := s.seal.kr.Current()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, sqliteErr("rewrap", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	// Two ranges rather than <>, so that the key_id index serves.
	rows, err := tx.QueryContext(ctx, `SELECT `+sqliteMessageColumns+` FROM messages
		WHERE key_id < ? OR key_id > ? LIMIT ?`, current, current, batch)
	if err != nil {
		return 0, sqliteErr("rewrap", err)
	}
	ms, err := collectSQLite(rows, s.scanMessage)
	if err != nil {
		return 0, sqliteErr("rewrap", err)
	}
	for i := range ms {
		keyID, sealed, err := s.seal.seal(&ms[i])
		if err != nil {
			return 0, fmt.Errorf("store: rewrap: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE messages SET key_id = ?, body = ? WHERE stream = ? AND seq = ?`,
			keyID, sealed, ms[i].Stream, ms[i].Seq); err != nil {
			return 0, sqliteErr("rewrap", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, sqliteErr("rewrap", err)
	}
	return len(ms), nil
}

// KeyUsage implements HistoryStore.
func (s *SQLite) KeyUsage(ctx context.Context) (map[int64]int64, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT key_id, count(*) FROM messages GROUP BY key_id`)
	if err != nil {
		return nil, sqliteErr("key usage", err)
	}
	type usage struct{ id, n int64 }
	us, err := collectSQLite(rows, func(r sqliteRow) (u usage, err error) { return u, r.Scan(&u.id, &u.n) })
	if err != nil {
		return nil, sqliteErr("key usage", err)
	}
	out := make(map[int64]int64, len(us))
	for _, u := range us {
		out[u.id] = u.n
	}
	return out, nil
}

// SetReadPosition implements HistoryStore.
func (s *SQLite) SetReadPosition(ctx context.Context, user uuid.UUID, stream string, seq int64) error {
	stream, err := checkReadPosition(stream, seq)
	if err != nil {
		return fmt.Errorf("store: set read position: %w", err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return sqliteErr("set read position", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var head int64
	if err := tx.QueryRowContext(ctx, `SELECT head FROM streams WHERE name = ?`, stream).Scan(&head); err != nil {
		return sqliteErr("set read position", err)
	}
	if seq > head {
		return fmt.Errorf("store: set read position: %w", errBeyondHead(seq, head))
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO read_positions (user_id, stream, seq, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (user_id, stream) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at
		WHERE excluded.seq > read_positions.seq`,
		user, stream, seq, stamp(time.Time{}).UnixMicro()); err != nil {
		return sqliteErr("set read position", err)
	}
	if err := tx.Commit(); err != nil {
		return sqliteErr("set read position", err)
	}
	return nil
}

// ReadPosition implements HistoryStore.
func (s *SQLite) ReadPosition(ctx context.Context, user uuid.UUID, stream string) (int64, error) {
	stream, err := checkStream(stream)
	if err != nil {
		return 0, fmt.Errorf("store: read position: %w", err)
	}
	var seq int64
	err = s.r.QueryRowContext(ctx, `SELECT seq FROM read_positions WHERE user_id = ? AND stream = ?`, user, stream).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, s.mustExist(ctx, "read position", `SELECT EXISTS (SELECT 1 FROM users WHERE id = ?)`, user)
	}
	if err != nil {
		return 0, sqliteErr("read position", err)
	}
	return seq, nil
}

// ReadPositions implements HistoryStore.
func (s *SQLite) ReadPositions(ctx context.Context, user uuid.UUID) (map[string]int64, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT stream, seq FROM read_positions WHERE user_id = ?`, user)
	if err != nil {
		return nil, sqliteErr("read positions", err)
	}
	type pos struct {
		stream string
		seq    int64
	}
	ps, err := collectSQLite(rows, func(r sqliteRow) (p pos, err error) { return p, r.Scan(&p.stream, &p.seq) })
	if err != nil {
		return nil, sqliteErr("read positions", err)
	}
	if len(ps) == 0 {
		if err := s.mustExist(ctx, "read positions", `SELECT EXISTS (SELECT 1 FROM users WHERE id = ?)`, user); err != nil {
			return nil, err
		}
	}
	out := make(map[string]int64, len(ps))
	for _, p := range ps {
		out[p.stream] = p.seq
	}
	return out, nil
}

// CreateConversation implements HistoryStore.
func (s *SQLite) CreateConversation(ctx context.Context, a, b uuid.UUID) (Conversation, error) {
	c, err := prepareConversation(a, b)
	if err != nil {
		return Conversation{}, fmt.Errorf("store: create conversation: %w", err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return Conversation{}, sqliteErr("create conversation", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	old, err := scanSQLiteConversation(tx.QueryRowContext(ctx,
		`SELECT id, user_a, user_b, created_at FROM conversations WHERE user_a = ? AND user_b = ?`, c.UserA, c.UserB))
	if err == nil {
		return old, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return Conversation{}, sqliteErr("create conversation", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO conversations (id, user_a, user_b, created_at) VALUES (?, ?, ?, ?)`,
		c.ID, c.UserA, c.UserB, c.CreatedAt.UnixMicro()); err != nil {
		return Conversation{}, sqliteErr("create conversation", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO streams (name, epoch, head, created_at) VALUES (?, ?, 0, ?)`,
		c.Stream(), uuid.NewString(), c.CreatedAt.UnixMicro()); err != nil {
		return Conversation{}, sqliteErr("create conversation", err)
	}
	if err := tx.Commit(); err != nil {
		return Conversation{}, sqliteErr("create conversation", err)
	}
	return c, nil
}

// ConversationByID implements HistoryStore.
func (s *SQLite) ConversationByID(ctx context.Context, id uuid.UUID) (Conversation, error) {
	c, err := scanSQLiteConversation(s.r.QueryRowContext(ctx,
		`SELECT id, user_a, user_b, created_at FROM conversations WHERE id = ?`, id))
	if err != nil {
		return Conversation{}, sqliteErr("conversation by id", err)
	}
	return c, nil
}

// ConversationsOf implements HistoryStore.
func (s *SQLite) ConversationsOf(ctx context.Context, user uuid.UUID) ([]Conversation, error) {
	rows, err := s.r.QueryContext(ctx, `
		SELECT id, user_a, user_b, created_at FROM conversations
		WHERE user_a = ? OR user_b = ? ORDER BY created_at, id`, user, user)
	if err != nil {
		return nil, sqliteErr("conversations of", err)
	}
	cs, err := collectSQLite(rows, scanSQLiteConversation)
	if err != nil {
		return nil, sqliteErr("conversations of", err)
	}
	if len(cs) == 0 {
		if err := s.mustExist(ctx, "conversations of", `SELECT EXISTS (SELECT 1 FROM users WHERE id = ?)`, user); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

// PutConversationKey implements HistoryStore.
func (s *SQLite) PutConversationKey(ctx context.Context, conv uuid.UUID, version int, creator uuid.UUID, envelope []byte) (ConversationKey, error) {
	k, err := prepareConversationKey(conv, version, creator, envelope)
	if err != nil {
		return ConversationKey{}, fmt.Errorf("store: put conversation key: %w", err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return ConversationKey{}, sqliteErr("put conversation key", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	c, err := scanSQLiteConversation(tx.QueryRowContext(ctx,
		`SELECT id, user_a, user_b, created_at FROM conversations WHERE id = ?`, conv))
	if err != nil {
		return ConversationKey{}, sqliteErr("put conversation key", err)
	}
	var highest int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM conversation_keys WHERE conversation_id = ?`,
		conv).Scan(&highest); err != nil {
		return ConversationKey{}, sqliteErr("put conversation key", err)
	}
	if err := checkKeyVersion(c, k, highest); err != nil {
		return ConversationKey{}, fmt.Errorf("store: put conversation key: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO conversation_keys (conversation_id, version, created_by, envelope, created_at) VALUES (?, ?, ?, ?, ?)`,
		k.ConversationID, k.Version, k.CreatedBy, k.Envelope, k.CreatedAt.UnixMicro()); err != nil {
		return ConversationKey{}, sqliteErr("put conversation key", err)
	}
	if err := tx.Commit(); err != nil {
		return ConversationKey{}, sqliteErr("put conversation key", err)
	}
	return k, nil
}

// ConversationKeys implements HistoryStore.
func (s *SQLite) ConversationKeys(ctx context.Context, conv uuid.UUID, sinceVersion int) ([]ConversationKey, error) {
	if sinceVersion < 0 {
		return nil, fmt.Errorf("store: conversation keys: %w", &FieldError{Field: "conversation_key.version", Reason: "must be >= 0"})
	}
	rows, err := s.r.QueryContext(ctx, `
		SELECT conversation_id, version, created_by, envelope, created_at FROM conversation_keys
		WHERE conversation_id = ? AND version > ? ORDER BY version`, conv, sinceVersion)
	if err != nil {
		return nil, sqliteErr("conversation keys", err)
	}
	ks, err := collectSQLite(rows, func(r sqliteRow) (ConversationKey, error) {
		var (
			k       ConversationKey
			created int64
		)
		err := r.Scan(&k.ConversationID, &k.Version, &k.CreatedBy, &k.Envelope, &created)
		k.CreatedAt = time.UnixMicro(created).UTC()
		return k, err
	})
	if err != nil {
		return nil, sqliteErr("conversation keys", err)
	}
	if len(ks) == 0 {
		if err := s.mustExist(ctx, "conversation keys", `SELECT EXISTS (SELECT 1 FROM conversations WHERE id = ?)`, conv); err != nil {
			return nil, err
		}
	}
	return ks, nil
}

func scanSQLiteConversation(row sqliteRow) (Conversation, error) {
	var (
		c       Conversation
		created int64
	)
	if err := row.Scan(&c.ID, &c.UserA, &c.UserB, &created); err != nil {
		return Conversation{}, err
	}
	c.CreatedAt = time.UnixMicro(created).UTC()
	return c, nil
}
