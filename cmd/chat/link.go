package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Device link codes (docs/protocol.md §10.5): chat devices -add on a
// device the account already has shows a code; chat login -link CODE on
// the new machine generates keys, offers them with the code, and waits
// until the first device approves.

// linkWaitSlack is how much longer than the code's lifetime either side
// waits for the other.
const linkWaitSlack = 30 * time.Second

// addDevice is chat devices -add: show a link code, wait for a device to
// join it, show its fingerprint, approve it once the person says yes
// (one line of stdin: y or yes).
func (a *account) addDevice(ctx context.Context, s *session, id *client.Identity, stdin io.Reader) error {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	l, err := s.conn.StartLink(rctx)
	cancel()
	if err != nil {
		return accountError("start a device link", err, "")
	}
	a.ui.status("on the new device, run: chat login -user %s -link CODE (the code works once, until %s)", id.User, l.Expires.Format("15:04:05"))
	a.ui.result(l.Code.String())
	wctx, cancel := context.WithDeadline(ctx, l.Expires.Add(linkWaitSlack))
	defer cancel()
	o, err := s.conn.WaitLinkOffer(wctx, id, l, func(err error) {
		a.ui.status("refused a device that did not type this code (%s)", describe(err))
	}, nil)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return &exitError{code: exitRuntime, err: errors.New("no device joined with the code before it expired")}
		}
		return accountError("wait for the new device", err, "")
	}
	name := ""
	if o.Name != "" {
		name = " (" + clean(o.Name) + ")"
	}
	a.ui.status("device %s%s wants to join %s, fingerprint %s", o.Device, name, id.User, o.Fingerprint)
	a.ui.prompt("add it? [y/N] ")
	if !confirmed(stdin) {
		return &exitError{code: exitRuntime, err: errors.New("not approved: the device was not added")}
	}
	rctx, cancel = context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if err := s.conn.ApproveLink(rctx, id, l, o); err != nil {
		return accountError("approve device "+o.Device.String(), err, "")
	}
	a.ui.status("added device %s to %s; your contacts and other devices are told", o.Device, id.User)
	return nil
}

// confirmed reads one line and reports whether it says yes.
func confirmed(r io.Reader) bool {
	if r == nil {
		return false
	}
	line, _ := bufio.NewReader(r).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

// loginLink is chat login -link CODE: new keys for a new profile, added
// as a device of the account by the device that showed the code. No
// password.
func (a *account) loginLink(ctx context.Context) error {
	user, dir := a.o.user, profileDir(a.home, a.o.user)
	code, err := protocol.ParseLinkCode(a.o.link)
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("-link: %w", err)}
	}
	if ok, err := hasKeys(dir); err != nil || ok {
		if err != nil {
			return err
		}
		return &exitError{code: exitUsage, err: fmt.Errorf("keys for %s already exist in %s: this profile is a device of %s already (chat -user %s)", user, dir, user, user)}
	}
	id, staged, err := a.newStagedKeys(ctx)
	if err != nil {
		return err
	}
	defer staged.discard()
	s, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	err = s.conn.JoinLink(rctx, id, code)
	cancel()
	if err != nil {
		return accountError("join with the link code", err, "a wrong, expired or used code: make a new one with chat devices -user "+user+" -add")
	}
	fp, err := id.Fingerprint()
	if err != nil {
		return err
	}
	a.ui.status("waiting for approval on your other device; it shows this device as %s, fingerprint %s", id.Device, fp)
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute+linkWaitSlack)
	defer cancel()
	if err := s.conn.WaitLinkDone(wctx, id, code); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return &exitError{code: exitRuntime, err: errors.New("the other device did not approve this one (a mistyped code shows there as refused)")}
		}
		return accountError("wait for approval", err, "")
	}
	rctx, cancel = context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	r, err := s.conn.Auth(rctx, id)
	if err != nil {
		return accountError("sign in as the new device", err, "")
	}
	staged.keep()
	if err := installKeys(staged.dir, dir); err != nil {
		return saveFailed("added a device to "+user, dir, staged.dir, err)
	}
	a.ui.status("added this device (%s) to %s without the password; keys saved in %s", id.Device, user, dir)
	a.printKeys(user, r.Fingerprint, 0)
	return a.checkFingerprint(ctx, s, id, r.Fingerprint)
}
