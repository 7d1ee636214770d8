package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// TestPasswd: chat passwd changes the password; alice's other running chat
// is closed by the server and signs in again with its keys; only the new
// password logs in afterwards.
func TestPasswd(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := accountServer(t, a)
	alice, bob := newPerson(t, "alice", "alice's password"), newPerson(t, "bob", "bob's password")
	alice.register(t, ts.url)
	bob.register(t, ts.url)
	ai := start(t, alice.env(ts.url), "-user", "alice", "-room", "general")
	waitFor(t, "alice stderr", ai.stderr, "joined #general: members alice")
	bi := start(t, bob.env(ts.url), "-user", "bob", "-room", "general")
	waitFor(t, "bob stderr", bi.stderr, "joined #general: members alice, bob")

	newFile := filepath.Join(t.TempDir(), "new")
	const newPassword = "alice's new password"
	if err := os.WriteFile(newFile, []byte(newPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runOnce(t, alice.env(ts.url), "passwd", "-user", "alice", "-password-file", alice.pwFile, "-new-password-file", newFile)
	if err != nil {
		t.Fatalf("passwd: %v; stderr:\n%s", err, stderr)
	}
	if stdout != "" || !strings.Contains(stderr, "changed the password of alice") {
		t.Errorf("passwd printed stdout %q, stderr:\n%s", stdout, stderr)
	}
	if strings.Contains(stdout+stderr, alice.password) || strings.Contains(stdout+stderr, newPassword) {
		t.Errorf("passwd printed a password:\n%s\n%s", stdout, stderr)
	}

	// Alice's running chat: closed, signed in again with its keys, at work.
	waitFor(t, "alice stderr", ai.stderr, "connection closed: alice's password or keys changed, here or on another device")
	waitForAfter(t, "alice stderr", ai.stderr, "password or keys changed", "; signed in again as alice)")
	waitForAfter(t, "alice stderr", ai.stderr, "signed in again as alice", "joined #general: members alice, bob")
	ai.typeLine("still me")
	waitFor(t, "bob stdout", bi.stdout, "<alice> still me")
	if strings.Contains(bi.stderr.String(), "password or keys changed") {
		t.Errorf("bob's chat was closed too:\n%s", bi.stderr)
	}

	// Only the new password logs in.
	_, _, err = runOnce(t, alice.env(ts.url), "login", "-user", "alice", "-password-file", alice.pwFile)
	if code := exitCode(err); code != exitRuntime || !errors.Is(err, protocol.CodeAuthFailed) {
		t.Errorf("login with the old password: exit %d (%v), want 1 with auth_failed", code, err)
	}
	if _, stderr, err := runOnce(t, alice.env(ts.url), "login", "-user", "alice", "-password-file", newFile); err != nil {
		t.Fatalf("login with the new password: %v; stderr:\n%s", err, stderr)
	}

	// The old password no longer changes it.
	_, _, err = runOnce(t, alice.env(ts.url), "passwd", "-user", "alice", "-password-file", alice.pwFile, "-new-password-file", newFile)
	if code := exitCode(err); code != exitRuntime || !errors.Is(err, protocol.CodeAuthFailed) || !strings.Contains(err.Error(), "wrong current password") {
		t.Errorf("passwd with the old password: exit %d (%v), want 1 with auth_failed and a hint", code, err)
	}

	// Both from a pipe: the current password, then the new one.
	if _, stderr, err := runInput(t, alice.env(ts.url), newPassword+"\nfrom a pipe, line two\n", "passwd", "-user", "alice"); err != nil {
		t.Fatalf("passwd from standard input: %v; stderr:\n%s", err, stderr)
	}
	if _, stderr, err := runInput(t, alice.env(ts.url), "from a pipe, line two\n", "login", "-user", "alice"); err != nil {
		t.Fatalf("login with the password from the pipe: %v; stderr:\n%s", err, stderr)
	}
}

// TestPasswdRefusedOffline: what chat passwd refuses before connecting.
func TestPasswdRefusedOffline(t *testing.T) {
	t.Parallel()
	const nowhere = "ws://127.0.0.1:1/ws"
	alice := newPerson(t, "alice", "alice's password")
	env := alice.env(nowhere)

	_, _, err := runOnce(t, env, "passwd", "-user", "alice", "-password-file", alice.pwFile, "-new-password-file", alice.pwFile)
	if code := exitCode(err); code != exitUsage || !strings.Contains(err.Error(), "no keys for alice") {
		t.Errorf("passwd without keys: exit %d (%v), want 2", code, err)
	}
	_, _, err = runOnce(t, nil, "passwd")
	if code := exitCode(err); code != exitUsage || !strings.Contains(err.Error(), "-user is required") {
		t.Errorf("passwd without -user: exit %d (%v), want 2", code, err)
	}

	// With keys, but a new password that is too short, or missing.
	k, _ := identityKeys(t)
	if err := (&client.Identity{User: "alice", Signing: k, Encryption: k}).Save(alice.profile()); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = runOnce(t, env, "passwd", "-user", "alice", "-password-file", alice.pwFile, "-new-password-file", short)
	if code := exitCode(err); code != exitUsage || !strings.Contains(err.Error(), "too short") {
		t.Errorf("passwd with a short new password: exit %d (%v), want 2", code, err)
	}
	_, _, err = runInput(t, env, "", "passwd", "-user", "alice", "-password-file", alice.pwFile)
	if code := exitCode(err); code != exitUsage || !strings.Contains(err.Error(), "-new-password-file") {
		t.Errorf("passwd without a new password: exit %d (%v), want 2 naming -new-password-file", code, err)
	}
}

// TestNewPasswordSources: where chat passwd takes the new password from.
func TestNewPasswordSources(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "new")
	if err := os.WriteFile(file, []byte("from the new file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name            string
		newFile, newEnv string
		stdin           string
		current, next   string
	}{
		{name: "file", newFile: file, newEnv: "from env", stdin: "current\nfrom stdin\n", current: "current", next: "from the new file"},
		{name: "env", newEnv: "new from env", stdin: "current\nfrom stdin\n", current: "current", next: "new from env"},
		{name: "second line of stdin", stdin: "current\nnew from stdin\n", current: "current", next: "new from stdin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &passwordSource{
				newFile: tc.newFile,
				getenv:  func(k string) string { return map[string]string{"MESSENGER_NEW_PASSWORD": tc.newEnv}[k] },
				stdin:   strings.NewReader(tc.stdin),
				ui:      newUI(&bytes.Buffer{}, &bytes.Buffer{}, false, ""),
			}
			cur, err := src.read(t.Context(), "alice", false)
			if err != nil || cur != tc.current {
				t.Fatalf("current: %q, %v; want %q", cur, err, tc.current)
			}
			next, err := src.readNew(t.Context(), "alice")
			if err != nil || next != tc.next {
				t.Fatalf("new: %q, %v; want %q", next, err, tc.next)
			}
		})
	}
}
