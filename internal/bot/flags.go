package bot

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/secure-messenger/messenger/internal/envflag"
	"github.com/secure-messenger/messenger/internal/llm"
)

// Options are the bot's settings common to cmd/bot and the server's
// built-in bot, each a flag with an environment twin.
type Options struct {
	URL            string
	Model          string
	KeyFile        string
	SystemPrompt   string
	Rooms          string
	AnswerAll      string
	MaxTokens      int
	ContextTokens  int
	MaxGenerations int
	Timeout        time.Duration
	IdleTimeout    time.Duration
	Profile        string
	OfflineDelay   time.Duration
	getenv         func(string) string
}

// AddFlags registers the bot's flags on fs, defaults from the
// environment (MESSENGER_BOT_*).
func AddFlags(fs *flag.FlagSet, ev *envflag.Env, getenv func(string) string) *Options {
	o := &Options{getenv: getenv}
	fs.StringVar(&o.URL, "bot-url", ev.String("MESSENGER_BOT_URL", ""), "base URL of an OpenAI-compatible Chat Completions API, e.g. http://127.0.0.1:11434/v1; empty: the built-in offline responder (MESSENGER_BOT_URL)")
	fs.StringVar(&o.Model, "bot-model", ev.String("MESSENGER_BOT_MODEL", ""), "model name sent to -bot-url (MESSENGER_BOT_MODEL)")
	fs.StringVar(&o.KeyFile, "bot-key-file", ev.String("MESSENGER_BOT_KEY_FILE", ""), "file whose first line is the API key for -bot-url; MESSENGER_BOT_API_KEY is read if unset (MESSENGER_BOT_KEY_FILE)")
	fs.StringVar(&o.SystemPrompt, "bot-system-prompt", ev.String("MESSENGER_BOT_SYSTEM_PROMPT", ""), "system prompt; empty: a short default (MESSENGER_BOT_SYSTEM_PROMPT)")
	fs.StringVar(&o.Rooms, "bot-rooms", ev.String("MESSENGER_BOT_ROOMS", ""), "comma-separated rooms the bot is limited to (joined at start); empty: any room it is mentioned in (MESSENGER_BOT_ROOMS)")
	fs.StringVar(&o.AnswerAll, "bot-answer-all", ev.String("MESSENGER_BOT_ANSWER_ALL", ""), "comma-separated rooms where the bot answers every message, not only mentions (MESSENGER_BOT_ANSWER_ALL)")
	fs.IntVar(&o.MaxTokens, "bot-max-tokens", ev.Int("MESSENGER_BOT_MAX_TOKENS", 512), "reply-length cap in tokens (MESSENGER_BOT_MAX_TOKENS)")
	fs.IntVar(&o.ContextTokens, "bot-context-tokens", ev.Int("MESSENGER_BOT_CONTEXT_TOKENS", 2000), "history put in a prompt, in estimated tokens (MESSENGER_BOT_CONTEXT_TOKENS)")
	fs.IntVar(&o.MaxGenerations, "bot-max-generations", ev.Int("MESSENGER_BOT_MAX_GENERATIONS", 4), "answers generated at once, over all rooms and conversations (MESSENGER_BOT_MAX_GENERATIONS)")
	fs.DurationVar(&o.Timeout, "bot-timeout", ev.Duration("MESSENGER_BOT_TIMEOUT", 5*time.Minute), "longest one answer may take (MESSENGER_BOT_TIMEOUT)")
	fs.DurationVar(&o.IdleTimeout, "bot-idle-timeout", ev.Duration("MESSENGER_BOT_IDLE_TIMEOUT", 60*time.Second), "longest wait for the model's next token (MESSENGER_BOT_IDLE_TIMEOUT)")
	fs.DurationVar(&o.OfflineDelay, "bot-offline-delay", ev.Duration("MESSENGER_BOT_OFFLINE_DELAY", 40*time.Millisecond), "without -bot-url: the offline responder's pause between two words (MESSENGER_BOT_OFFLINE_DELAY)")
	fs.StringVar(&o.Profile, "bot-profile", ev.String("MESSENGER_BOT_PROFILE", ""), "directory of the bot's keys; empty: a default per command (MESSENGER_BOT_PROFILE)")
	return o
}

// Config turns the options into a Config for the bot name, connecting
// with dial settings the caller fills in. It reads the API key file.
func (o *Options) Config(name string) (Config, error) {
	if o.MaxTokens < 1 || o.ContextTokens < 1 || o.MaxGenerations < 1 {
		return Config{}, errors.New("-bot-max-tokens, -bot-context-tokens and -bot-max-generations must be positive")
	}
	cfg := Config{
		Name: name, Profile: o.Profile, SystemPrompt: o.SystemPrompt, MaxTokens: o.MaxTokens,
		ContextTokens: o.ContextTokens, MaxGenerations: o.MaxGenerations,
		Rooms: splitList(o.Rooms), AnswerAll: splitList(o.AnswerAll),
	}
	if o.URL == "" {
		if o.OfflineDelay <= 0 {
			return Config{}, errors.New("-bot-offline-delay must be positive")
		}
		cfg.Model = &llm.Offline{Delay: o.OfflineDelay}
		return cfg, nil
	}
	if o.Model == "" {
		return Config{}, errors.New("-bot-url needs -bot-model")
	}
	key := ""
	if o.KeyFile != "" {
		data, err := os.ReadFile(o.KeyFile)
		if err != nil {
			return Config{}, fmt.Errorf("-bot-key-file: %w", err)
		}
		key, _, _ = strings.Cut(string(data), "\n")
		key = strings.TrimSpace(key)
	} else if o.getenv != nil {
		key = o.getenv("MESSENGER_BOT_API_KEY")
	}
	cfg.Model = &llm.Client{URL: o.URL, Model: o.Model, APIKey: key, Timeout: o.Timeout, IdleTimeout: o.IdleTimeout}
	return cfg, nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, strings.ToLower(s))
		}
	}
	return out
}
