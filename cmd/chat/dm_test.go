package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDMBetweenTwoChats: alice in the room client switches to bob with
// /dm; bob runs chat -to alice through a proxy. Each reads what the other
// types (A→B, B→A); bob's connection is cut and resumed, and what alice
// says after arrives; then bob is away while alice sends 30 messages, and
// his next chat -to shows exactly those 30, in order, once each. Alice's
// profile, saved before devices (no device file), gets its device id
// written back by the interactive session, and her sender counters are
// kept in the profile.
func TestDMBetweenTwoChats(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := accountServer(t, a)
	p := startProxy(t, ts)
	alice, bob := newPerson(t, "alice", "alice's password"), newPerson(t, "bob", "bob's password")
	alice.register(t, ts.url)
	bob.register(t, ts.url)
	deviceFile := filepath.Join(alice.profile(), "device")
	if err := os.Remove(deviceFile); err != nil {
		t.Fatal(err)
	}

	ac := start(t, alice.env(ts.url), "-user", "alice")
	waitFor(t, "alice stderr", ac.stderr, "joined #general")
	ac.typeLine("/dm bob")
	waitFor(t, "alice stderr", ac.stderr, "talking with bob")
	if _, err := os.Stat(deviceFile); err != nil {
		t.Fatalf("the interactive session did not save the learned device id: %v", err)
	}

	bobEnv := bob.env(p.url)
	bobEnv["MESSENGER_PIN"] = ts.fp.String()
	bc := start(t, bobEnv, "-user", "bob", "-to", "alice")
	waitFor(t, "bob stderr", bc.stderr, "conversation with alice")

	ac.typeLine("hello bob")
	waitFor(t, "bob stdout", bc.stdout, "alice: hello bob")
	bc.typeLine("hello alice")
	waitFor(t, "alice stdout", ac.stdout, "bob: hello alice")

	p.cut()
	waitFor(t, "bob stderr", bc.stderr, "connection lost")
	waitFor(t, "bob stderr", bc.stderr, "(session resumed)")
	ac.typeLine("after the cut")
	waitFor(t, "bob stdout", bc.stdout, "alice: after the cut")
	bc.typeLine("got it")
	waitFor(t, "alice stdout", ac.stdout, "bob: got it")
	bc.stdin.Close()
	if err := bc.wait(); err != nil {
		t.Fatalf("bob's chat: %v; stderr:\n%s", err, bc.stderr)
	}

	// Bob away: 30 messages.
	var want []string
	for i := 1; i <= 30; i++ {
		want = append(want, fmt.Sprintf("away %02d", i))
		ac.typeLine(want[len(want)-1])
	}
	// /room goes back to a room: this line is said in #general, not to bob.
	ac.typeLine("/room general")
	ac.typeLine("to the room")
	waitFor(t, "alice stdout", ac.stdout, "<alice> to the room")

	bj := start(t, bob.env(ts.url), "-user", "bob", "-to", "alice", "-json", "-listen", "0")
	waitFor(t, "bob stdout", bj.stdout, `"text":"away 30"`)
	bj.stdin.Close()
	if err := bj.wait(); err != nil {
		t.Fatalf("bob's chat -json: %v; stderr:\n%s", err, bj.stderr)
	}
	var got []string
	var last int64
	for _, line := range strings.Split(strings.TrimSpace(bj.stdout.String()), "\n") {
		var l directLine
		if err := json.Unmarshal([]byte(line), &l); err != nil || l.Type != "conv_text" {
			continue
		}
		if l.From != "alice" || !l.Verified || l.Seq <= last {
			t.Errorf("bob's line %+v after seq %d", l, last)
		}
		last = l.Seq
		got = append(got, l.Text)
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("bob's second chat showed %q, want exactly %q", got, want)
	}
	if files, _ := filepath.Glob(filepath.Join(alice.profile(), "conv-*.json")); len(files) != 1 {
		t.Errorf("alice's profile holds counter files %v, want one", files)
	}
}
