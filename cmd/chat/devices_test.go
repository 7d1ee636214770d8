package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDevicesLegacyProfile: a profile from before devices (no device
// file) still signs in, and chat devices learns its id from the server,
// writes it into the profile, and marks it as this device.
func TestDevicesLegacyProfile(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := accountServer(t, a)
	alice := newPerson(t, "alice", "alice's password")
	fp := alice.register(t, ts.url)
	file := filepath.Join(alice.profile(), "device")
	id, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runOnce(t, alice.env(ts.url), "devices", "-user", "alice")
	if err != nil {
		t.Fatalf("devices: %v; stderr:\n%s", err, stderr)
	}
	if _, got, _ := parseKeys(t, stdout); got != fp {
		t.Errorf("devices printed %q, want the fingerprint %s", stdout, fp)
	}
	want := strings.TrimSpace(string(id))
	if !strings.Contains(stderr, want+"  ") || !strings.Contains(stderr, "(this device)") {
		t.Errorf("devices did not list %s as this device:\n%s", want, stderr)
	}
	again, err := os.ReadFile(file)
	if err != nil || strings.TrimSpace(string(again)) != want {
		t.Fatalf("device file after chat devices: %q, %v; want %s", again, err, want)
	}
	checkProfile(t, alice.profile())
	// -remove checks its argument before connecting.
	if _, _, err := runOnce(t, alice.env(ts.url), "devices", "-user", "alice", "-remove", "laptop"); exitCode(err) != exitUsage {
		t.Errorf("-remove laptop: %v, want a usage error", err)
	}
}
