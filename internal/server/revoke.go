package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/broker"
	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Revocation (docs/protocol.md §10.3, §11). Every user has a credential
// generation (store.User.Generation), which a password change and every
// key version after the first raise. A logged-in session record carries
// the generation its login saw (sessionState.generation), and so does every
// logged-in connection (the node's login table below). When the generation
// rises:
//
//   - the connection that made the change moves to the new generation
//     first, and its session record is re-sealed with it: it stays;
//   - that node closes its other connections of the user with an older
//     generation, and publishes the new generation on revokeChannel, upon
//     which every node closes its own (protocol.CodeSessionRevoked);
//   - resuming a session sealed with another generation fails with
//     protocol.CodeSessionRevoked and deletes its record (Server.serve);
//   - because Redis Pub/Sub delivers at most once, each logged-in connection
//     also compares its generation with the database's, at most once every
//     Config.CredentialCheck (a quarter session TTL), on its next request or
//     pong (credentialsCurrent): a node that missed the message closes the
//     connection then.

// revokeChannel is the broker channel of revocations. A message is the
// user id (16 bytes) ‖ the user's new generation (8 bytes, big-endian), or,
// for a removed device, the user id (16) ‖ the device id (16).
const revokeChannel = "ctl:revoke"

// revokeMessageSize is the size of a revokeChannel message of a new
// generation, revokeDeviceMessageSize of a removed device.
const (
	revokeMessageSize       = 16 + 8
	revokeDeviceMessageSize = 16 + 16
)

// removedReason is the text of the error that closes a removed device's
// connection.
const removedReason = "this device was removed from the account"

// revokedReason is the text of the error that closes a revoked connection.
const revokedReason = "the account's password changed: log in again"

// logins is this node's table of logged-in connections, by user, with the
// credential generation each logged in at: what a revocation closes.
type logins struct {
	log    zerolog.Logger
	broker broker.Broker // the hub's, set by wrap when NewHub builds it
	node   uuid.UUID     // random: tells this node's device changes from other nodes' (devices.go)

	mu     sync.Mutex
	byUser map[uuid.UUID]map[*peer]int64
	userOf map[*peer]uuid.UUID
	// deviceOf is the device each connection logged in with, when known
	// (a session record of version 2 does not say).
	deviceOf map[*peer]uuid.UUID
	// linkWaiters are the new devices' connections waiting for link_done
	// (link.go).
	linkWaiters map[linkWaiter]*peer
}

func newLogins(log zerolog.Logger) *logins {
	return &logins{log: log, node: uuid.New(), byUser: make(map[uuid.UUID]map[*peer]int64), userOf: make(map[*peer]uuid.UUID), deviceOf: make(map[*peer]uuid.UUID)}
}

// wrap returns newBroker with a handler that takes revokeChannel's
// messages and passes every other one on to the hub's handler h.
func (r *logins) wrap(newBroker func(broker.Handler) (broker.Broker, error)) func(broker.Handler) (broker.Broker, error) {
	return func(h broker.Handler) (broker.Broker, error) {
		b, err := newBroker(func(channel string, payload []byte) {
			switch channel {
			case revokeChannel:
				r.receive(payload)
				return
			case devicesChannel:
				r.receiveDeviceChange(payload)
				return
			case convChannel:
				r.receiveConv(payload)
				return
			case linkChannel:
				r.receiveLink(payload)
				return
			}
			h(channel, payload)
		})
		r.broker = b
		return b, err
	}
}

// subscribe makes the broker deliver revocations from every node. A broker
// that fails to subscribe keeps trying on its own (broker.Broker); until it
// succeeds, this node learns of revocations elsewhere only through
// credentialsCurrent.
func (r *logins) subscribe(ctx context.Context) error {
	if err := r.broker.Subscribe(ctx, revokeChannel); err != nil {
		return fmt.Errorf("server: subscribe to revocations: %w", err)
	}
	if err := r.broker.Subscribe(ctx, devicesChannel); err != nil {
		return fmt.Errorf("server: subscribe to device changes: %w", err)
	}
	if err := r.broker.Subscribe(ctx, convChannel); err != nil {
		return fmt.Errorf("server: subscribe to conversation deliveries: %w", err)
	}
	if err := r.broker.Subscribe(ctx, linkChannel); err != nil {
		return fmt.Errorf("server: subscribe to device link approvals: %w", err)
	}
	return nil
}

// login records that c is logged in as user at generation gen with device
// (uuid.Nil: unknown), in place of whatever c was logged in as before.
func (r *logins) login(c *peer, user uuid.UUID, gen int64, device uuid.UUID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forgetLocked(c)
	if device != uuid.Nil {
		r.deviceOf[c] = device
	}
	conns := r.byUser[user]
	if conns == nil {
		conns = make(map[*peer]int64)
		r.byUser[user] = conns
	}
	conns[c] = gen
	r.userOf[c] = user
}

// forget drops c from the table: its connection ended.
func (r *logins) forget(c *peer) {
	r.mu.Lock()
	r.forgetLocked(c)
	r.forgetLinksLocked(c)
	r.mu.Unlock()
}

func (r *logins) forgetLocked(c *peer) {
	user, ok := r.userOf[c]
	if !ok {
		return
	}
	delete(r.userOf, c)
	delete(r.deviceOf, c)
	delete(r.byUser[user], c)
	if len(r.byUser[user]) == 0 {
		delete(r.byUser, user)
	}
}

// generation returns the generation c logged in at; 0 if it did not.
func (r *logins) generation(c *peer) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byUser[r.userOf[c]][c]
}

// revoke closes every connection of user, on this node and on every other,
// that logged in at a generation older than gen. The closing here does not
// wait for the broker; an error means the other nodes were not told.
func (r *logins) revoke(ctx context.Context, user uuid.UUID, gen int64) error {
	r.closeOlder(user, gen)
	msg := binary.BigEndian.AppendUint64(append(make([]byte, 0, revokeMessageSize), user[:]...), uint64(gen))
	if err := r.broker.Publish(ctx, revokeChannel, msg); err != nil {
		return fmt.Errorf("server: publish revocation: %w", err)
	}
	return nil
}

// receive handles a message of revokeChannel, from any node (this one's
// own included, which then finds nothing left to close).
func (r *logins) receive(msg []byte) {
	if len(msg) == revokeDeviceMessageSize {
		r.closeDevice(uuid.UUID(msg[:16]), uuid.UUID(msg[16:]))
		return
	}
	if len(msg) != revokeMessageSize {
		r.log.Warn().Int("size", len(msg)).Msg("revocation of the wrong size dropped")
		return
	}
	user := uuid.UUID(msg[:16])
	r.closeOlder(user, int64(binary.BigEndian.Uint64(msg[16:])))
}

// closeOlder fails this node's connections of user older than gen.
func (r *logins) closeOlder(user uuid.UUID, gen int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c, g := range r.byUser[user] {
		if g < gen {
			c.fail(protocol.CodeSessionRevoked, revokedReason) // never blocks
		}
	}
}

// revokeDevice closes every connection of user logged in with device, on
// this node and on every other. The closing here does not wait for the
// broker; an error means the other nodes were not told (their connections
// of the device end at their next credential check).
func (r *logins) revokeDevice(ctx context.Context, user, device uuid.UUID) error {
	r.closeDevice(user, device)
	msg := append(append(make([]byte, 0, revokeDeviceMessageSize), user[:]...), device[:]...)
	if err := r.broker.Publish(ctx, revokeChannel, msg); err != nil {
		return fmt.Errorf("server: publish device revocation: %w", err)
	}
	return nil
}

// closeDevice fails this node's connections of user logged in with device.
func (r *logins) closeDevice(user, device uuid.UUID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.byUser[user] {
		if r.deviceOf[c] == device {
			c.fail(protocol.CodeSessionRevoked, removedReason) // never blocks
		}
	}
}

// deviceCurrent reports whether device is a current device of user; a
// uuid.Nil device (a session record that does not name one) counts as
// current.
func deviceCurrent(ctx context.Context, st store.Store, user, device uuid.UUID) (bool, error) {
	if device == uuid.Nil {
		return true, nil
	}
	d, err := st.DeviceByID(ctx, device)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return d.UserID == user && d.RemovedAt.IsZero(), nil
}

// credentialsChanged is called by a connection that has just raised its
// user's generation to gen (a password change, new keys) and moved itself
// to it: it closes the user's other connections everywhere.
func (c *peer) credentialsChanged(ctx context.Context, user uuid.UUID, gen int64) {
	if err := c.srv.logins.revoke(ctx, user, gen); err != nil {
		c.log.Warn().Err(err).Msg("revocation not published: other nodes close the user's connections at their next check")
	}
}

// credentialsCurrent compares, at most once every Config.CredentialCheck
// (a quarter session TTL), the generation this connection logged in at with
// its user's current one in the database, and closes the connection with
// CodeSessionRevoked when they differ. It bounds how long a connection
// outlives a change whose broker message its node missed. It reports
// whether the connection may go on. A database that cannot be read lets it
// go on until the next check.
func (c *peer) credentialsCurrent(ctx context.Context) bool {
	if c.user == nil || time.Since(c.lastCheck) < c.srv.cfg.CredentialCheck {
		return true
	}
	c.lastCheck = time.Now()
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	u, err := c.srv.store.UserByID(ctx, c.user.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.fail(protocol.CodeSessionUnknown, "the session's account is gone")
		return false
	case err != nil:
		c.log.Warn().Err(err).Msg("credential check failed")
		return true
	case u.Generation != c.srv.logins.generation(c):
		c.fail(protocol.CodeSessionRevoked, revokedReason)
		return false
	}
	switch ok, err := deviceCurrent(ctx, c.srv.store, c.user.ID, c.device); {
	case err != nil:
		c.log.Warn().Err(err).Msg("device check failed")
	case !ok:
		c.fail(protocol.CodeSessionRevoked, removedReason)
		return false
	}
	return true
}

// resumedDeviceCurrent checks, for a resumed session, that the device it
// logged in with is still current; a removed device's session is ended
// and its connection closed with session_revoked (its tickets are worth
// nothing from then on). It reports whether the connection may go on.
func (s *Server) resumedDeviceCurrent(ctx context.Context, c *peer) bool {
	ok, err := deviceCurrent(ctx, s.store, c.session.user, c.session.device)
	switch {
	case err != nil:
		c.log.Error().Err(err).Msg("resumed session's device")
		c.fail(protocol.CodeUnavailable, "database unavailable; retry")
		return false
	case !ok:
		if err := s.sessions.end(ctx, c.sessionID); err != nil {
			c.log.Warn().Err(err).Msg("removed device's session record not deleted")
		}
		c.fail(protocol.CodeSessionRevoked, removedReason)
		return false
	}
	return true
}
