package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/llm"
	"github.com/secure-messenger/messenger/internal/server"
	"github.com/secure-messenger/messenger/internal/servertest"
	"github.com/secure-messenger/messenger/internal/syncbuf"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// env is a getenv over a map.
func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestRunFlags: -h lists every flag with its environment twin; each bad
// flag or environment value is an error naming it, before anything
// connects.
func TestRunFlags(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), []string{"-h"}, env(nil), &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	flags := regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(out.String(), -1)
	if len(flags) < 10 {
		t.Fatalf("-h lists %d flags:\n%s", len(flags), out.String())
	}
	usage := regexp.MustCompile(`(?m)^  -`).Split(out.String(), -1)[1:]
	for i, f := range flags {
		if !strings.Contains(usage[i], "(MESSENGER_") {
			t.Errorf("-%s has no environment twin in its usage: %q", f[1], usage[i])
		}
	}

	profile := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"-nope"}, nil, "flag provided but not defined"},
		{"extra argument", []string{"stray"}, nil, "unexpected arguments"},
		{"bad env number", nil, map[string]string{"MESSENGER_BOT_MAX_TOKENS": "many"}, "MESSENGER_BOT_MAX_TOKENS"},
		{"bad env duration", nil, map[string]string{"MESSENGER_BOT_TIMEOUT": "soon"}, "MESSENGER_BOT_TIMEOUT"},
		{"zero max tokens", []string{"-bot-max-tokens", "0"}, nil, "must be positive"},
		{"zero generations env", nil, map[string]string{"MESSENGER_BOT_MAX_GENERATIONS": "0"}, "must be positive"},
		{"url without model", []string{"-bot-url", "http://127.0.0.1:1/v1"}, nil, "-bot-url needs -bot-model"},
		{"missing key file", []string{"-bot-url", "http://127.0.0.1:1/v1", "-bot-model", "m", "-bot-key-file", filepath.Join(profile, "none")}, nil, "-bot-key-file"},
		{"bad log level", []string{"-log-level", "loud"}, nil, "-log-level"},
		{"bad pin", []string{"-pin", "not-a-fingerprint"}, nil, "-pin"},
		{"bad pin env", nil, map[string]string{"MESSENGER_BOT_PIN": "zz"}, "-pin"},
		{"bad name", []string{"-name", "no spaces allowed"}, nil, "not a valid user name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-bot-profile", profile}, tc.args...)
			err := run(context.Background(), args, env(tc.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	if entries, _ := os.ReadDir(profile); len(entries) != 0 {
		t.Fatalf("a refused configuration wrote to the profile: %v", entries)
	}
}

// TestRunAnswersMention: run, configured through the environment twins,
// signs up against a real server (keys saved in its profile), joins the
// room it is limited to and answers a mention there with the offline
// responder; it returns nil when its context ends.
func TestRunAnswersMention(t *testing.T) {
	url, fp := startServer(t)
	profile := filepath.Join(t.TempDir(), "helper")
	getenv := env(map[string]string{
		"MESSENGER_BOT_NAME": "helper", "MESSENGER_BOT_SERVER": url, "MESSENGER_BOT_PIN": fp.String(),
		"MESSENGER_BOT_PROFILE": profile, "MESSENGER_BOT_ROOMS": "general", "MESSENGER_LOG_LEVEL": "debug",
	})

	ctx := context.Background()
	alice, err := client.Dial(ctx, client.Config{URL: url, VerifyIdentity: client.Pin(fp)})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	id, err := client.NewIdentity("alice", 2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Register(ctx, id, "alice password"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Join(ctx, "general", ""); err != nil {
		t.Fatal(err)
	}

	rctx, cancel := context.WithCancel(ctx)
	logs := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(rctx, []string{"-bot-max-tokens", "200"}, getenv, logs) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("run did not return")
		}
	}()

	deadline := time.After(60 * time.Second)
	for joined := false; !joined; {
		select {
		case m := <-alice.Messages():
			joined = m.Type == protocol.MsgPresence && m.From == "helper" && m.Event == "join"
		case err := <-done:
			t.Fatalf("run ended: %v\n%s", err, logs.String())
		case <-deadline:
			t.Fatalf("the bot did not join\n%s", logs.String())
		}
	}
	if _, err := alice.Send(ctx, "general", "@helper what time is it"); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case m := <-alice.Messages():
			if m.Type != protocol.MsgMessage || m.From != "helper" || m.Stream == "" {
				continue
			}
			if !strings.HasPrefix(m.Body, llm.OfflineLabel) || !strings.Contains(m.Body, "what time is it") {
				t.Fatalf("answer %q", m.Body)
			}
			if !client.HasIdentity(profile) {
				t.Fatal("no keys in the profile")
			}
			if strings.Contains(logs.String(), "what time") {
				t.Fatal("the log holds the question")
			}
			return
		case <-deadline:
			t.Fatalf("no answer\n%s", logs.String())
		}
	}
}

// startServer runs a real server over real WebSockets (SQLite in a
// temporary directory, memory session store) and returns its URL and
// identity fingerprint.
func startServer(t *testing.T) (string, protocol.Fingerprint) {
	t.Helper()
	ts := servertest.Start(t, server.Config{PingInterval: 5 * time.Second}, zerolog.Nop())
	return ts.URL, ts.Fingerprint
}
