package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
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
