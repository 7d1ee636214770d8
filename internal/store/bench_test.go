package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/secure-messenger/messenger/internal/pgtest"
)

// BenchmarkSQLiteAppendMessage is one room message stored as a send does
// it: AppendMessage (the idempotency lookup, the stream's head, the
// sealed row, the commit with synchronous=FULL), then the StreamHead the
// ack reads. It is the store's share of every published room message.
func BenchmarkSQLiteAppendMessage(b *testing.B) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(b.TempDir(), "bench.db"), WithKeyring(newTestKeyring()))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	stream := benchRoom(b, s)
	body := make([]byte, 256)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m := newMessage(stream, "")
		m.Body = body
		if _, _, err := s.AppendMessage(ctx, m); err != nil {
			b.Fatal(err)
		}
		if _, err := s.StreamHead(ctx, stream); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSQLiteAppendMessages is group commit: batches of n room
// messages stored with one AppendMessages call (one transaction, one
// commit). ns/op is per message, so it compares with
// BenchmarkSQLiteAppendMessage; the ack's epoch comes with the result, so
// no StreamHead read follows.
func BenchmarkSQLiteAppendMessages(b *testing.B) {
	benchAppendMessages(b, func(b *testing.B) Store {
		s, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "bench.db"), WithKeyring(newTestKeyring()))
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}

// BenchmarkPostgresAppendMessages is BenchmarkSQLiteAppendMessages on
// PostgreSQL (a fresh database per size; skipped without a server).
func BenchmarkPostgresAppendMessages(b *testing.B) {
	benchAppendMessages(b, func(b *testing.B) Store {
		p, err := OpenPostgres(context.Background(), pgtest.URL(b), WithKeyring(newTestKeyring()))
		if err != nil {
			b.Fatal(err)
		}
		return p
	})
}

// benchRoom creates a user and a room in s and returns the room's stream.
func benchRoom(b *testing.B, s Store) string {
	b.Helper()
	ctx := context.Background()
	u, err := s.CreateUser(ctx, User{Name: "owner", PasswordHash: testHash})
	if err != nil {
		b.Fatal(err)
	}
	r, err := s.CreateRoom(ctx, Room{Name: "bench", CreatedBy: u.ID})
	if err != nil {
		b.Fatal(err)
	}
	return RoomStream(r.Name)
}

func benchAppendMessages(b *testing.B, open func(b *testing.B) Store) {
	for _, n := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			ctx := context.Background()
			s := open(b)
			defer s.Close()
			stream := benchRoom(b, s)
			body := make([]byte, 256)
			batch := make([]StoredMessage, n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += n {
				for j := range batch {
					batch[j] = newMessage(stream, "")
					batch[j].Body = body
				}
				rs, err := s.AppendMessages(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				if rs[0].Err != nil || rs[0].Epoch == "" {
					b.Fatal(rs[0])
				}
			}
		})
	}
}
