package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// ui writes what the user sees: room traffic on stdout, as text or (with
// -json) as one JSON line per message, and status lines on stderr. Its
// methods are safe for concurrent use: a connection's pump prints pushed
// events while the main loop prints answers and status.
type ui struct {
	mu      sync.Mutex
	out     io.Writer
	errOut  io.Writer
	enc     *json.Encoder // nil for text output
	current string        // the room lines go to; others' traffic is tagged
	self    string        // -user; "" when anonymous

	// keyChanges are the key changes shown, so that one announced in
	// several shared rooms shows once.
	keyChanges map[keyChange]bool
}

type keyChange struct {
	user, fingerprint string
	version           int
}

func newUI(out, errOut io.Writer, asJSON bool, self string) *ui {
	u := &ui{out: out, errOut: errOut, self: self, keyChanges: map[keyChange]bool{}}
	if asJSON {
		u.enc = json.NewEncoder(out)
		u.enc.SetEscapeHTML(false)
	}
	return u
}

func (u *ui) setCurrent(room string) {
	u.mu.Lock()
	u.current = room
	u.mu.Unlock()
}

// event shows one message the server pushed: a room message, a presence
// change, a contact's key change or a non-fatal error.
func (u *ui) event(m *protocol.Message) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if m.Type == protocol.MsgError {
		fmt.Fprintf(u.errOut, "error: %s\n", describe(&protocol.PeerError{Code: m.Code, Reason: m.Error, Ref: m.Ref}))
	}
	if u.enc != nil {
		_ = u.enc.Encode(m)
		return
	}
	switch m.Type {
	case protocol.MsgMessage:
		fmt.Fprintln(u.out, formatMessage(m, u.current))
	case protocol.MsgPresence:
		fmt.Fprintln(u.out, formatPresence(m))
	case protocol.MsgKeyChange:
		k := keyChange{m.User, m.Fingerprint, m.Version}
		if !u.keyChanges[k] {
			u.keyChanges[k] = true
			fmt.Fprintln(u.out, formatKeyChange(m, u.self))
		}
	}
}

// reply shows the server's answer to a request of ours. Only -json prints
// answers as they are; text mode reports their outcome as status lines.
// An answer is printed when the request returns, so a pushed event that
// arrived right after it (such as the presence event a join causes) may
// come first: client.Conn hands answers and pushed events to different
// goroutines.
func (u *ui) reply(m *protocol.Message) {
	if u.enc == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	_ = u.enc.Encode(m)
}

// history shows a page of a room's stored messages, oldest first: -json
// prints the history answer itself (reply), text mode the messages.
func (u *ui) history(room string, msgs []*protocol.Message) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.enc != nil {
		return
	}
	fmt.Fprintf(u.errOut, "history of #%s: %d messages\n", clean(room), len(msgs))
	for _, m := range msgs {
		fmt.Fprintln(u.out, formatMessage(m, u.current))
	}
}

// status prints one line on stderr. Callers clean what came from the
// network.
func (u *ui) status(format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fmt.Fprintf(u.errOut, format+"\n", args...)
}

// result prints a command's result, one line on stdout.
func (u *ui) result(line string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fmt.Fprintln(u.out, line)
}

// prompt asks for input on stderr, without a line ending.
func (u *ui) prompt(text string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fmt.Fprint(u.errOut, text)
}

// problem prints a non-fatal error as "error: <code>: <reason>".
func (u *ui) problem(err error) { u.status("error: %s", describe(err)) }

func (u *ui) help() {
	u.status(`commands:
  /join ROOM     join ROOM and send lines to it
  /room ROOM     send lines to ROOM, joining it if needed
  /leave [ROOM]  leave ROOM (default: the current room)
  /history N     show the last N messages of the current room
  /unread        show your rooms with their unread counts (signed in)
  /dm USER       talk with USER end to end instead (signed in); /room or /join goes back
  /quit          disconnect; the server keeps the session until it expires
  /end           end the session on the server, then disconnect
  /help          this list
other lines are sent to the current room (or to USER after /dm); start a line with // to send one beginning with /`)
}

// describe renders err for the user, leading with the protocol code's name
// when it carries one: "too_large: body of …".
func describe(err error) string {
	var pe *protocol.PeerError
	if errors.As(err, &pe) {
		if pe.Reason == "" {
			return pe.Code.String()
		}
		return pe.Code.String() + ": " + clean(pe.Reason)
	}
	var code protocol.Code
	if errors.As(err, &code) {
		return code.String() + ": " + clean(err.Error())
	}
	return clean(err.Error())
}

// stampWidth is the width of formatMessage's "[15:04:05] " prefix, by
// which continuation lines of a multi-line body are indented.
const stampWidth = len("[15:04:05] ")

// anonMark starts the line of a message from a connection that has not
// logged in, and ends its presence lines.
const anonMark = "(anon) "

// formatMessage renders a room message as "[15:04:05] <from> body", with
// anonMark first when the sender is anonymous and
// "#room " before the sender when the room is not the current one. The
// time is the sender's, in local time. Continuation lines of the body are
// indented, so that no body can pass for another message.
func formatMessage(m *protocol.Message, current string) string {
	var b strings.Builder
	indent := stampWidth
	if m.Anon {
		// Not an account: a display name anyone could have chosen.
		b.WriteString(anonMark)
		indent += len(anonMark)
	}
	b.WriteString("[" + stamp(m.TS) + "] ")
	if m.Room != current {
		b.WriteString("#" + clean(m.Room) + " ")
	}
	b.WriteString("<" + clean(m.From) + "> ")
	for i, line := range strings.Split(m.Body, "\n") {
		if i > 0 {
			b.WriteString("\n" + strings.Repeat(" ", indent))
		}
		b.WriteString(clean(line))
	}
	return b.String()
}

// formatPresence renders a presence event as "* alice joined #general".
func formatPresence(m *protocol.Message) string {
	verb := clean(m.Event)
	switch m.Event {
	case "join":
		verb = "joined"
	case "leave":
		verb = "left"
	}
	line := fmt.Sprintf("* %s %s #%s", clean(m.From), verb, clean(m.Room))
	if m.Anon {
		line += " " + strings.TrimSpace(anonMark)
	}
	return line
}

// formatKeyChange renders a key_change event: user added or removed a
// device, which the people who talk to them should check.
func formatKeyChange(m *protocol.Message, self string) string {
	what := "keys changed"
	switch m.Event {
	case "device_added":
		what = "device added"
	case "device_removed":
		what = "device removed"
	}
	if m.User == self {
		return fmt.Sprintf("! your keys changed (%s, fingerprint %s): if you did not add or remove a device, someone else has your password",
			what, clean(m.Fingerprint))
	}
	return fmt.Sprintf("! %s's keys changed (%s, fingerprint %s): compare with them before trusting",
		clean(m.User), what, clean(m.Fingerprint))
}

func stamp(ms int64) string {
	t := time.Now()
	if ms > 0 {
		t = time.UnixMilli(ms)
	}
	return t.Format(time.TimeOnly)
}

// clean makes text from the network safe to print on a terminal: control
// characters (escape sequences, carriage returns, newlines) and Unicode
// bidirectional overrides are shown escaped, as in Go ("\x1b", "\u202e"),
// and invalid UTF-8 as U+FFFD. Tabs stay.
func clean(s string) string {
	if !strings.ContainsFunc(s, unsafeRune) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unsafeRune(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	switch {
	case r == '\t':
		return false
	case unicode.IsControl(r), r == unicode.ReplacementChar:
		return true
	case r == '\u061c', r == '\u200e', r == '\u200f', // bidi marks
		r >= '\u202a' && r <= '\u202e', // embeddings and overrides
		r >= '\u2066' && r <= '\u2069': // isolates
		return true
	}
	return false
}
