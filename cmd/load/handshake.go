package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// HandshakeResult is the handshake storm's outcome, beside the RSA-PSS
// signing rate this machine reached in the same run (the floor of a full
// handshake is one such signature by the server).
type HandshakeResult struct {
	Concurrency   int            `json:"concurrency"`
	Handshakes    int            `json:"handshakes"`
	Seconds       float64        `json:"seconds"`
	PerSecond     float64        `json:"per_second"`
	Latency       Percentiles    `json:"latency"`
	Errors        map[string]int `json:"errors"`
	SignBits      int            `json:"sign_bits"`
	SignPerSecond float64        `json:"sign_per_second"`
	Ratio         float64        `json:"handshakes_per_signature_rate"`
	// SignPerCPUSecond is signatures per CPU-second of this process while
	// it measured the signing rate (its own CPU time, not the wall clock:
	// on a shared machine the two differ).
	SignPerCPUSecond float64 `json:"sign_per_cpu_second"`
	// CPU is what the storm cost the server and this tool in CPU time.
	CPU CPUCost `json:"cpu"`
	// CPURatio is handshakes per server CPU-second ÷ signatures per
	// CPU-second: the share of the server's handshake work that is its one
	// signature, whoever else shares the cores. 0 without -server-pid or
	// -metrics-url.
	CPURatio float64 `json:"handshakes_per_server_cpu_second_per_signature_rate,omitempty"`
}

// handshake measures the machine's RSA-PSS signing rate with a key of
// -sign-bits on every CPU (protocol.SignTranscript, what the server does
// once per full handshake), then runs full handshakes (each connection
// closed at once) -concurrency at a time for -handshake-for.
func (l *loader) handshake(ctx context.Context) (*HandshakeResult, error) {
	o := l.o
	r := &HandshakeResult{Concurrency: o.concurrency, SignBits: o.signBits}
	rate, perCPU, err := signRate(ctx, o.signBits, o.handshakeFor/4)
	if err != nil {
		return nil, err
	}
	r.SignPerSecond, r.SignPerCPUSecond = rate, perCPU
	meter := cpuMeter{o}
	before, err := meter.read(ctx)
	if err != nil {
		return nil, err
	}
	lat := &samples{}
	errs := &errorCounts{}
	var done atomic.Int64
	hctx, cancel := context.WithTimeout(ctx, o.handshakeFor)
	defer cancel()
	stop := l.bar("handshake", 0, &done)
	start := time.Now()
	var wg sync.WaitGroup
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 256)
			defer func() { lat.addAll(local) }()
			for hctx.Err() == nil {
				t0 := time.Now()
				// Dial under ctx, not hctx: a handshake under way when
				// the storm ends completes and counts (the time does too).
				cfg := l.config()
				cfg.Incoming = 1 // closed at once: no queue for pushes
				c, err := client.Dial(ctx, cfg)
				if err != nil {
					errs.add(err)
					continue
				}
				local = append(local, time.Since(t0))
				done.Add(1)
				c.Close()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	after, err := meter.read(ctx)
	stop()
	if err != nil {
		return nil, err
	}
	r.Handshakes, r.Seconds = int(done.Load()), took.Seconds()
	r.PerSecond = float64(r.Handshakes) / took.Seconds()
	r.Latency, r.Errors = lat.percentiles(), errs.snapshot()
	if r.SignPerSecond > 0 {
		r.Ratio = r.PerSecond / r.SignPerSecond
	}
	r.CPU = cost(before, after, r.Handshakes)
	if r.SignPerCPUSecond > 0 {
		r.CPURatio = r.CPU.OpsPerServerCPUSecond / r.SignPerCPUSecond
	}
	return r, nil
}

// signRate signs transcript hashes with a fresh RSA key of bits on every
// CPU for d and returns signatures per second of wall clock and per
// CPU-second this process used meanwhile.
func signRate(ctx context.Context, bits int, d time.Duration) (perSecond, perCPUSecond float64, err error) {
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return 0, 0, fmt.Errorf("load: signing key: %w", err)
	}
	cpu0, err := procCPUSeconds("self")
	if err != nil {
		return 0, 0, err
	}
	var n atomic.Int64
	var firstErr atomic.Value
	sctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	hash := make([]byte, 32)
	start := time.Now()
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sctx.Err() == nil {
				if _, err := protocol.SignTranscript(key, "load signing rate", hash); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	cpu1, err := procCPUSeconds("self")
	if err != nil {
		return 0, 0, err
	}
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, 0, err
	}
	perSecond = float64(n.Load()) / took.Seconds()
	if cpu1 > cpu0 {
		perCPUSecond = float64(n.Load()) / (cpu1 - cpu0)
	}
	return perSecond, perCPUSecond, nil
}

func (r *HandshakeResult) print(w io.Writer) {
	fmt.Fprintf(w, "\n## handshake: full handshakes (each connection closed at once), %d in flight\n\n", r.Concurrency)
	fmt.Fprintln(w, "| measure | value |\n|---|---|")
	fmt.Fprintf(w, "| full handshakes | %d in %.1f s |\n", r.Handshakes, r.Seconds)
	fmt.Fprintf(w, "| full handshakes per second | %.0f |\n", r.PerSecond)
	fmt.Fprintf(w, "| RSA-PSS-%d signatures per second on this machine, all CPUs, measured just before (no load client running) | %.0f |\n", r.SignBits, r.SignPerSecond)
	fmt.Fprintf(w, "| handshakes ÷ signing rate, wall clock (target ≥ 0.8) | %.2f |\n", r.Ratio)
	fmt.Fprintf(w, "| RSA-PSS-%d signatures per CPU-second (this process's CPU time while it signed) | %.0f |\n", r.SignBits, r.SignPerCPUSecond)
	r.CPU.printRows(w, "handshake")
	if r.CPURatio > 0 {
		fmt.Fprintf(w, "| handshakes per server CPU-second ÷ signatures per CPU-second | %.2f |\n", r.CPURatio)
	}
	fmt.Fprintf(w, "| latency p50 / p90 / p99 / p99.9 / max (ms) | %s |\n", r.Latency)
	fmt.Fprintf(w, "| errors | %s |\n", formatErrors(r.Errors))
}
