package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/acme/autocert"
)

// tlsOptions are the server's own TLS settings: a certificate and key
// from files, or certificates obtained and renewed automatically over
// ACME (TLS-ALPN-01 on the listening port, which must then be what
// the public reaches as 443). Neither: plain HTTP, for localhost or
// behind a TLS reverse proxy (deploy/README.md).
type tlsOptions struct {
	certFile, keyFile string
	acmeDomains       string
	acmeEmail         string
}

// enabled reports whether the server speaks TLS itself.
func (t tlsOptions) enabled() bool { return t.certFile != "" || t.acmeDomains != "" }

// check refuses half or contradictory settings.
func (t tlsOptions) check() error {
	if (t.certFile == "") != (t.keyFile == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	if t.certFile != "" && t.acmeDomains != "" {
		return errors.New("-tls-cert/-tls-key and -acme-domain exclude each other")
	}
	if t.acmeEmail != "" && t.acmeDomains == "" {
		return errors.New("-acme-email needs -acme-domain")
	}
	for _, d := range splitList(t.acmeDomains) {
		if strings.ContainsAny(d, "/:*") {
			return fmt.Errorf("-acme-domain %q: want a host name (no scheme, port or wildcard)", d)
		}
	}
	return nil
}

// config returns the TLS configuration: the certificate files are loaded
// now (an unreadable or mismatched pair is an error at start-up), the
// ACME manager keeps its account and certificates in dataDir/acme (0700).
func (t tlsOptions) config(dataDir string) (*tls.Config, error) {
	if t.certFile != "" {
		cert, err := tls.LoadX509KeyPair(t.certFile, t.keyFile)
		if err != nil {
			return nil, fmt.Errorf("-tls-cert/-tls-key: %w", err)
		}
		return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}, nil
	}
	cache := filepath.Join(dataDir, "acme")
	if err := os.MkdirAll(cache, 0o700); err != nil {
		return nil, fmt.Errorf("acme cache: %w", err)
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(cache),
		HostPolicy: autocert.HostWhitelist(splitList(t.acmeDomains)...),
		Email:      t.acmeEmail,
	}
	c := m.TLSConfig()
	c.MinVersion = tls.VersionTLS12
	c.NextProtos = []string{"http/1.1", "acme-tls/1"} // no h2: the WebSocket upgrade is HTTP/1.1
	return c, nil
}

// tlsOrigins are the default public origins when the server speaks TLS:
// https:// plus each ACME name (with the port unless it is 443), or the
// listen address for a certificate from files.
func (t tlsOptions) origins(addr net.Addr) []string {
	_, port, _ := net.SplitHostPort(addr.String())
	suffix := ""
	if port != "443" {
		suffix = ":" + port
	}
	var out []string
	for _, d := range splitList(t.acmeDomains) {
		out = append(out, "https://"+strings.ToLower(d)+suffix)
	}
	if len(out) > 0 {
		return out
	}
	for _, o := range defaultOrigins(addr) {
		out = append(out, "https://"+strings.TrimPrefix(o, "http://"))
	}
	return out
}

// serve runs srv on ln, over TLS when cfg is not nil.
func serve(srv *http.Server, ln net.Listener, cfg *tls.Config) error {
	if cfg == nil {
		return srv.Serve(ln)
	}
	srv.TLSConfig = cfg
	return srv.ServeTLS(ln, "", "")
}
