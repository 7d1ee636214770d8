package server

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// BenchmarkIdleConnMemory measures what one idle connection costs the
// server: it opens -idle-conns real WebSocket connections (full handshake
// with pkg/client, a pre-made session key so that the client's key
// generation does not count; with join=true each also joins a room of
// -idle-room members), waits for them to settle, and reports per
// connection the growth of the server's
//
//   - heap-inuse-B/conn: runtime.MemStats.HeapInuse (live objects plus the
//     unused parts of their spans),
//   - heap-live-B/conn: HeapAlloc, the live objects alone,
//   - stack-B/conn: StackInuse, goroutine stacks,
//   - total-B/conn: HeapInuse + StackInuse,
//   - goroutines/conn,
//   - rss-B/conn: the server process's VmRSS (includes memory the runtime
//     freed but has not yet returned to the system: the least robust one),
//   - rss-min-B/conn: VmRSS once debug.FreeOSMemory has returned all it
//     can, the floor that a tight GOMEMLIMIT approaches.
//
// Each is (after − before) ÷ connections, both read after three forced
// collections, so the figures do not depend on when the collector last ran
// or on the machine's load (unlike times).
//
// Honest separation of the server's share: clients and server in one
// process would mix their heaps and goroutines, so the server runs in a
// child process (this test binary re-run as TestIdleMemChild, a real
// server on a real listener) and reports its own runtime figures over a
// small HTTP endpoint; the clients live in the benchmark's process and are
// not counted at all.
//
// Run with -benchtime 1x (each run opens every connection again):
//
//	go test -run '^$' -bench IdleConnMemory -benchtime 1x ./internal/server/
//
// With -idle-heapprofile FILE the child also writes a heap profile (at
// runtime.MemProfileRate 512) once the connections are idle; see
// docs/benchmarks.md for the pprof command.
func BenchmarkIdleConnMemory(b *testing.B) {
	for _, join := range []bool{false, true} {
		b.Run(fmt.Sprintf("conns=%d/join=%t", *idleConns, join), func(b *testing.B) {
			benchmarkIdleConnMemory(b, *idleConns, join)
		})
	}
}

var (
	idleConns       = flag.Int("idle-conns", 2000, "BenchmarkIdleConnMemory: connections to open")
	idleRoom        = flag.Int("idle-room", 100, "BenchmarkIdleConnMemory: members per room with join=true")
	idleHeapProfile = flag.String("idle-heapprofile", "", "BenchmarkIdleConnMemory: the server child writes a heap profile here when the connections are idle")
)

// idleStats is what the child reports.
type idleStats struct {
	HeapInuse, HeapAlloc, StackInuse, RSS, RSSMin uint64
	Goroutines, Connections                       int
}

const idleChildEnv = "MESSENGER_IDLEMEM_CHILD"

func benchmarkIdleConnMemory(b *testing.B, conns int, join bool) {
	child := startIdleChild(b)
	cfg := client.Config{URL: child.wsURL, VerifyIdentity: client.Pin(child.fp)}
	_, cfg.SessionKey = keys(b) // any 2048-bit key serves as a session key
	dial := func(i int) (*client.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, cfg)
		if err != nil {
			return nil, err
		}
		if join {
			if _, err := c.Join(ctx, fmt.Sprintf("room-%d", i / *idleRoom), ""); err != nil {
				c.Close()
				return nil, err
			}
		}
		return c, nil
	}
	// Warm up the server's pools and one-time state, then measure the
	// baseline with no connection open.
	for i := range 8 {
		c, err := dial(i)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	before := child.stats(b, 0, "")

	clients := make([]*client.Conn, conns)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := dial(i)
				if err != nil {
					select {
					case errs <- fmt.Errorf("connection %d: %w", i, err):
					default:
					}
					continue
				}
				clients[i] = c
			}
		}()
	}
	for i := range conns {
		next <- i
	}
	close(next)
	wg.Wait()
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	// Let presence batches and the last answers go out.
	time.Sleep(2 * time.Second)
	after := child.stats(b, conns, *idleHeapProfile)

	per := func(a, z uint64) float64 { return (float64(z) - float64(a)) / float64(conns) }
	b.ReportMetric(per(before.HeapInuse, after.HeapInuse), "heap-inuse-B/conn")
	b.ReportMetric(per(before.HeapAlloc, after.HeapAlloc), "heap-live-B/conn")
	b.ReportMetric(per(before.StackInuse, after.StackInuse), "stack-B/conn")
	b.ReportMetric(per(before.HeapInuse+before.StackInuse, after.HeapInuse+after.StackInuse), "total-B/conn")
	b.ReportMetric(float64(after.Goroutines-before.Goroutines)/float64(conns), "goroutines/conn")
	b.ReportMetric(per(before.RSS, after.RSS), "rss-B/conn")
	b.ReportMetric(per(before.RSSMin, after.RSSMin), "rss-min-B/conn")
	b.ReportMetric(0, "ns/op") // the time is the connections' setup, not a result
}

// idleChild is the server process of BenchmarkIdleConnMemory.
type idleChild struct {
	wsURL, statsURL string
	fp              protocol.Fingerprint
}

// startIdleChild re-runs this test binary as TestIdleMemChild and reads
// the addresses it prints. The child ends when its standard input closes.
func startIdleChild(b *testing.B) *idleChild {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestIdleMemChild$", "-test.v")
	cmd.Env = append(os.Environ(), idleChildEnv+"=1")
	if *idleHeapProfile != "" {
		cmd.Args = append(cmd.Args, "-test.memprofilerate", "512")
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		f := strings.Fields(lines.Text())
		if len(f) != 4 || f[0] != "IDLEMEM" {
			continue
		}
		fp, err := protocol.ParseFingerprint(f[3])
		if err != nil {
			b.Fatal(err)
		}
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
		return &idleChild{wsURL: f[1], statsURL: f[2], fp: fp}
	}
	b.Fatalf("the server child printed no address: %v", lines.Err())
	return nil
}

// stats asks the child to collect garbage and report; it checks that the
// child holds want connections.
func (c *idleChild) stats(b *testing.B, want int, profile string) idleStats {
	b.Helper()
	resp, err := http.Get(c.statsURL + "?profile=" + profile)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var s idleStats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		b.Fatal(err)
	}
	if s.Connections != want {
		b.Fatalf("the server holds %d connections, want %d", s.Connections, want)
	}
	return s
}

// TestIdleMemChild is BenchmarkIdleConnMemory's server process; it skips
// unless the benchmark started it.
func TestIdleMemChild(t *testing.T) {
	if os.Getenv(idleChildEnv) == "" {
		t.Skip("the server process of BenchmarkIdleConnMemory")
	}
	ts := startServer(t, withProductionLogs(), withoutRateLimits, func(c *Config, _ *Deps) {
		c.PingInterval = 0 // the production default (30 s)
		c.Limits.HandshakeRate = off
		c.Limits.MaxConnections, c.Limits.MaxConnectionsPerAddr = -1, -1
		c.Limits.MaxHandshakes, c.Limits.MaxHandshakesPerAddr = -1, -1
		c.Limits.RoomsPerConnection, c.Limits.MembersPerRoom = -1, -1
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 3 {
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s := idleStats{HeapInuse: ms.HeapInuse, HeapAlloc: ms.HeapAlloc, StackInuse: ms.StackInuse,
			RSS: vmRSS(), Goroutines: runtime.NumGoroutine(), Connections: ts.Connections()}
		if p := r.URL.Query().Get("profile"); p != "" {
			f, err := os.Create(p)
			if err == nil {
				err = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		debug.FreeOSMemory()
		s.RSSMin = vmRSS()
		_ = json.NewEncoder(w).Encode(s)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	fmt.Printf("IDLEMEM %s http://%s/ %s\n", ts.url, ln.Addr(), ts.Fingerprint())
	_, _ = io.Copy(io.Discard, os.Stdin) // until the benchmark closes it
}

// vmRSS is this process's resident set size in bytes (0 where /proc has
// no answer).
func vmRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
