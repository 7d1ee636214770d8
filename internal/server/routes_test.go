package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func TestRoutes(t *testing.T) {
	ts := startServer(t)
	ui := fstest.MapFS{"index.html": {Data: []byte("<h1>ui</h1>")}}
	h := httptest.NewServer(ts.Routes(ui))
	defer h.Close()

	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(h.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get("/")
	if resp.StatusCode != 200 || !strings.Contains(body, "<h1>ui</h1>") {
		t.Fatalf("GET / = %d %q", resp.StatusCode, body)
	}
	for _, hdr := range []string{"Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"} {
		if resp.Header.Get(hdr) == "" {
			t.Errorf("GET / lacks %s", hdr)
		}
	}
	resp, body = get("/identity")
	var id struct{ Fingerprint string }
	if err := json.Unmarshal([]byte(body), &id); err != nil || id.Fingerprint != ts.Fingerprint().String() {
		t.Fatalf("GET /identity = %d %q (%v)", resp.StatusCode, body, err)
	}
	if resp, body = get("/healthz"); resp.StatusCode != 200 || body != "ok\n" {
		t.Fatalf("GET /healthz = %d %q", resp.StatusCode, body)
	}
	// A plain GET on /ws is not a WebSocket upgrade.
	if resp, _ = get("/ws"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("GET /ws without upgrade = %d, want 400", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, h.URL+"/healthz", nil)
	pr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pr.Body.Close()
	if pr.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /healthz = %d, want 405", pr.StatusCode)
	}
}
