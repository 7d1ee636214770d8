package main

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// samples collects durations from many goroutines.
type samples struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *samples) add(d time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
}

func (s *samples) addAll(d []time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d...)
	s.mu.Unlock()
}

// Percentiles summarises a set of durations (nearest rank), in
// milliseconds.
type Percentiles struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p99_9_ms"`
	Max  float64 `json:"max_ms"`
}

func (s *samples) percentiles() Percentiles {
	s.mu.Lock()
	d := slices.Clone(s.d)
	s.mu.Unlock()
	return percentilesOf(d)
}

func percentilesOf(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	slices.Sort(d)
	at := func(q float64) float64 {
		i := int(q*float64(len(d))+0.999999) - 1
		i = max(0, min(i, len(d)-1))
		return ms(d[i])
	}
	return Percentiles{N: len(d), P50: at(0.50), P90: at(0.90), P99: at(0.99), P999: at(0.999), Max: ms(d[len(d)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (p Percentiles) String() string {
	if p.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%s / %s / %s / %s / %s", fmtMs(p.P50), fmtMs(p.P90), fmtMs(p.P99), fmtMs(p.P999), fmtMs(p.Max))
}

func fmtMs(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// errorCounts counts failures by protocol code (or "other"; with
// -target centrifugo, Centrifugo's error and disconnect codes by number).
type errorCounts struct {
	mu sync.Mutex
	m  map[string]int
}

func (e *errorCounts) add(err error) {
	if err == nil {
		return
	}
	key := protocol.CodeOf(err).String()
	var other interface{ countKey() string }
	switch {
	case errors.As(err, &other): // another server's own codes (-target)
		key = other.countKey()
	case protocol.CodeOf(err) == protocol.CodeInternal:
		key = "other"
	}
	e.mu.Lock()
	if e.m == nil {
		e.m = map[string]int{}
	}
	e.m[key]++
	e.mu.Unlock()
}

func (e *errorCounts) snapshot() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.m))
	for k, v := range e.m {
		out[k] = v
	}
	return out
}

func (e *errorCounts) reset() {
	e.mu.Lock()
	e.m = nil
	e.mu.Unlock()
}

func formatErrors(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s×%d", k, m[k])
	}
	return s
}
