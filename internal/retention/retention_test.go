package retention

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/pgtest"
	"github.com/secure-messenger/messenger/internal/store"
)

func TestParseAge(t *testing.T) {
	good := map[string]time.Duration{"": 0, "0": 0, "keep": 0, "30d": 30 * 24 * time.Hour, "720h": 720 * time.Hour, "90m": 90 * time.Minute, " 1d ": 24 * time.Hour}
	for in, want := range good {
		if got, err := ParseAge(in); err != nil || got != want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"-1h", "30", "d", "-3d", "1.5d", "36501d", "forever", "1w"} {
		if got, err := ParseAge(in); err == nil || !strings.Contains(err.Error(), "want") {
			t.Errorf("ParseAge(%q) = %v, %v; want an error saying what is wanted", in, got, err)
		}
	}
}

func TestParseOverrides(t *testing.T) {
	def := store.RetentionPolicy{MaxAge: time.Hour, MaxCount: 10}
	r, err := ParseOverrides(" Lobby=30d,1000; support=7d ;archive=keep;count-only=,5;@conversations=365d;", def)
	if err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	want := map[string]store.RetentionPolicy{
		"room:lobby":      {MaxAge: 30 * day, MaxCount: 1000},
		"room:support":    {MaxAge: 7 * day},
		"room:archive":    {},
		"room:count-only": {MaxCount: 5},
	}
	if !reflect.DeepEqual(r.Rooms, want) {
		t.Errorf("rooms = %+v, want %+v", r.Rooms, want)
	}
	policies := map[string]store.RetentionPolicy{
		"room:lobby":                         want["room:lobby"],
		"room:elsewhere":                     def,
		store.ConversationStream(uuid.New()): {MaxAge: 365 * day},
	}
	for stream, p := range policies {
		if got := r.Policy(stream); got != p {
			t.Errorf("Policy(%s) = %+v, want %+v", stream, got, p)
		}
	}
	if r.KeepsEverything() {
		t.Error("KeepsEverything with limits")
	}
	noConv, _ := ParseOverrides("", def)
	if got := noConv.Policy(store.ConversationStream(uuid.New())); got != def {
		t.Errorf("a conversation without an override: %+v, want the default", got)
	}
	if keep, _ := ParseOverrides("lobby=keep", store.RetentionPolicy{}); !keep.KeepsEverything() {
		t.Error("no limits anywhere: KeepsEverything is false")
	}
	// Each bad entry is refused with the entry named.
	for _, spec := range []string{
		"lobby", "=30d", "lobby=30x", "lobby=30d,-1", "lobby=30d,many", "bad room=1d",
		"lobby=1d;LOBBY=2d", "@conversations=1d;@conversations=2d", "-lobby=1d", "lobby=-1h",
	} {
		if _, err := ParseOverrides(spec, def); err == nil || !strings.Contains(err.Error(), "retention") {
			t.Errorf("ParseOverrides(%q): %v; want an error", spec, err)
		}
	}
}

// TestRunPrunes: Run has the store remove what the rules say, per room and
// for conversations, at start and then every interval, and returns when
// its context ends. On SQLite and PostgreSQL.
func TestRunPrunes(t *testing.T) {
	kr, err := store.NewKeyring(map[uint32][]byte{1: bytes.Repeat([]byte{1}, 32)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	backends := map[string]func(t *testing.T) store.Store{
		"sqlite": func(t *testing.T) store.Store {
			s, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "m.db"), store.WithKeyring(kr))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"postgres": func(t *testing.T) store.Store {
			s, err := store.OpenPostgres(context.Background(), pgtest.URL(t), store.WithKeyring(kr))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			defer s.Close()
			alice, err := s.CreateUser(ctx, store.User{Name: "alice", PasswordHash: "x"})
			if err != nil {
				t.Fatal(err)
			}
			bob, err := s.CreateUser(ctx, store.User{Name: "bob", PasswordHash: "x"})
			if err != nil {
				t.Fatal(err)
			}
			conv, err := s.CreateConversation(ctx, alice.ID, bob.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, room := range []string{"lobby", "archive", "fresh"} {
				if _, err := s.CreateRoom(ctx, store.Room{Name: room, CreatedBy: alice.ID}); err != nil {
					t.Fatal(err)
				}
			}
			old := time.Now().Add(-48 * time.Hour)
			appendN := func(stream string, n int, at time.Time) {
				for i := range n {
					if _, _, err := s.AppendMessage(ctx, store.StoredMessage{Stream: stream, ID: uuid.New(), Sender: alice.ID,
						Kind: store.KindMessage, Body: []byte(fmt.Sprint("m", i)), CreatedAt: at}); err != nil {
						t.Fatal(err)
					}
				}
			}
			appendN(store.RoomStream("lobby"), 10, time.Now()) // default: newest 4
			appendN(store.RoomStream("archive"), 3, old)       // keep
			appendN(store.RoomStream("fresh"), 3, old)         // 1 day: all old ones go
			appendN(store.RoomStream("fresh"), 2, time.Now())
			appendN(conv.Stream(), 5, old) // conversations: newest 2
			rules, err := ParseOverrides("archive=keep;fresh=1d;@conversations=0,2", store.RetentionPolicy{MaxCount: 4})
			if err != nil {
				t.Fatal(err)
			}
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); Run(runCtx, s, rules, 20*time.Millisecond, zerolog.Nop()) }()

			want := map[string][]int64{
				store.RoomStream("lobby"):   {7, 8, 9, 10},
				store.RoomStream("archive"): {1, 2, 3},
				store.RoomStream("fresh"):   {4, 5},
				conv.Stream():               {4, 5},
			}
			seqsOf := func(stream string) []int64 {
				ms, _, err := s.History(ctx, stream, store.HistoryQuery{After: new(int64)})
				if err != nil {
					t.Fatal(err)
				}
				var out []int64
				for _, m := range ms {
					out = append(out, m.Seq)
				}
				return out
			}
			deadline := time.Now().Add(30 * time.Second)
			for stream, seqs := range want {
				for got := seqsOf(stream); !reflect.DeepEqual(got, seqs); got = seqsOf(stream) {
					if time.Now().After(deadline) {
						t.Fatalf("%s keeps %v, want %v", stream, got, seqs)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			// Later messages are pruned at a later interval.
			appendN(store.RoomStream("lobby"), 2, time.Now())
			for got := seqsOf(store.RoomStream("lobby")); !reflect.DeepEqual(got, []int64{9, 10, 11, 12}); got = seqsOf(store.RoomStream("lobby")) {
				if time.Now().After(deadline) {
					t.Fatalf("lobby keeps %v after two more", got)
				}
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return after its context ended")
			}
		})
	}
}

// TestRunKeepsEverything: with no limit anywhere Run returns at once and
// never calls the store.
func TestRunKeepsEverything(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(context.Background(), panicPruner{}, Rules{}, time.Millisecond, zerolog.Nop())
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run with nothing to prune did not return")
	}
}

type panicPruner struct{}

func (panicPruner) PruneAll(context.Context, func(string) store.RetentionPolicy) (int, error) {
	panic("PruneAll called with rules that keep everything")
}

// FuzzParseOverrides: whatever ParseOverrides accepts has no negative
// limit and only canonical room streams; what it refuses is an error,
// never a panic.
func FuzzParseOverrides(f *testing.F) {
	for _, s := range []string{"", "lobby=30d,1000", "a=keep;@conversations=,5", "x=720h", "=", ";;", "a=1d;A=2d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		r, err := ParseOverrides(spec, store.RetentionPolicy{})
		if err != nil {
			return
		}
		check := func(p store.RetentionPolicy) {
			if p.MaxAge < 0 || p.MaxCount < 0 {
				t.Fatalf("ParseOverrides(%q) gave %+v", spec, p)
			}
		}
		for stream, p := range r.Rooms {
			if c, err := store.CanonicalStream(stream); err != nil || c != stream || store.IsConversationStream(stream) {
				t.Fatalf("ParseOverrides(%q) gave stream %q", spec, stream)
			}
			check(p)
		}
		if r.Conversations != nil {
			check(*r.Conversations)
		}
	})
}
