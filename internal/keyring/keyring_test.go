package keyring

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/store"
)

var root = bytes.Repeat([]byte{0x42}, 32)

// TestMessageKeyIsTheOneBeforeKeyrings: the key and id derived from a
// storage key are what the server derived from storage.key before the
// keyring existed (HKDF-SHA256, info "messenger v1 storage ..."), so rows
// stored then keep reading.
func TestMessageKeyIsTheOneBeforeKeyrings(t *testing.T) {
	key, _ := hkdf.Key(sha256.New, root, nil, "messenger v1 storage stored messages", 32)
	idBytes, _ := hkdf.Key(sha256.New, root, nil, "messenger v1 storage message key id", 32)
	id, got := MessageKey(root)
	if id != binary.BigEndian.Uint32(idBytes) || !bytes.Equal(got, key) {
		t.Errorf("MessageKey = %d, %x", id, got)
	}
	kr, err := Single(root).StoreKeyring()
	if err != nil {
		t.Fatal(err)
	}
	if cid, ckey := kr.Current(); cid != id || !bytes.Equal(ckey, key) {
		t.Errorf("Single's current key is %d", cid)
	}
}

func TestLoadAndSave(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	f, err := Load(path, root)
	if err != nil || len(f.Keys) != 1 || !bytes.Equal(f.Keys[0].Key, root) {
		t.Fatalf("Load of a missing file: %+v, %v; want storage.key alone", f, err)
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	id, err := f.Add(now)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Promote(id, now); err != nil {
		t.Fatal(err)
	}
	if err := Save(path, f); err != nil {
		t.Fatal(err)
	}
	g, err := Load(path, nil)
	if err != nil || g.Current != id || len(g.Keys) != 2 || !g.CurrentSince.Equal(now) {
		t.Fatalf("Load after Save: %+v, %v", g, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	// Each bad file is refused with ErrBadFile and what is wrong.
	good, _ := os.ReadFile(path)
	cases := map[string]string{
		"not JSON":        "{",
		"unknown field":   strings.Replace(string(good), `"version"`, `"extra": 1, "version"`, 1),
		"version 2":       strings.Replace(string(good), `"version": 1`, `"version": 2`, 1),
		"current unknown": strings.Replace(string(good), `"current": `, `"current": 1`, 1),
		"no keys":         `{"version": 1, "current": 1, "keys": []}`,
	}
	for name, content := range cases {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path, nil); !errors.Is(err, ErrBadFile) {
			t.Errorf("%s: %v, want ErrBadFile", name, err)
		}
	}
	// A key whose id is not the one it derives (an edited file).
	g.Keys[1].Key = bytes.Repeat([]byte{1}, 32)
	if err := Save(path, g); !errors.Is(err, ErrBadFile) {
		t.Errorf("Save of a key under a wrong id: %v", err)
	}
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, nil); !errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a file others may read: %v", err)
	}
}

// TestRetire: only keys that no row names go, never the current or the
// staged one; a key still in use, or rows under a key the keyring does
// not hold, stop it with nothing removed.
func TestRetire(t *testing.T) {
	now := time.Now()
	f := Single(root)
	first := f.Current
	second, _ := f.Add(now)
	_ = f.Promote(second, now)
	third, _ := f.Add(now)
	f.Next = third
	if _, err := f.Retire(map[int64]int64{int64(first): 3, int64(second): 5}); err == nil || len(f.Keys) != 3 {
		t.Errorf("retire with rows under key %d: %v, %d keys left", first, err, len(f.Keys))
	}
	if _, err := f.Retire(map[int64]int64{int64(second): 5, 77: 1}); !errors.Is(err, store.ErrUnknownKey) || len(f.Keys) != 3 {
		t.Errorf("retire with rows under an unknown key: %v", err)
	}
	removed, err := f.Retire(map[int64]int64{int64(second): 5})
	if err != nil || !slices.Equal(removed, []uint32{first}) || len(f.Keys) != 2 {
		t.Errorf("retire: %v, %v; %d keys left", removed, err, len(f.Keys))
	}
	if err := f.check(); err != nil {
		t.Error(err)
	}
}

// TestWatcher: a Watcher follows the file on Reload, and a lookup of a key
// id it does not hold re-reads the file, so a row another node sealed
// under a new key reads before this node's next reload.
func TestWatcher(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	w, err := NewWatcher(path, root, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	first, _ := w.Current()
	f, _ := Load(path, root)
	second, _ := f.Add(time.Now())
	_ = f.Promote(second, time.Now())
	if err := Save(path, f); err != nil {
		t.Fatal(err)
	}
	if id, _ := w.Current(); id != first {
		t.Errorf("current %d before a reload, want %d", id, first)
	}
	if _, err := w.Key(second); err != nil {
		t.Errorf("Key of the new id: %v (should have re-read the file)", err)
	}
	if id, _ := w.Current(); id != second {
		t.Errorf("current %d after the re-read, want %d", id, second)
	}
	if _, err := w.Key(12345); !errors.Is(err, store.ErrUnknownKey) {
		t.Errorf("Key of an unknown id: %v", err)
	}
	// A file broken later leaves the keys as they were.
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.Reload(); !errors.Is(err, ErrBadFile) {
		t.Errorf("Reload of a broken file: %v", err)
	}
	if _, err := w.Key(first); err != nil {
		t.Errorf("after a failed reload: %v", err)
	}
}
