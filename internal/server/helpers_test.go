package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/broker"
	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/internal/password"
	"github.com/secure-messenger/messenger/internal/redistest"
	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/internal/syncbuf"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

var (
	keyOnce     sync.Once
	testKey     *rsa.PrivateKey
	otherKey    *rsa.PrivateKey
	sessionKey2 *rsa.PrivateKey
)

// keys returns RSA keys made once per test binary: the server identity, a
// second identity (an impostor), and a client session key.
func keys(t testing.TB) (identity, impostor *rsa.PrivateKey) {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if testKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if otherKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return testKey, otherKey
}

// testServer is a server on a real httptest listener.
type testServer struct {
	*Server
	http *httptest.Server
	url  string
	logs *syncbuf.Buffer
}

type serverOption func(*Config, *Deps)

// off is an ephemeral.Rate that turns a rate limit off.
var off = ephemeral.Rate{Limit: -1}

// withoutRateLimits turns off the rate limits on requests and sends, for
// tests about routing that send faster than people do (the limits have
// tests of their own in limits_test.go).
func withoutRateLimits(c *Config, _ *Deps) {
	c.Limits.RequestRate, c.Limits.UserRequestRate = off, off
	c.Limits.SendRate, c.Limits.RoomSendRate = off, off
}

// startServer runs a server with in-memory state and a 2048-bit identity.
func startServer(t testing.TB, opts ...serverOption) *testServer {
	t.Helper()
	identity, _ := keys(t)
	logs := &syncbuf.Buffer{}
	sessionKey := make([]byte, 32)
	_, _ = rand.Read(sessionKey)
	ss := ephemeral.NewMemorySessionStore(ephemeral.MemoryConfig{})
	lim := ephemeral.NewMemoryLimiter(ephemeral.MemoryConfig{})
	t.Cleanup(func() { ss.Close(); lim.Close() })
	db, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "messenger.db"), store.WithKeyring(testKeyring(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := Config{PingInterval: 5 * time.Second, AllowAnonymous: true}
	deps := Deps{
		Log:        zerolog.New(logs).Level(zerolog.DebugLevel),
		Identity:   identity,
		SessionKey: sessionKey,
		Sessions:   ss,
		Limiter:    lim,
		Store:      db,
		// Small Argon2 parameters keep the race-enabled tests quick; the
		// production defaults are tested in internal/password.
		Hasher: password.NewHasher(password.Params{Memory: 1024, Time: 1}, 2),
	}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go s.Run(ctx)
	hs := httptest.NewServer(s.Routes(nil))
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := s.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
		cancel()
	})
	return &testServer{Server: s, http: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws", logs: logs}
}

// testKeyring returns a keyring with one random key, for stores whose
// history the tests use.
func testKeyring(t testing.TB) *store.StaticKeyring {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	kr, err := store.NewKeyring(map[uint32][]byte{1: key}, 1)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func (ts *testServer) clientConfig() client.Config {
	return client.Config{URL: ts.url, VerifyIdentity: client.Pin(ts.Fingerprint())}
}

// dial connects a pinned client and closes it at cleanup.
func (ts *testServer) dial(t testing.TB, mod ...func(*client.Config)) *client.Conn {
	t.Helper()
	cfg := ts.clientConfig()
	for _, m := range mod {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// next returns the next pushed message of type typ, skipping others.
func next(t testing.TB, c *client.Conn, typ string) *protocol.Message {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				t.Fatalf("connection ended waiting for %q: %v", typ, c.Err())
			}
			if m.Type == typ {
				return m
			}
		case <-timeout:
			t.Fatalf("no %q message", typ)
		}
	}
}

// waitEnd waits for c to end and returns why.
func waitEnd(t testing.TB, c *client.Conn) error {
	t.Helper()
	select {
	case <-c.Done():
		return c.Err()
	case <-time.After(10 * time.Second):
		t.Fatal("connection did not end")
		return nil
	}
}

// twoNodes starts two account servers that share one real Redis (sessions,
// login counters, rate limits, broker) and one database, as two nodes of a
// deployment behind a load balancer. It skips without Redis.
func twoNodes(t *testing.T) (nodeA, nodeB *testServer) {
	t.Helper()
	rc, prefix := redistest.Client(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = redistest.DeletePrefix(ctx, rc, "rate:"+prefix) // redis_rate's own prefix first
	})
	sessionKey, brokerKey := make([]byte, 32), make([]byte, 32)
	_, _ = rand.Read(sessionKey)
	_, _ = rand.Read(brokerKey)
	behindRedis := func(_ *Config, d *Deps) {
		rcfg := ephemeral.RedisConfig{Prefix: prefix}
		d.SessionKey = sessionKey
		d.Sessions = ephemeral.NewRedisSessionStore(rc, rcfg)
		d.Limiter = ephemeral.NewRedisLimiter(rc, rcfg)
		d.Rates = ephemeral.NewRedisRateLimiter(rc, rcfg)
		d.NewBroker = func(h broker.Handler) (broker.Broker, error) {
			return broker.NewRedisBroker(rc, broker.RedisConfig{Prefix: prefix, Key: brokerKey}, h)
		}
	}
	nodeA = authServer(t, behindRedis)
	nodeB = authServer(t, behindRedis, func(_ *Config, d *Deps) { d.Store = nodeA.store })
	return nodeA, nodeB
}
