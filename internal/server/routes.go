package server

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"time"
)

// Routes returns the server's whole HTTP surface:
//
//	GET /ws        the messenger protocol over WebSocket
//	GET /healthz   liveness, 200 "ok"
//	GET /readyz    readiness: 200 "ready", 503 while draining or a backend is down
//	GET /identity  the identity key's fingerprint, as JSON
//	GET /          the browser UI (static files from ui)
//
// Every response carries the security headers of headers.go.
func (s *Server) Routes(ui fs.FS) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.ServeWS)
	mux.HandleFunc("GET /healthz", s.healthz) // health.go
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /identity", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"fingerprint": s.fp.String(), "algorithm": "sha256-pkix-der"})
	})
	if ui != nil {
		mux.Handle("GET /", noCache(http.FileServerFS(ui)))
	}
	return securityHeaders(mux)
}

// HTTPServer returns the http.Server that serves Routes(ui), with every
// timeout set: a client that sends its headers slowly, holds a request open
// or leaves a keep-alive connection idle is cut off (Config.HTTPReadTimeout,
// Config.HTTPIdleTimeout). A WebSocket, once upgraded, runs on its own
// deadlines (handshake timeout, pings, write timeout).
func (s *Server) HTTPServer(ui fs.FS) *http.Server {
	return &http.Server{
		Handler:           s.Routes(ui),
		ReadHeaderTimeout: min(10*time.Second, s.cfg.HTTPReadTimeout),
		ReadTimeout:       s.cfg.HTTPReadTimeout,
		WriteTimeout:      s.cfg.HTTPReadTimeout + s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.HTTPIdleTimeout,
		MaxHeaderBytes:    16 << 10,
	}
}
