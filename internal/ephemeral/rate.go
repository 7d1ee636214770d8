package ephemeral

import (
	"context"
	"fmt"
	"strconv"
	"strings"
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

// Interval is the time in which one token refills (Per / Limit).
func (r Rate) Interval() time.Duration {
	n := r.normal()
	return n.Per / time.Duration(max(n.Limit, 1))
}

// BucketSize is the burst, Limit when Burst is zero.
func (r Rate) BucketSize() int { return r.normal().Burst }

// String renders r in the syntax ParseRate reads, e.g. "10/s:30".
func (r Rate) String() string {
	if r.Unlimited() {
		return "off"
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
	return fmt.Sprintf("%d/%s:%d", n.Limit, per, n.Burst)
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

// ParseRate reads a Rate written as "N/UNIT" or "N/UNIT:BURST", with UNIT
// one of s, min, h (so "10/s:30" is ten a second with a burst of 30, and
// "600/min" is ten a second with a burst of 600); "N" alone is per second.
// "0" and "off" mean unlimited, returned as a Rate whose Limit is -1 (the
// zero Rate stands for "the default" in configurations).
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "0" || strings.EqualFold(s, "off") {
		return Rate{Limit: -1}, nil
	}
	spec, burstText, hasBurst := strings.Cut(s, ":")
	num, unit, _ := strings.Cut(spec, "/")
	r := Rate{Per: time.Second}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n <= 0 {
		return Rate{}, fmt.Errorf("rate %q: want N/s, N/min or N/h, optionally :BURST, or off", s)
	}
	r.Limit = n
	switch strings.TrimSpace(unit) {
	case "", "s":
	case "min", "m":
		r.Per = time.Minute
	case "h":
		r.Per = time.Hour
	default:
		return Rate{}, fmt.Errorf("rate %q: unit %q, want s, min or h", s, unit)
	}
	r.Burst = n
	if hasBurst {
		b, err := strconv.Atoi(strings.TrimSpace(burstText))
		if err != nil || b <= 0 {
			return Rate{}, fmt.Errorf("rate %q: burst must be a positive integer", s)
		}
		r.Burst = b
	}
	return r, nil
}
