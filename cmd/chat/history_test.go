package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// TestOfflineMessagesOnStart: what was said in bob's room while he was
// away shows when he starts chat, once each, in order, with seq in -json;
// chat records how far he has read, so the next start shows nothing old;
// /history and /unread work.
func TestOfflineMessagesOnStart(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := accountServer(t, a)
	alice, bob := newPerson(t, "alice", "alice's password"), newPerson(t, "bob", "bob's password")
	alice.register(t, ts.url)
	bob.register(t, ts.url)
	send := func(p *person, body string) {
		t.Helper()
		if _, stderr, err := runOnce(t, p.env(ts.url), "-user", p.user, "-room", "team", "-send", body); err != nil {
			t.Fatalf("%s -send: %v; stderr:\n%s", p.user, err, stderr)
		}
	}
	send(bob, "m1") // bob is a member from now on
	for i := 2; i <= 4; i++ {
		send(alice, fmt.Sprintf("m%d", i))
	}

	bj := start(t, bob.env(ts.url), "-user", "bob", "-room", "team", "-json", "-listen", "0")
	waitFor(t, "bob stdout", bj.stdout, `"body":"m4"`)
	var got []string
	for _, m := range jsonLines(t, bj.stdout.String()) {
		if m.Type == protocol.MsgMessage {
			got = append(got, fmt.Sprintf("%d:%s", m.Seq, m.Body))
		}
	}
	if want := "1:m1 2:m2 3:m3 4:m4"; strings.Join(got, " ") != want {
		t.Fatalf("bob got %q, want %q", strings.Join(got, " "), want)
	}
	u, err := ts.db.UserByName(context.Background(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(waitTimeout); ; time.Sleep(10 * time.Millisecond) {
		if seq, err := ts.db.ReadPosition(context.Background(), u.ID, store.RoomStream("team")); err == nil && seq == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bob's read position did not reach 4")
		}
	}
	bj.stdin.Close()
	if err := bj.wait(); err != nil {
		t.Fatal(err)
	}

	bt := start(t, bob.env(ts.url), "-user", "bob", "-room", "team")
	waitFor(t, "bob stderr", bt.stderr, "joined #team")
	bt.typeLine("/unread")
	waitFor(t, "bob stderr", bt.stderr, "#team: 0 unread")
	bt.typeLine("/history 2")
	waitFor(t, "bob stderr", bt.stderr, "history of #team: 2 messages")
	waitFor(t, "bob stdout", bt.stdout, "<alice> m4")
	if out := bt.stdout.String(); !strings.Contains(out, "<alice> m3") || strings.Contains(out, "m2") || strings.Count(out, "m4") != 1 {
		t.Fatalf("bob's second start shows:\n%s\nwant only m3 and m4, from /history", out)
	}
}

// TestSendRetriedOnceAfterLostAnswer: alice's message reaches the server,
// which commits it, but the answer is lost with the connection. chat
// resumes the session and sends it again under the same message id: bob
// sees it once.
func TestSendRetriedOnceAfterLostAnswer(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := accountServer(t, a)
	p := startProxy(t, ts)
	alice, bob := newPerson(t, "alice", "alice's password"), newPerson(t, "bob", "bob's password")
	alice.register(t, ts.url)
	bob.register(t, ts.url)

	bj := start(t, bob.env(ts.url), "-user", "bob", "-room", "team", "-json")
	waitFor(t, "bob stderr", bj.stderr, "joined #team")
	ai := start(t, alice.env(p.url), "-user", "alice", "-room", "team", "-pin", ts.fp.String())
	waitFor(t, "alice stderr", ai.stderr, "joined #team")
	time.Sleep(200 * time.Millisecond) // let alice's read acknowledgements of the join settle
	p.loseNextAnswer()
	ai.typeLine("only once")
	waitFor(t, "alice stderr", ai.stderr, "(session resumed)")
	ai.typeLine("after it")
	waitFor(t, "bob stdout", bj.stdout, `"body":"after it"`)
	var got []string
	for _, m := range jsonLines(t, bj.stdout.String()) {
		if m.Type == protocol.MsgMessage {
			got = append(got, fmt.Sprintf("%d:%s", m.Seq, m.Body))
		}
	}
	if want := "1:only once 2:after it"; strings.Join(got, " ") != want {
		t.Fatalf("bob got %q, want %q; alice's stderr:\n%s", strings.Join(got, " "), want, ai.stderr)
	}
	if strings.Contains(ai.stderr.String(), "error") {
		t.Errorf("alice saw an error:\n%s", ai.stderr)
	}
}
