package server

import (
	"sync"
)

// sendQueue holds one connection's encoded application messages, in the
// order they came, until its writer takes them all at once (so that it can
// seal them and write them in one batch).
//
// Two kinds are counted apart. Pushes, what the hub and other connections
// send this one (room messages, presence, key changes), are bounded by
// limit: one more is refused, and the caller drops the connection as a slow
// consumer. Answers to the connection's own requests never drop it: the
// reader waits for room instead, so a client that does not read what it
// asked for only stops having its requests read. A publisher's own ack is
// therefore never what makes it a slow consumer (docs/protocol.md §7).
//
// The queue also runs the writer: no goroutine writes while there is
// nothing to write. The first message, ping or close that finds no writer
// running starts one (go run()), exactly once, under the queue's lock; the
// writer takes work with next until next finds none, which marks it
// stopped under the same lock, so whatever comes after starts a new one
// and nothing is left behind or written out of order. An idle
// connection therefore has no writer goroutine and no timer but the
// ping's, and its queue holds no slice and no channel.
type sendQueue struct {
	limit int
	// run is the connection's writer, started when work arrives while it
	// is not running. Nil: no writer (tests take the queue by hand).
	run func()

	mu      sync.Mutex
	room    chan struct{} // a token when the writer took items; made when an answer first waits
	items   [][]byte
	pushes  int
	answers int
	signals writerSignal // what besides items the writer must do
	running bool         // run was started and has not found the queue empty since
	ended   bool         // the writer is done for good: later work is dropped
	box     *[][]byte    // from batchPool while the writer is busy; carries the spare slice back
}

// batchPool lends busy connections the slices their messages queue in, so
// that an idle connection holds none and a busy one does not allocate a
// new one each time its writer starts. Each entry is a box holding one
// emptied slice of at most maxSpareBatch.
var batchPool = sync.Pool{New: func() any { return new([][]byte) }}

// writerSignal is work for the writer that is not a message.
type writerSignal uint8

const (
	sigPing  writerSignal = 1 << iota // send a WebSocket ping
	sigClose                          // a closeRequest waits in peer.closeCh
)

func newSendQueue(limit int) *sendQueue {
	return &sendQueue{limit: limit}
}

// push queues b without waiting; false means limit pushes are already
// waiting. Once the writer has ended, b is dropped (the connection is
// going) and push reports true.
func (q *sendQueue) push(b []byte) bool {
	q.mu.Lock()
	if q.ended {
		q.mu.Unlock()
		return true
	}
	if q.pushes >= q.limit {
		q.mu.Unlock()
		return false
	}
	q.pushes++
	q.add(b)
	return true
}

// answer queues b, waiting while limit answers are waiting, until the
// writer takes them or done closes (false: the connection is ending).
func (q *sendQueue) answer(b []byte, done <-chan struct{}) bool {
	for {
		q.mu.Lock()
		if q.ended {
			q.mu.Unlock()
			return false
		}
		if q.answers < q.limit {
			q.answers++
			q.add(b)
			return true
		}
		if q.room == nil {
			q.room = make(chan struct{}, 1)
		}
		room := q.room
		q.mu.Unlock()
		select {
		case <-room:
		case <-done:
			return false
		}
	}
}

// add appends b and starts the writer if it is not running; it unlocks
// q.mu.
func (q *sendQueue) add(b []byte) {
	if q.items == nil && q.box == nil {
		q.box = batchPool.Get().(*[][]byte)
		q.items, *q.box = *q.box, nil
	}
	q.items = append(q.items, b)
	if q.claimLocked() {
		go q.run()
	}
}

// signal asks the writer for s (a ping, or a close whose request is in
// peer.closeCh), starting it if it is not running. It does nothing once
// the writer has ended. If inline is set and a writer must be started,
// signal runs it on the calling goroutine instead of a new one.
func (q *sendQueue) signal(s writerSignal, inline bool) {
	q.mu.Lock()
	if q.ended {
		q.mu.Unlock()
		return
	}
	q.signals |= s
	if !q.claimLocked() {
		return
	}
	if inline {
		q.run()
	} else {
		go q.run()
	}
}

// claimLocked marks the writer running and reports whether the caller
// must start it (it was not running, has not ended, and there is one). It
// unlocks q.mu.
func (q *sendQueue) claimLocked() bool {
	start := !q.running && !q.ended && q.run != nil
	if start {
		q.running = true
	}
	q.mu.Unlock()
	return start
}

// next is the writer's: it returns every queued message, oldest first,
// and the signals raised since the last call, leaving spare (the writer's
// emptied previous batch) as the new, empty queue. With nothing to do it
// returns ok false, and the writer must return: the queue now counts it as
// stopped, and gives spare back to batchPool.
func (q *sendQueue) next(spare [][]byte) (items [][]byte, s writerSignal, ok bool) {
	q.mu.Lock()
	if len(q.items) == 0 && q.signals == 0 {
		q.running = false
		if q.box != nil { // an idle connection keeps no batch slice
			if cap(spare) > 0 && cap(spare) <= maxSpareBatch {
				*q.box = spare[:0]
			}
			batchPool.Put(q.box)
			q.box = nil
		}
		q.items = nil
		q.mu.Unlock()
		return nil, 0, false
	}
	items, s = q.items, q.signals
	q.items, q.signals = spare[:0], 0
	q.pushes, q.answers = 0, 0
	room := q.room
	q.mu.Unlock()
	if len(items) > 0 {
		roomToken(room)
	}
	return items, s, true
}

// take returns every queued message, oldest first, and leaves spare (or
// nil) as the new, empty queue. Unlike next it does not touch the writer's
// state: for a writer draining before its close, and for tests.
func (q *sendQueue) take(spare [][]byte) [][]byte {
	q.mu.Lock()
	out := q.items
	q.items = spare[:0]
	q.pushes, q.answers = 0, 0
	room := q.room
	q.mu.Unlock()
	if len(out) > 0 {
		roomToken(room)
	}
	return out
}

// roomToken tells an answer waiting on room (if one ever waited) that the
// writer took the queue.
func roomToken(room chan struct{}) {
	if room == nil {
		return
	}
	select {
	case room <- struct{}{}:
	default:
	}
}

// end marks the writer done for good: the queue is dropped, and later
// messages and signals are too. Called by the writer as it ends.
func (q *sendQueue) end() {
	q.mu.Lock()
	q.ended = true
	q.items, q.signals = nil, 0
	q.mu.Unlock()
}

// len is the number of queued messages (for tests).
func (q *sendQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
