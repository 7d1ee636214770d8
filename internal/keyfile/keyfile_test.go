package keyfile

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
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

// TestRSAKeyRule: no identity key outside the protocol's RSA key rule is
// created or loaded, so a server never starts with a key its clients
// would refuse; an existing one is named in the error and left alone.
func TestRSAKeyRule(t *testing.T) {
	dir := t.TempDir()
	for _, bits := range []int{1024, 2560, 5000} {
		path := filepath.Join(dir, "new.pem")
		if _, _, err := LoadOrCreateRSA(path, bits); !errors.Is(err, ErrRSAKeyRule) {
			t.Fatalf("create %d bits: %v, want ErrRSAKeyRule", bits, err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("a refused %d-bit key was written: %v", bits, err)
		}
	}
	odd, err := rsa.GenerateKey(rand.Reader, 2560)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(odd)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "identity.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = LoadOrCreateRSA(path, 3072)
	if !errors.Is(err, ErrRSAKeyRule) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "2560 bits") {
		t.Fatalf("existing 2560-bit key: %v, want ErrRSAKeyRule naming the file and the size", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatal("the refused key file was changed")
	}
}
