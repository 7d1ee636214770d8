package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/internal/password"
	"github.com/secure-messenger/messenger/internal/server"
	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/internal/syncbuf"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// waitTimeout bounds every wait for a condition. It is generous because
// each connection generates a 2048-bit RSA session key, which is slow
// under -race.
const waitTimeout = 60 * time.Second

var (
	keyOnce sync.Once
	keyA    *rsa.PrivateKey
	keyB    *rsa.PrivateKey
)

// identityKeys returns two server identity keys made once per test binary.
func identityKeys(t testing.TB) (a, b *rsa.PrivateKey) {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if keyA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keyB, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return keyA, keyB
}

// testServer is a real server on an httptest listener, with in-memory
// sessions.
type testServer struct {
	url  string
	host string
	fp   protocol.Fingerprint
	logs *syncbuf.Buffer
	db   store.Store // accounts, keys and rooms
	stop func()      // shuts the server down (closing clients with going_away); idempotent
}

// startServer starts a server with identity key that allows anonymous
// sessions; configure may change its Config.
func startServer(t *testing.T, identity *rsa.PrivateKey, configure ...func(*server.Config)) *testServer {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	kr, err := store.NewKeyring(map[uint32][]byte{1: key}, 1)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "messenger.db"), store.WithKeyring(kr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return startServerOn(t, identity, db, configure...)
}

// accountServer starts a server that requires an account, as servers do
// by default.
func accountServer(t *testing.T, identity *rsa.PrivateKey) *testServer {
	t.Helper()
	return startServer(t, identity, func(c *server.Config) { c.AllowAnonymous = false })
}

// startServerOn starts a server on the store db, which it leaves open.
func startServerOn(t *testing.T, identity *rsa.PrivateKey, db store.Store, configure ...func(*server.Config)) *testServer {
	t.Helper()
	logs := &syncbuf.Buffer{}
	sessionKey := make([]byte, 32)
	_, _ = rand.Read(sessionKey)
	ss := ephemeral.NewMemorySessionStore(ephemeral.MemoryConfig{})
	lim := ephemeral.NewMemoryLimiter(ephemeral.MemoryConfig{})
	t.Cleanup(func() { ss.Close(); lim.Close() })
	// Most tests join rooms anonymously; accountServer turns it off.
	cfg := server.Config{PingInterval: 5 * time.Second, AllowAnonymous: true}
	for _, f := range configure {
		f(&cfg)
	}
	s, err := server.New(cfg, server.Deps{
		Log:        zerolog.New(logs).Level(zerolog.DebugLevel),
		Identity:   identity,
		SessionKey: sessionKey,
		Sessions:   ss,
		Limiter:    lim,
		Store:      db,
		// Small parameters: the tests' passwords need no protection.
		Hasher: password.NewHasher(password.Params{Memory: 1024, Time: 1}, 2),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go s.Run(ctx)
	hs := httptest.NewServer(s.Routes(nil))
	stop := sync.OnceFunc(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := s.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
		cancel()
	})
	t.Cleanup(stop)
	return &testServer{
		url:  "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws",
		host: strings.TrimPrefix(hs.URL, "http://"),
		fp:   s.Fingerprint(),
		logs: logs,
		db:   db,
		stop: stop,
	}
}

// env returns an environment for chat against ts with a fresh home.
func (ts *testServer) env(t *testing.T) map[string]string {
	return map[string]string{"MESSENGER_SERVER": ts.url, "MESSENGER_CHAT_HOME": t.TempDir()}
}

// instance is one chat run in a goroutine, fed through a pipe.
type instance struct {
	t      *testing.T
	stdin  *io.PipeWriter
	stdout *syncbuf.Buffer
	stderr *syncbuf.Buffer
	done   chan struct{}
	err    error // set before done closes
}

// start runs chat with args and env until its input is closed (or the
// test ends).
func start(t *testing.T, env map[string]string, args ...string) *instance {
	t.Helper()
	pr, pw := io.Pipe()
	in := &instance{t: t, stdin: pw, stdout: &syncbuf.Buffer{}, stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(in.done)
		in.err = run(ctx, args, func(k string) string { return env[k] }, pr, in.stdout, in.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		pw.Close()
		select {
		case <-in.done:
		case <-time.After(waitTimeout):
			t.Errorf("chat %q did not stop; stderr:\n%s", args, in.stderr)
		}
	})
	return in
}

// runOnce runs chat to completion with empty input.
func runOnce(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runInput(t, env, "", args...)
}

// runInput runs chat to completion with input on its stdin.
func runInput(t *testing.T, env map[string]string, input string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut syncbuf.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	err = run(ctx, args, func(k string) string { return env[k] }, strings.NewReader(input), &out, &errOut)
	return out.String(), errOut.String(), err
}

// typeLine writes one line to the instance's input.
func (in *instance) typeLine(line string) {
	in.t.Helper()
	if _, err := io.WriteString(in.stdin, line+"\n"); err != nil {
		in.t.Fatalf("type %q: %v", line, err)
	}
}

// wait waits for the instance to stop and returns what run returned.
func (in *instance) wait() error {
	in.t.Helper()
	select {
	case <-in.done:
		return in.err
	case <-time.After(waitTimeout):
		in.t.Fatalf("chat did not stop; stderr:\n%s", in.stderr)
		return nil
	}
}

// waitFor polls buf until it contains want.
func waitFor(t *testing.T, what string, buf *syncbuf.Buffer, want string) {
	t.Helper()
	waitUntil(t, what, buf, func(s string) bool { return strings.Contains(s, want) }, "no "+want)
}

// waitForAfter polls buf until it contains want after the first after.
func waitForAfter(t *testing.T, what string, buf *syncbuf.Buffer, after, want string) {
	t.Helper()
	waitUntil(t, what, buf, func(s string) bool {
		_, rest, ok := strings.Cut(s, after)
		return ok && strings.Contains(rest, want)
	}, "no "+want+" after "+after)
}

// waitUntil polls buf until ok holds for its contents.
func waitUntil(t *testing.T, what string, buf *syncbuf.Buffer, ok func(string) bool, failure string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !ok(buf.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s; it has:\n%s", what, failure, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// jsonLines parses every line of s as a protocol.Message.
func jsonLines(t *testing.T, s string) []protocol.Message {
	t.Helper()
	var ms []protocol.Message
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var m protocol.Message
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("stdout line %q is not JSON: %v", line, err)
		}
		ms = append(ms, m)
	}
	return ms
}

// proxy relays WebSocket frames between chat and a test server. cut drops
// every relayed connection as a network failure would; corruptNext makes
// it flip a bit in the next record the server sends; retarget sends later
// connections to another server.
type proxy struct {
	url     string
	mu      sync.Mutex
	target  string // server URL
	conns   []*websocket.Conn
	corrupt atomic.Bool
	loseAck atomic.Int32 // 1: armed; 2: the client's record went up, its answer is awaited
}

func startProxy(t *testing.T, ts *testServer) *proxy {
	t.Helper()
	p := &proxy{target: ts.url}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	var wg sync.WaitGroup
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		down, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		upstream, _, err := websocket.DefaultDialer.Dial(target, nil)
		if err != nil {
			down.Close()
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, down, upstream)
		p.mu.Unlock()
		pipe := func(toClient bool, from, to *websocket.Conn) {
			defer wg.Done()
			defer to.Close()
			defer from.Close()
			for {
				typ, data, err := from.ReadMessage()
				if err != nil {
					if ce, ok := err.(*websocket.CloseError); ok {
						_ = to.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(ce.Code, ce.Text))
					}
					return
				}
				if !toClient && len(data) > 0 && data[0] == protocol.TypeRecord {
					p.loseAck.CompareAndSwap(1, 2)
				}
				if toClient && len(data) > 0 && data[0] == protocol.TypeRecord && p.loseAck.CompareAndSwap(2, 0) {
					go p.cut() // the answer is lost with the connection
					return
				}
				if toClient && len(data) > 0 && data[0] == protocol.TypeRecord && p.corrupt.CompareAndSwap(true, false) {
					data = append([]byte(nil), data...)
					data[len(data)-1] ^= 1
				}
				if err := to.WriteMessage(typ, data); err != nil {
					return
				}
			}
		}
		wg.Add(2)
		go pipe(false, down, upstream)
		go pipe(true, upstream, down)
	}))
	t.Cleanup(func() { hs.Close(); p.cut(); wg.Wait() })
	p.url = "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
	return p
}

// cut closes every relayed connection at the TCP level, without a close
// frame.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.NetConn().Close()
	}
	p.conns = nil
}

func (p *proxy) corruptNext() { p.corrupt.Store(true) }

// loseNextAnswer lets the client's next record through to the server,
// then drops the server's next record (its answer) and cuts the
// connections, as a node that dies between committing and answering.
func (p *proxy) loseNextAnswer() { p.loseAck.Store(1) }

func (p *proxy) retarget(ts *testServer) {
	p.mu.Lock()
	p.target = ts.url
	p.mu.Unlock()
}
