package server

import "github.com/secure-messenger/messenger/internal/metrics"

// metrics returns the server's Metrics, nil (which records nothing) for a
// peer without a server, as the hub's tests build them.
func (c *peer) metrics() *metrics.Metrics {
	if c.srv == nil {
		return nil
	}
	return c.srv.metrics
}
