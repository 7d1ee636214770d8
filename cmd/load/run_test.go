package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/internal/server"
	"github.com/secure-messenger/messenger/internal/servertest"
)

// startServer runs a real server (anonymous rooms, limits off, SQLite) on
// an httptest listener and returns its WebSocket URL.
func startServer(t *testing.T) string {
	t.Helper()
	limits := server.Limits{MaxConnectionsPerAddr: -1, MaxHandshakesPerAddr: -1}
	for _, r := range []*ephemeral.Rate{&limits.HandshakeRate, &limits.RequestRate, &limits.UserRequestRate, &limits.SendRate, &limits.RoomSendRate} {
		*r = ephemeral.Rate{Limit: -1} // off
	}
	return servertest.Start(t, server.Config{AllowAnonymous: true, Limits: limits}, zerolog.Nop()).URL
}

// TestLoadRunsEveryScenario runs the tool at a small size against a real
// server and checks what it reports: every connection established, some
// resumptions, and every fan-out message delivered to every member.
func TestLoadRunsEveryScenario(t *testing.T) {
	url := startServer(t)
	htmlPath := filepath.Join(t.TempDir(), "out.html")
	rep, out := runJSON(t, context.Background(), "-url", url, "-scenario", "handshake,connect,resume,fanout", "-handshake-for", "1s", "-sign-bits", "2048", "-conns", "12", "-concurrency", "4", "-room-size", "3", "-hold", "100ms",
		"-resume-for", "500ms", "-members", "5", "-rates", "20", "-duration", "500ms", "-drain", "20s",
		"-keys", "2", "-server-pid", "0", "-html", htmlPath)
	for _, want := range []string{"pool of 2 pre-generated RSA-2048 keys", "| established | 12 of 12 |", "## handshake:", "## resume:", "## fanout: one room of 5 members"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if h := rep.Handshake; h == nil || h.Handshakes == 0 || len(h.Errors) != 0 || h.SignPerSecond <= 0 || h.Ratio <= 0 || h.SignBits != 2048 {
		t.Errorf("handshake: %+v", rep.Handshake)
	}
	if rep.Connect == nil || rep.Connect.Established != 12 || len(rep.Connect.Errors) != 0 {
		t.Errorf("connect: %+v", rep.Connect)
	}
	if rep.Resume == nil || rep.Resume.Resumed == 0 || len(rep.Resume.Errors) != 0 {
		t.Errorf("resume: %+v", rep.Resume)
	}
	if len(rep.Fanout) != 1 || len(rep.Fanout[0].Rounds) != 1 {
		t.Fatalf("fanout: %+v", rep.Fanout)
	}
	r := rep.Fanout[0].Rounds[0]
	if r.Sent != 10 || r.Delivered != 50 || r.Expected != 50 || r.Latency.N != 50 || r.PublisherLost {
		t.Errorf("fanout round: %+v", r)
	}
	inHist, inSeries := 0, 0.0
	for _, b := range r.Histogram {
		inHist += b.Count
	}
	for _, v := range r.Throughput {
		inSeries += v / 10 // each 100 ms bar is a rate per second
	}
	if inHist != 50 || math.Round(inSeries) != 50 {
		t.Errorf("histogram holds %d and the throughput series %.1f deliveries, want 50 each", inHist, inSeries)
	}
	page, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "5 members, 20 publishes/s", "delivery latency", "deliveries per second over time", `<rect class="bar"`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("HTML report lacks %q", want)
		}
	}
	if strings.Contains(string(page), "<script") {
		t.Error("HTML report has a script")
	}
}

// TestOptionsRefuseBadInput: each bad flag value gets an error naming it.
func TestOptionsRefuseBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-scenario", "storm"}, "unknown scenario"},
		{[]string{"-members", "10,x"}, "-members"},
		{[]string{"-rates", "0"}, "-rates"},
		{[]string{"-size", "10"}, "-size"},
		{[]string{"-conns", "0"}, "-conns"},
		{[]string{"-key-bits", "1024"}, "-key-bits"},
		{[]string{"-sign-bits", "1024"}, "-sign-bits"},
		{[]string{"-handshake-for", "0s"}, "-handshake-for"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"-connect-by", "magic"}, "-connect-by"},
		{[]string{"-connect-by", "resume", "-target", "centrifugo", "-url", "ws://127.0.0.1:1/connection/websocket"}, "only the messenger"},
	} {
		_, err := parseOptions(tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

func TestParseHead(t *testing.T) {
	k, ts, ok := parseHead("3:1795594328328000000:xxxx")
	if !ok || k != 3 || ts != 1795594328328000000 {
		t.Fatalf("parseHead = %d, %d, %v", k, ts, ok)
	}
	for _, bad := range []string{"", "3", "3:", "x:1:", "3:y:"} {
		if _, _, ok := parseHead(bad); ok {
			t.Errorf("parseHead(%q) accepted", bad)
		}
	}
}

// runJSON runs the tool with args and -json, failing t if it fails, and
// returns the report it wrote and what it printed.
func runJSON(t *testing.T, ctx context.Context, args ...string) (*Report, string) {
	t.Helper()
	jsonPath := filepath.Join(t.TempDir(), "out.json")
	var stdout, stderr bytes.Buffer
	if err := run(ctx, append(args, "-json", jsonPath), &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return &rep, stdout.String()
}

// TestConnectByResume: -connect-by resume opens every timed connection by
// resuming a session made beforehand, and the server says each resumed.
func TestConnectByResume(t *testing.T) {
	url := startServer(t)
	rep, out := runJSON(t, context.Background(), "-url", url, "-scenario", "connect", "-connect-by", "resume", "-conns", "15", "-concurrency", "4", "-room-size", "5", "-hold", "100ms", "-keys", "2")
	if c := rep.Connect; c == nil || c.Established != 15 || c.Resumed != 15 || len(c.Errors) != 0 || c.Opens != "resumption + join" {
		t.Fatalf("connect: %+v", rep.Connect)
	}
	if !strings.Contains(out, "| of them resumed | 15 |") {
		t.Errorf("output:\n%s", out)
	}
}
