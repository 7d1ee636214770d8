package server

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// direction of a frame through the proxy.
type direction int

const (
	toServer direction = iota
	toClient
)

// mitm is a WebSocket man in the middle between a client and ts. For every
// frame, tamper decides what to forward instead (nil: drop it); it runs on
// one goroutine per direction.
func mitm(t *testing.T, ts *testServer, tamper func(dir direction, frame []byte) [][]byte) string {
	return mitmClose(t, ts, func(dir direction, frame []byte) ([][]byte, int) { return tamper(dir, frame), 0 })
}

// mitmClose is mitm whose tamper may also end the connection: a non-zero
// status closes both sides, sending the client a close frame with it.
func mitmClose(t *testing.T, ts *testServer, tamper func(dir direction, frame []byte) ([][]byte, int)) string {
	t.Helper()
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		down, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		upstream, _, err := websocket.DefaultDialer.Dial(ts.url, nil)
		if err != nil {
			down.Close()
			return
		}
		pipe := func(dir direction, from, to *websocket.Conn) {
			defer wg.Done()
			defer to.Close()
			defer from.Close()
			for {
				typ, data, err := from.ReadMessage()
				if err != nil {
					if ce, ok := err.(*websocket.CloseError); ok {
						_ = to.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(ce.Code, ce.Text), time.Now().Add(time.Second))
					}
					return
				}
				out := [][]byte{data}
				if typ == websocket.BinaryMessage {
					var status int
					out, status = tamper(dir, data)
					if status != 0 {
						_ = down.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(status, "forged"), time.Now().Add(time.Second))
						return
					}
				}
				for _, f := range out {
					if err := to.WriteMessage(typ, f); err != nil {
						return
					}
				}
			}
		}
		wg.Add(2)
		go pipe(toServer, down, upstream)
		go pipe(toClient, upstream, down)
	}))
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

// newFlipProxy flips one bit in the first server-to-client frame of type
// typ.
func newFlipProxy(t *testing.T, ts *testServer, typ byte) string {
	var once sync.Once
	return mitm(t, ts, func(dir direction, f []byte) [][]byte {
		if dir == toClient && len(f) > 1 && f[0] == typ {
			once.Do(func() {
				f = append([]byte(nil), f...)
				f[len(f)-1] ^= 1
			})
		}
		return [][]byte{f}
	})
}

// appendingProxy is a reverse proxy in front of ts that appends the address
// of its own peer to X-Forwarded-For, as nginx does with
// $proxy_add_x_forwarded_for and Caddy and httputil.ReverseProxy do by
// default. It listens on [::1], so that its clients (the test, on ::1) have
// an address other than the proxy's own (127.0.0.1, the only one ts
// trusts). It returns the proxy's WebSocket URL.
func appendingProxy(t *testing.T, ts *testServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	target, err := url.Parse(ts.http.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	// Dial the server from 127.0.0.1 whatever the system prefers.
	rp.Transport = &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}).DialContext}
	srv := httptest.NewUnstartedServer(rp)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return "ws://" + ln.Addr().String() + "/ws"
}

// TestForgedForwardedForBehindAppendingProxy: behind a trusted proxy that
// appends its peer's address, an X-Forwarded-For the client sent itself
// neither spreads its failures over made-up addresses nor puts them on
// someone else's: the server takes the nearest hop that is not a trusted
// proxy, which is the one the proxy appended.
func TestForgedForwardedForBehindAppendingProxy(t *testing.T) {
	ts := authServer(t, func(c *Config, _ *Deps) {
		c.LoginFailuresPerAddr = 3
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	alice, mallory := identity(t, "alice", 0), identity(t, "alice", 1)
	if _, err := ts.dial(t).Register(ctxT(t), alice, "alice password"); err != nil {
		t.Fatal(err)
	}
	proxy := appendingProxy(t, ts)
	const victim = "198.51.100.5"
	through := func(xff string) *client.Conn {
		return ts.dial(t, func(cfg *client.Config) {
			cfg.URL = proxy
			cfg.Header = http.Header{"X-Forwarded-For": {xff}}
		})
	}
	// Rotating forged addresses, the victim's among them: all count
	// against the attacker's real address (::1, the proxy's peer).
	for _, forged := range []string{"203.0.113.1", victim, "203.0.113.3, 127.0.0.1"} {
		_, err := through(forged).Auth(ctxT(t), mallory)
		wantCode(t, err, protocol.CodeAuthFailed)
	}
	_, err := through("203.0.113.4").Auth(ctxT(t), alice)
	wantCode(t, err, protocol.CodeRateLimited)
	// The victim, arriving through the trusted proxy (which names it), is
	// not locked out.
	c := ts.dial(t, func(cfg *client.Config) { cfg.Header = http.Header{"X-Forwarded-For": {victim}} })
	if _, err := c.Auth(ctxT(t), alice); err != nil {
		t.Fatalf("the victim after failures forged in its name: %v", err)
	}
	if !strings.Contains(ts.logs.String(), `"client":"::1"`) {
		t.Fatalf("the server did not see the proxy's client as ::1:\n%s", ts.logs.String())
	}
}
