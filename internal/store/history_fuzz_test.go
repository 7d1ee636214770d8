package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzHistoryQuery: for any after / before / limit a client can send, a
// history page of a stream of fuzzStreamLen messages (with the first
// fuzzPruned pruned) is exactly what the rules of HistoryQuery say, or
// ErrInvalid for an invalid query; never another error, never a message
// outside the range, never out of order.
func FuzzHistoryQuery(f *testing.F) {
	const fuzzStreamLen, fuzzPruned = 30, 5
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(f.TempDir(), "fuzz.db"), WithKeyring(newTestKeyring()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	owner, err := s.CreateUser(ctx, User{Name: "owner", PasswordHash: testHash})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := s.CreateRoom(ctx, Room{Name: "fuzz", CreatedBy: owner.ID}); err != nil {
		f.Fatal(err)
	}
	stream := RoomStream("fuzz")
	for i := range fuzzStreamLen {
		if _, _, err := s.AppendMessage(ctx, newMessage(stream, fmt.Sprint("m", i+1))); err != nil {
			f.Fatal(err)
		}
	}
	if n, err := s.Prune(ctx, stream, RetentionPolicy{MaxCount: fuzzStreamLen - fuzzPruned}); err != nil || n != fuzzPruned {
		f.Fatalf("Prune: %d, %v", n, err)
	}
	kept := make([]int64, 0, fuzzStreamLen)
	for seq := int64(fuzzPruned + 1); seq <= fuzzStreamLen; seq++ {
		kept = append(kept, seq)
	}
	f.Add(true, int64(0), false, int64(0), 0)
	f.Add(true, int64(7), false, int64(0), 3)
	f.Add(false, int64(0), true, int64(12), 4)
	f.Add(false, int64(0), false, int64(0), 1000)
	f.Add(true, int64(-1), false, int64(0), 0)
	f.Add(true, int64(1), true, int64(2), 0)
	f.Add(false, int64(0), true, int64(1<<62), -1)
	f.Fuzz(func(t *testing.T, hasAfter bool, after int64, hasBefore bool, before int64, limit int) {
		var q HistoryQuery
		if hasAfter {
			q.After = &after
		}
		if hasBefore {
			q.Before = &before
		}
		q.Limit = limit
		got, pos, err := s.History(ctx, stream, q)
		invalid := (hasAfter && hasBefore) || (hasAfter && after < 0) || (hasBefore && before < 0) || limit < 0
		if invalid {
			if !errors.Is(err, ErrInvalid) || got != nil {
				t.Fatalf("History(%+v) = %d messages, %v; want ErrInvalid", q, len(got), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("History(%+v): %v", q, err)
		}
		n := limit
		switch {
		case n == 0:
			n = DefaultHistoryLimit
		case n > MaxHistoryLimit:
			n = MaxHistoryLimit
		}
		var want []int64
		switch {
		case hasAfter:
			for _, seq := range kept {
				if seq > after && len(want) < n {
					want = append(want, seq)
				}
			}
		default:
			for _, seq := range kept {
				if !hasBefore || seq < before {
					want = append(want, seq)
				}
			}
			want = want[max(0, len(want)-n):]
		}
		if gotSeqs := seqs(got); !slices.Equal(gotSeqs, want) && (len(gotSeqs) != 0 || len(want) != 0) {
			t.Fatalf("History(after %v %d, before %v %d, limit %d) = %v, want %v", hasAfter, after, hasBefore, before, limit, gotSeqs, want)
		}
		for _, m := range got {
			if string(m.Body) != fmt.Sprint("m", m.Seq) {
				t.Fatalf("seq %d carries %q", m.Seq, m.Body)
			}
		}
		if pos.Seq != fuzzStreamLen || !isEpoch(pos.Epoch) {
			t.Fatalf("head %+v, want %d", pos, fuzzStreamLen)
		}
	})
}
