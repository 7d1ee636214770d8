package main

// A Centrifugo client for the load scenarios: its client protocol v2 in
// the JSON format over WebSocket (docs: centrifugal.dev, "Client
// protocol"; the schema is centrifugal/protocol's client.proto).
//
// Hand-written rather than the official Go SDK on purpose: the scenarios
// use four messages (connect, subscribe, publish, and the publication
// push) plus the ping, and this keeps Centrifugo's client as thin as the
// messenger's pkg/client in the measured path (one read goroutine, one
// buffered channel of deliveries, no reconnects or per-subscription state
// machines that the messenger side does not have either).
//
// The protocol in short: the client sends commands, one JSON object each,
// {"id":N,"connect":{…}}, {"id":N,"subscribe":{"channel":…}},
// {"id":N,"publish":{"channel":…,"data":…}}; the server answers each with
// a reply carrying the same id and a result ({"id":N,"subscribe":{}}) or
// an error ({"id":N,"error":{"code":…,"message":…}}). Pushes have no id:
// {"push":{"channel":…,"pub":{"data":…}}}. Several commands or replies may
// share one WebSocket frame, separated by "\n". The server pings with an
// empty object {} every ping interval (25 s by default) and, when the
// connect result says "pong":true, expects {} back within its pong
// timeout, or it closes the connection. A disconnect comes as a close
// frame whose code is Centrifugo's (3000–4999), or as a disconnect push.
// In JSON, the protocol's bytes fields (data) are embedded JSON: the load
// bodies travel as JSON strings.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/secure-messenger/messenger/pkg/client"
)

// cfCommand is a client-to-server command; exactly one request is set.
type cfCommand struct {
	ID        uint32        `json:"id,omitempty"`
	Connect   *cfConnectReq `json:"connect,omitempty"`
	Subscribe *cfChannelReq `json:"subscribe,omitempty"`
	Publish   *cfPublishReq `json:"publish,omitempty"`
}

type cfConnectReq struct {
	Name string `json:"name,omitempty"`
}

type cfChannelReq struct {
	Channel string `json:"channel"`
}

type cfPublishReq struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// cfReply is a server-to-client reply (id > 0) or push (id 0); only the
// fields the load tool reads are decoded.
type cfReply struct {
	ID      uint32           `json:"id"`
	Error   *centrifugoError `json:"error"`
	Push    *cfPush          `json:"push"`
	Connect *cfConnectResult `json:"connect"`
}

type cfPush struct {
	Channel    string           `json:"channel"`
	Pub        *cfPublication   `json:"pub"`
	Disconnect *centrifugoError `json:"disconnect"`
}

type cfPublication struct {
	Data json.RawMessage `json:"data"`
}

type cfConnectResult struct {
	Client  string `json:"client"`
	Version string `json:"version"`
	Ping    uint32 `json:"ping"`
	Pong    bool   `json:"pong"`
}

// centrifugoError is an error reply from Centrifugo, or (Disconnect) the
// code and reason it closed the connection with. The load reports count
// it by code, beside the messenger's protocol codes.
type centrifugoError struct {
	Code       uint32 `json:"code"`
	Message    string `json:"message"`
	Disconnect bool   `json:"-"`
}

func (e *centrifugoError) Error() string {
	if e.Disconnect {
		return fmt.Sprintf("centrifugo: disconnect %d %s", e.Code, e.Message)
	}
	return fmt.Sprintf("centrifugo: error %d %s", e.Code, e.Message)
}

// countKey is the key errorCounts files e under.
func (e *centrifugoError) countKey() string {
	if e.Disconnect {
		return fmt.Sprintf("centrifugo_disconnect_%d", e.Code)
	}
	return fmt.Sprintf("centrifugo_%d", e.Code)
}

// encodeCommand is one command as the JSON the server reads.
func encodeCommand(cmd *cfCommand) ([]byte, error) {
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("centrifugo: encode command: %w", err)
	}
	return b, nil
}

// publishData is body as the publication's data: a JSON string.
func publishData(body string) (json.RawMessage, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("centrifugo: encode data: %w", err)
	}
	return b, nil
}

// pingFrame is both the server's ping and the client's pong.
var pingFrame = []byte("{}")

// eachLine calls fn with each non-empty line of a frame (the JSON
// format's batching), stopping at fn's first error.
func eachLine(frame []byte, fn func([]byte) error) error {
	for len(frame) > 0 {
		line := frame
		if i := bytes.IndexByte(frame, '\n'); i >= 0 {
			line, frame = frame[:i], frame[i+1:]
		} else {
			frame = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	return nil
}

// decodeReply reads one line: a ping (the empty object), or a reply or
// push.
func decodeReply(line []byte) (r *cfReply, ping bool, err error) {
	if bytes.Equal(line, pingFrame) {
		return nil, true, nil
	}
	r = &cfReply{}
	if err := json.Unmarshal(line, r); err != nil {
		return nil, false, fmt.Errorf("centrifugo: bad reply %.80q: %w", line, err)
	}
	return r, false, nil
}

// publicationBody is a publication's data as the body the load scenarios
// sent: the JSON string's text (any other JSON value is returned as it
// is, and will not parse as a load message).
func publicationBody(data json.RawMessage) string {
	var s string
	if json.Unmarshal(data, &s) == nil {
		return s
	}
	return string(data)
}

// cfEvent is what the read loop hands Receive: a delivered body, or an
// error answer.
type cfEvent struct {
	body string
	err  error
}

// centrifugoConn is one Centrifugo client connection.
type centrifugoConn struct {
	ws       *websocket.Conn
	pong     bool // the server expects {} back for its pings
	writeMu  sync.Mutex
	ids      atomic.Uint32
	mu       sync.Mutex
	waiting  map[uint32]chan *cfReply
	err      error
	events   chan *cfEvent // as pkg/client's chan *protocol.Message: 8 bytes a slot
	done     chan struct{}
	doneOnce sync.Once
}

// dialTimeout bounds the WebSocket upgrade and the connect command, as
// client.Config.HandshakeTimeout does the messenger's handshake.
const dialTimeout = 30 * time.Second

// dialCentrifugo opens a WebSocket to url and sends the connect command
// (anonymous: no token), waiting for its result.
func dialCentrifugo(ctx context.Context, url string) (*centrifugoConn, error) {
	d := websocket.Dialer{HandshakeTimeout: dialTimeout}
	ws, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("centrifugo: dial %s: %w (%s)", url, err, resp.Status)
		}
		return nil, fmt.Errorf("centrifugo: dial %s: %w", url, err)
	}
	c := &centrifugoConn{ws: ws, waiting: map[uint32]chan *cfReply{}, events: make(chan *cfEvent, incoming), done: make(chan struct{})}
	res, err := c.connect(ctx)
	if err != nil {
		ws.Close()
		return nil, err
	}
	c.pong = res.Pong
	go c.readLoop()
	return c, nil
}

// connect sends the connect command and reads until its reply: the
// server sends nothing else before it.
func (c *centrifugoConn) connect(ctx context.Context) (*cfConnectResult, error) {
	stop := context.AfterFunc(ctx, func() { c.ws.Close() })
	defer stop()
	deadline := time.Now().Add(dialTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.ws.SetReadDeadline(deadline)
	defer c.ws.SetReadDeadline(time.Time{})
	id := c.ids.Add(1)
	if err := c.write(&cfCommand{ID: id, Connect: &cfConnectReq{Name: "load"}}); err != nil {
		return nil, err
	}
	for {
		_, frame, err := c.ws.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, closeErrorCF(err)
		}
		var res *cfConnectResult
		err = eachLine(frame, func(line []byte) error {
			r, ping, err := decodeReply(line)
			switch {
			case err != nil:
				return err
			case ping || r.ID != id:
				return nil
			case r.Error != nil:
				return r.Error
			case r.Connect == nil:
				return fmt.Errorf("centrifugo: connect reply without a result: %.80q", line)
			}
			res = r.Connect
			return nil
		})
		if err != nil || res != nil {
			return res, err
		}
	}
}

// closeErrorCF turns a read error into what Err reports: a close frame
// with Centrifugo's disconnect code and reason, or the closed connection.
func closeErrorCF(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Code >= 3000 {
		return &centrifugoError{Code: uint32(ce.Code), Message: ce.Text, Disconnect: true}
	}
	return fmt.Errorf("%w: %v", client.ErrClosed, err)
}

func (c *centrifugoConn) readLoop() {
	var err error
	defer func() {
		c.shutdown(err)
		close(c.events)
	}()
	for {
		var frame []byte
		if _, frame, err = c.ws.ReadMessage(); err != nil {
			err = closeErrorCF(err)
			return
		}
		if err = eachLine(frame, c.handle); err != nil {
			return
		}
	}
}

// handle acts on one reply: answers a ping, hands a command's reply to
// whoever waits for it (an unawaited error reply, a publish's, becomes an
// error answer), and a publication to Receive.
func (c *centrifugoConn) handle(line []byte) error {
	r, ping, err := decodeReply(line)
	if err != nil {
		return err
	}
	if ping {
		if c.pong {
			return c.writeFrame(pingFrame)
		}
		return nil
	}
	if r.ID != 0 {
		c.mu.Lock()
		ch := c.waiting[r.ID]
		delete(c.waiting, r.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- r
			return nil
		}
		if r.Error != nil {
			return c.event(&cfEvent{err: r.Error})
		}
		return nil
	}
	switch p := r.Push; {
	case p == nil:
	case p.Disconnect != nil:
		p.Disconnect.Disconnect = true
		return p.Disconnect
	case p.Pub != nil:
		return c.event(&cfEvent{body: publicationBody(p.Pub.Data)})
	}
	return nil
}

// event queues ev for Receive, waiting while the queue is full (the
// server then sees a slow reader, as with the messenger's client).
func (c *centrifugoConn) event(ev *cfEvent) error {
	select {
	case c.events <- ev:
		return nil
	case <-c.done:
		return client.ErrClosed
	}
}

func (c *centrifugoConn) shutdown(err error) {
	c.mu.Lock()
	if c.err == nil {
		if err == nil {
			err = client.ErrClosed
		}
		c.err = err
	}
	waiting := c.waiting
	c.waiting = map[uint32]chan *cfReply{}
	c.mu.Unlock()
	for _, ch := range waiting {
		close(ch)
	}
	c.ws.Close()
	c.doneOnce.Do(func() { close(c.done) })
}

func (c *centrifugoConn) closedErr() error {
	if err := c.Err(); err != nil && !errors.Is(err, client.ErrClosed) {
		return fmt.Errorf("%w: %w", client.ErrClosed, err)
	}
	return client.ErrClosed
}

func (c *centrifugoConn) write(cmd *cfCommand) error {
	b, err := encodeCommand(cmd)
	if err != nil {
		return err
	}
	return c.writeFrame(b)
}

func (c *centrifugoConn) writeFrame(b []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	select {
	case <-c.done:
		return c.closedErr()
	default:
	}
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("centrifugo: write: %w: %w", client.ErrClosed, err)
	}
	return nil
}

// request sends cmd with a fresh id and waits for its reply.
func (c *centrifugoConn) request(ctx context.Context, cmd *cfCommand) (*cfReply, error) {
	cmd.ID = c.ids.Add(1)
	ch := make(chan *cfReply, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.closedErr()
	}
	c.waiting[cmd.ID] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.waiting, cmd.ID)
		c.mu.Unlock()
	}
	if err := c.write(cmd); err != nil {
		forget()
		return nil, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, c.closedErr()
		}
		if r.Error != nil {
			return nil, r.Error
		}
		return r, nil
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
}

// Join subscribes to the channel room.
func (c *centrifugoConn) Join(ctx context.Context, room string) error {
	_, err := c.request(ctx, &cfCommand{Subscribe: &cfChannelReq{Channel: room}})
	return err
}

// Publish publishes body (as a JSON string) into the channel room; the
// reply is not awaited, an error reply becomes an error answer.
func (c *centrifugoConn) Publish(room, body string) error {
	data, err := publishData(body)
	if err != nil {
		return err
	}
	return c.write(&cfCommand{ID: c.ids.Add(1), Publish: &cfPublishReq{Channel: room, Data: data}})
}

// Receive takes deliveries and error answers off the connection, timing
// each as it is taken (as messengerConn.Receive does).
func (c *centrifugoConn) Receive(onMessage func(string, time.Time), onError func(error)) {
	for ev := range c.events {
		now := time.Now()
		if ev.err != nil {
			onError(ev.err)
			continue
		}
		onMessage(ev.body, now)
	}
}

// Done is closed when the connection has ended.
func (c *centrifugoConn) Done() <-chan struct{} { return c.done }

// Err says why the connection ended (nil while it is open).
func (c *centrifugoConn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close sends a normal close frame and ends the connection.
func (c *centrifugoConn) Close() error {
	c.writeMu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.writeMu.Unlock()
	c.shutdown(client.ErrClosed)
	return nil
}
