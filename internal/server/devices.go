package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/e2e"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Devices (docs/protocol.md §10.1, §10.3): a user has one or more
// devices, each with its own keys. auth, login and passwd are signed by
// one of them; login with keys adds one; remove_device removes one.

// errNoDevice is verifyIdentity's answer when no current device of the
// user made the signature (or the named device is not one of them).
var errNoDevice = errors.New("server: no current device made the signature")

// verifyIdentity checks sig, the connection signature of §10.2, against
// the user's current devices and returns the one that made it: the
// device named by device (a canonical UUID, already checked by
// ValidateRequest) or, when device is empty (a client from before devices),
// whichever of them verifies. errNoDevice if none does.
func (c *peer) verifyIdentity(ctx context.Context, u store.User, device string, sig []byte) (store.Device, error) {
	ds, err := c.srv.store.DevicesOf(ctx, u.ID)
	if err != nil {
		return store.Device{}, err
	}
	for _, d := range ds {
		if device != "" && d.ID.String() != device {
			continue
		}
		pub, err := protocol.ParseRSAPublicKey(d.SigningKey)
		if err != nil {
			continue
		}
		if protocol.VerifyClientAuth(pub, c.exporter, u.Name, sig) == nil {
			return d, nil
		}
	}
	return store.Device{}, errNoDevice
}

// newDevice is the store.Device a verified bundle publishes.
func newDevice(user, id uuid.UUID, name string, k *protocol.KeyBundle) store.Device {
	return store.Device{ID: id, UserID: user, Name: name, SigningKey: k.Signing, EncryptionKey: k.Encryption, SelfSignature: k.SelfSignature}
}

// deviceFingerprint is the device fingerprint of d, owned by user.
func deviceFingerprint(user string, d store.Device) protocol.Fingerprint {
	return protocol.DeviceFingerprint(user, d.ID, d.SigningKey, d.EncryptionKey)
}

// directory is the user's current devices as the keys answer lists them,
// and the user fingerprint over all of them (pkg/e2e's UserFingerprint,
// so that client and server compute it alike).
func (c *peer) directory(ctx context.Context, u store.User) ([]protocol.DeviceInfo, protocol.Fingerprint, error) {
	ds, err := c.srv.store.DevicesOf(ctx, u.ID)
	if err != nil {
		return nil, protocol.Fingerprint{}, storeError(err)
	}
	if len(ds) == 0 {
		return nil, protocol.Fingerprint{}, &requestError{protocol.CodeNotFound, "not found", store.ErrNotFound}
	}
	infos := make([]protocol.DeviceInfo, len(ds))
	devs := make([]e2e.Device, len(ds))
	for i, d := range ds {
		infos[i] = protocol.DeviceInfo{
			Keys:        &protocol.KeyBundle{Device: d.ID.String(), Signing: d.SigningKey, Encryption: d.EncryptionKey, SelfSignature: d.SelfSignature},
			Name:        d.Name,
			Fingerprint: deviceFingerprint(u.Name, d).String(),
			Created:     d.CreatedAt.UnixMilli(),
		}
		devs[i] = e2e.Device{User: u.Name, ID: d.ID, Signing: d.SigningKey, Encryption: d.EncryptionKey}
	}
	fp, err := e2e.UserFingerprint(u.Name, devs)
	if err != nil {
		// Only keys the server checked on the way in are stored.
		return nil, protocol.Fingerprint{}, &requestError{protocol.CodeInternal, "internal error", err}
	}
	return infos, fp, nil
}

// devices answers a devices request: the caller's own directory entry,
// with device set to the device this connection logged in with (unknown
// only on a connection that resumed a session sealed before session
// records named the device).
func (c *peer) devices(ctx context.Context, m *protocol.Message) error {
	if c.user == nil {
		return fmt.Errorf("log in to list your devices: %w", protocol.CodeUnauthenticated)
	}
	infos, fp, err := c.directory(ctx, *c.user)
	if err != nil {
		return err
	}
	r := &protocol.Message{Type: protocol.MsgKeys, Ref: m.ID, User: c.user.Name, Devices: infos, Fingerprint: fp.String(), TS: time.Now().UnixMilli()}
	if c.device != uuid.Nil {
		r.Device = c.device.String()
	}
	c.reply(r)
	return nil
}

// removeDevice removes one of the caller's devices: the request is signed
// like auth by another current device of the same user.
func (c *peer) removeDevice(ctx context.Context, m *protocol.Message) error {
	if c.user == nil || c.user.Name != m.User {
		return fmt.Errorf("log in as %s to remove its devices: %w", m.User, protocol.CodeUnauthenticated)
	}
	u := *c.user
	caller, err := c.verifyIdentity(ctx, u, "", m.Sig)
	if errors.Is(err, errNoDevice) {
		return fmt.Errorf("no current device of yours signed this request: %w", protocol.CodeAuthFailed)
	}
	if err != nil {
		return storeError(err)
	}
	target, _ := protocol.ParseDeviceID(m.Device) // checked by ValidateRequest
	if target == caller.ID {
		return fmt.Errorf("a device cannot remove itself; remove it from another one: %w", protocol.CodeBadRequest)
	}
	_, err = c.srv.store.RemoveDevice(ctx, u.ID, target)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &requestError{protocol.CodeNotFound, "no such current device of yours", err}
	case errors.Is(err, store.ErrLastDevice):
		return &requestError{protocol.CodeConflict, "cannot remove your last device", err}
	case err != nil:
		return storeError(err)
	}
	c.log.Info().Stringer("device", target).Msg("device removed")
	// The removed device's connections end, on every node, and its
	// sessions cannot be resumed (Server.serve checks the device); the
	// user's other devices stay logged in.
	if err := c.srv.logins.revokeDevice(ctx, u.ID, target); err != nil {
		c.log.Warn().Err(err).Msg("device revocation not published: other nodes close its connections at their next check")
	}
	c.announceKeyChange(ctx, u, target, eventDeviceRemoved)
	c.reply(&protocol.Message{Type: protocol.MsgAck, Ref: m.ID, TS: time.Now().UnixMilli()})
	return nil
}

// The events of key_change.
const (
	eventDeviceAdded   = "device_added"
	eventDeviceRemoved = "device_removed"
)

// announceKeyChange tells the user's contacts, in every room the user is
// in, and the user's own connections on this node, that the user's
// devices changed: like Signal's "safety number changed". The event
// carries the device added or removed and the new user fingerprint.
func (c *peer) announceKeyChange(ctx context.Context, u store.User, device uuid.UUID, event string) {
	_, fp, err := c.directory(ctx, u)
	if err != nil {
		c.log.Warn().Err(err).Msg("key change: directory")
		return
	}
	now := time.Now().UnixMilli()
	ev := &protocol.Message{Type: protocol.MsgKeyChange, User: u.Name, Device: device.String(), Event: event, Fingerprint: fp.String(), TS: now}
	if payload, err := ev.Encode(); err == nil {
		c.srv.logins.tellDevices(ctx, u.ID, c, payload)
	}
	rooms, err := c.srv.store.RoomsOf(ctx, u.ID)
	if err != nil {
		c.log.Warn().Err(err).Msg("key change: rooms")
		return
	}
	for _, r := range rooms {
		ev := *ev
		ev.Room = r.Name
		payload, err := ev.Encode()
		if err != nil {
			continue
		}
		if err := c.srv.hub.Publish(ctx, r.Name, 0, payload); err != nil {
			c.log.Warn().Err(err).Str("room", r.Name).Msg("key change: publish")
		}
	}
}

// devicesChannel carries device changes between nodes: the user's id, the
// sending node's id (logins.node), then the encoded key_change to push to
// the user's connections. The broker authenticates it like revocations.
const devicesChannel = "ctl:devices"

// tellDevices pushes payload, an encoded key_change, to every connection
// of user but except: on this node at once, on the others through the
// broker. Delivery is at most once, like the broker's; a full send queue
// drops the notice, not the connection.
func (r *logins) tellDevices(ctx context.Context, user uuid.UUID, except *peer, payload []byte) {
	r.deliver(user, except, payload)
	msg := make([]byte, 0, 32+len(payload))
	msg = append(append(append(msg, user[:]...), r.node[:]...), payload...)
	if err := r.broker.Publish(ctx, devicesChannel, msg); err != nil {
		r.log.Warn().Err(err).Msg("device change not published: the user's connections on other nodes are not told")
	}
}

// receiveDeviceChange delivers a device change that another node
// published; this node's own come back too and are skipped.
func (r *logins) receiveDeviceChange(msg []byte) {
	if len(msg) <= 32 {
		r.log.Warn().Int("size", len(msg)).Msg("device change of the wrong size dropped")
		return
	}
	if uuid.UUID(msg[16:32]) == r.node {
		return
	}
	r.deliver(uuid.UUID(msg[:16]), nil, msg[32:])
}

// deliver queues payload on every connection of user on this node but
// except.
func (r *logins) deliver(user uuid.UUID, except *peer, payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.byUser[user] {
		if p != except {
			p.enqueue(payload)
		}
	}
}
