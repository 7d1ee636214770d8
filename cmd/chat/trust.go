package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// resolveHome returns chat's home directory: -home, or else
// $XDG_CONFIG_HOME/messenger (the user configuration directory). It holds
// known_hosts and the profiles; it is not created here.
func resolveHome(o *options, getenv func(string) string) (string, error) {
	if o.home != "" {
		return o.home, nil
	}
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" {
		var err error
		if dir, err = os.UserConfigDir(); err != nil {
			return "", fmt.Errorf("home directory: %w (set -home or MESSENGER_CHAT_HOME)", err)
		}
	}
	return filepath.Join(dir, "messenger"), nil
}

// trust decides whether the server's identity key is the expected one:
// the -pin fingerprint, or else the one known_hosts records for the host,
// learned on first use.
type trust struct {
	host string
	pin  *protocol.Fingerprint // set with -pin
	kh   *client.KnownHosts    // set without -pin
}

// newTrust prepares the home directory (0700) when known_hosts is used.
func newTrust(o *options, home string) (*trust, error) {
	t := &trust{host: o.host, pin: o.pin}
	if o.pin != nil {
		return t, nil
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("home directory: %w", err)
	}
	t.kh = &client.KnownHosts{Path: filepath.Join(home, "known_hosts")}
	return t, nil
}

// identityCheck is what one handshake's identity check saw.
type identityCheck struct {
	presented protocol.Fingerprint
	learned   bool // known_hosts did not list the host and now does
}

// verifier returns the client.Config.VerifyIdentity function for one
// handshake, recording what it saw in c. The client asks it only once the
// server has proved it holds the key, so known_hosts never records a key
// nobody proved.
func (t *trust) verifier(c *identityCheck) func(protocol.Fingerprint) error {
	return func(got protocol.Fingerprint) error {
		c.presented = got
		if t.pin != nil {
			return client.Pin(*t.pin)(got)
		}
		return t.kh.Verifier(t.host, func(protocol.Fingerprint) { c.learned = true })(got)
	}
}

// explain turns a fingerprint mismatch into an identityError with exit
// status 3; other errors pass through as they are.
func (t *trust) explain(c *identityCheck, err error) error {
	if !errors.Is(err, client.ErrFingerprintMismatch) {
		return err
	}
	e := &identityError{host: t.host, presented: c.presented, err: err}
	if t.pin != nil {
		e.expected = *t.pin
	} else {
		e.path = t.kh.Path
		if fp, ok, lerr := t.kh.Lookup(t.host); lerr == nil && ok {
			e.expected = fp
		}
	}
	return &exitError{code: exitIdentity, err: e}
}

// identityError reports a server whose identity key is not the pinned one.
type identityError struct {
	host      string
	path      string // known_hosts; "" for -pin
	presented protocol.Fingerprint
	expected  protocol.Fingerprint
	err       error
}

func (e *identityError) Error() string {
	if e.path == "" {
		return fmt.Sprintf("server identity key for host %s does not match -pin: refusing to connect\n"+
			"  presented %s\n  expected  %s", e.host, e.presented, e.expected)
	}
	return fmt.Sprintf("server identity key CHANGED for host %s: refusing to connect\n"+
		"  presented %s\n  pinned    %s in %s\n"+
		"Someone may be intercepting the connection, or the server's key was replaced.\n"+
		"If you know it was replaced, delete the %s line from %s and connect again.",
		e.host, e.presented, e.expected, e.path, e.host, e.path)
}

func (e *identityError) Unwrap() error { return e.err }
