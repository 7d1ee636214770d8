package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/secure-messenger/messenger/internal/syncbuf"
)

var deviceLine = regexp.MustCompile(`(?m)^  [0-9a-f-]{36}  [0-9a-f]{64}  `)

var codeLine = regexp.MustCompile(`(?m)^([A-Z2-7]{4}(?:-[A-Z2-7]{1,4}){7})$`)

// TestLinkDevice: chat devices -add on alice's first machine shows a code;
// chat login -link CODE on a second machine (another home) adds it
// without the password once the first says y; the new profile then signs
// in, and both list the same two devices. A mistyped code is refused on
// the new machine, and "no" adds nothing.
func TestLinkDevice(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := accountServer(t, a)
	alice := newPerson(t, "alice", "alice's password")
	alice.register(t, ts.url)
	laptop := newPerson(t, "alice", "")

	e := start(t, alice.env(ts.url), "devices", "-user", "alice", "-add")
	code := waitCode(t, e.stdout)
	type result struct {
		stdout, stderr string
		err            error
	}
	done := make(chan result, 1)
	go func() {
		o, se, err := runOnce(t, laptop.env(ts.url), "login", "-user", "alice", "-link", strings.ToLower(code), "-key-bits", testKeyBits)
		done <- result{o, se, err}
	}()
	waitFor(t, "the offer", e.stderr, "wants to join alice")
	e.typeLine("y")
	if err := e.wait(); err != nil {
		t.Fatalf("devices -add: %v; stderr:\n%s", err, e.stderr)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("login -link: %v; stderr:\n%s", r.err, r.stderr)
	}
	_, fp, _ := parseKeys(t, r.stdout)
	checkProfile(t, laptop.profile())
	for _, p := range []*person{alice, laptop} {
		stdout, stderr, err := runOnce(t, p.env(ts.url), "devices", "-user", "alice")
		if err != nil {
			t.Fatalf("devices: %v; stderr:\n%s", err, stderr)
		}
		if _, got, _ := parseKeys(t, stdout); got != fp || len(deviceLine.FindAllString(stderr, -1)) != 2 || strings.Count(stderr, "(this device)") != 1 {
			t.Fatalf("devices printed %q (want %s), stderr:\n%s", stdout, fp, stderr)
		}
	}

	t.Run("WrongCode", func(t *testing.T) {
		e := start(t, alice.env(ts.url), "devices", "-user", "alice", "-add")
		code := waitCode(t, e.stdout)
		// A changed first character is a link id the server never gave.
		bad := flipChar(code, 0)
		other := newPerson(t, "alice", "")
		_, stderr, err := runOnce(t, other.env(ts.url), "login", "-user", "alice", "-link", bad, "-key-bits", testKeyBits)
		if exitCode(err) != exitRuntime || !strings.Contains(err.Error(), "no such link code") {
			t.Fatalf("login with a wrong code: %v; stderr:\n%s", err, stderr)
		}
		if ok, _ := hasKeys(other.profile()); ok {
			t.Error("a refused link left keys in the profile")
		}
		e.stdin.Close()
	})

	t.Run("Declined", func(t *testing.T) {
		e := start(t, alice.env(ts.url), "devices", "-user", "alice", "-add")
		code := waitCode(t, e.stdout)
		other := newPerson(t, "alice", "")
		in := start(t, other.env(ts.url), "login", "-user", "alice", "-link", code, "-key-bits", testKeyBits)
		waitFor(t, "the offer", e.stderr, "wants to join alice")
		e.typeLine("n")
		if err := e.wait(); exitCode(err) != exitRuntime {
			t.Fatalf("devices -add answered n: %v", err)
		}
		in.stdin.Close()
	})

	if _, _, err := runOnce(t, laptop.env(ts.url), "login", "-user", "alice", "-link", "not-a-code"); exitCode(err) != exitUsage {
		t.Errorf("-link not-a-code: %v, want a usage error", err)
	}
}

// waitCode waits for the link code line on stdout.
func waitCode(t *testing.T, stdout *syncbuf.Buffer) string {
	t.Helper()
	waitUntil(t, "the link code", stdout, func(s string) bool { return codeLine.MatchString(s) }, "no code line")
	return codeLine.FindStringSubmatch(stdout.String())[1]
}

// flipChar changes the base32 character at i of code to another one.
func flipChar(code string, i int) string {
	b := []byte(code)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
