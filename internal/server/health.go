package server

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Check is one backend /readyz asks about: Ping returns nil while it is
// reachable. The database is always checked; Deps.Checks adds others
// (Redis).
type Check struct {
	// Name is what /readyz reports when the check fails, e.g. "redis".
	Name string
	// Ping answers within its context's deadline.
	Ping func(ctx context.Context) error
}

// readyTimeout bounds the checks of one /readyz answer.
const readyTimeout = 2 * time.Second

// readyCacheFor is how long one /readyz answer is reused, so that a flood
// of requests on the public port costs the backends one ping each per
// period, not one per request.
const readyCacheFor = time.Second

// readiness caches the last result of the checks.
type readiness struct {
	mu     sync.Mutex
	at     time.Time
	failed []string
}

// healthz answers 200 "ok" while the process serves HTTP at all.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz answers 200 "ready" when the database and every Deps.Checks
// backend answer and the node is not draining; otherwise 503 with
// "draining" or "unavailable: NAME,…" (names only: the errors go to the
// log, never to the client).
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.Draining() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("draining\n"))
		return
	}
	if failed := s.checkBackends(r.Context()); len(failed) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("unavailable: " + strings.Join(failed, ",") + "\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// checkBackends runs the checks (at most once per readyCacheFor) and
// returns the names of those that failed.
func (s *Server) checkBackends(ctx context.Context) []string {
	s.ready.mu.Lock()
	defer s.ready.mu.Unlock()
	if !s.ready.at.IsZero() && time.Since(s.ready.at) < readyCacheFor {
		return s.ready.failed
	}
	checks := append([]Check{{Name: "database", Ping: s.store.Ping}}, s.checks...)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readyTimeout)
	defer cancel()
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { errs[i] = c.Ping(ctx) })
	}
	wg.Wait()
	var failed []string
	for i, err := range errs {
		if err != nil {
			failed = append(failed, checks[i].Name)
			s.log.Warn().Err(err).Str("backend", checks[i].Name).Msg("readiness check failed")
		}
	}
	s.ready.at, s.ready.failed = time.Now(), failed
	return failed
}

// OpsHandler serves the operator's endpoints, meant for a listener of
// their own that is not public (-metrics-addr): /metrics (Prometheus),
// /healthz and /readyz. It keeps answering while the node drains, so
// probes see "draining" until the process exits.
func (s *Server) OpsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler())
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	return mux
}
