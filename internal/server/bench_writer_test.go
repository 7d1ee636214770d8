package server

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// benchmarkConnFanout publishes one 256-byte room message with Hub.Publish
// to members real WebSocket connections of a real server (each after a full
// handshake, put into the room with Hub.Join so that no presence traffic
// runs) and waits until every client has read its record. Unlike
// BenchmarkHubFanout this covers the whole delivery path: the hub, each
// connection's queue and writer, sealing, and the socket writes. The clients
// only count frames (no decryption), but they share the CPUs with the
// server. ns/delivery = ns/op ÷ members.
func benchmarkConnFanout(b *testing.B, members, burst int) {
	ts := startServer(b, withProductionLogs(), withoutRateLimits, func(c *Config, _ *Deps) {
		c.Limits.HandshakeRate = off
		c.Limits.MaxConnectionsPerAddr, c.Limits.MaxHandshakesPerAddr = -1, -1
	})
	c := newBenchClient(b, &ts.hs.identity.PublicKey)
	ctx := context.Background()
	var pending atomic.Int64
	allIn := make(chan struct{}, 1)
	var readers sync.WaitGroup
	known := map[*peer]bool{}
	var clients []*websocket.Conn
	for i := range members {
		ws, _, err := websocket.DefaultDialer.Dial(ts.url, nil)
		if err != nil {
			b.Fatal(err)
		}
		_, err = c.handshake(
			func(f []byte) error { return ws.WriteMessage(websocket.BinaryMessage, f) },
			func() ([]byte, error) { _, f, err := ws.ReadMessage(); return f, err })
		if err != nil {
			b.Fatalf("handshake %d: %v", i, err)
		}
		clients = append(clients, ws)
		if _, _, err := ws.ReadMessage(); err != nil { // ready
			b.Fatal(err)
		}
		var p *peer
		for deadline := time.Now().Add(10 * time.Second); p == nil && time.Now().Before(deadline); {
			ts.mu.Lock()
			for q := range ts.clients {
				if !known[q] {
					p = q
				}
			}
			ts.mu.Unlock()
		}
		if p == nil {
			b.Fatal("the server does not list the new connection")
		}
		known[p] = true
		if _, _, err := ts.hub.Join(ctx, p, "bench", false); err != nil {
			b.Fatal(err)
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				if _, _, err := ws.NextReader(); err != nil {
					return
				}
				if pending.Add(-1) == 0 {
					allIn <- struct{}{}
				}
			}
		}()
	}
	msg := &protocol.Message{Type: protocol.MsgMessage, ID: "0b6f3c8e-58a2-4bd0-9a53-1f0c8a5e2d71", TS: time.Now().UnixMilli(), Room: "bench", From: "member-0", Body: string(make([]byte, 256))}
	payload, err := msg.Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		pending.Store(int64(members * burst))
		for range burst {
			if err := ts.hub.Publish(ctx, "bench", 0, payload); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-allIn:
		case <-time.After(30 * time.Second):
			b.Fatalf("%d deliveries missing", pending.Load())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*members*burst), "ns/delivery")
	ts.mu.Lock()
	for p := range ts.clients {
		if p.dropped {
			b.Errorf("%s was dropped as a slow consumer", p.id)
		}
	}
	ts.mu.Unlock()
	for _, ws := range clients {
		ws.Close()
	}
	readers.Wait()
}

// One message at a time (each op waits for every delivery), and bursts of
// 16 published back to back, whose records can share writes.
func BenchmarkConnFanout(b *testing.B) {
	for _, members := range []int{100, 1000} {
		for _, burst := range []int{1, 16} {
			b.Run(fmt.Sprintf("members=%d/burst=%d", members, burst), func(b *testing.B) { benchmarkConnFanout(b, members, burst) })
		}
	}
}

// BenchmarkConnFanoutNullSeal is BenchmarkConnFanout with each record's
// sealing replaced by a plain copy of the same length (header, plaintext,
// and as many zero bytes as the AES-256-GCM tag), through sealRecord, a
// variable only this test binary sets: the same hub, queues, writers and
// writes without the encryption, to measure the crypto's share of a
// fan-out (issue 18: encrypted fan-out at least 70% of this). The clients
// only count frames, so they do not notice. The ratio is ns/delivery of
// this benchmark ÷ BenchmarkConnFanout's, from runs interleaved in one
// sitting (docs/benchmarks.md).
func BenchmarkConnFanoutNullSeal(b *testing.B) {
	overhead := nullSealOverhead(b)
	saved := sealRecord
	sealRecord = func(_ *protocol.RecordLayer, dst, plaintext []byte) ([]byte, error) {
		dst = append(dst, nullRecordHeader[:]...)
		dst = append(dst, plaintext...)
		return append(dst, nullTag[:overhead-len(nullRecordHeader)]...), nil
	}
	defer func() { sealRecord = saved }()
	BenchmarkConnFanout(b)
}

var (
	nullRecordHeader = [protocol.RecordHeaderSize]byte{protocol.TypeRecord}
	nullTag          [64]byte
)

// nullSealOverhead is how many bytes a sealed AES-256-GCM record adds to
// its plaintext.
func nullSealOverhead(b *testing.B) int {
	rl, err := protocol.NewGCMRecordLayer(make([]byte, 32), make([]byte, 12))
	if err != nil {
		b.Fatal(err)
	}
	frame, err := rl.Seal(nil)
	if err != nil {
		b.Fatal(err)
	}
	if len(frame) < protocol.RecordHeaderSize || len(frame)-protocol.RecordHeaderSize > len(nullTag) {
		b.Fatalf("unexpected record overhead %d", len(frame))
	}
	return len(frame)
}
