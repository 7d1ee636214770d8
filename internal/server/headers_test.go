package server

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

// TestSecurityHeaders: every response, the UI's and the others', refused
// ones included, carries the strict CSP and the other headers; HSTS only
// over TLS.
func TestSecurityHeaders(t *testing.T) {
	ts := startServer(t)
	ui := fstest.MapFS{"index.html": {Data: []byte("<h1>ui</h1>")}, "js/app.js": {Data: []byte("1")}}
	want := map[string]string{
		"Content-Security-Policy":      ContentSecurityPolicy,
		"X-Content-Type-Options":       "nosniff",
		"Referrer-Policy":              "no-referrer",
		"X-Frame-Options":              "DENY",
		"Cross-Origin-Opener-Policy":   "same-origin",
		"Cross-Origin-Resource-Policy": "same-origin",
		"Permissions-Policy":           PermissionsPolicy,
	}
	for _, c := range []struct {
		name string
		srv  *httptest.Server
		hsts bool
	}{
		{"http", httptest.NewServer(ts.Routes(ui)), false},
		{"https", httptest.NewTLSServer(ts.Routes(ui)), true},
	} {
		defer c.srv.Close()
		cl := c.srv.Client()
		cl.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // the test server's own certificate
		for _, path := range []string{"/", "/js/app.js", "/identity", "/healthz", "/ws", "/missing"} {
			resp, err := cl.Get(c.srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s %s (%d): %s = %q, want %q", c.name, path, resp.StatusCode, k, got, v)
				}
			}
			if hsts := resp.Header.Get("Strict-Transport-Security"); (hsts != "") != c.hsts {
				t.Errorf("%s %s: Strict-Transport-Security = %q", c.name, path, hsts)
			}
		}
	}
	for _, bad := range []string{"'unsafe-inline'", "'unsafe-eval'", "*", "data:"} {
		if strings.Contains(ContentSecurityPolicy, bad) {
			t.Errorf("CSP allows %s", bad)
		}
	}
}
