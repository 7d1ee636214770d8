package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/secure-messenger/messenger/internal/password"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// passwd changes the password of the connection's user (docs/protocol.md
// §10.3). It needs the current password and a connection signature by the
// current keys, so that neither a stolen ticket nor a stolen password alone
// can change it; both failures count as failed password logins. The change
// revokes every other session of the user (revoke.go); this connection
// moves to the new generation and stays.
func (c *peer) passwd(ctx context.Context, m *protocol.Message) (err error) {
	if c.user == nil || c.user.Name != m.User {
		return fmt.Errorf("log in as %s first: %w", m.User, protocol.CodeUnauthenticated)
	}
	if err := password.Validate(m.NewPassword); err != nil {
		return fmt.Errorf("%w: new password: %w", protocol.CodeBadRequest, err)
	}
	if err := c.reserveAttempt(ctx, throttleLogin, m.User); err != nil {
		return err
	}
	defer func() { c.endAttempt(ctx, throttleLogin, m.User, err) }()
	u, err := c.srv.store.UserByID(ctx, c.user.ID)
	if err != nil {
		return storeError(err)
	}
	// The signature first: without the keys, nothing about the password is
	// ever tested.
	_, err = c.verifyIdentity(ctx, u, m.Device, m.Sig)
	if errors.Is(err, errNoDevice) {
		return c.failedLogin(ctx, throttleLogin, m.User, "passwd: identity signature")
	}
	if err != nil {
		return storeError(err)
	}
	if _, err := c.srv.hasher.Verify(ctx, u.PasswordHash, m.Password); errors.Is(err, password.ErrMismatch) {
		return c.failedLogin(ctx, throttleLogin, m.User, "passwd: wrong password")
	} else if err != nil {
		return storeError(err)
	}
	hash, err := c.srv.hasher.Hash(ctx, m.NewPassword)
	if err != nil {
		return storeError(err)
	}
	gen, err := c.srv.store.ChangePassword(ctx, u.ID, hash)
	if err != nil {
		return storeError(err)
	}
	c.log.Info().Int64("generation", gen).Msg("password changed")

	// This connection first, so that the revocation spares it.
	c.srv.logins.login(c, u.ID, gen, c.device)
	st := c.session
	st.generation = gen
	switch err := c.srv.sessions.refresh(ctx, c.sessionID, st); {
	case errors.Is(err, protocol.CodeSessionUnknown):
		c.sessionGone = true
	case err != nil:
		// The record still has the old generation, which would not resume:
		// re-seal it at the next request or pong.
		c.log.Warn().Err(err).Msg("session record not re-sealed after the password change")
		c.lastTouch = time.Time{}
	}
	c.session = st
	c.credentialsChanged(ctx, u.ID, gen)
	c.reply(&protocol.Message{Type: protocol.MsgAck, Ref: m.ID, TS: time.Now().UnixMilli()})
	return nil
}
