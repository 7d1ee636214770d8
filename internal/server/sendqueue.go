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
// Nothing is allocated until the first message: an idle connection holds
// two empty slices and two one-token channels.
type sendQueue struct {
	limit int
	wake  chan struct{} // a token when items became non-empty
	room  chan struct{} // a token when the writer took items

	mu      sync.Mutex
	items   [][]byte
	pushes  int
	answers int
}

func newSendQueue(limit int) *sendQueue {
	return &sendQueue{limit: limit, wake: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// push queues b without waiting; false means limit pushes are already
// waiting.
func (q *sendQueue) push(b []byte) bool {
	q.mu.Lock()
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
		if q.answers < q.limit {
			q.answers++
			q.add(b)
			return true
		}
		q.mu.Unlock()
		select {
		case <-q.room:
		case <-done:
			return false
		}
	}
}

// add appends b and wakes the writer; it unlocks q.mu.
func (q *sendQueue) add(b []byte) {
	first := len(q.items) == 0
	q.items = append(q.items, b)
	q.mu.Unlock()
	if first {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// take returns every queued message, oldest first, and leaves spare (the
// writer's emptied previous batch, or nil) as the new, empty queue.
func (q *sendQueue) take(spare [][]byte) [][]byte {
	q.mu.Lock()
	out := q.items
	q.items = spare[:0]
	q.pushes, q.answers = 0, 0
	q.mu.Unlock()
	if len(out) > 0 {
		select {
		case q.room <- struct{}{}:
		default:
		}
	}
	return out
}

// len is the number of queued messages (for tests).
func (q *sendQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
