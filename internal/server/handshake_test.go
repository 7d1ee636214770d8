package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

func TestHandshakeHappyPath(t *testing.T) {
	ts := startServer(t)
	for _, suite := range protocol.SupportedSuites {
		t.Run(suite.String(), func(t *testing.T) {
			c := ts.dial(t, func(cfg *client.Config) { cfg.Suites = []protocol.Suite{suite} })
			if c.Fingerprint() != ts.Fingerprint() {
				t.Fatalf("fingerprint %s, want %s", c.Fingerprint(), ts.Fingerprint())
			}
			info := c.Session()
			if info.Resumed || info.ID != c.SessionID() || info.TTL != 1800 || info.Window != 300 {
				t.Fatalf("ready = %+v, session %s", info, c.SessionID())
			}
			if _, err := c.Join(ctxT(t), "general", "alice"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Send(ctxT(t), "general", "hello"); err != nil {
				t.Fatal(err)
			}
			m := next(t, c, protocol.MsgMessage)
			if m.Body != "hello" || m.From != "alice" || m.Room != "general" || !m.Anon {
				t.Fatalf("echo = %+v", m)
			}
		})
	}
}

// rawConn is a WebSocket without the client library, to send what a
// correct client never would.
func rawConn(t *testing.T, ts *testServer) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(ts.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	return ws
}

// expectAlert reads frames until an Alert and checks its code and the
// close status that follows.
func expectAlert(t *testing.T, ws *websocket.Conn, want protocol.Code) {
	t.Helper()
	for {
		_, frame, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("connection ended without an alert: %v", err)
		}
		if len(frame) > 0 && frame[0] == protocol.TypeAlert {
			a, err := protocol.UnmarshalAlert(frame)
			if err != nil {
				t.Fatal(err)
			}
			if a.Code != want {
				t.Fatalf("alert %s (%q), want %s", a.Code, a.Reason, want)
			}
			break
		}
	}
	_, _, err := ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != want.CloseCode() {
		t.Fatalf("after the alert: %v, want close status %d", err, want.CloseCode())
	}
}

func sessionKeyDER(t *testing.T, bits int) []byte {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestHandshakeFailures(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *Deps) { c.HandshakeTimeout = 500 * time.Millisecond })
	der := sessionKeyDER(t, 2048)
	hello := func(mod func(*protocol.ClientHello)) []byte {
		h := &protocol.ClientHello{Version: protocol.Version, Suites: protocol.SupportedSuites, SessionKey: der}
		_, _ = rand.Read(h.Random[:])
		if mod != nil {
			mod(h)
		}
		return h.Marshal()
	}
	cases := []struct {
		name   string
		frames [][]byte
		want   protocol.Code
	}{
		{"finished first", [][]byte{(&protocol.Finished{}).Marshal()}, protocol.CodeUnexpectedMessage},
		{"record first", [][]byte{{protocol.TypeRecord, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3}}, protocol.CodeUnexpectedMessage},
		{"empty frame", [][]byte{{}}, protocol.CodeMalformed},
		{"truncated hello", [][]byte{hello(nil)[:40]}, protocol.CodeMalformed},
		{"trailing bytes", [][]byte{append(hello(nil), 0)}, protocol.CodeMalformed},
		{"unknown version", [][]byte{hello(func(h *protocol.ClientHello) { h.Version = 99 })}, protocol.CodeUnsupportedVersion},
		{"no common suite", [][]byte{hello(func(h *protocol.ClientHello) { h.Suites = []protocol.Suite{0x7777} })}, protocol.CodeNoCommonSuite},
		{"session key not DER", [][]byte{hello(func(h *protocol.ClientHello) { h.SessionKey = []byte("not a key") })}, protocol.CodeBadKey},
		{"session key too short", [][]byte{hello(func(h *protocol.ClientHello) { h.SessionKey = sessionKeyDER(t, 1024) })}, protocol.CodeBadKey},
		{"unknown resume id, no key", [][]byte{hello(func(h *protocol.ClientHello) {
			h.SessionKey, h.ResumeID = nil, bytes.Repeat([]byte{7}, protocol.SessionIDSize)
		})}, protocol.CodeSessionUnknown},
		{"wrong finished", [][]byte{hello(nil), (&protocol.Finished{}).Marshal()}, protocol.CodeBadFinished},
		{"hello twice", [][]byte{hello(nil), hello(nil)}, protocol.CodeUnexpectedMessage},
		{"timeout", nil, protocol.CodeHandshakeTimeout},
		{"timeout after hello", [][]byte{hello(nil)}, protocol.CodeHandshakeTimeout},
		{"oversized frame", [][]byte{make([]byte, protocol.MaxFrameSize+1)}, protocol.CodeFrameTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws := rawConn(t, ts)
			for _, f := range tc.frames {
				if err := ws.WriteMessage(websocket.BinaryMessage, f); err != nil {
					t.Fatal(err)
				}
			}
			expectAlert(t, ws, tc.want)
		})
	}
	t.Run("text frame", func(t *testing.T) {
		ws := rawConn(t, ts)
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"hello":1}`))
		expectAlert(t, ws, protocol.CodeMalformed)
	})
	// The server is still serving after all of that.
	c := ts.dial(t)
	if _, err := c.Join(ctxT(t), "after", ""); err != nil {
		t.Fatal(err)
	}
}

func TestHandshakeClientRefusesWrongServer(t *testing.T) {
	_, impostor := keys(t)
	t.Run("pin mismatch", func(t *testing.T) {
		ts := startServer(t)
		cfg := ts.clientConfig()
		der, _ := x509.MarshalPKIXPublicKey(&impostor.PublicKey)
		cfg.VerifyIdentity = client.Pin(protocol.FingerprintOf(der))
		_, err := client.Dial(context.Background(), cfg)
		if !errors.Is(err, protocol.CodeBadSignature) || !errors.Is(err, client.ErrFingerprintMismatch) {
			t.Fatalf("err = %v, want bad signature / fingerprint mismatch", err)
		}
	})
	t.Run("signature by another key", func(t *testing.T) {
		// The server presents the pinned public key but signs with a
		// different private key: what a server that copied someone
		// else's public key would do.
		ts := startServer(t)
		ts.hs.identity = impostor
		_, err := client.Dial(context.Background(), ts.clientConfig())
		if !errors.Is(err, protocol.CodeBadSignature) {
			t.Fatalf("err = %v, want bad signature", err)
		}
		waitLog(t, ts, `"code":"bad_signature"`)
		// Trust on first use records nothing a server did not prove.
		kh := &client.KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
		cfg := ts.clientConfig()
		cfg.VerifyIdentity = kh.Verifier("h", nil)
		if _, err := client.Dial(context.Background(), cfg); !errors.Is(err, protocol.CodeBadSignature) {
			t.Fatalf("err = %v, want bad signature", err)
		}
		if _, known, _ := kh.Lookup("h"); known {
			t.Fatal("known_hosts recorded a key whose signature failed")
		}
	})
}

// waitLog waits until the server's log contains s.
func waitLog(t *testing.T, ts *testServer, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !bytes.Contains([]byte(ts.logs.String()), []byte(s)) {
		if time.Now().After(deadline) {
			t.Fatalf("server log lacks %s:\n%s", s, ts.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHandshakeClientSendsAlertOnBadFinished(t *testing.T) {
	// A server whose Finished is wrong: corrupt the session secret the
	// server uses for the key schedule by swapping the suite list so the
	// client checks a MAC computed by a different server? Simpler: a raw
	// fake server is out of reach here, so check the client-side rejection
	// through a man in the middle that flips one bit of the server's
	// Finished.
	ts := startServer(t)
	proxy := newFlipProxy(t, ts, protocol.TypeFinished)
	cfg := ts.clientConfig()
	cfg.URL = proxy
	_, err := client.Dial(context.Background(), cfg)
	if !errors.Is(err, protocol.CodeBadFinished) {
		t.Fatalf("err = %v, want bad finished", err)
	}
	waitLog(t, ts, `"code":"bad_finished"`)
}

// TestSlowKeyGenerationDoesNotTimeOut: the Go client makes its session key
// before it connects, so a key that takes longer to generate than the
// server allows for a handshake (a 4096-bit key, against 300 ms here) does
// not run into the server's handshake timeout.
func TestSlowKeyGenerationDoesNotTimeOut(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *Deps) { c.HandshakeTimeout = 300 * time.Millisecond })
	c := ts.dial(t, func(cfg *client.Config) { cfg.SessionKeyBits = 4096 })
	if _, err := c.Join(ctxT(t), "r", ""); err != nil {
		t.Fatal(err)
	}
}

// countingListener counts the writes made on every connection it accepts.
type countingListener struct {
	net.Listener
	writes *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int32
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// The server sends its flight (ServerHello, ServerVerify, ServerFinished;
// or ServerHello and ServerFinished when resuming) with one write on the
// connection: each frame is still its own
// WebSocket message, and the handshake completes.
func TestServerFlightIsOneWrite(t *testing.T) {
	ts := startServer(t)
	var writes atomic.Int32
	hs := httptest.NewUnstartedServer(ts.Routes(nil))
	hs.Listener = countingListener{hs.Listener, &writes}
	hs.Start()
	t.Cleanup(hs.Close)
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"

	identity, _ := keys(t)
	run := func(c *benchClient, flight int) *clientResult {
		t.Helper()
		ws, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		writes.Store(0) // the upgrade's response was read: nothing else written yet
		var frames int
		var afterFlight int32
		r, err := c.handshake(
			func(f []byte) error { return ws.WriteMessage(websocket.BinaryMessage, f) },
			func() ([]byte, error) {
				_, f, err := ws.ReadMessage()
				if frames++; frames == flight {
					afterFlight = writes.Load()
				}
				return f, err
			})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		if frames != flight {
			t.Fatalf("read %d handshake frames, want %d", frames, flight)
		}
		// Counted from after the upgrade's response.
		if afterFlight != 1 {
			t.Errorf("the server made %d writes for its %d-frame flight, want 1", afterFlight, flight)
		}
		if _, f, err := ws.ReadMessage(); err != nil {
			t.Fatal(err)
		} else if pt, err := r.open.Open(f); err != nil {
			t.Fatal(err)
		} else if m, err := protocol.DecodeMessage(pt); err != nil || m.Type != protocol.MsgReady {
			t.Fatalf("first record %s, %v; want ready", pt, err)
		}
		return r
	}
	full := run(newBenchClient(t, &identity.PublicKey), 3)
	run(&benchClient{suite: protocol.SuiteAES256GCM, identity: &identity.PublicKey, resumeID: full.sessionID[:], secret: full.secret}, 2)
}

// A client with a TLS configuration dials wss:// and completes the
// handshake; plain ws:// dials before and after are unaffected (they share
// one dialer, the TLS one is a copy).
func TestDialOverTLSAndPlain(t *testing.T) {
	ts := startServer(t, withoutHandshakeLimits)
	tlsSrv := httptest.NewTLSServer(ts.Routes(nil))
	t.Cleanup(tlsSrv.Close)
	tlsCfg := tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig.Clone() // trusts the test certificate
	plain := ts.dial(t)
	secure := ts.dial(t, func(c *client.Config) {
		c.URL = "wss" + strings.TrimPrefix(tlsSrv.URL, "https") + "/ws"
		c.TLS = tlsCfg
	})
	after := ts.dial(t)
	for _, c := range []*client.Conn{plain, secure, after} {
		if _, err := c.Join(ctxT(t), "tls", ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Dial(ctxT(t), client.Config{URL: "wss" + strings.TrimPrefix(tlsSrv.URL, "https") + "/ws", VerifyIdentity: client.Pin(ts.Fingerprint())}); err == nil {
		t.Error("wss:// without the test certificate trusted: dialled")
	}
}
