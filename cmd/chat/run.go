package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/secure-messenger/messenger/internal/envflag"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Exit statuses.
const (
	exitRuntime  = 1 // runtime or protocol error
	exitUsage    = 2 // bad flags or environment
	exitIdentity = 3 // the server's identity key does not match the pin
)

// exitError is an error that sets the process's exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode returns the exit status for what run returned.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return exitRuntime
}

// Commands besides the default one (chat in a room).
const (
	cmdChat        = ""
	cmdRegister    = "register"
	cmdLogin       = "login"
	cmdFingerprint = "fingerprint"
	cmdPasswd      = "passwd"
	cmdDevices     = "devices"
	cmdSafety      = "safety"
)

// options are the client's settings, from flags and their environment
// twins (a flag given on the command line wins).
type options struct {
	cmd    string // cmdChat, cmdRegister, …
	server string // WebSocket URL
	room   string // room to join first
	name   string // display name; "" lets the server choose
	home   string // holds known_hosts and profiles; "" means the user config directory
	send   string // -send text
	json   bool
	listen time.Duration

	user         string // account, lower-cased; "" means anonymous
	passwordFile string
	keyBits      int
	newKeys      bool   // login -new-keys
	lookup       string // fingerprint's USER argument, lower-cased

	newPasswordFile string // passwd -new-password-file
	remove          string // devices -remove
	add             bool   // devices -add: show a link code for a new device
	link            string // login -link CODE: join as a new device with a code
	to              string // -to: a direct conversation with this user, lower-cased

	sendSet   bool // -send was given: say send and exit
	listenSet bool // -listen (or MESSENGER_LISTEN) was given

	// Derived.
	host   string                // the URL's host:port, the known_hosts key
	pin    *protocol.Fingerprint // -pin; nil means known_hosts
	suites []protocol.Suite
}

// needsServer reports whether the command connects.
func (o *options) needsServer() bool { return o.cmd != cmdFingerprint || o.lookup != "" }

func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	o := &options{}
	if len(args) > 0 {
		switch args[0] {
		case cmdRegister, cmdLogin, cmdFingerprint, cmdPasswd, cmdDevices, cmdSafety:
			o.cmd, args = args[0], args[1:]
		}
	}
	fs := flag.NewFlagSet(strings.TrimSpace("chat "+o.cmd), flag.ContinueOnError)
	// Errors are reported once, by main; usage goes to stderr.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText[o.cmd])
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	ev := envflag.New(getenv)
	env := ev.String
	var errs []error
	var pin, suite string
	fs.StringVar(&o.user, "user", env("MESSENGER_USER", ""), "your account; its keys are in the profile <home>/profiles/USER (MESSENGER_USER)")
	fs.StringVar(&o.server, "server", env("MESSENGER_SERVER", "ws://127.0.0.1:8080/ws"), "server WebSocket URL (MESSENGER_SERVER)")
	fs.StringVar(&o.home, "home", env("MESSENGER_CHAT_HOME", ""), "directory holding known_hosts and profiles/; empty means $XDG_CONFIG_HOME/messenger (MESSENGER_CHAT_HOME)")
	fs.StringVar(&pin, "pin", env("MESSENGER_PIN", ""), "expected server fingerprint, 64 hex digits (colons allowed); known_hosts is then neither read nor written (MESSENGER_PIN)")
	fs.StringVar(&suite, "suite", env("MESSENGER_SUITE", "gcm"), "record cipher suite: gcm or cbc (MESSENGER_SUITE)")
	switch o.cmd {
	case cmdChat:
		fs.StringVar(&o.room, "room", env("MESSENGER_ROOM", "general"), "room to join (MESSENGER_ROOM)")
		fs.StringVar(&o.name, "name", env("MESSENGER_NAME", ""), "display name without -user; empty lets the server assign anon-xxxx (MESSENGER_NAME)")
		fs.BoolVar(&o.json, "json", ev.Bool("MESSENGER_JSON", false), "print every received event as one JSON line on stdout (MESSENGER_JSON)")
		fs.DurationVar(&o.listen, "listen", ev.Duration("MESSENGER_LISTEN", 0), "do not read commands: stay joined this long, then exit; 0 means until end of input or a signal (MESSENGER_LISTEN)")
		fs.StringVar(&o.send, "send", "", "join, say `TEXT`, wait for the server's acknowledgement and exit")
		fs.StringVar(&o.to, "to", env("MESSENGER_TO", ""), "talk with this `USER` in a direct, end-to-end encrypted conversation instead of a room; needs -user (MESSENGER_TO)")
	case cmdRegister, cmdLogin:
		fs.StringVar(&o.passwordFile, "password-file", env("MESSENGER_PASSWORD_FILE", ""), "read the password from the first line of this `file` (MESSENGER_PASSWORD_FILE)")
		fs.IntVar(&o.keyBits, "key-bits", ev.Int("MESSENGER_KEY_BITS", client.DefaultIdentityBits), "size of new RSA keys: 2048, 3072 or 4096 (MESSENGER_KEY_BITS)")
		if o.cmd == cmdLogin {
			fs.BoolVar(&o.newKeys, "new-keys", false, "generate new keys and publish them in place of the old ones (a new device, or a reset); the old ones move to the profile's old-TIME/")
			fs.StringVar(&o.link, "link", env("MESSENGER_LINK_CODE", ""), "join as a new device with the `CODE` chat devices -add shows on a device you have, instead of the password (MESSENGER_LINK_CODE)")
		}
	case cmdDevices:
		fs.StringVar(&o.remove, "remove", "", "remove the device with this `ID` (from the list) instead of listing; its sessions are closed")
		fs.BoolVar(&o.add, "add", ev.Bool("MESSENGER_DEVICES_ADD", false), "show a one-time code to type on a new device (chat login -link CODE), then approve it (MESSENGER_DEVICES_ADD)")
	case cmdPasswd:
		fs.StringVar(&o.passwordFile, "password-file", env("MESSENGER_PASSWORD_FILE", ""), "read the current password from the first line of this `file` (MESSENGER_PASSWORD_FILE)")
		fs.StringVar(&o.newPasswordFile, "new-password-file", env("MESSENGER_NEW_PASSWORD_FILE", ""), "read the new password from the first line of this `file` (MESSENGER_NEW_PASSWORD_FILE)")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "send":
			o.sendSet = true
		case "listen":
			o.listenSet = true
		}
	})
	if err := ev.Err(); err != nil {
		errs = append(errs, err)
	}
	if o.cmd == cmdChat && ev.Set("MESSENGER_LISTEN") {
		o.listenSet = true
	}
	rest := fs.Args()
	if o.cmd == cmdSafety && len(rest) == 0 {
		errs = append(errs, errors.New("chat safety: name the other USER"))
	}
	if (o.cmd == cmdFingerprint || o.cmd == cmdSafety) && len(rest) > 0 {
		o.lookup, rest = strings.ToLower(rest[0]), rest[1:]
		if !protocol.ValidUserName(o.lookup) {
			errs = append(errs, fmt.Errorf("user %q: %s", o.lookup, userRule))
		}
	}
	if len(rest) > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %q", rest))
	}
	o.user = strings.ToLower(o.user)
	switch {
	case o.user == "" && o.cmd != cmdChat:
		errs = append(errs, fmt.Errorf("chat %s: -user is required", o.cmd))
	case o.user != "" && !protocol.ValidUserName(o.user):
		errs = append(errs, fmt.Errorf("-user %q: %s", o.user, userRule))
	}
	var err error
	if o.needsServer() {
		if o.host, err = parseServer(o.server); err != nil {
			errs = append(errs, err)
		}
	}
	o.to = strings.ToLower(o.to)
	if o.to != "" {
		switch {
		case !protocol.ValidUserName(o.to):
			errs = append(errs, fmt.Errorf("-to %q: %s", o.to, userRule))
		case o.user == "":
			errs = append(errs, errors.New("-to needs -user: a direct conversation is between accounts"))
		case o.to == o.user:
			errs = append(errs, errors.New("-to: a conversation is with someone else"))
		}
	}
	if o.cmd == cmdChat && !protocol.ValidName(o.room) {
		errs = append(errs, fmt.Errorf("-room %q: want 1 to %d letters, digits, '_', '.' or '-', starting with a letter or digit", o.room, protocol.MaxNameLen))
	}
	if o.name != "" && !protocol.ValidName(o.name) {
		errs = append(errs, fmt.Errorf("-name %q: want 1 to %d letters, digits, '_', '.' or '-', starting with a letter or digit", o.name, protocol.MaxNameLen))
	}
	if pin != "" {
		fp, err := protocol.ParseFingerprint(pin)
		if err != nil {
			errs = append(errs, fmt.Errorf("-pin: %w", err))
		}
		o.pin = &fp
	}
	switch suite {
	case "gcm":
		o.suites = []protocol.Suite{protocol.SuiteAES256GCM}
	case "cbc":
		o.suites = []protocol.Suite{protocol.SuiteAES256CBCHMAC}
	default:
		errs = append(errs, fmt.Errorf("-suite %q: want gcm or cbc", suite))
	}
	if (o.cmd == cmdRegister || o.cmd == cmdLogin) && !protocol.ValidRSAKeySize(o.keyBits) {
		errs = append(errs, fmt.Errorf("-key-bits %d: want one of %v", o.keyBits, protocol.RSAKeySizes))
	}
	if o.link != "" {
		if o.newKeys {
			errs = append(errs, errors.New("-link and -new-keys exclude each other: -link always makes new keys"))
		}
		if _, err := protocol.ParseLinkCode(o.link); err != nil {
			errs = append(errs, fmt.Errorf("-link: want the code chat devices -add shows (29 letters and digits, dashes optional)"))
		}
	}
	if o.add && o.remove != "" {
		errs = append(errs, errors.New("-add and -remove exclude each other"))
	}
	if o.remove != "" {
		if _, err := protocol.ParseDeviceID(o.remove); err != nil {
			errs = append(errs, fmt.Errorf("-remove %q: want a device id as chat devices lists it", o.remove))
		}
	}
	if o.sendSet && o.send == "" {
		errs = append(errs, errors.New("-send: the message is empty"))
	}
	if o.sendSet && o.listenSet {
		errs = append(errs, errors.New("-send and -listen exclude each other"))
	}
	if o.listen < 0 {
		errs = append(errs, fmt.Errorf("-listen %s: must not be negative", o.listen))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return o, nil
}

const userRule = "want 1 to 32 lower-case letters, digits, '_', '.' or '-', starting with a letter or digit"

const exitText = `
Exit status: 0 ok, 1 runtime or protocol error (auth_failed, rate_limited,
…), 2 usage error (also: no keys for -user), 3 the server's identity key
does not match the pinned one.
`

const passwordText = `
The password comes from -password-file (its first line), else from
MESSENGER_PASSWORD, else from standard input: typed at a terminal (not
echoed) or the first line of a pipe. Prefer the file: on some
systems other local users can read a process's environment (/proc, ps),
and it ends up in shell history and logs. chat never prints it.
`

var usageText = map[string]string{
	cmdChat: `Usage: chat [flags]                          chat in a room
       chat register -user NAME [flags]      create an account, with new keys
       chat login -user NAME [-new-keys]     log in with the password
       chat login -user NAME -link CODE      add this machine with a code from another device
       chat passwd -user NAME                change the password
       chat fingerprint -user NAME [USER]    your key fingerprint, or USER's
       chat devices -user NAME [-remove ID]  list (or remove) your devices
       chat devices -user NAME -add          show a code that adds a new device
       chat -user NAME -to USER [flags]      talk with USER, end-to-end encrypted
       chat safety -user NAME USER           the safety number of NAME and USER
       chat COMMAND -h                       COMMAND's flags

Joins a room on a messenger server. With -user it signs in with the keys
in the profile (servers without -anonymous require it); without, it joins
anonymously. Interactively, each line typed is sent to the room and what
others say is printed; /help lists the commands. -send says one message
and exits; -listen (with -json for scripts) prints what arrives for a
while without reading commands.

With -to USER, chat opens the direct conversation of -user and USER
instead: end-to-end encrypted, so the server stores and relays only
ciphertext. It shows what arrived while you were away, then what
arrives; each line typed is sent to USER. The devices of both users are
pinned on first use in the profile's contacts file; a message from a
device that was not pinned shows as UNVERIFIED (compare the safety
number). -send and -listen (with -json) work as in a room.
` + exitText + `
Flags:
`,
	cmdRegister: `Usage: chat register -user NAME [flags]

Creates the account NAME: generates its keys, registers them with the
password, saves them in <home>/profiles/NAME/ (0700 directory, 0600
files) and prints the key fingerprint, which the people you talk to can
compare with what the server shows them.
` + passwordText + exitText + `
Flags:
`,
	cmdLogin: `Usage: chat login -user NAME [-new-keys] [flags]
       chat login -user NAME -link CODE [flags]

Logs in with the password and the profile's keys, and prints the
account's fingerprint. With -new-keys it generates new keys and adds them
as a new device of the account: your contacts and your other devices are
told. If the profile had keys already, they move to old-TIME/ in the
profile and their device is removed from the account (a reset: the old
keys no longer sign in, and their sessions are closed); in a new profile
(another machine) the account's other devices stay.

With -link CODE (from chat devices -add on a device the account already
has) it needs no password: it generates keys for a new profile, offers
them with the code and waits until that device approves; then the keys
are saved and the account's fingerprint printed. Your contacts and your
other devices are told. The code works once, for 2 minutes.
` + passwordText + exitText + `
Flags:
`,
	cmdPasswd: `Usage: chat passwd -user NAME [flags]

Changes the password of NAME: signs in with the profile's keys and proves
the current password. The server then closes every other session of NAME,
on every device (one an attacker resumed with a stolen ticket too), and
none of them can be resumed; chat on your other devices signs in again
with its keys. To shut out someone who also has your keys, publish new
ones instead: chat login -user NAME -new-keys. Setting the same password
again closes the other sessions all the same.
` + passwordText + `
That is the current password. The new one comes from -new-password-file
(its first line), else from MESSENGER_NEW_PASSWORD, else from standard
input: typed twice at a terminal (not echoed), or the line after the
current password in a pipe. It needs at least 8 characters.
` + exitText + `
Flags:
`,
	cmdDevices: `Usage: chat devices -user NAME [-remove ID | -add]

Signs in as NAME with the profile's keys and lists NAME's current
devices, one a line: id, fingerprint, date added, name, and "(this
device)" for this profile's. Then the account's fingerprint, over all of
them, as the result line. With -remove ID it removes that device instead
(not this one: remove a device from another): the server closes every
session of the removed device, on every node, and none of them can be
resumed; your other devices stay signed in. New conversation keys are no
longer wrapped to it.

With -add it prints a one-time code as the result line (valid 2 minutes)
and waits: type it on the new machine with chat login -user NAME -link
CODE. When that device joins, chat shows its id and fingerprint (compare
them with what the new machine prints) and asks "add it? [y/N]" on
standard input; y adds it. A device that joined with a mistyped code is
refused and never shown.
` + exitText + `
Flags:
`,
	cmdSafety: `Usage: chat safety -user NAME USER

Signs in as NAME and prints the safety number of NAME and USER: 60
digits computed here from both users' devices as the server lists them
(their fingerprints checked against their keys). USER runs chat safety
-user USER NAME; if the two numbers match, read out in person or on a
call, nobody added or swapped a device of either of you.
` + exitText + `
Flags:
`,
	cmdFingerprint: `Usage: chat fingerprint -user NAME [USER]

Without USER, prints the fingerprint your account has while this
profile's device is its only one, from the profile (no server needed).
With USER, signs in as NAME and prints USER's fingerprint over all of
USER's devices as the server hands them out, checked here against their
keys. Compare fingerprints with the person, out of band.
` + exitText + `
Flags:
`,
}

// parseServer checks the server URL and returns its host:port (with the
// scheme's default port when the URL has none), the key known_hosts uses.
func parseServer(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("-server: %w", err)
	}
	var port string
	switch u.Scheme {
	case "ws":
		port = "80"
	case "wss":
		port = "443"
	default:
		return "", fmt.Errorf("-server %q: want a ws:// or wss:// URL", s)
	}
	if u.Hostname() == "" {
		return "", fmt.Errorf("-server %q: no host", s)
	}
	if p := u.Port(); p != "" {
		port = p
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// run is the whole client. It returns nil on a normal end (-send
// acknowledged, end of input, /quit, /end, a signal, -listen elapsed, an
// account command done) and otherwise an error whose exitCode is the
// process's exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	u := newUI(stdout, stderr, o.json, o.user)
	home, err := resolveHome(o, getenv)
	if err != nil && (o.user != "" || o.pin == nil) {
		return err
	}
	if o.cmd != cmdChat {
		a := &account{o: o, ui: u, home: home, pw: &passwordSource{file: o.passwordFile, newFile: o.newPasswordFile, getenv: getenv, stdin: stdin, ui: u}}
		switch o.cmd {
		case cmdRegister:
			return a.register(ctx)
		case cmdLogin:
			if o.link != "" {
				return a.loginLink(ctx)
			}
			return a.login(ctx)
		case cmdPasswd:
			return a.passwd(ctx)
		case cmdDevices:
			return a.devices(ctx, stdin)
		case cmdSafety:
			return a.safety(ctx)
		default:
			return a.fingerprint(ctx)
		}
	}

	var id *client.Identity
	if o.user != "" {
		if id, err = loadProfile(u, home, o.user); err != nil {
			return err
		}
		if o.name != "" {
			u.status("note: -name is ignored with -user: you speak as %s", o.user)
		}
	}
	if o.to != "" {
		return direct(ctx, o, u, home, id, stdin)
	}
	tr, err := newTrust(o, home)
	if err != nil {
		return err
	}
	s := &session{o: o, ui: u, trust: tr, id: id, home: home, quiet: o.sendSet}
	if err := s.connect(ctx); err != nil {
		return err
	}
	defer s.close()

	if o.sendSet {
		return s.sendOnce(ctx, o.send)
	}
	if err := s.enter(ctx, o.room); err != nil {
		return &exitError{code: exitRuntime, err: err}
	}
	quit := make(chan struct{})
	defer close(quit)
	var lines <-chan string
	var stop <-chan time.Time
	if o.listenSet && o.listen > 0 {
		// A fixed duration ignores input, so that a closed or empty stdin
		// (cron, < /dev/null) does not end it early.
		t := time.NewTimer(o.listen)
		defer t.Stop()
		stop = t.C
	} else {
		lines = readLines(stdin, quit)
	}
	return s.loop(ctx, lines, stop, !o.listenSet)
}

// maxLine is the longest input line kept: anything longer is cut to it.
// Cutting changes nothing, since the server refuses every body longer than
// protocol.MaxBody with too_large.
const maxLine = protocol.MaxBody + 1

// readLines delivers r's lines (without their line ending) until end of
// input or a read error, then closes the channel. It stops early when quit
// is closed.
func readLines(r io.Reader, quit <-chan struct{}) <-chan string {
	lines := make(chan string)
	go func() {
		defer close(lines)
		br := bufio.NewReader(r)
		var line []byte
		for {
			frag, more, err := br.ReadLine()
			if err != nil {
				return
			}
			line = append(line, frag[:min(len(frag), maxLine-len(line))]...)
			if more {
				continue
			}
			select {
			case lines <- string(line):
			case <-quit:
				return
			}
			line = line[:0]
		}
	}()
	return lines
}
