package broker

import (
	"context"
	"sync"
)

var _ Broker = (*MemoryBroker)(nil)

// MemoryBroker is the Broker of a single node: it loops published messages
// back to its own handler.
//
// Publish calls the handler synchronously, in the publisher's goroutine, and
// only when the channel is subscribed; when it returns the message has been
// handled. Messages published by one goroutine therefore reach the handler in
// publish order, while the handler may run concurrently for publishers in
// different goroutines. The handler gets its own copy of the payload.
type MemoryBroker struct {
	h Handler

	mu     sync.RWMutex
	subs   map[string]struct{}
	closed bool

	// inflight counts handler calls in progress, for Close to wait on.
	inflight sync.WaitGroup
}

// NewMemoryBroker returns a MemoryBroker that delivers to h, which must not
// be nil.
func NewMemoryBroker(h Handler) *MemoryBroker {
	if h == nil {
		panic("broker: NewMemoryBroker with a nil handler")
	}
	return &MemoryBroker{h: h, subs: make(map[string]struct{})}
}

// Publish calls the handler with a copy of payload if channel is subscribed.
func (b *MemoryBroker) Publish(_ context.Context, channel string, payload []byte) error {
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return ErrClosed
	}
	_, subscribed := b.subs[channel]
	if subscribed {
		b.inflight.Add(1)
	}
	b.mu.RUnlock()
	if subscribed {
		// Outside the lock, so that the handler may subscribe or publish.
		defer b.inflight.Done()
		b.h(channel, append([]byte(nil), payload...))
	}
	return nil
}

// Subscribe adds channel to the subscribed set.
func (b *MemoryBroker) Subscribe(_ context.Context, channel string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	b.subs[channel] = struct{}{}
	return nil
}

// Unsubscribe removes channel from the subscribed set.
func (b *MemoryBroker) Unsubscribe(_ context.Context, channel string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	delete(b.subs, channel)
	return nil
}

// Close makes every later call fail with ErrClosed and waits for the handler
// calls in progress to return. Close always returns nil.
func (b *MemoryBroker) Close() error {
	b.mu.Lock()
	b.closed = true
	clear(b.subs)
	b.mu.Unlock()
	b.inflight.Wait()
	return nil
}
