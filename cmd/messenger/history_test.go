package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/secure-messenger/messenger/internal/pgtest"
	"github.com/secure-messenger/messenger/internal/syncbuf"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// historyEnv is a server's environment for the history tests: the data
// directory, the database (empty: SQLite in dir), and rates that let a
// test send 100 messages at once.
func historyEnv(dir, db string) map[string]string {
	env := map[string]string{"MESSENGER_DATA": dir, "MESSENGER_IDENTITY_BITS": "2048"}
	if db != "" {
		env["MESSENGER_DB"] = db
	}
	for _, k := range []string{"MESSENGER_REQUEST_RATE", "MESSENGER_USER_REQUEST_RATE", "MESSENGER_SEND_RATE", "MESSENGER_ROOM_SEND_RATE"} {
		env[k] = "off"
	}
	return env
}

// historyBackends are the databases the history tests run on.
func historyBackends(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"sqlite":   func(*testing.T) string { return "" },
		"postgres": func(t *testing.T) string { return pgtest.URL(t) },
	}
}

// offlineSetup registers alice and bob, has both join #r, closes bob and
// has alice send 100 messages (m1..m100) under the mids it returns.
func offlineSetup(t *testing.T, n *node, alice, bob *client.Identity) (ca *client.Conn, mids []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ca, cb := n.dial(t), n.dial(t)
	if _, err := ca.Register(ctx, alice, "alice's password"); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Register(ctx, bob, "bob's password"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Conn{ca, cb} {
		if _, err := c.Join(ctx, "r", ""); err != nil {
			t.Fatal(err)
		}
	}
	cb.Close()
	go func() { // alice's own copies: read them so her queue never fills
		for range ca.Messages() {
		}
	}()
	for i := 1; i <= 100; i++ {
		mid := client.NewMessageID()
		s, err := ca.SendMessage(ctx, "r", fmt.Sprintf("m%d", i), mid)
		if err != nil || s.Seq != int64(i) {
			t.Fatalf("send %d: %+v, %v", i, s, err)
		}
		mids = append(mids, mid)
	}
	return ca, mids
}

// checkAfterRestart: bob joins and gets m1..m100 in order, once each; a
// retry of alice's message 100 gets seq 100 and is not delivered again.
func checkAfterRestart(t *testing.T, n *node, alice, bob *client.Identity, mids []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cb := n.dial(t)
	if _, err := cb.Auth(ctx, bob); err != nil {
		t.Fatalf("bob auth after restart: %v", err)
	}
	if _, err := cb.Join(ctx, "r", ""); err != nil {
		t.Fatal(err)
	}
	nextMsg := func() *protocol.Message {
		t.Helper()
		for {
			select {
			case m, ok := <-cb.Messages():
				if !ok {
					t.Fatalf("bob's connection ended: %v", cb.Err())
				}
				if m.Type == protocol.MsgMessage {
					return m
				}
			case <-ctx.Done():
				t.Fatal("bob: no message")
			}
		}
	}
	for i := int64(1); i <= 100; i++ {
		if m := nextMsg(); m.Seq != i || m.Body != fmt.Sprintf("m%d", i) || m.ID != mids[i-1] {
			t.Fatalf("bob's message %d: seq %d body %q id %s", i, m.Seq, m.Body, m.ID)
		}
	}
	ca := n.dial(t)
	if _, err := ca.Auth(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Join(ctx, "r", ""); err != nil {
		t.Fatal(err)
	}
	if s, err := ca.SendMessage(ctx, "r", "m100", mids[99]); err != nil || s.Seq != 100 {
		t.Fatalf("retry of message 100 after the restart: %+v, %v", s, err)
	}
	if s, err := ca.SendMessage(ctx, "r", "m101", ""); err != nil || s.Seq != 101 {
		t.Fatalf("send 101: %+v, %v", s, err)
	}
	if m := nextMsg(); m.Seq != 101 {
		t.Fatalf("after the retry bob got seq %d %q, want 101", m.Seq, m.Body)
	}
}

// TestRunHistorySurvivesRestart: messages sent while bob was offline are
// his after a restart of the server, in order, once each.
func TestRunHistorySurvivesRestart(t *testing.T) {
	alice, bob := newIdentity(t, "alice"), newIdentity(t, "bob")
	for name, db := range historyBackends(t) {
		t.Run(name, func(t *testing.T) {
			env := historyEnv(t.TempDir(), db(t))
			first, stop := startStoppable(t, env)
			ca, mids := offlineSetup(t, first, alice, bob)
			ca.Close()
			stop()
			checkAfterRestart(t, start(t, env, "-addr", "127.0.0.1:0"), alice, bob, mids)
		})
	}
}

// messengerBinary is the messenger command, built once by
// buildMessenger for the tests that kill a server process.
var messengerBinary struct {
	once      sync.Once
	dir, path string
	err       error
}

// TestMain removes the built messenger binary after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if messengerBinary.dir != "" {
		os.RemoveAll(messengerBinary.dir)
	}
	os.Exit(code)
}

// buildMessenger builds this package's command (without -race) and
// returns its path; it skips the test if the go tool cannot be found.
func buildMessenger(t *testing.T) string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		if goTool, err = exec.LookPath("go"); err != nil {
			t.Skip("no go tool to build the messenger binary with")
		}
	}
	b := &messengerBinary
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "messenger-bin-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "messenger")
		out, err := exec.Command(goTool, "build", "-o", b.path, ".").CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// TestRunHistorySurvivesKill: the server process is killed with SIGKILL
// right after acknowledging the last of 100 messages; restarted, it gives
// bob all of them and knows the last one's mid.
func TestRunHistorySurvivesKill(t *testing.T) {
	alice, bob := newIdentity(t, "alice"), newIdentity(t, "bob")
	for name, db := range historyBackends(t) {
		t.Run(name, func(t *testing.T) {
			dir, dbURL := t.TempDir(), db(t)
			n, _, kill := startChild(t, dir, dbURL)
			_, mids := offlineSetup(t, n, alice, bob)
			kill() // SIGKILL, right after the last ack
			checkAfterRestart(t, start(t, historyEnv(dir, dbURL), "-addr", "127.0.0.1:0"), alice, bob, mids)
		})
	}
}

// startChild runs the messenger binary (buildMessenger) as a server on
// dir and dbURL, with historyEnv and env (KEY=VALUE) as its environment,
// and returns it once it listens, with the process and kill, which
// SIGKILLs it and waits.
func startChild(t *testing.T, dir, dbURL string, env ...string) (*node, *exec.Cmd, func()) {
	t.Helper()
	bin := buildMessenger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, "-addr", "127.0.0.1:0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range historyEnv(dir, dbURL) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(append(cmd.Env, "MESSENGER_LOG_LEVEL=warn"), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	n := &node{}
	lines := bufio.NewScanner(out)
	for n.addr == "" || n.fp == (protocol.Fingerprint{}) {
		if !lines.Scan() {
			t.Fatalf("child server ended: %v", lines.Err())
		}
		if m := listenRE.FindStringSubmatch(lines.Text()); m != nil {
			n.addr = m[1]
		}
		if m := fpRE.FindStringSubmatch(lines.Text()); m != nil {
			if n.fp, err = protocol.ParseFingerprint(m[1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	go func() { // keep the pipe drained
		for lines.Scan() {
		}
	}()
	return n, cmd, func() {
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
	}
}

// convOfflineSetup registers alice and bob, closes bob, and has alice
// open their direct conversation and send 100 end-to-end records
// (m1..m100) while bob is offline. It returns the sealed records.
func convOfflineSetup(t *testing.T, n *node, alice, bob *client.Identity) []*client.Sealed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ca, cb := n.dial(t), n.dial(t)
	if _, err := ca.Register(ctx, alice, "alice's password"); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Register(ctx, bob, "bob's password"); err != nil {
		t.Fatal(err)
	}
	cb.Close()
	go func() { // alice's own copies
		for range ca.Messages() {
		}
	}()
	cv, err := ca.OpenConversation(ctx, alice, "bob", client.ConversationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var sealed []*client.Sealed
	for i := 1; i <= 100; i++ {
		s, sent, err := cv.SendText(ctx, fmt.Sprintf("m%d", i))
		if err != nil || sent.Seq != int64(i) {
			t.Fatalf("conversation send %d: %+v, %v", i, sent, err)
		}
		sealed = append(sealed, s)
	}
	ca.Close()
	return sealed
}

// checkConvAfterRestart: bob connects and gets m1..m100 in order, once
// each, opened and verified; a second look finds nothing new; alice's
// retry of record 100 keeps seq 100 and reaches bob not at all, and her
// next record reaches him live as seq 101.
func checkConvAfterRestart(t *testing.T, n *node, alice, bob *client.Identity, sealed []*client.Sealed) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cb := n.dial(t)
	if _, err := cb.Auth(ctx, bob); err != nil {
		t.Fatalf("bob auth after restart: %v", err)
	}
	bcv, err := cb.OpenConversation(ctx, bob, "alice", client.ConversationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := bcv.Missed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 {
		t.Fatalf("bob got %d records, want 100", len(got))
	}
	for i, r := range got {
		if r.Seq != int64(i+1) || r.Text != fmt.Sprintf("m%d", i+1) || r.MessageID != sealed[i].MessageID || r.From != "alice" || !r.Verified {
			t.Fatalf("bob's record %d: %+v", i+1, r)
		}
	}
	if again, err := bcv.Missed(ctx); err != nil || len(again) != 0 {
		t.Fatalf("a second look: %d records, %v; want none", len(again), err)
	}

	ca := n.dial(t)
	if _, err := ca.Auth(ctx, alice); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range ca.Messages() {
		}
	}()
	acv, err := ca.OpenConversation(ctx, alice, "bob", client.ConversationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sent, err := acv.Send(ctx, sealed[99]); err != nil || sent.Seq != 100 {
		t.Fatalf("retry of record 100 after the restart: %+v, %v", sent, err)
	}
	if _, sent, err := acv.SendText(ctx, "m101"); err != nil || sent.Seq != 101 {
		t.Fatalf("send 101: %+v, %v", sent, err)
	}
	for {
		select {
		case m, ok := <-cb.Messages():
			if !ok {
				t.Fatalf("bob's connection ended: %v", cb.Err())
			}
			if m.Type != protocol.MsgConvMsg {
				continue
			}
			r, err := bcv.Receive(ctx, m)
			if err != nil {
				t.Fatalf("bob: %v", err)
			}
			if r == nil || r.Seq != 101 || r.Text != "m101" {
				t.Fatalf("after the retry bob got %+v (seq %d), want m101 at seq 101", r, m.Seq)
			}
			return
		case <-ctx.Done():
			t.Fatal("bob: no live record")
		}
	}
}

// TestRunConversationSurvivesRestart: end-to-end records sent while bob
// was offline are his after a restart of the server, in order, once each.
func TestRunConversationSurvivesRestart(t *testing.T) {
	for name, db := range historyBackends(t) {
		t.Run(name, func(t *testing.T) {
			alice, bob := newIdentity(t, "alice"), newIdentity(t, "bob")
			env := historyEnv(t.TempDir(), db(t))
			first, stop := startStoppable(t, env)
			sealed := convOfflineSetup(t, first, alice, bob)
			stop()
			checkConvAfterRestart(t, start(t, env, "-addr", "127.0.0.1:0"), alice, bob, sealed)
		})
	}
}

// TestRunConversationSurvivesKill: as TestRunConversationSurvivesRestart,
// with the server process killed (SIGKILL) right after the last ack.
func TestRunConversationSurvivesKill(t *testing.T) {
	for name, db := range historyBackends(t) {
		t.Run(name, func(t *testing.T) {
			alice, bob := newIdentity(t, "alice"), newIdentity(t, "bob")
			dir, dbURL := t.TempDir(), db(t)
			n, _, kill := startChild(t, dir, dbURL)
			sealed := convOfflineSetup(t, n, alice, bob)
			kill()
			checkConvAfterRestart(t, start(t, historyEnv(dir, dbURL), "-addr", "127.0.0.1:0"), alice, bob, sealed)
		})
	}
}

func newIdentity(t *testing.T, user string) *client.Identity {
	t.Helper()
	id, err := client.NewIdentity(user, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// startStoppable runs the server with env until stop, which waits for it
// to end and fails the test if run returned an error.
func startStoppable(t *testing.T, env map[string]string) (n *node, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, func(k string) string { return env[k] }, out, &syncbuf.Buffer{})
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(time.Minute)
	for !fpRE.MatchString(out.String()) || !listenRE.MatchString(out.String()) {
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("server exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	fp, err := protocol.ParseFingerprint(fpRE.FindStringSubmatch(out.String())[1])
	if err != nil {
		t.Fatal(err)
	}
	return &node{addr: listenRE.FindStringSubmatch(out.String())[1], fp: fp}, stop
}
