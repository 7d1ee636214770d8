package server

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/internal/metrics"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// withMetrics gives the server a fresh Metrics.
func withMetrics(_ *Config, d *Deps) { d.Metrics = metrics.New() }

// serveOps serves ts.OpsHandler on a real listener of its own, as
// -metrics-addr does, and returns its URL.
func serveOps(t *testing.T, ts *testServer) string {
	ops := httptest.NewServer(ts.OpsHandler())
	t.Cleanup(ops.Close)
	return ops.URL
}

// scrape fetches url over HTTP and returns every sample as
// "name{label="value",…}" → value, labels sorted.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[key+"_count"] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

// TestMetricsAfterTraffic drives real WebSocket traffic through a server
// and checks, over a real scrape of /metrics, that each counter moved by
// exactly what the traffic did.
func TestMetricsAfterTraffic(t *testing.T) {
	ts := startServer(t, withMetrics, func(c *Config, _ *Deps) {
		c.Limits.SendRate = ephemeral.Rate{Limit: 1, Per: time.Hour, Burst: 3}
	})
	opsURL := serveOps(t, ts)
	ctx := ctxT(t)

	// A handshake the client aborts: it pinned another key.
	_, impostor := keys(t)
	der, _ := x509.MarshalPKIXPublicKey(&impostor.PublicKey)
	bad := ts.clientConfig()
	bad.VerifyIdentity = client.Pin(protocol.FingerprintOf(der))
	if _, err := client.Dial(ctx, bad); err == nil {
		t.Fatal("dial with the wrong pin succeeded")
	}

	a := ts.dial(t)
	responses := 0
	join := &protocol.Message{Type: protocol.MsgJoin, Room: "metrics"}
	if _, err := a.Request(ctx, join); err != nil {
		t.Fatal(err)
	}
	responses++
	// The same id again: replayed_id.
	again := &protocol.Message{Type: protocol.MsgJoin, Room: "metrics", ID: join.ID}
	if _, err := a.Request(ctx, again); !errorsIsCode(err, protocol.CodeReplayedID) {
		t.Fatalf("reused id: %v, want replayed_id", err)
	}
	responses++
	for i := range 3 {
		if _, err := a.Send(ctx, "metrics", fmt.Sprintf("m%d", i)); err != nil {
			t.Fatal(err)
		}
		responses++
	}
	if _, err := a.Send(ctx, "metrics", "one too many"); !errorsIsCode(err, protocol.CodeRateLimited) {
		t.Fatalf("fourth send: %v, want rate_limited", err)
	}
	responses++
	// Every push the hub queued before the third echo has arrived once it
	// has (one hub goroutine, in order).
	pushes, echoes := 0, 0
	timeout := time.After(10 * time.Second)
	for echoes < 3 {
		select {
		case m, ok := <-a.Messages():
			if !ok {
				t.Fatalf("connection ended: %v", a.Err())
			}
			pushes++
			if m.Type == protocol.MsgMessage {
				echoes++
			}
		case <-timeout:
			t.Fatalf("%d of 3 echoes arrived", echoes)
		}
	}

	got := scrape(t, opsURL+"/metrics")
	want := map[string]float64{
		"messenger_connections":                                        1,
		"messenger_connections_total":                                  1,
		`messenger_handshakes_total{result="full"}`:                    1,
		`messenger_handshakes_total{result="bad_signature"}`:           1,
		`messenger_handshake_duration_seconds{outcome="full"}_count`:   1,
		`messenger_handshake_duration_seconds{outcome="failed"}_count`: 1,
		// join, the replayed join, four sends.
		`messenger_messages_total{direction="in"}`: 6,
		// ready, the answers, the pushes.
		`messenger_messages_total{direction="out"}`:              float64(1 + responses + pushes),
		`messenger_requests_rejected_total{code="replayed_id"}`:  1,
		`messenger_requests_rejected_total{code="rate_limited"}`: 1,
		"messenger_replays_rejected_total":                       1,
		`messenger_rate_limited_total{kind="send"}`:              1,
		"messenger_draining":                                     0,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for _, dir := range []string{"in", "out"} {
		n, b := got[`messenger_messages_total{direction="`+dir+`"}`], got[`messenger_bytes_total{direction="`+dir+`"}`]
		// A record is at least its 16-byte authentication tag.
		if b < n*16 {
			t.Errorf("bytes %s = %v for %v records, want at least 16 each", dir, b, n)
		}
	}

	// The connection ends: the gauge goes back to 0, the total stays.
	a.Close()
	waitFor(t, "the connections gauge back at 0", func() bool { return scrape(t, opsURL+"/metrics")["messenger_connections"] == 0 })
	if got := scrape(t, opsURL+"/metrics")["messenger_connections_total"]; got != 1 {
		t.Errorf("connections_total after close = %v, want 1", got)
	}
}

func errorsIsCode(err error, code protocol.Code) bool { return errors.Is(err, code) }
