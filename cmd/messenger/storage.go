package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/secure-messenger/messenger/internal/envflag"
)

// storageOptions are the server's settings for what it stores: the
// storage keyring, and retention (retention.go).
type storageOptions struct {
	keyringFile   string
	keyringReload time.Duration
}

func (s *storageOptions) addFlags(fs *flag.FlagSet, ev *envflag.Env) {
	fs.StringVar(&s.keyringFile, "storage-keyring", ev.String("MESSENGER_STORAGE_KEYRING", ""), "keyring file of the keys sealing stored messages, shared by every node; empty means storage.keyring in the data directory, and storage.key alone while that file does not exist (MESSENGER_STORAGE_KEYRING)")
	fs.DurationVar(&s.keyringReload, "storage-keyring-reload", ev.Duration("MESSENGER_STORAGE_KEYRING_RELOAD", time.Minute), "how often the keyring file is re-read (also on SIGHUP); 0 for only on SIGHUP (MESSENGER_STORAGE_KEYRING_RELOAD)")
}

func (s *storageOptions) check() error {
	if s.keyringReload < 0 {
		return fmt.Errorf("-storage-keyring-reload %s: want 0 or more", s.keyringReload)
	}
	return nil
}
