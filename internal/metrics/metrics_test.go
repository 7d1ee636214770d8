package metrics

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/secure-messenger/messenger/internal/pgtest"
	"github.com/secure-messenger/messenger/internal/redistest"
	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// TestNilIsSafe: a server without metrics calls every method on nil.
func TestNilIsSafe(t *testing.T) {
	var m *Metrics
	m.ConnOpened()
	m.ConnEnded()
	m.Closed(protocol.CodeSlowConsumer)
	m.HandshakeDone(true, time.Second)
	m.HandshakeFailed(protocol.CodeBadFinished, time.Second)
	m.HandshakeAbandoned(time.Second)
	m.RecordIn(1)
	m.RecordOut(1)
	m.QueueDrop(DropQueueFull)
	m.Rejected(protocol.CodeReplayedID)
	m.RateLimited(KindSend)
	m.GapFilled(3)
	m.BotGeneration(time.Second, nil)
	m.SetDraining(true)
	if m.RedisHook() != nil || m.DBTracer() != nil {
		t.Fatal("nil Metrics returned a hook")
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 404 {
		t.Fatalf("nil Metrics' handler: %d, want 404", rec.Code)
	}
}

// TestHooks: the hooks other parts of the server call (gap filling, the
// bot) and the code-derived counters move by what they were given.
func TestHooks(t *testing.T) {
	m := New()
	m.GapFilled(3)
	m.GapFilled(2)
	m.BotGeneration(time.Second, nil)
	m.BotGeneration(time.Second, errors.New("llm down"))
	m.BotGeneration(time.Second, nil)
	m.Closed(protocol.CodeSlowConsumer)
	m.Closed(protocol.CodeGoingAway)
	m.Closed(0)
	m.Rejected(protocol.CodeReplayedID)
	m.Rejected(protocol.Code(999)) // a number the protocol does not define
	m.HandshakeFailed(protocol.Code(4242), time.Millisecond)
	for _, tc := range []struct {
		got  float64
		want float64
		what string
	}{
		{testutil.ToFloat64(m.gapsFilled), 2, "gaps filled"},
		{testutil.ToFloat64(m.gapMessages), 5, "gap messages"},
		{testutil.ToFloat64(m.botGenerations.WithLabelValues("ok")), 2, "bot ok"},
		{testutil.ToFloat64(m.botGenerations.WithLabelValues("error")), 1, "bot errors"},
		{testutil.ToFloat64(m.slowConsumers), 1, "slow consumers"},
		{testutil.ToFloat64(m.closes.WithLabelValues("going_away")), 1, "going_away closes"},
		{testutil.ToFloat64(m.replays), 1, "replays"},
		{testutil.ToFloat64(m.rejected.WithLabelValues("other")), 1, "undefined code"},
		{testutil.ToFloat64(m.handshakes.WithLabelValues("other")), 1, "undefined alert code"},
		{float64(testutil.CollectAndCount(m.closes)), 2, "close series (0 is not counted)"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.what, tc.got, tc.want)
		}
	}
}

func TestRateKind(t *testing.T) {
	for key, want := range map[string]string{
		"hs:addr:10.0.0.1":   KindHandshake,
		"req:user:0f0e…":     KindUserRequests,
		"send:user:0f0e…":    KindSend,
		"send:anon:10.0.0.1": KindSend,
		"send:room:general":  KindRoomSend,
		"something:else":     KindOther,
	} {
		if got := RateKind(key); got != want {
			t.Errorf("RateKind(%q) = %q, want %q", key, got, want)
		}
	}
}

// TestRedisHook: commands on a real Redis are timed; a missing key is not
// an error, a failed command is.
func TestRedisHook(t *testing.T) {
	rc, prefix := redistest.Client(t)
	m := New()
	rc.AddHook(m.RedisHook())
	ctx := context.Background()
	if err := rc.Set(ctx, prefix+"k", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	_ = rc.Get(ctx, prefix+"missing").Err() // redis.Nil
	if err := rc.Incr(ctx, prefix+"k").Err(); err == nil {
		t.Fatal("INCR of a string succeeded")
	}
	if n := testutil.CollectAndCount(m.redisTime); n < 3 {
		t.Errorf("%d command series timed, want set, get, incr", n)
	}
	if got := testutil.ToFloat64(m.redisErrors.WithLabelValues("get")); got != 0 {
		t.Errorf("get errors = %v, want 0 (a missing key is an answer)", got)
	}
	if got := testutil.ToFloat64(m.redisErrors.WithLabelValues("incr")); got != 1 {
		t.Errorf("incr errors = %v, want 1", got)
	}
}

// TestDBTracer: queries on a real PostgreSQL are timed and a failed one
// counted.
func TestDBTracer(t *testing.T) {
	url := pgtest.URL(t)
	m := New()
	ctx := context.Background()
	db, err := store.OpenPostgres(ctx, url, store.WithQueryTracer(m.DBTracer()))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.UserByName(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UserByName: %v, want not found", err)
	}
	if err := db.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if n := histogramCount(t, m); n < 2 {
		t.Fatalf("%d queries timed, want the lookup and the ping at least", n)
	}
	if got := testutil.ToFloat64(m.dbErrors); got != 0 {
		t.Errorf("db errors = %v after a lookup of a missing user, want 0", got)
	}
	// A duplicate name breaks a unique constraint: a failed query. (The
	// store may check in a transaction first; at least one query fails.)
	u := store.User{Name: "dup", PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"}
	if _, err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateUser(ctx, u); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second CreateUser: %v, want conflict", err)
	}
	if got := testutil.ToFloat64(m.dbErrors); got < 1 {
		t.Errorf("db errors = %v after a unique violation, want at least 1", got)
	}
}

// histogramCount returns how many queries m.dbTime observed.
func histogramCount(t *testing.T, m *Metrics) uint64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "messenger_db_query_duration_seconds" {
			return f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}
