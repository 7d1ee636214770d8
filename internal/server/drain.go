package server

import (
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Drain puts the node into draining: /readyz answers 503 "draining" and
// new WebSocket connections are refused with 503, while the open ones go
// on until Shutdown closes them with going_away. Load balancers that
// probe /readyz stop sending new clients here.
func (s *Server) Drain() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.metrics.SetDraining(true)
	s.log.Info().Int("connections", s.Connections()).Msg("draining")
}

// Draining reports whether Drain or Shutdown has been called.
func (s *Server) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Connections returns how many established connections the node holds.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// flushForDrain writes, before a going_away close, what is already
// queued for the connection (batch, which the writer took with the close,
// and whatever came since: answers and deliveries of requests carried out
// before the drain), so that a client does not resend what was
// acknowledged. Other closes drop the queue: a slow consumer's is full.
// Writer goroutine only.
func (c *peer) flushForDrain(req closeRequest, batch [][]byte) {
	if req.code != protocol.CodeGoingAway {
		return
	}
	_ = c.writeBatch(append(batch, c.queue.take(nil)...))
}
