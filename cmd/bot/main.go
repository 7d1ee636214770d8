// Command bot runs the messenger's language-model bot against any
// messenger server, as its own process: it holds the bot account's keys
// (in its profile directory) and is the only one that reads what people
// send it.
//
// Usage: bot -name NAME -server ws://HOST:PORT/ws [-pin FINGERPRINT]
// [-bot-url URL -bot-model MODEL] [flags]; every flag has an environment
// twin. Run it with -h for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/bot"
	"github.com/secure-messenger/messenger/internal/envflag"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bot:", err)
		os.Exit(1)
	}
}

// run is the whole command; it returns when ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ev := envflag.New(getenv)
	name := fs.String("name", ev.String("MESSENGER_BOT_NAME", "bot"), "the bot's user name; people mention it as @NAME (MESSENGER_BOT_NAME)")
	server := fs.String("server", ev.String("MESSENGER_BOT_SERVER", "ws://127.0.0.1:8080/ws"), "the server's WebSocket URL (MESSENGER_BOT_SERVER)")
	pin := fs.String("pin", ev.String("MESSENGER_BOT_PIN", ""), "the server's identity fingerprint; empty: trust on first use, pinned in the profile's known_hosts (MESSENGER_BOT_PIN)")
	logLevel := fs.String("log-level", ev.String("MESSENGER_LOG_LEVEL", "info"), "debug, info, warn or error (MESSENGER_LOG_LEVEL)")
	opts := bot.AddFlags(fs, ev, getenv)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := ev.Err(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	level, err := zerolog.ParseLevel(*logLevel)
	if err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly}).Level(level).With().Timestamp().Logger()
	if opts.Profile == "" {
		dir, err := os.UserConfigDir()
		if err != nil {
			return fmt.Errorf("no -bot-profile and no configuration directory: %w", err)
		}
		opts.Profile = filepath.Join(dir, "messenger", "bots", *name)
	}
	cfg, err := opts.Config(*name)
	if err != nil {
		return err
	}
	cfg.Log = log
	cfg.Dial = client.Config{URL: *server}
	if *pin != "" {
		fp, err := protocol.ParseFingerprint(*pin)
		if err != nil {
			return fmt.Errorf("-pin: %w", err)
		}
		cfg.Dial.VerifyIdentity = client.Pin(fp)
	} else {
		u, err := url.Parse(*server)
		if err != nil {
			return fmt.Errorf("-server: %w", err)
		}
		if err := os.MkdirAll(opts.Profile, 0o700); err != nil {
			return err
		}
		kh := &client.KnownHosts{Path: filepath.Join(opts.Profile, "known_hosts")}
		cfg.Dial.VerifyIdentity = kh.Verifier(u.Host, func(fp protocol.Fingerprint) {
			log.Warn().Str("host", u.Host).Str("fingerprint", fp.String()).Msg("pinned the server's identity on first use: compare it with what the server printed")
		})
	}
	b, err := bot.New(cfg)
	if err != nil {
		return err
	}
	if err := b.Run(ctx, nil); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
