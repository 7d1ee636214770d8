package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/secure-messenger/messenger/internal/server"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// testKeyBits keeps key generation affordable under -race.
const testKeyBits = "2048"

// person is someone using chat on their own machine: a home directory
// and a password file.
type person struct {
	user     string
	home     string
	password string
	pwFile   string
}

func newPerson(t *testing.T, user, password string) *person {
	t.Helper()
	p := &person{user: user, home: t.TempDir(), password: password, pwFile: filepath.Join(t.TempDir(), "password")}
	if err := os.WriteFile(p.pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// env is p's environment for chat against the server at url.
func (p *person) env(url string) map[string]string {
	return map[string]string{"MESSENGER_SERVER": url, "MESSENGER_CHAT_HOME": p.home}
}

func (p *person) profile() string { return filepath.Join(p.home, "profiles", p.user) }

// register runs chat register for p and returns the fingerprint printed.
func (p *person) register(t *testing.T, url string) string {
	t.Helper()
	stdout, stderr, err := runOnce(t, p.env(url), "register", "-user", p.user, "-key-bits", testKeyBits, "-password-file", p.pwFile)
	if err != nil {
		t.Fatalf("register %s: %v; stderr:\n%s", p.user, err, stderr)
	}
	if strings.Contains(stdout+stderr, p.password) {
		t.Errorf("register %s printed the password:\n%s\n%s", p.user, stdout, stderr)
	}
	user, fp, version := parseKeys(t, stdout)
	if user != p.user || version != 0 {
		t.Fatalf("register %s printed %q; want %s FINGERPRINT", p.user, stdout, p.user)
	}
	return fp
}

var keysLine = regexp.MustCompile(`^([a-z0-9][a-z0-9_.-]*) ([0-9a-f]{64})(?: version (\d+))?\n$`)

// parseKeys parses the line the account commands print: "user
// fingerprint [version n]" (version 0 when absent).
func parseKeys(t *testing.T, stdout string) (user, fp string, version int) {
	t.Helper()
	m := keysLine.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("stdout %q: want one line \"user fingerprint [version n]\"", stdout)
	}
	if m[3] != "" {
		version, _ = strconv.Atoi(m[3])
	}
	return m[1], m[2], version
}

// fingerprintOf runs chat fingerprint as p (for other, if given) and
// returns what it printed.
func (p *person) fingerprintOf(t *testing.T, url string, other ...string) (fp string, version int) {
	t.Helper()
	stdout, stderr, err := runOnce(t, p.env(url), append([]string{"fingerprint", "-user", p.user}, other...)...)
	if err != nil {
		t.Fatalf("fingerprint -user %s %v: %v; stderr:\n%s", p.user, other, err, stderr)
	}
	want := p.user
	if len(other) > 0 {
		want = other[0]
	}
	user, fp, version := parseKeys(t, stdout)
	if user != want {
		t.Fatalf("fingerprint -user %s %v printed %q", p.user, other, stdout)
	}
	return fp, version
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
	}
}

func checkProfile(t *testing.T, dir string) {
	t.Helper()
	checkMode(t, dir, 0o700)
	for _, f := range keyFiles {
		checkMode(t, filepath.Join(dir, f), 0o600)
	}
}

func TestRegisterAndFingerprint(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := accountServer(t, a)
	alice, bob := newPerson(t, "alice", "alice's password"), newPerson(t, "bob", "bob's password")
	aliceFP := alice.register(t, ts.url)
	bobFP := bob.register(t, ts.url)
	checkProfile(t, alice.profile())
	checkProfile(t, bob.profile())

	// Your own fingerprint needs no server: there is none at this URL.
	const nowhere = "ws://127.0.0.1:1/ws"
	if fp, v := alice.fingerprintOf(t, nowhere); fp != aliceFP || v != 0 {
		t.Errorf("alice's own fingerprint %s (version %d), register printed %s", fp, v, aliceFP)
	}
	if fp, _ := bob.fingerprintOf(t, nowhere); fp != bobFP {
		t.Errorf("bob's own fingerprint %s, register printed %s", fp, bobFP)
	}
	// Bob's, as the server hands it out to alice.
	if fp, _ := alice.fingerprintOf(t, ts.url, "bob"); fp != bobFP {
		t.Errorf("alice sees bob's fingerprint %s, bob has %s", fp, bobFP)
	}
	_, _, err := runOnce(t, alice.env(ts.url), "fingerprint", "-user", "alice", "nobody")
	if code := exitCode(err); code != exitRuntime || !errors.Is(err, protocol.CodeNotFound) {
		t.Errorf("fingerprint of an unknown user: exit %d (%v), want 1 with not_found", code, err)
	}

	// Registering again would replace the keys: refused, offline.
	_, _, err = runOnce(t, alice.env(nowhere), "register", "-user", "alice", "-key-bits", testKeyBits, "-password-file", alice.pwFile)
	if code := exitCode(err); code != exitUsage || !strings.Contains(err.Error(), "already exist") {
		t.Errorf("register over a profile: exit %d (%v), want 2", code, err)
	}
	if fp, _ := alice.fingerprintOf(t, nowhere); fp != aliceFP {
		t.Errorf("alice's keys changed: %s, want %s", fp, aliceFP)
	}

	// Someone else taking the name: refused, and no keys left behind.
	other := newPerson(t, "alice", "another password")
	_, _, err = runOnce(t, other.env(ts.url), "register", "-user", "alice", "-key-bits", testKeyBits, "-password-file", other.pwFile)
	if code := exitCode(err); code != exitRuntime || !errors.Is(err, protocol.CodeConflict) {
		t.Fatalf("register a taken name: exit %d (%v), want 1 with conflict", code, err)
	}
	if entries, err := os.ReadDir(filepath.Join(other.home, "profiles")); err != nil || len(entries) != 0 {
		t.Errorf("a refused registration left %v (%v) in profiles/", entries, err)
	}
}

func TestAccountsTalk(t *testing.T) {
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
	if !regexp.MustCompile(`connected to ws://\S+ as alice \(session [0-9a-f]{8}\)`).MatchString(ai.stderr.String()) {
		t.Errorf("alice stderr has no connected line:\n%s", ai.stderr)
	}

	ai.typeLine("hello bob")
	waitFor(t, "bob stdout", bi.stdout, "<alice> hello bob")
	bi.typeLine("hi alice")
	waitFor(t, "alice stdout", ai.stdout, "<bob> hi alice")

	// A -name cannot make alice speak as someone else.
	if _, stderr, err := runOnce(t, alice.env(ts.url), "-user", "alice", "-name", "bob", "-send", "it is me"); err != nil {
		t.Fatalf("-send: %v; stderr:\n%s", err, stderr)
	}
	waitFor(t, "bob stdout", bi.stdout, "<alice> it is me")

	// Mallory has no keys here.
	mallory := newPerson(t, "mallory", "mallory's password")
	mi := start(t, mallory.env(ts.url), "-user", "mallory", "-room", "general")
	err := mi.wait()
	want := "no keys for mallory in " + mallory.profile() + ": run chat register -user mallory or chat login -user mallory -new-keys"
	if code := exitCode(err); code != exitUsage || err.Error() != want {
		t.Errorf("mallory: exit %d (%v), want 2 with %q", code, err, want)
	}

	ai.typeLine("/quit")
	if err := ai.wait(); err != nil {
		t.Fatalf("alice /quit: %v", err)
	}
	waitFor(t, "bob stdout", bi.stdout, "* alice left #general")
}

func TestLoginAndNewKeys(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := accountServer(t, a)
	alice, bob := newPerson(t, "alice", "alice's password"), newPerson(t, "bob", "bob's password")
	oldFP := alice.register(t, ts.url)
	bob.register(t, ts.url)

	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("not her password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := runOnce(t, alice.env(ts.url), "login", "-user", "alice", "-password-file", wrong)
	if code := exitCode(err); code != exitRuntime || !errors.Is(err, protocol.CodeAuthFailed) || !strings.Contains(err.Error(), "auth_failed") {
		t.Fatalf("wrong password: exit %d (%v), want 1 naming auth_failed", code, err)
	}
	stdout, stderr, err := runOnce(t, alice.env(ts.url), "login", "-user", "alice", "-password-file", alice.pwFile)
	if err != nil {
		t.Fatalf("login: %v; stderr:\n%s", err, stderr)
	}
	if _, fp, _ := parseKeys(t, stdout); fp != oldFP {
		t.Errorf("login printed %q, want fingerprint %s", stdout, oldFP)
	}

	// Bob watches #team as JSON and as text; alice is there too.
	bj := start(t, bob.env(ts.url), "-user", "bob", "-room", "team", "-json", "-listen", "0")
	waitFor(t, "bob (json) stderr", bj.stderr, "joined #team")
	bt := start(t, bob.env(ts.url), "-user", "bob", "-room", "team")
	waitFor(t, "bob (text) stderr", bt.stderr, "joined #team")
	ai := start(t, alice.env(ts.url), "-user", "alice", "-room", "team")
	waitFor(t, "alice stderr", ai.stderr, "joined #team")

	// Alice resets her keys: a new device, and the profile's old one
	// removed.
	stdout, stderr, err = runOnce(t, alice.env(ts.url), "login", "-user", "alice", "-new-keys", "-key-bits", testKeyBits, "-password-file", alice.pwFile)
	if err != nil {
		t.Fatalf("login -new-keys: %v; stderr:\n%s", err, stderr)
	}
	_, newFP, _ := parseKeys(t, stdout)
	if newFP == oldFP {
		t.Fatalf("login -new-keys printed %q; want a new fingerprint", stdout)
	}
	waitUntil(t, "bob (json) stdout", bj.stdout, func(s string) bool {
		return slices.ContainsFunc(jsonLines(t, s), func(m protocol.Message) bool {
			return m.Type == protocol.MsgKeyChange && m.User == "alice" && m.Event == "device_removed" && m.Fingerprint == newFP && m.Room == "team"
		})
	}, "no key_change for alice's old device")
	waitFor(t, "bob (text) stdout", bt.stdout, "! alice's keys changed (device removed, fingerprint "+newFP+"): compare with them before trusting\n")
	// Alice's running chat had loaded the old keys: the server closes its
	// session, and it signs in again with the new keys from the profile.
	waitFor(t, "alice stderr", ai.stderr, "connection closed: alice's password or keys changed, here or on another device")
	waitFor(t, "alice stderr", ai.stderr, "; signed in again as alice)")
	waitForAfter(t, "alice stderr", ai.stderr, "signed in again as alice", "joined #team")
	ai.typeLine("same me, new keys")
	waitFor(t, "bob (text) stdout", bt.stdout, "<alice> same me, new keys")

	// The profile has the new keys; the old ones moved aside, intact.
	checkProfile(t, alice.profile())
	olds, _ := filepath.Glob(filepath.Join(alice.profile(), "old-*"))
	if len(olds) != 1 {
		t.Fatalf("old key directories: %q, want one", olds)
	}
	checkProfile(t, olds[0])
	old, err := client.LoadIdentity(olds[0], "alice")
	if err != nil {
		t.Fatal(err)
	}
	if fp, _ := soleFingerprint(old); fp.String() != oldFP {
		t.Errorf("%s holds keys with fingerprint %s, want the old %s", olds[0], fp, oldFP)
	}

	// What alice has is what bob is shown.
	local, _ := alice.fingerprintOf(t, ts.url)
	remote, _ := bob.fingerprintOf(t, ts.url, "alice")
	if local != newFP || remote != newFP {
		t.Errorf("alice's own %s, bob sees %s; want %s", local, remote, newFP)
	}
	// And the new keys sign in.
	if _, stderr, err := runOnce(t, alice.env(ts.url), "-user", "alice", "-room", "team", "-send", "new keys here"); err != nil {
		t.Fatalf("-send with the new keys: %v; stderr:\n%s", err, stderr)
	}
	waitFor(t, "bob (text) stdout", bt.stdout, "<alice> new keys here")
	// The old keys no longer sign in.
	stale := newPerson(t, "alice", alice.password)
	if err := os.MkdirAll(stale.profile(), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range keyFiles {
		b, err := os.ReadFile(filepath.Join(olds[0], f))
		if err == nil {
			err = os.WriteFile(filepath.Join(stale.profile(), f), b, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = runOnce(t, stale.env(ts.url), "-user", "alice", "-room", "team", "-send", "old keys here")
	if code := exitCode(err); code != exitRuntime || !errors.Is(err, protocol.CodeAuthFailed) || !strings.Contains(err.Error(), "chat login -user alice -new-keys") {
		t.Errorf("-send with the old keys: exit %d (%v), want 1 with auth_failed and a hint", code, err)
	}
	// Each change (the device added, the old one removed) shows once,
	// however many events announce it.
	if n := strings.Count(bt.stdout.String(), "! alice's keys changed"); n != 2 {
		t.Errorf("bob was told %d times:\n%s", n, bt.stdout)
	}
}

func TestAccountReconnects(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	old := accountServer(t, a)
	p := startProxy(t, old)
	alice, bob := newPerson(t, "alice", "alice's password"), newPerson(t, "bob", "bob's password")
	alice.register(t, old.url)
	bob.register(t, old.url)

	ai := start(t, alice.env(p.url), "-pin", old.fp.String(), "-user", "alice")
	waitFor(t, "alice stderr", ai.stderr, "joined #general: members alice")

	// A network failure: the session resumes, still signed in.
	p.cut()
	waitFor(t, "alice stderr", ai.stderr, "(session resumed)")
	waitForAfter(t, "alice stderr", ai.stderr, "(session resumed)", "joined #general: members alice")
	if strings.Contains(ai.stderr.String(), "signed in again") {
		t.Errorf("signed in again on a resumed session:\n%s", ai.stderr)
	}

	// The server goes away; its replacement (same key, same accounts)
	// does not know the session, so alice signs in again.
	fresh := startServerOn(t, a, old.db, func(c *server.Config) { c.AllowAnonymous = false })
	p.retarget(fresh)
	old.stop()
	waitFor(t, "alice stderr", ai.stderr, "connection lost: going_away")
	waitFor(t, "alice stderr", ai.stderr, "; signed in again as alice)")
	waitForAfter(t, "alice stderr", ai.stderr, "signed in again as alice", "joined #general: members alice")

	bi := start(t, bob.env(fresh.url), "-user", "bob")
	waitFor(t, "bob stderr", bi.stderr, "joined #general: members alice, bob")
	ai.typeLine("back again")
	waitFor(t, "bob stdout", bi.stdout, "<alice> back again")
	bi.typeLine("welcome back")
	waitFor(t, "alice stdout", ai.stdout, "<bob> welcome back")

	// Alice adds another device, and removes this one from it: the server
	// closes this one's session (session_revoked); signing in again, it
	// cannot, and says so.
	device := newPerson(t, "alice", alice.password)
	if _, stderr, err := runOnce(t, device.env(fresh.url), "login", "-user", "alice", "-new-keys", "-key-bits", testKeyBits, "-password-file", device.pwFile); err != nil {
		t.Fatalf("login -new-keys on the other device: %v; stderr:\n%s", err, stderr)
	}
	this, err := client.LoadIdentity(alice.profile(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runOnce(t, device.env(fresh.url), "devices", "-user", "alice")
	if err != nil || !strings.Contains(stderr, this.Device.String()) || strings.Count(stderr, "(this device)") != 1 {
		t.Fatalf("devices: %v; stdout %q, stderr:\n%s", err, stdout, stderr)
	}
	if _, stderr, err := runOnce(t, device.env(fresh.url), "devices", "-user", "alice", "-remove", this.Device.String()); err != nil {
		t.Fatalf("devices -remove on the other device: %v; stderr:\n%s", err, stderr)
	}
	waitFor(t, "alice stderr", ai.stderr, "connection closed: alice's password or keys changed, here or on another device (if not by you, someone else has your password); signing in again")
	err = ai.wait()
	if code := exitCode(err); code != exitRuntime || !errors.Is(err, protocol.CodeAuthFailed) || !strings.Contains(err.Error(), "sign in as alice") {
		t.Errorf("reconnect with replaced keys: exit %d (%v), want 1 with auth_failed; stderr:\n%s", code, err, ai.stderr)
	}
}

func TestAnonymousNeedsAccount(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := accountServer(t, a)
	const hint = "the server requires an account: chat register -user NAME"

	_, stderr, err := runOnce(t, ts.env(t), "-send", "hello?")
	if code := exitCode(err); code != exitRuntime || !errors.Is(err, protocol.CodeUnauthenticated) {
		t.Errorf("-send: exit %d (%v), want 1 with unauthenticated", code, err)
	}
	if !strings.Contains(stderr, hint) {
		t.Errorf("-send stderr lacks the hint:\n%s", stderr)
	}

	in := start(t, ts.env(t))
	err = in.wait()
	if code := exitCode(err); code != exitRuntime || !strings.Contains(in.stderr.String(), hint) {
		t.Errorf("interactive: exit %d (%v), stderr:\n%s", code, err, in.stderr)
	}
}

func TestKeyChangeText(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	u := newUI(&out, &errOut, false, "bob")
	fp := strings.Repeat("ab", 32)
	ev := &protocol.Message{Type: protocol.MsgKeyChange, Room: "team", User: "alice", Event: "device_added", Fingerprint: fp}
	u.event(ev)
	again := *ev
	again.Room = "other" // the same change, announced in another room
	u.event(&again)
	u.event(&protocol.Message{Type: protocol.MsgKeyChange, Room: "team", User: "bob", Event: "device_removed", Fingerprint: fp})
	u.event(&protocol.Message{Type: protocol.MsgKeyChange, Room: "team", User: "x\x1b[2J", Event: "\x1b[2J", Fingerprint: "y"})
	want := "! alice's keys changed (device added, fingerprint " + fp + "): compare with them before trusting\n" +
		"! your keys changed (device removed, fingerprint " + fp + "): if you did not add or remove a device, someone else has your password\n" +
		`! x\x1b[2J's keys changed (keys changed, fingerprint y): compare with them before trusting` + "\n"
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestPasswordSources(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name    string
		file    string
		env     string
		stdin   string
		confirm bool
		want    string
		code    int // of the error, when want is ""
	}{
		{name: "file, first line", file: file("a", "from the file\r\nsecond line\n"), env: "from env", stdin: "from stdin\n", want: "from the file"},
		{name: "file without newline", file: file("b", "no newline"), want: "no newline"},
		{name: "env", env: "from env", stdin: "from stdin\n", want: "from env"},
		{name: "stdin", stdin: "from stdin\nmore\n", want: "from stdin"},
		{name: "stdin, register", stdin: "from stdin\n", confirm: true, want: "from stdin"},
		{name: "missing file", file: filepath.Join(dir, "none"), code: exitUsage},
		{name: "empty file", file: file("c", ""), code: exitUsage},
		{name: "empty first line", file: file("d", "\nsecond\n"), code: exitUsage},
		{name: "no input", code: exitUsage},
		{name: "too short for register", env: "short", confirm: true, code: exitUsage},
		{name: "short is the server's business at login", env: "short", want: "short"},
		{name: "too long", env: strings.Repeat("p", protocol.MaxPasswordLen+1), code: exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var errOut bytes.Buffer
			src := &passwordSource{
				file:   tc.file,
				getenv: func(k string) string { return map[string]string{"MESSENGER_PASSWORD": tc.env}[k] },
				stdin:  strings.NewReader(tc.stdin),
				ui:     newUI(&bytes.Buffer{}, &errOut, false, ""),
			}
			got, err := src.read(t.Context(), "alice", tc.confirm)
			if tc.want != "" {
				if err != nil || got != tc.want {
					t.Fatalf("got %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if code := exitCode(err); code != tc.code {
				t.Fatalf("got %q, %v (exit %d); want exit %d", got, err, code, tc.code)
			}
		})
	}
}

func TestPasswordFromStdinAndUpperCaseUser(t *testing.T) {
	t.Parallel()
	a, _ := identityKeys(t)
	ts := accountServer(t, a)
	home := t.TempDir()
	env := map[string]string{"MESSENGER_SERVER": ts.url, "MESSENGER_CHAT_HOME": home, "MESSENGER_USER": "Carol"}
	stdout, stderr, err := runInput(t, env, "carol's password\n", "register", "-key-bits", testKeyBits)
	if err != nil {
		t.Fatalf("register: %v; stderr:\n%s", err, stderr)
	}
	if user, _, _ := parseKeys(t, stdout); user != "carol" {
		t.Errorf("registered %q, want carol", user)
	}
	checkProfile(t, filepath.Join(home, "profiles", "carol"))
	if _, stderr, err := runInput(t, env, "carol's password\n", "login"); err != nil {
		t.Fatalf("login: %v; stderr:\n%s", err, stderr)
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("carol's password"), 0o600); err != nil {
		t.Fatal(err)
	}
	env["MESSENGER_PASSWORD_FILE"] = pwFile
	if _, stderr, err := runOnce(t, env, "login"); err != nil {
		t.Fatalf("login with MESSENGER_PASSWORD_FILE: %v; stderr:\n%s", err, stderr)
	}
}

func TestRetireKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Date(2026, 11, 25, 8, 24, 0, 0, time.UTC)
	var olds []string
	for range 2 {
		for _, f := range keyFiles {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		old, err := retireKeys(dir, now)
		if err != nil {
			t.Fatal(err)
		}
		olds = append(olds, filepath.Base(old))
		if ok, err := hasKeys(dir); ok || err != nil {
			t.Fatalf("keys still in the profile after retireKeys (%v)", err)
		}
		checkMode(t, old, 0o700)
	}
	if want := []string{"old-20261125T082400Z", "old-20261125T082400Z-2"}; !slices.Equal(olds, want) {
		t.Errorf("old directories %q, want %q", olds, want)
	}
}
