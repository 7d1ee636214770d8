package keyring

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/store"
)

// missReloadEvery bounds how often a lookup of an unknown key id re-reads
// the file.
const missReloadEvery = time.Second

// Watcher is the store.Keyring of a running server: the keyring file as
// last read. It is re-read on Reload (the server calls it on SIGHUP and
// every -storage-keyring-reload), and when a row names a key id it does
// not hold (at most once a second): another node may have made a new key
// current and written under it before this node's next reload.
type Watcher struct {
	path     string
	fallback []byte
	log      zerolog.Logger

	kr atomic.Pointer[store.StaticKeyring]

	mu       sync.Mutex // serializes reloads
	lastMiss time.Time
	current  uint32
}

var _ store.Keyring = (*Watcher)(nil)

// NewWatcher reads the keyring file at path (see Load; fallback is
// storage.key) and returns a Watcher over it.
func NewWatcher(path string, fallback []byte, log zerolog.Logger) (*Watcher, error) {
	w := &Watcher{path: path, fallback: bytes.Clone(fallback), log: log}
	if err := w.Reload(); err != nil {
		return nil, err
	}
	return w, nil
}

// Reload re-reads the file. On an error the keyring stays as it was.
func (w *Watcher) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	f, err := Load(w.path, w.fallback)
	if err != nil {
		return err
	}
	kr, err := f.StoreKeyring()
	if err != nil {
		return err
	}
	if old := w.kr.Swap(kr); old != nil && w.current != f.Current {
		w.log.Info().Uint32("key_id", f.Current).Uint32("previous", w.current).Msg("storage keyring: new current key")
	}
	w.current = f.Current
	return nil
}

// Current implements store.Keyring.
func (w *Watcher) Current() (uint32, []byte) { return w.kr.Load().Current() }

// Key implements store.Keyring.
func (w *Watcher) Key(id uint32) ([]byte, error) {
	k, err := w.kr.Load().Key(id)
	if err == nil || !errors.Is(err, store.ErrUnknownKey) {
		return k, err
	}
	w.mu.Lock()
	reload := time.Since(w.lastMiss) >= missReloadEvery
	if reload {
		w.lastMiss = time.Now()
	}
	w.mu.Unlock()
	if !reload {
		return nil, err
	}
	if rerr := w.Reload(); rerr != nil {
		w.log.Warn().Err(rerr).Msg("storage keyring: reload for an unknown key id")
		return nil, err
	}
	return w.kr.Load().Key(id)
}

// Run reloads the keyring every interval (0: never) and on every value
// from signals (SIGHUP), until ctx ends. A failed reload is logged and
// the keyring stays as it was.
func (w *Watcher) Run(ctx context.Context, interval time.Duration, signals <-chan struct{}) {
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-signals:
			w.log.Info().Msg("storage keyring: reload on signal")
		}
		if err := w.Reload(); err != nil {
			w.log.Warn().Err(err).Msg("storage keyring: reload failed; keeping the keys loaded before")
		}
	}
}
