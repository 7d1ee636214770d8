package ephemeral

import (
	"context"
	"fmt"
	"time"
)

// Rate is a token bucket: Burst events at once, refilled at Limit events
// per Per. The zero Rate (Limit 0) means unlimited.
type Rate struct {
	// Limit is how many events are allowed per Per, sustained.
	Limit int
	// Per is the period of Limit. Zero means one second.
	Per time.Duration
	// Burst is how many events may come at once. Zero means Limit.
	Burst int
}

// PerSecond returns a Rate of n events a second with a burst of burst.
func PerSecond(n, burst int) Rate { return Rate{Limit: n, Per: time.Second, Burst: burst} }

// Unlimited reports whether r allows everything.
func (r Rate) Unlimited() bool { return r.Limit <= 0 }

// normal returns r with its zero fields set to their documented defaults.
func (r Rate) normal() Rate {
	if r.Per <= 0 {
		r.Per = time.Second
	}
	if r.Burst <= 0 {
		r.Burst = r.Limit
	}
	return r
}

// String renders r as "10/s burst 20".
func (r Rate) String() string {
	if r.Unlimited() {
		return "unlimited"
	}
	n := r.normal()
	per := n.Per.String()
	switch n.Per {
	case time.Second:
		per = "s"
	case time.Minute:
		per = "min"
	case time.Hour:
		per = "h"
	}
	return fmt.Sprintf("%d/%s burst %d", n.Limit, per, n.Burst)
}

// RateLimiter decides, per key, whether one more event fits a token bucket
// (the generic cell rate algorithm). It limits how fast things may happen
// (requests, sends, handshakes), where Limiter counts failures in a fixed
// window.
type RateLimiter interface {
	// Allow takes one token from key's bucket, shaped by r. It returns
	// true when the event may happen; otherwise false and how long until a
	// token is free. An unlimited r always allows and touches nothing. A
	// backend that cannot answer returns an error wrapping ErrUnavailable;
	// callers refuse the event then.
	Allow(ctx context.Context, key string, r Rate) (bool, time.Duration, error)
}
