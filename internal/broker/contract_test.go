package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The contract test runs one body against every backend. A backend's factory
// returns a fresh broker delivering to h, closed when the test ends. The
// Redis broker delivers asynchronously, so tests wait for a marker message
// and then check everything delivered before it: since one broker delivers
// in order, a message that should not have arrived would have arrived first.

// brokerFactory makes a broker delivering to h.
type brokerFactory func(t *testing.T, h Handler) Broker

// delivery is one handler call.
type delivery struct {
	channel string
	payload string
}

// recorder is a Handler that remembers its calls.
type recorder struct {
	mu   sync.Mutex
	got  []delivery
	wake chan struct{}
}

func newRecorder() *recorder {
	return &recorder{wake: make(chan struct{}, 1)}
}

func (r *recorder) handle(channel string, payload []byte) {
	r.mu.Lock()
	r.got = append(r.got, delivery{channel, string(payload)})
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// all returns the deliveries so far.
func (r *recorder) all() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// waitFor waits until (channel, payload) has been delivered and returns every
// delivery up to and including it.
func (r *recorder) waitFor(t *testing.T, channel, payload string) []delivery {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		got := r.all()
		if i := slices.Index(got, delivery{channel, payload}); i >= 0 {
			return got[:i+1]
		}
		select {
		case <-r.wake:
		case <-timeout:
			t.Fatalf("%q on %q not delivered within 5s; got %d deliveries: %v", payload, channel, len(got), truncate(got))
		}
	}
}

func truncate(d []delivery) []delivery {
	if len(d) > 10 {
		return d[len(d)-10:]
	}
	return d
}

func mustDo(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func testBroker(t *testing.T, newBroker brokerFactory) {
	ctx := context.Background()

	t.Run("SubscribedChannelReceives", func(t *testing.T) {
		r := newRecorder()
		b := newBroker(t, r.handle)
		mustDo(t, "Subscribe", b.Subscribe(ctx, "room:1"))
		mustDo(t, "Publish", b.Publish(ctx, "room:1", []byte("hello")))
		got := r.waitFor(t, "room:1", "hello")
		if want := []delivery{{"room:1", "hello"}}; !slices.Equal(got, want) {
			t.Fatalf("deliveries = %v, want %v", got, want)
		}
	})

	t.Run("UnsubscribedChannelDoesNot", func(t *testing.T) {
		r := newRecorder()
		b := newBroker(t, r.handle)
		mustDo(t, "Subscribe", b.Subscribe(ctx, "a"))
		mustDo(t, "Publish", b.Publish(ctx, "never-subscribed", []byte("x")))
		mustDo(t, "Publish", b.Publish(ctx, "a", []byte("marker1")))
		r.waitFor(t, "a", "marker1")

		mustDo(t, "Unsubscribe", b.Unsubscribe(ctx, "a"))
		mustDo(t, "Subscribe", b.Subscribe(ctx, "c"))
		mustDo(t, "Publish", b.Publish(ctx, "a", []byte("after-unsubscribe")))
		mustDo(t, "Publish", b.Publish(ctx, "c", []byte("marker2")))
		got := r.waitFor(t, "c", "marker2")
		if want := []delivery{{"a", "marker1"}, {"c", "marker2"}}; !slices.Equal(got, want) {
			t.Fatalf("deliveries = %v, want %v", got, want)
		}
		mustDo(t, "Unsubscribe of a channel not subscribed", b.Unsubscribe(ctx, "never-subscribed"))
	})

	t.Run("SubscriptionsAreASet", func(t *testing.T) {
		r := newRecorder()
		b := newBroker(t, r.handle)
		mustDo(t, "Subscribe", b.Subscribe(ctx, "a"))
		mustDo(t, "Subscribe again", b.Subscribe(ctx, "a"))
		mustDo(t, "Subscribe", b.Subscribe(ctx, "marker"))
		mustDo(t, "Publish", b.Publish(ctx, "a", []byte("once")))
		mustDo(t, "Publish", b.Publish(ctx, "marker", []byte("1")))
		r.waitFor(t, "marker", "1")
		r.waitFor(t, "a", "once") // channels may arrive in either order
		// One Unsubscribe undoes both Subscribes.
		mustDo(t, "Unsubscribe", b.Unsubscribe(ctx, "a"))
		mustDo(t, "Publish", b.Publish(ctx, "a", []byte("after-unsubscribe")))
		mustDo(t, "Publish", b.Publish(ctx, "marker", []byte("2")))
		r.waitFor(t, "marker", "2")
		got := r.all()
		slices.SortStableFunc(got, func(x, y delivery) int { return strings.Compare(x.channel, y.channel) })
		want := []delivery{{"a", "once"}, {"marker", "1"}, {"marker", "2"}}
		if !slices.Equal(got, want) {
			t.Fatalf("deliveries = %v, want %v", got, want)
		}
	})

	t.Run("PayloadBytes", func(t *testing.T) {
		r := newRecorder()
		b := newBroker(t, r.handle)
		mustDo(t, "Subscribe", b.Subscribe(ctx, "a"))
		all := make([]byte, 256)
		for i := range all {
			all[i] = byte(i)
		}
		buf := slices.Clone(all)
		mustDo(t, "Publish", b.Publish(ctx, "a", buf))
		clear(buf) // the publisher reuses its buffer
		mustDo(t, "Publish", b.Publish(ctx, "a", nil))
		mustDo(t, "Publish", b.Publish(ctx, "a", bytes.Repeat([]byte("x"), 256<<10)))
		got := r.waitFor(t, "a", string(bytes.Repeat([]byte("x"), 256<<10)))
		if len(got) != 3 || got[0].payload != string(all) || got[1].payload != "" {
			t.Fatalf("deliveries did not keep the payload bytes: %d deliveries", len(got))
		}
	})

	t.Run("OrderPreserved", func(t *testing.T) {
		r := newRecorder()
		b := newBroker(t, r.handle)
		mustDo(t, "Subscribe", b.Subscribe(ctx, "a"))
		mustDo(t, "Subscribe", b.Subscribe(ctx, "b"))
		const n = 1000
		for i := range n {
			mustDo(t, "Publish", b.Publish(ctx, "a", []byte(strconv.Itoa(i))))
			if i%3 == 0 {
				mustDo(t, "Publish", b.Publish(ctx, "b", []byte(strconv.Itoa(i))))
			}
		}
		mustDo(t, "Publish", b.Publish(ctx, "a", []byte("end")))
		mustDo(t, "Publish", b.Publish(ctx, "b", []byte("end")))
		r.waitFor(t, "a", "end")
		r.waitFor(t, "b", "end")
		// Order holds per channel; across channels only some brokers keep
		// it (see TestRedisBrokerOrderAcrossChannels).
		var seqA, seqB []string
		for _, d := range r.all() {
			switch {
			case d.payload == "end":
			case d.channel == "a":
				seqA = append(seqA, d.payload)
			default:
				seqB = append(seqB, d.payload)
			}
		}
		var wantA, wantB []string
		for i := range n {
			wantA = append(wantA, strconv.Itoa(i))
			if i%3 == 0 {
				wantB = append(wantB, strconv.Itoa(i))
			}
		}
		if !slices.Equal(seqA, wantA) {
			t.Fatalf("channel a: got %d messages, not 0..%d in order", len(seqA), n-1)
		}
		if !slices.Equal(seqB, wantB) {
			t.Fatalf("channel b: got %d messages, want %d in order", len(seqB), len(wantB))
		}
	})

	t.Run("HandlerMayPublishAndUnsubscribe", func(t *testing.T) {
		r := newRecorder()
		var b Broker
		b = newBroker(t, func(channel string, payload []byte) {
			r.handle(channel, payload)
			if channel == "ping" {
				// Runs inside the handler: must not deadlock.
				if err := b.Unsubscribe(ctx, "ping"); err != nil {
					t.Errorf("Unsubscribe from the handler: %v", err)
				}
				if err := b.Publish(ctx, "pong", payload); err != nil {
					t.Errorf("Publish from the handler: %v", err)
				}
			}
		})
		mustDo(t, "Subscribe", b.Subscribe(ctx, "ping"))
		mustDo(t, "Subscribe", b.Subscribe(ctx, "pong"))
		mustDo(t, "Publish", b.Publish(ctx, "ping", []byte("1")))
		r.waitFor(t, "pong", "1")
		mustDo(t, "Publish", b.Publish(ctx, "ping", []byte("2")))
		mustDo(t, "Publish", b.Publish(ctx, "pong", []byte("marker")))
		got := r.waitFor(t, "pong", "marker")
		want := []delivery{{"ping", "1"}, {"pong", "1"}, {"pong", "marker"}}
		if !slices.Equal(got, want) {
			t.Fatalf("deliveries = %v, want %v", got, want)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		// For the race detector: publishers, subscribers and unsubscribers at
		// once, then a check that the broker still works.
		r := newRecorder()
		b := newBroker(t, r.handle)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				ch := fmt.Sprintf("c%d", g%3)
				for i := range 50 {
					switch i % 3 {
					case 0:
						if err := b.Subscribe(ctx, ch); err != nil {
							t.Errorf("Subscribe: %v", err)
						}
					case 1:
						if err := b.Publish(ctx, ch, []byte("x")); err != nil {
							t.Errorf("Publish: %v", err)
						}
					case 2:
						if err := b.Unsubscribe(ctx, ch); err != nil {
							t.Errorf("Unsubscribe: %v", err)
						}
					}
				}
			})
		}
		wg.Wait()
		mustDo(t, "Subscribe", b.Subscribe(ctx, "after"))
		mustDo(t, "Publish", b.Publish(ctx, "after", []byte("ok")))
		r.waitFor(t, "after", "ok")
	})

	t.Run("Close", func(t *testing.T) {
		r := newRecorder()
		b := newBroker(t, r.handle)
		mustDo(t, "Subscribe", b.Subscribe(ctx, "a"))
		mustDo(t, "Close", b.Close())
		mustDo(t, "second Close", b.Close())
		if err := b.Publish(ctx, "a", []byte("x")); !errors.Is(err, ErrClosed) {
			t.Errorf("Publish after Close: err = %v, want ErrClosed", err)
		}
		if err := b.Subscribe(ctx, "a"); !errors.Is(err, ErrClosed) {
			t.Errorf("Subscribe after Close: err = %v, want ErrClosed", err)
		}
		if err := b.Unsubscribe(ctx, "a"); !errors.Is(err, ErrClosed) {
			t.Errorf("Unsubscribe after Close: err = %v, want ErrClosed", err)
		}
		if got := r.all(); len(got) != 0 {
			t.Errorf("handler called: %v", got)
		}
	})

	t.Run("CloseWaitsForHandler", func(t *testing.T) {
		entered := make(chan struct{})
		release := make(chan struct{})
		var returned sync.WaitGroup
		returned.Add(1)
		var b Broker
		b = newBroker(t, func(string, []byte) {
			close(entered)
			<-release
			returned.Done()
		})
		var releaseOnce sync.Once
		// Registered after the broker's Close, so it runs before it even
		// when the test fails early.
		t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
		mustDo(t, "Subscribe", b.Subscribe(ctx, "a"))
		go func() { _ = b.Publish(ctx, "a", []byte("x")) }()
		<-entered
		closed := make(chan struct{})
		go func() {
			_ = b.Close()
			close(closed)
		}()
		select {
		case <-closed:
			t.Fatal("Close returned while the handler was running")
		case <-time.After(50 * time.Millisecond):
		}
		releaseOnce.Do(func() { close(release) })
		<-closed
		returned.Wait()
	})
}

func TestMemoryBroker(t *testing.T) {
	testBroker(t, func(t *testing.T, h Handler) Broker {
		b := NewMemoryBroker(h)
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}

// TestMemoryBrokerIsSynchronous pins the documented behaviour: the handler
// has run when Publish returns, in the publisher's goroutine.
func TestMemoryBrokerIsSynchronous(t *testing.T) {
	var got []string
	b := NewMemoryBroker(func(channel string, payload []byte) {
		got = append(got, channel+"="+string(payload)) // no lock: same goroutine
	})
	defer b.Close()
	ctx := context.Background()
	mustDo(t, "Subscribe", b.Subscribe(ctx, "a"))
	mustDo(t, "Publish", b.Publish(ctx, "a", []byte("1")))
	if want := []string{"a=1"}; !slices.Equal(got, want) {
		t.Fatalf("after Publish returned: %v, want %v", got, want)
	}
}
