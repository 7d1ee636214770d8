// Package keyring keeps the storage keys that seal stored message bodies:
// the keyring file that `messenger rotate-storage-key` writes, the key
// each entry gives the store, and a store.Keyring that a running server
// re-reads from the file, so that a rotation needs no restart.
//
// An entry of the keyring is a storage key: 32 random bytes, like the data
// directory's storage.key. The store never sees it. It gets the key that
// HKDF-SHA256 derives from it for stored messages, under an id that is
// derived from it too (MessageKey). A deployment without a keyring file
// has one entry, storage.key itself; that is how every server stored
// messages before rotation existed, so their rows keep reading.
//
// The keyring file is JSON, mode 0600:
//
//	{"version": 1,
//	 "current": 2863311530, "current_since": "2026-11-30T22:00:00Z",
//	 "next": 3722304989,
//	 "keys": [{"id": 1431655765, "key": "<base64 of 32 bytes>", "added": "..."},
//	          {"id": 2863311530, "key": "...", "added": "..."},
//	          {"id": 3722304989, "key": "...", "added": "..."}]}
//
// current names the entry new messages are sealed under; next (absent
// when 0) one staged to become current; the others are kept to open rows
// not yet rewrapped. Every
// node of a deployment must read the same file (a shared mount, or a copy
// on each node before the key it adds becomes current).
package keyring

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/secure-messenger/messenger/internal/store"
)

// FileName is the keyring file's name in the data directory.
const FileName = "storage.keyring"

// fileVersion is the format version the package reads and writes.
const fileVersion = 1

// MaxKeys is the most entries a keyring file may hold.
const MaxKeys = 16

// ErrBadFile reports a keyring file that exists but cannot be used.
var ErrBadFile = errors.New("keyring: unusable keyring file")

// Entry is one storage key of the keyring.
type Entry struct {
	// ID is the id of the message key derived from Key (MessageKey).
	ID uint32 `json:"id"`
	// Key is the 32-byte storage key.
	Key []byte `json:"key"`
	// Added is when the entry was added; zero for storage.key.
	Added time.Time `json:"added"`
}

// File is the content of a keyring file.
type File struct {
	// Version is 1.
	Version int `json:"version"`
	// Current is the id of the entry new messages are sealed under.
	Current uint32 `json:"current"`
	// CurrentSince is when Current became current.
	CurrentSince time.Time `json:"current_since"`
	// Next, if not 0, is a key added by `rotate-storage-key -stage`:
	// readable by every node that has loaded the file, and the one the
	// next rotation makes current.
	Next uint32 `json:"next,omitempty"`
	// Keys are the entries, oldest first.
	Keys []Entry `json:"keys"`
}

// derive is HKDF-SHA256 with the info strings cmd/messenger has always
// used for keys derived from storage.key ("messenger v1 storage " + purpose).
func derive(root []byte, purpose string) []byte {
	k, err := hkdf.Key(sha256.New, root, nil, "messenger v1 storage "+purpose, 32)
	if err != nil {
		panic("keyring: derive: " + err.Error())
	}
	return k
}

// MessageKey returns the id and the key that seal stored messages under
// the storage key root. The id is derived from root, so that two storage
// keys get different ids but for a 2^-32 chance (Add draws again on a
// collision) without a record of which is which.
func MessageKey(root []byte) (uint32, []byte) {
	id := binary.BigEndian.Uint32(derive(root, "message key id"))
	if id == 0 {
		id = 1 // 0 is not a key id
	}
	return id, derive(root, "stored messages")
}

// Single returns the keyring of one storage key: what a server without a
// keyring file uses, with storage.key.
func Single(root []byte) *File {
	id, _ := MessageKey(root)
	return &File{Version: fileVersion, Current: id, Keys: []Entry{{ID: id, Key: bytes.Clone(root)}}}
}

// Load reads the keyring file at path. A file that does not exist gives
// Single(fallback) and no error; one that others may read, or that does
// not parse or check, is an error matching ErrBadFile.
func Load(path string, fallback []byte) (*File, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Single(fallback), nil
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keyring: %s has mode %04o; run chmod 600 %s: %w", path, fi.Mode().Perm(), path, ErrBadFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	var f File
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("keyring: %s: %w", path, errors.Join(ErrBadFile, err))
	}
	if err := f.check(); err != nil {
		return nil, fmt.Errorf("keyring: %s: %w", path, err)
	}
	return &f, nil
}

// check validates a keyring.
func (f *File) check() error {
	if f.Version != fileVersion {
		return fmt.Errorf("version %d, want %d: %w", f.Version, fileVersion, ErrBadFile)
	}
	if len(f.Keys) == 0 || len(f.Keys) > MaxKeys {
		return fmt.Errorf("%d keys, want 1..%d: %w", len(f.Keys), MaxKeys, ErrBadFile)
	}
	seen := map[uint32]bool{}
	for _, e := range f.Keys {
		if len(e.Key) != 32 {
			return fmt.Errorf("key %d is %d bytes, want 32: %w", e.ID, len(e.Key), ErrBadFile)
		}
		if id, _ := MessageKey(e.Key); id != e.ID {
			return fmt.Errorf("key %d: its key derives id %d: %w", e.ID, id, ErrBadFile)
		}
		if seen[e.ID] {
			return fmt.Errorf("key %d twice: %w", e.ID, ErrBadFile)
		}
		seen[e.ID] = true
	}
	if !seen[f.Current] {
		return fmt.Errorf("current key %d is not among the keys: %w", f.Current, ErrBadFile)
	}
	if f.Next != 0 && (!seen[f.Next] || f.Next == f.Current) {
		return fmt.Errorf("next key %d is not among the keys, or is the current one: %w", f.Next, ErrBadFile)
	}
	return nil
}

// Save writes f to path, mode 0600, replacing the file in one rename
// after a sync, so a reader sees the old file or the new one, whole.
func Save(path string, f *File) error {
	if err := f.check(); err != nil {
		return fmt.Errorf("keyring: save: %w", err)
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("keyring: save: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".keyring-*")
	if err != nil {
		return fmt.Errorf("keyring: save: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(data, '\n'))
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("keyring: save %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable where the system allows
		d.Close()
	}
	return nil
}

// Add adds a new random storage key, not current, and returns its id.
// Stage it with f.Next = id, or make it current with Promote.
func (f *File) Add(now time.Time) (uint32, error) {
	if len(f.Keys) >= MaxKeys {
		return 0, fmt.Errorf("keyring: already %d keys; retire old ones first", len(f.Keys))
	}
	for {
		root := make([]byte, 32)
		if _, err := rand.Read(root); err != nil {
			return 0, fmt.Errorf("keyring: %w", err)
		}
		id, _ := MessageKey(root)
		if f.has(id) {
			continue // a 2^-32 id collision: draw again
		}
		f.Keys = append(f.Keys, Entry{ID: id, Key: root, Added: now.UTC()})
		return id, nil
	}
}

func (f *File) has(id uint32) bool {
	return slices.ContainsFunc(f.Keys, func(e Entry) bool { return e.ID == id })
}

// Promote makes entry id current.
func (f *File) Promote(id uint32, now time.Time) error {
	if !f.has(id) {
		return fmt.Errorf("keyring: no key %d", id)
	}
	f.Current, f.CurrentSince = id, now.UTC()
	if f.Next == id {
		f.Next = 0
	}
	return nil
}

// Retire removes every entry that is neither current nor staged nor
// referenced: inUse holds the number of stored rows per key id (as
// store's KeyUsage gives it). It
// returns the ids removed, and an error (removing nothing) when an entry
// it would remove is still referenced.
func (f *File) Retire(inUse map[int64]int64) ([]uint32, error) {
	var keep []Entry
	var removed []uint32
	for _, e := range f.Keys {
		switch {
		case e.ID == f.Current, e.ID == f.Next:
			keep = append(keep, e)
		case inUse[int64(e.ID)] > 0:
			return nil, fmt.Errorf("keyring: key %d still seals %d stored messages; rewrap them first", e.ID, inUse[int64(e.ID)])
		default:
			removed = append(removed, e.ID)
		}
	}
	for id, n := range inUse {
		if n > 0 && (id < 1 || id > math.MaxUint32 || !f.has(uint32(id))) {
			return nil, fmt.Errorf("keyring: %d stored messages are sealed under key %d, which the keyring does not hold: %w", n, id, store.ErrUnknownKey)
		}
	}
	f.Keys = keep
	return removed, nil
}

// StoreKeyring returns the keyring the store uses: each entry's message
// key under its id, sealing with the current one.
func (f *File) StoreKeyring() (*store.StaticKeyring, error) {
	keys := make(map[uint32][]byte, len(f.Keys))
	for _, e := range f.Keys {
		id, k := MessageKey(e.Key)
		keys[id] = k
	}
	return store.NewKeyring(keys, f.Current)
}
