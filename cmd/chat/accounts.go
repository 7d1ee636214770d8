package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/secure-messenger/messenger/pkg/client"
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
	s := &session{o: a.o, ui: a.ui, trust: tr, quiet: true}
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
	id, err := a.generate(ctx)
	if err != nil {
		return err
	}
	staged, err := stageKeys(a.home, id)
	if err != nil {
		return err
	}
	installed := false
	defer func() {
		if !installed {
			os.RemoveAll(staged)
		}
	}()
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
	installed = true
	if err := installKeys(staged, dir); err != nil {
		return saveFailed("registered "+user, dir, staged, err)
	}
	a.ui.status("registered %s (key version %d); keys saved in %s", user, r.Version, dir)
	a.ui.status("compare this fingerprint with what the people you talk to get from: chat fingerprint -user THEM %s", user)
	a.printKeys(user, r.Fingerprint, r.Version)
	return a.checkFingerprint(id, r.Fingerprint)
}

// checkFingerprint compares the server's fingerprint of our keys with our
// own computation.
func (a *account) checkFingerprint(id *client.Identity, got string) error {
	want, err := id.Fingerprint()
	if err != nil {
		return err
	}
	if got != want.String() {
		return &exitError{code: exitRuntime, err: fmt.Errorf("the server reports fingerprint %s for your keys, but they have %s", clean(got), want)}
	}
	return nil
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
	var staged string
	installed := false
	if a.o.newKeys {
		if id, err = a.generate(ctx); err != nil {
			return err
		}
		if staged, err = stageKeys(a.home, id); err != nil {
			return err
		}
		defer func() {
			if !installed {
				os.RemoveAll(staged)
			}
		}()
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
		installed = true
		old := ""
		had, err := hasKeys(dir)
		if err == nil && had {
			old, err = retireKeys(dir, time.Now())
		}
		if err == nil {
			err = installKeys(staged, dir)
		}
		if err != nil {
			return saveFailed("published new keys for "+user, dir, staged, err)
		}
		if old != "" {
			a.ui.status("the old keys are in %s", old)
		}
		a.ui.status("published new keys for %s (key version %d), saved in %s; your contacts are told your keys changed", user, r.Version, dir)
	} else {
		a.ui.status("logged in as %s (key version %d)", user, r.Version)
	}
	a.printKeys(user, r.Fingerprint, r.Version)
	return a.checkFingerprint(id, r.Fingerprint)
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
		fp, err := id.Fingerprint()
		if err != nil {
			return err
		}
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
	a.ui.status("%s's keys as the server hands them out (self-signature and fingerprint checked here): compare the fingerprint with %s", c.User, c.User)
	a.printKeys(c.User, c.Fingerprint.String(), c.Version)
	return nil
}

// saveFailed reports keys the server now holds that could not be moved
// from their staging directory into the profile: it says where they are.
func saveFailed(what, dir, staged string, err error) error {
	return &exitError{code: exitRuntime, err: fmt.Errorf("%s, but saving the keys in %s failed: %w\nthey are in %s: move %s into %s",
		what, dir, err, staged, strings.Join(keyFiles, " and "), dir)}
}
