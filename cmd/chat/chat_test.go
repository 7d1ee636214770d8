package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secure-messenger/messenger/internal/server"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// hasMsg reports whether JSON output s has a room message with body from
// from in room.
func hasMsg(t *testing.T, s, room, from, body string) bool {
	for _, m := range jsonLines(t, s) {
		if m.Type == protocol.MsgMessage && m.Room == room && m.From == from && m.Body == body {
			return true
		}
	}
	return false
}

func TestSendReachesJSONListener(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := startServer(t, a)

	listener := start(t, ts.env(t), "-json", "-listen", "0", "-name", "bob")
	waitFor(t, "listener stderr", listener.stderr, "joined #general")

	_, stderr, err := runOnce(t, ts.env(t), "-send", "hello", "-name", "alice")
	if err != nil {
		t.Fatalf("-send: %v; stderr:\n%s", err, stderr)
	}
	waitUntil(t, "listener stdout", listener.stdout, func(s string) bool {
		return hasMsg(t, s, "general", "alice", "hello")
	}, `no {"t":"msg","from":"alice","body":"hello"} line`)
	if !strings.Contains(listener.stdout.String(), `"t":"msg"`) {
		t.Errorf("stdout has no \"t\":\"msg\" line:\n%s", listener.stdout)
	}

	listener.stdin.Close()
	if err := listener.wait(); err != nil {
		t.Fatalf("listener: %v", err)
	}
	// Everything on stdout is one JSON message a line, "ready" first. The
	// answer to join comes later, but not necessarily before the presence
	// event the join caused (see ui.reply).
	ms := jsonLines(t, listener.stdout.String())
	if ms[0].Type != protocol.MsgReady || ms[0].Session == nil || ms[0].Session.Name == "" {
		t.Errorf("first line: %+v; want ready with the session", ms[0])
	}
	if !slices.ContainsFunc(ms, func(m protocol.Message) bool {
		return m.Type == protocol.MsgJoined && m.Room == "general" && slices.Contains(m.Members, "bob")
	}) {
		t.Errorf("no joined line for #general with bob:\n%s", listener.stdout)
	}
}

func TestEnvironmentAndFlagPrecedence(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := startServer(t, a)

	env := ts.env(t)
	env["MESSENGER_ROOM"] = "lobby"
	env["MESSENGER_NAME"] = "envbob"
	env["MESSENGER_JSON"] = "true"
	env["MESSENGER_LISTEN"] = "0"
	listener := start(t, env)
	waitFor(t, "listener stderr", listener.stderr, "joined #lobby: members envbob")

	env = ts.env(t)
	env["MESSENGER_ROOM"] = "elsewhere"
	env["MESSENGER_NAME"] = "carl"
	if _, stderr, err := runOnce(t, env, "-room", "lobby", "-name", "dave", "-send", "flags win"); err != nil {
		t.Fatalf("-send: %v; stderr:\n%s", err, stderr)
	}
	waitUntil(t, "listener stdout", listener.stdout, func(s string) bool {
		return hasMsg(t, s, "lobby", "dave", "flags win")
	}, "no message from dave in lobby")
}

func TestListenDurationEnds(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := startServer(t, a)
	// The input stays open: only the duration can end it.
	in := start(t, ts.env(t), "-listen", "200ms")
	if err := in.wait(); err != nil {
		t.Fatalf("run: %v; stderr:\n%s", err, in.stderr)
	}
	if !strings.Contains(in.stderr.String(), "joined #general") {
		t.Errorf("stderr:\n%s", in.stderr)
	}
}

var lineStamp = `\[\d\d:\d\d:\d\d\] `

func TestInteractiveRooms(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := startServer(t, a)

	alice := start(t, ts.env(t), "-name", "alice")
	waitFor(t, "alice stderr", alice.stderr, "joined #general: members alice")
	bob := start(t, ts.env(t), "-name", "bob")
	waitFor(t, "bob stderr", bob.stderr, "joined #general: members alice, bob")
	carol := start(t, ts.env(t), "-name", "carol")
	waitFor(t, "carol stderr", carol.stderr, "joined #general: members alice, bob, carol")
	waitFor(t, "alice stdout", alice.stdout, "* bob joined #general")
	if !regexp.MustCompile(`connected to ws://\S+ as alice \(session [0-9a-f]{8}\), fingerprint ` + ts.fp.String()).MatchString(alice.stderr.String()) {
		t.Errorf("alice stderr has no connected line:\n%s", alice.stderr)
	}

	alice.typeLine("hello bob")
	waitFor(t, "bob stdout", bob.stdout, "<alice> hello bob")
	if !regexp.MustCompile(`(?m)^\(anon\) ` + lineStamp + `<alice> hello bob$`).MatchString(bob.stdout.String()) {
		t.Errorf("bob stdout, want (anon) [hh:mm:ss] <alice> hello bob:\n%s", bob.stdout)
	}

	// /join switches the room lines go to; only members of "other" see them.
	bob.typeLine("/join other")
	waitFor(t, "bob stderr", bob.stderr, "joined #other: members bob")
	alice.typeLine("/join other")
	waitFor(t, "alice stderr", alice.stderr, "joined #other: members alice, bob")
	alice.typeLine("secret")
	waitFor(t, "bob stdout", bob.stdout, "<alice> secret")
	// Back in general: bob sees it tagged with its room, being in #other.
	alice.typeLine("/room general")
	waitFor(t, "alice stderr", alice.stderr, "sending to #general")
	alice.typeLine("marker")
	waitFor(t, "carol stdout", carol.stdout, "<alice> marker")
	waitFor(t, "bob stdout", bob.stdout, "#general <alice> marker")
	// The hub delivers alice's messages in order, so had carol been sent
	// "secret", she would have it before "marker".
	if strings.Contains(carol.stdout.String(), "secret") {
		t.Errorf("carol, not in #other, got its message:\n%s", carol.stdout)
	}

	alice.typeLine("/quit")
	if err := alice.wait(); err != nil {
		t.Fatalf("alice /quit: %v", err)
	}
	waitFor(t, "bob stdout", bob.stdout, "* alice left #general")
	waitFor(t, "bob stdout", bob.stdout, "* alice left #other")

	bob.stdin.Close() // end of input
	if err := bob.wait(); err != nil {
		t.Fatalf("bob at end of input: %v", err)
	}
}

func TestInteractiveCommandsAndErrors(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := startServer(t, a)

	alice := start(t, ts.env(t), "-name", "alice")
	waitFor(t, "alice stderr", alice.stderr, "joined #general")
	bob := start(t, ts.env(t), "-name", "bob")
	waitFor(t, "bob stderr", bob.stderr, "joined #general")

	alice.typeLine("/help")
	waitFor(t, "alice stderr", alice.stderr, "/join ROOM")
	alice.typeLine("/who")
	waitFor(t, "alice stderr", alice.stderr, "error: unknown command /who")
	alice.typeLine("/join bad room")
	waitFor(t, "alice stderr", alice.stderr, "error: usage: /join ROOM")

	// A non-fatal server error is reported and the session goes on.
	alice.typeLine(strings.Repeat("x", protocol.MaxBody+1))
	waitFor(t, "alice stderr", alice.stderr, "error: too_large: ")
	alice.typeLine("//still here")
	waitFor(t, "bob stdout", bob.stdout, "<alice> /still here")

	alice.typeLine("/leave")
	waitFor(t, "alice stderr", alice.stderr, "left #general")
	waitFor(t, "alice stderr", alice.stderr, "not in any room")
	waitFor(t, "bob stdout", bob.stdout, "* alice left #general")
	alice.typeLine("nobody hears this")
	waitFor(t, "alice stderr", alice.stderr, "error: not in any room")
	alice.typeLine("/leave general")
	waitFor(t, "alice stderr", alice.stderr, "error: bad_request: ")

	alice.typeLine("/room general")
	waitFor(t, "bob stdout", bob.stdout, "* alice joined #general")
	alice.typeLine("back")
	waitFor(t, "bob stdout", bob.stdout, "<alice> back")
	if strings.Contains(bob.stdout.String(), "nobody hears this") {
		t.Errorf("a line typed in no room was sent:\n%s", bob.stdout)
	}

	alice.typeLine("/end")
	if err := alice.wait(); err != nil {
		t.Fatalf("alice /end: %v", err)
	}
	waitFor(t, "alice stderr", alice.stderr, "session ended")
}

func TestTrustOnFirstUse(t *testing.T) {
	t.Parallel()
	keyA, keyB := identityKeys(t)
	ts := startServer(t, keyA)
	home := t.TempDir() + "/messenger" // run creates it
	env := map[string]string{"MESSENGER_SERVER": ts.url, "MESSENGER_CHAT_HOME": home}
	knownHosts := filepath.Join(home, "known_hosts")

	_, stderr, err := runOnce(t, env, "-send", "first")
	if err != nil {
		t.Fatalf("first run: %v; stderr:\n%s", err, stderr)
	}
	wantLine := ts.host + " " + ts.fp.String() + "\n"
	if want := "pinned " + ts.host + " " + ts.fp.String() + " in " + knownHosts; !strings.Contains(stderr, want) {
		t.Errorf("first run stderr lacks %q:\n%s", want, stderr)
	}
	checkFile(t, knownHosts, wantLine, 0o600)
	if fi, err := os.Stat(home); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("home: %v, %v; want mode 0700", fi.Mode(), err)
	}

	// Second run: the host is known; nothing is pinned again.
	if _, stderr, err = runOnce(t, env, "-send", "second"); err != nil {
		t.Fatalf("second run: %v; stderr:\n%s", err, stderr)
	}
	if strings.Contains(stderr, "pinned") {
		t.Errorf("second run pinned again:\n%s", stderr)
	}
	checkFile(t, knownHosts, wantLine, 0o600)

	// A server whose key differs from the one pinned for its host.
	other := startServer(t, keyB)
	wrong := wantLine + other.host + " " + ts.fp.String() + "\n"
	if err := os.WriteFile(knownHosts, []byte(wrong), 0o600); err != nil {
		t.Fatal(err)
	}
	env["MESSENGER_SERVER"] = other.url
	_, _, err = runOnce(t, env, "-send", "to impostor")
	if code := exitCode(err); code != exitIdentity {
		t.Fatalf("changed key: exit %d (%v), want 3", code, err)
	}
	msg := err.Error()
	for _, want := range []string{"server identity key CHANGED for host " + other.host + ": refusing to connect", knownHosts, other.fp.String()} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if !errors.Is(err, client.ErrFingerprintMismatch) {
		t.Errorf("error does not wrap client.ErrFingerprintMismatch: %v", err)
	}
	checkFile(t, knownHosts, wrong, 0o600)

	// -pin with the right fingerprint ignores the (wrong) known_hosts and
	// leaves it as it is.
	colons := regexp.MustCompile(`..`).ReplaceAllStringFunc(other.fp.String(), func(s string) string { return s + ":" })
	if _, stderr, err := runOnce(t, env, "-pin", strings.TrimSuffix(colons, ":"), "-send", "pinned"); err != nil {
		t.Fatalf("-pin right: %v; stderr:\n%s", err, stderr)
	}
	checkFile(t, knownHosts, wrong, 0o600)

	// -pin alone never creates a home or known_hosts.
	fresh := filepath.Join(t.TempDir(), "fresh")
	if _, stderr, err := runOnce(t, map[string]string{"MESSENGER_SERVER": other.url, "MESSENGER_CHAT_HOME": fresh}, "-pin", other.fp.String(), "-send", "x"); err != nil {
		t.Fatalf("-pin in fresh home: %v; stderr:\n%s", err, stderr)
	}
	if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("-pin touched the home directory: %v", err)
	}

	_, _, err = runOnce(t, env, "-pin", ts.fp.String(), "-send", "x")
	if code := exitCode(err); code != exitIdentity {
		t.Fatalf("-pin wrong: exit %d (%v), want 3", code, err)
	}
	if !strings.Contains(err.Error(), "does not match -pin") {
		t.Errorf("-pin wrong: %v", err)
	}
}

func checkFile(t *testing.T, path, want string, perm os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Errorf("%s:\n%s\nwant:\n%s", path, b, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != perm {
		t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode().Perm(), err, perm)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"bad pin", nil, []string{"-pin", "abc"}, "-pin"},
		{"short pin", nil, []string{"-pin", strings.Repeat("ab", 31)}, "-pin"},
		{"unknown flag", nil, []string{"-bogus"}, "flag provided but not defined: -bogus"},
		{"bad suite", nil, []string{"-suite", "rc4"}, "-suite"},
		{"bad suite in env", map[string]string{"MESSENGER_SUITE": "des"}, nil, "-suite"},
		{"empty send", nil, []string{"-send", ""}, "-send"},
		{"send and listen", nil, []string{"-send", "x", "-listen", "1s"}, "exclude"},
		{"negative listen", nil, []string{"-listen", "-1s"}, "-listen"},
		{"bad listen in env", map[string]string{"MESSENGER_LISTEN": "soon"}, nil, "MESSENGER_LISTEN"},
		{"bad room", nil, []string{"-room", "no spaces"}, "-room"},
		{"bad name", nil, []string{"-name", "-dash"}, "-name"},
		{"http server", nil, []string{"-server", "http://127.0.0.1:1/ws"}, "ws://"},
		{"extra argument", nil, []string{"hello"}, "unexpected arguments"},
		{"register without user", nil, []string{"register"}, "-user is required"},
		{"bad user", nil, []string{"-user", "al ice"}, "-user"},
		{"bad user in env", map[string]string{"MESSENGER_USER": "-alice"}, []string{"fingerprint"}, "-user"},
		{"small keys", nil, []string{"register", "-user", "alice", "-key-bits", "1024"}, "-key-bits"},
		{"key size the server refuses", nil, []string{"login", "-user", "alice", "-new-keys", "-key-bits", "2560"}, "-key-bits"},
		{"bad key bits in env", map[string]string{"MESSENGER_KEY_BITS": "many"}, []string{"login", "-user", "alice"}, "MESSENGER_KEY_BITS"},
		{"new keys at register", nil, []string{"register", "-user", "alice", "-new-keys"}, "flag provided but not defined: -new-keys"},
		{"room for login", nil, []string{"login", "-user", "alice", "-room", "x"}, "flag provided but not defined: -room"},
		{"fingerprint of two", nil, []string{"fingerprint", "-user", "alice", "bob", "carol"}, "unexpected arguments"},
		{"fingerprint of a bad name", nil, []string{"fingerprint", "-user", "alice", "b/ob"}, "user"},
		{"no profile", map[string]string{"MESSENGER_CHAT_HOME": "/nonexistent/home"}, []string{"-user", "alice"}, "no keys for alice in /nonexistent/home/profiles/alice"},
		{"no profile for login", map[string]string{"MESSENGER_CHAT_HOME": "/nonexistent/home"}, []string{"login", "-user", "alice"}, "no keys for alice"},
		{"no profile for fingerprint", map[string]string{"MESSENGER_CHAT_HOME": "/nonexistent/home"}, []string{"fingerprint", "-user", "alice", "bob"}, "no keys for alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := runOnce(t, tc.env, tc.args...)
			if code := exitCode(err); code != exitUsage {
				t.Fatalf("exit %d (%v), want 2", code, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
			if strings.HasPrefix(tc.want, "flag provided") && !strings.Contains(stderr, "Usage: chat") {
				t.Errorf("no usage on stderr:\n%s", stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	_, stderr, err := runOnce(t, nil, "-h")
	if err != nil {
		t.Fatalf("-h: %v", err)
	}
	for _, want := range []string{"Usage:", "chat register", "-server", "MESSENGER_CHAT_HOME", "-suite", "-user"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("usage lacks %q:\n%s", want, stderr)
		}
	}
	for cmd, wants := range map[string][]string{
		"register":    {"Usage: chat register", "-password-file", "-key-bits", "MESSENGER_PASSWORD", "/proc"},
		"login":       {"Usage: chat login", "-new-keys", "-password-file"},
		"fingerprint": {"Usage: chat fingerprint", "-user"},
	} {
		_, stderr, err := runOnce(t, nil, cmd, "-h")
		if err != nil {
			t.Fatalf("%s -h: %v", cmd, err)
		}
		for _, want := range wants {
			if !strings.Contains(stderr, want) {
				t.Errorf("%s usage lacks %q:\n%s", cmd, want, stderr)
			}
		}
	}
}

func TestParseServerHost(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"ws://127.0.0.1:8080/ws":  "127.0.0.1:8080",
		"ws://example.com/ws":     "example.com:80",
		"wss://example.com/ws":    "example.com:443",
		"wss://[::1]:8443/ws":     "[::1]:8443",
		"wss://[::1]/ws?x=1#frag": "[::1]:443",
	} {
		if got, err := parseServer(in); err != nil || got != want {
			t.Errorf("parseServer(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"http://example.com/ws", "ws:///ws", "example.com:80", "ws://%zz"} {
		if got, err := parseServer(in); err == nil {
			t.Errorf("parseServer(%q) = %q, want an error", in, got)
		}
	}
}

func TestSendTooLarge(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := startServer(t, a)
	_, stderr, err := runOnce(t, ts.env(t), "-send", strings.Repeat("x", protocol.MaxBody+1))
	if code := exitCode(err); code != exitRuntime {
		t.Fatalf("exit %d (%v), want 1; stderr:\n%s", code, err, stderr)
	}
	if !errors.Is(err, protocol.CodeTooLarge) || !strings.Contains(err.Error(), "too_large") {
		t.Errorf("error %v does not name too_large", err)
	}
}

func TestSuiteFlag(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := startServer(t, a, func(c *server.Config) { c.Suites = []protocol.Suite{protocol.SuiteAES256CBCHMAC} })

	_, _, err := runOnce(t, ts.env(t), "-send", "x") // gcm by default
	if code := exitCode(err); code != exitRuntime || !errors.Is(err, protocol.CodeNoCommonSuite) {
		t.Fatalf("gcm against a cbc-only server: exit %d (%v), want 1 with no_common_suite", code, err)
	}
	if _, stderr, err := runOnce(t, ts.env(t), "-suite", "cbc", "-send", "x"); err != nil {
		t.Fatalf("-suite cbc: %v; stderr:\n%s", err, stderr)
	}
	if !strings.Contains(ts.logs.String(), protocol.SuiteAES256CBCHMAC.String()) {
		t.Errorf("server logged no %s handshake", protocol.SuiteAES256CBCHMAC)
	}
}

func TestReconnectResumesAndRejoins(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := startServer(t, a)
	p := startProxy(t, ts)

	bob := start(t, ts.env(t), "-name", "bob")
	waitFor(t, "bob stderr", bob.stderr, "joined #general")
	alice := start(t, ts.env(t), "-server", p.url, "-pin", ts.fp.String(), "-name", "alice")
	waitFor(t, "alice stderr", alice.stderr, "joined #general: members alice, bob")
	alice.typeLine("/join side")
	waitFor(t, "alice stderr", alice.stderr, "joined #side: members alice")
	// Presence goes out in batches (docs/protocol.md §8.3): a connection
	// that joins and goes within one batch is never announced, so cut
	// only once bob has been told alice is there.
	waitFor(t, "bob stdout", bob.stdout, "* alice joined #general")

	p.cut()
	waitFor(t, "alice stderr", alice.stderr, "connection lost")
	waitFor(t, "alice stderr", alice.stderr, "(session resumed)")
	waitForAfter(t, "alice stderr", alice.stderr, "(session resumed)", "joined #general: members alice, bob")
	waitForAfter(t, "alice stderr", alice.stderr, "(session resumed)", "joined #side: members alice")
	waitFor(t, "bob stdout", bob.stdout, "* alice left #general")
	waitForAfter(t, "bob stdout", bob.stdout, "* alice left #general", "* alice joined #general")

	bob.typeLine("after the cut")
	waitFor(t, "alice stdout", alice.stdout, "#general <bob> after the cut")
	alice.typeLine("still in side") // #side is still the current room
	waitFor(t, "alice stdout", alice.stdout, "<alice> still in side")
	alice.typeLine("/room general")
	alice.typeLine("back")
	waitFor(t, "bob stdout", bob.stdout, "<alice> back")
}

func TestGoingAwayReconnectsToNewSession(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	old := startServer(t, a)
	p := startProxy(t, old)

	alice := start(t, old.env(t), "-server", p.url, "-name", "alice")
	waitFor(t, "alice stderr", alice.stderr, "joined #general")

	// The server shuts down; its replacement, same identity key, does not
	// know the session.
	fresh := startServer(t, a)
	p.retarget(fresh)
	old.stop()
	waitFor(t, "alice stderr", alice.stderr, "connection lost: going_away")
	waitFor(t, "alice stderr", alice.stderr, "(new session ")
	waitForAfter(t, "alice stderr", alice.stderr, "(new session ", "joined #general: members alice")

	if _, stderr, err := runOnce(t, fresh.env(t), "-name", "bob", "-send", "welcome back"); err != nil {
		t.Fatalf("-send: %v; stderr:\n%s", err, stderr)
	}
	waitFor(t, "alice stdout", alice.stdout, "<bob> welcome back")
}

func TestRetryable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("%w: websocket: close 1006 (abnormal closure): unexpected EOF", client.ErrClosed), true},
		{&protocol.PeerError{Code: protocol.CodeGoingAway, Reason: "server shutting down"}, true},
		{&protocol.PeerError{Code: protocol.CodeInternal}, true},
		{&protocol.PeerError{Code: protocol.CodeSlowConsumer, Reason: "send queue full"}, false},
		{&protocol.PeerError{Code: protocol.CodeSessionEnded}, false},
		{fmt.Errorf("protocol: open record: %w", protocol.CodeBadRecord), false},
		{fmt.Errorf("%w: %w", client.ErrClosed, &protocol.PeerError{Code: protocol.CodeBadSequence}), false},
	} {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestFatalProtocolErrorExits1(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := startServer(t, a)
	p := startProxy(t, ts)

	alice := start(t, ts.env(t), "-server", p.url, "-pin", ts.fp.String(), "-name", "alice")
	waitFor(t, "alice stderr", alice.stderr, "joined #general")
	p.corruptNext()
	alice.typeLine("this answer arrives altered")
	err := alice.wait()
	if code := exitCode(err); code != exitRuntime || !errors.Is(err, protocol.CodeBadRecord) {
		t.Fatalf("altered record: exit %d (%v), want 1 with bad_record; stderr:\n%s", code, err, alice.stderr)
	}
	if strings.Contains(alice.stderr.String(), "reconnect") {
		t.Errorf("reconnected after a fatal error:\n%s", alice.stderr)
	}
}

func TestClean(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain text, ünïcode 👍🏽": "plain text, ünïcode 👍🏽",
		"tab\there":              "tab\there",
		"\x1b[2J\x1b]0;pwned\a":  `\x1b[2J\x1b]0;pwned\a`,
		"fake\r[00:00:00] <x>":   `fake\r[00:00:00] <x>`,
		"two\nlines":             `two\nlines`,
		"evil\u202egnp.exe":      `evil\u202egnp.exe`,
		"bad \xff utf8":          "bad \ufffd utf8",
		"c1 \u009b control":      `c1 \u009b control`,
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	m := &protocol.Message{Type: protocol.MsgMessage, TS: 1700000000000, Room: "general", From: "alice", Body: "hi\n[00:00:00] <bob> forged\x1b[31m"}
	stamp := "[" + time.UnixMilli(1700000000000).Format("15:04:05") + "] "
	want := stamp + "<alice> hi\n" + strings.Repeat(" ", len(stamp)) + `[00:00:00] <bob> forged\x1b[31m`
	if got := formatMessage(m, "general"); got != want {
		t.Errorf("formatMessage:\n%s\nwant:\n%s", got, want)
	}
	if got, want := formatMessage(m, "other"), stamp+"#general <alice> hi"; !strings.HasPrefix(got, want) {
		t.Errorf("formatMessage in another room = %q, want prefix %q", got, want)
	}
	p := &protocol.Message{Type: protocol.MsgPresence, Room: "general", From: "bob", Event: "leave"}
	if got, want := formatPresence(p), "* bob left #general"; got != want {
		t.Errorf("formatPresence = %q, want %q", got, want)
	}
}

func TestFormatAnonymous(t *testing.T) {
	m := &protocol.Message{Type: protocol.MsgMessage, TS: 1700000000000, Room: "general", From: "alice", Anon: true, Body: "hi\nthere"}
	got := formatMessage(m, "general")
	stamp := "[" + time.UnixMilli(1700000000000).Format("15:04:05") + "] "
	want := "(anon) " + stamp + "<alice> hi\n" + strings.Repeat(" ", len("(anon) ")+len(stamp)) + "there"
	if got != want {
		t.Fatalf("formatMessage(anon) =\n%q\nwant\n%q", got, want)
	}
	p := &protocol.Message{Type: protocol.MsgPresence, Room: "general", From: "alice", Event: "join", Anon: true}
	if got := formatPresence(p); got != "* alice joined #general (anon)" {
		t.Fatalf("formatPresence(anon) = %q", got)
	}
	p.Anon = false
	if got := formatPresence(p); got != "* alice joined #general" {
		t.Fatalf("formatPresence = %q", got)
	}
}
