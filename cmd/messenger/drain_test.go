package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secure-messenger/messenger/internal/pgtest"
	"github.com/secure-messenger/messenger/internal/redistest"
	"github.com/secure-messenger/messenger/internal/syncbuf"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// buildServer builds this command into a temporary directory and returns
// the binary's path.
func buildServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "messenger")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	return bin
}

// startProcess runs the server binary with env and waits until it prints
// its address and fingerprint (and the metrics address, asked for with
// -metrics-addr). Its log goes to logs.
func startProcess(t *testing.T, bin string, env map[string]string, logs *syncbuf.Buffer) (*exec.Cmd, *node, string) {
	t.Helper()
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-metrics-addr", "127.0.0.1:0")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	n, metricsAddr := &node{}, ""
	lines := bufio.NewScanner(out)
	for n.addr == "" || n.fp == (protocol.Fingerprint{}) {
		if !lines.Scan() {
			t.Fatalf("server process ended: %v\n%s", lines.Err(), logs.String())
		}
		if m := listenRE.FindStringSubmatch(lines.Text()); m != nil {
			n.addr = m[1]
		}
		if m := metricsRE.FindStringSubmatch(lines.Text()); m != nil {
			metricsAddr = m[1]
		}
		if m := fpRE.FindStringSubmatch(lines.Text()); m != nil {
			if n.fp, err = protocol.ParseFingerprint(m[1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	go func() { // the pipe must not fill
		for lines.Scan() {
		}
	}()
	return cmd, n, metricsAddr
}

// sender sends messages m1, m2, … to a room as one user, and when its
// connection is lost for a retryable reason, resumes its session on the
// other node and sends the unacknowledged message again under the same
// mid, as client.Retryable documents.
type sender struct {
	id     *client.Identity
	nodes  []*node // it starts on nodes[0]; reconnects go to nodes[1]
	conn   *client.Conn
	acked  map[string]int64 // mid → seq
	mids   []string         // in the order sent
	moved  int              // reconnections
	causes []error

	trigger func() // called once, after the trigger-th message
}

func (s *sender) connect(ctx context.Context, t *testing.T, n *node, resume *client.Ticket) error {
	c, err := client.Dial(ctx, client.Config{URL: "ws://" + n.addr + "/ws", VerifyIdentity: client.Pin(n.fp), Resume: resume})
	if err != nil {
		return err
	}
	go func() { // the sender's own copies
		for range c.Messages() {
		}
	}()
	if !c.Session().Resumed {
		if _, err := c.Auth(ctx, s.id); err != nil {
			c.Close()
			return err
		}
	}
	if _, err := c.Join(ctx, "r", ""); err != nil {
		c.Close()
		return err
	}
	s.conn = c
	return nil
}

// send sends m1, m2, …: after the first trigger messages it calls
// onTrigger once (in its own goroutine), and it goes on until it has
// moved to the other node and sent after messages there.
func (s *sender) send(ctx context.Context, t *testing.T, trigger, after int) {
	movedAt := 0
	for i := 1; movedAt == 0 || i <= movedAt+after; i++ {
		if i > 100000 {
			t.Fatal("100000 messages sent and the connection never moved")
		}
		mid := client.NewMessageID()
		s.mids = append(s.mids, mid)
		for {
			sent, err := s.conn.SendMessage(ctx, "r", fmt.Sprintf("m%d", i), mid)
			if err == nil {
				s.acked[mid] = sent.Seq
				break
			}
			if !client.Retryable(err) {
				t.Fatalf("send m%d: %v (not retryable)", i, err)
			}
			s.causes = append(s.causes, err)
			ticket := s.conn.Ticket()
			s.conn.Close()
			if s.moved++; s.moved > 3 {
				t.Fatalf("send m%d: reconnected %d times: %v", i, s.moved, s.causes)
			}
			if err := s.connect(ctx, t, s.nodes[1], &ticket); err != nil {
				t.Fatalf("reconnect to the other node: %v", err)
			}
		}
		if i == trigger {
			go s.trigger()
		}
		if s.moved > 0 && movedAt == 0 {
			movedAt = i
		}
	}
}

// TestRunDrainOnSIGTERM: a server process gets SIGTERM while alice sends
// through it. It tells her connection to go (going_away), finishes within
// -drain-timeout and exits 0; alice resumes her session on the other node
// and sends what was not acknowledged again under the same mid. Bob, on
// the other node, receives every message exactly once, in order, and the
// room's history holds each once.
func TestRunDrainOnSIGTERM(t *testing.T) {
	_, prefix := redistest.Client(t) // skips without Redis
	dbURL := pgtest.URL(t)           // skips without PostgreSQL
	bin := buildServer(t)
	env := historyEnv(t.TempDir(), dbURL)
	env["MESSENGER_REDIS"] = "redis://" + redistest.Addr() + "/0"
	env["MESSENGER_REDIS_PREFIX"] = prefix
	env["MESSENGER_LOG_FORMAT"] = "json"
	env["MESSENGER_DRAIN_TIMEOUT"] = "20s"
	logsA, logsB := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	procA, nodeA, metricsA := startProcess(t, bin, env, logsA) // creates the shared keys
	_, nodeB, metricsB := startProcess(t, bin, env, logsB)
	if metricsA == "" {
		t.Fatal("no metrics address printed")
	}
	for path, want := range map[string]string{"/readyz": "ready\n", "/healthz": "ok\n"} {
		if got := httpBody(t, "http://"+metricsA+path); got != want {
			t.Fatalf("%s on the metrics listener: %q, want %q", path, got, want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, bob := newIdentity(t, "alice"), newIdentity(t, "bob")
	reg := func(n *node, id *client.Identity) {
		c := n.dial(t)
		if _, err := c.Register(ctx, id, id.User+"'s password"); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	reg(nodeA, alice)
	reg(nodeB, bob)

	cb := nodeB.dial(t)
	if _, err := cb.Auth(ctx, bob); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Join(ctx, "r", ""); err != nil {
		t.Fatal(err)
	}
	var bobGot []*protocol.Message
	var bobMu sync.Mutex
	bobDone := make(chan struct{})
	go func() {
		defer close(bobDone)
		for m := range cb.Messages() {
			if m.Type == protocol.MsgMessage {
				bobMu.Lock()
				bobGot = append(bobGot, m)
				bobMu.Unlock()
			}
		}
	}()

	s := &sender{id: alice, nodes: []*node{nodeA, nodeB}, acked: map[string]int64{}}
	if err := s.connect(ctx, t, nodeA, nil); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	s.trigger = func() {
		if err := procA.Process.Signal(syscall.SIGTERM); err != nil {
			exited <- err
			return
		}
		exited <- procA.Wait()
	}
	s.send(ctx, t, 20, 20)
	count := len(s.mids)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("node A after SIGTERM: %v (want exit status 0)\n%s", err, logsA.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("node A did not exit within -drain-timeout and a margin")
	}
	if s.moved != 1 {
		t.Errorf("alice reconnected %d times, want once (causes: %v)", s.moved, s.causes)
	}
	for _, err := range s.causes {
		if !errors.Is(err, protocol.CodeGoingAway) && !errors.Is(err, client.ErrClosed) {
			t.Errorf("alice's connection ended with %v, want going_away or closed", err)
		}
	}
	if m := httpBody(t, "http://"+metricsB+"/metrics"); !strings.Contains(m, `messenger_handshakes_total{result="resumed"} 1`) {
		t.Errorf("node B's metrics lack alice's resumed handshake:\n%s", m)
	}
	if !strings.Contains(logsA.String(), `"message":"drained"`) {
		t.Errorf("node A did not log that it drained:\n%s", logsA.String())
	}

	// Bob gets the last acknowledged message, and everything before it once.
	last := s.acked[s.mids[count-1]]
	deadline := time.Now().Add(30 * time.Second)
	for {
		bobMu.Lock()
		n := len(bobGot)
		done := n > 0 && bobGot[n-1].Seq >= last
		bobMu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob has %d messages, the last acknowledged is seq %d", n, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cb.Close()
	<-bobDone
	if len(bobGot) != count {
		t.Errorf("bob got %d messages, want %d", len(bobGot), count)
	}
	seen := map[string]bool{}
	for i, m := range bobGot {
		if seen[m.ID] {
			t.Errorf("bob got mid %s twice", m.ID)
		}
		seen[m.ID] = true
		if want := fmt.Sprintf("m%d", i+1); m.Body != want || m.Seq != int64(i+1) || m.ID != s.mids[i] {
			t.Errorf("bob's message %d: seq %d %q mid %s, want seq %d %q mid %s", i, m.Seq, m.Body, m.ID, i+1, want, s.mids[i])
		}
	}
	for i, mid := range s.mids {
		if s.acked[mid] != int64(i+1) {
			t.Errorf("m%d acknowledged with seq %d, want %d", i+1, s.acked[mid], i+1)
		}
	}
	// The history holds each once: its head is count.
	rooms, err := s.conn.Rooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rooms {
		if r.Room == "r" && r.Head != int64(count) {
			t.Errorf("room head %d, want %d", r.Head, count)
		}
	}
}

// httpBody returns the body of GET url, failing the test on an error.
func httpBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
