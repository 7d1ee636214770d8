package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/internal/pgtest"
	"github.com/secure-messenger/messenger/internal/redistest"
	"github.com/secure-messenger/messenger/internal/syncbuf"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/e2e"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

var (
	listenRE  = regexp.MustCompile(`listening on (\S+)`)
	fpRE      = regexp.MustCompile(`identity fingerprint ([0-9a-f]{64})`)
	metricsRE = regexp.MustCompile(`metrics on (\S+)`)
)

type node struct {
	addr string
	fp   protocol.Fingerprint
	logs *syncbuf.Buffer
	out  *syncbuf.Buffer // what run printed (start only)
	done chan error
}

// start runs the server as main would, with env as its environment, and
// waits until it prints its address and /healthz answers.
func start(t *testing.T, env map[string]string, args ...string) *node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, logs := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	n := &node{logs: logs, out: out, done: make(chan error, 1)}
	go func() { n.done <- run(ctx, args, func(k string) string { return env[k] }, out, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-n.done:
			if err != nil {
				t.Errorf("run returned %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("server did not stop")
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		// run prints the address and then the fingerprint: wait for both.
		text := out.String()
		if m, f := listenRE.FindStringSubmatch(text), fpRE.FindStringSubmatch(text); m != nil && f != nil {
			n.addr = m[1]
			fp, err := protocol.ParseFingerprint(f[1])
			if err != nil {
				t.Fatal(err)
			}
			n.fp = fp
			break
		}
		select {
		case err := <-n.done:
			t.Fatalf("server exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get("http://" + n.addr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	return n
}

func (n *node) dial(t *testing.T) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{URL: "ws://" + n.addr + "/ws", VerifyIdentity: client.Pin(n.fp)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRunEmbeddedDefaults(t *testing.T) {
	dir := t.TempDir()
	n := start(t, map[string]string{"MESSENGER_DATA": dir, "MESSENGER_LOG_FORMAT": "json", "MESSENGER_IDENTITY_BITS": "2048", "MESSENGER_ANONYMOUS": "true"}, "-addr", "127.0.0.1:0")
	for _, f := range []string{"identity.pem", "storage.key", "messenger.db"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	a, b := n.dial(t), n.dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []*client.Conn{a, b} {
		if _, err := c.Join(ctx, "general", ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Send(ctx, "general", "hi b"); err != nil {
		t.Fatal(err)
	}
	for m := range b.Messages() {
		if m.Type == protocol.MsgMessage {
			if m.Body != "hi b" {
				t.Fatalf("b got %q", m.Body)
			}
			break
		}
	}
}

func TestRunKeepsIdentityAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"MESSENGER_DATA": dir, "MESSENGER_IDENTITY_BITS": "2048"}
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, func(k string) string { return env[k] }, out, &syncbuf.Buffer{})
	}()
	for !fpRE.MatchString(out.String()) {
		time.Sleep(20 * time.Millisecond)
	}
	first := fpRE.FindStringSubmatch(out.String())[1]
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	n := start(t, env, "-addr", "127.0.0.1:0")
	if n.fp.String() != first {
		t.Fatalf("fingerprint changed across restart: %s then %s", first, n.fp)
	}
}

func TestRunBadConfiguration(t *testing.T) {
	cases := map[string]struct {
		args []string
		env  map[string]string
	}{
		"unknown flag":        {args: []string{"-nope"}},
		"bad duration env":    {env: map[string]string{"MESSENGER_SESSION_TTL": "soon"}},
		"weak identity":       {args: []string{"-identity-bits", "1024"}},
		"odd identity size":   {args: []string{"-identity-bits", "2560"}},
		"bad log level":       {args: []string{"-log-level", "loud"}},
		"unreachable redis":   {args: []string{"-redis", "redis://127.0.0.1:1/0"}},
		"malformed redis url": {args: []string{"-redis", "http://x"}},
		"unknown db scheme":   {args: []string{"-db", "postgress://x"}},
		"unreachable db":      {args: []string{"-db", "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=1"}},
		"weak argon2":         {args: []string{"-argon2-memory", "1024"}},
		"bad trusted proxy":   {args: []string{"-trusted-proxies", "10.0.0.0/99"}},
		"no registrations":    {args: []string{"-register-per-addr", "0"}},
		"bad register env":    {env: map[string]string{"MESSENGER_REGISTER_PER_ADDR": "many"}},
		"no logins":           {args: []string{"-login-failures-per-user", "0"}},
		"no login window":     {env: map[string]string{"MESSENGER_LOGIN_WINDOW": "0s"}},
		"bad rate":            {args: []string{"-send-rate", "fast"}},
		"bad rate unit":       {env: map[string]string{"MESSENGER_ROOM_SEND_RATE": "10/d"}},
		"zero count limit":    {args: []string{"-max-conns", "0"}},
		"no drain time":       {args: []string{"-drain-timeout", "0s"}},
		"bad drain env":       {env: map[string]string{"MESSENGER_DRAIN_TIMEOUT": "a while"}},
		"bad metrics address": {args: []string{"-metrics-addr", "127.0.0.1:99999"}},
		"no offline pause":    {args: []string{"-bot", "bot", "-bot-offline-delay", "0s"}},
		"bad offline pause":   {args: []string{"-bot", "bot"}, env: map[string]string{"MESSENGER_BOT_OFFLINE_DELAY": "slowly"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"-data", t.TempDir(), "-addr", "127.0.0.1:0", "-identity-bits", "2048"}, tc.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := run(ctx, args, func(k string) string { return tc.env[k] }, &syncbuf.Buffer{}, &syncbuf.Buffer{})
			if err == nil {
				t.Fatal("run accepted a bad configuration")
			}
		})
	}
}

// TestRunTwoNodesBehindOneRedis: two servers sharing one Redis (and the
// same data directory keys) route a room across nodes.
func TestRunTwoNodesBehindOneRedis(t *testing.T) {
	rc, prefix := redistest.Client(t) // skips when no Redis; cleans up its prefix
	dir := t.TempDir()
	env := map[string]string{"MESSENGER_DATA": dir, "MESSENGER_REDIS": "redis://" + redistest.Addr() + "/0", "MESSENGER_REDIS_PREFIX": prefix, "MESSENGER_IDENTITY_BITS": "2048", "MESSENGER_ANONYMOUS": "true"}
	n1 := start(t, env, "-addr", "127.0.0.1:0")
	n2 := start(t, env, "-addr", "127.0.0.1:0")
	b, r, ticket := acrossNodes(t, n1, n2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A record of node one's connection, replayed to node two, is refused:
	// records are sealed under per-connection keys with sequence numbers,
	// so a captured request cannot be carried out twice anywhere.
	req := &protocol.Message{Type: protocol.MsgSend, ID: uuid.NewString(), TS: time.Now().UnixMilli(), Room: "across", Body: "x"}
	plain, err := req.Encode()
	if err != nil {
		t.Fatal(err)
	}
	frame, err := b.SealRaw(plain)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WriteRaw(frame); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Done():
		if err := r.Err(); !errors.Is(err, protocol.CodeBadRecord) && !errors.Is(err, protocol.CodeBadSequence) {
			t.Fatalf("replayed record on node two: %v, want bad_sequence or bad_record", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node two kept a connection that sent another connection's record")
	}
	// Nothing readable in Redis: no session secret, no message text.
	keys, _ := rc.Keys(ctx, prefix+"*").Result()
	for _, k := range keys {
		v, _ := rc.Get(ctx, k).Bytes()
		if bytes.Contains(v, ticket.Secret) || strings.Contains(string(v), "from node one") {
			t.Fatalf("redis key %s holds a secret or plaintext", k)
		}
	}
}

// TestRunAccountsSurviveRestart: two users register against PostgreSQL
// (SQLite when none is reachable is covered by the store's own tests),
// see each other's fingerprints, and after a restart authenticate with
// their keys alone.
func TestRunAccountsSurviveRestart(t *testing.T) {
	dbURL := pgtest.URL(t)
	dir := t.TempDir()
	env := map[string]string{"MESSENGER_DATA": dir, "MESSENGER_DB": dbURL, "MESSENGER_IDENTITY_BITS": "2048"}
	alice, err := client.NewIdentity("alice", 2048)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := client.NewIdentity("bob", 2048)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	func() {
		srvCtx, stop := context.WithCancel(context.Background())
		out := &syncbuf.Buffer{}
		done := make(chan error, 1)
		go func() {
			done <- run(srvCtx, []string{"-addr", "127.0.0.1:0"}, func(k string) string { return env[k] }, out, &syncbuf.Buffer{})
		}()
		defer func() {
			stop()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}()
		for !fpRE.MatchString(out.String()) {
			time.Sleep(20 * time.Millisecond)
		}
		fp, _ := protocol.ParseFingerprint(fpRE.FindStringSubmatch(out.String())[1])
		n := &node{addr: listenRE.FindStringSubmatch(out.String())[1], fp: fp}
		ca, cb := n.dial(t), n.dial(t)
		if _, err := ca.Register(ctx, alice, "alice's password"); err != nil {
			t.Fatal(err)
		}
		if _, err := cb.Register(ctx, bob, "bob's password"); err != nil {
			t.Fatal(err)
		}
		got, err := ca.Lookup(ctx, "bob")
		if err != nil {
			t.Fatal(err)
		}
		if want := soleDeviceFingerprint(t, bob); got.Fingerprint != want {
			t.Fatalf("alice sees bob as %s, want %s", got.Fingerprint, want)
		}
		ca.Close()
		cb.Close()
	}()
	n := start(t, env, "-addr", "127.0.0.1:0")
	c := n.dial(t)
	if _, err := c.Join(ctx, "general", ""); !errors.Is(err, protocol.CodeUnauthenticated) {
		t.Fatalf("anonymous join: %v, want unauthenticated", err)
	}
	if _, err := c.Auth(ctx, alice); err != nil {
		t.Fatalf("auth after restart: %v", err)
	}
	got, err := c.Lookup(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if want := soleDeviceFingerprint(t, bob); got.Fingerprint != want {
		t.Fatalf("after restart alice sees bob as %s, want %s", got.Fingerprint, want)
	}
}

// TestRunTrustedProxies: behind a trusted proxy the client address comes
// from X-Forwarded-For; from anyone else the header is ignored.
func TestRunTrustedProxies(t *testing.T) {
	for _, tc := range []struct {
		trusted string
		want    bool
	}{{"127.0.0.1", true}, {"10.9.9.9/32", false}} {
		n := start(t, map[string]string{"MESSENGER_DATA": t.TempDir(), "MESSENGER_IDENTITY_BITS": "2048", "MESSENGER_LOG_FORMAT": "json"},
			"-addr", "127.0.0.1:0", "-trusted-proxies", tc.trusted)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := client.Dial(ctx, client.Config{URL: "ws://" + n.addr + "/ws", VerifyIdentity: client.Pin(n.fp),
			Header: http.Header{"X-Forwarded-For": {"198.51.100.7"}}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(n.logs.String(), "handshake complete") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := strings.Contains(n.logs.String(), `"client":"198.51.100.7"`); got != tc.want {
			t.Errorf("trusted %s: client from X-Forwarded-For = %v, want %v\n%s", tc.trusted, got, tc.want, n.logs.String())
		}
	}
}

// TestRunRegisterPerAddr: MESSENGER_REGISTER_PER_ADDR reaches the server:
// with 1, a second registration from the same address is refused.
func TestRunRegisterPerAddr(t *testing.T) {
	n := start(t, map[string]string{"MESSENGER_DATA": t.TempDir(), "MESSENGER_IDENTITY_BITS": "2048", "MESSENGER_REGISTER_PER_ADDR": "1"},
		"-addr", "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice, err := client.NewIdentity("alice", 2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.dial(t).Register(ctx, alice, "alice's password"); err != nil {
		t.Fatal(err)
	}
	bob := &client.Identity{User: "bob", Device: uuid.New(), Signing: alice.Signing, Encryption: alice.Encryption}
	if _, err := n.dial(t).Register(ctx, bob, "bob's password"); !errors.Is(err, protocol.CodeRateLimited) {
		t.Fatalf("second registration from one address: %v, want rate_limited", err)
	}
}

// TestRunLimitFlags: the limit flags and their environment twins reach the
// server.
func TestRunLimitFlags(t *testing.T) {
	n := start(t, map[string]string{"MESSENGER_DATA": t.TempDir(), "MESSENGER_IDENTITY_BITS": "2048",
		"MESSENGER_ROOMS_PER_CONN": "1", "MESSENGER_LOGIN_FAILURES_PER_USER": "1"},
		"-addr", "127.0.0.1:0", "-anonymous", "-send-rate", "1/h:1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := n.dial(t)
	if _, err := c.Join(ctx, "one", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, "two", ""); !errors.Is(err, protocol.CodeLimitReached) {
		t.Fatalf("second room with MESSENGER_ROOMS_PER_CONN=1: %v, want limit_reached", err)
	}
	if _, err := c.Send(ctx, "one", "first"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, "one", "second"); !errors.Is(err, protocol.CodeRateLimited) {
		t.Fatalf("second send with -send-rate 1/h:1: %v, want rate_limited", err)
	}
	alice, err := client.NewIdentity("alice", 2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.dial(t).Register(ctx, alice, "alice's password"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.dial(t).Login(ctx, alice, "wrong password", false); !errors.Is(err, protocol.CodeAuthFailed) {
		t.Fatalf("wrong password: %v, want auth_failed", err)
	}
	if _, err := n.dial(t).Login(ctx, alice, "alice's password", false); !errors.Is(err, protocol.CodeRateLimited) {
		t.Fatalf("login after one failure with MESSENGER_LOGIN_FAILURES_PER_USER=1: %v, want rate_limited", err)
	}
}

// soleDeviceFingerprint is the user fingerprint of a user whose only
// device is id (pkg/e2e's computation).
func soleDeviceFingerprint(t *testing.T, id *client.Identity) protocol.Fingerprint {
	t.Helper()
	d, err := id.Public()
	if err != nil {
		t.Fatal(err)
	}
	fp, err := e2e.UserFingerprint(id.User, []e2e.Device{d})
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// TestRunTwoNodesOnRedisCluster: with -redis-mode cluster, two servers on
// a 3-shard Redis Cluster started for the test route a room across nodes
// (over sharded Pub/Sub) and share sessions.
func TestRunTwoNodesOnRedisCluster(t *testing.T) {
	addrs := redistest.StartCluster(t, 3)
	_, prefix := redistest.ClusterClient(t, addrs) // cleans up the prefix
	url := "redis://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2]
	env := map[string]string{"MESSENGER_DATA": t.TempDir(), "MESSENGER_REDIS": url, "MESSENGER_REDIS_MODE": "cluster", "MESSENGER_REDIS_PREFIX": prefix, "MESSENGER_IDENTITY_BITS": "2048", "MESSENGER_ANONYMOUS": "true"}
	n1 := start(t, env, "-addr", "127.0.0.1:0")
	n2 := start(t, env, "-addr", "127.0.0.1:0")
	acrossNodes(t, n1, n2)
}

// acrossNodes checks that a room message sent on n1 reaches a member on
// n2, and that n1's session resumes on n2. It returns the member on n2,
// the resumed connection (both closed when the test ends) and the ticket
// that was resumed.
func acrossNodes(t *testing.T, n1, n2 *node) (member, resumed *client.Conn, ticket client.Ticket) {
	t.Helper()
	a, b := n1.dial(t), n2.dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, c := range []*client.Conn{a, b} {
		if _, err := c.Join(ctx, "across", ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Send(ctx, "across", "from node one"); err != nil {
		t.Fatal(err)
	}
	for m := range b.Messages() {
		if m.Type == protocol.MsgMessage {
			if m.Body != "from node one" {
				t.Fatalf("node two got %q", m.Body)
			}
			break
		}
	}
	// The session lives in Redis, so node two resumes a session of node one.
	ticket = a.Ticket()
	a.Close()
	r, err := client.Dial(ctx, client.Config{URL: "ws://" + n2.addr + "/ws", VerifyIdentity: client.Pin(n2.fp), Resume: &ticket, ResumeOnly: true})
	if err != nil {
		t.Fatalf("resume on the other node: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	if !r.Session().Resumed {
		t.Fatal("not resumed")
	}
	return b, r, ticket
}
