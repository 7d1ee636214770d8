package server

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// goroutinesIn counts this process's goroutines whose stack holds fn
// (a frame's text: "pkg.(*T).Method(" is a running frame, not the
// "created by" line).
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte(fn)) {
			count++
		}
	}
	return count
}

// TestIdleConnectionHasOneGoroutine: once its "ready" is out, an idle
// connection is served by its reader alone: no writer goroutine waits,
// and the HTTP handler that ran the handshake has returned.
func TestIdleConnectionHasOneGoroutine(t *testing.T) {
	ts := startServer(t)
	const conns = 5
	for range conns {
		c := ts.dial(t) // returns once "ready" is read
		if _, err := c.Join(ctxT(t), "idle", ""); err != nil {
			t.Fatal(err) // a join: answers and presence to the others
		}
	}
	waitFor(t, "the writers to stop", func() bool { return goroutinesIn("server.(*peer).writeLoop(") == 0 })
	if n := goroutinesIn("server.(*peer).readLoop("); n != conns {
		t.Fatalf("%d reader goroutines for %d connections", n, conns)
	}
	if n := goroutinesIn("net/http.(*conn).serve("); n != 0 {
		t.Fatalf("%d HTTP handlers still run for idle connections", n)
	}
}

// TestPingOnIdleConnection: an idle connection, whose writer is not
// running, is still pinged every PingInterval, and its pongs keep it open
// well past twice the interval (the reader's deadline).
func TestPingOnIdleConnection(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *Deps) { c.PingInterval = 50 * time.Millisecond })
	ws, _, err := websocket.DefaultDialer.Dial(ts.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, err := newBenchClient(t, &ts.hs.identity.PublicKey).handshake(
		func(f []byte) error { return ws.WriteMessage(websocket.BinaryMessage, f) },
		func() ([]byte, error) { _, f, err := ws.ReadMessage(); return f, err }); err != nil {
		t.Fatal(err)
	}
	pings := make(chan struct{}, 100)
	ws.SetPingHandler(func(data string) error {
		pings <- struct{}{}
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	ended := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil { // "ready", then nothing
				ended <- err
				return
			}
		}
	}()
	for i := range 6 { // 300 ms at least: three times the read deadline
		select {
		case <-pings:
		case err := <-ended:
			t.Fatalf("connection ended after %d pings: %v", i, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("ping %d did not come", i+1)
		}
		// Between pings the writer is not running.
		waitFor(t, "the writer to stop after a ping", func() bool { return goroutinesIn("server.(*peer).writeLoop(") == 0 })
	}
	if n := ts.Connections(); n != 1 {
		t.Fatalf("the server holds %d connections, want 1", n)
	}
}

// TestDeliveryAcrossWriterRestarts: messages to a connection whose writer
// has stopped, one at a time and in bursts, all arrive, in order.
func TestDeliveryAcrossWriterRestarts(t *testing.T) {
	ts := startServer(t, withoutRateLimits)
	a, b := ts.dial(t), ts.dial(t)
	ctx := ctxT(t)
	for _, c := range []interface {
		Join(ctx context.Context, room, name string) ([]string, error)
	}{a, b} {
		if _, err := c.Join(ctx, "order", ""); err != nil {
			t.Fatal(err)
		}
	}
	want := 0
	expect := func(n int) {
		t.Helper()
		for range n {
			m := next(t, b, protocol.MsgMessage)
			if m.Body != fmt.Sprint(want) {
				t.Fatalf("got %q, want %d", m.Body, want)
			}
			want++
		}
	}
	sent := 0
	send := func() {
		t.Helper()
		if _, err := a.Send(ctx, "order", fmt.Sprint(sent)); err != nil {
			t.Fatal(err)
		}
		sent++
	}
	for range 5 { // one at a time, each to a stopped writer
		waitFor(t, "the writers to stop", func() bool { return goroutinesIn("server.(*peer).writeLoop(") == 0 })
		send()
		expect(1)
	}
	for range 3 { // bursts
		waitFor(t, "the writers to stop", func() bool { return goroutinesIn("server.(*peer).writeLoop(") == 0 })
		for range 20 {
			send()
		}
		expect(20)
	}
}

// TestPipelinedRequestsReachIdleReader: an idle reader waits for the
// socket to become readable (waitReadable) only when its buffer is empty:
// three requests that arrive in one TCP segment, and so sit in the buffer
// together after the first read, are all answered. Between requests the
// reader waits in waitReadable.
func TestPipelinedRequestsReachIdleReader(t *testing.T) {
	ts := startServer(t, withoutRateLimits)
	var cork *corkConn
	dialer := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cork = &corkConn{Conn: nc}
		return cork, nil
	}}
	ws, _, err := dialer.Dial(ts.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	res, err := newBenchClient(t, &ts.hs.identity.PublicKey).handshake(
		func(f []byte) error { return ws.WriteMessage(websocket.BinaryMessage, f) },
		func() ([]byte, error) { _, f, err := ws.ReadMessage(); return f, err })
	if err != nil {
		t.Fatal(err)
	}
	readMsg := func() *protocol.Message {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, f, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		p, err := res.open.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := protocol.DecodeMessage(p)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := readMsg(); m.Type != protocol.MsgReady {
		t.Fatalf("first message %q, want ready", m.Type)
	}
	waitFor(t, "the reader to wait in waitReadable", func() bool { return goroutinesIn("(*corkConn).waitReadable(") == 1 })

	cork.cork(10 * time.Second) // the three frames leave in one write
	for i := range 3 {
		m := &protocol.Message{Type: protocol.MsgJoin, ID: uuid.NewString(), TS: time.Now().UnixMilli(), Room: fmt.Sprintf("pipe-%d", i)}
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		f, err := res.seal.Seal(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := ws.WriteMessage(websocket.BinaryMessage, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := cork.uncork(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; {
		m := readMsg()
		switch m.Type {
		case protocol.MsgJoined:
			if want := fmt.Sprintf("pipe-%d", i); m.Room != want {
				t.Fatalf("joined %q, want %q", m.Room, want)
			}
			i++
		case protocol.MsgError:
			t.Fatalf("error %s: %s", m.Code, m.Error)
		}
	}
	waitFor(t, "the reader to wait in waitReadable again", func() bool { return goroutinesIn("(*corkConn).waitReadable(") == 1 })
}
