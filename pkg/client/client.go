// Package client is the Go client of the messenger: it dials a server,
// runs the handshake (verifying the server's identity against a pinned
// fingerprint), and then joins rooms, sends and receives messages over the
// encrypted session. The command-line client, the bot and the load tool
// all use it.
package client

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// ErrClosed is returned by calls on a connection that has ended; Err says
// why it ended.
var ErrClosed = errors.New("client: connection closed")

// Ticket lets a later connection resume a session without a new key
// exchange. It holds the session secret: keep it as secret as a key.
type Ticket struct {
	ID     [protocol.SessionIDSize]byte
	Secret []byte
}

// Config tells Dial where to connect and whom to trust.
type Config struct {
	// URL is the server's WebSocket endpoint, e.g. ws://127.0.0.1:8080/ws.
	URL string
	// VerifyIdentity decides whether the server's identity key, given by
	// its fingerprint, is the expected one. Required: use Pin for a known
	// fingerprint or KnownHosts for trust on first use.
	VerifyIdentity func(protocol.Fingerprint) error
	// Suites are offered in order of preference. Empty means
	// protocol.SupportedSuites.
	Suites []protocol.Suite
	// SessionKeyBits sizes the per-session RSA-OAEP key: one of
	// protocol.RSAKeySizes. Zero means 2048.
	SessionKeyBits int
	// SessionKey, when set, is the per-session RSA-OAEP key to send instead
	// of generating one inside Dial (SessionKeyBits is then ignored). It
	// must follow the protocol's RSA key rule (protocol.CheckRSAPublicKey).
	// Generating a key takes tens of milliseconds, so callers that dial
	// often generate keys ahead of time; a load tool may reuse a pool of
	// them, at the cost of the forward secrecy a fresh key gives each
	// session (docs/security.md).
	SessionKey *rsa.PrivateKey
	// Resume, when set, asks to resume that session.
	Resume *Ticket
	// ResumeOnly sends no session key with Resume, so that the handshake
	// fails with protocol.CodeSessionUnknown instead of falling back to a
	// new session.
	ResumeOnly bool
	// HandshakeTimeout bounds dialing plus the handshake. Zero means 10 s.
	HandshakeTimeout time.Duration
	// Header is sent with the WebSocket upgrade request (e.g. Origin).
	Header http.Header
	// TLS configures a wss:// connection; nil means Go's defaults. The
	// protocol's own handshake authenticates the server either way.
	TLS *tls.Config
	// Incoming is the capacity of the Messages channel. Zero means 256.
	Incoming int
}

// Conn is an established, encrypted connection. Its methods are safe for
// concurrent use.
type Conn struct {
	ws       *websocket.Conn
	suite    protocol.Suite
	fp       protocol.Fingerprint
	exporter []byte
	ticket   Ticket
	ready    protocol.SessionInfo

	writeMu sync.Mutex
	seal    *protocol.RecordLayer
	open    *protocol.RecordLayer // reader goroutine only

	mu      sync.Mutex
	pending map[string]chan *protocol.Message
	err     error

	messages chan *protocol.Message
	done     chan struct{}
	doneOnce sync.Once
}

type wsFrames struct{ ws *websocket.Conn }

func (f wsFrames) ReadFrame() ([]byte, error) {
	typ, data, err := f.ws.ReadMessage()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("client: %w: %v", protocol.CodeHandshakeTimeout, err)
		}
		return nil, closeError(err)
	}
	if typ != websocket.BinaryMessage {
		return nil, fmt.Errorf("client: text frame: %w", protocol.CodeMalformed)
	}
	return data, nil
}

func (f wsFrames) WriteFrame(b []byte) error { return f.ws.WriteMessage(websocket.BinaryMessage, b) }

// closeError maps a read error to a protocol error where it carries one:
// a close frame with a protocol code becomes a *protocol.PeerError; any
// other failure is ErrClosed.
func closeError(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		if code, ok := protocol.CodeFromClose(ce.Code); ok {
			return &protocol.PeerError{Code: code, Reason: ce.Text}
		}
	}
	return fmt.Errorf("%w: %v", ErrClosed, err)
}

// writeBuffers lends every connection's WebSocket writer its buffer for
// the length of one message, so that an idle connection holds none (a
// load tool holds tens of thousands of them, mostly idle).
var writeBuffers sync.Pool

// plainDialer dials every connection that brings no TLS configuration: a
// Dialer holds no per-connection state, so one serves them all. The
// HandshakeTimeout is not set on it: Dial's context carries the deadline
// (gorilla would start a second timer for the same instant).
var plainDialer = &websocket.Dialer{ReadBufferSize: 4096, WriteBufferSize: 4096, WriteBufferPool: &writeBuffers}

// dialerFor returns the WebSocket dialer for cfg.
func dialerFor(cfg *Config) *websocket.Dialer {
	if cfg.TLS == nil {
		return plainDialer
	}
	d := *plainDialer
	d.TLSClientConfig = cfg.TLS
	return &d
}

// Dial connects, runs the handshake and waits for the server's "ready".
// A handshake failure is returned as an error carrying its protocol.Code
// (errors.Is(err, protocol.CodeBadSignature), …); the client sends the
// server an Alert for failures it detects itself.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	if cfg.VerifyIdentity == nil {
		return nil, errors.New("client: Config.VerifyIdentity is required (use Pin or KnownHosts)")
	}
	if len(cfg.Suites) == 0 {
		cfg.Suites = protocol.SupportedSuites
	}
	if cfg.SessionKey != nil {
		if err := protocol.CheckRSAPublicKey(&cfg.SessionKey.PublicKey); err != nil {
			return nil, fmt.Errorf("client: Config.SessionKey: %w", err)
		}
		cfg.SessionKeyBits = cfg.SessionKey.N.BitLen()
	}
	if cfg.SessionKeyBits == 0 {
		cfg.SessionKeyBits = 2048
	}
	if !protocol.ValidRSAKeySize(cfg.SessionKeyBits) {
		return nil, fmt.Errorf("client: Config.SessionKeyBits %d: the server accepts only %v", cfg.SessionKeyBits, protocol.RSAKeySizes)
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.Incoming == 0 {
		cfg.Incoming = 256
	}
	sessionKey, err := newSessionKey(&cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	ws, resp, err := dialerFor(&cfg).DialContext(ctx, cfg.URL, cfg.Header)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("client: dial %s: %s: %w", cfg.URL, resp.Status, err)
		}
		return nil, fmt.Errorf("client: dial %s: %w", cfg.URL, err)
	}
	ws.SetReadLimit(protocol.MaxFrameSize)
	deadline, _ := ctx.Deadline()
	_ = ws.SetReadDeadline(deadline)
	_ = ws.SetWriteDeadline(deadline)

	hs := &clientHandshake{io: &protocol.HandshakeIO{Conn: wsFrames{ws}, Transcript: protocol.NewTranscript()}, cfg: &cfg, sessionKey: sessionKey}
	if err := hs.handshake(); err != nil {
		var peer *protocol.PeerError
		if !errors.As(err, &peer) && !errors.Is(err, ErrClosed) {
			code := protocol.CodeOf(err)
			_ = ws.WriteMessage(websocket.BinaryMessage, (&protocol.Alert{Code: code, Reason: code.String()}).Marshal())
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code.CloseCode(), code.String()), deadline)
		}
		ws.Close()
		return nil, fmt.Errorf("client: handshake: %w", err)
	}
	c := &Conn{
		ws:       ws,
		suite:    hs.sh.Suite,
		fp:       hs.fp,
		exporter: hs.exporter,
		ticket:   Ticket{ID: hs.sh.SessionID, Secret: hs.secret},
		seal:     hs.seal,
		open:     hs.open,
		pending:  make(map[string]chan *protocol.Message),
		messages: make(chan *protocol.Message, cfg.Incoming),
		done:     make(chan struct{}),
	}
	// The first record is "ready".
	m, err := c.readMessage()
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("client: waiting for ready: %w", err)
	}
	if m.Type == protocol.MsgError {
		ws.Close()
		return nil, fmt.Errorf("client: %w", &protocol.PeerError{Code: m.Code, Reason: m.Error, Sealed: true})
	}
	if m.Type != protocol.MsgReady || m.Session == nil {
		ws.Close()
		return nil, fmt.Errorf("client: first message %q, want ready: %w", m.Type, protocol.CodeUnexpectedMessage)
	}
	c.ready = *m.Session
	_ = ws.SetReadDeadline(time.Time{})
	_ = ws.SetWriteDeadline(time.Time{})
	go c.readLoop()
	return c, nil
}

// Fingerprint returns the server identity key's fingerprint.
func (c *Conn) Fingerprint() protocol.Fingerprint { return c.fp }

// Suite returns the record suite the server chose.
func (c *Conn) Suite() protocol.Suite { return c.suite }

// Session describes the session as the server announced it.
func (c *Conn) Session() protocol.SessionInfo { return c.ready }

// Ticket returns what a later Dial needs to resume this session.
func (c *Conn) Ticket() Ticket {
	return Ticket{ID: c.ticket.ID, Secret: append([]byte(nil), c.ticket.Secret...)}
}

// SessionID returns the session id in hex.
func (c *Conn) SessionID() string { return hex.EncodeToString(c.ticket.ID[:]) }

// ChannelBinding returns the exporter value of this connection's
// handshake: both ends compute the same 32 bytes, and no other connection
// has them.
func (c *Conn) ChannelBinding() []byte { return append([]byte(nil), c.exporter...) }

// Messages delivers what the server pushes: room messages ("msg") and
// presence events. It is closed when the connection ends. Read it
// promptly: while it is full the connection stops reading, and the server
// drops connections that fall too far behind.
func (c *Conn) Messages() <-chan *protocol.Message { return c.messages }

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (nil while it is open). A server
// error carries its code: errors.Is(c.Err(), protocol.CodeSlowConsumer).
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Conn) readMessage() (*protocol.Message, error) {
	typ, data, err := c.ws.ReadMessage()
	if err != nil {
		return nil, closeError(err)
	}
	if typ != websocket.BinaryMessage {
		return nil, fmt.Errorf("client: text frame: %w", protocol.CodeMalformed)
	}
	if len(data) > 0 && data[0] == protocol.TypeAlert {
		// The server refused our Finished after we switched to records.
		a, err := protocol.UnmarshalAlert(data)
		if err != nil {
			return nil, err
		}
		return nil, &protocol.PeerError{Code: a.Code, Reason: a.Reason}
	}
	pt, err := c.open.Open(data)
	if err != nil {
		return nil, err
	}
	return protocol.DecodeMessage(pt)
}

func (c *Conn) readLoop() {
	var err error
	defer func() {
		c.shutdown(err)
		close(c.messages)
	}()
	for {
		var m *protocol.Message
		m, err = c.readMessage()
		if err != nil {
			return
		}
		if m.Type == protocol.MsgError && m.Fatal {
			err = &protocol.PeerError{Code: m.Code, Reason: m.Error, Ref: m.Ref, Sealed: true}
			return
		}
		if m.Ref != "" {
			c.mu.Lock()
			ch := c.pending[m.Ref]
			delete(c.pending, m.Ref)
			c.mu.Unlock()
			if ch != nil {
				ch <- m
				continue
			}
		}
		select {
		case c.messages <- m:
		case <-c.done:
			return
		}
	}
}

func (c *Conn) shutdown(err error) {
	c.mu.Lock()
	if c.err == nil {
		if err == nil {
			err = ErrClosed
		}
		c.err = err
	}
	pending := c.pending
	c.pending = map[string]chan *protocol.Message{}
	c.mu.Unlock()
	for _, ch := range pending {
		close(ch)
	}
	c.ws.Close()
	c.doneOnce.Do(func() { close(c.done) })
}

// WriteMessage seals and sends one application message as is, without
// waiting for an answer. Most callers want Request.
func (c *Conn) WriteMessage(m *protocol.Message) error {
	b, err := m.Encode()
	if err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	select {
	case <-c.done:
		return c.closedErr()
	default:
	}
	frame, err := c.seal.Seal(b)
	if err != nil {
		return err
	}
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
		return fmt.Errorf("client: write: %w: %w", ErrClosed, err)
	}
	return nil
}

// WriteRaw sends frame bytes as they are, bypassing the record layer. It
// exists for tests of the server's handling of bad frames.
func (c *Conn) WriteRaw(frame []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	return c.ws.WriteMessage(websocket.BinaryMessage, frame)
}

// SealRaw seals plaintext as the next record without sending it, for
// tests that replay or reorder records. It consumes a sequence number.
func (c *Conn) SealRaw(plaintext []byte) ([]byte, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	return c.seal.Seal(plaintext)
}

func (c *Conn) closedErr() error {
	if err := c.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return ErrClosed
}

// Request sends m and waits for the server's answer to it. An empty ID or
// timestamp is filled in (a fresh UUID, the current time). A server error
// answer is returned as a *protocol.PeerError carrying its code.
func (c *Conn) Request(ctx context.Context, m *protocol.Message) (*protocol.Message, error) {
	if m.ID == "" {
		m.ID = uuid.NewString()
	}
	if m.TS == 0 {
		m.TS = time.Now().UnixMilli()
	}
	ch := make(chan *protocol.Message, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.closedErr()
	}
	c.pending[m.ID] = ch
	c.mu.Unlock()
	if err := c.WriteMessage(m); err != nil {
		c.mu.Lock()
		delete(c.pending, m.ID)
		c.mu.Unlock()
		return nil, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, c.closedErr()
		}
		if r.Type == protocol.MsgError {
			return r, &protocol.PeerError{Code: r.Code, Reason: r.Error, Ref: r.Ref, Sealed: true}
		}
		return r, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, m.ID)
		c.mu.Unlock()
		return nil, fmt.Errorf("client: %s: %w", m.Type, ctx.Err())
	}
}

// Join enters room as the display name name (empty keeps the current one)
// and returns the members present on the server's node.
func (c *Conn) Join(ctx context.Context, room, name string) ([]string, error) {
	r, err := c.Request(ctx, &protocol.Message{Type: protocol.MsgJoin, Room: room, Name: name})
	if err != nil {
		return nil, err
	}
	return r.Members, nil
}

// Leave leaves room.
func (c *Conn) Leave(ctx context.Context, room string) error {
	_, err := c.Request(ctx, &protocol.Message{Type: protocol.MsgLeave, Room: room})
	return err
}

// Send says body in room and waits until the server has accepted it. It
// returns the message id. SendMessage also returns the sequence number.
func (c *Conn) Send(ctx context.Context, room, body string) (string, error) {
	m := &protocol.Message{Type: protocol.MsgSend, Room: room, Body: body}
	if _, err := c.Request(ctx, m); err != nil {
		return m.ID, err
	}
	return m.ID, nil
}

// Sent is what the server answered to a stored send.
type Sent struct {
	// Seq is the message's number in the room's stream; 0 for a room the
	// server does not keep (docs/protocol.md §8.4).
	Seq int64
	// Epoch is the stream's epoch.
	Epoch string
}

// SendMessage says body in room under the message id mid (a canonical
// UUID from NewMessageID; empty: the request's id) and waits until the
// server has committed it. To retry after an error or a
// lost connection, call it again with the same mid: a message already
// committed keeps its sequence number and is not delivered twice.
func (c *Conn) SendMessage(ctx context.Context, room, body, mid string) (Sent, error) {
	m := &protocol.Message{Type: protocol.MsgSend, Room: room, Body: body, Mid: mid}
	r, err := c.Request(ctx, m)
	if err != nil {
		return Sent{}, err
	}
	return Sent{Seq: r.Seq, Epoch: r.Epoch}, nil
}

// NewMessageID returns a fresh message id for SendMessage.
func NewMessageID() string { return uuid.NewString() }

// JoinAfter enters room like Join and asks for the stored messages after
// seq first (nil: the server decides, from the account's read position).
// It returns the joined answer: Members, Head, Epoch, After, and More when
// the server sent none because too many were missed (page them with
// History). The stored messages then arrive on Messages, in order, before
// any live one.
func (c *Conn) JoinAfter(ctx context.Context, room, name string, after *int64) (*protocol.Message, error) {
	return c.Request(ctx, &protocol.Message{Type: protocol.MsgJoin, Room: room, Name: name, After: after})
}

// HistoryQuery selects a page of a room's history: the oldest messages
// after After, or the newest before Before, or (neither) the newest.
type HistoryQuery struct {
	After, Before *int64
	// Limit is the most messages (0: the server's default).
	Limit int
}

// History fetches a page of a joined room's stored messages. The answer's
// Msgs are in ascending Seq; More says there may be more beyond the page.
func (c *Conn) History(ctx context.Context, room string, q HistoryQuery) (*protocol.Message, error) {
	return c.Request(ctx, &protocol.Message{Type: protocol.MsgHistory, Room: room, After: q.After, Before: q.Before, Limit: q.Limit})
}

// Read records that the account has read room up to seq.
func (c *Conn) Read(ctx context.Context, room string, seq int64) error {
	_, err := c.Request(ctx, &protocol.Message{Type: protocol.MsgRead, Room: room, Seq: seq})
	return err
}

// Rooms returns the account's rooms with their heads and read positions.
func (c *Conn) Rooms(ctx context.Context) ([]protocol.RoomPosition, error) {
	r, err := c.Request(ctx, &protocol.Message{Type: protocol.MsgRooms})
	if err != nil {
		return nil, err
	}
	return r.Rooms, nil
}

// End ends the session: the server forgets it, so its ticket no longer
// resumes, and closes the connection.
func (c *Conn) End(ctx context.Context) error {
	if err := c.WriteMessage(&protocol.Message{Type: protocol.MsgEnd, ID: uuid.NewString(), TS: time.Now().UnixMilli()}); err != nil {
		return err
	}
	select {
	case <-c.done:
		// Only the server's sealed answer proves the session ended; a close
		// frame saying so could be forged by anyone on the path.
		var pe *protocol.PeerError
		if errors.As(c.Err(), &pe) && pe.Code == protocol.CodeSessionEnded && pe.Sealed {
			return nil
		}
		return fmt.Errorf("client: end not confirmed by the server: %w", c.Err())
	case <-ctx.Done():
		return fmt.Errorf("client: end: %w", ctx.Err())
	}
}

// Close closes the connection without ending the session: its ticket can
// resume it until the session's TTL runs out.
func (c *Conn) Close() error {
	c.writeMu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.writeMu.Unlock()
	c.shutdown(ErrClosed)
	return nil
}
