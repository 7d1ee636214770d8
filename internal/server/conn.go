package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/internal/metrics"
	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// closeRequest asks a connection's writer to send a final error and close.
type closeRequest struct {
	code   protocol.Code
	reason string
}

// peer is one established connection: its reader runs on a goroutine of
// its own (started when the handshake is done, so that it does not keep
// the handshake's stack or the HTTP server's per-request state), its
// writer only while there is something to write (sendQueue starts it), and
// a bounded queue sits between the hub (and the reader's answers) and the
// writer.
type peer struct {
	srv       *Server
	ws        *websocket.Conn
	log       zerolog.Logger // reader goroutine only: gains the user at login
	closeLog  zerolog.Logger // set once, before the writer starts: for fail and the writer
	id        string
	sessionID [protocol.SessionIDSize]byte
	resumed   bool
	exporter  []byte
	session   sessionState // to re-seal the record on login and refresh
	remoteIP  string
	addr      string        // remoteIP as per-address limits count it
	requests  *rate.Limiter // this connection's requests; nil: unlimited
	ids       recentIDs     // reader goroutine only

	user      *store.User   // reader goroutine only; nil while anonymous
	device    uuid.UUID     // reader goroutine only: the device user logged in with (also after a resumption); nil UUID if a version-2 session record did not say
	challenge *keyChallenge // reader goroutine only; the outstanding key challenge

	seal *protocol.RecordLayer // writer goroutine only
	open *protocol.RecordLayer // reader goroutine only

	queue     *sendQueue        // encoded application messages; starts the writer
	cork      *corkConn         // the connection under ws; nil in tests without one
	pinger    *time.Timer       // asks the writer for a ping every PingInterval; nil in tests
	closeCh   chan closeRequest // capacity 1
	closeOnce sync.Once
	writerEnd chan struct{} // closed when the writer is done for good

	nameMu sync.Mutex
	name   string

	lastTouch   time.Time // reader goroutine only
	sessionGone bool      // reader goroutine only: the session record is gone for good
	lastCheck   time.Time // reader goroutine only: when credentialsCurrent last asked the database

	sends *sendPipe // reader goroutine only: room sends in flight (appender.go); nil before the first

	dropped bool // hub goroutine only
	rooms   int  // hub goroutine only: rooms joined
}

func (c *peer) displayName() string {
	c.nameMu.Lock()
	defer c.nameMu.Unlock()
	return c.name
}

func (c *peer) userName() string {
	if c.user == nil {
		return ""
	}
	return c.user.Name
}

func (c *peer) setName(n string) {
	c.nameMu.Lock()
	c.name = n
	c.nameMu.Unlock()
}

// enqueue queues an encoded message pushed to this connection (by the hub
// or another connection) without blocking; false means the queue already
// holds as many pushes as it may, and the caller drops c as a slow
// consumer.
func (c *peer) enqueue(b []byte) bool { return c.queue.push(b) }

// fail ends the connection with code: the writer sends an encrypted error
// message and a close frame carrying the code, then closes. Only the first
// call counts; it never blocks. Any goroutine may call it (the hub,
// Shutdown, a revocation), so it logs with closeLog, not log.
func (c *peer) fail(code protocol.Code, reason string) {
	c.closeOnce.Do(func() {
		c.metrics().Closed(code)
		if code != 0 {
			ev := c.closeLog.Warn()
			if code == protocol.CodeSessionEnded || code == protocol.CodeGoingAway {
				ev = c.closeLog.Info()
			}
			ev.Stringer("code", code).Msg("closing connection")
		}
		c.closeCh <- closeRequest{code: code, reason: reason}
		c.queue.signal(sigClose, false)
	})
}

func (c *peer) reply(m *protocol.Message) { c.replyWith(c.log, m) }

// replyWith is reply logging to log: the sendPipe's goroutine answers
// with the reader's logger as it was when the send was read.
func (c *peer) replyWith(log zerolog.Logger, m *protocol.Message) {
	b, err := m.Encode()
	if err != nil {
		log.Error().Err(err).Str("type", m.Type).Msg("encode reply")
		c.fail(protocol.CodeInternal, "internal error")
		return
	}
	// An answer waits for room in the queue: a client is never dropped
	// for not reading the answers to its own requests, it only stops
	// having its requests read. It returns at once once the writer ends.
	c.queue.answer(b, c.writerEnd)
}

func (c *peer) replyError(ref string, err error) {
	if c.queueError(ref, err) { // appender.go: in its turn, after the sends in flight
		return
	}
	c.reply(c.rejection(c.log, ref, err))
}

// rejection counts and logs (to log) the refusal of request ref with err
// and returns its error answer.
func (c *peer) rejection(log zerolog.Logger, ref string, err error) *protocol.Message {
	code := protocol.CodeOf(err)
	c.srv.metrics.Rejected(code)
	log.Info().Str("ref", ref).Stringer("code", code).Msg("request rejected")
	return &protocol.Message{Type: protocol.MsgError, Ref: ref, Code: code, Error: publicReason(code, err)}
}

// publicReason is the text a client sees for an error: the error itself for
// protocol failures, which never carry secrets, and nothing more than the
// code's name for internal ones.
func publicReason(code protocol.Code, err error) string {
	if code == protocol.CodeInternal || code == protocol.CodeUnavailable || err == nil {
		return code.String()
	}
	// The code travels in its own field; do not repeat it in the text.
	reason := strings.TrimSuffix(err.Error(), ": "+code.Error())
	if reason == code.Error() {
		return code.String()
	}
	return reason
}

// writeLoop is the connection's writer: sendQueue starts it when there is
// work and it returns when the queue has none left, so an idle connection
// has no writer goroutine. It seals and writes queued messages, sends the
// pings that pingDue asks for, and performs the final close, after which
// it ends for good (endWriter). At most one runs at a time (sendQueue sees
// to it); it owns c.seal and all writes to c.ws while it runs.
func (c *peer) writeLoop() {
	var batch [][]byte
	for {
		items, sig, ok := c.queue.next(batch)
		if !ok {
			return
		}
		batch = items
		if sig&sigClose != 0 {
			req := <-c.closeCh          // fail sent it before raising sigClose
			c.flushForDrain(req, batch) // drain.go
			c.finalClose(req)
			c.endWriter()
			return
		}
		if len(batch) > 0 {
			if err := c.writeBatch(batch); err != nil {
				c.closeLog.Debug().Err(err).Msg("write failed")
				c.endWriter()
				return
			}
		}
		clear(batch) // let the payloads go
		if cap(batch) > maxSpareBatch {
			batch = nil
		}
		if sig&sigPing != 0 {
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.srv.cfg.WriteTimeout)); err != nil {
				c.closeLog.Debug().Err(err).Msg("ping failed")
				c.endWriter()
				return
			}
			c.pinger.Reset(c.srv.cfg.PingInterval)
		}
	}
}

// pingDue runs on the ping timer's goroutine: it asks the writer for a
// ping, and is the writer itself if none was running (a goroutine fewer to
// start). The writer sets the timer again once the ping is out.
func (c *peer) pingDue() { c.queue.signal(sigPing, true) }

// endWriter ends the writer for good: nothing more is queued or written,
// the ping timer stops, the connection closes (which ends its reader), and
// writerEnd tells whoever waits.
func (c *peer) endWriter() {
	c.queue.end()
	if c.pinger != nil {
		c.pinger.Stop()
	}
	_ = c.ws.Close()
	close(c.writerEnd)
}

// maxSpareBatch bounds the slice a busy writer reuses from one batch to
// the next, so that one burst does not keep a large slice alive (an idle
// connection keeps none: the writer ends).
const maxSpareBatch = 64

// writeBatch seals every message of batch, in order, and writes them with
// one write deadline; the corkConn under the WebSocket sends them in as
// few system calls as its buffer allows.
func (c *peer) writeBatch(batch [][]byte) error {
	if err := c.ws.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout)); err != nil {
		return err
	}
	if c.cork != nil {
		c.cork.cork(c.srv.cfg.WriteTimeout)
	}
	scratch := sealPool.Get().(*[]byte)
	defer sealPool.Put(scratch)
	for _, b := range batch {
		if err := c.sealAndWrite(scratch, b); err != nil {
			if errors.Is(err, errUnsealable) {
				// One message that cannot be sealed is dropped; the
				// connection and everyone else's go on.
				c.closeLog.Error().Err(err).Int("bytes", len(b)).Msg("dropped a message that cannot be sealed")
				c.srv.metrics.QueueDrop(metrics.DropUnsealable)
				continue
			}
			if c.cork != nil {
				_ = c.cork.uncork()
			}
			return err
		}
	}
	if c.cork != nil {
		return c.cork.uncork()
	}
	return nil
}

// errUnsealable marks a message the record layer refused to seal (too
// large): nothing was written and the sequence number did not move.
var errUnsealable = errors.New("server: message cannot be sealed")

// writeRecord seals and writes one message under its own write deadline.
func (c *peer) writeRecord(plaintext []byte) error {
	if err := c.ws.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout)); err != nil {
		return err
	}
	scratch := sealPool.Get().(*[]byte)
	defer sealPool.Put(scratch)
	return c.sealAndWrite(scratch, plaintext)
}

// sealPool holds the buffers records are sealed into before they are
// written: the WebSocket copies a message out before WriteMessage returns,
// so one buffer serves a whole batch, and sealing allocates nothing.
var sealPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// sealAndWrite seals one message into *scratch (grown if it must be) and
// writes it as one WebSocket message, under the deadline already set.
func (c *peer) sealAndWrite(scratch *[]byte, plaintext []byte) error {
	frame, err := sealRecord(c.seal, (*scratch)[:0], plaintext)
	if errors.Is(err, protocol.CodeTooLarge) {
		return fmt.Errorf("%w: %w", errUnsealable, err)
	}
	if err != nil {
		return err
	}
	if cap(frame) <= maxPooledSeal {
		*scratch = frame[:0]
	}
	c.srv.metrics.RecordOut(len(frame))
	return c.ws.WriteMessage(websocket.BinaryMessage, frame)
}

// sealRecord seals one record: (*protocol.RecordLayer).AppendSeal, in
// every build that serves clients. Only the test binary replaces it, for
// BenchmarkConnFanoutNullSeal (bench_writer_test.go), which measures the
// share of sealing in a fan-out against a plain copy of the same length;
// nothing a client sends or a server is configured with can reach it.
var sealRecord = (*protocol.RecordLayer).AppendSeal

// maxPooledSeal bounds the sealing buffer kept in sealPool, so that one
// large message does not keep a large buffer alive.
const maxPooledSeal = 64 << 10

func (c *peer) finalClose(req closeRequest) {
	if req.code != 0 {
		msg := &protocol.Message{Type: protocol.MsgError, Code: req.code, Error: req.reason, Fatal: true}
		if b, err := msg.Encode(); err == nil {
			_ = c.writeRecord(b)
		}
	}
	status, reason := websocket.CloseNormalClosure, ""
	if req.code != 0 {
		status, reason = req.code.CloseCode(), req.code.String()
	}
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(status, reason), time.Now().Add(c.srv.cfg.WriteTimeout))
}

// requestTimeout bounds the work for one request (database, Redis, password
// hashing), so that under load a request fails with "unavailable" instead
// of waiting for ever.
const requestTimeout = 30 * time.Second

// readLoop reads, opens and handles records until the connection ends.
func (c *peer) readLoop(ctx context.Context) {
	pongWait := c.srv.cfg.PingInterval * 2
	_ = c.ws.SetReadDeadline(time.Now().Add(pongWait))
	c.ws.SetPongHandler(func(string) error {
		if !c.keepAlive(ctx) {
			return errRevoked
		}
		return c.ws.SetReadDeadline(time.Now().Add(pongWait))
	})
	for {
		if c.cork != nil {
			c.cork.waitReadable() // idle, wait on a short stack
		}
		typ, data, err := readLimited(c.ws)
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, errFrameTooLarge):
				c.fail(protocol.CodeFrameTooLarge, fmt.Sprintf("frame larger than %d bytes", protocol.MaxFrameSize))
			case errors.As(err, &ne) && ne.Timeout():
				c.log.Info().Msg("peer stopped answering pings")
			default:
				c.log.Debug().Err(err).Msg("read ended")
			}
			return
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(pongWait))
		c.srv.metrics.RecordIn(len(data))
		if typ != websocket.BinaryMessage {
			c.fail(protocol.CodeMalformed, "text frames are not part of the protocol")
			return
		}
		plaintext, err := c.open.Open(data)
		if err != nil {
			code := protocol.CodeOf(err)
			if len(data) > 0 && data[0] != protocol.TypeRecord {
				code = protocol.CodeUnexpectedMessage
			}
			c.fail(code, publicReason(code, err))
			return
		}
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		ok := c.handle(rctx, plaintext)
		cancel()
		if !ok {
			return
		}
	}
}

// handle carries out one application message. It returns false when the
// connection must end.
func (c *peer) handle(ctx context.Context, plaintext []byte) bool {
	m, err := protocol.DecodeMessage(plaintext)
	if err != nil || m.Type != protocol.MsgSend {
		c.waitSends() // appender.go: anything else comes after the sends in flight
	}
	if err != nil {
		// The record authenticated, so this is a client bug, not an attack:
		// answer and keep the session.
		c.replyError("", fmt.Errorf("%w: message is not valid JSON with a type", protocol.CodeBadRequest))
		return true
	}
	if c.requests != nil && !c.requests.Allow() {
		c.srv.metrics.RateLimited(metrics.KindConnRequests)
		c.replyError(m.ID, fmt.Errorf("too many requests on this connection (%s): %w", c.srv.cfg.Limits.RequestRate, protocol.CodeRateLimited))
		return true
	}
	if err := protocol.ValidateRequest(m); err != nil {
		c.replyError(m.ID, err)
		return true
	}
	window := c.srv.cfg.TimestampWindow
	skew := time.Since(time.UnixMilli(m.TS))
	if skew > window || skew < -window {
		c.replyError(m.ID, fmt.Errorf("timestamp off by %s, window ±%s: %w", skew.Round(time.Second), window, protocol.CodeStaleTimestamp))
		return true
	}
	if !c.ids.add(m.ID, time.Now(), c.srv.nonceTTL()) {
		c.replyError(m.ID, fmt.Errorf("message id already used: %w", protocol.CodeReplayedID))
		return true
	}
	if c.user != nil {
		if err := c.srv.allow(ctx, "req:user:"+c.user.ID.String(), c.srv.cfg.Limits.UserRequestRate, "too many requests for your account"); err != nil {
			c.logLimiterError(err)
			c.replyError(m.ID, err)
			return true
		}
	}
	if !c.keepAlive(ctx) {
		return false
	}
	m.Room = strings.ToLower(m.Room)
	err = nil
	switch m.Type {
	case protocol.MsgJoin, protocol.MsgLeave, protocol.MsgSend, protocol.MsgHistory, protocol.MsgStream:
		if c.user == nil && !c.srv.cfg.AllowAnonymous {
			c.replyError(m.ID, fmt.Errorf("register, login or auth first: %w", protocol.CodeUnauthenticated))
			return true
		}
		switch m.Type {
		case protocol.MsgJoin:
			c.join(ctx, m)
		case protocol.MsgLeave:
			c.leave(ctx, m)
		case protocol.MsgSend:
			c.sendToRoom(ctx, m)
		case protocol.MsgHistory:
			err = c.history(ctx, m)
		case protocol.MsgStream:
			err = c.roomStream(ctx, m) // stream.go
		}
	case protocol.MsgRead:
		if m.Conv != "" {
			err = c.convRead(ctx, m)
		} else {
			err = c.markRead(ctx, m)
		}
	case protocol.MsgConvOpen:
		err = c.convOpen(ctx, m)
	case protocol.MsgConvs:
		err = c.convList(ctx, m)
	case protocol.MsgConvPutKey:
		err = c.convPutKey(ctx, m)
	case protocol.MsgConvKeys:
		err = c.convKeys(ctx, m)
	case protocol.MsgConvSend:
		err = c.convSend(ctx, m)
	case protocol.MsgConvHistory:
		err = c.convHistory(ctx, m)
	case protocol.MsgConvStream:
		err = c.convStream(ctx, m) // stream.go
	case protocol.MsgRooms:
		err = c.roomPositions(ctx, m)
	case protocol.MsgRegister:
		err = c.register(ctx, m)
	case protocol.MsgLogin:
		err = c.login(ctx, m)
	case protocol.MsgAuth:
		err = c.auth(ctx, m)
	case protocol.MsgLookup:
		err = c.lookup(ctx, m)
	case protocol.MsgKeyChallenge:
		err = c.keyChallenge(ctx, m)
	case protocol.MsgPasswd:
		err = c.passwd(ctx, m)
	case protocol.MsgDevices:
		err = c.devices(ctx, m)
	case protocol.MsgRemoveDevice:
		err = c.removeDevice(ctx, m)
	case protocol.MsgLinkStart:
		err = c.linkStart(ctx, m)
	case protocol.MsgLinkJoin:
		err = c.linkJoin(ctx, m)
	case protocol.MsgLinkApprove:
		err = c.linkApprove(ctx, m)
	case protocol.MsgEnd:
		if err := c.srv.sessions.end(ctx, c.sessionID); err != nil {
			c.log.Error().Err(err).Msg("end session")
			c.replyError(m.ID, protocol.CodeUnavailable)
			return true
		}
		c.log.Info().Msg("session ended by client")
		c.fail(protocol.CodeSessionEnded, "session ended")
		return false
	}
	if err != nil {
		if code := protocol.CodeOf(err); code == protocol.CodeInternal || code == protocol.CodeUnavailable {
			ev := c.log.Error().Str("type", m.Type)
			var re *requestError
			if errors.As(err, &re) {
				ev = ev.AnErr("cause", re.cause)
			}
			ev.Err(err).Msg("request failed")
		}
		c.replyError(m.ID, err)
	}
	return true
}

// errRevoked ends the reading of a connection that keepAlive closed.
var errRevoked = errors.New("server: login revoked")

// keepAlive extends the session by a TTL, at most once a quarter TTL: on
// every request and every pong, so an open connection keeps its session.
// It also checks the connection's login (credentialsCurrent) and returns
// false when it closed the connection for that.
func (c *peer) keepAlive(ctx context.Context) bool {
	if !c.credentialsCurrent(ctx) {
		return false
	}
	if time.Since(c.lastTouch) < c.srv.cfg.SessionTTL/4 {
		return true
	}
	if c.sessionGone {
		return true
	}
	err := c.srv.sessions.refresh(ctx, c.sessionID, c.session)
	if errors.Is(err, protocol.CodeSessionUnknown) {
		// Ended by another connection of the session, expired, or past its
		// lifetime: this connection goes on, but the session cannot be
		// resumed any more.
		c.sessionGone = true
		c.log.Info().Msg("session can no longer be resumed")
		return true
	}
	if err != nil {
		c.log.Warn().Err(err).Msg("session refresh failed")
		return true
	}
	c.lastTouch = time.Now()
	return true
}

func (c *peer) leave(ctx context.Context, m *protocol.Message) {
	if !c.srv.hub.Leave(ctx, c, m.Room) {
		c.replyError(m.ID, fmt.Errorf("not a member of %q: %w", m.Room, protocol.CodeBadRequest))
		return
	}
	if err := c.rememberMembership(ctx, m.Room, false); err != nil {
		c.replyError(m.ID, err)
		return
	}
	c.reply(&protocol.Message{Type: protocol.MsgLeft, Ref: m.ID, Room: m.Room, TS: time.Now().UnixMilli()})
	c.presence(ctx, m.Room, "leave")
}

// sendToRoom checks a send's room and rate limits; say (history.go) stores and
// publishes it.
func (c *peer) sendToRoom(ctx context.Context, m *protocol.Message) {
	if !c.srv.hub.IsMember(c, m.Room) {
		c.replyError(m.ID, fmt.Errorf("join %q before sending to it: %w", m.Room, protocol.CodeBadRequest))
		return
	}
	sender := "send:anon:" + c.addr
	if c.user != nil {
		sender = "send:user:" + c.user.ID.String()
	}
	lim := c.srv.cfg.Limits
	for _, l := range []struct {
		key  string
		rate ephemeral.Rate
		what string
	}{
		{sender, lim.SendRate, "you are sending too fast"},
		{"send:room:" + m.Room, lim.RoomSendRate, "room " + m.Room + " is too busy"},
	} {
		if err := c.srv.allow(ctx, l.key, l.rate, l.what); err != nil {
			c.logLimiterError(err)
			c.replyError(m.ID, err)
			return
		}
	}
	c.say(ctx, m)
}

// presence reports c's join or leave of room to the room's members, in
// the next presence batch (presence.go); a leave also ends c's presence
// entry.
func (c *peer) presence(ctx context.Context, room, event string) {
	c.srv.presence.event(ctx, room, c, event)
}

// logLimiterError logs a rate limiter that could not answer (the request
// is refused all the same).
func (c *peer) logLimiterError(err error) {
	var re *requestError
	if errors.As(err, &re) {
		c.log.Error().AnErr("cause", re.cause).Msg("rate limiter unavailable")
	}
}

func newConnID() string { return uuid.NewString() }

func defaultName(id [protocol.SessionIDSize]byte) string {
	return "anon-" + hex.EncodeToString(id[:4])
}
