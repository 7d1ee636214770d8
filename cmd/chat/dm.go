package main

// The direct conversation inside a session: chat -to USER starts in it,
// /dm USER switches to it from a room, /room or /join switch back. The
// pump hands conversation events to the session's loop (convEvents), which
// opens and shows them in sequence order: what was missed first, then live
// records, each once; a gap in the sequence is filled from history.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/e2e"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// convQueue bounds the conversation events waiting for the loop; one that
// does not fit is dropped and later fetched from history (a gap).
const convQueue = 1024

// dmState is the session's direct conversation; the loop goroutine only.
type dmState struct {
	cv    *client.Conversation // nil: lines go to the current room
	peer  string               // kept across reconnections
	guard *e2e.ReplayGuard     // kept across reconnections of one peer
}

// queueConv is the pump's hand-off of a conversation event (never blocks).
func (s *session) queueConv(m *protocol.Message) {
	select {
	case s.convEvents <- m:
	default:
	}
}

// openDM opens the conversation with peer on the current connection and
// makes it where lines go; with showMissed, it first shows what arrived
// since the account's read position.
func (s *session) openDM(ctx context.Context, peer string, showMissed bool) error {
	if s.id == nil {
		return errors.New("/dm needs -user: a direct conversation is between accounts")
	}
	if !protocol.ValidUserName(peer) || peer == s.id.User {
		return fmt.Errorf("/dm %q: name another user (%s)", peer, userRule)
	}
	if peer != s.dm.peer || s.dm.guard == nil {
		s.dm.guard = &e2e.ReplayGuard{}
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	dir := profileDir(s.home, s.id.User)
	cv, err := s.conn.OpenConversation(ctx, s.id, peer, client.ConversationOptions{
		PinsFile: filepath.Join(dir, pinsFile), StateDir: dir, Guard: s.dm.guard,
	})
	if errors.Is(err, protocol.CodeNotFound) {
		return &exitError{code: exitRuntime, err: fmt.Errorf("open the conversation with %s: %w\nno such user on this server", peer, err)}
	}
	if err != nil {
		return &exitError{code: exitRuntime, err: fmt.Errorf("open the conversation with %s: %w", peer, err)}
	}
	s.dm.cv, s.dm.peer = cv, peer
	if !showMissed {
		return nil
	}
	missed, err := cv.Missed(ctx)
	for _, m := range missed {
		showDirect(s.ui, cv, m)
	}
	if err != nil {
		s.ui.problem(err)
	}
	return nil
}

// leaveDM makes lines go to the current room again.
func (s *session) leaveDM() {
	s.dm.cv, s.dm.peer = nil, ""
}

// sayDM sends text in the open conversation. The sender's own records are
// not pushed back to it, so the read position moves past them here.
func (s *session) sayDM(ctx context.Context, text string) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	cv := s.dm.cv
	_, sent, err := cv.SendText(ctx, text)
	if err != nil {
		return fmt.Errorf("send to %s: %w", s.dm.peer, err)
	}
	if sent.Seq == cv.ReadPosition()+1 {
		return cv.MarkRead(ctx, sent.Seq)
	}
	return nil
}

// convEvent handles a conversation event the pump queued: a record of the
// open conversation is shown once, in order; anything else is a notice.
func (s *session) convEvent(ctx context.Context, m *protocol.Message) {
	cv := s.dm.cv
	if cv == nil || m.Conv != cv.ID().String() {
		if m.Type == protocol.MsgConvMsg && s.id != nil && m.From != s.id.User {
			s.ui.status("new end-to-end message from %s: /dm %s to read it", clean(m.From), clean(m.From))
		}
		return
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if m.Type == protocol.MsgConvMsg {
		switch read := cv.ReadPosition(); {
		case m.Seq <= read:
			return // shown already
		case m.Seq > read+1:
			// Something before it was missed (or dropped): history has
			// it all, in order, and this one too.
			missed, err := cv.Missed(ctx)
			for _, r := range missed {
				showDirect(s.ui, cv, r)
			}
			if err != nil {
				s.ui.problem(err)
			}
			return
		}
	}
	got, err := cv.Receive(ctx, m)
	if err == nil && got != nil {
		showDirect(s.ui, cv, got)
		err = cv.MarkRead(ctx, got.Seq)
	}
	if err != nil {
		s.ui.status("error: record %d: %s", m.Seq, e2eReason(err))
	}
}

// saveLearnedDevice writes the device id the server named into the profile
// of a key pair saved before devices existed.
func (s *session) saveLearnedDevice(had uuid.UUID) {
	if had != uuid.Nil || s.id.Device == uuid.Nil || s.home == "" {
		return
	}
	if err := s.id.SaveDevice(profileDir(s.home, s.id.User)); err != nil {
		s.ui.status("warning: device id %s not saved in the profile: %s", s.id.Device, describe(err))
	}
}
