package main

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secure-messenger/messenger/internal/keyring"
	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/client"
)

// rotate runs `messenger rotate-storage-key args...` with env and returns
// its output.
func rotate(ctx context.Context, env map[string]string, args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := run(ctx, append([]string{rotateCommand}, args...), func(k string) string { return env[k] }, &out, &errOut)
	return out.String() + errOut.String(), err
}

// keyUsage opens the server's database beside it and counts the stored
// messages under each key id.
func keyUsage(t *testing.T, env map[string]string) map[int64]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := store.Open(ctx, env["MESSENGER_DB"], env["MESSENGER_DATA"])
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, err := db.KeyUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

var currentKeyRE = regexp.MustCompile(`key (\d+) is current .* \(was (\d+)\)`)

// TestRunRotateStorageKeyWhileServing: a server keeps taking messages
// while rotate-storage-key makes a new key current and rewraps; alice's
// connection stays up throughout; every message still reads through the
// server; afterwards every row names the new key, the old one can be
// retired, and storage.key (which the session and broker keys come from)
// is unchanged: a session made before the rotation resumes.
func TestRunRotateStorageKeyWhileServing(t *testing.T) {
	alice := newIdentity(t, "alice")
	for name, db := range historyBackends(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			dir := t.TempDir()
			env := historyEnv(dir, db(t))
			env["MESSENGER_STORAGE_KEYRING_RELOAD"] = "100ms"
			n := start(t, env, "-addr", "127.0.0.1:0")
			storageKey, err := os.ReadFile(filepath.Join(dir, "storage.key"))
			if err != nil {
				t.Fatal(err)
			}
			if out, err := rotate(ctx, env, "-retire"); err != nil || !strings.Contains(out, "no key to retire") {
				t.Errorf("retire before any rotation: %v\n%s", err, out)
			}

			ca := n.dial(t)
			if _, err := ca.Register(ctx, alice, "alice's password"); err != nil {
				t.Fatal(err)
			}
			if _, err := ca.Join(ctx, "r", ""); err != nil {
				t.Fatal(err)
			}
			go func() {
				for range ca.Messages() {
				}
			}()
			var mu sync.Mutex
			var bodies []string
			send := func() error {
				mu.Lock()
				body := fmt.Sprintf("m%d", len(bodies)+1)
				mu.Unlock()
				s, err := ca.SendMessage(ctx, "r", body, client.NewMessageID())
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				if want := int64(len(bodies) + 1); s.Seq != want {
					return fmt.Errorf("%s got seq %d, want %d", body, s.Seq, want)
				}
				bodies = append(bodies, body)
				return nil
			}
			for range 30 {
				if err := send(); err != nil {
					t.Fatal(err)
				}
			}
			old := keyUsage(t, env)
			if len(old) != 1 {
				t.Fatalf("before the rotation: %v, want one key id", old)
			}

			// A reader pages the room's newest messages throughout: rows
			// under both keys read while the rotation runs.
			cr := n.dial(t)
			if _, err := cr.Auth(ctx, alice); err != nil {
				t.Fatal(err)
			}
			if _, err := cr.Join(ctx, "r", ""); err != nil {
				t.Fatal(err)
			}
			go func() {
				for range cr.Messages() {
				}
			}()
			stopReader := make(chan struct{})
			readerDone := make(chan error, 1)
			go func() {
				for pages := 0; ; pages++ {
					select {
					case <-stopReader:
						readerDone <- nil
						return
					default:
					}
					page, err := cr.History(ctx, "r", client.HistoryQuery{Limit: 200})
					if err == nil && len(page.Msgs) == 0 {
						err = fmt.Errorf("an empty page")
					}
					if err != nil {
						readerDone <- fmt.Errorf("history page %d during the rotation: %w", pages, err)
						return
					}
				}
			}()
			stopWriter := make(chan struct{})
			writerDone := make(chan error, 1)
			go func() {
				for {
					select {
					case <-stopWriter:
						writerDone <- nil
						return
					default:
					}
					if err := send(); err != nil {
						writerDone <- err
						return
					}
				}
			}()
			out, err := rotate(ctx, env, "-batch", "7")
			if err != nil {
				t.Fatalf("rotate: %v\n%s", err, out)
			}
			m := currentKeyRE.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("rotate said:\n%s", out)
			}
			newID, _ := strconv.ParseInt(m[1], 10, 64)
			oldID, _ := strconv.ParseInt(m[2], 10, 64)
			if _, ok := old[oldID]; !ok || newID == oldID {
				t.Fatalf("rotated from key %d to %d; the rows had %v", oldID, newID, old)
			}
			if out, err := rotate(ctx, env, "-retire"); err == nil || !strings.Contains(err.Error(), "current for") {
				t.Errorf("retire within the grace period: %v\n%s", err, out)
			}
			// The writer goes on until the server seals under the new key.
			deadline := time.Now().Add(time.Minute)
			for keyUsage(t, env)[newID] == 0 || func() bool { mu.Lock(); defer mu.Unlock(); return len(bodies) < 60 }() {
				if time.Now().After(deadline) {
					t.Fatalf("the server never sealed under key %d: %v", newID, keyUsage(t, env))
				}
				time.Sleep(50 * time.Millisecond)
			}
			close(stopWriter)
			if err := <-writerDone; err != nil {
				t.Fatalf("sending during the rotation: %v", err)
			}
			close(stopReader)
			if err := <-readerDone; err != nil {
				t.Fatal(err)
			}
			// What a node wrote under the old key before it reloaded.
			if out, err := rotate(ctx, env, "-rewrap"); err != nil {
				t.Fatalf("rotate -rewrap: %v\n%s", err, out)
			}
			mu.Lock()
			total := int64(len(bodies))
			mu.Unlock()
			if got, want := keyUsage(t, env), map[int64]int64{newID: total}; !maps.Equal(got, want) {
				t.Errorf("after the rewrap: %v, want %v", got, want)
			}
			if out, err := rotate(ctx, env, "-retire", "-grace", "0"); err != nil || !strings.Contains(out, fmt.Sprintf("retired keys [%d]", oldID)) {
				t.Errorf("retire: %v\n%s", err, out)
			}
			f, err := keyring.Load(filepath.Join(dir, keyring.FileName), nil)
			if err != nil || len(f.Keys) != 1 || int64(f.Current) != newID {
				t.Errorf("keyring after retiring: %+v, %v", f, err)
			}
			if now, err := os.ReadFile(filepath.Join(dir, "storage.key")); err != nil || !bytes.Equal(now, storageKey) {
				t.Errorf("storage.key changed: %v", err)
			}
			// alice's session, made before the rotation, still resumes
			// (without a new key exchange), logged in.
			ticket := ca.Ticket()
			resumed, err := client.Dial(ctx, client.Config{URL: "ws://" + n.addr + "/ws", VerifyIdentity: client.Pin(n.fp), Resume: &ticket, ResumeOnly: true})
			if err != nil {
				t.Fatalf("resume after the rotation: %v", err)
			}
			if info := resumed.Session(); !info.Resumed || info.User != "alice" {
				t.Errorf("resumed session: %+v", info)
			}
			resumed.Close()

			// Every message reads through the running server and through
			// a new one, which has only the new key.
			readAll := func(t *testing.T, c *client.Conn) {
				t.Helper()
				var got []string
				after := int64(0)
				for {
					page, err := c.History(ctx, "r", client.HistoryQuery{After: &after, Limit: 200})
					if err != nil {
						t.Fatalf("history after %d: %v", after, err)
					}
					if len(page.Msgs) == 0 {
						break
					}
					for _, m := range page.Msgs {
						got = append(got, m.Body)
						after = m.Seq
					}
				}
				mu.Lock()
				defer mu.Unlock()
				if strings.Join(got, ",") != strings.Join(bodies, ",") {
					t.Errorf("history reads %d messages, want %d:\n%v\n%v", len(got), len(bodies), got, bodies)
				}
			}
			readAll(t, ca)
			readAll(t, func() *client.Conn {
				c := start(t, env, "-addr", "127.0.0.1:0").dial(t)
				if _, err := c.Auth(ctx, alice); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Join(ctx, "r", ""); err != nil {
					t.Fatal(err)
				}
				go func() {
					for range c.Messages() {
					}
				}()
				return c
			}())
		})
	}
}

// TestRunRotateStorageKeyStaged: with -stage the new key is readable but
// not current; the next rotation makes that one current; bad flag
// combinations are refused with what is wrong.
func TestRunRotateStorageKeyStaged(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	env := map[string]string{"MESSENGER_DATA": dir}
	if out, err := rotate(ctx, env); err == nil || !strings.Contains(err.Error(), "nothing to rotate") {
		t.Errorf("rotate without storage.key: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "storage.key"), bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	first, _ := keyring.MessageKey(bytes.Repeat([]byte{7}, 32))
	out, err := rotate(ctx, env, "-stage")
	if err != nil {
		t.Fatalf("stage: %v\n%s", err, out)
	}
	path := filepath.Join(dir, keyring.FileName)
	f, err := keyring.Load(path, nil)
	if err != nil || f.Current != first || f.Next == 0 || len(f.Keys) != 2 {
		t.Fatalf("after -stage: %+v, %v", f, err)
	}
	staged := f.Next
	if out, err := rotate(ctx, env, "-stage"); err == nil {
		t.Errorf("a second -stage: %s", out)
	}
	if out, err := rotate(ctx, env, "-no-rewrap"); err != nil {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	if f, err = keyring.Load(path, nil); err != nil || f.Current != staged || f.Next != 0 {
		t.Errorf("after the rotation: %+v, %v; want %d current", f, err, staged)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("keyring file mode: %v, %v", fi.Mode(), err)
	}
	for _, args := range [][]string{
		{"-stage", "-retire"}, {"-rewrap", "-no-rewrap"}, {"-batch", "0"}, {"-batch", "1001"}, {"-grace", "-1s"}, {"extra"},
	} {
		if out, err := rotate(ctx, env, args...); err == nil {
			t.Errorf("%v accepted: %s", args, out)
		}
	}
}

// TestRunKeyringReloadOnSIGHUP: a server process that re-reads the keyring
// only on SIGHUP (-storage-keyring-reload 0) keeps sealing under the old
// key after a rotation, and under the new one after SIGHUP, reading both.
func TestRunKeyringReloadOnSIGHUP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	env := historyEnv(dir, "")
	n, cmd, _ := startChild(t, dir, "", "MESSENGER_STORAGE_KEYRING_RELOAD=0")
	alice := newIdentity(t, "alice")
	c := n.dial(t)
	if _, err := c.Register(ctx, alice, "alice's password"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, "r", ""); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range c.Messages() {
		}
	}()
	sent := 0
	send := func() {
		t.Helper()
		sent++
		if _, err := c.SendMessage(ctx, "r", fmt.Sprint("m", sent), ""); err != nil {
			t.Fatal(err)
		}
	}
	send()
	out, err := rotate(ctx, env, "-no-rewrap")
	if err != nil {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	m := currentKeyRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("rotate said:\n%s", out)
	}
	newID, _ := strconv.ParseInt(m[1], 10, 64)
	oldID, _ := strconv.ParseInt(m[2], 10, 64)
	send()
	if got, want := keyUsage(t, env), map[int64]int64{oldID: 2}; !maps.Equal(got, want) {
		t.Fatalf("before SIGHUP: %v, want %v (no reload without the signal)", got, want)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for keyUsage(t, env)[newID] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP the server still seals under key %d: %v", oldID, keyUsage(t, env))
		}
		send()
	}
	page, err := c.History(ctx, "r", client.HistoryQuery{})
	if err != nil || len(page.Msgs) != sent {
		t.Fatalf("history after SIGHUP: %d messages, %v; want %d", len(page.Msgs), err, sent)
	}
}
