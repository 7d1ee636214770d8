package client

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
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
	id := &Identity{User: "alice", Device: uuid.New(), Signing: s, Encryption: e}
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
	if err != nil || !got.Signing.Equal(s) || !got.Encryption.Equal(e) || got.Device != id.Device {
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

// TestLegacyProfileDevice: a profile saved before devices (no device
// file) loads without a device id, cannot publish, and keeps the id it is
// given once SaveDevice writes it; SaveDevice never changes an id.
func TestLegacyProfileDevice(t *testing.T) {
	s, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := (&Identity{User: "alice", Signing: s, Encryption: s}).Save(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "device")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a device file for an identity without an id: %v", err)
	}
	id, err := LoadIdentity(dir, "alice")
	if err != nil || id.Device != uuid.Nil {
		t.Fatalf("load legacy: %v, device %s", err, id.Device)
	}
	if _, err := id.Bundle(); !errors.Is(err, ErrNoDeviceID) {
		t.Fatalf("Bundle without a device id: %v", err)
	}
	id.Device = uuid.New()
	if err := id.SaveDevice(dir); err != nil {
		t.Fatal(err)
	}
	other := *id
	other.Device = uuid.New()
	if err := other.SaveDevice(dir); err != nil {
		t.Fatal(err)
	}
	again, err := LoadIdentity(dir, "alice")
	if err != nil || again.Device != id.Device {
		t.Fatalf("reload: %v, device %s, want %s", err, again.Device, id.Device)
	}
	if err := os.WriteFile(filepath.Join(dir, "device"), []byte("not a uuid\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(dir, "alice"); err == nil {
		t.Fatal("loaded a profile with a garbled device id")
	}
}
