package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/e2e"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// account is what the register, login, passwd and fingerprint commands
// share.
type account struct {
	o    *options
	ui   *ui
	home string
	pw   *passwordSource
}

// generate makes new keys for the user, giving up (but not stopping the
// arithmetic) when ctx ends.
func (a *account) generate(ctx context.Context) (*client.Identity, error) {
	a.ui.status("generating %d-bit keys for %s…", a.o.keyBits, a.o.user)
	type result struct {
		id  *client.Identity
		err error
	}
	ch := make(chan result, 1)
	go func() {
		id, err := client.NewIdentity(a.o.user, a.o.keyBits)
		ch <- result{id, err}
	}()
	select {
	case r := <-ch:
		return r.id, r.err
	case <-ctx.Done():
		return nil, &exitError{code: exitRuntime, err: errors.New("interrupted")}
	}
}

// connect opens a connection for one request; s.close ends it.
func (a *account) connect(ctx context.Context) (*session, error) {
	tr, err := newTrust(a.o, a.home)
	if err != nil {
		return nil, err
	}
	// A device link reads what the server pushes itself.
	s := &session{o: a.o, ui: a.ui, trust: tr, quiet: true, ownMessages: a.o.add || a.o.link != ""}
	if err := s.open(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// connectAs connects and signs in as id with its keys (auth).
func (a *account) connectAs(ctx context.Context, id *client.Identity) (*session, error) {
	s, err := a.connect(ctx)
	if err != nil {
		return nil, err
	}
	s.id = id
	if err := s.authenticate(ctx); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// printKeys prints the result line on stdout: "alice FINGERPRINT version
// 1"; the version only when known.
func (a *account) printKeys(user, fp string, version int) {
	line := clean(user) + " " + clean(fp)
	if version > 0 {
		line += fmt.Sprintf(" version %d", version)
	}
	a.ui.result(line)
}

// register is chat register: new keys, a new account, a new profile.
func (a *account) register(ctx context.Context) error {
	user, dir := a.o.user, profileDir(a.home, a.o.user)
	if ok, err := hasKeys(dir); err != nil || ok {
		if err != nil {
			return err
		}
		return &exitError{code: exitUsage, err: fmt.Errorf("keys for %s already exist in %s: chat -user %s uses them; chat login -user %s -new-keys replaces them", user, dir, user, user)}
	}
	pw, err := a.pw.read(ctx, user, true)
	if err != nil {
		return err
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
	defer cancel()
	r, err := s.conn.Register(rctx, id, pw)
	if errors.Is(err, protocol.CodeConflict) {
		return &exitError{code: exitRuntime, err: fmt.Errorf("register %s: %w\nthe name is taken: choose another, or, if the account is yours, chat login -user %s -new-keys", user, err, user)}
	}
	if err != nil {
		return accountError("register "+user, err, "")
	}
	// The account now exists with these keys: keep them whatever happens.
	staged.keep()
	if err := installKeys(staged.dir, dir); err != nil {
		return saveFailed("registered "+user, dir, staged.dir, err)
	}
	a.ui.status("registered %s (device %s); keys saved in %s", user, id.Device, dir)
	a.ui.status("compare this fingerprint with what the people you talk to get from: chat fingerprint -user THEM %s", user)
	a.printKeys(user, r.Fingerprint, 0)
	return a.checkFingerprint(ctx, s, id, r.Fingerprint)
}

// checkFingerprint checks the account fingerprint the server reported
// (got) against the account's devices, each checked here, and that this
// device is one of them with our keys.
func (a *account) checkFingerprint(ctx context.Context, s *session, id *client.Identity, got string) error {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	ct, _, err := s.conn.Devices(rctx, id)
	if err != nil {
		return accountError("list the devices of "+id.User, err, "")
	}
	if got != ct.Fingerprint.String() {
		return &exitError{code: exitRuntime, err: fmt.Errorf("the server reports fingerprint %s for your account, but its devices have %s", clean(got), ct.Fingerprint)}
	}
	self, err := id.Public()
	if err != nil {
		return err
	}
	for _, d := range ct.Devices {
		if d.ID == id.Device && d.Fingerprint == self.Fingerprint() {
			return nil
		}
	}
	return &exitError{code: exitRuntime, err: fmt.Errorf("the server does not list this device (%s) with its keys among the devices of %s", id.Device, id.User)}
}

// soleFingerprint is the account fingerprint of id's user while id is its
// only device.
func soleFingerprint(id *client.Identity) (protocol.Fingerprint, error) {
	d, err := id.Public()
	if err != nil {
		return protocol.Fingerprint{}, err
	}
	return e2e.UserFingerprint(id.User, []e2e.Device{d})
}

// login is chat login: a password login, with -new-keys publishing new
// keys in place of the old.
func (a *account) login(ctx context.Context) error {
	user, dir := a.o.user, profileDir(a.home, a.o.user)
	var id *client.Identity
	var err error
	if !a.o.newKeys {
		if id, err = loadProfile(a.ui, a.home, user); err != nil {
			return err
		}
	}
	pw, err := a.pw.read(ctx, user, false)
	if err != nil {
		return err
	}
	var staged *stagedKeys
	if a.o.newKeys {
		if id, staged, err = a.newStagedKeys(ctx); err != nil {
			return err
		}
		defer staged.discard()
	}
	s, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	r, err := s.conn.Login(rctx, id, pw, a.o.newKeys)
	if err != nil {
		hint := ""
		if !a.o.newKeys {
			hint = fmt.Sprintf("wrong password, or the server no longer accepts the keys in %s (replaced on another device? then add -new-keys)", dir)
		}
		return accountError("login as "+user, err, hint)
	}
	if a.o.newKeys {
		// The server now has the new keys only: keep them whatever happens.
		staged.keep()
		old := ""
		had, err := hasKeys(dir)
		if err == nil && had {
			old, err = retireKeys(dir, time.Now())
		}
		if err == nil {
			err = installKeys(staged.dir, dir)
		}
		if err != nil {
			return saveFailed("published new keys for "+user, dir, staged.dir, err)
		}
		if old != "" {
			a.ui.status("the old keys are in %s", old)
		}
		a.ui.status("added a new device of %s (%s), keys saved in %s; your contacts and other devices are told", user, id.Device, dir)
		if old != "" {
			if r.Fingerprint, err = a.retireDevice(ctx, s, id, old); err != nil {
				return err
			}
		}
	} else {
		a.ui.status("logged in as %s (device %s)", user, id.Device)
		if err := id.SaveDevice(dir); err != nil {
			return err
		}
	}
	a.printKeys(user, r.Fingerprint, 0)
	return a.checkFingerprint(ctx, s, id, r.Fingerprint)
}

// retireDevice removes from the account the device whose keys login
// -new-keys just moved to the directory old, signing with the new device
// id: a reset of this machine's keys. It returns the account's new
// fingerprint. A device the server no longer lists is left alone.
func (a *account) retireDevice(ctx context.Context, s *session, id *client.Identity, old string) (string, error) {
	prev, err := client.LoadIdentity(old, id.User)
	if err != nil {
		return "", &exitError{code: exitRuntime, err: fmt.Errorf("the old keys in %s: %w", old, err)}
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	ct, _, err := s.conn.Devices(rctx, id)
	if err != nil {
		return "", accountError("list the devices of "+id.User, err, "")
	}
	prevKey, err := prev.Public()
	if prev.Device == uuid.Nil {
		// A profile from before devices: find its device by its keys.
		prevKey, err = (&client.Identity{User: prev.User, Device: id.Device, Signing: prev.Signing, Encryption: prev.Encryption}).Public()
	}
	if err != nil {
		return "", err
	}
	for _, d := range ct.Devices {
		if d.ID == id.Device || !bytes.Equal(d.Signing, prevKey.Signing) {
			continue
		}
		if err := s.conn.RemoveDevice(rctx, id, d.ID); err != nil {
			return "", accountError("remove the old device "+d.ID.String(), err, "")
		}
		a.ui.status("removed the old device %s of %s: its keys no longer sign in, and its sessions are closed", d.ID, id.User)
		break
	}
	ct, _, err = s.conn.Devices(rctx, id)
	if err != nil {
		return "", accountError("list the devices of "+id.User, err, "")
	}
	return ct.Fingerprint.String(), nil
}

// devices is chat devices: list the account's devices, or remove one.
func (a *account) devices(ctx context.Context, stdin io.Reader) error {
	user := a.o.user
	id, err := loadProfile(a.ui, a.home, user)
	if err != nil {
		return err
	}
	s, err := a.connectAs(ctx, id)
	if err != nil {
		return err
	}
	defer s.close()
	if err := id.SaveDevice(profileDir(a.home, user)); err != nil {
		return err
	}
	if a.o.add {
		return a.addDevice(ctx, s, id, stdin)
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if a.o.remove != "" {
		target, _ := protocol.ParseDeviceID(a.o.remove) // checked by parseOptions
		if err := s.conn.RemoveDevice(rctx, id, target); err != nil {
			return accountError("remove device "+a.o.remove, err, "")
		}
		a.ui.status("removed device %s of %s; its sessions are closed", target, user)
	}
	ct, _, err := s.conn.Devices(rctx, id)
	if err != nil {
		return accountError("list the devices of "+user, err, "")
	}
	for _, d := range ct.Devices {
		line := fmt.Sprintf("  %s  %s  %s", d.ID, d.Fingerprint, d.Created.Format("2006-01-02 15:04Z"))
		if d.Name != "" {
			line += "  " + clean(d.Name)
		}
		if d.ID == id.Device {
			line += "  (this device)"
		}
		a.ui.status("%s", line)
	}
	a.printKeys(user, ct.Fingerprint.String(), 0)
	return nil
}

// passwd is chat passwd: a new password, proven by the current one and
// the profile's keys, on a connection of a new session. The server closes
// every other session of the user.
func (a *account) passwd(ctx context.Context) error {
	user := a.o.user
	id, err := loadProfile(a.ui, a.home, user)
	if err != nil {
		return err
	}
	current, err := a.pw.read(ctx, user, false)
	if err != nil {
		return err
	}
	next, err := a.pw.readNew(ctx, user)
	if err != nil {
		return err
	}
	s, err := a.connectAs(ctx, id)
	if err != nil {
		return err
	}
	defer s.close()
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if err := s.conn.ChangePassword(rctx, id, current, next); err != nil {
		return accountError("change the password of "+user, err, "wrong current password")
	}
	a.ui.status("changed the password of %s; the server closed every other session of %s (chat on your other devices signs in again with its keys)", user, user)
	return nil
}

// fingerprint is chat fingerprint: our own from the profile, or, with a
// USER argument, USER's from the server's key directory.
func (a *account) fingerprint(ctx context.Context) error {
	id, err := loadProfile(a.ui, a.home, a.o.user)
	if err != nil {
		return err
	}
	if a.o.lookup == "" {
		if id.Device == uuid.Nil {
			// A profile from before devices: the server names its id.
			return &exitError{code: exitRuntime, err: fmt.Errorf("the profile of %s has no device id yet: run chat devices -user %s once", id.User, id.User)}
		}
		fp, err := soleFingerprint(id)
		if err != nil {
			return err
		}
		a.ui.status("the fingerprint of %s while this device is its only one; with other devices, ask the server: chat fingerprint -user %s %s", id.User, id.User, id.User)
		a.printKeys(id.User, fp.String(), 0)
		return nil
	}
	s, err := a.connectAs(ctx, id)
	if err != nil {
		return err
	}
	defer s.close()
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	c, err := s.conn.Lookup(rctx, a.o.lookup)
	if errors.Is(err, protocol.CodeNotFound) {
		return &exitError{code: exitRuntime, err: fmt.Errorf("look up %s: %w\nno such user on this server", a.o.lookup, err)}
	}
	if err != nil {
		return accountError("look up "+a.o.lookup, err, "")
	}
	a.ui.status("%s's %d device(s) as the server hands them out (self-signatures and fingerprints checked here): compare the fingerprint with %s", c.User, len(c.Devices), c.User)
	a.printKeys(c.User, c.Fingerprint.String(), 0)
	return nil
}

// saveFailed reports keys the server now holds that could not be moved
// from their staging directory into the profile: it says where they are.
func saveFailed(what, dir, staged string, err error) error {
	return &exitError{code: exitRuntime, err: fmt.Errorf("%s, but saving the keys in %s failed: %w\nthey are in %s: move %s into %s",
		what, dir, err, staged, strings.Join(keyFiles, " and "), dir)}
}
