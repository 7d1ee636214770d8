package client

import (
	"errors"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Retryable reports whether a request or connection that failed with err
// is worth carrying out again on a new connection: the connection was
// lost (ErrClosed), the server went away (protocol.CodeGoingAway: it is
// draining, its sessions stay resumable on the other nodes), or it failed
// internally or could not reach a backend (protocol.CodeInternal,
// protocol.CodeUnavailable). A connection that ended for another of the
// server's reasons (slow_consumer, session_revoked, …) is not.
//
// To carry on without losing or repeating a message: Dial again (behind a
// load balancer the same URL reaches another node) with Config.Resume set
// to the old connection's Ticket, sign in again if the session was not
// resumed (Session().Resumed), join the rooms again with JoinAfter from
// the last sequence number received, and send again every message that
// was not acknowledged under the same mid (SendMessage): the server keeps
// one copy per mid, so a message that was committed before the connection
// was lost gets its sequence number back and is not delivered twice.
func Retryable(err error) bool {
	var code protocol.Code
	if errors.As(err, &code) {
		// The server's reason decides, also for a connection that ended
		// (ErrClosed wrapping it): a slow consumer or a revoked session
		// is not cured by coming back.
		switch code {
		case protocol.CodeGoingAway, protocol.CodeInternal, protocol.CodeUnavailable:
			return true
		}
		return false
	}
	return errors.Is(err, ErrClosed)
}
