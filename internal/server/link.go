package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Device link codes (docs/protocol.md §10.5): a device E of a user, logged
// in, asks for a link id (link_start); a new device N joins it with its
// bundle and a MAC keyed by the secret half of the code, which the server
// never sees (link_join); E checks the MAC and approves N by signing its
// fingerprint (link_approve), upon which N is added as if it had logged in
// with the password, and told so (link_done). Everything pending lives in
// the ephemeral session store under the code's TTL, so that every node
// sees it: the link record under "link:<hex id>", one offer per joining
// device under "link:<hex id>:offer:<device id>". Attempts are counted by
// the ephemeral limiter.

// Limits of link codes; Config.LinkTTL is their lifetime.
const (
	// linkWindow is the window of the per-user and per-address counts.
	linkWindow = 15 * time.Minute
	// linkStartsPerUser is how many codes a user may ask for in a window.
	linkStartsPerUser = 5
	// linkJoinsPerAddr is how many link_join requests an address may make
	// in a window, whatever their outcome.
	linkJoinsPerAddr = 10
	// linkTriesPerCode is how many link_join requests one link id takes;
	// the one after that voids it.
	linkTriesPerCode = 3
)

// linkChannel carries approvals between nodes: the link id (8 bytes) ‖ the
// device id (16 bytes) approved, for the node holding the new device's
// connection to tell it (link_done).
const linkChannel = "ctl:link"

// linkRecord is what the session store holds for a link id: the user and
// the device that asked for it.
type linkRecord struct {
	User   uuid.UUID `json:"user"`
	Device uuid.UUID `json:"device"`
}

// linkOffer is a device that joined a link, waiting for approval.
type linkOffer struct {
	Keys *protocol.KeyBundle `json:"keys"`
	Name string              `json:"name,omitempty"`
}

func linkKey(id []byte) string { return "link:" + hex.EncodeToString(id) }

func linkOfferKey(id []byte, device uuid.UUID) string {
	return linkKey(id) + ":offer:" + device.String()
}

// errLinkUnknown is what every unknown, expired, used or foreign link id
// gets: the caller cannot tell them apart.
func errLinkUnknown(cause error) error {
	return &requestError{protocol.CodeNotFound, "no such link code: wrong, expired or already used", cause}
}

// linkLimit reserves one attempt of key; rate_limited with text when key is
// at limit, unavailable when the limiter fails.
func (c *peer) linkLimit(ctx context.Context, key string, limit int64, window time.Duration, text string) error {
	ok, _, err := c.srv.limiter.Reserve(ctx, key, limit, window)
	if err != nil {
		return &requestError{protocol.CodeUnavailable, "unavailable", fmt.Errorf("link throttle: %w", err)}
	}
	if !ok {
		return fmt.Errorf("%s: %w", text, protocol.CodeRateLimited)
	}
	return nil
}

// loadLink returns the record of link id, or errLinkUnknown.
func (c *peer) loadLink(ctx context.Context, id []byte) (linkRecord, error) {
	var rec linkRecord
	b, err := c.srv.sessions.store.Get(ctx, linkKey(id))
	if errors.Is(err, ephemeral.ErrNotFound) {
		return rec, errLinkUnknown(err)
	}
	if err != nil {
		return rec, &requestError{protocol.CodeUnavailable, "unavailable", err}
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, errLinkUnknown(err)
	}
	return rec, nil
}

// linkStart answers link_start: a fresh link id bound to this connection's
// user and device, valid for Config.LinkTTL.
func (c *peer) linkStart(ctx context.Context, m *protocol.Message) error {
	if c.user == nil {
		return fmt.Errorf("log in to link a device: %w", protocol.CodeUnauthenticated)
	}
	if c.device == uuid.Nil {
		return fmt.Errorf("this connection is not tied to a device: log in with auth first: %w", protocol.CodeBadRequest)
	}
	if err := c.linkLimit(ctx, "link-start:user:"+c.user.ID.String(), linkStartsPerUser, linkWindow,
		fmt.Sprintf("at most %d link codes every %s", linkStartsPerUser, linkWindow)); err != nil {
		return err
	}
	linkID := make([]byte, protocol.LinkIDSize)
	if _, err := rand.Read(linkID); err != nil {
		return &requestError{protocol.CodeInternal, "internal error", err}
	}
	b, _ := json.Marshal(linkRecord{User: c.user.ID, Device: c.device})
	ttl := c.srv.cfg.LinkTTL
	if err := c.srv.sessions.store.Put(ctx, linkKey(linkID), b, ttl); err != nil {
		return &requestError{protocol.CodeUnavailable, "unavailable", err}
	}
	c.log.Info().Msg("link code started")
	now := time.Now()
	c.reply(&protocol.Message{Type: protocol.MsgLink, Ref: m.ID, Link: linkID, Expires: now.Add(ttl).UnixMilli(), TS: now.UnixMilli()})
	return nil
}

// linkJoin answers link_join from a new device: it checks the bundle, the
// connection signature by the new key and the proof of possession as
// login with keys does, stores the offer and pushes it to the user's
// connections, and answers ack. The device is added only by link_approve.
func (c *peer) linkJoin(ctx context.Context, m *protocol.Message) error {
	challenge := c.takeChallenge()
	if c.user != nil {
		return fmt.Errorf("already logged in as %s: %w", c.user.Name, protocol.CodeBadRequest)
	}
	if err := c.linkLimit(ctx, "link-join:addr:"+c.addr, linkJoinsPerAddr, linkWindow,
		fmt.Sprintf("too many link attempts from this address, retry within %s", linkWindow)); err != nil {
		return err
	}
	rec, err := c.loadLink(ctx, m.Link)
	if err != nil {
		return err
	}
	if err := c.linkLimit(ctx, "link-tries:"+hex.EncodeToString(m.Link), linkTriesPerCode, c.srv.cfg.LinkTTL,
		"this link code was tried too often and is void: make a new one"); err != nil {
		if errors.Is(err, protocol.CodeRateLimited) {
			if derr := c.srv.sessions.store.Delete(ctx, linkKey(m.Link)); derr != nil {
				c.log.Warn().Err(derr).Msg("voided link code not deleted")
			}
		}
		return err
	}
	u, err := c.srv.store.UserByID(ctx, rec.User)
	if errors.Is(err, store.ErrNotFound) || err == nil && u.Name != m.User {
		return errLinkUnknown(err)
	}
	if err != nil {
		return storeError(err)
	}
	signing, deviceID, err := m.Keys.VerifyDevice(u.Name)
	if err != nil {
		return err
	}
	if err := protocol.VerifyClientAuth(signing, c.exporter, u.Name, m.Sig); err != nil {
		return fmt.Errorf("connection signature by the new keys: %w", protocol.CodeAuthFailed)
	}
	if err := challenge.verify(time.Now(), c.exporter, u.Name, m.Keys.Encryption, m.Proof); err != nil {
		return err
	}
	switch _, err := c.srv.store.DeviceByID(ctx, deviceID); {
	case err == nil:
		return &requestError{protocol.CodeConflict, "device id already used", store.ErrConflict}
	case !errors.Is(err, store.ErrNotFound):
		return storeError(err)
	}
	b, _ := json.Marshal(linkOffer{Keys: m.Keys, Name: m.DeviceName})
	if err := c.srv.sessions.store.Put(ctx, linkOfferKey(m.Link, deviceID), b, c.srv.cfg.LinkTTL); err != nil {
		return &requestError{protocol.CodeUnavailable, "unavailable", err}
	}
	c.srv.logins.waitLink(c, m.Link, deviceID)
	offer := &protocol.Message{Type: protocol.MsgLinkOffer, Link: m.Link, User: u.Name, Keys: m.Keys, DeviceName: m.DeviceName, MAC: m.MAC, TS: time.Now().UnixMilli()}
	if payload, err := offer.Encode(); err == nil {
		c.srv.logins.tellDevices(ctx, u.ID, nil, payload)
	}
	c.log.Info().Str("user", u.Name).Stringer("device", deviceID).Msg("link offered")
	c.reply(&protocol.Message{Type: protocol.MsgAck, Ref: m.ID, TS: time.Now().UnixMilli()})
	return nil
}

// linkApprove answers link_approve from the device that started the link:
// the approval must verify with its current signing key over the offered
// device's fingerprint. The link is then used up, the device added, the
// user's contacts and devices told (key_change), and the new device's
// connection gets link_done.
func (c *peer) linkApprove(ctx context.Context, m *protocol.Message) error {
	if c.user == nil || c.device == uuid.Nil {
		return fmt.Errorf("log in with auth on the device that made the code: %w", protocol.CodeUnauthenticated)
	}
	u := *c.user
	rec, err := c.loadLink(ctx, m.Link)
	if err != nil {
		return err
	}
	if rec.User != u.ID || rec.Device != c.device {
		return errLinkUnknown(errors.New("link of another device"))
	}
	target, _ := protocol.ParseDeviceID(m.Device) // checked by ValidateRequest
	b, err := c.srv.sessions.store.Get(ctx, linkOfferKey(m.Link, target))
	if errors.Is(err, ephemeral.ErrNotFound) {
		return &requestError{protocol.CodeNotFound, "no device joined this link with that id", err}
	}
	if err != nil {
		return &requestError{protocol.CodeUnavailable, "unavailable", err}
	}
	var offer linkOffer
	if err := json.Unmarshal(b, &offer); err != nil || offer.Keys == nil {
		return &requestError{protocol.CodeNotFound, "no device joined this link with that id", err}
	}
	fp, err := protocol.BundleFingerprint(u.Name, offer.Keys)
	if err != nil {
		return err
	}
	me, err := c.srv.store.DeviceByID(ctx, c.device)
	if err != nil {
		return storeError(err)
	}
	pub, err := protocol.ParseRSAPublicKey(me.SigningKey)
	if err != nil || !me.RemovedAt.IsZero() {
		return fmt.Errorf("this device is no longer current: %w", protocol.CodeAuthFailed)
	}
	if err := protocol.VerifyDeviceApproval(pub, u.Name, m.Link, fp, m.Sig); err != nil {
		return err
	}
	// One use: of concurrent approvals only the first gets past this.
	if err := c.linkLimit(ctx, "link-used:"+hex.EncodeToString(m.Link), 1, c.srv.cfg.LinkTTL, "used"); err != nil {
		if errors.Is(err, protocol.CodeRateLimited) {
			return errLinkUnknown(err)
		}
		return err
	}
	for _, k := range []string{linkKey(m.Link), linkOfferKey(m.Link, target)} {
		if err := c.srv.sessions.store.Delete(ctx, k); err != nil {
			c.log.Warn().Err(err).Msg("used link code not deleted (it cannot be approved again)")
		}
	}
	d, err := c.srv.store.AddDevice(ctx, newDevice(u.ID, target, offer.Name, offer.Keys))
	switch {
	case errors.Is(err, store.ErrConflict):
		return &requestError{protocol.CodeConflict, "device id already used", err}
	case errors.Is(err, store.ErrLimit):
		return &requestError{protocol.CodeLimitReached, fmt.Sprintf("at most %d devices", store.MaxDevicesPerUser), err}
	case err != nil:
		return storeError(err)
	}
	c.log.Info().Stringer("device", d.ID).Msg("device added by link")
	c.announceKeyChange(ctx, u, d.ID, eventDeviceAdded)
	c.srv.logins.linkApproved(ctx, m.Link, d.ID, u.Name)
	c.reply(&protocol.Message{Type: protocol.MsgAck, Ref: m.ID, Device: d.ID.String(), TS: time.Now().UnixMilli()})
	return nil
}

// linkWaiter names a new device's connection waiting for its link_done.
type linkWaiter struct {
	link   [protocol.LinkIDSize]byte
	device uuid.UUID
}

// waitLink records that c waits for the approval of device on link.
func (r *logins) waitLink(c *peer, link []byte, device uuid.UUID) {
	var w linkWaiter
	copy(w.link[:], link)
	w.device = device
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.linkWaiters == nil {
		r.linkWaiters = make(map[linkWaiter]*peer)
	}
	r.linkWaiters[w] = c
}

// forgetLinksLocked drops c's waits: its connection ended.
func (r *logins) forgetLinksLocked(c *peer) {
	for w, p := range r.linkWaiters {
		if p == c {
			delete(r.linkWaiters, w)
		}
	}
}

// linkApproved tells the new device's connection, on this node at once and
// on the others through the broker, that device was added by link.
func (r *logins) linkApproved(ctx context.Context, link []byte, device uuid.UUID, user string) {
	r.deliverLinkDone(link, device, user)
	msg := append(append(make([]byte, 0, protocol.LinkIDSize+16+len(user)), link...), device[:]...)
	msg = append(msg, user...)
	if err := r.broker.Publish(ctx, linkChannel, msg); err != nil {
		r.log.Warn().Err(err).Msg("link approval not published: a new device on another node logs in when its wait ends")
	}
}

// receiveLink handles a message of linkChannel.
func (r *logins) receiveLink(msg []byte) {
	if len(msg) <= protocol.LinkIDSize+16 {
		r.log.Warn().Int("size", len(msg)).Msg("link approval of the wrong size dropped")
		return
	}
	r.deliverLinkDone(msg[:protocol.LinkIDSize], uuid.UUID(msg[protocol.LinkIDSize:protocol.LinkIDSize+16]), string(msg[protocol.LinkIDSize+16:]))
}

// deliverLinkDone pushes link_done to the connection on this node, if
// any, that waits for device on link, once.
func (r *logins) deliverLinkDone(link []byte, device uuid.UUID, user string) {
	var w linkWaiter
	copy(w.link[:], link)
	w.device = device
	r.mu.Lock()
	p := r.linkWaiters[w]
	delete(r.linkWaiters, w)
	r.mu.Unlock()
	if p == nil {
		return
	}
	done := &protocol.Message{Type: protocol.MsgLinkDone, Link: link, User: user, Device: device.String(), TS: time.Now().UnixMilli()}
	if payload, err := done.Encode(); err == nil {
		p.enqueue(payload)
	}
}
