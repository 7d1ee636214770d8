package store

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// History: durable, ordered message streams.
//
// A stream is the history of one room ("room:<room name>") or one direct
// conversation ("conv:<conversation id>"). Every message appended to a
// stream gets the stream's next sequence number, 1, 2, 3..., in the same
// transaction that stores it, so a committed message always has its number
// and numbers have no gaps. A stream's position is {epoch, seq}, as in
// centrifuge's StreamPosition: seq is the stream's head (the last number
// given out) and the epoch names this copy of the stream.
//
// The epoch is a random UUID made when the stream's row is created, and no
// normal operation changes it: not appending, not pruning, not rewrapping,
// not a restart. It changes only if the stream's row is lost and made anew
// (the database was replaced, or the row deleted by hand). A client that
// holds a position {E, n} and then finds another epoch, or the same epoch
// with a head below n (a backup restored), knows that the history it saw
// is gone or rewound and must reload instead of asking for "after n".
// A restored backup that has since grown past n again keeps its epoch and
// cannot be told apart this way; whoever restores a backup must tell
// clients to reload.
//
// Message bodies are stored sealed (AES-256-GCM under a key from the
// store's Keyring, see sealer); everything else on the row is stored in
// the clear and bound to the body as additional data.

// More sentinel errors, for history.
var (
	// ErrCorrupt reports a stored message that failed authentication on
	// read: its body, or a column bound to it (stream, seq, id, sender,
	// sender name, time, kind, key id), was altered or moved. The message
	// is never returned.
	ErrCorrupt = errors.New("store: stored message failed authentication")
	// ErrNoKeyring reports a history operation on a store opened without a
	// keyring (WithKeyring): it cannot seal or open message bodies.
	ErrNoKeyring = errors.New("store: no keyring: message bodies cannot be sealed or opened (open the store WithKeyring)")
	// ErrUnknownKey reports a key id that the keyring does not hold: a
	// message sealed under a key that was removed before Rewrap moved it to
	// the current one.
	ErrUnknownKey = errors.New("store: unknown storage key id")
)

// Limits of history values.
const (
	// MaxMessageBodyLen is the longest message body, in bytes.
	MaxMessageBodyLen = 80 << 10
	// MaxSenderNameLen is the longest sender name, in bytes of UTF-8.
	MaxSenderNameLen = 64
	// MaxKindLen is the longest message kind.
	MaxKindLen = 16
	// MaxEnvelopeLen is the longest conversation key envelope, in bytes.
	MaxEnvelopeLen = 64 << 10
	// DefaultHistoryLimit is the page size of a HistoryQuery whose Limit is 0.
	DefaultHistoryLimit = 50
	// MaxHistoryLimit is the largest page; a larger Limit is lowered to it.
	MaxHistoryLimit = 200
	// MaxRewrapBatch is the most rows one Rewrap call re-seals; a larger
	// batch is lowered to it.
	MaxRewrapBatch = 1000
)

// Message kinds the server stores. The store accepts any kind of
// 1..MaxKindLen characters from [a-z0-9_.-] and does not interpret it.
const (
	// KindMessage is a room message; its body is readable by the server.
	KindMessage = "msg"
	// KindE2E is an end-to-end encrypted record of a direct conversation;
	// its body is the client's ciphertext, opaque to the server.
	KindE2E = "e2e"
)

// Stream name prefixes.
const (
	roomStreamPrefix = "room:"
	convStreamPrefix = "conv:"
)

// RoomStream returns the name of the room's stream. It does not check the
// room name; the store does when the name is used.
func RoomStream(room string) string { return roomStreamPrefix + room }

// ConversationStream returns the name of the conversation's stream.
func ConversationStream(id uuid.UUID) string { return convStreamPrefix + id.String() }

// StreamPosition is a position in a stream, as centrifuge has it: Seq is a
// sequence number (for a stream's head: the last one given out, 0 before
// the first message) and Epoch names the copy of the stream it belongs to
// (a UUID string; "" for a stream that does not exist yet). See the
// package's history notes for when the epoch changes.
type StreamPosition struct {
	// Seq is the sequence number.
	Seq int64
	// Epoch is the stream's epoch.
	Epoch string
}

// StoredMessage is one message of a stream.
type StoredMessage struct {
	// Stream is "room:<room name>" or "conv:<conversation id>". Room names
	// are case-insensitive and returned lower-case.
	Stream string
	// Seq is assigned by AppendMessage; a value passed in is ignored.
	Seq int64
	// ID is the client-chosen message id, not uuid.Nil. It stays the same
	// across retries of one message; (Stream, ID) is unique.
	ID uuid.UUID
	// Sender is the sending user's id, or uuid.Nil for an anonymous sender.
	// The store does not check that the user exists (messages outlive
	// accounts, and anonymous senders have none).
	Sender uuid.UUID
	// SenderName is the name the sender had, 0..MaxSenderNameLen bytes of
	// UTF-8.
	SenderName string
	// CreatedAt is set by AppendMessage when zero; UTC, microseconds.
	// Retention by age (Prune) expects it to rise with Seq, as it does when
	// the server stamps messages.
	CreatedAt time.Time
	// Kind says what Body holds, e.g. KindMessage or KindE2E.
	Kind string
	// Body is 1..MaxMessageBodyLen opaque bytes: for a room message, the
	// server-readable payload; for an end-to-end record, the client's
	// ciphertext. It is stored sealed either way.
	Body []byte
}

// AppendResult is the outcome of one message of an AppendMessages batch.
type AppendResult struct {
	// Message is the message as stored (Seq and CreatedAt filled in), or,
	// for a retry, as it was stored before. Zero when Err is set.
	Message StoredMessage
	// Created is true if this call stored the message, false for a retry
	// of a stored one.
	Created bool
	// Epoch is the epoch of the message's stream, so that an answer can
	// name the position {Epoch, Message.Seq} without reading the head.
	Epoch string
	// Err is why this message was not stored: an invalid message
	// (ErrInvalid), a stream that does not exist (ErrNotFound), or an id
	// taken by another sender (ErrConflict).
	Err error
}

// appendOne is AppendMessage on top of AppendMessages.
func appendOne(ctx context.Context, s HistoryStore, m StoredMessage) (StoredMessage, bool, error) {
	rs, err := s.AppendMessages(ctx, []StoredMessage{m})
	if err != nil {
		return StoredMessage{}, false, err
	}
	if rs[0].Err != nil {
		return StoredMessage{}, false, rs[0].Err
	}
	return rs[0].Message, rs[0].Created, nil
}

// HistoryQuery selects a page of a stream. At most one of After and
// Before may be set; with neither, the page is the stream's newest
// messages. Pages are always in ascending order of Seq.
type HistoryQuery struct {
	// After, if set (>= 0), asks for the oldest messages with Seq > *After.
	After *int64
	// Before, if set (>= 0), asks for the newest messages with
	// Seq < *Before, still returned in ascending order.
	Before *int64
	// Limit is the most messages returned: 0 means DefaultHistoryLimit,
	// more than MaxHistoryLimit means MaxHistoryLimit; negative is invalid.
	Limit int
}

// RetentionPolicy says how much of a stream Prune keeps. The zero value
// keeps everything.
type RetentionPolicy struct {
	// MaxAge, if positive, removes messages older than this (by CreatedAt),
	// together with every message before them in the stream.
	MaxAge time.Duration
	// MaxCount, if positive, keeps only the newest MaxCount sequence numbers
	// of the stream: messages with Seq <= head - MaxCount are removed.
	MaxCount int
}

// Conversation is a direct conversation between two users. There is at
// most one per unordered pair. Its content is end-to-end encrypted by the
// clients; the store knows only who is in it.
type Conversation struct {
	// ID is a random UUID assigned by CreateConversation.
	ID uuid.UUID
	// UserA and UserB are the two members, UserA sorting before UserB (by
	// the UUID's bytes).
	UserA, UserB uuid.UUID
	// CreatedAt is when the conversation was created; UTC, microseconds.
	CreatedAt time.Time
}

// Stream returns the conversation's stream name.
func (c Conversation) Stream() string { return ConversationStream(c.ID) }

// Has reports whether user is one of the conversation's two members.
func (c Conversation) Has(user uuid.UUID) bool { return user == c.UserA || user == c.UserB }

// ConversationKey is one version of a conversation's key, as an envelope
// the clients made: the key wrapped to every device of both members and
// signed. The store keeps it as it is, not sealed at rest: the key inside
// is already encrypted to the devices' public keys, whose private halves
// the server never has, and the clients check the signature themselves,
// so sealing it under the storage key would protect nothing that is not
// protected already. (Its size, and who stored it when, are in the clear.)
type ConversationKey struct {
	// ConversationID is the conversation.
	ConversationID uuid.UUID
	// Version is 1, 2, 3...; each is the previous plus one.
	Version int
	// CreatedBy is the member who stored this version.
	CreatedBy uuid.UUID
	// Envelope is 1..MaxEnvelopeLen opaque bytes.
	Envelope []byte
	// CreatedAt is when the version was stored; UTC, microseconds.
	CreatedAt time.Time
}

// HistoryStore is the durable history: message streams, read positions,
// direct conversations and their key envelopes. Store includes it. Like
// Store's, every method validates its input before running any SQL.
//
// Methods that seal or open message bodies (AppendMessage, History,
// Rewrap) return ErrNoKeyring on a store opened without a keyring; the
// others work without one.
type HistoryStore interface {
	// AppendMessage stores m in m.Stream under the stream's next sequence
	// number and returns it with Seq and CreatedAt filled in and
	// created=true. Concurrent appends to one stream get distinct,
	// consecutive numbers. The first append to a room's stream creates the
	// stream (ErrNotFound if no room has that name); a conversation's
	// stream exists from CreateConversation on (ErrNotFound before).
	//
	// If the stream already holds a message with m.ID, nothing is stored:
	// that message is returned as it was stored, with created=false (a
	// retry of a committed message), whatever Body the retry carries;
	// ErrConflict if it has another Sender. A message removed by Prune is
	// no longer there to match.
	AppendMessage(ctx context.Context, m StoredMessage) (_ StoredMessage, created bool, err error)
	// AppendMessages stores ms as AppendMessage stores each, in one
	// transaction and one commit (group commit), and returns one result
	// per message in the order given. A message that AppendMessage would
	// refuse (invalid, ErrNotFound, ErrConflict) gets that error in its
	// own result and does not fail the others; messages of one stream get
	// their sequence numbers in the order of ms, and a message id given
	// twice is stored once (the second is a retry of the first). The
	// returned error is for the whole batch (the database failed, ctx
	// ended, ErrNoKeyring): then nothing of it is stored and the results
	// are nil.
	AppendMessages(ctx context.Context, ms []StoredMessage) ([]AppendResult, error)
	// History returns a page of the stream's messages (see HistoryQuery)
	// and the stream's head, read at the same moment: the head is at least
	// the last Seq returned. A stream that does not exist yet gives an
	// empty page and StreamPosition{} (epoch ""). After Prune, the first
	// message returned is the oldest kept. A stored message that fails
	// authentication fails the call with an error matching ErrCorrupt; one
	// under a key the keyring lacks, with ErrUnknownKey.
	History(ctx context.Context, stream string, q HistoryQuery) ([]StoredMessage, StreamPosition, error)
	// StreamHead returns the stream's head: the last sequence number given
	// out (0 before the first message) and the epoch. A stream that does
	// not exist yet gives StreamPosition{} and no error.
	StreamHead(ctx context.Context, stream string) (StreamPosition, error)

	// Prune removes old messages of the stream as policy says and returns
	// how many it removed. Only a prefix of the stream is removed; the head
	// and the epoch stay, so sequence numbers are never reused. A stream
	// that does not exist yet has nothing to remove.
	Prune(ctx context.Context, stream string, policy RetentionPolicy) (deleted int, err error)
	// PruneAll runs Prune on every stream with policy(stream), each stream
	// in its own transaction, and returns the total removed. It stops at
	// the first error, returning what was removed until then.
	PruneAll(ctx context.Context, policy func(stream string) RetentionPolicy) (deleted int, err error)
	// Rewrap re-seals up to batch (1..; at most MaxRewrapBatch) messages
	// that are sealed under another key than the keyring's current one,
	// in one short transaction, and returns how many it re-sealed; 0 means
	// none is left. Reads keep working meanwhile: every row names its key.
	// A message that fails authentication stops it with ErrCorrupt, and one
	// under a key the keyring lacks with ErrUnknownKey; nothing of that
	// batch is re-sealed.
	Rewrap(ctx context.Context, batch int) (int, error)
	// KeyUsage returns how many stored messages name each key id (ids
	// that no message names are absent; empty, not nil, with no
	// messages). It opens nothing and works without a keyring: what a
	// key rotation checks before a key is removed from the keyring.
	KeyUsage(ctx context.Context) (map[int64]int64, error)

	// SetReadPosition records that user has received the stream up to seq.
	// The position only moves forward: a seq at or below the recorded one
	// is ignored, without error. A seq beyond the stream's head is
	// ErrInvalid; ErrNotFound if the stream or the user does not exist.
	SetReadPosition(ctx context.Context, user uuid.UUID, stream string, seq int64) error
	// ReadPosition returns user's read position in the stream, 0 if none
	// is recorded. ErrNotFound if the user does not exist.
	ReadPosition(ctx context.Context, user uuid.UUID, stream string) (int64, error)
	// ReadPositions returns all of user's read positions by stream (empty,
	// not nil, if none). ErrNotFound if the user does not exist.
	ReadPositions(ctx context.Context, user uuid.UUID) (map[string]int64, error)

	// CreateConversation returns the direct conversation of a and b,
	// creating it, with its stream, if there is none; the order of a and b
	// does not matter. ErrNotFound if either user does not exist,
	// ErrInvalid if a == b.
	CreateConversation(ctx context.Context, a, b uuid.UUID) (Conversation, error)
	// ConversationByID finds a conversation.
	ConversationByID(ctx context.Context, id uuid.UUID) (Conversation, error)
	// ConversationsOf returns the user's conversations, oldest first (empty,
	// not nil, if none). ErrNotFound if the user does not exist.
	ConversationsOf(ctx context.Context, user uuid.UUID) ([]Conversation, error)
	// PutConversationKey stores a new version of the conversation's key
	// envelope. version must be the current highest plus one (1 for the
	// first): otherwise ErrConflict, so that two devices rotating at once
	// learn that one lost. creator must be a member (else ErrInvalid);
	// ErrNotFound if the conversation does not exist.
	PutConversationKey(ctx context.Context, conversation uuid.UUID, version int, creator uuid.UUID, envelope []byte) (ConversationKey, error)
	// ConversationKeys returns the conversation's key versions above
	// sinceVersion (>= 0), oldest first (empty, not nil, if none).
	// ErrNotFound if the conversation does not exist.
	ConversationKeys(ctx context.Context, conversation uuid.UUID, sinceVersion int) ([]ConversationKey, error)
}

// CanonicalStream validates a stream name and returns it canonical: a
// room name lower-cased, a conversation id in canonical UUID form. An
// invalid name is ErrInvalid.
func CanonicalStream(name string) (string, error) {
	s, err := checkStream(name)
	if err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	return s, nil
}

// IsConversationStream reports whether a stream name is a conversation's.
func IsConversationStream(name string) bool { return strings.HasPrefix(name, convStreamPrefix) }

// checkStream validates a stream name and returns it canonical: a room
// name lower-cased, a conversation id in canonical UUID form.
func checkStream(name string) (string, error) {
	switch {
	case strings.HasPrefix(name, roomStreamPrefix):
		room, err := normalizeName("stream", name[len(roomStreamPrefix):], MaxRoomNameLen)
		if err != nil {
			return "", err
		}
		return roomStreamPrefix + room, nil
	case strings.HasPrefix(name, convStreamPrefix):
		rest := name[len(convStreamPrefix):]
		id, err := uuid.Parse(rest)
		if err != nil || len(rest) != 36 || id == uuid.Nil {
			return "", &FieldError{Field: "stream", Reason: "conversation id must be a UUID (8-4-4-4-12 hex digits), not nil"}
		}
		return convStreamPrefix + id.String(), nil
	default:
		return "", &FieldError{Field: "stream", Reason: `must be "room:<room name>" or "conv:<conversation id>"`}
	}
}

// streamRoom returns the room name of a canonical room stream, and false
// for a conversation stream.
func streamRoom(stream string) (string, bool) {
	return strings.CutPrefix(stream, roomStreamPrefix)
}

func checkKind(kind string) error {
	if len(kind) == 0 || len(kind) > MaxKindLen {
		return &FieldError{Field: "message.kind", Reason: fmt.Sprintf("must be 1..%d characters", MaxKindLen)}
	}
	for i := range len(kind) {
		c := kind[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || (i > 0 && (c == '_' || c == '.' || c == '-'))) {
			return &FieldError{Field: "message.kind", Reason: "may contain only a-z, 0-9, '_', '.' and '-', starting with a letter or digit"}
		}
	}
	return nil
}

// prepareMessage validates m and fills in the defaults AppendMessage
// promises; Seq is left for the backend to assign.
func prepareMessage(m StoredMessage) (StoredMessage, error) {
	stream, err := checkStream(m.Stream)
	if err != nil {
		return StoredMessage{}, err
	}
	if m.ID == uuid.Nil {
		return StoredMessage{}, &FieldError{Field: "message.id", Reason: "must not be the nil UUID"}
	}
	if len(m.SenderName) > MaxSenderNameLen || !utf8.ValidString(m.SenderName) {
		return StoredMessage{}, &FieldError{Field: "message.sender_name", Reason: fmt.Sprintf("must be 0..%d bytes of UTF-8", MaxSenderNameLen)}
	}
	if err := checkKind(m.Kind); err != nil {
		return StoredMessage{}, err
	}
	if err := checkBytes("message.body", m.Body, MaxMessageBodyLen); err != nil {
		return StoredMessage{}, err
	}
	m.Stream = stream
	m.Seq = 0
	m.CreatedAt = stamp(m.CreatedAt)
	return m, nil
}

// historyPage is a validated HistoryQuery: the messages with Seq > after
// in ascending order when ascending, else those with Seq < before in
// descending order (reversed by the caller), at most limit of them.
type historyPage struct {
	ascending     bool
	after, before int64
	limit         int
}

func prepareHistoryQuery(q HistoryQuery) (historyPage, error) {
	p := historyPage{before: math.MaxInt64, limit: q.Limit}
	switch {
	case q.After != nil && q.Before != nil:
		return historyPage{}, &FieldError{Field: "history.after", Reason: "after and before exclude each other"}
	case q.After != nil:
		if *q.After < 0 {
			return historyPage{}, &FieldError{Field: "history.after", Reason: "must be >= 0"}
		}
		p.ascending, p.after = true, *q.After
	case q.Before != nil:
		if *q.Before < 0 {
			return historyPage{}, &FieldError{Field: "history.before", Reason: "must be >= 0"}
		}
		p.before = *q.Before
	}
	switch {
	case q.Limit < 0:
		return historyPage{}, &FieldError{Field: "history.limit", Reason: "must be >= 0"}
	case q.Limit == 0:
		p.limit = DefaultHistoryLimit
	case q.Limit > MaxHistoryLimit:
		p.limit = MaxHistoryLimit
	}
	return p, nil
}

func checkRetention(p RetentionPolicy) error {
	if p.MaxAge < 0 {
		return &FieldError{Field: "retention.max_age", Reason: "must be >= 0"}
	}
	if p.MaxCount < 0 {
		return &FieldError{Field: "retention.max_count", Reason: "must be >= 0"}
	}
	return nil
}

// pruneCut returns the highest sequence number Prune removes (0: none):
// everything up to head - MaxCount, and everything up to the newest
// message older than MaxAge (newestOld, 0 if none).
func pruneCut(p RetentionPolicy, head, newestOld int64) int64 {
	var cut int64
	if p.MaxCount > 0 {
		cut = max(cut, head-int64(p.MaxCount))
	}
	if p.MaxAge > 0 {
		cut = max(cut, newestOld)
	}
	return cut
}

// pruneCutoff is the creation time before which MaxAge removes messages.
func pruneCutoff(p RetentionPolicy) time.Time {
	if p.MaxAge <= 0 {
		return time.Time{}
	}
	return stamp(time.Time{}).Add(-p.MaxAge)
}

// pruneEach prunes each stream by policy, for PruneAll.
func pruneEach(ctx context.Context, s HistoryStore, streams []string, policy func(string) RetentionPolicy) (int, error) {
	if policy == nil {
		return 0, fmt.Errorf("store: prune all: %w", &FieldError{Field: "retention", Reason: "no policy given"})
	}
	total := 0
	for _, name := range streams {
		n, err := s.Prune(ctx, name, policy(name))
		total += n
		if err != nil {
			return total, fmt.Errorf("store: prune all: %w", err)
		}
	}
	return total, nil
}

func checkRewrapBatch(batch int) (int, error) {
	if batch < 1 {
		return 0, &FieldError{Field: "rewrap.batch", Reason: "must be >= 1"}
	}
	return min(batch, MaxRewrapBatch), nil
}

func checkReadPosition(stream string, seq int64) (string, error) {
	stream, err := checkStream(stream)
	if err != nil {
		return "", err
	}
	if seq < 0 {
		return "", &FieldError{Field: "read.seq", Reason: "must be >= 0"}
	}
	return stream, nil
}

// errBeyondHead is the error for a read position past the stream's head.
func errBeyondHead(seq, head int64) error {
	return &FieldError{Field: "read.seq", Reason: fmt.Sprintf("%d is beyond the stream's head (%d)", seq, head)}
}

// prepareConversation orders a and b and makes a new conversation of them.
func prepareConversation(a, b uuid.UUID) (Conversation, error) {
	if a == b {
		return Conversation{}, &FieldError{Field: "conversation.members", Reason: "must be two different users"}
	}
	if bytes.Compare(a[:], b[:]) > 0 {
		a, b = b, a
	}
	return Conversation{ID: uuid.New(), UserA: a, UserB: b, CreatedAt: stamp(time.Time{})}, nil
}

// prepareConversationKey validates what PutConversationKey was given.
func prepareConversationKey(conv uuid.UUID, version int, creator uuid.UUID, envelope []byte) (ConversationKey, error) {
	if version < 1 {
		return ConversationKey{}, &FieldError{Field: "conversation_key.version", Reason: "must be >= 1"}
	}
	if err := checkBytes("conversation_key.envelope", envelope, MaxEnvelopeLen); err != nil {
		return ConversationKey{}, err
	}
	return ConversationKey{ConversationID: conv, Version: version, CreatedBy: creator,
		Envelope: envelope, CreatedAt: stamp(time.Time{})}, nil
}

// checkKeyVersion is the rule PutConversationKey applies once it knows
// the conversation and its highest version.
func checkKeyVersion(c Conversation, k ConversationKey, highest int) error {
	if !c.Has(k.CreatedBy) {
		return &FieldError{Field: "conversation_key.created_by", Reason: "must be a member of the conversation"}
	}
	if k.Version != highest+1 {
		return fmt.Errorf("%w: key version %d, the next is %d", ErrConflict, k.Version, highest+1)
	}
	return nil
}

// Keyring holds the keys that seal message bodies at rest, by id. The
// store seals new bodies under the current key and opens each stored body
// with the key its row names, so old ids stay readable until Rewrap has
// moved every row to the current one.
type Keyring interface {
	// Current returns the id and the 32-byte AES-256 key to seal with.
	Current() (id uint32, key []byte)
	// Key returns the key with that id, or an error matching ErrUnknownKey.
	Key(id uint32) ([]byte, error)
}

// StaticKeyring is a fixed Keyring.
type StaticKeyring struct {
	keys    map[uint32][]byte
	current uint32
}

var _ Keyring = (*StaticKeyring)(nil)

// NewKeyring returns a Keyring holding keys (each 32 bytes, under an id
// other than 0) that seals with keys[current]. It keeps copies.
func NewKeyring(keys map[uint32][]byte, current uint32) (*StaticKeyring, error) {
	kr := &StaticKeyring{keys: make(map[uint32][]byte, len(keys)), current: current}
	for id, k := range keys {
		if id == 0 {
			return nil, errors.New("store: keyring: key id 0 is reserved")
		}
		if len(k) != 32 {
			return nil, fmt.Errorf("store: keyring: key %d is %d bytes, want 32", id, len(k))
		}
		kr.keys[id] = bytes.Clone(k)
	}
	if _, ok := kr.keys[current]; !ok {
		return nil, fmt.Errorf("store: keyring: current key id %d is not among the keys", current)
	}
	return kr, nil
}

// Current implements Keyring.
func (k *StaticKeyring) Current() (uint32, []byte) { return k.current, k.keys[k.current] }

// Key implements Keyring.
func (k *StaticKeyring) Key(id uint32) ([]byte, error) {
	key, ok := k.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrUnknownKey, id)
	}
	return key, nil
}

// Option configures a store when it is opened.
type Option func(*options)

type options struct {
	keyring Keyring
	tracer  pgx.QueryTracer // postgres.go: WithQueryTracer
}

// WithKeyring gives the store the keys that seal message bodies. Without
// it, AppendMessage, History and Rewrap return ErrNoKeyring.
func WithKeyring(k Keyring) Option { return func(o *options) { o.keyring = k } }

func applyOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Sealing of message bodies at rest.
//
// A stored body is nonce (12 random bytes) || AES-256-GCM ciphertext and
// tag, under the key whose id is on the row. The additional data is
// sealContext, a zero byte, then every other column of the row in a fixed
// layout with fixed-size lengths (so that no two rows share an encoding):
//
//	key id      uint32, big-endian
//	stream      uint16 length || bytes
//	seq         uint64, big-endian
//	message id  16 bytes
//	sender      16 bytes
//	sender name uint16 length || bytes
//	created at  int64 unix microseconds, big-endian
//	kind        uint16 length || bytes
//
// A row altered in any column, moved to another seq or stream, or given
// another key id fails to open (ErrCorrupt). What this does not catch:
// a row deleted, or the whole database rolled back to an older copy.
const sealContext = "messenger v1 stored message"

const (
	sealNonceLen = 12
	sealTagLen   = 16
)

// sealer seals and opens message bodies with a Keyring.
type sealer struct {
	kr Keyring
}

// newSealer returns nil when there is no keyring, so that backends can
// test for ErrNoKeyring with one comparison.
func newSealer(kr Keyring) *sealer {
	if kr == nil {
		return nil
	}
	return &sealer{kr: kr}
}

func messageAD(keyID uint32, m *StoredMessage) []byte {
	ad := make([]byte, 0, len(sealContext)+1+4+2+len(m.Stream)+8+16+16+2+len(m.SenderName)+8+2+len(m.Kind))
	ad = append(ad, sealContext...)
	ad = append(ad, 0)
	ad = binary.BigEndian.AppendUint32(ad, keyID)
	ad = appendString16(ad, m.Stream)
	ad = binary.BigEndian.AppendUint64(ad, uint64(m.Seq))
	ad = append(ad, m.ID[:]...)
	ad = append(ad, m.Sender[:]...)
	ad = appendString16(ad, m.SenderName)
	ad = binary.BigEndian.AppendUint64(ad, uint64(m.CreatedAt.UnixMicro()))
	ad = appendString16(ad, m.Kind)
	return ad
}

// appendString16 appends s with a 16-bit length. Validation keeps every
// field it is used for far below 64 KiB.
func appendString16(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func aeadFor(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("store: storage key is %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("store: storage key: %w", err)
	}
	return cipher.NewGCM(block)
}

// seal seals m.Body (m with every other field final, Seq included) under
// the current key and returns the key id and the stored bytes.
func (s *sealer) seal(m *StoredMessage) (uint32, []byte, error) {
	id, key := s.kr.Current()
	if id == 0 {
		return 0, nil, errors.New("store: keyring: current key id is 0")
	}
	aead, err := aeadFor(key)
	if err != nil {
		return 0, nil, err
	}
	out := make([]byte, sealNonceLen, sealNonceLen+len(m.Body)+sealTagLen)
	if _, err := rand.Read(out); err != nil {
		return 0, nil, fmt.Errorf("store: seal: %w", err)
	}
	return id, aead.Seal(out, out[:sealNonceLen], m.Body, messageAD(id, m)), nil
}

// open authenticates and decrypts sealed, a body stored under keyID on the
// row whose other columns m holds, and sets m.Body.
func (s *sealer) open(m *StoredMessage, keyID int64, sealed []byte) error {
	if keyID < 1 || keyID > math.MaxUint32 {
		return fmt.Errorf("store: %s seq %d: key id %d: %w", m.Stream, m.Seq, keyID, ErrCorrupt)
	}
	key, err := s.kr.Key(uint32(keyID))
	if err != nil {
		if !errors.Is(err, ErrUnknownKey) {
			err = fmt.Errorf("%w: %d: %w", ErrUnknownKey, keyID, err)
		}
		return fmt.Errorf("store: %s seq %d: %w", m.Stream, m.Seq, err)
	}
	aead, err := aeadFor(key)
	if err != nil {
		return err
	}
	if len(sealed) < sealNonceLen+sealTagLen {
		return fmt.Errorf("store: %s seq %d: %w", m.Stream, m.Seq, ErrCorrupt)
	}
	body, err := aead.Open(nil, sealed[:sealNonceLen], sealed[sealNonceLen:], messageAD(uint32(keyID), m))
	if err != nil {
		return fmt.Errorf("store: %s seq %d: %w", m.Stream, m.Seq, ErrCorrupt)
	}
	m.Body = body
	return nil
}

// Cursor is a position in one stream, for clients to hold and hand back:
// "continue after this". Its string form (Encode) is opaque to clients.
type Cursor struct {
	// Stream is the stream's name.
	Stream string
	// Position is the epoch and the sequence number.
	Position StreamPosition
}

// A cursor's string form is the unpadded base64url encoding of:
//
//	version   1 byte, cursorVersion
//	stream    'r', name length (1 byte), room name  |  'c', 16-byte conversation id
//	epoch     16 bytes (the epoch's UUID; all zero for the epoch "")
//	seq       uint64, big-endian, at most 2^63 - 1
//
// ParseCursor accepts exactly the strings Encode makes.
const (
	cursorVersion   = 1
	maxCursorBinary = 1 + 2 + MaxRoomNameLen + 16 + 8
)

// Encode returns the cursor's string form. The stream must be valid; the
// epoch "" or a UUID; the seq >= 0.
func (c Cursor) Encode() (string, error) {
	stream, err := checkStream(c.Stream)
	if err != nil {
		return "", fmt.Errorf("store: cursor: %w", err)
	}
	if c.Position.Seq < 0 {
		return "", fmt.Errorf("store: cursor: %w", &FieldError{Field: "cursor.seq", Reason: "must be >= 0"})
	}
	var epoch uuid.UUID
	if c.Position.Epoch != "" {
		if epoch, err = uuid.Parse(c.Position.Epoch); err != nil || len(c.Position.Epoch) != 36 || epoch == uuid.Nil {
			return "", fmt.Errorf("store: cursor: %w", &FieldError{Field: "cursor.epoch", Reason: "must be empty or a UUID"})
		}
	}
	b := make([]byte, 0, maxCursorBinary)
	b = append(b, cursorVersion)
	if room, ok := streamRoom(stream); ok {
		b = append(b, 'r', byte(len(room)))
		b = append(b, room...)
	} else {
		id := uuid.MustParse(strings.TrimPrefix(stream, convStreamPrefix))
		b = append(b, 'c')
		b = append(b, id[:]...)
	}
	b = append(b, epoch[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Position.Seq))
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// errBadCursor is the error ParseCursor returns for anything it rejects.
var errBadCursor = &FieldError{Field: "cursor", Reason: "not a cursor this server made"}

// ParseCursor decodes a cursor's string form. Anything but a string that
// Encode could have made is ErrInvalid.
func ParseCursor(s string) (Cursor, error) {
	if len(s) > base64.RawURLEncoding.EncodedLen(maxCursorBinary) {
		return Cursor{}, fmt.Errorf("store: %w", errBadCursor)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 2 || b[0] != cursorVersion {
		return Cursor{}, fmt.Errorf("store: %w", errBadCursor)
	}
	var c Cursor
	rest := b[2:]
	switch b[1] {
	case 'r':
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return Cursor{}, fmt.Errorf("store: %w", errBadCursor)
		}
		c.Stream = RoomStream(string(rest[1 : 1+rest[0]]))
		rest = rest[1+rest[0]:]
	case 'c':
		if len(rest) < 16 {
			return Cursor{}, fmt.Errorf("store: %w", errBadCursor)
		}
		c.Stream = ConversationStream(uuid.UUID(rest[:16]))
		rest = rest[16:]
	default:
		return Cursor{}, fmt.Errorf("store: %w", errBadCursor)
	}
	if len(rest) != 16+8 {
		return Cursor{}, fmt.Errorf("store: %w", errBadCursor)
	}
	if epoch := uuid.UUID(rest[:16]); epoch != uuid.Nil {
		c.Position.Epoch = epoch.String()
	}
	seq := binary.BigEndian.Uint64(rest[16:])
	if seq > math.MaxInt64 {
		return Cursor{}, fmt.Errorf("store: %w", errBadCursor)
	}
	c.Position.Seq = int64(seq)
	// Canonical only: the room name valid and lower-case, the base64
	// without stray bits or line breaks. Re-encoding must give s back.
	if again, err := c.Encode(); err != nil || again != s {
		return Cursor{}, fmt.Errorf("store: %w", errBadCursor)
	}
	return c, nil
}
