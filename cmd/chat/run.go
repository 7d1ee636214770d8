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
	"strconv"
	"time"

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

// options are the client's settings, from flags and their environment
// twins (a flag given on the command line wins).
type options struct {
	server string // WebSocket URL
	room   string // room to join first
	name   string // display name; "" lets the server choose
	home   string // holds known_hosts; "" means the user config directory
	send   string // -send text
	json   bool
	listen time.Duration

	sendSet   bool // -send was given: say send and exit
	listenSet bool // -listen (or MESSENGER_LISTEN) was given

	// Derived.
	host   string                // the URL's host:port, the known_hosts key
	pin    *protocol.Fingerprint // -pin; nil means known_hosts
	suites []protocol.Suite
}

func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	// Errors are reported once, by main; usage goes to stderr.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var errs []error
	envBool := func(name string) bool {
		v := getenv(name)
		if v == "" {
			return false
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		return b
	}
	envDur := func(name string) time.Duration {
		v := getenv(name)
		if v == "" {
			return 0
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		return d
	}
	var pin, suite string
	fs.StringVar(&o.server, "server", env("MESSENGER_SERVER", "ws://127.0.0.1:8080/ws"), "server WebSocket URL (MESSENGER_SERVER)")
	fs.StringVar(&o.room, "room", env("MESSENGER_ROOM", "general"), "room to join (MESSENGER_ROOM)")
	fs.StringVar(&o.name, "name", env("MESSENGER_NAME", ""), "display name; empty lets the server assign anon-xxxx (MESSENGER_NAME)")
	fs.StringVar(&o.home, "home", env("MESSENGER_CHAT_HOME", ""), "directory holding known_hosts; empty means $XDG_CONFIG_HOME/messenger (MESSENGER_CHAT_HOME)")
	fs.StringVar(&pin, "pin", env("MESSENGER_PIN", ""), "expected server fingerprint, 64 hex digits (colons allowed); known_hosts is then neither read nor written (MESSENGER_PIN)")
	fs.StringVar(&suite, "suite", env("MESSENGER_SUITE", "gcm"), "record cipher suite: gcm or cbc (MESSENGER_SUITE)")
	fs.BoolVar(&o.json, "json", envBool("MESSENGER_JSON"), "print every received event as one JSON line on stdout (MESSENGER_JSON)")
	fs.DurationVar(&o.listen, "listen", envDur("MESSENGER_LISTEN"), "do not read commands: stay joined this long, then exit; 0 means until end of input or a signal (MESSENGER_LISTEN)")
	fs.StringVar(&o.send, "send", "", "join, say `TEXT`, wait for the server's acknowledgement and exit")
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
	if getenv("MESSENGER_LISTEN") != "" {
		o.listenSet = true
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %q", fs.Args()))
	}
	var err error
	if o.host, err = parseServer(o.server); err != nil {
		errs = append(errs, err)
	}
	if !protocol.ValidName(o.room) {
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

const usageText = `Usage: chat [flags]

Joins a room on a messenger server. Interactively, each line typed is sent
to the room and what others say is printed; /help lists the commands.
-send says one message and exits; -listen (with -json for scripts) prints
what arrives for a while without reading commands.

Exit status: 0 ok, 1 runtime or protocol error, 2 usage error, 3 the
server's identity key does not match the pinned one.

Flags:
`

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
// acknowledged, end of input, /quit, /end, a signal, -listen elapsed) and
// otherwise an error whose exitCode is the process's exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	tr, err := newTrust(o, getenv)
	if err != nil {
		return err
	}
	s := &session{o: o, ui: newUI(stdout, stderr, o.json), trust: tr, quiet: o.sendSet}
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
