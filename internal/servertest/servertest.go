// Package servertest starts a real messenger server in-process, over real
// WebSockets on an httptest listener, for the tests of packages outside
// internal/server (the bot, cmd/bot, the load tool): SQLite in a
// temporary directory, in-memory sessions and limiter, cheap Argon2id
// parameters.
package servertest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/internal/password"
	"github.com/secure-messenger/messenger/internal/server"
	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Server is a running test server; it stops when the test ends.
type Server struct {
	// URL is the WebSocket endpoint, ws://127.0.0.1:PORT/ws.
	URL string
	// Fingerprint is the server identity key's fingerprint, for client.Pin.
	Fingerprint protocol.Fingerprint
	// Dir holds the server's database file, messenger.db.
	Dir string
}

// Start runs a server with cfg, logging to log, until t ends.
func Start(t testing.TB, cfg server.Config, log zerolog.Logger) *Server {
	t.Helper()
	identity, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	kr, err := store.NewKeyring(map[uint32][]byte{1: key}, 1)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "messenger.db"), store.WithKeyring(kr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ss := ephemeral.NewMemorySessionStore(ephemeral.MemoryConfig{})
	lim := ephemeral.NewMemoryLimiter(ephemeral.MemoryConfig{})
	t.Cleanup(func() { ss.Close(); lim.Close() })
	sk := make([]byte, 32)
	_, _ = rand.Read(sk)
	s, err := server.New(cfg, server.Deps{
		Log: log, Identity: identity, SessionKey: sk, Sessions: ss, Limiter: lim, Store: db,
		Hasher: password.NewHasher(password.Params{Memory: 1024, Time: 1}, 2),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go s.Run(ctx)
	hs := httptest.NewServer(s.Routes(nil))
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = s.Shutdown(sctx)
		hs.Close()
		cancel()
	})
	return &Server{URL: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws", Fingerprint: s.Fingerprint(), Dir: dir}
}
