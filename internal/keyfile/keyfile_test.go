package keyfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRSACreateLoadAndPermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "identity.pem")
	k1, created, err := LoadOrCreateRSA(path, 2048)
	if err != nil || !created {
		t.Fatalf("create: %v, created %v", err, created)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	k2, created, err := LoadOrCreateRSA(path, 2048)
	if err != nil || created || !k1.Equal(k2) {
		t.Fatalf("load: %v, created %v, same key %v", err, created, k1.Equal(k2))
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateRSA(path, 2048); !errors.Is(err, ErrPermissions) {
		t.Fatalf("world-readable key: %v, want ErrPermissions", err)
	}
}

func TestSymmetric(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "storage.key")
	k1, created, err := LoadOrCreateSymmetric(path)
	if err != nil || !created || len(k1) != 32 {
		t.Fatalf("create: %v %v %d", err, created, len(k1))
	}
	k2, created, err := LoadOrCreateSymmetric(path)
	if err != nil || created || string(k1) != string(k2) {
		t.Fatalf("load: %v %v", err, created)
	}
	short := filepath.Join(dir, "short.key")
	if err := os.WriteFile(short, []byte("too short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateSymmetric(short); !errors.Is(err, ErrBadKeyFile) {
		t.Fatalf("short key: %v, want ErrBadKeyFile", err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("-----BEGIN NOTHING-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateRSA(garbage, 2048); !errors.Is(err, ErrBadKeyFile) {
		t.Fatalf("garbage key: %v, want ErrBadKeyFile", err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateSymmetric(path); !errors.Is(err, ErrPermissions) {
		t.Fatalf("group-readable key: %v, want ErrPermissions", err)
	}
}
