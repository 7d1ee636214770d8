package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/broker"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Benchmarks of the server's per-connection and per-message costs, quoted
// in docs/benchmarks.md. None asserts a timing.
//
// BenchmarkServerHandshake has three views of one full handshake:
//
//   - server-only: serverHandshake driven directly over pipeFrames, an
//     in-memory protocol.FrameIO. The client (benchClient, with a session key made
//     before the benchmark) runs on its own goroutine, and the server's
//     timer is stopped while it waits for the client, so ns/op is the
//     server's own work: ClientHello parsing, OAEP wrap, PSS signature, key
//     schedule, storing the session. This is the figure that bounds
//     handshakes per second.
//   - websocket: a real WebSocket to an httptest server with the same
//     pre-made client key: TCP connect, HTTP upgrade, both sides of the
//     handshake and the first record ("ready"), one connection at a time.
//   - client.Dial: the same through pkg/client, left to make a fresh RSA
//     session key per Dial (Config.SessionKey not set), so this is client
//     key generation plus everything above.

var (
	key3072Once sync.Once
	key3072     *rsa.PrivateKey
)

// identity3072 returns a 3072-bit identity key made once per test binary.
func identity3072(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	key3072Once.Do(func() {
		var err error
		if key3072, err = rsa.GenerateKey(rand.Reader, 3072); err != nil {
			panic(err)
		}
	})
	return key3072
}

// withIdentity swaps the server's identity key.
func withIdentity(k *rsa.PrivateKey) serverOption {
	return func(_ *Config, d *Deps) { d.Identity = k }
}

// withProductionLogs logs at info level to nowhere: what a deployment pays
// for logging, without the test buffer growing.
func withProductionLogs() serverOption {
	return func(_ *Config, d *Deps) { d.Log = zerolog.New(io.Discard).Level(zerolog.InfoLevel) }
}

// cpuMeter reports, as cpu-ns/op, the CPU time (user + system, every
// thread) the whole process used per iteration between its start and
// report: for the benchmarks that run client and server in this process,
// what one operation costs both, however busy the machine is (wall-clock
// ns/op also counts the time spent waiting for a core).
type cpuMeter struct{ start time.Duration }

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU(b *testing.B) cpuMeter { return cpuMeter{processCPU(b)} }

func (m cpuMeter) report(b *testing.B) {
	b.ReportMetric(float64(processCPU(b)-m.start)/float64(b.N), "cpu-ns/op")
}

// withoutHandshakeLimits turns off the per-address handshake rate and
// count limits, which a benchmark dialling from one address in a loop
// would otherwise run into (the limits have tests of their own).
func withoutHandshakeLimits(c *Config, _ *Deps) {
	c.Limits.HandshakeRate = off
	c.Limits.MaxHandshakesPerAddr, c.Limits.MaxConnectionsPerAddr = -1, -1
}

// benchIdentities are the identity sizes the handshake benchmarks cover.
func benchIdentities(b *testing.B) []struct {
	name string
	key  *rsa.PrivateKey
} {
	identity, _ := keys(b)
	return []struct {
		name string
		key  *rsa.PrivateKey
	}{{"identity=2048", identity}, {"identity=3072", identity3072(b)}}
}

// benchClient is a minimal client side of the handshake (the steps of
// pkg/client's clientHandshake) that takes a pre-made session key.
type benchClient struct {
	suite      protocol.Suite
	sessionKey *rsa.PrivateKey // nil: resume only
	sessionDER []byte
	identity   *rsa.PublicKey
	resumeID   []byte
	secret     []byte // the resumed session's secret
}

func newBenchClient(tb testing.TB, identity *rsa.PublicKey) *benchClient {
	tb.Helper()
	_, sessionKey := keys(tb) // any 2048-bit key serves as a session key
	der, err := x509.MarshalPKIXPublicKey(&sessionKey.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	return &benchClient{suite: protocol.SuiteAES256GCM, sessionKey: sessionKey, sessionDER: der, identity: identity}
}

// clientResult is what a client handshake yields.
type clientResult struct {
	seal, open *protocol.RecordLayer
	sessionID  [protocol.SessionIDSize]byte
	secret     []byte
}

// handshake runs the client side over send and recv.
func (c *benchClient) handshake(send func([]byte) error, recv func() ([]byte, error)) (*clientResult, error) {
	tr := protocol.NewTranscript()
	read := func(typ byte) ([]byte, error) {
		f, err := recv()
		if err != nil {
			return nil, err
		}
		if len(f) > 0 && f[0] == protocol.TypeAlert {
			a, err := protocol.UnmarshalAlert(f)
			if err != nil {
				return nil, err
			}
			return nil, &protocol.PeerError{Code: a.Code, Reason: a.Reason}
		}
		if len(f) == 0 || f[0] != typ {
			return nil, fmt.Errorf("bench client: frame %x, want type %#02x", f, typ)
		}
		tr.Add(f)
		return f, nil
	}
	write := func(f []byte) error {
		tr.Add(f)
		return send(f)
	}

	hello := &protocol.ClientHello{Version: protocol.Version, Suites: []protocol.Suite{c.suite}, ResumeID: c.resumeID}
	if c.sessionKey != nil {
		hello.SessionKey = c.sessionDER
	}
	_, _ = rand.Read(hello.Random[:])
	if err := write(hello.Marshal()); err != nil {
		return nil, err
	}
	f, err := read(protocol.TypeServerHello)
	if err != nil {
		return nil, err
	}
	sh, err := protocol.UnmarshalServerHello(f)
	if err != nil {
		return nil, err
	}
	res := &clientResult{sessionID: sh.SessionID}
	if sh.Resumed {
		res.secret = c.secret
	} else if res.secret, err = protocol.UnwrapSecret(c.sessionKey, sh.WrappedSecret); err != nil {
		return nil, err
	}
	keyTH := tr.Sum()
	ks, err := protocol.NewKeySchedule(res.secret)
	if err != nil {
		return nil, err
	}
	if !sh.Resumed {
		th := tr.Sum()
		f, err := read(protocol.TypeServerVerify)
		if err != nil {
			return nil, err
		}
		sv, err := protocol.UnmarshalServerVerify(f)
		if err != nil {
			return nil, err
		}
		if err := protocol.VerifyTranscript(c.identity, protocol.ContextServerSignature, th, sv.Signature); err != nil {
			return nil, err
		}
	}
	want := ks.FinishedMAC(protocol.LabelServerFinished, keyTH, tr.Sum())
	if f, err = read(protocol.TypeFinished); err != nil {
		return nil, err
	}
	fin, err := protocol.UnmarshalFinished(f)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(fin.VerifyData[:], want[:]) {
		return nil, protocol.CodeBadFinished
	}
	cf := &protocol.Finished{VerifyData: ks.FinishedMAC(protocol.LabelClientFinished, keyTH, tr.Sum())}
	if err := write(cf.Marshal()); err != nil {
		return nil, err
	}
	res.seal, res.open, err = ks.TrafficKeys(c.suite, keyTH, false)
	return res, err
}

// pipeFrames is the server's end of an in-memory frame pipe. Its writes are
// held until the server next reads; then they go to the client, and the
// benchmark timer is stopped until the client's answer arrives. So the
// client's work never overlaps the server's, and none of it is timed.
type pipeFrames struct {
	timer    benchTimer
	toPeer   chan<- []byte
	fromPeer <-chan []byte
	held     [][]byte
}

// benchTimer is the part of *testing.B the pipe uses; noTimer stands in
// for it in tests.
type benchTimer interface {
	StopTimer()
	StartTimer()
}

type noTimer struct{}

func (noTimer) StopTimer()  {}
func (noTimer) StartTimer() {}

func (p *pipeFrames) WriteFrame(f []byte) error {
	p.held = append(p.held, f)
	return nil
}

func (p *pipeFrames) ReadFrame() ([]byte, error) {
	p.timer.StopTimer()
	defer p.timer.StartTimer()
	for _, f := range p.held {
		p.toPeer <- f
	}
	p.held = p.held[:0]
	f, ok := <-p.fromPeer
	if !ok {
		return nil, errPeerClosed
	}
	return f, nil
}

// pipeHandshake runs one server handshake against c over a fresh pipe and
// returns both ends' results. The timer runs only for the server's work.
func pipeHandshake(tb testing.TB, b benchTimer, cfg *handshakeConfig, c *benchClient) (*serverHandshake, *clientResult) {
	tb.Helper()
	b.StopTimer()
	toServer, toClient := make(chan []byte, 4), make(chan []byte, 4)
	type result struct {
		r   *clientResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := c.handshake(
			func(f []byte) error { toServer <- f; return nil },
			func() ([]byte, error) {
				f, ok := <-toClient
				if !ok {
					return nil, errPeerClosed
				}
				return f, nil
			})
		if err != nil {
			close(toServer) // unblocks the server's read
		}
		done <- result{r, err}
	}()
	hs := &serverHandshake{ctx: context.Background(), io: &protocol.HandshakeIO{Conn: &pipeFrames{timer: b, toPeer: toClient, fromPeer: toServer}, Transcript: protocol.NewTranscript()}, cfg: cfg}
	b.StartTimer()
	err := hs.handshake()
	b.StopTimer()
	close(toClient)
	cr := <-done
	if err != nil || cr.err != nil {
		tb.Fatalf("handshake: server %v, client %v", err, cr.err)
	}
	b.StartTimer()
	return hs, cr.r
}

// checkKeys makes sure both ends derived the same traffic keys.
func checkKeys(tb testing.TB, hs *serverHandshake, cr *clientResult) {
	tb.Helper()
	f, err := cr.seal.Seal([]byte("ping"))
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := hs.open.Open(f); err != nil {
		tb.Fatalf("server cannot open the client's record: %v", err)
	}
}

// wsHandshake dials ts with a raw WebSocket, runs c's handshake and reads
// the "ready" record.
func wsHandshake(tb testing.TB, ts *testServer, c *benchClient) *clientResult {
	tb.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(ts.url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	r, err := c.handshake(
		func(f []byte) error { return ws.WriteMessage(websocket.BinaryMessage, f) },
		func() ([]byte, error) { _, f, err := ws.ReadMessage(); return f, err })
	if err != nil {
		tb.Fatalf("handshake: %v", err)
	}
	_, f, err := ws.ReadMessage()
	if err != nil {
		tb.Fatal(err)
	}
	pt, err := r.open.Open(f)
	if err != nil {
		tb.Fatal(err)
	}
	if m, err := protocol.DecodeMessage(pt); err != nil || m.Type != protocol.MsgReady {
		tb.Fatalf("first record %s, %v; want ready", pt, err)
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	return r
}

func BenchmarkServerHandshake(b *testing.B) {
	for _, id := range benchIdentities(b) {
		b.Run(id.name, func(b *testing.B) {
			ts := startServer(b, withIdentity(id.key), withProductionLogs(), withoutHandshakeLimits)
			c := newBenchClient(b, &id.key.PublicKey)
			b.Run("server-only", func(b *testing.B) {
				hs, cr := pipeHandshake(b, b, ts.hs, c)
				checkKeys(b, hs, cr)
				b.ReportAllocs()
				for b.Loop() {
					pipeHandshake(b, b, ts.hs, c)
				}
			})
			b.Run("websocket", func(b *testing.B) {
				wsHandshake(b, ts, c)
				b.ReportAllocs()
				cpu := startCPU(b)
				for b.Loop() {
					wsHandshake(b, ts, c)
				}
				cpu.report(b)
			})
			b.Run("client.Dial", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					conn, err := client.Dial(context.Background(), ts.clientConfig())
					if err != nil {
						b.Fatal(err)
					}
					conn.Close()
				}
			})
		})
	}
}

// BenchmarkResumeHandshake is the server's cost of resuming a session: no
// RSA, a session-store lookup (in memory here) and the key schedule.
func BenchmarkResumeHandshake(b *testing.B) {
	identity, _ := keys(b)
	ts := startServer(b, withProductionLogs(), withoutHandshakeLimits)
	// A session to resume, made by a full handshake.
	full := newBenchClient(b, &identity.PublicKey)
	first := wsHandshake(b, ts, full)
	resume := &benchClient{
		suite:    protocol.SuiteAES256GCM,
		identity: &identity.PublicKey,
		resumeID: first.sessionID[:],
		secret:   first.secret,
	}
	b.Run("server-only", func(b *testing.B) {
		hs, cr := pipeHandshake(b, b, ts.hs, resume)
		if !hs.resumed {
			b.Fatal("not resumed")
		}
		checkKeys(b, hs, cr)
		b.ReportAllocs()
		for b.Loop() {
			pipeHandshake(b, b, ts.hs, resume)
		}
	})
	b.Run("client.Dial", func(b *testing.B) {
		// Resume-only dials make no RSA key, so this is the library's real
		// cost: connect, upgrade, resumed handshake, ready.
		cfg := ts.clientConfig()
		cfg.Resume = &client.Ticket{ID: first.sessionID, Secret: first.secret}
		cfg.ResumeOnly = true
		b.ReportAllocs()
		cpu := startCPU(b)
		for b.Loop() {
			conn, err := client.Dial(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			if !conn.Session().Resumed {
				b.Fatal("not resumed")
			}
			conn.Close()
		}
		cpu.report(b)
	})
	b.Run("client.Dial-parallel", func(b *testing.B) {
		// Many resume-only dials at once (GOMAXPROCS × 8 in flight), as
		// in a reconnect storm: ns/op is the inverse of the throughput
		// on this machine's cores, client and server together.
		cfg := ts.clientConfig()
		cfg.Resume = &client.Ticket{ID: first.sessionID, Secret: first.secret}
		cfg.ResumeOnly = true
		b.ReportAllocs()
		b.SetParallelism(8)
		cpu := startCPU(b)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				conn, err := client.Dial(context.Background(), cfg)
				if err != nil {
					b.Error(err)
					return
				}
				conn.Close()
			}
		})
		cpu.report(b)
	})
}

// BenchmarkWebSocketRoundTrips is the floor under a resumption: the same
// exchange as a resume-only client.Dial — TCP connect, HTTP upgrade, a
// 60-byte frame to the server, 120 bytes back, 40 bytes to the server, 150
// bytes back, the close handshake — between gorilla/websocket endpoints
// that do nothing else (no protocol, no session, no goroutines of the
// server's), client and server in this process. cpu-ns/op beside
// BenchmarkResumeHandshake/client.Dial's says how much of a resumption is
// the connection itself.
func BenchmarkWebSocketRoundTrips(b *testing.B) {
	up := websocket.Upgrader{WriteBufferPool: &sync.Pool{}}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for _, n := range []int{120, 150} {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
			if err := ws.WriteMessage(websocket.BinaryMessage, make([]byte, n)); err != nil {
				return
			}
		}
		_, _, _ = ws.ReadMessage() // the close frame; gorilla answers it
	}))
	defer hs.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	d := &websocket.Dialer{WriteBufferPool: &sync.Pool{}}
	b.ReportAllocs()
	cpu := startCPU(b)
	for b.Loop() {
		ws, _, err := d.Dial(url, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{60, 40} {
			if err := ws.WriteMessage(websocket.BinaryMessage, make([]byte, n)); err != nil {
				b.Fatal(err)
			}
			if _, _, err := ws.ReadMessage(); err != nil {
				b.Fatal(err)
			}
		}
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		ws.Close()
	}
	cpu.report(b)
}

// benchmarkHubFanout publishes one message to a room of members peers on
// this node through the real Hub.Join/Publish path and the memory broker,
// and waits until every member's send queue has yielded it. Each member's
// queue is drained by a function the queue starts in place of its writer.
func benchmarkHubFanout(b *testing.B, members int) {
	hub, err := NewHub(zerolog.Nop(), func(h broker.Handler) (broker.Broker, error) { return broker.NewMemoryBroker(h), nil })
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go hub.Run(ctx)
	var delivered sync.WaitGroup
	defer func() {
		cancel()
		_ = hub.Close()
	}()
	peers := make([]*peer, members)
	for i := range peers {
		p := &peer{
			log:       zerolog.Nop(),
			id:        fmt.Sprintf("conn-%d", i),
			name:      fmt.Sprintf("member-%d", i),
			queue:     newSendQueue(256),
			closeCh:   make(chan closeRequest, 1),
			writerEnd: make(chan struct{}),
		}
		peers[i] = p
		if _, _, err := hub.Join(ctx, p, "bench", false); err != nil {
			b.Fatal(err)
		}
		// Started by the queue, as the writer would be, when it has work.
		p.queue.run = func() {
			for {
				items, _, ok := p.queue.next(nil)
				if !ok {
					return
				}
				for range items {
					delivered.Done()
				}
			}
		}
	}
	msg := &protocol.Message{Type: protocol.MsgMessage, ID: "0b6f3c8e-58a2-4bd0-9a53-1f0c8a5e2d71", TS: time.Now().UnixMilli(), Room: "bench", From: "member-0", Body: "hello, everyone in the room"}
	payload, err := msg.Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		delivered.Add(members)
		if err := hub.Publish(ctx, "bench", 0, payload); err != nil {
			b.Fatal(err)
		}
		delivered.Wait()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*members), "ns/delivery")
	for _, p := range peers {
		if len(p.closeCh) != 0 {
			b.Fatalf("%s was disconnected as a slow consumer", p.id)
		}
	}
}

func BenchmarkHubFanout_1Member(b *testing.B)     { benchmarkHubFanout(b, 1) }
func BenchmarkHubFanout_100Members(b *testing.B)  { benchmarkHubFanout(b, 100) }
func BenchmarkHubFanout_1000Members(b *testing.B) { benchmarkHubFanout(b, 1000) }

// TestBenchClientAgainstServer keeps the benchmarks' client and pipe honest
// under plain go test: a full and a resumed handshake through the pipe, and
// one over a WebSocket.
func TestBenchClientAgainstServer(t *testing.T) {
	identity, _ := keys(t)
	ts := startServer(t)
	c := newBenchClient(t, &identity.PublicKey)
	r := wsHandshake(t, ts, c)
	res := &benchClient{suite: protocol.SuiteAES256GCM, identity: &identity.PublicKey, resumeID: r.sessionID[:], secret: r.secret}
	for _, cl := range []*benchClient{c, res} {
		hs, cr := pipeHandshake(t, noTimer{}, ts.hs, cl)
		if hs.resumed != (cl == res) {
			t.Errorf("resumed = %v", hs.resumed)
		}
		checkKeys(t, hs, cr)
	}
	// A wrong identity makes the client fail, not hang.
	_, impostor := keys(t)
	bad := newBenchClient(t, &impostor.PublicKey)
	ws, _, err := websocket.DefaultDialer.Dial(ts.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_, err = bad.handshake(
		func(f []byte) error { return ws.WriteMessage(websocket.BinaryMessage, f) },
		func() ([]byte, error) { _, f, err := ws.ReadMessage(); return f, err })
	if !errors.Is(err, protocol.CodeBadSignature) {
		t.Fatalf("err = %v, want bad signature", err)
	}
}
