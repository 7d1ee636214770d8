package client

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestIdentitySaveLoad(t *testing.T) {
	s, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	id := &Identity{User: "alice", Signing: s, Encryption: e}
	dir := filepath.Join(t.TempDir(), "profiles", "alice")
	if HasIdentity(dir) {
		t.Fatal("empty profile has an identity")
	}
	if _, err := LoadIdentity(dir, "alice"); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("load from empty profile: %v", err)
	}
	if err := id.Save(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range IdentityFiles {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", name, st.Mode().Perm(), err)
		}
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("profile dir mode %v", st.Mode().Perm())
	}
	got, err := LoadIdentity(dir, "alice")
	if err != nil || !got.Signing.Equal(s) || !got.Encryption.Equal(e) {
		t.Fatalf("load: %v", err)
	}
	fp1, _ := id.Fingerprint()
	fp2, _ := got.Fingerprint()
	if fp1 != fp2 {
		t.Fatal("fingerprint changed across save/load")
	}
	// A second save refuses to overwrite, and leaves the keys as they were.
	other := &Identity{User: "alice", Signing: e, Encryption: s}
	if err := other.Save(dir); err == nil {
		t.Fatal("Save overwrote existing keys")
	}
	again, err := LoadIdentity(dir, "alice")
	if err != nil || !again.Signing.Equal(s) {
		t.Fatalf("keys changed by a refused save: %v", err)
	}
	// Half a profile (only the encryption key present): Save writes
	// nothing, and removes the signing key it wrote before failing.
	half := filepath.Join(t.TempDir(), "half")
	if err := os.MkdirAll(half, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(half, IdentityFiles[1]), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := id.Save(half); err == nil {
		t.Fatal("Save into a half profile succeeded")
	}
	if _, err := os.Stat(filepath.Join(half, IdentityFiles[0])); !os.IsNotExist(err) {
		t.Fatalf("Save left a signing key behind: %v", err)
	}
	if _, err := NewIdentity("Not Valid", 2048); err == nil {
		t.Fatal("NewIdentity accepted an invalid user name")
	}
}
