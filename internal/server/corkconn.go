package server

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// corkConn is the network connection under an upgraded WebSocket. Outside
// a batch it passes every write straight through. Between cork and uncork
// (the writer sealing what its queue held), the WebSocket frames written,
// and any control frame another goroutine sends meanwhile (a pong), are
// gathered in one pooled buffer and written with one write when the batch
// ends or the buffer reaches corkFlushAt: several records, one system call,
// and one write deadline per batch instead of one of each per frame. The
// protocol is unchanged: every record is still its own WebSocket message
// (docs/protocol.md §1); only the TCP segments carry several.
//
// Idle, it holds no write buffer. It also owns the connection's read
// buffer (br, which the WebSocket reads through) so that the reader can
// wait for the next frame on a short stack (waitReadable).
type corkConn struct {
	net.Conn
	br   *bufio.Reader // the WebSocket's read buffer; nil if the HTTP server's is used
	peek func(fd uintptr) bool
	raw  syscall.RawConn

	mu       sync.Mutex
	corked   bool
	buf      *[]byte   // from corkPool while corked and written to
	deadline time.Time // the write deadline to apply when the batch is written
	err      error     // the first failed write; every later one fails too
}

// corkFlushAt is the size at which a batch is written before it ends.
const corkFlushAt = 64 << 10

var corkPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// Write writes p, or while corked appends it to the batch.
func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.corked {
		n, err := c.Conn.Write(p)
		if err != nil {
			c.err = err
		}
		return n, err
	}
	if c.buf == nil {
		c.buf = corkPool.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, p...)
	if len(*c.buf) >= corkFlushAt {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// SetWriteDeadline sets the deadline of the next write; while corked it is
// only remembered, for the batch's write.
func (c *corkConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		c.deadline = t
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

// cork starts a batch whose writes must be done within timeout.
func (c *corkConn) cork(timeout time.Duration) {
	c.mu.Lock()
	c.corked = true
	c.deadline = time.Now().Add(timeout)
	c.mu.Unlock()
}

// uncork writes the batch, returns its buffer to the pool and passes later
// writes straight through again.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.flushLocked()
	c.corked = false
	if c.buf != nil {
		if cap(*c.buf) <= 2*corkFlushAt {
			*c.buf = (*c.buf)[:0]
			corkPool.Put(c.buf)
		}
		c.buf = nil
	}
	return err
}

func (c *corkConn) flushLocked() error {
	if c.err != nil {
		return c.err
	}
	if c.buf == nil || len(*c.buf) == 0 {
		return nil
	}
	if err := c.Conn.SetWriteDeadline(c.deadline); err != nil {
		c.err = err
		return err
	}
	_, err := c.Conn.Write(*c.buf)
	*c.buf = (*c.buf)[:0]
	if err != nil {
		c.err = err
	}
	return err
}

// corkWriter hands the WebSocket upgrader a corkConn in place of the
// hijacked connection.
type corkWriter struct {
	http.ResponseWriter
	conn *corkConn
}

// Hijack takes over the connection (through http.ResponseController, so
// that wrapped ResponseWriters work) and wraps it. It hands the upgrader a
// read buffer of readBufferSize bytes of the connection's own in place of
// the HTTP server's 4 KiB one (the upgrader reads through the reader it is
// given), unless the HTTP server's holds bytes already (the upgrader then
// refuses the connection, as it would have).
func (w *corkWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &corkConn{Conn: nc}
	if brw.Reader.Buffered() == 0 {
		w.conn.br = bufio.NewReaderSize(w.conn, readBufferSize)
		brw = bufio.NewReadWriter(w.conn.br, brw.Writer)
	}
	return w.conn, brw, nil
}

// waitReadable returns when the connection has bytes to read, has ended,
// or its read deadline passed, if its read buffer is empty (else at once):
// the reader calls it before each frame so that, idle, it waits a few
// frames deep instead of inside the WebSocket's frame parser, and the
// runtime can shrink its stack to 4 KiB while it waits. It only looks
// (MSG_PEEK): the read that follows reports whatever error there is. On a
// connection that is not a plain socket (TLS served in-process), or where
// the system has no peek, it returns at once.
func (c *corkConn) waitReadable() {
	if c.br == nil || c.br.Buffered() > 0 {
		return
	}
	if c.raw == nil {
		sc, ok := c.Conn.(syscall.Conn)
		if !ok || !canPeek {
			c.br = nil // never wait
			return
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			c.br = nil
			return
		}
		c.raw, c.peek = raw, func(fd uintptr) bool { return peekReadable(fd) }
	}
	_ = c.raw.Read(c.peek)
}

// Unwrap lets http.ResponseController reach the wrapped writer.
func (w *corkWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
