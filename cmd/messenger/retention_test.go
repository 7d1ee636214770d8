package main

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/secure-messenger/messenger/pkg/client"
)

// TestRunRetention: the server prunes by -retention-max-count, with a room
// kept whole by -retention, on SQLite and PostgreSQL.
func TestRunRetention(t *testing.T) {
	alice := newIdentity(t, "alice")
	for name, db := range historyBackends(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			env := historyEnv(t.TempDir(), db(t))
			env["MESSENGER_RETENTION_MAX_COUNT"] = "5"
			env["MESSENGER_RETENTION"] = "Keepers=keep"
			n := start(t, env, "-addr", "127.0.0.1:0", "-retention-interval", "50ms")
			c := n.dial(t)
			if _, err := c.Register(ctx, alice, "alice's password"); err != nil {
				t.Fatal(err)
			}
			go func() {
				for range c.Messages() {
				}
			}()
			for _, room := range []string{"r", "keepers"} {
				if _, err := c.Join(ctx, room, ""); err != nil {
					t.Fatal(err)
				}
				for i := range 10 {
					if _, err := c.SendMessage(ctx, room, fmt.Sprint("m", i+1), ""); err != nil {
						t.Fatal(err)
					}
				}
			}
			seqs := func(room string) []int64 {
				page, err := c.History(ctx, room, client.HistoryQuery{After: new(int64)})
				if err != nil {
					t.Fatal(err)
				}
				var out []int64
				for _, m := range page.Msgs {
					out = append(out, m.Seq)
				}
				return out
			}
			deadline := time.Now().Add(time.Minute)
			for got := seqs("r"); !reflect.DeepEqual(got, []int64{6, 7, 8, 9, 10}); got = seqs("r") {
				if time.Now().After(deadline) {
					t.Fatalf("r keeps %v, want the newest 5", got)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if got := seqs("keepers"); len(got) != 10 {
				t.Errorf("keepers keeps %v, want all 10", got)
			}
		})
	}
}

// TestRunRetentionFlags: each bad retention setting stops the server
// before it starts, naming the flag.
func TestRunRetentionFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-retention-max-age", "forever"},
		{"-retention-max-age", "-1h"},
		{"-retention-max-count", "-1"},
		{"-retention-interval", "0s"},
		{"-retention", "lobby"},
		{"-retention", "bad room=1d"},
		{"-storage-keyring-reload", "-1s"},
	} {
		var out, errOut bytes.Buffer
		env := map[string]string{"MESSENGER_DATA": t.TempDir()}
		err := run(context.Background(), append(args, "-addr", "127.0.0.1:0"), func(k string) string { return env[k] }, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: %v; want an error naming %s", args, err, args[0])
		}
	}
}
