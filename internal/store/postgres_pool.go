package store

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgPool is a small bounded pool of pgx connections.
//
// It stands in for pgxpool, which needs github.com/jackc/puddle/v2, a module
// this repository's go.sum does not yet list. It does only what Postgres
// uses: bounded acquire that honours ctx, reuse of healthy idle connections,
// and a liveness ping for connections that sat idle (as pgxpool does), so a
// database restart costs reconnects rather than failed requests. Replacing
// it with pgxpool touches only this file and the acquire/release calls in
// postgres.go.
type pgPool struct {
	cfg   *pgx.ConnConfig
	slots chan struct{} // one token per connection in use or being dialled

	mu     sync.Mutex
	idle   []pgIdleConn // most recently used last
	closed bool
}

type pgIdleConn struct {
	conn  *pgx.Conn
	since time.Time
}

// pgPingAfterIdle is how long a connection may sit idle before acquire
// checks it with a round trip (pgxpool's default is the same).
const pgPingAfterIdle = time.Second

var errPoolClosed = errors.New("store: connection pool closed")

func newPgPool(cfg *pgx.ConnConfig, maxConns int) *pgPool {
	return &pgPool{cfg: cfg, slots: make(chan struct{}, maxConns)}
}

// acquire returns a connection for the caller's exclusive use until release.
// It waits for a free slot until ctx is done.
func (p *pgPool) acquire(ctx context.Context) (*pgx.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // before select, which picks at random between ready cases
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			<-p.slots
			return nil, errPoolClosed
		}
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		ic := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()

		if ic.conn.IsClosed() {
			continue
		}
		if time.Since(ic.since) > pgPingAfterIdle {
			if err := ic.conn.Ping(ctx); err != nil {
				closePgConn(ic.conn)
				if ctx.Err() != nil {
					<-p.slots
					return nil, ctx.Err()
				}
				continue
			}
		}
		return ic.conn, nil
	}
	conn, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return conn, nil
}

// release gives conn back. A connection that is closed, mid-query or
// inside a transaction (the caller bailed out) is closed instead of reused.
func (p *pgPool) release(conn *pgx.Conn) {
	defer func() { <-p.slots }()
	if conn.IsClosed() || conn.PgConn().IsBusy() || conn.PgConn().TxStatus() != 'I' {
		closePgConn(conn)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		closePgConn(conn)
		return
	}
	p.idle = append(p.idle, pgIdleConn{conn: conn, since: time.Now()})
	p.mu.Unlock()
}

// close closes the idle connections; those in use are closed on release.
func (p *pgPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, ic := range idle {
		closePgConn(ic.conn)
	}
}

func closePgConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
