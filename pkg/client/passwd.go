package client

import (
	"context"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// ChangePassword replaces the password of id.User, as which the connection
// must be logged in (Auth, Login or Register), with next: it proves both
// the current password and, by a signature over this connection, id's
// keys. Every other session of the user is revoked: its connections are
// closed with protocol.CodeSessionRevoked and its tickets no longer resume.
// This connection and its session stay. A wrong current password or
// signature is protocol.CodeAuthFailed.
//
// A ticket of this very session stays valid too: change the password on a
// connection of a new session (a Dial without Resume) when a ticket may
// have been stolen.
func (c *Conn) ChangePassword(ctx context.Context, id *Identity, current, next string) error {
	sig, err := protocol.SignClientAuth(id.Signing, c.exporter, id.User)
	if err != nil {
		return err
	}
	m := &protocol.Message{Type: protocol.MsgPasswd, User: id.User, Password: current, NewPassword: next, Sig: sig}
	if id.Device != uuid.Nil {
		m.Device = id.Device.String()
	}
	_, err = c.Request(ctx, m)
	return err
}
