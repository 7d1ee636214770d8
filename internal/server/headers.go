package server

import "net/http"

// ContentSecurityPolicy is sent with every response. The browser UI is
// plain ES modules and one stylesheet from this origin: no inline script
// or style, no eval, nothing from elsewhere, no framing. connect-src
// 'self' covers the WebSocket at /ws on the same origin (ws: or wss:).
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// PermissionsPolicy turns off the powerful features the UI never uses.
const PermissionsPolicy = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), bluetooth=(), " +
	"midi=(), magnetometer=(), gyroscope=(), accelerometer=(), display-capture=(), interest-cohort=()"

// securityHeaders sets the security headers on every response, the UI's
// pages and files as well as /identity, /healthz and refused upgrades.
// Strict-Transport-Security goes out only over TLS (the server's own,
// -tls-cert or -acme-domain): over plain HTTP a browser ignores it.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", PermissionsPolicy)
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

// noCache makes browsers revalidate the UI's files, so that a new server
// binary's UI is what they run (the embedded files carry no dates).
func noCache(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}
