package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/server"
)

// opsServer is the operators' listener (-metrics-addr).
type opsServer struct {
	srv  *http.Server
	addr net.Addr
}

// serveOps starts the operators' listener on addr: /metrics, /healthz,
// /readyz (server.OpsHandler), and with withPprof Go's profiler under
// /debug/pprof/ (net/http/pprof). Empty addr: none. A failure to serve is
// sent to errs. It stays up while the node drains, so that probes see
// "draining", and closes when run returns.
func serveOps(addr string, withPprof bool, srv *server.Server, errs chan<- error) (*opsServer, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics-addr: %w", err)
	}
	var h http.Handler = srv.OpsHandler()
	if withPprof {
		mux := http.NewServeMux()
		mux.Handle("/", h)
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		h = mux
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("metrics listener: %w", err)
		}
	}()
	return &opsServer{srv: hs, addr: ln.Addr()}, nil
}

// drain ends the node gracefully within timeout (-drain-timeout): it
// marks the node draining (/readyz answers 503, new WebSockets are refused
// with 503), stops accepting connections, tells every client to reconnect
// elsewhere (a sealed going_away error, then close status 4020; their
// sessions stay resumable on the other nodes), and waits for the
// connections to end. What is still open at the deadline is cut.
func drain(srv *server.Server, httpSrv *http.Server, timeout time.Duration, log zerolog.Logger) {
	start := time.Now()
	srv.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Shutdown closes the listener at once and waits for plain HTTP
	// requests; upgraded WebSockets are the server's to close.
	if err := httpSrv.Shutdown(ctx); err != nil {
		log.Warn().Err(err).Msg("drain: HTTP requests still running at the deadline")
	}
	left := srv.Connections()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn().Err(err).Int("connections", srv.Connections()).Msg("drain: deadline reached; the rest are cut")
		_ = httpSrv.Close()
		return
	}
	log.Info().Int("connections", left).Dur("took", time.Since(start)).Msg("drained")
}
