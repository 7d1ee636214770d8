package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// TestDirectConversation: alice sends bob a message with chat -to while
// he is away and another while he listens; bob's chat -to -json shows
// both, once each, in order, verified, decrypted here; and chat safety
// prints the same safety number for both of them.
func TestDirectConversation(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := accountServer(t, a)
	alice, bob := newPerson(t, "alice", "alice's password"), newPerson(t, "bob", "bob's password")
	alice.register(t, ts.url)
	bob.register(t, ts.url)
	send := func(text string) {
		t.Helper()
		if _, stderr, err := runOnce(t, alice.env(ts.url), "-user", "alice", "-to", "bob", "-send", text); err != nil {
			t.Fatalf("alice -to bob -send: %v; stderr:\n%s", err, stderr)
		}
	}
	send("first, while bob is away")
	bj := start(t, bob.env(ts.url), "-user", "bob", "-to", "alice", "-json", "-listen", "0")
	waitFor(t, "bob stdout", bj.stdout, `"text":"first, while bob is away"`)
	send("second, live")
	waitFor(t, "bob stdout", bj.stdout, `"text":"second, live"`)
	bj.stdin.Close()
	if err := bj.wait(); err != nil {
		t.Fatalf("bob's chat: %v; stderr:\n%s", err, bj.stderr)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(bj.stdout.String()), "\n") {
		var l directLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("bob's stdout line %q: %v", line, err)
		}
		if l.Type != "conv_text" {
			continue
		}
		if l.From != "alice" || !l.Verified {
			t.Errorf("bob's line %+v", l)
		}
		got = append(got, l.Text)
	}
	if want := "first, while bob is away|second, live"; strings.Join(got, "|") != want {
		t.Fatalf("bob got %q, want %q", strings.Join(got, "|"), want)
	}

	number := regexp.MustCompile(`^(\d{5} ){11}\d{5}\n$`)
	sa, stderr, err := runOnce(t, alice.env(ts.url), "safety", "-user", "alice", "bob")
	if err != nil || !number.MatchString(sa) {
		t.Fatalf("alice's safety number %q, %v; stderr:\n%s", sa, err, stderr)
	}
	sb, stderr, err := runOnce(t, bob.env(ts.url), "safety", "-user", "bob", "alice")
	if err != nil || sb != sa {
		t.Fatalf("bob's safety number %q, alice's %q, %v; stderr:\n%s", sb, sa, err, stderr)
	}
}
