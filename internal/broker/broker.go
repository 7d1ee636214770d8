package broker

import (
	"context"
	"errors"
	"fmt"
)

// Handler receives a message published to a channel (on any node). The
// payload is the handler's own. The handler may call Publish and Unsubscribe
// but not Subscribe or Close: the Redis broker runs the handler on the
// goroutine that reads Redis, and Subscribe waits for that goroutine to see
// Redis confirm the subscription, Close for it to exit.
type Handler func(channel string, payload []byte)

// Broker carries room traffic between the nodes' hubs. On one node the memory
// broker loops back; behind one Redis the Redis broker fans out to every
// node. Each Broker delivers to the Handler given to its constructor.
//
// Subscriptions are a set, not a count: subscribing twice to a channel and
// unsubscribing once leaves it unsubscribed.
//
// The messages one goroutine publishes to one channel are delivered in
// publish order. Across channels, the memory broker and the Redis broker
// on one Redis keep that order too, but the Redis broker on a Redis
// Cluster does not (channels of different partitions travel over
// different shards).
type Broker interface {
	// Publish sends payload to every broker subscribed to channel, this one
	// included. The broker does not keep payload after Publish returns.
	Publish(ctx context.Context, channel string, payload []byte) error
	// Subscribe makes the broker deliver the messages of channel to its
	// handler. When it returns nil, every message published to channel
	// afterwards is delivered. When it returns an error other than
	// ErrClosed, channel may or may not be subscribed; call Unsubscribe to
	// be sure it is not.
	Subscribe(ctx context.Context, channel string) error
	// Unsubscribe stops delivery of channel's messages to the handler. After
	// it returns, the handler is not called for channel again except for a
	// call already in progress. Unsubscribing from a channel that is not
	// subscribed is not an error.
	Unsubscribe(ctx context.Context, channel string) error
	// Close stops delivery and releases the broker's connections and
	// goroutines; after it returns, the handler is not called again. Other
	// methods then fail with ErrClosed. Closing twice is not an error.
	Close() error
}

// Reconnecter is implemented by brokers that can lose messages while they
// reconnect to their backend (the Redis broker). Reconnects counts the
// times the broker subscribed again to a channel it had been subscribed
// to: after each, whatever was published meanwhile is lost, and whoever
// relies on the channel should look for what it missed (the hub reads
// the room streams it receives; see internal/server/gapfill.go).
type Reconnecter interface {
	Reconnects() uint64
}

// Sentinel errors. The errors the brokers return wrap them; test with
// errors.Is.
var (
	// ErrClosed reports the use of a broker after Close.
	ErrClosed = errors.New("broker: closed")
	// ErrUnavailable reports that the broker could not reach its backend
	// (Redis). The error wrapping it also wraps the cause.
	ErrUnavailable = errors.New("broker: backend unavailable")
	// ErrInvalidKey reports a RedisConfig.Key that is not 32 bytes long.
	ErrInvalidKey = errors.New("broker: key must be 32 bytes")
)

// unavailableError wraps a backend failure so that both ErrUnavailable and
// the cause match errors.Is and errors.As.
type unavailableError struct {
	op    string // what failed, e.g. "redis publish"
	cause error
}

// Error names the operation and the cause, never the keys or values.
func (e *unavailableError) Error() string {
	return fmt.Sprintf("broker: %s: backend unavailable: %v", e.op, e.cause)
}

// Unwrap exposes ErrUnavailable and the cause to errors.Is and errors.As.
func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.cause} }

func unavailable(op string, cause error) error {
	return &unavailableError{op: op, cause: cause}
}
