package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
	"golang.org/x/term"
)

// A profile is a user's private keys on this machine:
// <home>/profiles/<user>/, a 0700 directory holding the 0600 PEM files
// client.Identity.Save writes. Keys replaced by login -new-keys move to an
// old-<UTC timestamp>/ directory inside it. User names are validated
// (protocol.ValidUserName) before they get here, so they are safe path
// elements: no "/", and no leading ".".

// keyFiles are the file names client.Identity.Save writes; chat moves them
// aside when keys are replaced.
var keyFiles = client.IdentityFiles[:]

// profileDir is where user's keys live.
func profileDir(home, user string) string {
	return filepath.Join(home, "profiles", user)
}

// hasKeys reports whether dir holds any key file.
func hasKeys(dir string) (bool, error) {
	for _, f := range keyFiles {
		_, err := os.Lstat(filepath.Join(dir, f))
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("profile: %w", err)
		}
	}
	return false, nil
}

// noProfileError is the error for a -user without keys: exit status 2.
func noProfileError(user, dir string) error {
	return &exitError{code: exitUsage, err: fmt.Errorf("no keys for %s in %s: run chat register -user %s or chat login -user %s -new-keys", user, dir, user, user)}
}

// loadProfile reads user's keys, warning about files others can read.
func loadProfile(u *ui, home, user string) (*client.Identity, error) {
	dir := profileDir(home, user)
	id, err := client.LoadIdentity(dir, user)
	if errors.Is(err, client.ErrNoIdentity) {
		return nil, noProfileError(user, dir)
	}
	if err != nil {
		return nil, &exitError{code: exitRuntime, err: fmt.Errorf("keys for %s: %w", user, err)}
	}
	warnIfShared(u, dir)
	for _, f := range keyFiles {
		warnIfShared(u, filepath.Join(dir, f))
	}
	return id, nil
}

// warnIfShared warns when path is open to the group or others.
func warnIfShared(u *ui, path string) {
	fi, err := os.Stat(path)
	if err == nil && fi.Mode().Perm()&0o077 != 0 {
		u.status("warning: %s has mode %v: others on this machine may read it; chmod go-rwx it", path, fi.Mode().Perm())
	}
}

// stageKeys saves id into a fresh directory next to the profiles, from
// which installKeys moves them into the profile once the server accepted
// them: a refused registration leaves no keys behind, and a registered
// account never lacks its keys.
func stageKeys(home string, id *client.Identity) (string, error) {
	profiles := filepath.Join(home, "profiles")
	if err := os.MkdirAll(profiles, 0o700); err != nil {
		return "", fmt.Errorf("profiles: %w", err)
	}
	dir, err := os.MkdirTemp(profiles, "."+id.User+".new-") // 0700
	if err != nil {
		return "", fmt.Errorf("profiles: %w", err)
	}
	if err := id.Save(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// newStagedKeys generates this device's keys (account.generate) and stages
// them (stageKeys). The caller defers discard, which removes the staging
// directory unless keep was called once the server accepted the keys.
func (a *account) newStagedKeys(ctx context.Context) (*client.Identity, *stagedKeys, error) {
	id, err := a.generate(ctx)
	if err != nil {
		return nil, nil, err
	}
	dir, err := stageKeys(a.home, id)
	if err != nil {
		return nil, nil, err
	}
	return id, &stagedKeys{dir: dir}, nil
}

// stagedKeys is a staging directory of new keys; nil means none.
type stagedKeys struct {
	dir  string
	kept bool
}

// keep marks the keys as accepted by the server: they must not be lost.
func (k *stagedKeys) keep() {
	if k != nil {
		k.kept = true
	}
}

// discard removes the staging directory unless keep was called.
func (k *stagedKeys) discard() {
	if k != nil && !k.kept {
		os.RemoveAll(k.dir)
	}
}

// installKeys moves the staged keys into the profile dir, never replacing
// a key file there, and removes the staging directory.
func installKeys(staged, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range keyFiles {
		// A link fails if the name exists, where a rename would replace it.
		if err := os.Link(filepath.Join(staged, f), filepath.Join(dir, f)); err != nil {
			return err
		}
	}
	return os.RemoveAll(staged)
}

// retireKeys moves the key files in dir to a new dir/old-<UTC time>/ and
// returns its path.
func retireKeys(dir string, now time.Time) (string, error) {
	base := filepath.Join(dir, "old-"+now.UTC().Format("20060102T150405Z"))
	old := base
	for i := 2; ; i++ {
		err := os.Mkdir(old, 0o700)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || i > 100 {
			return "", err
		}
		old = fmt.Sprintf("%s-%d", base, i)
	}
	for _, f := range keyFiles {
		err := os.Rename(filepath.Join(dir, f), filepath.Join(old, f))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	return old, nil
}

// minPasswordRunes is the server's minimum password length (see
// internal/password), checked here too so that register fails before
// generating keys rather than after.
const minPasswordRunes = 8

// passwordSource reads the account password, never echoing it anywhere:
// from -password-file (its first line), else MESSENGER_PASSWORD, else
// standard input. chat passwd reads the new password likewise from
// -new-password-file, else MESSENGER_NEW_PASSWORD, else standard input:
// typed twice at a terminal, or the line after the current password in a
// pipe.
type passwordSource struct {
	file    string // -password-file
	newFile string // -new-password-file
	getenv  func(string) string
	stdin   io.Reader
	ui      *ui

	piped *bufio.Reader // stdin when it is not a terminal, once read from
}

// passwordFrom names where one password comes from.
type passwordFrom struct {
	flag, file, env string
	prompt          string // at a terminal
}

// read returns the password for user. With confirm (register) a password
// typed at a terminal is asked for twice and must be long enough.
func (p *passwordSource) read(ctx context.Context, user string, confirm bool) (string, error) {
	return p.readFrom(ctx, passwordFrom{"-password-file", p.file, "MESSENGER_PASSWORD", "password for " + user + ": "}, confirm)
}

// readNew returns the new password for user (chat passwd): asked for
// twice at a terminal, and long enough.
func (p *passwordSource) readNew(ctx context.Context, user string) (string, error) {
	return p.readFrom(ctx, passwordFrom{"-new-password-file", p.newFile, "MESSENGER_NEW_PASSWORD", "new password for " + user + ": "}, true)
}

func (p *passwordSource) readFrom(ctx context.Context, from passwordFrom, confirm bool) (string, error) {
	pw, err := p.get(ctx, from, confirm)
	if err != nil {
		return "", err
	}
	switch {
	case pw == "":
		return "", &exitError{code: exitUsage, err: errors.New("the password is empty")}
	case len(pw) > protocol.MaxPasswordLen:
		return "", &exitError{code: exitUsage, err: fmt.Errorf("the password is over %d bytes", protocol.MaxPasswordLen)}
	case !utf8.ValidString(pw):
		return "", &exitError{code: exitUsage, err: errors.New("the password is not valid UTF-8")}
	case confirm && utf8.RuneCountInString(pw) < minPasswordRunes:
		return "", &exitError{code: exitUsage, err: fmt.Errorf("the password is too short: at least %d characters", minPasswordRunes)}
	}
	return pw, nil
}

func (p *passwordSource) get(ctx context.Context, from passwordFrom, confirm bool) (string, error) {
	if from.file != "" {
		warnIfShared(p.ui, from.file)
		f, err := os.Open(from.file)
		if err != nil {
			return "", &exitError{code: exitUsage, err: fmt.Errorf("%s: %w", from.flag, err)}
		}
		defer f.Close()
		line, err := readLine(bufio.NewReader(f))
		if err != nil {
			return "", &exitError{code: exitUsage, err: fmt.Errorf("%s %s: %w", from.flag, from.file, err)}
		}
		return line, nil
	}
	if pw := p.getenv(from.env); pw != "" {
		return pw, nil
	}
	f, tty := p.stdin.(*os.File)
	if !tty || !term.IsTerminal(int(f.Fd())) {
		if p.piped == nil {
			p.piped = bufio.NewReader(p.stdin)
		}
		return p.readLine(ctx, p.piped, from.flag)
	}
	pw, err := p.readHidden(ctx, f, from.prompt, from.flag)
	if err != nil || !confirm {
		return pw, err
	}
	again, err := p.readHidden(ctx, f, "the same password again: ", from.flag)
	if err != nil {
		return "", err
	}
	if again != pw {
		return "", &exitError{code: exitUsage, err: errors.New("the two passwords differ")}
	}
	return pw, nil
}

// readHidden prompts (on stderr) and reads one line from the terminal f
// with echo off; flag is the option that avoids the terminal.
func (p *passwordSource) readHidden(ctx context.Context, f *os.File, prompt, flag string) (string, error) {
	p.ui.prompt(prompt)
	type result struct {
		pw  []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		pw, err := term.ReadPassword(int(f.Fd()))
		ch <- result{pw, err}
	}()
	select {
	case r := <-ch:
		p.ui.status("")
		if r.err != nil {
			return "", &exitError{code: exitUsage, err: fmt.Errorf("password from the terminal: %w (or use %s)", r.err, flag)}
		}
		return string(r.pw), nil
	case <-ctx.Done():
		return "", &exitError{code: exitRuntime, err: errors.New("interrupted")}
	}
}

// readLine reads one line of standard input, giving up when ctx ends (a
// signal) although the read itself cannot be interrupted; flag is the
// option that avoids standard input.
func (p *passwordSource) readLine(ctx context.Context, br *bufio.Reader, flag string) (string, error) {
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := readLine(br)
		ch <- result{line, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return "", &exitError{code: exitUsage, err: fmt.Errorf("password from standard input: %w (or use %s)", r.err, flag)}
		}
		return r.line, nil
	case <-ctx.Done():
		return "", &exitError{code: exitRuntime, err: errors.New("interrupted")}
	}
}

// readLine returns the first line of br without its line ending. A last
// line without a newline counts; no line at all is an error.
func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		if errors.Is(err, io.EOF) {
			return "", errors.New("no password: end of input")
		}
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
