package ephemeral

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Test for them with errors.Is; the errors returned by the
// backends wrap them.
var (
	// ErrNotFound reports that a session id is unknown or has expired.
	ErrNotFound = errors.New("ephemeral: not found")
	// ErrUnavailable reports that the backend could not serve the request: a
	// Redis connection failure, or a memory backend that is full. The error
	// wrapping it also wraps the cause, if any.
	ErrUnavailable = errors.New("ephemeral: backend unavailable")
	// ErrInvalidTTL reports a TTL or window that is zero or negative.
	ErrInvalidTTL = errors.New("ephemeral: ttl must be positive")
)

// SessionStore maps a session id to an opaque record with a time to live.
// The record is sealed by the caller; the store never looks inside it.
type SessionStore interface {
	// Put stores record under id for ttl, replacing any record id had.
	Put(ctx context.Context, id string, record []byte, ttl time.Duration) error
	// Get returns the record stored under id, or ErrNotFound when there is
	// none or it has expired.
	Get(ctx context.Context, id string) ([]byte, error)
	// Touch sets the remaining time to live of id to ttl (which may extend or
	// shorten it). It returns ErrNotFound when there is no such session.
	Touch(ctx context.Context, id string, ttl time.Duration) error
	// Replace stores record under id for ttl only if id has a live record,
	// atomically; otherwise it returns ErrNotFound and stores nothing. A
	// session deleted (ended) meanwhile is never brought back by a refresh.
	Replace(ctx context.Context, id string, record []byte, ttl time.Duration) error
	// Delete removes id. Deleting an unknown id is not an error.
	Delete(ctx context.Context, id string) error
}

// Limiter counts events per key in a fixed window (login throttling per
// account and per address).
//
// A caller that limits an expensive attempt (a password check) reserves it
// with Reserve before doing the work, so that concurrent attempts cannot all
// pass a check made before any of them is counted.
type Limiter interface {
	// Hit counts one event for key and returns the count within the current
	// window. A window starts at the first hit after the previous window (if
	// any) ended and lasts window; later hits in it do not extend it, so the
	// window argument of those hits is ignored.
	Hit(ctx context.Context, key string, window time.Duration) (int64, error)
	// Count returns the count of the current window without adding one, or 0
	// when key has no current window.
	Count(ctx context.Context, key string) (int64, error)
	// Reset forgets key, so that its next Hit starts a new window.
	Reset(ctx context.Context, key string) error
	// Reserve takes one attempt for key if its count in the current window
	// is below limit: it then counts the attempt and returns true and the
	// new count. Otherwise it counts nothing and returns false and the
	// current count. The check and the count are one atomic step, so of
	// concurrent Reserves of one key at most limit minus the count before
	// them return true. The first attempt counted starts a window of length
	// window, as with Hit. A limit below 1 refuses every attempt.
	Reserve(ctx context.Context, key string, limit int64, window time.Duration) (allowed bool, n int64, err error)
	// Release gives back one attempt that Reserve (or Hit) counted: it
	// lowers key's count by one, never below zero, and leaves the end of
	// the window where it was. Releasing a key without a current window
	// does nothing.
	Release(ctx context.Context, key string) error
}

// unavailableError wraps a backend failure so that both ErrUnavailable and
// the cause match errors.Is and errors.As.
type unavailableError struct {
	op    string // what failed, e.g. "redis get session"
	cause error  // may be nil
}

// Error names the operation and the cause, never the keys or values.
func (e *unavailableError) Error() string {
	if e.cause == nil {
		return "ephemeral: " + e.op + ": backend unavailable"
	}
	return "ephemeral: " + e.op + ": backend unavailable: " + e.cause.Error()
}

// Unwrap exposes ErrUnavailable and the cause to errors.Is and errors.As.
func (e *unavailableError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrUnavailable}
	}
	return []error{ErrUnavailable, e.cause}
}

// unavailable returns an error for op that wraps ErrUnavailable and cause.
func unavailable(op string, cause error) error {
	return &unavailableError{op: op, cause: cause}
}

// checkTTL returns an error wrapping ErrInvalidTTL when ttl is not positive.
func checkTTL(op string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("ephemeral: %s: %w (got %v)", op, ErrInvalidTTL, ttl)
	}
	return nil
}
