package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/bot"
	"github.com/secure-messenger/messenger/internal/envflag"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// botOptions are the built-in bot's flags: -bot NAME turns it on.
type botOptions struct {
	name string
	*bot.Options
}

func addBotFlags(fs *flag.FlagSet, ev *envflag.Env, getenv func(string) string) *botOptions {
	o := &botOptions{}
	fs.StringVar(&o.name, "bot", ev.String("MESSENGER_BOT", ""), "run the language-model bot in this process as user NAME, a client of this server like any other; empty: no bot (MESSENGER_BOT)")
	o.Options = bot.AddFlags(fs, ev, getenv)
	return o
}

// startBot runs the built-in bot, if enabled, as a client of the server
// listening on addr with identity fp, until ctx ends. Its keys are in
// DATA/bot-NAME unless -bot-profile says otherwise. done is closed when
// it has stopped.
func startBot(ctx context.Context, o *botOptions, dataDir string, addr net.Addr, useTLS bool, fp protocol.Fingerprint, log zerolog.Logger) (done chan struct{}, err error) {
	done = make(chan struct{})
	if o == nil || o.name == "" {
		close(done)
		return done, nil
	}
	if o.Profile == "" {
		o.Profile = filepath.Join(dataDir, "bot-"+o.name)
	}
	cfg, err := o.Config(o.name)
	if err != nil {
		return nil, fmt.Errorf("bot: %w", err)
	}
	cfg.Log = log.With().Str("component", "bot").Logger()
	cfg.Dial = client.Config{URL: "ws://" + addr.String() + "/ws", VerifyIdentity: client.Pin(fp)}
	if useTLS {
		// The bot dials its own node over loopback, where the certificate's
		// name does not match the address. The TLS layer is not what
		// authenticates the server here: the protocol's handshake checks the
		// identity key against the pinned fingerprint fp.
		cfg.Dial.URL = "wss://" + addr.String() + "/ws"
		cfg.Dial.TLS = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // server authenticated by the pinned identity key
	}
	b, err := bot.New(cfg)
	if err != nil {
		return nil, err
	}
	go func() {
		defer close(done)
		if err := b.Run(ctx, nil); err != nil {
			log.Error().Err(err).Msg("bot stopped")
		}
	}()
	return done, nil
}
