package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/envflag"
	"github.com/secure-messenger/messenger/internal/keyfile"
	"github.com/secure-messenger/messenger/internal/keyring"
	"github.com/secure-messenger/messenger/internal/store"
)

// rotateCommand is the subcommand that rotates the storage key.
const rotateCommand = "rotate-storage-key"

// keyringPath is the keyring file: -storage-keyring, or storage.keyring
// in the data directory.
func keyringPath(flagValue, dataDir string) string {
	if flagValue != "" {
		return flagValue
	}
	return filepath.Join(dataDir, keyring.FileName)
}

// openKeyring is the server's keyring: the keyring file as it is now,
// re-read every reload interval (0: never) and on SIGHUP until ctx ends.
// Without a keyring file it holds storage.key alone.
func openKeyring(ctx context.Context, path string, storageKey []byte, reload time.Duration, log zerolog.Logger) (*keyring.Watcher, error) {
	w, err := keyring.NewWatcher(path, storageKey, log)
	if err != nil {
		return nil, err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	signals := make(chan struct{}, 1)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case signals <- struct{}{}:
				default:
				}
			}
		}
	}()
	go w.Run(ctx, reload, signals)
	return w, nil
}

// rotateOptions are the settings of rotate-storage-key.
type rotateOptions struct {
	dataDir, dbURL, keyringFile string
	batch                       int
	grace                       time.Duration
	stage, noRewrap, rewrapOnly bool
	retire                      bool
}

func parseRotateOptions(args []string, getenv func(string) string, stderr io.Writer) (*rotateOptions, error) {
	o := &rotateOptions{}
	fs := flag.NewFlagSet("messenger "+rotateCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	ev := envflag.New(getenv)
	fs.StringVar(&o.dataDir, "data", ev.String("MESSENGER_DATA", "./data"), "data directory holding storage.key (MESSENGER_DATA)")
	fs.StringVar(&o.dbURL, "db", ev.String("MESSENGER_DB", ""), "the server's database, as for the server (MESSENGER_DB)")
	fs.StringVar(&o.keyringFile, "storage-keyring", ev.String("MESSENGER_STORAGE_KEYRING", ""), "keyring file; empty means storage.keyring in the data directory (MESSENGER_STORAGE_KEYRING)")
	fs.IntVar(&o.batch, "batch", ev.Int("MESSENGER_REWRAP_BATCH", 500), "messages rewrapped per transaction, 1.."+fmt.Sprint(store.MaxRewrapBatch)+" (MESSENGER_REWRAP_BATCH)")
	fs.DurationVar(&o.grace, "grace", ev.Duration("MESSENGER_RETIRE_GRACE", 10*time.Minute), "-retire refuses until the current key has been current this long: longer than every node's -storage-keyring-reload (MESSENGER_RETIRE_GRACE)")
	fs.BoolVar(&o.stage, "stage", false, "only add a new key, readable but not yet current (for nodes that keep copies of the keyring file)")
	fs.BoolVar(&o.noRewrap, "no-rewrap", false, "make a new key current but leave stored messages under their keys")
	fs.BoolVar(&o.rewrapOnly, "rewrap", false, "only rewrap stored messages to the current key (to finish an interrupted rotation)")
	fs.BoolVar(&o.retire, "retire", false, "remove the keys that are neither current nor staged, once no stored message names them")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: messenger %s [flags]\n\nMakes a new storage key current for new messages and rewraps the stored ones to it while servers run.\n\n", rotateCommand)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := ev.Err(); err != nil {
		return nil, err
	}
	modes := 0
	for _, b := range []bool{o.stage, o.rewrapOnly, o.retire} {
		if b {
			modes++
		}
	}
	if modes > 1 || (o.noRewrap && modes > 0) {
		return nil, errors.New("-stage, -rewrap, -retire and -no-rewrap exclude each other")
	}
	if o.batch < 1 || o.batch > store.MaxRewrapBatch {
		return nil, fmt.Errorf("-batch %d: want 1..%d", o.batch, store.MaxRewrapBatch)
	}
	if o.grace < 0 {
		return nil, fmt.Errorf("-grace %s: want 0 or more", o.grace)
	}
	return o, nil
}

// runRotate is `messenger rotate-storage-key`. It runs beside live
// servers: they read old key ids until the rows are rewrapped, and pick
// the new current key up from the keyring file (see openKeyring).
func runRotate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseRotateOptions(args, getenv, stderr)
	if err != nil {
		return err
	}
	storagePath := filepath.Join(o.dataDir, "storage.key")
	if _, err := os.Stat(storagePath); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s does not exist: nothing to rotate (point -data at the server's data directory)", storagePath)
	}
	storageKey, _, err := keyfile.LoadOrCreateSymmetric(storagePath)
	if err != nil {
		return err
	}
	path := keyringPath(o.keyringFile, o.dataDir)
	f, err := keyring.Load(path, storageKey)
	if err != nil {
		return err
	}
	now := time.Now()
	switch {
	case o.stage:
		if f.Next != 0 {
			return fmt.Errorf("key %d is staged already; rotate to make it current", f.Next)
		}
		id, err := f.Add(now)
		if err != nil {
			return err
		}
		f.Next = id
		if err := keyring.Save(path, f); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "staged key %d in %s; current is still %d\n", id, path, f.Current)
		fmt.Fprintf(stdout, "copy the file to every node and reload them (SIGHUP), then run %s\n", rotateCommand)
		return nil
	case o.retire:
		return retireKeys(ctx, o, path, f, now, stdout)
	case o.rewrapOnly:
	default:
		id := f.Next
		if id == 0 {
			if id, err = f.Add(now); err != nil {
				return err
			}
		}
		previous := f.Current
		if err := f.Promote(id, now); err != nil {
			return err
		}
		if err := keyring.Save(path, f); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "key %d is current in %s (was %d); servers pick it up on SIGHUP, on their next reload, or on the first message under it they read\n", id, path, previous)
		if o.noRewrap {
			return nil
		}
	}
	kr, err := f.StoreKeyring()
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, o.dbURL, o.dataDir, store.WithKeyring(kr))
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer db.Close()
	total := 0
	for {
		n, err := db.Rewrap(ctx, o.batch)
		total += n
		if err != nil {
			return fmt.Errorf("rewrapped %d messages, then: %w", total, err)
		}
		if n == 0 {
			break
		}
	}
	fmt.Fprintf(stdout, "rewrapped %d stored messages to key %d\n", total, f.Current)
	usage, err := db.KeyUsage(ctx)
	if err != nil {
		return err
	}
	printUsage(stdout, usage)
	fmt.Fprintf(stdout, "once every node has the new key (-storage-keyring-reload, or SIGHUP), run %s -rewrap for what they wrote meanwhile, then %s -retire\n", rotateCommand, rotateCommand)
	return nil
}

// retireKeys removes from the keyring every key that is neither current
// nor staged, once the current one has been current for o.grace and no
// stored message names a key removed.
func retireKeys(ctx context.Context, o *rotateOptions, path string, f *keyring.File, now time.Time, stdout io.Writer) error {
	if since := now.Sub(f.CurrentSince); !f.CurrentSince.IsZero() && since < o.grace {
		return fmt.Errorf("key %d has been current for %s only: a node that has not reloaded the keyring may still write under an older key; retry after %s (-grace)", f.Current, since.Round(time.Second), o.grace)
	}
	db, err := store.Open(ctx, o.dbURL, o.dataDir)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer db.Close()
	usage, err := db.KeyUsage(ctx)
	if err != nil {
		return err
	}
	removed, err := f.Retire(usage)
	if err != nil {
		printUsage(stdout, usage)
		return fmt.Errorf("%w (%s -rewrap)", err, rotateCommand)
	}
	if len(removed) == 0 {
		fmt.Fprintln(stdout, "no key to retire")
		return nil
	}
	if err := keyring.Save(path, f); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "retired keys %v from %s; %d left\n", removed, path, len(f.Keys))
	return nil
}

func printUsage(w io.Writer, usage map[int64]int64) {
	ids := make([]int64, 0, len(usage))
	for id := range usage {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		fmt.Fprintf(w, "key %d seals %d stored messages\n", id, usage[id])
	}
}
