package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// The history part of the contract (testStore runs it for every backend).

// messageTamperer is implemented, in the backend test files, by each Store
// implementation: raw access to the messages table, to check what is
// stored and to alter it behind the store's back.
type messageTamperer interface {
	// rawMessage returns the stored key id and sealed body of a message.
	rawMessage(ctx context.Context, stream string, seq int64) (keyID int64, body []byte, err error)
	// setMessageColumn sets one column of one message row to value (a
	// time.Time for created_at, a uuid.UUID for the UUID columns).
	setMessageColumn(ctx context.Context, stream string, seq int64, column string, value any) error
}

// tamperableColumns are the message columns setMessageColumn may change.
var tamperableColumns = map[string]bool{
	"stream": true, "seq": true, "msg_id": true, "sender": true, "sender_name": true,
	"created_at": true, "kind": true, "key_id": true, "body": true,
}

// testKeyring is a Keyring a test can change while the store uses it.
type testKeyring struct {
	mu      sync.Mutex
	keys    map[uint32][]byte
	current uint32
}

// testStorageKey is key id's key: fixed bytes, different for every id.
func testStorageKey(id uint32) []byte {
	return bytes.Repeat([]byte{byte(id), byte(id >> 8), 0x5a, 0xa5}, 8)
}

func newTestKeyring() *testKeyring {
	return &testKeyring{keys: map[uint32][]byte{1: testStorageKey(1)}, current: 1}
}

func (k *testKeyring) Current() (uint32, []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.current, k.keys[k.current]
}

func (k *testKeyring) Key(id uint32) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key, ok := k.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrUnknownKey, id)
	}
	return key, nil
}

// add adds key id; use makes it the current one; remove forgets it.
func (k *testKeyring) add(id uint32) { k.mu.Lock(); k.keys[id] = testStorageKey(id); k.mu.Unlock() }
func (k *testKeyring) use(id uint32) { k.mu.Lock(); k.current = id; k.mu.Unlock() }

// alias adds id as another id for key of's bytes.
func (k *testKeyring) alias(id, of uint32) {
	k.mu.Lock()
	k.keys[id] = testStorageKey(of)
	k.mu.Unlock()
}

func (k *testKeyring) remove(id uint32) {
	k.mu.Lock()
	delete(k.keys, id)
	k.mu.Unlock()
}

// historyEnv is what a history case gets: a new store opened with a
// keyring the case may change, the same store's raw message access, and
// the factory (to open a store without a keyring).
type historyEnv struct {
	s    Store
	kr   *testKeyring
	raw  messageTamperer
	open func(t *testing.T, opts ...Option) Store
	// owner created the rooms that room streams need.
	owner User
}

func newHistoryEnv(t *testing.T, open func(t *testing.T, opts ...Option) Store) historyEnv {
	kr := newTestKeyring()
	s := open(t, WithKeyring(kr))
	raw, ok := s.(messageTamperer)
	if !ok {
		t.Fatalf("%T does not implement messageTamperer (add it to its test file)", s)
	}
	return historyEnv{s: s, kr: kr, raw: raw, open: open, owner: mustCreateUser(t, s, "owner")}
}

// room creates a room and returns its stream.
func (e historyEnv) room(t *testing.T, name string) string {
	t.Helper()
	return RoomStream(mustCreateRoom(t, e.s, name, e.owner).Name)
}

var historyCases = []struct {
	name string
	run  func(t *testing.T, e historyEnv)
}{
	{"AppendAndRead", testAppendAndRead},
	{"AnonymousRoom", testAnonymousRoom},
	{"AppendIsIdempotent", testAppendIsIdempotent},
	{"AppendInvalid", testAppendInvalid},
	{"ConcurrentAppend", testConcurrentAppend},
	{"ConcurrentRetries", testConcurrentRetries},
	{"AppendBatch", testAppendBatch},
	{"AppendBatchOnlyFailures", testAppendBatchOnlyFailures},
	{"ConcurrentBatches", testConcurrentBatches},
	{"HistoryPages", testHistoryPages},
	{"HistoryOfNothing", testHistoryOfNothing},
	{"SealedAtRest", testSealedAtRest},
	{"TamperedRows", testTamperedRows},
	{"NoKeyring", testNoKeyring},
	{"Rewrap", testRewrap},
	{"RewrapAfterKeyRemoved", testRewrapAfterKeyRemoved},
	{"ReadPositions", testReadPositions},
	{"Conversations", testConversations},
	{"ConcurrentCreateConversation", testConcurrentCreateConversation},
	{"ConversationKeys", testConversationKeys},
	{"ConcurrentConversationKeys", testConcurrentConversationKeys},
	{"Prune", testPrune},
	{"PruneAll", testPruneAll},
}

var testSender = uuid.MustParse("6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b")

// newMessage is a message from testSender to stream.
func newMessage(stream, body string) StoredMessage {
	return StoredMessage{Stream: stream, ID: uuid.New(), Sender: testSender, SenderName: "alice",
		Kind: KindMessage, Body: []byte(body)}
}

func mustAppend(t *testing.T, s Store, m StoredMessage) StoredMessage {
	t.Helper()
	got, created, err := s.AppendMessage(context.Background(), m)
	if err != nil || !created {
		t.Fatalf("AppendMessage(%s): created %v, %v", m.Stream, created, err)
	}
	return got
}

func mustHistory(t *testing.T, s Store, stream string, q HistoryQuery) ([]StoredMessage, StreamPosition) {
	t.Helper()
	ms, pos, err := s.History(context.Background(), stream, q)
	if err != nil {
		t.Fatalf("History(%s): %v", stream, err)
	}
	return ms, pos
}

func ptr(n int64) *int64 { return &n }

func seqs(ms []StoredMessage) []int64 {
	out := []int64{}
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

func isEpoch(s string) bool {
	id, err := uuid.Parse(s)
	return err == nil && id.Version() == 4 && id.String() == s
}

// testAppendAndRead: messages come back as they went in, numbered 1, 2,
// 3..., with the stream normalised and the time stamped.
func testAppendAndRead(t *testing.T, e historyEnv) {
	ctx := context.Background()
	lobby := e.room(t, "lobby")
	before := time.Now().Add(-time.Millisecond)
	in := newMessage("room:LOBBY", "hello")
	in.Seq = 99 // assigned by the store
	m1 := mustAppend(t, e.s, in)
	if m1.Seq != 1 || m1.Stream != lobby || m1.ID != in.ID || string(m1.Body) != "hello" ||
		m1.CreatedAt.Before(before) || m1.CreatedAt.After(time.Now()) || m1.CreatedAt.Location() != time.UTC {
		t.Errorf("first append returned %+v", m1)
	}
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("x", 7200))
	anon := StoredMessage{Stream: lobby, ID: uuid.New(), Sender: uuid.Nil, SenderName: "anon-1a2b3c4d",
		CreatedAt: at, Kind: "x.y_z-1", Body: hostile("anon")}
	m2 := mustAppend(t, e.s, anon)
	if m2.Seq != 2 || !m2.CreatedAt.Equal(at.Truncate(time.Microsecond)) || m2.CreatedAt.Location() != time.UTC {
		t.Errorf("second append returned seq %d at %v", m2.Seq, m2.CreatedAt)
	}
	long := newMessage(lobby, strings.Repeat("b", MaxMessageBodyLen))
	long.SenderName = strings.Repeat("é", MaxSenderNameLen/2)
	long.Kind = KindE2E
	m3 := mustAppend(t, e.s, long)

	ms, pos := mustHistory(t, e.s, lobby, HistoryQuery{After: ptr(0)})
	if want := []StoredMessage{m1, m2, m3}; !reflect.DeepEqual(ms, want) {
		t.Errorf("History = %+v,\nwant %+v", ms, want)
	}
	if pos.Seq != 3 || !isEpoch(pos.Epoch) {
		t.Errorf("History position %+v, want head 3 and a random UUID epoch", pos)
	}
	head, err := e.s.StreamHead(ctx, "room:Lobby")
	if err != nil || head != pos {
		t.Errorf("StreamHead = %+v, %v; want %+v", head, err, pos)
	}
	t.Run("other streams start at 1", func(t *testing.T) {
		other := e.room(t, "other")
		if m := mustAppend(t, e.s, newMessage(other, "x")); m.Seq != 1 {
			t.Errorf("seq %d, want 1", m.Seq)
		}
		oh, err := e.s.StreamHead(ctx, other)
		if err != nil || oh.Seq != 1 || oh.Epoch == pos.Epoch || !isEpoch(oh.Epoch) {
			t.Errorf("StreamHead = %+v, %v; want head 1 and an epoch of its own", oh, err)
		}
	})
	t.Run("epoch stays", func(t *testing.T) {
		mustAppend(t, e.s, newMessage(lobby, "more"))
		if h, err := e.s.StreamHead(ctx, lobby); err != nil || h.Epoch != pos.Epoch || h.Seq != 4 {
			t.Errorf("StreamHead = %+v, %v; want head 4 in epoch %s", h, err, pos.Epoch)
		}
	})
}

// testAppendIsIdempotent: a retry of a committed message (same stream and
// message id) stores nothing and returns the stored message.
func testAppendIsIdempotent(t *testing.T, e historyEnv) {
	ctx := context.Background()
	lobby, other := e.room(t, "lobby"), e.room(t, "other")
	first := mustAppend(t, e.s, newMessage(lobby, "original"))

	retry := newMessage(lobby, "changed on the way")
	retry.ID = first.ID
	got, created, err := e.s.AppendMessage(ctx, retry)
	if err != nil || created || !reflect.DeepEqual(got, first) {
		t.Fatalf("retry: %+v, created %v, %v; want the first message %+v, not created", got, created, err, first)
	}
	// No number was used up by the retry.
	if next := mustAppend(t, e.s, newMessage(lobby, "next")); next.Seq != 2 {
		t.Errorf("next message got seq %d, want 2", next.Seq)
	}

	t.Run("another sender", func(t *testing.T) {
		theft := newMessage(lobby, "mine now")
		theft.ID, theft.Sender = first.ID, uuid.New()
		_, _, err := e.s.AppendMessage(ctx, theft)
		wantErr(t, "AppendMessage", err, ErrConflict)
	})
	t.Run("another stream", func(t *testing.T) {
		elsewhere := newMessage(other, "same id, other room")
		elsewhere.ID = first.ID
		if m := mustAppend(t, e.s, elsewhere); m.Seq != 1 {
			t.Errorf("seq %d, want 1", m.Seq)
		}
	})
	t.Run("stored once", func(t *testing.T) {
		if n := countRows(t, e.s, "messages"); n != 3 {
			t.Errorf("messages has %d rows, want 3", n)
		}
		if h, err := e.s.StreamHead(ctx, lobby); err != nil || h.Seq != 2 {
			t.Errorf("head %+v, %v; want 2", h, err)
		}
	})
}

func testAppendInvalid(t *testing.T, e historyEnv) {
	ctx := context.Background()
	lobby := e.room(t, "lobby")
	cases := []struct {
		name   string
		mutate func(m *StoredMessage)
		field  string
	}{
		{"empty stream", func(m *StoredMessage) { m.Stream = "" }, "stream"},
		{"no prefix", func(m *StoredMessage) { m.Stream = "lobby" }, "stream"},
		{"unknown prefix", func(m *StoredMessage) { m.Stream = "dm:lobby" }, "stream"},
		{"empty room", func(m *StoredMessage) { m.Stream = "room:" }, "stream"},
		{"bad room name", func(m *StoredMessage) { m.Stream = "room:a b" }, "stream"},
		{"SQL room name", func(m *StoredMessage) { m.Stream = "room:x'; DROP TABLE messages;--" }, "stream"},
		{"room name too long", func(m *StoredMessage) { m.Stream = "room:" + strings.Repeat("r", MaxRoomNameLen+1) }, "stream"},
		{"bad conversation id", func(m *StoredMessage) { m.Stream = "conv:not-a-uuid" }, "stream"},
		{"conversation id without dashes", func(m *StoredMessage) { m.Stream = "conv:" + strings.ReplaceAll(uuid.NewString(), "-", "") }, "stream"},
		{"nil conversation id", func(m *StoredMessage) { m.Stream = ConversationStream(uuid.Nil) }, "stream"},
		{"nil message id", func(m *StoredMessage) { m.ID = uuid.Nil }, "message.id"},
		{"sender name too long", func(m *StoredMessage) { m.SenderName = strings.Repeat("n", MaxSenderNameLen+1) }, "message.sender_name"},
		{"sender name not UTF-8", func(m *StoredMessage) { m.SenderName = "a\xffb" }, "message.sender_name"},
		{"empty kind", func(m *StoredMessage) { m.Kind = "" }, "message.kind"},
		{"kind too long", func(m *StoredMessage) { m.Kind = strings.Repeat("k", MaxKindLen+1) }, "message.kind"},
		{"upper-case kind", func(m *StoredMessage) { m.Kind = "MSG" }, "message.kind"},
		{"kind with a space", func(m *StoredMessage) { m.Kind = "m g" }, "message.kind"},
		{"nil body", func(m *StoredMessage) { m.Body = nil }, "message.body"},
		{"body too long", func(m *StoredMessage) { m.Body = make([]byte, MaxMessageBodyLen+1) }, "message.body"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newMessage(lobby, "x")
			c.mutate(&m)
			_, _, err := e.s.AppendMessage(ctx, m)
			wantErr(t, "AppendMessage", err, ErrInvalid)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Errorf("error %v does not name field %s", err, c.field)
			}
		})
	}
	t.Run("unknown room", func(t *testing.T) {
		_, _, err := e.s.AppendMessage(ctx, newMessage("room:nowhere", "x"))
		wantErr(t, "AppendMessage", err, ErrNotFound)
	})
	t.Run("unknown conversation", func(t *testing.T) {
		_, _, err := e.s.AppendMessage(ctx, newMessage(ConversationStream(uuid.New()), "x"))
		wantErr(t, "AppendMessage", err, ErrNotFound)
	})
	t.Run("nothing written", func(t *testing.T) {
		for table, want := range map[string]int{"messages": 0, "streams": 0} {
			if n := countRows(t, e.s, table); n != want {
				t.Errorf("%s has %d rows, want %d", table, n, want)
			}
		}
	})
}

// testConcurrentAppend: appends racing on one stream, from its very first
// message on, get distinct consecutive numbers, each with its own message.
func testConcurrentAppend(t *testing.T, e historyEnv) {
	ctx := context.Background()
	lobby := e.room(t, "lobby")
	const workers, rounds = 8, 15
	got := make([][]StoredMessage, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range workers {
		wg.Go(func() {
			<-start
			for r := range rounds {
				m, created, err := e.s.AppendMessage(ctx, newMessage(lobby, fmt.Sprintf("worker %d round %d", i, r)))
				if err != nil || !created {
					errs[i] = fmt.Errorf("round %d: created %v, %w", r, created, err)
					return
				}
				got[i] = append(got[i], m)
			}
		})
	}
	close(start)
	wg.Wait()
	bySeq := map[int64]StoredMessage{}
	for i := range workers {
		if errs[i] != nil {
			t.Errorf("worker %d: %v", i, errs[i])
		}
		for _, m := range got[i] {
			if prev, dup := bySeq[m.Seq]; dup {
				t.Errorf("seq %d given to %q and %q", m.Seq, prev.Body, m.Body)
			}
			bySeq[m.Seq] = m
		}
	}
	const n = workers * rounds
	stored, pos := mustHistory(t, e.s, lobby, HistoryQuery{After: ptr(0), Limit: MaxHistoryLimit})
	if len(stored) != n || pos.Seq != n {
		t.Fatalf("%d messages stored, head %d; want %d and %d", len(stored), pos.Seq, n, n)
	}
	for i, m := range stored {
		if m.Seq != int64(i+1) {
			t.Fatalf("stored[%d].Seq = %d, want %d (no gaps)", i, m.Seq, i+1)
		}
		if want := bySeq[m.Seq]; !reflect.DeepEqual(m, want) {
			t.Errorf("seq %d holds %+v, but the append that got it returned %+v", m.Seq, m, want)
		}
	}
}

// testConcurrentRetries: retries of one message racing each other store
// it once; all of them learn its one sequence number. Several rounds, so
// that the race is run more than once.
func testConcurrentRetries(t *testing.T, e historyEnv) {
	ctx := context.Background()
	lobby := e.room(t, "lobby")
	const rounds, n = 6, 8
	for round := range rounds {
		m := newMessage(lobby, fmt.Sprint("sent ", n, " times in round ", round))
		results := make([]StoredMessage, n)
		created := make([]bool, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				results[i], created[i], errs[i] = e.s.AppendMessage(ctx, m)
			})
		}
		close(start)
		wg.Wait()
		creators := 0
		for i := range n {
			if errs[i] != nil {
				t.Errorf("round %d, append %d: %v", round, i, errs[i])
				continue
			}
			if created[i] {
				creators++
			}
			if results[i].Seq != int64(round+1) || results[i].ID != m.ID || !bytes.Equal(results[i].Body, m.Body) {
				t.Errorf("round %d, append %d returned %+v, want seq %d", round, i, results[i], round+1)
			}
		}
		if creators != 1 {
			t.Errorf("round %d: %d appends report created, want 1", round, creators)
		}
	}
	if c := countRows(t, e.s, "messages"); c != rounds {
		t.Errorf("messages has %d rows, want %d", c, rounds)
	}
	if h, err := e.s.StreamHead(ctx, lobby); err != nil || h.Seq != rounds {
		t.Errorf("head %+v, %v; want %d", h, err, rounds)
	}
}

func testHistoryPages(t *testing.T, e historyEnv) {
	ctx := context.Background()
	lobby := e.room(t, "lobby")
	const total = MaxHistoryLimit + 5
	for i := range total {
		mustAppend(t, e.s, newMessage(lobby, fmt.Sprint("message ", i+1)))
	}
	span := func(from, to int64) []int64 {
		out := []int64{}
		for s := from; s <= to; s++ {
			out = append(out, s)
		}
		return out
	}
	cases := []struct {
		name string
		q    HistoryQuery
		want []int64
	}{
		{"newest by default", HistoryQuery{}, span(total-DefaultHistoryLimit+1, total)},
		{"newest few", HistoryQuery{Limit: 3}, span(total-2, total)},
		{"from the start", HistoryQuery{After: ptr(0), Limit: 10}, span(1, 10)},
		{"after, default limit", HistoryQuery{After: ptr(100)}, span(101, 100+DefaultHistoryLimit)},
		{"after, near the head", HistoryQuery{After: ptr(total - 3), Limit: 10}, span(total-2, total)},
		{"after the head", HistoryQuery{After: ptr(total)}, span(1, 0)},
		{"far after the head", HistoryQuery{After: ptr(1 << 62)}, span(1, 0)},
		{"before, ascending", HistoryQuery{Before: ptr(11), Limit: 5}, span(6, 10)},
		{"before, near the start", HistoryQuery{Before: ptr(3), Limit: 5}, span(1, 2)},
		{"before 1", HistoryQuery{Before: ptr(1)}, span(1, 0)},
		{"before 0", HistoryQuery{Before: ptr(0)}, span(1, 0)},
		{"limit capped", HistoryQuery{After: ptr(0), Limit: 100000}, span(1, MaxHistoryLimit)},
		{"limit capped, newest", HistoryQuery{Limit: MaxHistoryLimit + 1}, span(total-MaxHistoryLimit+1, total)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ms, pos := mustHistory(t, e.s, lobby, c.q)
			if got := seqs(ms); !reflect.DeepEqual(got, c.want) {
				t.Errorf("seqs %v, want %v", got, c.want)
			}
			for _, m := range ms {
				if string(m.Body) != fmt.Sprint("message ", m.Seq) {
					t.Errorf("seq %d holds %q", m.Seq, m.Body)
				}
			}
			if pos.Seq != total || !isEpoch(pos.Epoch) {
				t.Errorf("position %+v, want head %d", pos, total)
			}
		})
	}
	invalid := []struct {
		name  string
		q     HistoryQuery
		field string
	}{
		{"after and before", HistoryQuery{After: ptr(1), Before: ptr(5)}, "history.after"},
		{"negative after", HistoryQuery{After: ptr(-1)}, "history.after"},
		{"negative before", HistoryQuery{Before: ptr(-1)}, "history.before"},
		{"negative limit", HistoryQuery{Limit: -1}, "history.limit"},
	}
	for _, c := range invalid {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := e.s.History(ctx, lobby, c.q)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Errorf("History: %v, want an invalid %s", err, c.field)
			}
		})
	}
}

// testHistoryOfNothing: a stream that does not exist yet reads as empty,
// at head 0 with no epoch; a stream name that could not exist is invalid.
func testHistoryOfNothing(t *testing.T, e historyEnv) {
	ctx := context.Background()
	for _, stream := range []string{e.room(t, "quiet"), "room:nowhere", ConversationStream(uuid.New())} {
		t.Run(stream, func(t *testing.T) {
			ms, pos := mustHistory(t, e.s, stream, HistoryQuery{})
			if ms == nil || len(ms) != 0 || pos != (StreamPosition{}) {
				t.Errorf("History = %#v, %+v; want an empty, non-nil page at StreamPosition{}", ms, pos)
			}
			if h, err := e.s.StreamHead(ctx, stream); err != nil || h != (StreamPosition{}) {
				t.Errorf("StreamHead = %+v, %v; want StreamPosition{}", h, err)
			}
		})
	}
	for _, stream := range []string{"", "room:", "room:A B", "conv:x", "lobby"} {
		t.Run(fmt.Sprintf("invalid %q", stream), func(t *testing.T) {
			_, _, err := e.s.History(ctx, stream, HistoryQuery{})
			wantErr(t, "History", err, ErrInvalid)
			_, err = e.s.StreamHead(ctx, stream)
			wantErr(t, "StreamHead", err, ErrInvalid)
		})
	}
}

// testSealedAtRest: what the database holds is the sealed body under the
// current key id, with a fresh nonce each time.
func testSealedAtRest(t *testing.T, e historyEnv) {
	ctx := context.Background()
	lobby := e.room(t, "lobby")
	const text = "the plaintext that must not be stored"
	m1 := mustAppend(t, e.s, newMessage(lobby, text))
	m2 := mustAppend(t, e.s, newMessage(lobby, text))
	k1, b1, err := e.raw.rawMessage(ctx, lobby, m1.Seq)
	if err != nil {
		t.Fatal(err)
	}
	_, b2, err := e.raw.rawMessage(ctx, lobby, m2.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if k1 != 1 {
		t.Errorf("key id %d, want the current one, 1", k1)
	}
	if bytes.Contains(b1, []byte(text)) || bytes.Contains(b1, []byte("plaintext")) {
		t.Errorf("stored body holds the plaintext: %q", b1)
	}
	if len(b1) != sealNonceLen+len(text)+sealTagLen {
		t.Errorf("stored body is %d bytes, want nonce + %d + tag", len(b1), len(text))
	}
	if bytes.Equal(b1[:sealNonceLen], b2[:sealNonceLen]) || bytes.Equal(b1, b2) {
		t.Error("two messages were sealed with the same nonce")
	}
}

// testTamperedRows: a row altered in any column, moved, swapped or
// re-keyed behind the store's back fails on read with ErrCorrupt (or, for
// a key id the keyring lacks, ErrUnknownKey), and never reads as a message.
// testAnonymousRoom: a room no account created (CreatedBy uuid.Nil, as
// an anonymous connection makes it) reads back so, and keeps a history
// like any other, anonymous senders included.
func testAnonymousRoom(t *testing.T, e historyEnv) {
	ctx := context.Background()
	r, err := e.s.CreateRoom(ctx, Room{Name: "Drop-In"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.s.RoomByName(ctx, "drop-in"); err != nil || got != r || got.CreatedBy != uuid.Nil {
		t.Fatalf("RoomByName = %+v, %v; want %+v with no creator", got, err, r)
	}
	stream := RoomStream(r.Name)
	m := newMessage(stream, "from nobody")
	m.Sender, m.SenderName = uuid.Nil, "guest"
	stored := mustAppend(t, e.s, m)
	if got, pos := mustHistory(t, e.s, stream, HistoryQuery{}); !reflect.DeepEqual(got, []StoredMessage{stored}) || pos.Seq != 1 || !isEpoch(pos.Epoch) {
		t.Errorf("History = %+v at %+v; want the one message", got, pos)
	}
}

func testTamperedRows(t *testing.T, e historyEnv) {
	ctx := context.Background()
	e.kr.add(2)      // a second key the keyring holds, but does not seal with
	e.kr.alias(3, 1) // the current key's bytes under another id
	flip := func(i int) func(t *testing.T, stream string) {
		return func(t *testing.T, stream string) {
			_, body, err := e.raw.rawMessage(ctx, stream, 2)
			if err != nil {
				t.Fatal(err)
			}
			if i < 0 {
				i += len(body)
			}
			body[i] ^= 0x01
			mustSet(t, e, stream, 2, "body", body)
		}
	}
	set := func(column string, value any) func(t *testing.T, stream string) {
		return func(t *testing.T, stream string) { mustSet(t, e, stream, 2, column, value) }
	}
	cases := []struct {
		name   string
		tamper func(t *testing.T, stream string) // on message 2 of 3
		read   string                            // the stream that must fail to read: "" for the tampered one
		want   error
	}{
		{"body: last byte", flip(-1), "", ErrCorrupt},
		{"body: ciphertext byte", flip(sealNonceLen), "", ErrCorrupt},
		{"body: nonce byte", flip(0), "", ErrCorrupt},
		{"body: truncated", func(t *testing.T, stream string) {
			_, body, _ := e.raw.rawMessage(ctx, stream, 2)
			mustSet(t, e, stream, 2, "body", body[:sealNonceLen+sealTagLen-1])
		}, "", ErrCorrupt},
		{"key id: another key held", set("key_id", int64(2)), "", ErrCorrupt},
		{"key id: the same key under another id", set("key_id", int64(3)), "", ErrCorrupt},
		{"key id: zero", set("key_id", int64(0)), "", ErrCorrupt},
		{"key id: out of range", set("key_id", int64(1)<<32+1), "", ErrCorrupt},
		{"key id: unknown", set("key_id", int64(99)), "", ErrUnknownKey},
		{"seq: moved", set("seq", int64(10)), "", ErrCorrupt},
		{"stream: moved", func(t *testing.T, stream string) {
			mustSet(t, e, stream, 2, "stream", stream+"-elsewhere")
		}, "-elsewhere", ErrCorrupt},
		{"message id", set("msg_id", uuid.New()), "", ErrCorrupt},
		{"sender", set("sender", uuid.New()), "", ErrCorrupt},
		{"sender: anonymous", set("sender", uuid.Nil), "", ErrCorrupt},
		{"sender name", set("sender_name", "mallory"), "", ErrCorrupt},
		{"created at", set("created_at", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)), "", ErrCorrupt},
		{"kind", set("kind", KindE2E), "", ErrCorrupt},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stream := e.room(t, fmt.Sprint("t", i))
			elsewhere := e.room(t, fmt.Sprint("t", i, "-elsewhere"))
			mustAppend(t, e.s, newMessage(elsewhere, "the other room's only message"))
			var ms []StoredMessage
			for j := range 3 {
				ms = append(ms, mustAppend(t, e.s, newMessage(stream, fmt.Sprint("message ", j+1))))
			}
			c.tamper(t, stream)
			read := stream
			if c.read != "" {
				read = stream + c.read
			}
			got, pos, err := e.s.History(ctx, read, HistoryQuery{After: ptr(0)})
			if !errors.Is(err, c.want) || got != nil || pos != (StreamPosition{}) {
				t.Fatalf("History after tampering: %+v, %+v, %v; want only an error matching %v", got, pos, err, c.want)
			}
			if c.want == ErrUnknownKey && errors.Is(err, ErrCorrupt) {
				t.Errorf("an unknown key id reads as corrupt: %v", err)
			}
			// The untouched message before it still reads.
			if got, _ := mustHistory(t, e.s, stream, HistoryQuery{Before: ptr(2)}); !reflect.DeepEqual(got, ms[:1]) {
				t.Errorf("message 1 reads as %+v, want %+v", got, ms[:1])
			}
			// A retry of the tampered message does not get it back either.
			if c.read == "" && c.name != "message id" {
				_, _, err := e.s.AppendMessage(ctx, ms[1])
				if !errors.Is(err, c.want) {
					t.Errorf("retry of the tampered message: %v, want %v", err, c.want)
				}
			}
		})
	}
	t.Run("bodies swapped between streams", func(t *testing.T) {
		a, b := e.room(t, "swap-a"), e.room(t, "swap-b")
		mustAppend(t, e.s, newMessage(a, "in a"))
		mustAppend(t, e.s, newMessage(b, "in b"))
		_, bodyA, errA := e.raw.rawMessage(ctx, a, 1)
		_, bodyB, errB := e.raw.rawMessage(ctx, b, 1)
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		mustSet(t, e, a, 1, "body", bodyB)
		mustSet(t, e, b, 1, "body", bodyA)
		for _, stream := range []string{a, b} {
			if got, _, err := e.s.History(ctx, stream, HistoryQuery{}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("History(%s) = %+v, %v; want ErrCorrupt", stream, got, err)
			}
		}
	})
}

func mustSet(t *testing.T, e historyEnv, stream string, seq int64, column string, value any) {
	t.Helper()
	if err := e.raw.setMessageColumn(context.Background(), stream, seq, column, value); err != nil {
		t.Fatalf("set %s of %s seq %d: %v", column, stream, seq, err)
	}
}

// testNoKeyring: a store opened without a keyring refuses what needs one,
// with ErrNoKeyring, and does the rest.
func testNoKeyring(t *testing.T, e historyEnv) {
	ctx := context.Background()
	s := e.open(t)
	owner := mustCreateUser(t, s, "owner")
	other := mustCreateUser(t, s, "other")
	lobby := RoomStream(mustCreateRoom(t, s, "lobby", owner).Name)
	_, _, err := s.AppendMessage(ctx, newMessage(lobby, "x"))
	wantErr(t, "AppendMessage", err, ErrNoKeyring)
	rs, err := s.AppendMessages(ctx, []StoredMessage{newMessage(lobby, "x")})
	wantErr(t, "AppendMessages", err, ErrNoKeyring)
	if rs != nil {
		t.Errorf("AppendMessages without a keyring returned results %+v", rs)
	}
	_, _, err = s.History(ctx, lobby, HistoryQuery{})
	wantErr(t, "History", err, ErrNoKeyring)
	_, err = s.Rewrap(ctx, 10)
	wantErr(t, "Rewrap", err, ErrNoKeyring)
	if n := countRows(t, s, "messages"); n != 0 {
		t.Errorf("messages has %d rows, want 0", n)
	}
	if _, err := s.StreamHead(ctx, lobby); err != nil {
		t.Errorf("StreamHead: %v", err)
	}
	if _, err := s.CreateConversation(ctx, owner.ID, other.ID); err != nil {
		t.Errorf("CreateConversation: %v", err)
	}
}

// testRewrap: Rewrap moves every message to the current key in batches;
// reads work throughout, and afterwards with the new key alone.
func testRewrap(t *testing.T, e historyEnv) {
	ctx := context.Background()
	usage := func(t *testing.T, want map[int64]int64) {
		t.Helper()
		got, err := e.s.KeyUsage(ctx)
		if err != nil || got == nil || !maps.Equal(got, want) {
			t.Errorf("KeyUsage = %v, %v; want %v", got, err, want)
		}
	}
	usage(t, map[int64]int64{})
	a, b := e.room(t, "a"), e.room(t, "b")
	for i := range 3 {
		mustAppend(t, e.s, newMessage(a, fmt.Sprint("a", i)))
	}
	for i := range 2 {
		mustAppend(t, e.s, newMessage(b, fmt.Sprint("b", i)))
	}
	if n, err := e.s.Rewrap(ctx, 10); err != nil || n != 0 {
		t.Fatalf("Rewrap with nothing to do: %d, %v; want 0", n, err)
	}
	before := map[string][]StoredMessage{}
	before[a], _ = mustHistory(t, e.s, a, HistoryQuery{})
	before[b], _ = mustHistory(t, e.s, b, HistoryQuery{})

	e.kr.add(2)
	e.kr.use(2)
	before[a] = append(before[a], mustAppend(t, e.s, newMessage(a, "a under key 2")))
	usage(t, map[int64]int64{1: 5, 2: 1})
	if _, err := e.s.Rewrap(ctx, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Rewrap(0): %v, want ErrInvalid", err)
	}
	readAll := func(t *testing.T) {
		t.Helper()
		for stream, want := range before {
			if got, _ := mustHistory(t, e.s, stream, HistoryQuery{}); !reflect.DeepEqual(got, want) {
				t.Errorf("%s reads %+v, want %+v", stream, got, want)
			}
		}
	}
	var done []int
	for range 5 {
		n, err := e.s.Rewrap(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		done = append(done, n)
		readAll(t) // a mix of key ids reads fine
		if n == 0 {
			break
		}
	}
	if want := []int{2, 2, 1, 0}; !reflect.DeepEqual(done, want) {
		t.Errorf("Rewrap batches re-sealed %v, want %v", done, want)
	}
	usage(t, map[int64]int64{2: 6})
	e.kr.remove(1)
	readAll(t)
	for stream, ms := range before {
		for _, m := range ms {
			if id, _, err := e.raw.rawMessage(ctx, stream, m.Seq); err != nil || id != 2 {
				t.Errorf("%s seq %d: key id %d, %v; want 2", stream, m.Seq, id, err)
			}
		}
	}
}

// testRewrapAfterKeyRemoved: a key removed before its messages were
// rewrapped gives ErrUnknownKey, on read and on Rewrap, and changes
// nothing; given back, everything reads and rewraps.
func testRewrapAfterKeyRemoved(t *testing.T, e historyEnv) {
	ctx := context.Background()
	lobby := e.room(t, "lobby")
	m1 := mustAppend(t, e.s, newMessage(lobby, "one"))
	m2 := mustAppend(t, e.s, newMessage(lobby, "two"))
	e.kr.add(2)
	e.kr.use(2)
	e.kr.remove(1)
	_, _, err := e.s.History(ctx, lobby, HistoryQuery{})
	if !errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrCorrupt) {
		t.Errorf("History: %v, want ErrUnknownKey (and not ErrCorrupt)", err)
	}
	if n, err := e.s.Rewrap(ctx, 10); !errors.Is(err, ErrUnknownKey) || n != 0 {
		t.Errorf("Rewrap: %d, %v; want 0 and ErrUnknownKey", n, err)
	}
	if id, _, err := e.raw.rawMessage(ctx, lobby, 1); err != nil || id != 1 {
		t.Errorf("after the failed Rewrap: key id %d, %v; want 1 still", id, err)
	}
	e.kr.add(1)
	if n, err := e.s.Rewrap(ctx, 10); err != nil || n != 2 {
		t.Errorf("Rewrap with the key back: %d, %v; want 2", n, err)
	}
	if got, _ := mustHistory(t, e.s, lobby, HistoryQuery{}); !reflect.DeepEqual(got, []StoredMessage{m1, m2}) {
		t.Errorf("History = %+v, want %+v", got, []StoredMessage{m1, m2})
	}
}

func testReadPositions(t *testing.T, e historyEnv) {
	ctx := context.Background()
	lobby, other := e.room(t, "lobby"), e.room(t, "other")
	for range 8 {
		mustAppend(t, e.s, newMessage(lobby, "x"))
	}
	mustAppend(t, e.s, newMessage(other, "x"))
	user := mustCreateUser(t, e.s, "reader")
	steps := []struct {
		name    string
		stream  string
		seq     int64
		wantErr error
		want    int64 // user's position in lobby afterwards
	}{
		{"first", lobby, 5, nil, 5},
		{"backwards is ignored", lobby, 3, nil, 5},
		{"same is ignored", lobby, 5, nil, 5},
		{"forwards", lobby, 7, nil, 7},
		{"the head", lobby, 8, nil, 8},
		{"beyond the head", lobby, 9, ErrInvalid, 8},
		{"negative", lobby, -1, ErrInvalid, 8},
		{"unknown stream", "room:nowhere", 0, ErrNotFound, 8},
		{"invalid stream", "room:A B", 0, ErrInvalid, 8},
		{"another stream, case-insensitive", "room:Other", 1, nil, 8},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			err := e.s.SetReadPosition(ctx, user.ID, st.stream, st.seq)
			if st.wantErr == nil && err != nil {
				t.Fatal(err)
			}
			if st.wantErr != nil {
				wantErr(t, "SetReadPosition", err, st.wantErr)
			}
			if got, err := e.s.ReadPosition(ctx, user.ID, lobby); err != nil || got != st.want {
				t.Errorf("ReadPosition = %d, %v; want %d", got, err, st.want)
			}
		})
	}
	t.Run("all positions", func(t *testing.T) {
		got, err := e.s.ReadPositions(ctx, user.ID)
		if want := map[string]int64{lobby: 8, other: 1}; err != nil || !maps.Equal(got, want) {
			t.Errorf("ReadPositions = %v, %v; want %v", got, err, want)
		}
	})
	t.Run("none yet", func(t *testing.T) {
		fresh := mustCreateUser(t, e.s, "fresh")
		got, err := e.s.ReadPositions(ctx, fresh.ID)
		if err != nil || got == nil || len(got) != 0 {
			t.Errorf("ReadPositions = %#v, %v; want an empty, non-nil map", got, err)
		}
		if seq, err := e.s.ReadPosition(ctx, fresh.ID, lobby); err != nil || seq != 0 {
			t.Errorf("ReadPosition = %d, %v; want 0", seq, err)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		nobody := uuid.New()
		wantErr(t, "SetReadPosition", e.s.SetReadPosition(ctx, nobody, lobby, 1), ErrNotFound)
		_, err := e.s.ReadPositions(ctx, nobody)
		wantErr(t, "ReadPositions", err, ErrNotFound)
		_, err = e.s.ReadPosition(ctx, nobody, lobby)
		wantErr(t, "ReadPosition", err, ErrNotFound)
		if n := countRows(t, e.s, "read_positions"); n != 2 {
			t.Errorf("read_positions has %d rows, want 2", n)
		}
	})
}

func testConversations(t *testing.T, e historyEnv) {
	ctx := context.Background()
	alice, bob, carol := mustCreateUser(t, e.s, "alice"), mustCreateUser(t, e.s, "bob"), mustCreateUser(t, e.s, "carol")
	ab, err := e.s.CreateConversation(ctx, alice.ID, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ab.ID.Version() != 4 || !ab.Has(alice.ID) || !ab.Has(bob.ID) || ab.Has(carol.ID) ||
		bytes.Compare(ab.UserA[:], ab.UserB[:]) >= 0 || ab.CreatedAt.IsZero() || ab.CreatedAt.Location() != time.UTC {
		t.Errorf("CreateConversation returned %+v", ab)
	}
	t.Run("either order finds it", func(t *testing.T) {
		for _, pair := range [][2]uuid.UUID{{alice.ID, bob.ID}, {bob.ID, alice.ID}} {
			if again, err := e.s.CreateConversation(ctx, pair[0], pair[1]); err != nil || again != ab {
				t.Errorf("CreateConversation(%v, %v) = %+v, %v; want %+v", pair[0], pair[1], again, err, ab)
			}
		}
		if n := countRows(t, e.s, "conversations"); n != 1 {
			t.Errorf("conversations has %d rows, want 1", n)
		}
	})
	t.Run("by id", func(t *testing.T) {
		if got, err := e.s.ConversationByID(ctx, ab.ID); err != nil || got != ab {
			t.Errorf("ConversationByID = %+v, %v; want %+v", got, err, ab)
		}
		_, err := e.s.ConversationByID(ctx, uuid.New())
		wantErr(t, "ConversationByID", err, ErrNotFound)
	})
	t.Run("its stream", func(t *testing.T) {
		pos, err := e.s.StreamHead(ctx, ab.Stream())
		if err != nil || pos.Seq != 0 || !isEpoch(pos.Epoch) {
			t.Fatalf("StreamHead = %+v, %v; want head 0 with an epoch", pos, err)
		}
		rec := StoredMessage{Stream: ab.Stream(), ID: uuid.New(), Sender: alice.ID, SenderName: "alice",
			Kind: KindE2E, Body: hostile("ciphertext")}
		m := mustAppend(t, e.s, rec)
		if got, pos2 := mustHistory(t, e.s, ab.Stream(), HistoryQuery{}); !reflect.DeepEqual(got, []StoredMessage{m}) ||
			pos2 != (StreamPosition{Seq: 1, Epoch: pos.Epoch}) {
			t.Errorf("History = %+v at %+v; want [%+v] at head 1, epoch %s", got, pos2, m, pos.Epoch)
		}
	})
	t.Run("of a user", func(t *testing.T) {
		ca, err := e.s.CreateConversation(ctx, carol.ID, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			user User
			want []Conversation
		}{
			{alice, []Conversation{ab, ca}},
			{bob, []Conversation{ab}},
			{carol, []Conversation{ca}},
			{mustCreateUser(t, e.s, "dave"), []Conversation{}},
		}
		for _, c := range cases {
			if got, err := e.s.ConversationsOf(ctx, c.user.ID); err != nil || !reflect.DeepEqual(got, c.want) {
				t.Errorf("ConversationsOf(%s) = %+v, %v; want %+v", c.user.Name, got, err, c.want)
			}
		}
		_, err = e.s.ConversationsOf(ctx, uuid.New())
		wantErr(t, "ConversationsOf", err, ErrNotFound)
	})
	t.Run("invalid", func(t *testing.T) {
		n := countRows(t, e.s, "conversations")
		_, err := e.s.CreateConversation(ctx, alice.ID, alice.ID)
		wantErr(t, "with oneself", err, ErrInvalid)
		_, err = e.s.CreateConversation(ctx, alice.ID, uuid.New())
		wantErr(t, "with nobody", err, ErrNotFound)
		_, err = e.s.CreateConversation(ctx, uuid.Nil, alice.ID)
		wantErr(t, "with the nil user", err, ErrNotFound)
		if got := countRows(t, e.s, "conversations"); got != n {
			t.Errorf("conversations has %d rows, want %d", got, n)
		}
	})
}

// testConcurrentCreateConversation: racing creations for one pair, in
// both orders, all get the one conversation.
func testConcurrentCreateConversation(t *testing.T, e historyEnv) {
	ctx := context.Background()
	a, b := mustCreateUser(t, e.s, "alice"), mustCreateUser(t, e.s, "bob")
	const n = 8
	got := make([]Conversation, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			if i%2 == 0 {
				got[i], errs[i] = e.s.CreateConversation(ctx, a.ID, b.ID)
			} else {
				got[i], errs[i] = e.s.CreateConversation(ctx, b.ID, a.ID)
			}
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i] != got[0] {
			t.Errorf("creation %d: %+v, %v; want %+v", i, got[i], errs[i], got[0])
		}
	}
	if c := countRows(t, e.s, "conversations"); c != 1 {
		t.Errorf("conversations has %d rows, want 1", c)
	}
}

func testConversationKeys(t *testing.T, e historyEnv) {
	ctx := context.Background()
	alice, bob, eve := mustCreateUser(t, e.s, "alice"), mustCreateUser(t, e.s, "bob"), mustCreateUser(t, e.s, "eve")
	c, err := e.s.CreateConversation(ctx, alice.ID, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	var stored []ConversationKey
	steps := []struct {
		name    string
		version int
		creator uuid.UUID
		env     []byte
		wantErr error
	}{
		{"first", 1, alice.ID, hostile("envelope 1"), nil},
		{"first again", 1, bob.ID, []byte("late"), ErrConflict},
		{"a version skipped", 3, bob.ID, []byte("skip"), ErrConflict},
		{"by an outsider", 2, eve.ID, []byte("eve"), ErrInvalid},
		{"version 0", 0, bob.ID, []byte("zero"), ErrInvalid},
		{"empty envelope", 2, bob.ID, nil, ErrInvalid},
		{"envelope too long", 2, bob.ID, make([]byte, MaxEnvelopeLen+1), ErrInvalid},
		{"second, by the other member", 2, bob.ID, bytes.Repeat([]byte{7}, MaxEnvelopeLen), nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			k, err := e.s.PutConversationKey(ctx, c.ID, st.version, st.creator, st.env)
			if st.wantErr != nil {
				wantErr(t, "PutConversationKey", err, st.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.ConversationID != c.ID || k.Version != st.version || k.CreatedBy != st.creator ||
				!bytes.Equal(k.Envelope, st.env) || k.CreatedAt.IsZero() {
				t.Errorf("PutConversationKey returned %+v", k)
			}
			stored = append(stored, k)
		})
	}
	if len(stored) != 2 {
		t.Fatalf("stored %d versions, want 2", len(stored))
	}
	for since, want := range map[int][]ConversationKey{0: stored, 1: stored[1:], 2: {}, 9: {}} {
		t.Run(fmt.Sprint("since ", since), func(t *testing.T) {
			if got, err := e.s.ConversationKeys(ctx, c.ID, since); err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("ConversationKeys = %+v, %v; want %+v", got, err, want)
			}
		})
	}
	t.Run("unknown conversation", func(t *testing.T) {
		_, err := e.s.PutConversationKey(ctx, uuid.New(), 1, alice.ID, []byte("x"))
		wantErr(t, "PutConversationKey", err, ErrNotFound)
		_, err = e.s.ConversationKeys(ctx, uuid.New(), 0)
		wantErr(t, "ConversationKeys", err, ErrNotFound)
		_, err = e.s.ConversationKeys(ctx, c.ID, -1)
		wantErr(t, "ConversationKeys since -1", err, ErrInvalid)
	})
	if n := countRows(t, e.s, "conversation_keys"); n != 2 {
		t.Errorf("conversation_keys has %d rows, want 2", n)
	}
}

// testConcurrentConversationKeys: devices racing to store the same next
// version: one wins, the others get ErrConflict.
func testConcurrentConversationKeys(t *testing.T, e historyEnv) {
	ctx := context.Background()
	alice, bob := mustCreateUser(t, e.s, "alice"), mustCreateUser(t, e.s, "bob")
	c, err := e.s.CreateConversation(ctx, alice.ID, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			creator := alice.ID
			if i%2 == 1 {
				creator = bob.ID
			}
			_, errs[i] = e.s.PutConversationKey(ctx, c.ID, 1, creator, []byte(fmt.Sprint("device ", i)))
		})
	}
	close(start)
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrConflict):
			t.Errorf("put %d: %v, want nil or ErrConflict", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d puts of version 1 succeeded, want 1", won)
	}
	if ks, err := e.s.ConversationKeys(ctx, c.ID, 0); err != nil || len(ks) != 1 {
		t.Errorf("ConversationKeys = %+v, %v; want one version", ks, err)
	}
}

// testPrune: retention cuts a prefix of the stream; the head and the
// epoch stay and numbers are not reused.
func testPrune(t *testing.T, e historyEnv) {
	ctx := context.Background()
	lobby := e.room(t, "lobby")
	old := time.Now().Add(-48 * time.Hour)
	for i := range 10 {
		m := newMessage(lobby, fmt.Sprint("old ", i+1))
		m.CreatedAt = old.Add(time.Duration(i) * time.Second)
		mustAppend(t, e.s, m)
	}
	for i := range 10 {
		mustAppend(t, e.s, newMessage(lobby, fmt.Sprint("new ", i+11)))
	}
	start, err := e.s.StreamHead(ctx, lobby)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name        string
		policy      RetentionPolicy
		wantDeleted int
		wantFirst   int64 // first seq left
	}{
		{"keep everything", RetentionPolicy{}, 0, 1},
		{"nothing that old", RetentionPolicy{MaxAge: 72 * time.Hour}, 0, 1},
		{"nothing beyond the count", RetentionPolicy{MaxCount: 20}, 0, 1},
		{"by age", RetentionPolicy{MaxAge: 24 * time.Hour}, 10, 11},
		{"by age again", RetentionPolicy{MaxAge: 24 * time.Hour}, 0, 11},
		{"by count", RetentionPolicy{MaxCount: 5}, 5, 16},
		{"both, count wins", RetentionPolicy{MaxAge: 24 * time.Hour, MaxCount: 3}, 2, 18},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			n, err := e.s.Prune(ctx, lobby, st.policy)
			if err != nil || n != st.wantDeleted {
				t.Errorf("Prune = %d, %v; want %d", n, err, st.wantDeleted)
			}
			ms, pos := mustHistory(t, e.s, lobby, HistoryQuery{After: ptr(0)})
			if len(ms) == 0 || ms[0].Seq != st.wantFirst || ms[len(ms)-1].Seq != 20 {
				t.Errorf("after pruning: seqs %v, want %d..20", seqs(ms), st.wantFirst)
			}
			if pos != start {
				t.Errorf("position %+v, want %+v: the head and the epoch stay", pos, start)
			}
		})
	}
	t.Run("a pruned range reads as what is left", func(t *testing.T) {
		ms, _ := mustHistory(t, e.s, lobby, HistoryQuery{After: ptr(5), Limit: 3})
		if got := seqs(ms); !reflect.DeepEqual(got, []int64{18, 19, 20}) {
			t.Errorf("after 5: seqs %v, want [18 19 20]", got)
		}
		ms, _ = mustHistory(t, e.s, lobby, HistoryQuery{Before: ptr(10)})
		if len(ms) != 0 {
			t.Errorf("before 10: seqs %v, want none", seqs(ms))
		}
	})
	t.Run("everything, then numbers go on", func(t *testing.T) {
		if n, err := e.s.Prune(ctx, lobby, RetentionPolicy{MaxAge: time.Nanosecond}); err != nil || n != 3 {
			t.Errorf("Prune = %d, %v; want 3", n, err)
		}
		if h, err := e.s.StreamHead(ctx, lobby); err != nil || h != start {
			t.Errorf("StreamHead = %+v, %v; want %+v", h, err, start)
		}
		if m := mustAppend(t, e.s, newMessage(lobby, "after")); m.Seq != 21 {
			t.Errorf("next seq %d, want 21", m.Seq)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		_, err := e.s.Prune(ctx, lobby, RetentionPolicy{MaxAge: -time.Second})
		wantErr(t, "negative age", err, ErrInvalid)
		_, err = e.s.Prune(ctx, lobby, RetentionPolicy{MaxCount: -1})
		wantErr(t, "negative count", err, ErrInvalid)
		_, err = e.s.Prune(ctx, "room:A B", RetentionPolicy{MaxCount: 1})
		wantErr(t, "invalid stream", err, ErrInvalid)
	})
	t.Run("a stream that does not exist", func(t *testing.T) {
		if n, err := e.s.Prune(ctx, "room:nowhere", RetentionPolicy{MaxCount: 1}); err != nil || n != 0 {
			t.Errorf("Prune = %d, %v; want 0", n, err)
		}
	})
}

func testPruneAll(t *testing.T, e historyEnv) {
	ctx := context.Background()
	a, b, quiet := e.room(t, "a"), e.room(t, "b"), e.room(t, "quiet")
	alice, bob := mustCreateUser(t, e.s, "alice"), mustCreateUser(t, e.s, "bob")
	conv, err := e.s.CreateConversation(ctx, alice.ID, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, stream := range []string{a, b, conv.Stream()} {
		for i := range 6 {
			mustAppend(t, e.s, newMessage(stream, fmt.Sprint(i)))
		}
	}
	var asked []string
	n, err := e.s.PruneAll(ctx, func(stream string) RetentionPolicy {
		asked = append(asked, stream)
		switch stream {
		case a:
			return RetentionPolicy{MaxCount: 2}
		case b:
			return RetentionPolicy{MaxCount: 5}
		}
		return RetentionPolicy{}
	})
	if err != nil || n != 5 {
		t.Errorf("PruneAll = %d, %v; want 5", n, err)
	}
	if _, err := e.s.PruneAll(ctx, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("PruneAll(nil): %v, want ErrInvalid", err)
	}
	// Streams exist from their first message or their conversation on.
	if want := []string{conv.Stream(), a, b}; !reflect.DeepEqual(asked, want) {
		t.Errorf("policy asked for %v, want %v", asked, want)
	}
	for stream, want := range map[string]int{a: 2, b: 5, conv.Stream(): 6, quiet: 0} {
		if ms, _ := mustHistory(t, e.s, stream, HistoryQuery{}); len(ms) != want {
			t.Errorf("%s keeps %d messages, want %d", stream, len(ms), want)
		}
	}
}

// testAppendBatch: one AppendMessages call with a bit of everything. Each
// message gets what AppendMessage would have given it, the others are not
// disturbed by one that fails, and each stream numbers its messages in
// the order of the batch.
func testAppendBatch(t *testing.T, e historyEnv) {
	ctx := context.Background()
	lobby, other := e.room(t, "lobby"), e.room(t, "other")
	committed := mustAppend(t, e.s, newMessage(lobby, "before the batch"))
	lobbyHead, err := e.s.StreamHead(ctx, lobby)
	if err != nil {
		t.Fatal(err)
	}

	retry := newMessage(lobby, "retry of a committed message")
	retry.ID = committed.ID
	theft := newMessage(lobby, "someone else's id")
	theft.ID, theft.Sender = committed.ID, uuid.New()
	a1 := newMessage(lobby, "a1")
	o1 := newMessage("room:OTHER", "o1")
	invalid := newMessage(lobby, "")
	nowhere := newMessage(RoomStream("nosuchroom"), "no stream")
	a2 := newMessage(lobby, "a2")
	again := newMessage(lobby, "a1 again, in the same batch")
	again.ID = a1.ID
	stolenInBatch := newMessage(lobby, "a2's id from another sender")
	stolenInBatch.ID, stolenInBatch.Sender = a2.ID, uuid.New()
	o2 := newMessage(other, "o2")
	conv := newMessage(ConversationStream(uuid.New()), "no such conversation")

	batch := []StoredMessage{retry, theft, a1, o1, invalid, nowhere, a2, again, stolenInBatch, o2, conv}
	rs, err := e.s.AppendMessages(ctx, batch)
	if err != nil {
		t.Fatalf("AppendMessages: %v", err)
	}
	if len(rs) != len(batch) {
		t.Fatalf("%d results for %d messages", len(rs), len(batch))
	}
	otherHead := func() StreamPosition {
		h, err := e.s.StreamHead(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}()
	type want struct {
		seq     int64
		created bool
		epoch   string
		err     error
	}
	wants := []want{
		{1, false, lobbyHead.Epoch, nil}, // retry
		{0, false, "", ErrConflict},      // theft
		{2, true, lobbyHead.Epoch, nil},  // a1
		{1, true, otherHead.Epoch, nil},  // o1
		{0, false, "", ErrInvalid},       // invalid
		{0, false, "", ErrNotFound},      // nowhere
		{3, true, lobbyHead.Epoch, nil},  // a2
		{2, false, lobbyHead.Epoch, nil}, // again: a1 as stored
		{0, false, "", ErrConflict},      // stolenInBatch
		{2, true, otherHead.Epoch, nil},  // o2
		{0, false, "", ErrNotFound},      // conv
	}
	for i, w := range wants {
		r := rs[i]
		if w.err != nil {
			if !errors.Is(r.Err, w.err) || r.Created || r.Message.Seq != 0 {
				t.Errorf("result %d (%q) = %+v; want error %v and nothing else", i, batch[i].Body, r, w.err)
			}
			continue
		}
		if r.Err != nil || r.Message.Seq != w.seq || r.Created != w.created || r.Epoch != w.epoch || !isEpoch(r.Epoch) {
			t.Errorf("result %d (%q): seq %d created %v epoch %q err %v; want seq %d created %v epoch %q",
				i, batch[i].Body, r.Message.Seq, r.Created, r.Epoch, r.Err, w.seq, w.created, w.epoch)
		}
	}
	if got := rs[0].Message; !reflect.DeepEqual(got, committed) {
		t.Errorf("retry returned %+v, want the committed message %+v", got, committed)
	}
	if got := rs[7].Message; !reflect.DeepEqual(got, rs[2].Message) || string(got.Body) != "a1" {
		t.Errorf("the id given twice returned %+v, want a1 as stored %+v", got, rs[2].Message)
	}
	if o1 := rs[3].Message; o1.Stream != other {
		t.Errorf("o1 stored in %q, want %q", o1.Stream, other)
	}

	// What the batch returned is what was committed, in batch order.
	ms, pos := mustHistory(t, e.s, lobby, HistoryQuery{After: ptr(0)})
	if want := []StoredMessage{committed, rs[2].Message, rs[6].Message}; !reflect.DeepEqual(ms, want) {
		t.Errorf("lobby History = %+v,\nwant %+v", ms, want)
	}
	if pos != (StreamPosition{Seq: 3, Epoch: lobbyHead.Epoch}) {
		t.Errorf("lobby head %+v, want 3 in %s", pos, lobbyHead.Epoch)
	}
	ms, pos = mustHistory(t, e.s, other, HistoryQuery{After: ptr(0)})
	if want := []StoredMessage{rs[3].Message, rs[9].Message}; !reflect.DeepEqual(ms, want) {
		t.Errorf("other History = %+v,\nwant %+v", ms, want)
	}
	if pos.Seq != 2 {
		t.Errorf("other head %d, want 2", pos.Seq)
	}
	if n := countRows(t, e.s, "messages"); n != 5 {
		t.Errorf("messages has %d rows, want 5", n)
	}
	if h, err := e.s.StreamHead(ctx, nowhere.Stream); err != nil || h != (StreamPosition{}) {
		t.Errorf("StreamHead of a room that does not exist = %+v, %v; want no stream", h, err)
	}
	t.Run("sealed like one append", func(t *testing.T) {
		keyID, body, err := e.raw.rawMessage(ctx, lobby, 2)
		if err != nil || keyID != 1 || bytes.Contains(body, []byte("a1")) {
			t.Errorf("raw row: key %d, body %q, %v; want sealed under key 1", keyID, body, err)
		}
	})
	t.Run("empty batch", func(t *testing.T) {
		rs, err := e.s.AppendMessages(ctx, nil)
		if err != nil || len(rs) != 0 {
			t.Errorf("AppendMessages(nil) = %+v, %v", rs, err)
		}
	})
}

// testAppendBatchOnlyFailures: a batch in which no message can be stored
// answers each with its error and changes nothing.
func testAppendBatchOnlyFailures(t *testing.T, e historyEnv) {
	ctx := context.Background()
	lobby := e.room(t, "lobby")
	first := mustAppend(t, e.s, newMessage(lobby, "first"))
	theft := newMessage(lobby, "theft")
	theft.ID, theft.Sender = first.ID, uuid.New()
	rs, err := e.s.AppendMessages(ctx, []StoredMessage{
		newMessage(RoomStream("ghost"), "x"), theft, newMessage(lobby, ""),
	})
	if err != nil || len(rs) != 3 {
		t.Fatalf("AppendMessages = %+v, %v", rs, err)
	}
	for i, target := range []error{ErrNotFound, ErrConflict, ErrInvalid} {
		if !errors.Is(rs[i].Err, target) {
			t.Errorf("result %d: %v, want %v", i, rs[i].Err, target)
		}
	}
	if h, err := e.s.StreamHead(ctx, lobby); err != nil || h.Seq != 1 {
		t.Errorf("head %+v, %v; want 1", h, err)
	}
	if n := countRows(t, e.s, "messages"); n != 1 {
		t.Errorf("messages has %d rows, want 1", n)
	}
}

// testConcurrentBatches: batches over the same two streams, listed in
// opposite orders, run at once (on PostgreSQL, two nodes' appenders):
// none fails (no deadlock), every message is stored once, and each
// stream is numbered without gaps in the order of each batch.
func testConcurrentBatches(t *testing.T, e historyEnv) {
	ctx := context.Background()
	a, b := e.room(t, "a"), e.room(t, "b")
	const workers, rounds, per = 4, 6, 8
	results := make([][]AppendResult, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			<-start
			for r := range rounds {
				batch := make([]StoredMessage, 0, per)
				for i := range per {
					stream := a
					if (i+w)%2 == 1 {
						stream = b
					}
					batch = append(batch, newMessage(stream, fmt.Sprintf("w%d r%d i%d", w, r, i)))
				}
				rs, err := e.s.AppendMessages(ctx, batch)
				if err != nil {
					errs[w] = fmt.Errorf("round %d: %w", r, err)
					return
				}
				results[w] = append(results[w], rs...)
			}
		})
	}
	close(start)
	wg.Wait()
	for w := range workers {
		if errs[w] != nil {
			t.Fatalf("worker %d: %v", w, errs[w])
		}
	}
	last := map[string]int64{}
	for w := range workers {
		for i, r := range results[w] {
			if r.Err != nil || !r.Created {
				t.Fatalf("worker %d result %d: %+v", w, i, r)
			}
			// Within one batch, a stream's seqs rise in batch order.
			if i%per == 0 {
				clear(last)
			}
			if r.Message.Seq <= last[r.Message.Stream] {
				t.Errorf("worker %d result %d: seq %d after %d in the same batch", w, i, r.Message.Seq, last[r.Message.Stream])
			}
			last[r.Message.Stream] = r.Message.Seq
		}
	}
	const each = workers * rounds * per / 2
	for _, stream := range []string{a, b} {
		ms, pos := mustHistory(t, e.s, stream, HistoryQuery{After: ptr(0), Limit: MaxHistoryLimit})
		if len(ms) != each || pos.Seq != each {
			t.Fatalf("%s: %d messages, head %d; want %d", stream, len(ms), pos.Seq, each)
		}
		for i, m := range ms {
			if m.Seq != int64(i+1) {
				t.Fatalf("%s: stored[%d].Seq = %d (a gap)", stream, i, m.Seq)
			}
		}
	}
}
