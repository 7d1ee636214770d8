package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// trust decides whether the server's identity key is the expected one:
// the -pin fingerprint, or else the one known_hosts records for the host,
// learned on first use.
type trust struct {
	host string
	pin  *protocol.Fingerprint // set with -pin
	kh   *client.KnownHosts    // set without -pin
}

// newTrust prepares the home directory (0700) when known_hosts is used.
func newTrust(o *options, getenv func(string) string) (*trust, error) {
	t := &trust{host: o.host, pin: o.pin}
	if o.pin != nil {
		return t, nil
	}
	home := o.home
	if home == "" {
		dir := getenv("XDG_CONFIG_HOME")
		if dir == "" {
			var err error
			if dir, err = os.UserConfigDir(); err != nil {
				return nil, fmt.Errorf("home directory: %w (set -home or MESSENGER_CHAT_HOME)", err)
			}
		}
		home = filepath.Join(dir, "messenger")
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
	firstUse  bool // the host is not in known_hosts yet
}

// verifier returns the client.Config.VerifyIdentity function for one
// handshake, recording what it saw in c.
//
// For a host known_hosts does not list yet it accepts the key without
// recording it: client.KnownHosts.Verifier would write it at once, but the
// handshake asks before the server has proved it holds the key (its
// signature comes later). commit records it once the handshake completed.
func (t *trust) verifier(c *identityCheck) func(protocol.Fingerprint) error {
	return func(got protocol.Fingerprint) error {
		c.presented = got
		if t.pin != nil {
			return client.Pin(*t.pin)(got)
		}
		_, known, err := t.kh.Lookup(t.host)
		if err != nil {
			return err
		}
		if !known {
			c.firstUse = true
			return nil
		}
		return t.kh.Verifier(t.host, nil)(got)
	}
}

// commit runs after a completed handshake. On first use it records the
// server's fingerprint in known_hosts and reports whether it did (another
// process may have recorded the same one meanwhile).
func (t *trust) commit(c *identityCheck) (learned bool, err error) {
	if !c.firstUse {
		return false, nil
	}
	err = t.kh.Verifier(t.host, func(protocol.Fingerprint) { learned = true })(c.presented)
	if err != nil {
		return false, t.explain(c, err)
	}
	return learned, nil
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
