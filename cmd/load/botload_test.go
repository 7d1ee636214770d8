package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/secure-messenger/messenger/internal/bot"
	"github.com/secure-messenger/messenger/internal/llm"
	"github.com/secure-messenger/messenger/internal/servertest"
	"github.com/secure-messenger/messenger/pkg/client"
)

// startBot runs the bot as the server's -bot does (internal/bot, offline
// responder), changed by mod, and waits until it is signed in.
func startBot(t *testing.T, ts *servertest.Server, mod func(*bot.Config)) {
	t.Helper()
	cfg := bot.Config{
		Name: "bot", Profile: filepath.Join(t.TempDir(), "bot"), KeyBits: 2048,
		Dial:  client.Config{URL: ts.URL, VerifyIdentity: client.Pin(ts.Fingerprint)},
		Model: &llm.Offline{Delay: time.Millisecond}, Batch: 20 * time.Millisecond, Log: zerolog.Nop(),
	}
	mod(&cfg)
	b, err := bot.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- b.Run(ctx, func() { close(ready) }) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("bot ended: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("bot not ready")
	}
}

// Four users in two rooms mention the bot, whose per-user rate allows 2
// questions (burst 2, then one an hour) and whose rooms hold 10 waiting:
// at 8/s for 950 ms each user mentions it twice (due at its offset and
// half a second later) and every mention is answered, streamed first; at
// 12/s each mentions it three times and the third is refused by the
// bot's per-user rate.
func TestBotAnswersEveryMention(t *testing.T) {
	ts := startAccountsServer(t)
	startBot(t, ts, func(c *bot.Config) { c.UserRate, c.UserBurst, c.QueueLength = rate.Every(time.Hour), 2, 10 })
	base := []string{"-scenario", "bot", "-bot", "bot", "-bot-users", "4", "-bot-rooms", "2", "-bot-for", "950ms", "-bot-wait", "30s"}

	rep, out := runReport(t, ts.URL, append(base, "-bot-rate", "8")...)
	b := rep.Bot
	if b == nil {
		t.Fatalf("no bot result:\n%s", out)
	}
	if b.Ready != 4 || b.Sent != 8 || b.Answered != 8 || len(b.Refused) != 0 || b.Unanswered != 0 {
		t.Errorf("ready %d, sent %d, answered %d, refused %v, unanswered %d; want 4, 8, 8, none, 0\n%s", b.Ready, b.Sent, b.Answered, b.Refused, b.Unanswered, out)
	}
	if b.Final.N != 8 || b.FirstDelta.N != 8 || b.NoDelta != 0 || b.EndReasons["done"] != 8 || b.FirstDelta.Max > b.Final.Max {
		t.Errorf("latencies: first delta %+v, final %+v, no delta %d, ends %v", b.FirstDelta, b.Final, b.NoDelta, b.EndReasons)
	}
	if b.Duplicates+b.Unmatched+b.OtherBotMessages != 0 || len(b.SendErrors)+len(b.ErrorAnswers)+len(b.Disconnected)+len(b.SetupErrors) != 0 {
		t.Errorf("unexpected: %+v", b)
	}
	if !strings.Contains(out, "| answered (a stored answer naming the mention) | 8 of 8 |") || !strings.Contains(out, "is not measured") {
		t.Errorf("output:\n%s", out)
	}

	rep, out = runReport(t, ts.URL, append(base, "-bot-rate", "12")...)
	b = rep.Bot
	if b == nil || b.Sent != 12 || b.Answered != 8 || b.Refused["user_rate"] != 4 || len(b.Refused) != 1 || b.Unanswered != 0 || b.Final.N != 8 || b.OtherBotMessages != 0 {
		t.Errorf("over the per-user rate: %+v\n%s", b, out)
	}
}

// Four users in one room mention a bot that lets one question wait per
// room and takes seconds per answer (60 ms a word), 100 ms apart: the
// first is answered, the second waits and is answered, the last two are
// refused as the queue is full.
func TestBotRefusesOverItsQueue(t *testing.T) {
	ts := startAccountsServer(t)
	startBot(t, ts, func(c *bot.Config) { c.QueueLength, c.Model = 1, &llm.Offline{Delay: 60 * time.Millisecond} })
	rep, out := runReport(t, ts.URL, "-scenario", "bot", "-bot", "bot", "-bot-users", "4", "-bot-rooms", "1", "-bot-rate", "10", "-bot-for", "350ms", "-bot-wait", "30s")
	b := rep.Bot
	if b == nil || b.Sent != 4 || b.Answered != 2 || b.Refused["queue_full"] != 2 || len(b.Refused) != 1 || b.Unanswered != 0 || b.Final.N != 2 || b.EndReasons["done"] != 2 {
		t.Errorf("over the queue: %+v\n%s", b, out)
	}
}
