package server

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// TestSendQueueLanes: pushes beyond the limit are refused; answers are
// counted apart, never refused, and wait for the writer instead; take
// returns everything in arrival order, both kinds mixed.
func TestSendQueueLanes(t *testing.T) {
	q := newSendQueue(2)
	done := make(chan struct{})
	if !q.push([]byte("p1")) || !q.answer([]byte("a1"), done) || !q.push([]byte("p2")) {
		t.Fatal("refused within the limit")
	}
	if q.push([]byte("p3")) {
		t.Fatal("a third push was queued with a limit of 2")
	}
	if !q.answer([]byte("a2"), done) {
		t.Fatal("an answer within its own limit was refused")
	}
	third := make(chan bool)
	go func() { third <- q.answer([]byte("a3"), done) }()
	select {
	case <-third:
		t.Fatal("a third answer did not wait for the writer")
	case <-time.After(50 * time.Millisecond):
	}
	if got := string(joinAll(q.take(nil))); got != "p1 a1 p2 a2" {
		t.Fatalf("take = %q", got)
	}
	if !<-third {
		t.Fatal("the waiting answer was refused after the writer took the queue")
	}
	if !q.push([]byte("p4")) {
		t.Fatal("a push was refused after the writer emptied the queue")
	}
	if got := string(joinAll(q.take(nil))); got != "a3 p4" {
		t.Fatalf("take = %q", got)
	}

	// An answer waiting for a writer that has ended gives up.
	q = newSendQueue(1)
	q.answer([]byte("a"), done)
	close(done)
	if q.answer([]byte("b"), done) {
		t.Fatal("an answer was queued for a connection whose writer ended")
	}
}

func joinAll(items [][]byte) []byte {
	var s []string
	for _, b := range items {
		s = append(s, string(b))
	}
	return []byte(strings.Join(s, " "))
}

// TestReplyNeverDropsTheRequester: a connection whose queue holds as many
// answers as it may is not failed as a slow consumer when one more answer
// comes; the answer waits for the writer. A push beyond the limit is what
// drops a connection.
func TestReplyNeverDropsTheRequester(t *testing.T) {
	c := &peer{log: zerolog.Nop(), closeLog: zerolog.Nop(), queue: newSendQueue(2), closeCh: make(chan closeRequest, 1), writerEnd: make(chan struct{})}
	ack := &protocol.Message{Type: protocol.MsgAck, Ref: "r"}
	c.reply(ack)
	c.reply(ack)
	replied := make(chan struct{})
	go func() { c.reply(ack); close(replied) }()
	select {
	case <-replied:
		t.Fatal("a third answer did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	if len(c.closeCh) != 0 {
		t.Fatal("the requester was failed for its own answers")
	}
	if n := len(c.queue.take(nil)); n != 2 {
		t.Fatalf("took %d answers, want 2", n)
	}
	<-replied
	if !c.enqueue([]byte("m1")) || !c.enqueue([]byte("m2")) {
		t.Fatal("pushes refused beside a queued answer")
	}
	if c.enqueue([]byte("m3")) {
		t.Fatal("a third push was queued with a limit of 2")
	}
}

// spyConn records the writes and write deadlines that reach a real TCP
// connection.
type spyConn struct {
	net.Conn
	mu        sync.Mutex
	writes    []int
	deadlines int
}

func (s *spyConn) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.writes = append(s.writes, len(p))
	s.mu.Unlock()
	return s.Conn.Write(p)
}

func (s *spyConn) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadlines++
	s.mu.Unlock()
	return s.Conn.SetWriteDeadline(t)
}

// TestCorkConnBatches: while corked, writes (and their deadlines) are
// gathered and reach the connection as one write with one deadline, or
// several when the batch passes corkFlushAt; the bytes arrive intact and in
// order; uncorked, each write goes straight through.
func TestCorkConnBatches(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			received <- nil
			return
		}
		defer c.Close()
		var all []byte
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				received <- all
				return
			}
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	spy := &spyConn{Conn: raw}
	c := &corkConn{Conn: spy}
	var want []byte
	write := func(s string) {
		t.Helper()
		want = append(want, s...)
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}

	write("straight ")
	c.cork(time.Minute)
	for i := range 10 {
		_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
		write(fmt.Sprintf("record-%d ", i))
	}
	spy.mu.Lock()
	if len(spy.writes) != 1 || spy.deadlines != 0 {
		t.Fatalf("while corked: %d writes, %d deadlines reached the connection; want 1 (the uncorked one), 0", len(spy.writes), spy.deadlines)
	}
	spy.mu.Unlock()
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	spy.mu.Lock()
	if len(spy.writes) != 2 || spy.deadlines != 1 {
		t.Fatalf("after uncork: writes %v, %d deadlines; want 2 writes, 1 deadline", spy.writes, spy.deadlines)
	}
	spy.mu.Unlock()

	c.cork(time.Minute)
	big := strings.Repeat("x", corkFlushAt/4)
	for range 5 {
		write(big)
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	write(" end")
	spy.mu.Lock()
	if len(spy.writes) != 5 { // straight, batch, one flush at corkFlushAt, the rest, end
		t.Fatalf("writes %v, want 5", spy.writes)
	}
	spy.mu.Unlock()
	c.Close()
	if got := <-received; string(got) != string(want) {
		t.Fatalf("received %d bytes, want %d, or they differ", len(got), len(want))
	}
}

// TestWriterStartsOnDemand: the queue starts its writer when work comes
// and none runs, never two at once; the writer stops when next finds the
// queue empty; a message queued while a stopped writer is still on its way
// out starts a new one and is delivered; and every message arrives once,
// each sender's in the order it sent them.
func TestWriterStartsOnDemand(t *testing.T) {
	q := newSendQueue(1 << 20)
	var (
		mu      sync.Mutex
		got     []string
		starts  int
		running int
		overlap bool
		exiting = make(chan struct{}) // the first writer waits here after it stopped
		exited  = make(chan struct{})
	)
	q.run = func() {
		mu.Lock()
		starts++
		first := starts == 1
		running++
		overlap = overlap || running > 1
		mu.Unlock()
		var batch [][]byte
		for {
			items, _, ok := q.next(batch)
			if !ok {
				break
			}
			mu.Lock()
			for _, b := range items {
				got = append(got, string(b))
			}
			mu.Unlock()
			clear(items)
			batch = items
		}
		mu.Lock()
		running--
		mu.Unlock()
		if first {
			<-exiting // stopped, but its goroutine has not returned yet
			close(exited)
		}
	}

	q.push([]byte("a"))
	waitFor(t, "the first writer to stop", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return !q.running })
	// The first writer is stopped but still running its last lines: the
	// next message must start a second one, not wait for it.
	q.push([]byte("b"))
	waitFor(t, "the second writer to deliver b", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 })
	close(exiting)
	<-exited

	// Concurrent senders, and the writer starting and stopping under them.
	const senders, each = 8, 500
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if !q.push([]byte(fmt.Sprintf("%d/%d", s, i))) {
					t.Error("push refused")
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "every message", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2+senders*each })
	waitFor(t, "the writer to stop", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return !q.running })
	mu.Lock()
	defer mu.Unlock()
	if overlap {
		t.Error("two writers ran at once")
	}
	if got[0] != "a" || got[1] != "b" {
		t.Fatalf("first two: %q", got[:2])
	}
	nextOf := make([]int, senders)
	for _, m := range got[2:] {
		var s, i int
		if _, err := fmt.Sscanf(m, "%d/%d", &s, &i); err != nil {
			t.Fatal(err)
		}
		if i != nextOf[s] {
			t.Fatalf("sender %d: got %d, want %d (lost, repeated or out of order)", s, i, nextOf[s])
		}
		nextOf[s]++
	}
	if q.items != nil {
		t.Error("an idle queue kept its batch slice")
	}
}

// TestWriterSignalsAndEnd: a ping or close signal starts a writer like a
// message does, and is seen once; after end nothing starts a writer and
// pushes are dropped (an answer is refused).
func TestWriterSignalsAndEnd(t *testing.T) {
	q := newSendQueue(4)
	sigs := make(chan writerSignal, 4)
	q.run = func() {
		for {
			_, s, ok := q.next(nil)
			if !ok {
				return
			}
			sigs <- s
		}
	}
	q.signal(sigPing, true) // runs the writer on this goroutine
	if s := <-sigs; s != sigPing {
		t.Fatalf("signal %b, want ping", s)
	}
	q.signal(sigClose, false)
	if s := <-sigs; s != sigClose {
		t.Fatalf("signal %b, want close", s)
	}
	waitFor(t, "the writer to stop", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return !q.running })
	q.end()
	q.signal(sigPing, true)
	if !q.push([]byte("late")) {
		t.Fatal("a push after the end made a slow consumer")
	}
	if q.answer([]byte("late"), make(chan struct{})) {
		t.Fatal("an answer was queued after the end")
	}
	if n := q.len(); n != 0 {
		t.Fatalf("%d messages queued after the end", n)
	}
	select {
	case s := <-sigs:
		t.Fatalf("a writer ran after the end (signal %b)", s)
	default:
	}
}
