package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/secure-messenger/messenger/internal/envflag"
	"github.com/secure-messenger/messenger/internal/retention"
	"github.com/secure-messenger/messenger/internal/store"
)

// storageOptions are the server's settings for what it stores: the
// storage keyring (rotate.go) and retention.
type storageOptions struct {
	keyringFile       string
	keyringReload     time.Duration
	maxAge            string
	maxCount          int
	overrides         string
	retentionInterval time.Duration
	// rules are maxAge, maxCount and overrides, parsed by check.
	rules retention.Rules
}

func (s *storageOptions) addFlags(fs *flag.FlagSet, ev *envflag.Env) {
	fs.StringVar(&s.keyringFile, "storage-keyring", ev.String("MESSENGER_STORAGE_KEYRING", ""), "keyring file of the keys sealing stored messages, shared by every node; empty means storage.keyring in the data directory, and storage.key alone while that file does not exist (MESSENGER_STORAGE_KEYRING)")
	fs.DurationVar(&s.keyringReload, "storage-keyring-reload", ev.Duration("MESSENGER_STORAGE_KEYRING_RELOAD", time.Minute), "how often the keyring file is re-read (also on SIGHUP); 0 for only on SIGHUP (MESSENGER_STORAGE_KEYRING_RELOAD)")
	fs.StringVar(&s.maxAge, "retention-max-age", ev.String("MESSENGER_RETENTION_MAX_AGE", "0"), "stored messages older than this are removed, e.g. 30d or 720h; 0 keeps them (MESSENGER_RETENTION_MAX_AGE)")
	fs.IntVar(&s.maxCount, "retention-max-count", ev.Int("MESSENGER_RETENTION_MAX_COUNT", 0), "only the newest this many messages of each room and conversation are kept; 0 keeps all (MESSENGER_RETENTION_MAX_COUNT)")
	fs.StringVar(&s.overrides, "retention", ev.String("MESSENGER_RETENTION", ""), "per-room overrides of the two above: ROOM=AGE,COUNT;ROOM=keep;@conversations=AGE,COUNT (MESSENGER_RETENTION)")
	fs.DurationVar(&s.retentionInterval, "retention-interval", ev.Duration("MESSENGER_RETENTION_INTERVAL", 10*time.Minute), "how often old messages are removed (MESSENGER_RETENTION_INTERVAL)")
}

func (s *storageOptions) check() error {
	if s.keyringReload < 0 {
		return fmt.Errorf("-storage-keyring-reload %s: want 0 or more", s.keyringReload)
	}
	age, err := retention.ParseAge(s.maxAge)
	if err != nil {
		return fmt.Errorf("-retention-max-age: %w", err)
	}
	if s.maxCount < 0 {
		return fmt.Errorf("-retention-max-count %d: want 0 (keep all) or more", s.maxCount)
	}
	if s.retentionInterval <= 0 {
		return fmt.Errorf("-retention-interval %s: want a positive duration", s.retentionInterval)
	}
	s.rules, err = retention.ParseOverrides(s.overrides, store.RetentionPolicy{MaxAge: age, MaxCount: s.maxCount})
	if err != nil {
		return fmt.Errorf("-retention: %w", err)
	}
	return nil
}
