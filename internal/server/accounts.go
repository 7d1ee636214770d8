package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/internal/metrics"
	"github.com/secure-messenger/messenger/internal/password"
	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Accounts: register, login, auth and the key directory. Every request
// arrives inside the encrypted session, after the server proved its
// identity, so passwords never cross the network in clear. Each one also
// carries a signature by the user's identity key over this connection's
// exporter (protocol.SignClientAuth): that binds the login to this
// connection and is the client's half of mutual authentication.

// requestError is a request's failure as the client sees it: a code and a
// text fit to show, with the cause kept for the server's log only.
type requestError struct {
	code  protocol.Code
	text  string
	cause error
}

func (e *requestError) Error() string   { return e.text }
func (e *requestError) Unwrap() []error { return []error{e.code, e.cause} }

// storeError maps a store (or backend) error to the code a client sees,
// with a text that carries no database detail.
func storeError(err error) error {
	var fe *store.FieldError
	switch {
	case errors.Is(err, store.ErrConflict):
		return &requestError{protocol.CodeConflict, "already exists", err}
	case errors.Is(err, store.ErrNotFound):
		return &requestError{protocol.CodeNotFound, "not found", err}
	case errors.Is(err, store.ErrLimit):
		return &requestError{protocol.CodeLimitReached, "limit reached", err}
	case errors.As(err, &fe):
		return &requestError{protocol.CodeBadRequest, fe.Error(), err}
	case errors.Is(err, store.ErrInvalid):
		return &requestError{protocol.CodeBadRequest, "invalid value", err}
	}
	// Anything else is a backend failing (gone, busy, timing out): the
	// request was not carried out and may be retried.
	return &requestError{protocol.CodeUnavailable, "unavailable", err}
}

// Throttle kinds: failed password logins and failed signature
// authentications are counted apart, so that someone guessing a user's
// password cannot also lock out the user's own devices. Registrations are
// counted per address.
const (
	throttleLogin    = "login"
	throttleAuth     = "auth"
	throttleRegister = "register"
)

// registerWindow is the window of Config.RegisterPerAddr.
const registerWindow = time.Hour

// throttleKey is one limiter key an attempt counts against.
type throttleKey struct {
	key     string
	limit   int
	window  time.Duration
	perUser bool
}

// throttleKeys are the limiter keys of an attempt: per client address and
// per account for password logins; per address only for signature auths,
// since a signature cannot be guessed and a per-account limit would only let
// anyone lock a user's devices out with worthless signatures; per address
// for registrations. The address comes first, so that an address over its
// limit uses up none of an account's attempts.
func (c *peer) throttleKeys(kind, user string) []throttleKey {
	cfg := &c.srv.cfg
	addr := kind + ":addr:" + c.addr
	switch kind {
	case throttleRegister:
		return []throttleKey{{key: addr, limit: cfg.RegisterPerAddr, window: registerWindow}}
	case throttleAuth:
		return []throttleKey{{key: addr, limit: cfg.LoginFailuresPerAddr, window: cfg.LoginWindow}}
	}
	return []throttleKey{
		{key: addr, limit: cfg.LoginFailuresPerAddr, window: cfg.LoginWindow},
		{key: kind + ":user:" + user, limit: cfg.LoginFailuresPerUser, window: cfg.LoginWindow, perUser: true},
	}
}

// reserveAttempt counts an attempt of kind for user from this address
// before any password or signature is checked, and refuses it with
// rate_limited if one of its keys is already at its limit. Counting first,
// in one atomic step per key, means that of many concurrent attempts no
// more are let through than the limit has room for. A refused attempt
// counts against none of its keys. A limiter that fails refuses the attempt
// with unavailable: no attempt is let through uncounted.
//
// The caller ends every reserved attempt with endAttempt.
func (c *peer) reserveAttempt(ctx context.Context, kind, user string) error {
	keys := c.throttleKeys(kind, user)
	for i, k := range keys {
		ok, _, err := c.srv.limiter.Reserve(ctx, k.key, int64(k.limit), k.window)
		if err == nil && ok {
			continue
		}
		c.releaseAttempt(ctx, keys[:i])
		if err != nil {
			return &requestError{protocol.CodeUnavailable, "unavailable", fmt.Errorf("%s throttle: %w", kind, err)}
		}
		if kind == throttleRegister {
			c.srv.metrics.RateLimited(metrics.KindRegister)
			return fmt.Errorf("too many registrations from this address, retry within %s: %w", k.window, protocol.CodeRateLimited)
		}
		c.srv.metrics.RateLimited(metrics.KindLogin)
		return fmt.Errorf("too many failed logins, retry within %s: %w", k.window, protocol.CodeRateLimited)
	}
	return nil
}

// endAttempt settles an attempt that reserveAttempt let through, given the
// error the request ends with:
//
//   - success: a login clears the account's counter, and a login or auth
//     gives its attempt back to the address, whose other attempts stay
//     counted; a registration stays counted;
//   - unavailable: the attempt was not judged (a backend failed), so it is
//     given back to every key;
//   - a login or auth that failed with anything but auth_failed (a key
//     bundle or its proof of possession refused after the password was
//     right) is given back too: only wrong guesses stay counted;
//   - anything else (auth_failed above all, every failed registration)
//     stays counted.
func (c *peer) endAttempt(ctx context.Context, kind, user string, err error) {
	ctx = context.WithoutCancel(ctx) // also after the request's deadline
	keys := c.throttleKeys(kind, user)
	switch {
	case err == nil && kind == throttleRegister:
	case err == nil:
		for _, k := range keys {
			if !k.perUser {
				c.releaseAttempt(ctx, []throttleKey{k})
			} else if err := c.srv.limiter.Reset(ctx, k.key); err != nil {
				c.log.Warn().Err(err).Str("kind", kind).Msg("throttle reset")
			}
		}
	case errors.Is(err, protocol.CodeUnavailable):
		c.releaseAttempt(ctx, keys)
	case kind != throttleRegister && !errors.Is(err, protocol.CodeAuthFailed):
		// The password (login) was right, or nothing was guessed: a new
		// key bundle or its proof of possession was refused. Only wrong
		// guesses stay counted.
		c.releaseAttempt(ctx, keys)
	}
}

// releaseAttempt gives an attempt back to keys. A failure leaves the
// attempt counted, which errs on the side of refusing.
func (c *peer) releaseAttempt(ctx context.Context, keys []throttleKey) {
	for _, k := range keys {
		if err := c.srv.limiter.Release(ctx, k.key); err != nil {
			c.log.Warn().Err(err).Msg("throttle release")
		}
	}
}

// failedLogin logs a failed attempt of kind, already counted by
// reserveAttempt, and returns the one error every failure gets.
func (c *peer) failedLogin(_ context.Context, kind, user, why string) error {
	c.log.Info().Str("user", user).Str("kind", kind).Str("why", why).Msg("login failed")
	return fmt.Errorf("wrong user name, password or key: %w", protocol.CodeAuthFailed)
}

func (c *peer) register(ctx context.Context, m *protocol.Message) (err error) {
	challenge := c.takeChallenge()
	if c.user != nil {
		return fmt.Errorf("already logged in as %s: %w", c.user.Name, protocol.CodeBadRequest)
	}
	if err := password.Validate(m.Password); err != nil {
		return fmt.Errorf("%w: %w", protocol.CodeBadRequest, err)
	}
	signing, deviceID, err := m.Keys.VerifyDevice(m.User)
	if err != nil {
		return err
	}
	if err := protocol.VerifyClientAuth(signing, c.exporter, m.User, m.Sig); err != nil {
		return err
	}
	if err := challenge.verify(time.Now(), c.exporter, m.User, m.Keys.Encryption, m.Proof); err != nil {
		return err
	}
	// Each registration costs a password hash: count it per address first.
	if err := c.reserveAttempt(ctx, throttleRegister, m.User); err != nil {
		return err
	}
	defer func() { c.endAttempt(ctx, throttleRegister, m.User, err) }()
	// A taken name costs no hash; the transaction below still catches a
	// name taken meanwhile.
	switch _, err := c.srv.store.UserByName(ctx, m.User); {
	case err == nil:
		return &requestError{protocol.CodeConflict, "user name taken", store.ErrConflict}
	case !errors.Is(err, store.ErrNotFound):
		return storeError(err)
	}
	hash, err := c.srv.hasher.Hash(ctx, m.Password)
	if err != nil {
		return storeError(err)
	}
	u, d, err := c.srv.store.CreateUserWithDevice(ctx, store.User{Name: m.User, PasswordHash: hash}, newDevice(uuid.Nil, deviceID, m.DeviceName, m.Keys))
	if errors.Is(err, store.ErrConflict) {
		// The name, or (by a client that reuses ids) the device id.
		return &requestError{protocol.CodeConflict, "user name taken", err}
	}
	if err != nil {
		return storeError(err)
	}
	c.log.Info().Str("user", u.Name).Msg("registered")
	return c.authenticated(ctx, m, u, d)
}

func (c *peer) login(ctx context.Context, m *protocol.Message) (err error) {
	var challenge *keyChallenge
	if m.Keys != nil {
		challenge = c.takeChallenge()
	}
	if err := c.reserveAttempt(ctx, throttleLogin, m.User); err != nil {
		return err
	}
	defer func() { c.endAttempt(ctx, throttleLogin, m.User, err) }()
	u, err := c.srv.store.UserByName(ctx, m.User)
	if errors.Is(err, store.ErrNotFound) {
		// The same work and the same answer as a wrong password.
		_ = c.srv.hasher.DummyVerify(ctx, m.Password)
		return c.failedLogin(ctx, throttleLogin, m.User, "unknown user")
	}
	if err != nil {
		return storeError(err)
	}
	rehash, err := c.srv.hasher.Verify(ctx, u.PasswordHash, m.Password)
	if errors.Is(err, password.ErrMismatch) {
		return c.failedLogin(ctx, throttleLogin, m.User, "wrong password")
	}
	if err != nil {
		return storeError(err)
	}
	var d store.Device
	if m.Keys != nil {
		// A new device: the password authorises its keys, which must sign
		// this connection.
		signing, deviceID, err := m.Keys.VerifyDevice(u.Name)
		if err != nil {
			return err
		}
		if err := protocol.VerifyClientAuth(signing, c.exporter, u.Name, m.Sig); err != nil {
			return c.failedLogin(ctx, throttleLogin, m.User, "signature by the new keys")
		}
		if err := challenge.verify(time.Now(), c.exporter, u.Name, m.Keys.Encryption, m.Proof); err != nil {
			return err // not a failed password: not counted
		}
		d, err = c.srv.store.AddDevice(ctx, newDevice(u.ID, deviceID, m.DeviceName, m.Keys))
		switch {
		case errors.Is(err, store.ErrConflict):
			return &requestError{protocol.CodeConflict, "device id already used", err}
		case errors.Is(err, store.ErrLimit):
			return &requestError{protocol.CodeLimitReached, fmt.Sprintf("at most %d devices", store.MaxDevicesPerUser), err}
		case err != nil:
			return storeError(err)
		}
		c.log.Info().Str("user", u.Name).Stringer("device", d.ID).Msg("device added")
		c.announceKeyChange(ctx, u, d.ID, eventDeviceAdded)
	} else {
		switch d, err = c.verifyIdentity(ctx, u, m.Device, m.Sig); {
		case errors.Is(err, errNoDevice):
			return c.failedLogin(ctx, throttleLogin, m.User, "identity signature")
		case err != nil:
			return storeError(err)
		}
	}
	if rehash {
		if h, err := c.srv.hasher.Hash(ctx, m.Password); err == nil {
			if err := c.srv.store.SetPasswordHash(ctx, u.ID, h); err == nil {
				c.log.Info().Str("user", u.Name).Msg("password hash upgraded")
			}
		}
	}
	return c.authenticated(ctx, m, u, d)
}

// auth authenticates a connection by the identity signature alone: what a
// client with its keys does on every connection after registering.
func (c *peer) auth(ctx context.Context, m *protocol.Message) (err error) {
	if err := c.reserveAttempt(ctx, throttleAuth, m.User); err != nil {
		return err
	}
	defer func() { c.endAttempt(ctx, throttleAuth, m.User, err) }()
	u, err := c.srv.store.UserByName(ctx, m.User)
	if errors.Is(err, store.ErrNotFound) {
		return c.failedLogin(ctx, throttleAuth, m.User, "unknown user")
	}
	if err != nil {
		return storeError(err)
	}
	d, err := c.verifyIdentity(ctx, u, m.Device, m.Sig)
	if errors.Is(err, errNoDevice) {
		return c.failedLogin(ctx, throttleAuth, m.User, "identity signature")
	}
	if err != nil {
		return storeError(err)
	}
	return c.authenticated(ctx, m, u, d)
}

// authenticated makes the connection and its session belong to u, logged
// in with device d, and answers the request.
func (c *peer) authenticated(ctx context.Context, m *protocol.Message, u store.User, d store.Device) error {
	_, fp, err := c.directory(ctx, u)
	if err != nil {
		return err
	}
	st := c.session
	st.user, st.generation, st.device = u.ID, u.Generation, d.ID
	switch err := c.srv.sessions.refresh(ctx, c.sessionID, st); {
	case errors.Is(err, protocol.CodeSessionUnknown):
		// The session record is gone (ended by another connection, or past
		// its lifetime): this connection is logged in all the same, but
		// its session cannot be resumed.
		c.sessionGone = true
	case err != nil:
		return storeError(err)
	}
	c.session = st
	u.PasswordHash = ""
	c.user = &u
	c.device = d.ID
	c.srv.logins.login(c, u.ID, u.Generation, d.ID)
	c.lastCheck = time.Now()
	c.setName(u.Name)
	c.log = c.log.With().Str("user", u.Name).Logger()
	c.log.Info().Str("via", m.Type).Msg("authenticated")
	c.reply(&protocol.Message{Type: protocol.MsgAuthed, Ref: m.ID, User: u.Name, Device: d.ID.String(),
		Fingerprint: fp.String(), TS: time.Now().UnixMilli()})
	return nil
}

// lookup answers a key-directory query.
func (c *peer) lookup(ctx context.Context, m *protocol.Message) error {
	if c.user == nil {
		return fmt.Errorf("log in to look up keys: %w", protocol.CodeUnauthenticated)
	}
	u, err := c.srv.store.UserByName(ctx, m.User)
	if err != nil {
		return storeError(err)
	}
	infos, fp, err := c.directory(ctx, u)
	if err != nil {
		return err
	}
	c.reply(&protocol.Message{Type: protocol.MsgKeys, Ref: m.ID, User: u.Name, Devices: infos, Fingerprint: fp.String(), TS: time.Now().UnixMilli()})
	return nil
}

// rememberMembership records a logged-in user's join or leave in the
// durable store, creating the room on first join. An anonymous join
// creates the room (without a creator, and records no membership), so
// that rooms only anonymous connections use keep a history too.
func (c *peer) rememberMembership(ctx context.Context, room string, join bool) error {
	if c.user == nil {
		if !join {
			return nil
		}
		_, err := c.srv.store.RoomByName(ctx, room)
		if errors.Is(err, store.ErrNotFound) {
			_, err = c.srv.store.CreateRoom(ctx, store.Room{Name: room})
			if errors.Is(err, store.ErrConflict) { // created meanwhile by someone else
				err = nil
			}
		}
		if err != nil {
			return storeError(err)
		}
		return nil
	}
	r, err := c.srv.store.RoomByName(ctx, room)
	if errors.Is(err, store.ErrNotFound) && join {
		r, err = c.srv.store.CreateRoom(ctx, store.Room{Name: room, CreatedBy: c.user.ID})
		if errors.Is(err, store.ErrConflict) { // created meanwhile by someone else
			r, err = c.srv.store.RoomByName(ctx, room)
		}
	}
	if err != nil {
		if !join && errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return storeError(err)
	}
	if join {
		err = c.srv.store.AddMember(ctx, r.ID, c.user.ID)
	} else {
		err = c.srv.store.RemoveMember(ctx, r.ID, c.user.ID)
	}
	if err != nil {
		return storeError(err)
	}
	return nil
}

// clientIP returns the address of the client behind r: the connection's
// peer, or, when that peer is a trusted proxy, the nearest address in
// X-Forwarded-For that is not itself a trusted proxy.
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	peer := hostOf(r.RemoteAddr)
	if !isTrusted(peer, trusted) {
		return peer
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		for _, part := range strings.Split(h, ",") {
			if part = strings.TrimSpace(part); part != "" {
				hops = append(hops, part)
			}
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		if !isTrusted(hops[i], trusted) {
			if a, err := netip.ParseAddr(hops[i]); err == nil {
				return a.String()
			}
			return peer // a malformed hop: do not trust anything before it
		}
	}
	return peer
}

func hostOf(remote string) string {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().String()
	}
	if i := strings.LastIndexByte(remote, ':'); i > 0 {
		return strings.Trim(remote[:i], "[]")
	}
	return remote
}

func isTrusted(addr string, trusted []netip.Prefix) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
