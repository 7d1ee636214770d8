package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// History on PostgreSQL. An append first takes the lock on its stream's
// row (the UPDATE, or the upsert, of head), so appends to one stream take
// turns and each sees what the one before committed, in READ COMMITTED:
// the sequence number and the check for a retried message id are both
// made under that lock. Reads of a page and its head share one
// REPEATABLE READ snapshot.

const pgMessageColumns = `stream, seq, msg_id, sender, sender_name, created_at, kind, key_id, body`

// AppendMessage implements HistoryStore.
func (p *Postgres) AppendMessage(ctx context.Context, m StoredMessage) (StoredMessage, bool, error) {
	return appendOne(ctx, p, m)
}

// pgHead is a stream's row as a batch holds it locked.
type pgHead struct {
	head  int64
	epoch uuid.UUID
	moved bool // head was raised by the batch
}

// pgMessageKey names a message in a stream.
type pgMessageKey struct {
	stream string
	id     uuid.UUID
}

// AppendMessages implements HistoryStore. One transaction in a few round
// trips whatever the batch's size: it locks the rows of the batch's
// streams in the order of their names (so that batches of two nodes
// cannot deadlock), reads the batch's ids that are stored already, then
// sends every insert and each stream's new head in one pipeline. Under
// those locks, numbering in memory is what the UPDATE of head would give.
func (p *Postgres) AppendMessages(ctx context.Context, ms []StoredMessage) ([]AppendResult, error) {
	if p.seal == nil {
		return nil, fmt.Errorf("store: append message: %w", ErrNoKeyring)
	}
	out := make([]AppendResult, len(ms))
	var (
		streams []string
		ids     []uuid.UUID
	)
	for i := range ms {
		m, err := prepareMessage(ms[i])
		if err != nil {
			out[i].Err = fmt.Errorf("store: append message: %w", err)
			continue
		}
		out[i].Message = m
		streams = append(streams, m.Stream)
		ids = append(ids, m.ID)
	}
	if len(streams) == 0 {
		return out, nil
	}
	slices.Sort(streams)
	streams = slices.Compact(streams)
	err := p.inTx(ctx, "append message", func(tx pgx.Tx) error {
		heads, err := p.lockStreams(ctx, tx, streams, out)
		if err != nil {
			return err
		}
		stored, err := p.storedAmong(ctx, tx, streams, ids)
		if err != nil {
			return err
		}
		batch := &pgx.Batch{}
		for i := range out {
			r := &out[i]
			if r.Err != nil {
				continue
			}
			m := r.Message
			key := pgMessageKey{m.Stream, m.ID}
			if old, ok := stored[key]; ok {
				if old.Sender != m.Sender {
					*r = AppendResult{Err: fmt.Errorf("store: append message: %w: message id taken by another sender", ErrConflict)}
				} else {
					*r = AppendResult{Message: old, Epoch: heads[m.Stream].epoch.String()}
				}
				continue
			}
			h := heads[m.Stream]
			if h == nil {
				*r = AppendResult{Err: fmt.Errorf("store: append message: %w", ErrNotFound)}
				continue
			}
			h.head++
			h.moved = true
			m.Seq = h.head
			keyID, sealed, err := p.seal.seal(&m)
			if err != nil {
				return err
			}
			batch.Queue(`INSERT INTO messages (`+pgMessageColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
				m.Stream, m.Seq, m.ID, m.Sender, m.SenderName, m.CreatedAt, m.Kind, int64(keyID), sealed)
			stored[key] = m
			*r = AppendResult{Message: m, Created: true, Epoch: h.epoch.String()}
		}
		for _, name := range streams {
			if h := heads[name]; h != nil && h.moved {
				batch.Queue(`UPDATE streams SET head = $2 WHERE name = $1`, name, h.head)
			}
		}
		if batch.Len() == 0 {
			return nil
		}
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// lockStreams locks the rows of streams (sorted) and returns their heads.
// A room's stream that does not exist yet is made, with head 0, if the
// room exists and out holds a message for it; a stream that is still
// missing then has no entry.
func (p *Postgres) lockStreams(ctx context.Context, tx pgx.Tx, streams []string, out []AppendResult) (map[string]*pgHead, error) {
	heads := make(map[string]*pgHead, len(streams))
	rows, err := tx.Query(ctx, `SELECT name, head, epoch FROM streams WHERE name = ANY($1) ORDER BY name FOR UPDATE`, streams)
	if err != nil {
		return nil, err
	}
	type row struct {
		name string
		h    pgHead
	}
	got, err := collectPg(rows, func(r pgx.Row) (x row, err error) { return x, r.Scan(&x.name, &x.h.head, &x.h.epoch) })
	if err != nil {
		return nil, err
	}
	for i := range got {
		heads[got[i].name] = &got[i].h
	}
	for _, name := range streams {
		room, ok := streamRoom(name)
		if heads[name] != nil || !ok {
			continue
		}
		// The first message of a room creates its stream, if the room
		// exists; a concurrent first message meets this one in ON
		// CONFLICT, and the row is then read under its lock.
		created := time.Time{}
		for i := range out {
			if out[i].Err == nil && out[i].Message.Stream == name {
				created = out[i].Message.CreatedAt
				break
			}
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO streams (name, epoch, head, created_at)
			SELECT $1, $2, 0, $3 WHERE EXISTS (SELECT 1 FROM rooms WHERE name = $4)
			ON CONFLICT (name) DO NOTHING`, name, uuid.New(), created, room); err != nil {
			return nil, err
		}
		var h pgHead
		err := tx.QueryRow(ctx, `SELECT head, epoch FROM streams WHERE name = $1 FOR UPDATE`, name).Scan(&h.head, &h.epoch)
		switch {
		case err == nil:
			heads[name] = &h
		case !errors.Is(err, pgx.ErrNoRows):
			return nil, err
		}
	}
	return heads, nil
}

// storedAmong returns the stored messages of streams whose id is among
// ids (read under the streams' locks, so a retry of a committed message
// finds it).
func (p *Postgres) storedAmong(ctx context.Context, tx pgx.Tx, streams []string, ids []uuid.UUID) (map[pgMessageKey]StoredMessage, error) {
	rows, err := tx.Query(ctx, `SELECT `+pgMessageColumns+` FROM messages WHERE stream = ANY($1) AND msg_id = ANY($2)`, streams, ids)
	if err != nil {
		return nil, err
	}
	olds, err := collectPg(rows, p.scanMessage)
	if err != nil {
		return nil, err
	}
	stored := make(map[pgMessageKey]StoredMessage, len(olds))
	for _, m := range olds {
		stored[pgMessageKey{m.Stream, m.ID}] = m
	}
	return stored, nil
}

// History implements HistoryStore.
func (p *Postgres) History(ctx context.Context, stream string, q HistoryQuery) ([]StoredMessage, StreamPosition, error) {
	if p.seal == nil {
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
	var (
		ms  []StoredMessage
		pos StreamPosition
	)
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	err = pgx.BeginTxFunc(ctx, p.pool, opts, func(tx pgx.Tx) error {
		var rows pgx.Rows
		var err error
		if page.ascending {
			rows, err = tx.Query(ctx, `SELECT `+pgMessageColumns+` FROM messages
				WHERE stream = $1 AND seq > $2 ORDER BY seq LIMIT $3`, stream, page.after, page.limit)
		} else {
			rows, err = tx.Query(ctx, `SELECT `+pgMessageColumns+` FROM messages
				WHERE stream = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3`, stream, page.before, page.limit)
		}
		if err != nil {
			return err
		}
		if ms, err = collectPg(rows, p.scanMessage); err != nil {
			return err
		}
		pos, err = pgStreamHead(ctx, tx, stream)
		return err
	})
	if err != nil {
		return nil, StreamPosition{}, pgErr("history", err)
	}
	if !page.ascending {
		slices.Reverse(ms)
	}
	return ms, pos, nil
}

// StreamHead implements HistoryStore.
func (p *Postgres) StreamHead(ctx context.Context, stream string) (StreamPosition, error) {
	stream, err := checkStream(stream)
	if err != nil {
		return StreamPosition{}, fmt.Errorf("store: stream head: %w", err)
	}
	var pos StreamPosition
	err = p.with(ctx, "stream head", func(c pgQuerier) (err error) {
		pos, err = pgStreamHead(ctx, c, stream)
		return err
	})
	return pos, err
}

// pgStreamHead reads the stream's position; StreamPosition{} if the stream
// does not exist.
func pgStreamHead(ctx context.Context, c pgQuerier, stream string) (StreamPosition, error) {
	var (
		pos   StreamPosition
		epoch uuid.UUID
	)
	err := c.QueryRow(ctx, `SELECT head, epoch FROM streams WHERE name = $1`, stream).Scan(&pos.Seq, &epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return StreamPosition{}, nil
	}
	pos.Epoch = epoch.String()
	return pos, err
}

// scanMessage scans a row of pgMessageColumns and opens its body.
func (p *Postgres) scanMessage(row pgx.Row) (StoredMessage, error) {
	var (
		m      StoredMessage
		keyID  int64
		sealed []byte
	)
	if err := row.Scan(&m.Stream, &m.Seq, &m.ID, &m.Sender, &m.SenderName, &m.CreatedAt, &m.Kind, &keyID, &sealed); err != nil {
		return StoredMessage{}, err
	}
	m.CreatedAt = m.CreatedAt.UTC()
	if err := p.seal.open(&m, keyID, sealed); err != nil {
		return StoredMessage{}, err
	}
	return m, nil
}

// Prune implements HistoryStore. It locks the stream's row, so it does
// not interleave with appends to the stream.
func (p *Postgres) Prune(ctx context.Context, stream string, policy RetentionPolicy) (int, error) {
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
	var n int64
	err = p.inTx(ctx, "prune", func(tx pgx.Tx) error {
		var head int64
		err := tx.QueryRow(ctx, `SELECT head FROM streams WHERE name = $1 FOR UPDATE`, stream).Scan(&head)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // nothing stored
		}
		if err != nil {
			return err
		}
		var newestOld int64
		if policy.MaxAge > 0 {
			if err := tx.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM messages WHERE stream = $1 AND created_at < $2`,
				stream, pruneCutoff(policy)).Scan(&newestOld); err != nil {
				return err
			}
		}
		cut := pruneCut(policy, head, newestOld)
		if cut <= 0 {
			return nil
		}
		tag, err := tx.Exec(ctx, `DELETE FROM messages WHERE stream = $1 AND seq <= $2`, stream, cut)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

// PruneAll implements HistoryStore.
func (p *Postgres) PruneAll(ctx context.Context, policy func(stream string) RetentionPolicy) (int, error) {
	var names []string
	err := p.with(ctx, "prune all", func(c pgQuerier) error {
		rows, err := c.Query(ctx, `SELECT name FROM streams ORDER BY name`)
		if err != nil {
			return err
		}
		names, err = collectPg(rows, func(r pgx.Row) (n string, err error) { return n, r.Scan(&n) })
		return err
	})
	if err != nil {
		return 0, err
	}
	return pruneEach(ctx, p, names, policy)
}

// Rewrap implements HistoryStore. SKIP LOCKED lets several rewrappers run
// at once, each on rows of its own.
func (p *Postgres) Rewrap(ctx context.Context, batch int) (int, error) {
	if p.seal == nil {
		return 0, fmt.Errorf("store: rewrap: %w", ErrNoKeyring)
	}
	batch, err := checkRewrapBatch(batch)
	if err != nil {
		return 0, fmt.Errorf("store: rewrap: %w", err)
	}
	current, _ := p.seal.kr.Current()
	var n int
	err = p.inTx(ctx, "rewrap", func(tx pgx.Tx) error {
		// Two ranges rather than <>, so that the key_id index serves.
		rows, err := tx.Query(ctx, `SELECT `+pgMessageColumns+` FROM messages
			WHERE key_id < $1 OR key_id > $1 LIMIT $2 FOR UPDATE SKIP LOCKED`, int64(current), batch)
		if err != nil {
			return err
		}
		ms, err := collectPg(rows, p.scanMessage)
		if err != nil {
			return err
		}
		for i := range ms {
			keyID, sealed, err := p.seal.seal(&ms[i])
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE messages SET key_id = $1, body = $2 WHERE stream = $3 AND seq = $4`,
				int64(keyID), sealed, ms[i].Stream, ms[i].Seq); err != nil {
				return err
			}
		}
		n = len(ms)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// KeyUsage implements HistoryStore.
func (p *Postgres) KeyUsage(ctx context.Context) (map[int64]int64, error) {
	out := map[int64]int64{}
	err := p.with(ctx, "key usage", func(c pgQuerier) error {
		rows, err := c.Query(ctx, `SELECT key_id, count(*) FROM messages GROUP BY key_id`)
		if err != nil {
			return err
		}
		type usage struct{ id, n int64 }
		us, err := collectPg(rows, func(r pgx.Row) (u usage, err error) { return u, r.Scan(&u.id, &u.n) })
		if err != nil {
			return err
		}
		for _, u := range us {
			out[u.id] = u.n
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetReadPosition implements HistoryStore.
func (p *Postgres) SetReadPosition(ctx context.Context, user uuid.UUID, stream string, seq int64) error {
	stream, err := checkReadPosition(stream, seq)
	if err != nil {
		return fmt.Errorf("store: set read position: %w", err)
	}
	return p.with(ctx, "set read position", func(c pgQuerier) error {
		var head int64
		if err := c.QueryRow(ctx, `SELECT head FROM streams WHERE name = $1`, stream).Scan(&head); err != nil {
			return err
		}
		if seq > head {
			return errBeyondHead(seq, head)
		}
		_, err := c.Exec(ctx, `
			INSERT INTO read_positions (user_id, stream, seq, updated_at) VALUES ($1, $2, $3, now())
			ON CONFLICT (user_id, stream) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at
			WHERE excluded.seq > read_positions.seq`,
			user, stream, seq)
		return err
	})
}

// ReadPosition implements HistoryStore.
func (p *Postgres) ReadPosition(ctx context.Context, user uuid.UUID, stream string) (int64, error) {
	stream, err := checkStream(stream)
	if err != nil {
		return 0, fmt.Errorf("store: read position: %w", err)
	}
	var seq int64
	err = p.with(ctx, "read position", func(c pgQuerier) error {
		err := c.QueryRow(ctx, `SELECT seq FROM read_positions WHERE user_id = $1 AND stream = $2`, user, stream).Scan(&seq)
		if errors.Is(err, pgx.ErrNoRows) {
			return pgMustExist(ctx, c, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, user)
		}
		return err
	})
	return seq, err
}

// ReadPositions implements HistoryStore.
func (p *Postgres) ReadPositions(ctx context.Context, user uuid.UUID) (map[string]int64, error) {
	out := map[string]int64{}
	err := p.with(ctx, "read positions", func(c pgQuerier) error {
		rows, err := c.Query(ctx, `SELECT stream, seq FROM read_positions WHERE user_id = $1`, user)
		if err != nil {
			return err
		}
		var (
			stream string
			seq    int64
		)
		if _, err := pgx.ForEachRow(rows, []any{&stream, &seq}, func() error { out[stream] = seq; return nil }); err != nil {
			return err
		}
		if len(out) > 0 {
			return nil
		}
		return pgMustExist(ctx, c, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, user)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CreateConversation implements HistoryStore. Concurrent creations for
// one pair meet in ON CONFLICT: the later waits for the earlier, then
// reads its row.
func (p *Postgres) CreateConversation(ctx context.Context, a, b uuid.UUID) (Conversation, error) {
	c, err := prepareConversation(a, b)
	if err != nil {
		return Conversation{}, fmt.Errorf("store: create conversation: %w", err)
	}
	err = p.inTx(ctx, "create conversation", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO conversations (id, user_a, user_b, created_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (user_a, user_b) DO NOTHING`,
			c.ID, c.UserA, c.UserB, c.CreatedAt)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			c, err = scanPgConversation(tx.QueryRow(ctx,
				`SELECT id, user_a, user_b, created_at FROM conversations WHERE user_a = $1 AND user_b = $2`, c.UserA, c.UserB))
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO streams (name, epoch, head, created_at) VALUES ($1, $2, 0, $3)`,
			c.Stream(), uuid.New(), c.CreatedAt)
		return err
	})
	if err != nil {
		return Conversation{}, err
	}
	return c, nil
}

// ConversationByID implements HistoryStore.
func (p *Postgres) ConversationByID(ctx context.Context, id uuid.UUID) (Conversation, error) {
	var c Conversation
	err := p.with(ctx, "conversation by id", func(q pgQuerier) (err error) {
		c, err = scanPgConversation(q.QueryRow(ctx, `SELECT id, user_a, user_b, created_at FROM conversations WHERE id = $1`, id))
		return err
	})
	return c, err
}

// ConversationsOf implements HistoryStore.
func (p *Postgres) ConversationsOf(ctx context.Context, user uuid.UUID) ([]Conversation, error) {
	var cs []Conversation
	err := p.with(ctx, "conversations of", func(c pgQuerier) error {
		rows, err := c.Query(ctx, `
			SELECT id, user_a, user_b, created_at FROM conversations
			WHERE user_a = $1 OR user_b = $1 ORDER BY created_at, id`, user)
		if err != nil {
			return err
		}
		if cs, err = collectPg(rows, scanPgConversation); err != nil || len(cs) > 0 {
			return err
		}
		return pgMustExist(ctx, c, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, user)
	})
	if err != nil {
		return nil, err
	}
	return cs, nil
}

// PutConversationKey implements HistoryStore. It locks the conversation's
// row, so concurrent puts take turns and the later one sees the version
// the earlier stored.
func (p *Postgres) PutConversationKey(ctx context.Context, conv uuid.UUID, version int, creator uuid.UUID, envelope []byte) (ConversationKey, error) {
	k, err := prepareConversationKey(conv, version, creator, envelope)
	if err != nil {
		return ConversationKey{}, fmt.Errorf("store: put conversation key: %w", err)
	}
	err = p.inTx(ctx, "put conversation key", func(tx pgx.Tx) error {
		c, err := scanPgConversation(tx.QueryRow(ctx,
			`SELECT id, user_a, user_b, created_at FROM conversations WHERE id = $1 FOR NO KEY UPDATE`, conv))
		if err != nil {
			return err
		}
		var highest int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM conversation_keys WHERE conversation_id = $1`,
			conv).Scan(&highest); err != nil {
			return err
		}
		if err := checkKeyVersion(c, k, highest); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO conversation_keys (conversation_id, version, created_by, envelope, created_at) VALUES ($1, $2, $3, $4, $5)`,
			k.ConversationID, k.Version, k.CreatedBy, k.Envelope, k.CreatedAt)
		return err
	})
	if err != nil {
		return ConversationKey{}, err
	}
	return k, nil
}

// ConversationKeys implements HistoryStore.
func (p *Postgres) ConversationKeys(ctx context.Context, conv uuid.UUID, sinceVersion int) ([]ConversationKey, error) {
	if sinceVersion < 0 {
		return nil, fmt.Errorf("store: conversation keys: %w", &FieldError{Field: "conversation_key.version", Reason: "must be >= 0"})
	}
	var ks []ConversationKey
	err := p.with(ctx, "conversation keys", func(c pgQuerier) error {
		rows, err := c.Query(ctx, `
			SELECT conversation_id, version, created_by, envelope, created_at FROM conversation_keys
			WHERE conversation_id = $1 AND version > $2 ORDER BY version`, conv, sinceVersion)
		if err != nil {
			return err
		}
		ks, err = collectPg(rows, func(r pgx.Row) (ConversationKey, error) {
			var k ConversationKey
			err := r.Scan(&k.ConversationID, &k.Version, &k.CreatedBy, &k.Envelope, &k.CreatedAt)
			k.CreatedAt = k.CreatedAt.UTC()
			return k, err
		})
		if err != nil || len(ks) > 0 {
			return err
		}
		return pgMustExist(ctx, c, `SELECT EXISTS (SELECT 1 FROM conversations WHERE id = $1)`, conv)
	})
	if err != nil {
		return nil, err
	}
	return ks, nil
}

func scanPgConversation(row pgx.Row) (Conversation, error) {
	var c Conversation
	if err := row.Scan(&c.ID, &c.UserA, &c.UserB, &c.CreatedAt); err != nil {
		return Conversation{}, err
	}
	c.CreatedAt = c.CreatedAt.UTC()
	return c, nil
}
