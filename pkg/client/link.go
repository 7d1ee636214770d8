package client

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Device link codes (docs/protocol.md §10.5). On an existing device:
// StartLink shows a code, WaitLinkOffer waits for the new device to join
// it and checks that the joiner knew the code, ApproveLink adds it. On the
// new device: JoinLink offers its keys, WaitLinkDone waits for approval,
// then Auth logs in.

// Link is a code this device started: the code to show and when it stops
// working.
type Link struct {
	Code    protocol.LinkCode
	Expires time.Time
}

// LinkOffer is a new device that joined a link, its MAC checked.
type LinkOffer struct {
	// Device is the new device's id, Name its label (may be empty).
	Device uuid.UUID
	Name   string
	// Fingerprint is its device fingerprint: show it before approving.
	Fingerprint protocol.Fingerprint
	keys        *protocol.KeyBundle
}

// StartLink asks the server for a link id (link_start) and returns a code
// for it with a fresh secret. The connection must be logged in with Auth
// (or Login, Register) as a device.
func (c *Conn) StartLink(ctx context.Context) (*Link, error) {
	r, err := c.Request(ctx, &protocol.Message{Type: protocol.MsgLinkStart})
	if err != nil {
		return nil, err
	}
	if r.Type != protocol.MsgLink {
		return nil, fmt.Errorf("client: link_start answered with %q: %w", r.Type, protocol.CodeUnexpectedMessage)
	}
	code, err := protocol.NewLinkCode(r.Link)
	if err != nil {
		return nil, err
	}
	return &Link{Code: code, Expires: time.UnixMilli(r.Expires)}, nil
}

// CheckLinkOffer checks a link_offer the server pushed for l: it must be
// for l's link id and user, carry a bundle whose self-signature verifies,
// and a MAC made with l's secret over that bundle's fingerprint. A MAC
// that does not verify means the joiner did not know the code (or the
// server swapped the keys): protocol.CodeBadSignature.
func CheckLinkOffer(l *Link, user string, m *protocol.Message) (*LinkOffer, error) {
	if m.Type != protocol.MsgLinkOffer || !bytes.Equal(m.Link, l.Code.ID[:]) {
		return nil, fmt.Errorf("client: not an offer for this link: %w", protocol.CodeUnexpectedMessage)
	}
	if m.User != user || m.Keys == nil {
		return nil, fmt.Errorf("client: link offer for %q: %w", m.User, protocol.CodeUnexpectedMessage)
	}
	_, id, err := m.Keys.VerifyDevice(user)
	if err != nil {
		return nil, fmt.Errorf("client: link offer: %w", err)
	}
	fp := protocol.DeviceFingerprint(user, id, m.Keys.Signing, m.Keys.Encryption)
	if err := protocol.VerifyLinkMAC(l.Code, fp, m.MAC); err != nil {
		return nil, fmt.Errorf("client: the device that joined did not type this code: %w", err)
	}
	return &LinkOffer{Device: id, Name: m.DeviceName, Fingerprint: fp, keys: m.Keys}, nil
}

// WaitLinkOffer reads the connection's incoming messages until a
// link_offer for l arrives whose MAC verifies, and returns it. Offers that
// fail CheckLinkOffer are passed to rejected (may be nil) and skipped;
// every other message is passed to other (may be nil). It ends with ctx.
func (c *Conn) WaitLinkOffer(ctx context.Context, id *Identity, l *Link, rejected func(error), other func(*protocol.Message)) (*LinkOffer, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("client: no device joined the link: %w", ctx.Err())
		case <-c.Done():
			return nil, c.closedErr()
		case m, ok := <-c.Messages():
			if !ok {
				return nil, c.closedErr()
			}
			if m.Type != protocol.MsgLinkOffer || !bytes.Equal(m.Link, l.Code.ID[:]) {
				if other != nil {
					other(m)
				}
				continue
			}
			o, err := CheckLinkOffer(l, id.User, m)
			if err != nil {
				if rejected != nil {
					rejected(err)
				}
				continue
			}
			return o, nil
		}
	}
}

// ApproveLink approves the offered device with id's signing key
// (link_approve): the server adds it.
func (c *Conn) ApproveLink(ctx context.Context, id *Identity, l *Link, o *LinkOffer) error {
	sig, err := protocol.SignDeviceApproval(id.Signing, id.User, l.Code.ID[:], o.Fingerprint)
	if err != nil {
		return err
	}
	_, err = c.Request(ctx, &protocol.Message{Type: protocol.MsgLinkApprove, Link: l.Code.ID[:], Device: o.Device.String(), Sig: sig})
	return err
}

// JoinLink offers id, a new device of id.User, to the link of code
// (link_join), after proving possession of its encryption key. The
// server's ack means the offer reached the user's devices; approval comes
// as link_done (WaitLinkDone).
func (c *Conn) JoinLink(ctx context.Context, id *Identity, code protocol.LinkCode) error {
	b, err := id.Bundle()
	if err != nil {
		return err
	}
	sig, err := protocol.SignClientAuth(id.Signing, c.exporter, id.User)
	if err != nil {
		return err
	}
	fp, err := id.Fingerprint()
	if err != nil {
		return err
	}
	proof, err := c.proveKey(ctx, id.User, id.Encryption, b.Encryption)
	if err != nil {
		return err
	}
	_, err = c.Request(ctx, &protocol.Message{Type: protocol.MsgLinkJoin, User: id.User, Link: code.ID[:], Keys: b,
		DeviceName: id.DeviceName, Sig: sig, Proof: proof, MAC: protocol.LinkMAC(code, fp)})
	return err
}

// WaitLinkDone waits for the link_done that tells this connection that
// id was approved on code's link; the caller then logs in with Auth. It
// ends with ctx (the code's lifetime is a sensible bound).
func (c *Conn) WaitLinkDone(ctx context.Context, id *Identity, code protocol.LinkCode) error {
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("client: the link was not approved: %w", ctx.Err())
		case <-c.Done():
			return c.closedErr()
		case m, ok := <-c.Messages():
			if !ok {
				return c.closedErr()
			}
			if m.Type == protocol.MsgLinkDone && bytes.Equal(m.Link, code.ID[:]) && m.Device == id.Device.String() {
				return nil
			}
		}
	}
}
