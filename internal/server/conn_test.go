package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/secure-messenger/messenger/internal/broker"
	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

func encode(t *testing.T, m *protocol.Message) []byte {
	t.Helper()
	if m.ID == "" {
		m.ID = uuid.NewString()
	}
	if m.TS == 0 {
		m.TS = time.Now().UnixMilli()
	}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRecordTampering: every record the server cannot accept as the next
// one ends the session with its code, and the server keeps serving others.
func TestRecordTampering(t *testing.T) {
	ts := startServer(t)
	join := func(t *testing.T) []byte { return encode(t, &protocol.Message{Type: protocol.MsgJoin, Room: "r"}) }
	cases := []struct {
		name string
		act  func(t *testing.T, c *client.Conn) error
		want protocol.Code
	}{
		{"replayed record", func(t *testing.T, c *client.Conn) error {
			f, err := c.SealRaw(join(t))
			if err != nil {
				return err
			}
			if err := c.WriteRaw(f); err != nil {
				return err
			}
			_ = c.WriteRaw(f) // the server may already have closed
			return nil
		}, protocol.CodeBadSequence},
		{"reordered records", func(t *testing.T, c *client.Conn) error {
			f0, _ := c.SealRaw(join(t))
			f1, _ := c.SealRaw(join(t))
			if err := c.WriteRaw(f1); err != nil {
				return err
			}
			_ = c.WriteRaw(f0) // the server may already have closed
			return nil
		}, protocol.CodeBadSequence},
		{"dropped record", func(t *testing.T, c *client.Conn) error {
			if _, err := c.SealRaw(join(t)); err != nil { // sealed, never sent
				return err
			}
			return c.WriteMessage(&protocol.Message{Type: protocol.MsgJoin, ID: uuid.NewString(), TS: time.Now().UnixMilli(), Room: "r"})
		}, protocol.CodeBadSequence},
		{"altered record", func(t *testing.T, c *client.Conn) error {
			f, _ := c.SealRaw(join(t))
			f[len(f)-3] ^= 0x40
			return c.WriteRaw(f)
		}, protocol.CodeBadRecord},
		{"altered sequence number", func(t *testing.T, c *client.Conn) error {
			f, _ := c.SealRaw(join(t))
			f[8] ^= 1
			return c.WriteRaw(f)
		}, protocol.CodeBadSequence},
		{"handshake frame after handshake", func(t *testing.T, c *client.Conn) error {
			return c.WriteRaw((&protocol.Finished{}).Marshal())
		}, protocol.CodeUnexpectedMessage},
		{"truncated record", func(t *testing.T, c *client.Conn) error {
			return c.WriteRaw([]byte{protocol.TypeRecord, 0, 0})
		}, protocol.CodeMalformed},
		{"oversized frame", func(t *testing.T, c *client.Conn) error {
			return c.WriteRaw(make([]byte, protocol.MaxFrameSize+100))
		}, protocol.CodeFrameTooLarge},
	}
	for _, suite := range protocol.SupportedSuites {
		for _, tc := range cases {
			t.Run(suite.String()+"/"+tc.name, func(t *testing.T) {
				c := ts.dial(t, func(cfg *client.Config) { cfg.Suites = []protocol.Suite{suite} })
				if err := tc.act(t, c); err != nil {
					t.Fatal(err)
				}
				err := waitEnd(t, c)
				var pe *protocol.PeerError
				if !errors.As(err, &pe) || pe.Code != tc.want {
					t.Fatalf("connection ended with %v, want peer error %s", err, tc.want)
				}
			})
		}
	}
	c := ts.dial(t)
	if _, err := c.Join(ctxT(t), "still-up", ""); err != nil {
		t.Fatal(err)
	}
}

// TestRequestErrors: bad application messages get an error answer naming
// the request, and the session goes on.
func TestRequestErrors(t *testing.T) {
	ts := startServer(t)
	c := ts.dial(t)
	ctx := ctxT(t)
	if _, err := c.Join(ctx, "general", "alice"); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	dup := uuid.NewString()
	if _, err := c.Request(ctx, &protocol.Message{Type: protocol.MsgSend, ID: dup, Room: "general", Body: "first"}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, c, protocol.MsgMessage); m.Body != "first" {
		t.Fatalf("first message routed = %q", m.Body)
	}
	cases := []struct {
		name string
		m    *protocol.Message
		want protocol.Code
	}{
		{"replayed id", &protocol.Message{Type: protocol.MsgSend, ID: dup, Room: "general", Body: "again"}, protocol.CodeReplayedID},
		{"timestamp too old", &protocol.Message{Type: protocol.MsgSend, TS: now - (6 * time.Minute).Milliseconds(), Room: "general", Body: "x"}, protocol.CodeStaleTimestamp},
		{"timestamp in the future", &protocol.Message{Type: protocol.MsgSend, TS: now + (6 * time.Minute).Milliseconds(), Room: "general", Body: "x"}, protocol.CodeStaleTimestamp},
		{"body too large", &protocol.Message{Type: protocol.MsgSend, Room: "general", Body: strings.Repeat("x", protocol.MaxBody+1)}, protocol.CodeTooLarge},
		{"empty body", &protocol.Message{Type: protocol.MsgSend, Room: "general"}, protocol.CodeBadRequest},
		{"not a member", &protocol.Message{Type: protocol.MsgSend, Room: "elsewhere", Body: "x"}, protocol.CodeBadRequest},
		{"bad room name", &protocol.Message{Type: protocol.MsgJoin, Room: "no spaces allowed"}, protocol.CodeBadRequest},
		{"leave a room not joined", &protocol.Message{Type: protocol.MsgLeave, Room: "elsewhere"}, protocol.CodeBadRequest},
		{"id not a uuid", &protocol.Message{Type: protocol.MsgSend, ID: "1", Room: "general", Body: "x"}, protocol.CodeBadRequest},
		{"unknown type", &protocol.Message{Type: "teleport"}, protocol.CodeBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := c.Request(ctx, tc.m)
			var pe *protocol.PeerError
			if !errors.As(err, &pe) || pe.Code != tc.want || r.Fatal || pe.Ref != tc.m.ID {
				t.Fatalf("err = %v (answer %+v), want non-fatal %s for %s", err, r, tc.want, tc.m.ID)
			}
		})
	}
	t.Run("not JSON", func(t *testing.T) {
		if err := c.WriteRaw(mustSeal(t, c, []byte("{not json"))); err != nil {
			t.Fatal(err)
		}
		m := next(t, c, protocol.MsgError)
		if m.Code != protocol.CodeBadRequest || m.Fatal {
			t.Fatalf("answer %+v, want non-fatal bad_request", m)
		}
	})
	// Nothing was lost: the session still works, and none of the rejected
	// messages was routed.
	if _, err := c.Send(ctx, "general", "still here"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, c, protocol.MsgMessage); m.Body != "still here" {
		t.Fatalf("second message routed = %q, want only accepted messages", m.Body)
	}
}

func mustSeal(t *testing.T, c *client.Conn, pt []byte) []byte {
	t.Helper()
	f, err := c.SealRaw(pt)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestReplayAcrossSessions: a message id is remembered by the server, not
// by the session, so replaying it on a new connection fails too.
// TestReplayedID: an id is carried out once per connection; the same id
// on another connection (which no one but its client can send records on)
// is a new request.
func TestReplayedID(t *testing.T) {
	ts := startServer(t)
	a, b := ts.dial(t), ts.dial(t)
	id := uuid.NewString()
	for _, c := range []*client.Conn{a, b} {
		if _, err := c.Join(ctxT(t), "r", ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Request(ctxT(t), &protocol.Message{Type: protocol.MsgSend, ID: id, Room: "r", Body: "once"}); err != nil {
		t.Fatal(err)
	}
	_, err := a.Request(ctxT(t), &protocol.Message{Type: protocol.MsgSend, ID: id, Room: "r", Body: "once"})
	if !errors.Is(err, protocol.CodeReplayedID) {
		t.Fatalf("same id again on one connection: %v, want replayed_id", err)
	}
	if _, err := b.Request(ctxT(t), &protocol.Message{Type: protocol.MsgSend, ID: id, Room: "r", Body: "once"}); err != nil {
		t.Fatalf("same id on another connection: %v, want it carried out", err)
	}
}

func TestResumeAndEnd(t *testing.T) {
	ts := startServer(t)
	first := ts.dial(t)
	ticket := first.Ticket()
	binding := first.ChannelBinding()
	first.Close()

	resumed := ts.dial(t, func(cfg *client.Config) { cfg.Resume = &ticket; cfg.ResumeOnly = true })
	if !resumed.Session().Resumed || resumed.SessionID() != first.SessionID() {
		t.Fatalf("resume: %+v, want session %s resumed", resumed.Session(), first.SessionID())
	}
	if string(resumed.ChannelBinding()) == string(binding) {
		t.Fatal("resumed connection reuses the first connection's keys")
	}
	if _, err := resumed.Join(ctxT(t), "r", ""); err != nil {
		t.Fatal(err)
	}

	t.Run("wrong secret", func(t *testing.T) {
		bad := ticket
		bad.Secret = make([]byte, protocol.SecretSize)
		cfg := ts.clientConfig()
		cfg.Resume, cfg.ResumeOnly = &bad, true
		_, err := client.Dial(ctxT(t), cfg)
		if !errors.Is(err, protocol.CodeBadFinished) {
			t.Fatalf("resume with a wrong secret: %v, want bad_finished", err)
		}
	})

	if err := resumed.End(ctxT(t)); err != nil {
		t.Fatalf("end: %v", err)
	}
	cfg := ts.clientConfig()
	cfg.Resume, cfg.ResumeOnly = &ticket, true
	_, err := client.Dial(ctxT(t), cfg)
	if !errors.Is(err, protocol.CodeSessionUnknown) {
		t.Fatalf("resume after end: %v, want session_unknown", err)
	}
	// Without ResumeOnly the client falls back to a new session.
	cfg.ResumeOnly = false
	fresh, err := client.Dial(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if fresh.Session().Resumed || fresh.SessionID() == first.SessionID() {
		t.Fatalf("fallback: %+v", fresh.Session())
	}
}

func TestSessionExpires(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *Deps) { c.SessionTTL = 300 * time.Millisecond })
	c := ts.dial(t)
	ticket := c.Ticket()
	c.Close()
	cfg := ts.clientConfig()
	cfg.Resume, cfg.ResumeOnly = &ticket, true
	// Each resume refreshes the TTL, so wait longer than the TTL between
	// tries: the session must be gone after one idle TTL.
	for wait := 400 * time.Millisecond; ; wait *= 2 {
		time.Sleep(wait)
		conn, err := client.Dial(ctxT(t), cfg)
		if errors.Is(err, protocol.CodeSessionUnknown) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if wait > 5*time.Second {
			t.Fatal("session never expired")
		}
	}
}

// TestDeadRedis: with the rate limiter's Redis gone, nothing it guards is
// let through unlimited: a handshake is refused with an unavailable Alert,
// and (with the handshake rate off) sends are refused with "unavailable"
// while the session stays.
func TestDeadRedis(t *testing.T) {
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })
	deadRates := func(_ *Config, d *Deps) {
		d.Rates = ephemeral.NewRedisRateLimiter(rc, ephemeral.RedisConfig{Prefix: "dead:"})
	}
	t.Run("Handshake", func(t *testing.T) {
		ts := startServer(t, deadRates)
		_, err := client.Dial(ctxT(t), ts.clientConfig())
		if !errors.Is(err, protocol.CodeUnavailable) {
			t.Fatalf("dial with dead redis: %v, want unavailable", err)
		}
	})
	t.Run("Send", func(t *testing.T) {
		ts := startServer(t, deadRates, func(c *Config, _ *Deps) { c.Limits.HandshakeRate = off })
		c := ts.dial(t)
		if _, err := c.Join(ctxT(t), "r", ""); err != nil {
			t.Fatal(err)
		}
		for try := range 2 {
			if _, err := c.Send(ctxT(t), "r", "hello"); !errors.Is(err, protocol.CodeUnavailable) {
				t.Fatalf("send %d with dead redis: %v, want unavailable (and the session kept)", try+1, err)
			}
		}
		if strings.Contains(ts.logs.String(), `"level":"panic"`) {
			t.Fatal("server panicked")
		}
	})
}

// TestOriginCheck: browsers are let in from the public and allowed origins
// only. A DNS-rebinding page (its Origin equals the Host it sends) is
// refused, and so is the server's own address when it is not the public
// origin.
func TestOriginCheck(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *Deps) {
		c.PublicOrigins = []string{"https://chat.example.org"}
		c.AllowedOrigins = []string{"https://embed.example"}
	})
	dial := func(origin, host string) int {
		h := map[string][]string{}
		if origin != "" {
			h["Origin"] = []string{origin}
		}
		if host != "" {
			h["Host"] = []string{host}
		}
		ws, resp, _ := websocket.DefaultDialer.Dial(ts.url, h)
		if ws != nil {
			ws.Close()
		}
		if resp == nil {
			return 0
		}
		return resp.StatusCode
	}
	self := strings.TrimPrefix(ts.http.URL, "http://")
	for _, c := range []struct {
		origin, host string
		want         int
	}{
		{"", "", 101},                                      // not a browser
		{"https://chat.example.org", "", 101},              // the public origin
		{"https://CHAT.example.org:443", "", 101},          // the same origin, spelled otherwise
		{"https://embed.example", "", 101},                 // an allowed origin
		{"http://chat.example.org", "", 403},               // another scheme
		{"https://chat.example.org:8443", "", 403},         // another port
		{"https://evil.example", "", 403},                  // another site
		{"http://rebound.example", "rebound.example", 403}, // DNS rebinding: Origin matches Host
		{"http://" + self, self, 403},                      // not the public origin
	} {
		if got := dial(c.origin, c.host); got != c.want {
			t.Errorf("origin %q host %q: status %d, want %d", c.origin, c.host, got, c.want)
		}
	}
}

// TestLogsCarryNoSecrets runs a session and checks the server log for the
// message body, the session secret and the session keys' binding value.
func TestLogsCarryNoSecrets(t *testing.T) {
	ts := startServer(t)
	c := ts.dial(t)
	body := "the-secret-plan-" + uuid.NewString()
	if _, err := c.Join(ctxT(t), "r", "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctxT(t), "r", body); err != nil {
		t.Fatal(err)
	}
	next(t, c, protocol.MsgMessage)
	ticket := c.Ticket()
	c.Close()
	waitLog(t, ts, "connection closed")
	logs := ts.logs.String()
	for name, s := range map[string]string{
		"body":            body,
		"secret (hex)":    hexs(ticket.Secret),
		"secret (raw)":    string(ticket.Secret),
		"binding (hex)":   hexs(c.ChannelBinding()),
		"full session id": c.SessionID(),
	} {
		if strings.Contains(logs, s) {
			t.Errorf("server log contains the %s", name)
		}
	}
	if !strings.Contains(logs, "handshake complete") {
		t.Fatal("expected handshake events in the log")
	}
}

func hexs(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, x := range b {
		out = append(out, digits[x>>4], digits[x&15])
	}
	return string(out)
}

func TestShutdownClosesWithGoingAway(t *testing.T) {
	ts := startServer(t)
	c := ts.dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := waitEnd(t, c); !errors.Is(err, protocol.CodeGoingAway) {
		t.Fatalf("on shutdown: %v, want going_away", err)
	}
}

// TestDeadRedisBroker: with the broker's Redis gone, a join fails with
// "unavailable" (the hub does not hang on it) and the session stays.
func TestDeadRedisBroker(t *testing.T) {
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })
	ts := startServer(t, func(_ *Config, d *Deps) {
		d.NewBroker = func(h broker.Handler) (broker.Broker, error) {
			return broker.NewRedisBroker(rc, broker.RedisConfig{Prefix: "dead:", Key: make([]byte, 32)}, h)
		}
	})
	c := ts.dial(t)
	for range 2 {
		_, err := c.Join(ctxT(t), "r", "")
		if !errors.Is(err, protocol.CodeUnavailable) {
			t.Fatalf("join with dead broker: %v, want unavailable", err)
		}
	}
	_, err := c.Send(ctxT(t), "r", "x")
	if !errors.Is(err, protocol.CodeBadRequest) {
		t.Fatalf("send after a failed join: %v, want bad_request (not a member)", err)
	}
}

// TestEndNeedsSealedConfirmation: a forged close frame saying the session
// ended does not convince the client that it did.
func TestEndNeedsSealedConfirmation(t *testing.T) {
	ts := startServer(t)
	var records int
	var mu sync.Mutex
	url := mitmClose(t, ts, func(dir direction, f []byte) ([][]byte, int) {
		if dir == toServer && len(f) > 0 && f[0] == protocol.TypeRecord {
			mu.Lock()
			defer mu.Unlock()
			records++
			if records == 2 { // the "end" request: swallow it, forge the answer
				return nil, protocol.CodeSessionEnded.CloseCode()
			}
		}
		return [][]byte{f}, 0
	})
	cfg := ts.clientConfig()
	cfg.URL = url
	c, err := client.Dial(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Join(ctxT(t), "r", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.End(ctxT(t)); err == nil {
		t.Fatal("End accepted a forged close frame as confirmation")
	}
	// The server never saw the end: the session still resumes.
	ticket := c.Ticket()
	r := ts.dial(t, func(cfg *client.Config) { cfg.Resume = &ticket; cfg.ResumeOnly = true })
	if !r.Session().Resumed {
		t.Fatal("session was not resumable")
	}
}

// TestFailedResumeDoesNotExtend: resume attempts by someone who saw the
// session id but lacks the secret do not keep the session alive.
func TestFailedResumeDoesNotExtend(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *Deps) { c.SessionTTL = time.Second })
	c := ts.dial(t)
	ticket := c.Ticket()
	c.Close()
	forged := client.Ticket{ID: ticket.ID, Secret: make([]byte, protocol.SecretSize)}
	start := time.Now()
	for time.Since(start) < 1500*time.Millisecond {
		cfg := ts.clientConfig()
		cfg.Resume, cfg.ResumeOnly = &forged, true
		if _, err := client.Dial(ctxT(t), cfg); !errors.Is(err, protocol.CodeBadFinished) && !errors.Is(err, protocol.CodeSessionUnknown) {
			t.Fatalf("forged resume: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cfg := ts.clientConfig()
	cfg.Resume, cfg.ResumeOnly = &ticket, true
	if _, err := client.Dial(ctxT(t), cfg); !errors.Is(err, protocol.CodeSessionUnknown) {
		t.Fatalf("real resume after one idle TTL of forged attempts: %v, want session_unknown", err)
	}
}

// TestDeadRedisSessionStore: with the session store's Redis gone, a
// handshake ends with an "unavailable" alert and no session is half made.
func TestDeadRedisSessionStore(t *testing.T) {
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })
	ts := startServer(t, func(_ *Config, d *Deps) {
		d.Sessions = ephemeral.NewRedisSessionStore(rc, ephemeral.RedisConfig{Prefix: "dead:"})
	})
	_, err := client.Dial(ctxT(t), ts.clientConfig())
	if !errors.Is(err, protocol.CodeUnavailable) {
		t.Fatalf("handshake with a dead session store: %v, want unavailable", err)
	}
	waitLog(t, ts, `"code":"unavailable"`)
}
