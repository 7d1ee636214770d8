package main

// chat -to USER: a direct conversation, end-to-end encrypted with
// pkg/e2e through pkg/client's conversation layer (docs/protocol.md
// §8.5); chat safety: the safety number of two users (docs/e2e.md §3.4).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/e2e"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// pinsFile is where a profile keeps the device fingerprints of the
// people it talks to (trust on first use, docs/e2e.md §8).
const pinsFile = "contacts"

// directLine is what -json prints for each message of a conversation.
type directLine struct {
	Type     string `json:"t"` // "conv_text"
	Conv     string `json:"conv"`
	From     string `json:"from"`
	Device   string `json:"device"`
	Seq      int64  `json:"seq"`
	TS       int64  `json:"ts"`
	Text     string `json:"text"`
	Verified bool   `json:"verified"`
}

// direct runs chat -to: it signs in, opens the conversation, shows what
// was missed, then sends (-send) or shows what arrives and sends each
// line typed. A dropped connection is resumed (or signed in again) as in
// a room, and the conversation reopened: what arrived meanwhile follows,
// in order, once.
func direct(ctx context.Context, o *options, u *ui, home string, id *client.Identity, stdin io.Reader) error {
	tr, err := newTrust(o, home)
	if err != nil {
		return err
	}
	s := &session{o: o, ui: u, trust: tr, id: id, home: home, quiet: o.sendSet}
	if err := s.connect(ctx); err != nil {
		return err
	}
	defer s.close()
	if err := s.openDM(ctx, o.to, !o.sendSet); err != nil {
		return err
	}
	if o.sendSet {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		_, sent, err := s.dm.cv.SendText(rctx, o.send)
		if err != nil {
			return &exitError{code: exitRuntime, err: fmt.Errorf("send to %s: %w", o.to, err)}
		}
		u.status("sent to %s (end-to-end encrypted, seq %d)", o.to, sent.Seq)
		return nil
	}
	u.status("conversation with %s (end-to-end encrypted, key version %d)", o.to, s.dm.cv.KeyVersion())
	quit := make(chan struct{})
	defer close(quit)
	var lines <-chan string
	var stop <-chan time.Time
	if o.listenSet && o.listen > 0 {
		t := time.NewTimer(o.listen)
		defer t.Stop()
		stop = t.C
	} else {
		lines = readLines(stdin, quit)
	}
	return s.loop(ctx, lines, stop, !o.listenSet)
}

// e2eReason names a pkg/e2e error for a person.
func e2eReason(err error) string {
	if name := e2e.ErrorName(err); name != "" {
		return name + ": " + err.Error()
	}
	return describe(err)
}

// showDirect prints one opened message.
func showDirect(u *ui, cv *client.Conversation, m *client.Received) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.enc != nil {
		_ = u.enc.Encode(directLine{Type: "conv_text", Conv: cv.ID().String(), From: m.From, Device: m.Device.String(), Seq: m.Seq, TS: m.Time.UnixMilli(), Text: m.Text, Verified: m.Verified})
		return
	}
	note := ""
	if !m.Verified {
		note = " (UNVERIFIED: " + clean(m.From) + "'s devices changed; compare the safety number: chat safety)"
	}
	fmt.Fprintf(u.out, "%s %s: %s%s\n", stamp(m.Time.UnixMilli()), clean(m.From), clean(m.Text), note)
}

// safety prints the safety number of -user and USER over the devices the
// server lists for each, checked here (docs/e2e.md §3.4). Both people run
// it and compare, out of band.
func (a *account) safety(ctx context.Context) error {
	id, err := loadProfile(a.ui, a.home, a.o.user)
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
	var fps [2]protocol.Fingerprint
	for i, user := range []string{a.o.user, a.o.lookup} {
		c, err := s.conn.Lookup(rctx, user)
		if errors.Is(err, protocol.CodeNotFound) {
			return &exitError{code: exitRuntime, err: fmt.Errorf("look up %s: %w\nno such user on this server", user, err)}
		}
		if err != nil {
			return accountError("look up "+user, err, "")
		}
		fps[i] = c.Fingerprint
	}
	n := e2e.NewSafetyNumber(fps[0], fps[1])
	a.ui.status("safety number of %s and %s over their devices as the server lists them: compare it with %s, out of band", a.o.user, a.o.lookup, a.o.lookup)
	a.ui.result(n.String())
	return nil
}
