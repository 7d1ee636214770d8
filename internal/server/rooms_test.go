package server

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// TestRooms: many clients in several rooms each receive exactly their
// room's messages, in each sender's order.
func TestRooms(t *testing.T) {
	ts := startServer(t, withoutRateLimits)
	const rooms, perRoom, perSender = 3, 5, 4
	type member struct {
		c    *client.Conn
		room string
		name string
	}
	var members []member
	for r := range rooms {
		for i := range perRoom {
			m := member{c: ts.dial(t), room: fmt.Sprintf("room-%d", r), name: fmt.Sprintf("u%d-%d", r, i)}
			if _, err := m.c.Join(ctxT(t), m.room, m.name); err != nil {
				t.Fatal(err)
			}
			members = append(members, m)
		}
	}
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				if _, err := m.c.Send(ctxT(t), m.room, fmt.Sprintf("%s#%d", m.name, i)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for _, m := range members {
		seen := map[string]int{} // sender → next expected index
		for range perRoom * perSender {
			msg := next(t, m.c, protocol.MsgMessage)
			if msg.Room != m.room {
				t.Fatalf("%s in %s got a message of %s", m.name, m.room, msg.Room)
			}
			sender, idx, _ := strings.Cut(msg.Body, "#")
			if sender != msg.From || idx != fmt.Sprint(seen[sender]) {
				t.Fatalf("%s got %q from %s, want %s#%d", m.name, msg.Body, msg.From, sender, seen[sender])
			}
			seen[sender]++
		}
		if len(seen) != perRoom {
			t.Fatalf("%s heard %d senders, want %d", m.name, len(seen), perRoom)
		}
	}
	wg.Wait()
}

// TestSlowConsumerIsDropped: a member that stops reading is disconnected
// with slow_consumer while the others keep receiving every message.
func TestSlowConsumerIsDropped(t *testing.T) {
	const queue = 64
	ts := startServer(t, withoutRateLimits, func(c *Config, _ *Deps) {
		c.SendQueue = queue
		c.WriteTimeout = time.Second
	})
	sender := ts.dial(t)
	// The slow client's library buffers one message, then stops reading
	// the socket because nobody drains Messages().
	slow := ts.dial(t, func(cfg *client.Config) { cfg.Incoming = 1 })
	fast := []*client.Conn{ts.dial(t), ts.dial(t)}
	for i, c := range append([]*client.Conn{sender, slow}, fast...) {
		if _, err := c.Join(ctxT(t), "busy", fmt.Sprintf("m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Enough data to fill the slow client's socket buffers and its queue.
	const n = 1500
	body := strings.Repeat("x", 8<<10)
	// Every reader that keeps up: the fast clients and the sender (which
	// gets its own echoes). The sender never runs more than a window ahead
	// of the slowest of them, so on a busy machine they are never more
	// than half a queue behind: only the client that stops reading is.
	readers := append([]*client.Conn{sender}, fast...)
	received := make([]atomic.Int64, len(readers))
	var wg sync.WaitGroup
	for i, c := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for received[i].Load() < n {
				m, ok := <-c.Messages()
				if !ok {
					t.Errorf("reader %d ended: %v", i, c.Err())
					return
				}
				if m.Type == protocol.MsgMessage && m.From == "m0" {
					received[i].Add(1)
				}
			}
		}()
	}
	slowest := func() int64 {
		low := received[0].Load()
		for i := range received {
			low = min(low, received[i].Load())
		}
		return low
	}
	for i := range n {
		deadline := time.Now().Add(10 * time.Second)
		for int64(i)-slowest() > queue/2 {
			if time.Now().After(deadline) {
				t.Fatalf("readers stalled at %d of %d", slowest(), i)
			}
			time.Sleep(time.Millisecond)
		}
		if _, err := sender.Send(ctxT(t), "busy", fmt.Sprint(i, body)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	wg.Wait()
	for i := range received {
		if got := received[i].Load(); got != n {
			t.Fatalf("reader %d received %d of %d", i, got, n)
		}
	}
	waitLog(t, ts, "disconnecting slow consumer")
	waitLog(t, ts, `"code":"slow_consumer"`)
	// The slow client now catches up on what its socket still holds and
	// then finds the connection closed by the server.
	deadline := time.After(10 * time.Second)
drain:
	for {
		select {
		case _, ok := <-slow.Messages():
			if !ok {
				break drain
			}
		case <-deadline:
			t.Fatal("slow client still connected")
		}
	}
	// It may or may not have read the final error through its congested
	// socket; if it did, the code is slow_consumer.
	if err := slow.Err(); !errors.Is(err, protocol.CodeSlowConsumer) && !errors.Is(err, client.ErrClosed) {
		t.Fatalf("slow client ended with %v", err)
	}
}

// TestNoGoroutineLeak: connections that come and go (joining, talking,
// closing, failing) leave no goroutines behind.
func TestNoGoroutineLeak(t *testing.T) {
	ts := startServer(t)
	warm := ts.dial(t) // let the server start its long-lived goroutines
	if _, err := warm.Join(ctxT(t), "warm", ""); err != nil {
		t.Fatal(err)
	}
	warm.Close()
	settle := func() int {
		n := runtime.NumGoroutine()
		for range 50 {
			time.Sleep(20 * time.Millisecond)
			m := runtime.NumGoroutine()
			if m == n {
				return m
			}
			n = m
		}
		return n
	}
	before := settle()
	for i := range 20 {
		c, err := client.Dial(ctxT(t), ts.clientConfig())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Join(ctxT(t), fmt.Sprintf("room-%d", i%3), ""); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Send(ctxT(t), fmt.Sprintf("room-%d", i%3), "hi"); err != nil {
			t.Fatal(err)
		}
		switch i % 3 {
		case 0:
			c.Close()
		case 1:
			_ = c.End(ctxT(t))
		case 2: // a record the server rejects
			_ = c.WriteRaw([]byte{protocol.TypeRecord, 0, 0})
			<-c.Done()
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		after := settle()
		if after <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d before, %d after 20 connections\n%s", before, after, buf[:n])
		}
	}
}
