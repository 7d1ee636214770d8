package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/internal/server"
	"github.com/secure-messenger/messenger/internal/servertest"
)

// startAccountsServer runs a real server (accounts only, no anonymous
// rooms) with its limits off, registration included, the way
// docs/benchmarks.md says to run one for the conv and bot scenarios.
func startAccountsServer(t *testing.T) *servertest.Server {
	t.Helper()
	limits := server.Limits{MaxConnectionsPerAddr: -1, MaxHandshakesPerAddr: -1}
	for _, r := range []*ephemeral.Rate{&limits.HandshakeRate, &limits.RequestRate, &limits.UserRequestRate, &limits.SendRate, &limits.RoomSendRate, &limits.StreamRate} {
		*r = ephemeral.Rate{Limit: -1} // off
	}
	return servertest.Start(t, server.Config{RegisterPerAddr: 1_000_000, Limits: limits}, zerolog.Nop())
}

// runReport runs the tool with args against url and returns its report
// and printed output.
func runReport(t *testing.T, url string, args ...string) (*Report, string) {
	t.Helper()
	return runJSON(t, context.Background(), append([]string{"-url", url, "-keys", "2", "-key-bits", "2048", "-identity-keys", "2", "-identity-bits", "2048", "-concurrency", "4"}, args...)...)
}

// Two pairs, each A sending 5 texts in one second: every text is
// delivered to its B exactly once, verified and decrypted, and (with
// replies) every answer to its A; then the same in one direction.
func TestConvDeliversEveryMessageOnce(t *testing.T) {
	ts := startAccountsServer(t)
	htmlPath := filepath.Join(t.TempDir(), "out.html")
	rep, out := runReport(t, ts.URL, "-scenario", "conv", "-pairs", "2", "-conv-rate", "5", "-conv-for", "1s", "-drain", "20s", "-html", htmlPath)
	c := rep.Conv
	if c == nil {
		t.Fatalf("no conv result:\n%s", out)
	}
	if c.Ready != 2 || len(c.SetupErrors) != 0 {
		t.Errorf("set-up: %d pairs, errors %v", c.Ready, c.SetupErrors)
	}
	// Each A's sends are due at 0, 200, …, 800 ms (B's half an interval
	// later): five each.
	if c.SentToB != 10 || c.SentReplies != 10 || c.Expected != 20 || c.Delivered != 20 || c.Duplicates != 0 {
		t.Errorf("sent %d + %d replies, delivered %d of %d, %d duplicates; want 10 + 10, 20 of 20, none", c.SentToB, c.SentReplies, c.Delivered, c.Expected, c.Duplicates)
	}
	if c.Latency.N != 20 || c.AckLatency.N != 20 || c.Latency.Max <= 0 {
		t.Errorf("latency %+v, acks %+v: want 20 samples each", c.Latency, c.AckLatency)
	}
	if len(c.SendErrors)+len(c.OpenErrors)+len(c.ErrorAnswers)+len(c.Disconnected) != 0 {
		t.Errorf("errors: send %v, open %v, answers %v, dropped %v", c.SendErrors, c.OpenErrors, c.ErrorAnswers, c.Disconnected)
	}
	inHist := 0
	for _, b := range c.Histogram {
		inHist += b.Count
	}
	if inHist != 20 {
		t.Errorf("histogram holds %d deliveries, want 20", inHist)
	}
	for _, want := range []string{"## conv: 2 pairs", "is not measured", "| delivered (verified and decrypted) / expected | 20 / 20 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	page, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), "conv: 2 pairs") || !strings.Contains(string(page), `<rect class="bar"`) {
		t.Errorf("HTML report lacks the conv section:\n%s", page)
	}

	rep, out = runReport(t, ts.URL, "-scenario", "conv", "-pairs", "2", "-conv-rate", "5", "-conv-for", "1s", "-drain", "20s", "-conv-reply=false")
	if c := rep.Conv; c == nil || c.SentToB != 10 || c.SentReplies != 0 || c.Delivered != 10 || c.Expected != 10 || c.Duplicates != 0 || len(c.OpenErrors) != 0 {
		t.Errorf("one direction: %+v\n%s", rep.Conv, out)
	}
}

// Without a bot account on the server the bot scenario says so instead
// of counting mentions that go nowhere.
func TestBotScenarioNeedsTheBot(t *testing.T) {
	ts := startAccountsServer(t)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-url", ts.URL, "-scenario", "bot", "-bot", "nobot", "-bot-users", "1", "-keys", "1", "-key-bits", "2048", "-identity-keys", "2", "-identity-bits", "2048"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "-bot nobot") {
		t.Fatalf("run: %v, want an error naming -bot nobot", err)
	}
}
