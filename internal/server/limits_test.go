package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// stillOpen fails the test if c has ended.
func stillOpen(t *testing.T, c *client.Conn, who string) {
	t.Helper()
	select {
	case <-c.Done():
		t.Fatalf("%s's connection ended: %v", who, c.Err())
	default:
	}
}

// dialErr dials ts and returns the error (closing a connection that
// succeeded at cleanup).
func dialErr(t *testing.T, ts *testServer) error {
	t.Helper()
	c, err := client.Dial(ctxT(t), ts.clientConfig())
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return err
}

// TestEscapedBodyReachesEveryone: a body of '<' (which JSON used to escape
// as six bytes, making the delivered message larger than a record) is
// delivered as it is, and nobody is disconnected.
func TestEscapedBodyReachesEveryone(t *testing.T) {
	ts := startServer(t)
	a, b := ts.dial(t), ts.dial(t)
	for _, c := range []*client.Conn{a, b} {
		if _, err := c.Join(ctxT(t), "r", ""); err != nil {
			t.Fatal(err)
		}
	}
	body := strings.Repeat("<", protocol.MaxBody)
	if _, err := a.Send(ctxT(t), "r", body); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Conn{a, b} {
		if m := next(t, c, protocol.MsgMessage); m.Body != body {
			t.Fatalf("got a body of %d bytes, want the %d sent", len(m.Body), len(body))
		}
		stillOpen(t, c, "a member")
	}
}

// TestBodyTooLargeOnceEncoded: a send whose request fits a record but
// whose delivered msg does not (the msg adds "from" and "anon" to a body
// of six-byte escapes) is answered too_large; nobody is disconnected and
// the room goes on.
func TestBodyTooLargeOnceEncoded(t *testing.T) {
	ts := startServer(t)
	a, b := ts.dial(t), ts.dial(t)
	for _, c := range []*client.Conn{a, b} {
		if _, err := c.Join(ctxT(t), "r", ""); err != nil {
			t.Fatal(err)
		}
	}
	// The longest body of control characters whose request still fits a
	// record: the delivered message adds "from" and "anon" and does not.
	req := &protocol.Message{Type: protocol.MsgSend, ID: uuid.NewString(), TS: time.Now().UnixMilli(), Room: "r"}
	req.Body = "x"
	one, err := req.Encode()
	if err != nil {
		t.Fatal(err)
	}
	req.Body = strings.Repeat("\x01", (protocol.MaxPlaintext-len(one)+1)/6) // \u0001 each
	if b, err := req.Encode(); err != nil || len(b) <= protocol.MaxPlaintext-6 || len(req.Body) > protocol.MaxBody {
		t.Fatalf("request of %d bytes (%v), body %d: not the case under test", len(b), err, len(req.Body))
	}
	_, err = a.Request(ctxT(t), req)
	wantCode(t, err, protocol.CodeTooLarge)
	if _, err := a.Send(ctxT(t), "r", "after"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, b, protocol.MsgMessage); m.Body != "after" {
		t.Fatalf("b got %q first, want the message after the refused one", m.Body)
	}
	stillOpen(t, a, "the sender")
	stillOpen(t, b, "the other member")
}

// TestUnsealableMessageIsDropped: a message that reaches a member's writer
// and cannot be sealed (here: published straight to the hub, larger than a
// record) is dropped and logged at error level; the connection goes on.
func TestUnsealableMessageIsDropped(t *testing.T) {
	ts := startServer(t)
	c := ts.dial(t)
	if _, err := c.Join(ctxT(t), "r", ""); err != nil {
		t.Fatal(err)
	}
	huge := []byte(`{"t":"msg","room":"r","body":"` + strings.Repeat("x", protocol.MaxPlaintext) + `"}`)
	if err := ts.hub.Publish(ctxT(t), "r", 0, huge); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctxT(t), "r", "still here"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, c, protocol.MsgMessage); m.Body != "still here" {
		t.Fatalf("got %q", m.Body)
	}
	stillOpen(t, c, "the member")
	if !strings.Contains(ts.logs.String(), `"level":"error"`) || !strings.Contains(ts.logs.String(), "cannot be sealed") {
		t.Fatal("the dropped message was not logged at error level")
	}
}

func TestConnectionLimits(t *testing.T) {
	t.Run("PerAddress", func(t *testing.T) {
		ts := startServer(t, func(c *Config, _ *Deps) { c.Limits.MaxConnectionsPerAddr = 2 })
		first := ts.dial(t)
		ts.dial(t)
		wantCode(t, dialErr(t, ts), protocol.CodeLimitReached)
		first.Close()
		waitFor(t, "a slot freed by a closed connection", func() bool { return dialErr(t, ts) == nil })
	})
	t.Run("Total", func(t *testing.T) {
		ts := startServer(t, func(c *Config, _ *Deps) { c.Limits.MaxConnections = 1 })
		ts.dial(t)
		wantCode(t, dialErr(t, ts), protocol.CodeLimitReached)
	})
}

// waitFor polls cond for up to ten seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHandshakeLimits: handshakes that never finish hold only their
// address's few slots, and an address that starts handshakes too fast is
// refused with rate_limited.
func TestHandshakeLimits(t *testing.T) {
	t.Run("InFlightPerAddress", func(t *testing.T) {
		ts := startServer(t, func(c *Config, _ *Deps) { c.Limits.MaxHandshakesPerAddr = 2 })
		var stalled []*websocket.Conn
		for range 2 { // upgraded, then silent: handshakes in progress
			ws, _, err := websocket.DefaultDialer.Dial(ts.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			stalled = append(stalled, ws)
		}
		waitFor(t, "both stalled handshakes admitted", func() bool {
			ts.handshakes.mu.Lock()
			defer ts.handshakes.mu.Unlock()
			return ts.handshakes.total == 2
		})
		wantCode(t, dialErr(t, ts), protocol.CodeLimitReached)
		for _, ws := range stalled {
			ws.Close()
		}
		waitFor(t, "slots freed by abandoned handshakes", func() bool { return dialErr(t, ts) == nil })
	})
	t.Run("RatePerAddress", func(t *testing.T) {
		ts := startServer(t, func(c *Config, _ *Deps) {
			c.Limits.HandshakeRate = ephemeral.Rate{Limit: 1, Per: time.Hour, Burst: 3}
		})
		for range 3 {
			ts.dial(t)
		}
		wantCode(t, dialErr(t, ts), protocol.CodeRateLimited)
	})
}

func TestRequestRates(t *testing.T) {
	slow := ephemeral.Rate{Limit: 1, Per: time.Hour, Burst: 3}
	t.Run("PerConnection", func(t *testing.T) {
		ts := startServer(t, func(c *Config, _ *Deps) { c.Limits.RequestRate = slow })
		c, other := ts.dial(t), ts.dial(t)
		for i := range 3 {
			if _, err := c.Join(ctxT(t), fmt.Sprint("r", i), ""); err != nil {
				t.Fatal(err)
			}
		}
		_, err := c.Join(ctxT(t), "r3", "")
		wantCode(t, err, protocol.CodeRateLimited)
		stillOpen(t, c, "the limited connection") // not fatal
		if _, err := other.Join(ctxT(t), "r3", ""); err != nil {
			t.Fatalf("another connection: %v", err)
		}
	})
	t.Run("PerUser", func(t *testing.T) {
		ts := startServer(t, func(c *Config, _ *Deps) {
			c.Limits.UserRequestRate = ephemeral.Rate{Limit: 1, Per: time.Hour, Burst: 4}
		})
		alice := identity(t, "alice", 0)
		one, two := ts.dial(t), ts.dial(t)
		if _, err := one.Register(ctxT(t), alice, "correct horse battery"); err != nil {
			t.Fatal(err)
		}
		if _, err := two.Auth(ctxT(t), alice); err != nil {
			t.Fatal(err)
		}
		// Four requests over both connections, then the fifth is refused
		// on either.
		for i, c := range []*client.Conn{one, two, one, two} {
			if _, err := c.Join(ctxT(t), fmt.Sprint("r", i), ""); err != nil {
				t.Fatalf("request %d: %v", i+1, err)
			}
		}
		_, err := one.Join(ctxT(t), "r9", "")
		wantCode(t, err, protocol.CodeRateLimited)
	})
}

func TestSendRates(t *testing.T) {
	slow := ephemeral.Rate{Limit: 1, Per: time.Hour, Burst: 3}
	t.Run("PerUser", func(t *testing.T) {
		ts := startServer(t, func(c *Config, _ *Deps) { c.Limits.SendRate = slow })
		alice, bob := identity(t, "alice", 0), identity(t, "bob", 1)
		a, b := ts.dial(t), ts.dial(t)
		if _, err := a.Register(ctxT(t), alice, "correct horse battery"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Register(ctxT(t), bob, "correct horse battery"); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*client.Conn{a, b} {
			if _, err := c.Join(ctxT(t), "r", ""); err != nil {
				t.Fatal(err)
			}
		}
		for range 3 {
			if _, err := a.Send(ctxT(t), "r", "hi"); err != nil {
				t.Fatal(err)
			}
		}
		_, err := a.Send(ctxT(t), "r", "one too many")
		wantCode(t, err, protocol.CodeRateLimited)
		if _, err := b.Send(ctxT(t), "r", "bob's turn"); err != nil {
			t.Fatalf("another user in the room: %v", err)
		}
	})
	t.Run("PerRoom", func(t *testing.T) {
		ts := startServer(t, func(c *Config, _ *Deps) { c.Limits.RoomSendRate = slow; c.Limits.SendRate = off })
		a, b := ts.dial(t), ts.dial(t)
		for _, c := range []*client.Conn{a, b} {
			for _, room := range []string{"busy", "quiet"} {
				if _, err := c.Join(ctxT(t), room, ""); err != nil {
					t.Fatal(err)
				}
			}
		}
		for i, c := range []*client.Conn{a, b, a} {
			if _, err := c.Send(ctxT(t), "busy", "hi"); err != nil {
				t.Fatalf("send %d: %v", i+1, err)
			}
		}
		_, err := b.Send(ctxT(t), "busy", "one too many")
		wantCode(t, err, protocol.CodeRateLimited)
		if _, err := b.Send(ctxT(t), "quiet", "elsewhere"); err != nil {
			t.Fatalf("another room: %v", err)
		}
	})
}

func TestRoomLimits(t *testing.T) {
	t.Run("RoomsPerConnection", func(t *testing.T) {
		ts := startServer(t, func(c *Config, _ *Deps) { c.Limits.RoomsPerConnection = 2 })
		c := ts.dial(t)
		for _, r := range []string{"a", "b", "a"} { // joining a room again costs nothing
			if _, err := c.Join(ctxT(t), r, ""); err != nil {
				t.Fatal(err)
			}
		}
		_, err := c.Join(ctxT(t), "c", "")
		wantCode(t, err, protocol.CodeLimitReached)
		if err := c.Leave(ctxT(t), "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Join(ctxT(t), "c", ""); err != nil {
			t.Fatalf("after leaving one: %v", err)
		}
	})
	t.Run("MembersPerRoom", func(t *testing.T) {
		ts := startServer(t, func(c *Config, _ *Deps) { c.Limits.MembersPerRoom = 2 })
		a, b, c := ts.dial(t), ts.dial(t), ts.dial(t)
		for _, x := range []*client.Conn{a, b} {
			if _, err := x.Join(ctxT(t), "small", ""); err != nil {
				t.Fatal(err)
			}
		}
		_, err := c.Join(ctxT(t), "small", "")
		wantCode(t, err, protocol.CodeLimitReached)
		if _, err := a.Join(ctxT(t), "small", ""); err != nil {
			t.Fatalf("a member joining again: %v", err)
		}
		a.Close()
		waitFor(t, "a place freed", func() bool {
			_, err := c.Join(ctxT(t), "small", "")
			return err == nil
		})
	})
}

// TestHTTPTimeouts: an idle keep-alive connection and one that never
// finishes its headers are both closed by the server.
func TestHTTPTimeouts(t *testing.T) {
	s := startServer(t, func(c *Config, _ *Deps) {
		c.HTTPIdleTimeout = 200 * time.Millisecond
		c.HTTPReadTimeout = 300 * time.Millisecond
	})
	hs := s.HTTPServer(nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })

	closedByServer := func(t *testing.T, conn net.Conn, r *bufio.Reader) {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("read: %v, want EOF (the server closing)", err)
		}
	}
	t.Run("Idle", func(t *testing.T) {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		r := bufio.NewReader(conn)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		closedByServer(t, conn, r)
	})
	t.Run("SlowHeaders", func(t *testing.T) {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n") // never ends
		closedByServer(t, conn, bufio.NewReader(conn))
	})
}

// TestRecentIDsBounded: one connection remembers at most maxRecentIDs ids,
// forgetting the oldest first, and forgets an id after its time.
func TestRecentIDsBounded(t *testing.T) {
	var r recentIDs
	now := time.Now()
	for i := range maxRecentIDs {
		if !r.add(fmt.Sprint(i), now, time.Minute) {
			t.Fatalf("fresh id %d refused", i)
		}
	}
	if r.add("0", now, time.Minute) || r.add(fmt.Sprint(maxRecentIDs-1), now, time.Minute) {
		t.Fatal("a remembered id was accepted again")
	}
	if !r.add("new", now, time.Minute) {
		t.Fatal("a new id refused")
	}
	if len(r.seen) != maxRecentIDs {
		t.Fatalf("%d ids remembered, want the bound %d", len(r.seen), maxRecentIDs)
	}
	if !r.add("0", now, time.Minute) {
		t.Fatal("the oldest id was not forgotten when the set was full")
	}
	if !r.add("new", now.Add(2*time.Minute), time.Minute) {
		t.Fatal("an id past its time was refused")
	}
}
