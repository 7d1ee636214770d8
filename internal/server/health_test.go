package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secure-messenger/messenger/internal/redistest"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// get returns the status and body of GET url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// withRedisCheck adds a /readyz check of a Redis client.
func withRedisCheck(rc redis.UniversalClient) serverOption {
	return func(_ *Config, d *Deps) {
		d.Checks = append(d.Checks, Check{Name: "redis", Ping: func(ctx context.Context) error { return rc.Ping(ctx).Err() }})
	}
}

// TestReadyz: /readyz says ready when the database and Redis answer, names
// the backend that does not, and /healthz answers either way; both on the
// public routes and on the ops listener.
func TestReadyz(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		rc, _ := redistest.Client(t)
		ts := startServer(t, withRedisCheck(rc))
		for _, base := range []string{ts.http.URL, serveOps(t, ts)} {
			if code, body := get(t, base+"/readyz"); code != 200 || body != "ready\n" {
				t.Errorf("%s/readyz = %d %q, want 200 ready", base, code, body)
			}
			if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
				t.Errorf("%s/healthz = %d %q, want 200 ok", base, code, body)
			}
		}
	})
	t.Run("redis down", func(t *testing.T) {
		// A real client of an address where nothing listens any more.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		rc := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 500 * time.Millisecond, MaxRetries: -1})
		t.Cleanup(func() { rc.Close() })
		ts := startServer(t, withRedisCheck(rc))
		code, body := get(t, ts.http.URL+"/readyz")
		if code != http.StatusServiceUnavailable || body != "unavailable: redis\n" {
			t.Errorf("/readyz = %d %q, want 503 unavailable: redis", code, body)
		}
		if strings.Contains(body, addr) {
			t.Errorf("/readyz shows the backend's address: %q", body)
		}
		if code, _ := get(t, ts.http.URL+"/healthz"); code != 200 {
			t.Errorf("/healthz = %d while Redis is down, want 200 (alive)", code)
		}
	})
	t.Run("database closed", func(t *testing.T) {
		ts := startServer(t)
		_ = ts.store.Close()
		code, body := get(t, ts.http.URL+"/readyz")
		if code != http.StatusServiceUnavailable || body != "unavailable: database\n" {
			t.Errorf("/readyz = %d %q, want 503 unavailable: database", code, body)
		}
	})
}

// TestDrain: a draining node answers /readyz with 503 "draining" (on the
// ops listener too, which stays up), refuses new WebSockets with 503, and
// serves the connections it has until Shutdown closes them with the
// documented going_away (close status 4020); their sessions stay
// resumable.
func TestDrain(t *testing.T) {
	ts := startServer(t, withMetrics)
	ops := serveOps(t, ts)
	ctx := ctxT(t)
	c := ts.dial(t)
	if _, err := c.Join(ctx, "drain", ""); err != nil {
		t.Fatal(err)
	}

	ts.Drain()
	for _, base := range []string{ts.http.URL, ops} {
		if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || body != "draining\n" {
			t.Errorf("%s/readyz while draining = %d %q, want 503 draining", base, code, body)
		}
	}
	if code, _ := get(t, ops+"/healthz"); code != 200 {
		t.Errorf("/healthz while draining = %d, want 200", code)
	}
	if got := scrape(t, ops+"/metrics")["messenger_draining"]; got != 1 {
		t.Errorf("messenger_draining = %v, want 1", got)
	}
	if _, err := client.Dial(ctx, ts.clientConfig()); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("dial while draining: %v, want refused with 503", err)
	}
	// The open connection still works.
	if _, err := c.Send(ctx, "drain", "still here"); err != nil {
		t.Fatalf("send while draining: %v", err)
	}

	ticket := c.Ticket()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	err := waitEnd(t, c)
	var pe *protocol.PeerError
	if !errors.As(err, &pe) || pe.Code != protocol.CodeGoingAway || !pe.Sealed {
		t.Fatalf("connection ended with %v, want a sealed going_away", err)
	}
	// Another node sharing the session store would resume it; here the
	// record is still there.
	if _, err := ts.sessions.load(ctx, ticket.ID); err != nil {
		t.Errorf("session after drain: %v, want still resumable", err)
	}
}
