package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

const (
	// requestTimeout bounds one request (join, leave, send, end).
	requestTimeout = 10 * time.Second
	// reconnectAttempts is how often a dropped connection is redialed
	// before chat gives up; the delay before each doubles from
	// reconnectDelay (0.25 s, 0.5 s, 1 s, 2 s, 4 s).
	reconnectAttempts = 5
	reconnectDelay    = 250 * time.Millisecond
)

// session is the user's presence on the server across reconnections: the
// current connection, the rooms joined and the room lines go to. Only the
// goroutine running run uses it; a pump goroutine per connection prints
// what the server pushes.
type session struct {
	o     *options
	ui    *ui
	trust *trust
	id    *client.Identity // -user's keys; nil for an anonymous session
	home  string           // holds the profile id was loaded from
	quiet bool             // pushed events are not shown (-send, account commands)
	// ownMessages: no pump; the caller reads conn.Messages() itself (device
	// links wait for pushed offers and approvals).
	ownMessages bool

	conn    *client.Conn
	pumped  chan struct{} // closed when conn's pump has printed everything
	rooms   []string      // joined, in order of joining
	current string        // where lines go; "" when in no room

	seenMu sync.Mutex
	seen   map[string]int64 // per room, the highest seq shown

	dm         dmState                // the direct conversation lines go to, if any (dm.go)
	convEvents chan *protocol.Message // conversation events, from the pump to the loop
}

// shown records that m was shown and reports false for a message of a
// stored room already shown (a duplicate: the server sends each message
// once per connection, but a rejoin after a reconnect may overlap).
func (s *session) shown(m *protocol.Message) bool {
	if m.Type != protocol.MsgMessage || m.Seq == 0 {
		return true
	}
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	if s.seen == nil {
		s.seen = map[string]int64{}
	}
	if m.Seq <= s.seen[m.Room] {
		return false
	}
	s.seen[m.Room] = m.Seq
	return true
}

// lastSeen returns the highest seq shown in room, 0 if none.
func (s *session) lastSeen(room string) int64 {
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	return s.seen[room]
}

// ackReads tells the server, for a signed-in session, how far each room
// has been shown, each time wake fires, until conn ends. It runs on its
// own goroutine so that the pump never waits for an answer.
func (s *session) ackReads(conn *client.Conn, wake <-chan struct{}) {
	acked := map[string]int64{}
	for {
		select {
		case <-wake:
		case <-conn.Done():
			return
		}
		s.seenMu.Lock()
		seen := maps.Clone(s.seen)
		s.seenMu.Unlock()
		for room, seq := range seen {
			if seq <= acked[room] {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			err := conn.Read(ctx, room, seq)
			cancel()
			if err != nil && !errors.Is(err, protocol.CodeBadRequest) && !errors.Is(err, protocol.CodeNotFound) {
				break // the connection failed, or will: the next one tries again
			}
			acked[room] = seq
		}
	}
}

// dial connects once, resuming resume when it is not nil.
func (s *session) dial(ctx context.Context, resume *client.Ticket) (*client.Conn, error) {
	var check identityCheck
	conn, err := client.Dial(ctx, client.Config{
		URL:            s.o.server,
		VerifyIdentity: s.trust.verifier(&check),
		Suites:         s.o.suites,
		Resume:         resume,
	})
	if check.learned {
		// Recorded once the server proved the key, even if the rest of
		// the handshake then failed.
		s.ui.status("pinned %s %s in %s", s.trust.host, check.presented, s.trust.kh.Path)
	}
	if err != nil {
		return nil, s.trust.explain(&check, err)
	}
	return conn, nil
}

// open makes the first connection, without signing in.
func (s *session) open(ctx context.Context) error {
	conn, err := s.dial(ctx, nil)
	if err != nil {
		if exitCode(err) == exitIdentity {
			return err
		}
		return fmt.Errorf("connect: %w", err)
	}
	s.attach(conn)
	return nil
}

// connect makes the first connection and signs in with -user's keys.
func (s *session) connect(ctx context.Context) error {
	if err := s.open(ctx); err != nil {
		return err
	}
	name := s.o.name
	if name == "" {
		name = s.conn.Session().Name
	}
	if s.id != nil {
		if err := s.authenticate(ctx); err != nil {
			s.close()
			return err
		}
		name = s.id.User
	}
	s.ui.status("connected to %s as %s (session %s), fingerprint %s", s.o.server, clean(name), s.conn.SessionID()[:8], s.conn.Fingerprint())
	return nil
}

// authenticate signs the connection in as s.id.User (auth: a signature
// by the profile's keys, no password).
func (s *session) authenticate(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	had := s.id.Device
	r, err := s.conn.Auth(ctx, s.id)
	if r != nil {
		s.ui.reply(r)
	}
	if err == nil {
		s.saveLearnedDevice(had)
	}
	if err != nil {
		u := s.id.User
		return accountError("sign in as "+u, err, fmt.Sprintf("the server does not accept the keys in your profile for %s; if you replaced them on another device, run chat login -user %s -new-keys here too", u, u))
	}
	return nil
}

// accountError explains a failed register, login, auth or lookup; its
// exit status is 1. hint is added to an auth_failed error.
func accountError(what string, err error, hint string) error {
	switch {
	case errors.Is(err, protocol.CodeAuthFailed) && hint != "":
		err = fmt.Errorf("%s: %w\n%s", what, err, hint)
	case errors.Is(err, protocol.CodeRateLimited):
		err = fmt.Errorf("%s: %w\ntoo many failed attempts: wait, then try again", what, err)
	default:
		err = fmt.Errorf("%s: %w", what, err)
	}
	return &exitError{code: exitRuntime, err: err}
}

// attach makes conn the current connection and starts printing what it
// delivers.
func (s *session) attach(conn *client.Conn) {
	s.conn = conn
	info := conn.Session()
	s.ui.reply(&protocol.Message{Type: protocol.MsgReady, Session: &info})
	done := make(chan struct{})
	s.pumped = done
	if s.ownMessages {
		close(done)
		return
	}
	quiet := s.quiet
	if s.convEvents == nil {
		s.convEvents = make(chan *protocol.Message, convQueue)
	}
	wake := make(chan struct{}, 1)
	if s.id != nil && !quiet {
		go s.ackReads(conn, wake)
	}
	go func() {
		defer close(done)
		for m := range conn.Messages() {
			if client.IsConversationEvent(m) {
				if !quiet {
					s.queueConv(m)
				}
				continue
			}
			if !quiet && s.shown(m) {
				s.ui.event(m)
				if m.Seq > 0 {
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
}

// close closes the connection, leaving the session resumable, and waits
// until everything it delivered is printed.
func (s *session) close() {
	s.conn.Close()
	<-s.pumped
}

// request sends m and waits for the answer, which -json prints.
func (s *session) request(ctx context.Context, m *protocol.Message) (*protocol.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	r, err := s.conn.Request(ctx, m)
	if r != nil {
		s.ui.reply(r)
	}
	return r, err
}

// join joins room (again, if already in it) under the -name given, and
// returns the room's name as the server spells it.
func (s *session) join(ctx context.Context, room string) (string, error) {
	name := s.o.name
	if s.id != nil {
		name = "" // a signed-in session speaks as its account
	}
	m := &protocol.Message{Type: protocol.MsgJoin, Room: room, Name: name}
	if seq := s.lastSeen(strings.ToLower(room)); seq > 0 {
		m.After = &seq // a rejoin: from what was shown
	}
	r, err := s.request(ctx, m)
	if err != nil {
		if s.id == nil && errors.Is(err, protocol.CodeUnauthenticated) {
			s.ui.status("the server requires an account: chat register -user NAME")
		}
		return "", fmt.Errorf("join #%s: %w", room, err)
	}
	if r.Room != "" {
		room = r.Room // as the server spells it
	}
	if !slices.Contains(s.rooms, room) {
		s.rooms = append(s.rooms, room)
	}
	members := make([]string, len(r.Members))
	for i, m := range r.Members {
		members[i] = clean(m)
	}
	s.ui.status("joined #%s: members %s", room, strings.Join(members, ", "))
	if r.More {
		s.ui.status("#%s: more than the server sends at once was said since you last read it; /history N shows the last N", room)
	}
	return room, nil
}

// enter joins room and makes it the one lines go to.
func (s *session) enter(ctx context.Context, room string) error {
	room, err := s.join(ctx, room)
	if err != nil {
		return err
	}
	s.setCurrent(room)
	return nil
}

func (s *session) setCurrent(room string) {
	s.current = room
	s.ui.setCurrent(room)
}

// leave leaves room; if lines went there, they now go to the room joined
// last.
func (s *session) leave(ctx context.Context, room string) error {
	if _, err := s.request(ctx, &protocol.Message{Type: protocol.MsgLeave, Room: room}); err != nil {
		return fmt.Errorf("leave #%s: %w", room, err)
	}
	s.rooms = slices.DeleteFunc(s.rooms, func(r string) bool { return r == room })
	s.ui.status("left #%s", room)
	if s.current == room {
		s.fallBack()
	}
	return nil
}

// fallBack sends lines to the room joined last, or nowhere.
func (s *session) fallBack() {
	if len(s.rooms) == 0 {
		s.setCurrent("")
		s.ui.status("not in any room: /join one")
		return
	}
	s.setCurrent(s.rooms[len(s.rooms)-1])
	s.ui.status("now sending to #%s", s.current)
}

// say sends body to room and waits for the server's acknowledgement (not
// for the copy of the message the server echoes back). The message id
// lets the server recognise a resent copy: when the connection is lost
// before the acknowledgement (a node draining says going_away), say
// reconnects, resuming the session, and sends again under the same id, so
// the message arrives once whether or not the first copy was committed.
// A failed reconnection is returned as the session's end (*exitError).
func (s *session) say(ctx context.Context, room, body string) error {
	mid := client.NewMessageID()
	for {
		_, err := s.request(ctx, &protocol.Message{Type: protocol.MsgSend, Room: room, Body: body, Mid: mid})
		if err == nil {
			return nil
		}
		if !client.Retryable(err) || !errors.Is(err, client.ErrClosed) || ctx.Err() != nil {
			// Answered (unavailable, rate_limited, …) on a live connection.
			return fmt.Errorf("send to #%s: %w", room, err)
		}
		select {
		case <-s.conn.Done():
		case <-time.After(requestTimeout):
			return fmt.Errorf("send to #%s: %w", room, err)
		}
		if rerr := s.recover(ctx); rerr != nil {
			return rerr
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// sendOnce is -send: join the room, say body, return once acknowledged.
func (s *session) sendOnce(ctx context.Context, body string) error {
	room, err := s.join(ctx, s.o.room)
	if err != nil {
		return &exitError{code: exitRuntime, err: err}
	}
	if err := s.say(ctx, room, body); err != nil {
		return &exitError{code: exitRuntime, err: err}
	}
	s.ui.status("sent to #%s", room)
	return nil
}

// loop runs until the input ends (lines closed), stop fires, ctx ends, a
// command ends the session, or the connection fails for good. With
// interactive set, lines are commands or text to send; otherwise they are
// only watched for the end of input.
func (s *session) loop(ctx context.Context, lines <-chan string, stop <-chan time.Time, interactive bool) error {
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-stop:
			return nil
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			if !interactive {
				continue
			}
			if quit, err := s.command(ctx, line); quit || err != nil {
				return err
			}
		case m := <-s.convEvents:
			s.convEvent(ctx, m)
		case <-s.conn.Done():
			if err := s.recover(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// command carries out one input line. quit reports that the session is
// over.
func (s *session) command(ctx context.Context, line string) (quit bool, err error) {
	if strings.TrimSpace(line) == "" {
		return false, nil
	}
	if !strings.HasPrefix(line, "/") || strings.HasPrefix(line, "//") {
		body := strings.TrimPrefix(line, "/") // "//x" says "/x"
		if s.dm.cv != nil {
			if err := s.sayDM(ctx, body); err != nil {
				s.ui.problem(err)
			}
			return false, nil
		}
		if s.current == "" {
			s.ui.status("error: not in any room: /join one first")
			return false, nil
		}
		if err := s.say(ctx, s.current, body); err != nil {
			var ee *exitError
			if errors.As(err, &ee) {
				return true, err // reconnecting failed: the session is over
			}
			s.ui.problem(err)
		}
		return false, nil
	}
	fields := strings.Fields(line)
	cmd, args := fields[0], fields[1:]
	roomArg := func() (string, bool) {
		if len(args) != 1 {
			s.ui.status("error: usage: %s ROOM", cmd)
			return "", false
		}
		if !protocol.ValidName(args[0]) {
			s.ui.status("error: %q is not a room name: letters, digits, '_', '.' or '-', starting with a letter or digit", args[0])
			return "", false
		}
		return args[0], true
	}
	switch cmd {
	case "/dm":
		if len(args) != 1 {
			s.ui.status("error: usage: /dm USER")
			break
		}
		if err := s.openDM(ctx, strings.ToLower(args[0]), true); err != nil {
			s.ui.problem(err)
			break
		}
		s.ui.status("talking with %s, end-to-end encrypted (key version %d); /room ROOM goes back to a room", s.dm.peer, s.dm.cv.KeyVersion())
	case "/join":
		s.leaveDM()
		if room, ok := roomArg(); ok {
			if err := s.enter(ctx, room); err != nil {
				s.ui.problem(err)
			}
		}
	case "/room":
		s.leaveDM()
		room, ok := roomArg()
		switch {
		case !ok:
		case slices.Contains(s.rooms, room):
			s.setCurrent(room)
			s.ui.status("sending to #%s", room)
		default:
			if err := s.enter(ctx, room); err != nil {
				s.ui.problem(err)
			}
		}
	case "/leave":
		if len(args) == 0 && s.current != "" {
			args = []string{s.current}
		}
		if room, ok := roomArg(); ok {
			if err := s.leave(ctx, room); err != nil {
				s.ui.problem(err)
			}
		}
	case "/history":
		n, err := strconv.Atoi(strings.Join(args, ""))
		if len(args) != 1 || err != nil || n < 1 {
			s.ui.status("error: usage: /history N (N >= 1)")
			break
		}
		if s.current == "" {
			s.ui.status("error: not in any room: /join one first")
			break
		}
		s.history(ctx, s.current, n)
	case "/unread":
		s.unread(ctx)
	case "/quit":
		return true, nil
	case "/end":
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		if err := s.conn.End(ctx); err != nil {
			return true, &exitError{code: exitRuntime, err: fmt.Errorf("end session: %w", err)}
		}
		s.ui.status("session ended")
		return true, nil
	case "/help":
		s.ui.help()
	default:
		s.ui.status("error: unknown command %s; /help lists them", clean(cmd))
	}
	return false, nil
}

// history shows the last n messages of room, paging back as the server
// cuts pages.
func (s *session) history(ctx context.Context, room string, n int) {
	var msgs []*protocol.Message
	var before *int64
	for len(msgs) < n {
		r, err := s.request(ctx, &protocol.Message{Type: protocol.MsgHistory, Room: room, Before: before, Limit: n - len(msgs)})
		if err != nil {
			s.ui.problem(fmt.Errorf("history of #%s: %w", room, err))
			return
		}
		msgs = append(r.Msgs, msgs...)
		if !r.More || len(r.Msgs) == 0 {
			break
		}
		first := r.Msgs[0].Seq
		before = &first
	}
	s.ui.history(room, msgs)
}

// unread shows the account's rooms with their unread counts.
func (s *session) unread(ctx context.Context) {
	r, err := s.request(ctx, &protocol.Message{Type: protocol.MsgRooms})
	if err != nil {
		s.ui.problem(fmt.Errorf("unread: %w", err))
		return
	}
	for _, p := range r.Rooms {
		s.ui.status("#%s: %d unread", clean(p.Room), max(0, p.Head-p.Read))
	}
}

// retryable reports whether a connection that ended with err is worth
// redialing: a network failure, or a server going away or failing
// internally. Protocol failures (a bad record, a slow consumer, an ended
// session) are not.
func retryable(err error) bool {
	var pe *protocol.PeerError
	if errors.As(err, &pe) {
		return pe.Code == protocol.CodeGoingAway || pe.Code == protocol.CodeInternal
	}
	var code protocol.Code
	if errors.As(err, &code) {
		return false
	}
	return errors.Is(err, client.ErrClosed)
}

// recover handles the end of the current connection: it redials with the
// session's ticket, with backoff, signs in again unless the session was
// resumed, and rejoins the rooms. A session revoked by a change of the
// account's password or keys is not resumed: chat signs in again with its
// keys on a new one, which works unless the keys were replaced. It returns
// an error when the failure is fatal or the attempts are used up.
func (s *session) recover(ctx context.Context) error {
	<-s.pumped
	cause := s.conn.Err()
	revoked := s.id != nil && errors.Is(cause, protocol.CodeSessionRevoked)
	if !retryable(cause) && !revoked {
		return &exitError{code: exitRuntime, err: fmt.Errorf("connection ended: %w", cause)}
	}
	var resume *client.Ticket
	if revoked {
		s.ui.status("connection closed: %s's password or keys changed, here or on another device (if not by you, someone else has your password); signing in again", s.id.User)
	} else {
		s.ui.status("connection lost: %s; reconnecting", describe(cause))
		ticket := s.conn.Ticket()
		resume = &ticket
	}
	delay := reconnectDelay
	last := cause
	for attempt := 1; attempt <= reconnectAttempts; attempt++ {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay *= 2
		conn, err := s.dial(ctx, resume)
		if err != nil {
			if exitCode(err) == exitIdentity {
				return err
			}
			last = err
			s.ui.status("reconnect attempt %d/%d failed: %s", attempt, reconnectAttempts, describe(err))
			continue
		}
		s.attach(conn)
		how := "session resumed"
		if !conn.Session().Resumed {
			how = "new session " + conn.SessionID()[:8] + "; the server no longer had the old one"
		}
		// A resumed session keeps its user; a new one must sign in. After a
		// revocation, with the profile's keys as they are now: chat login
		// -new-keys may have replaced them here.
		if s.id != nil && conn.Session().User != s.id.User {
			if revoked {
				s.reloadKeys()
			}
			if err := s.authenticate(ctx); err != nil {
				if ctx.Err() != nil {
					return nil // a signal
				}
				retry := retryable(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, protocol.CodeUnavailable) ||
					revoked && errors.Is(err, protocol.CodeAuthFailed) && s.reloadKeys()
				if !retry {
					return err // auth_failed, rate_limited, …
				}
				conn.Close()
				<-s.pumped
				last = err
				s.ui.status("reconnect attempt %d/%d failed: %s", attempt, reconnectAttempts, describe(err))
				continue
			}
			how += "; signed in again as " + s.id.User
		}
		s.ui.status("reconnected to %s (%s); messages said meanwhile follow", s.o.server, how)
		s.rejoin(ctx)
		if s.dm.peer != "" {
			s.dm.cv = nil // bound to the old connection
			if err := s.openDM(ctx, s.dm.peer, true); err != nil {
				s.ui.problem(err)
			}
		}
		return nil
	}
	return &exitError{code: exitRuntime, err: fmt.Errorf("reconnect: gave up after %d attempts: %w", reconnectAttempts, last)}
}

// reloadKeys reads the profile's keys again and reports whether they
// differ from those in use, which it then replaces.
func (s *session) reloadKeys() bool {
	id, err := loadProfile(s.ui, s.home, s.id.User)
	if err != nil || id.Signing.Equal(s.id.Signing) {
		return false
	}
	s.id = id
	return true
}

// rejoin joins again the rooms the session was in. A room the server
// refuses is dropped; if the connection fails meanwhile, the rooms not yet
// rejoined are kept for the next attempt.
func (s *session) rejoin(ctx context.Context) {
	rooms := s.rooms
	s.rooms = nil
	for i, room := range rooms {
		if _, err := s.join(ctx, room); err != nil {
			select {
			case <-s.conn.Done():
				s.rooms = append(s.rooms, rooms[i:]...)
				return
			default:
			}
			s.ui.problem(err)
			s.ui.status("no longer in #%s", room)
		}
	}
	if s.current != "" && !slices.Contains(s.rooms, s.current) {
		s.fallBack()
	}
}
