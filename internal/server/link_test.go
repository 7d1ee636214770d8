package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// newDeviceOf returns identity(t, user, slot) as a device of its own: the
// same keys, a fresh id (the key pool is small).
func newDeviceOf(t *testing.T, user string, slot int) *client.Identity {
	id := identity(t, user, slot)
	id.Device = uuid.New()
	return id
}

// linkUp runs the whole link path: existing signs in n through conn e
// (logged in as existing); it returns n's connection, logged in.
func linkUp(t *testing.T, ts, tsN *testServer, e *client.Conn, existing, n *client.Identity) *client.Conn {
	t.Helper()
	l, err := e.StartLink(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	code, err := protocol.ParseLinkCode(l.Code.String())
	if err != nil || code != l.Code {
		t.Fatalf("code %q parses to %v, %v", l.Code, code, err)
	}
	cn := tsN.dial(t)
	if err := cn.JoinLink(ctxT(t), n, code); err != nil {
		t.Fatalf("join: %v", err)
	}
	o, err := e.WaitLinkOffer(ctxT(t), existing, l, func(err error) { t.Errorf("offer rejected: %v", err) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fp, _ := n.Fingerprint(); o.Device != n.Device || o.Fingerprint != fp {
		t.Fatalf("offer %+v, want device %s fingerprint %s", o, n.Device, fp)
	}
	if err := e.ApproveLink(ctxT(t), existing, l, o); err != nil {
		t.Fatalf("approve: %v", err)
	}
	if err := cn.WaitLinkDone(ctxT(t), n, code); err != nil {
		t.Fatal(err)
	}
	if r, err := cn.Auth(ctxT(t), n); err != nil || r.Device != n.Device.String() {
		t.Fatalf("auth of the linked device: %+v, %v", r, err)
	}
	return cn
}

// TestDeviceLink: a device added by a link code, without the password:
// it then authenticates, the directory lists it, the user's other
// device and a contact sharing a room get key_change, and the code is
// spent (a second join and a second approval are not_found).
func TestDeviceLink(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	first, other, bob := identity(t, "alice", 0), newDeviceOf(t, "alice", 2), identity(t, "bob", 2)
	e := ts.dial(t)
	if _, err := e.Register(ctxT(t), first, "alice password"); err != nil {
		t.Fatal(err)
	}
	cb := ts.dial(t)
	if _, err := cb.Register(ctxT(t), bob, "bob password"); err != nil {
		t.Fatal(err)
	}
	// A second device of alice, by password, to see that it is told.
	c2 := ts.dial(t)
	if _, err := c2.Login(ctxT(t), other, "alice password", true); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Conn{e, cb} {
		if _, err := c.Join(ctxT(t), "lobby", ""); err != nil {
			t.Fatal(err)
		}
	}

	n := identity(t, "alice", 1)
	cn := linkUp(t, ts, ts, e, first, n)

	if m := next(t, c2, protocol.MsgKeyChange); m.Event != eventDeviceAdded || m.Device != n.Device.String() ||
		m.Fingerprint != userFingerprint(t, first, other, n).String() {
		t.Fatalf("alice's other device got %+v", m)
	}
	if m := next(t, cb, protocol.MsgKeyChange); m.User != "alice" || m.Event != eventDeviceAdded || m.Device != n.Device.String() {
		t.Fatalf("bob got %+v", m)
	}
	look, err := cb.Lookup(ctxT(t), "alice")
	if err != nil || len(look.Devices) != 3 || look.Fingerprint != userFingerprint(t, first, other, n) {
		t.Fatalf("lookup after the link: %+v, %v", look, err)
	}
	stillWorks(t, cn, "alice")
}

// TestDeviceLinkRefusals: what each bad link attempt gets.
func TestDeviceLinkRefusals(t *testing.T) {
	// Each case has a server and a user of its own (counts are per user
	// and per address).
	var (
		ts    *testServer
		first *client.Identity
		e     *client.Conn
	)
	short := func(c *Config, _ *Deps) { c.LinkTTL = time.Second }
	fresh := func(t *testing.T, opts ...serverOption) {
		ts = authServer(t, append(opts, withoutRateLimits)...)
		first = identity(t, "alice", 0)
		e = ts.dial(t)
		if _, err := e.Register(ctxT(t), first, "alice password"); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("NotLoggedIn", func(t *testing.T) {
		fresh(t)
		_, err := ts.dial(t).StartLink(ctxT(t))
		wantCode(t, err, protocol.CodeUnauthenticated)
	})

	t.Run("UnknownLinkID", func(t *testing.T) {
		fresh(t)
		l, err := e.StartLink(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		code := l.Code
		code.ID[0] ^= 1
		err = ts.dial(t).JoinLink(ctxT(t), newDeviceOf(t, first.User, 1), code)
		wantCode(t, err, protocol.CodeNotFound)
	})

	t.Run("OtherUser", func(t *testing.T) {
		fresh(t)
		l, err := e.StartLink(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		// The link is alice's: joining it as bob finds nothing.
		err = ts.dial(t).JoinLink(ctxT(t), newDeviceOf(t, "bob", 1), l.Code)
		wantCode(t, err, protocol.CodeNotFound)
	})

	t.Run("WrongSecret", func(t *testing.T) {
		fresh(t)
		// The server cannot tell (it never sees the secret): the existing
		// device refuses the offer, and nothing is added.
		l, err := e.StartLink(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		code := l.Code
		code.Secret[3] ^= 0x40
		n := newDeviceOf(t, first.User, 1)
		if err := ts.dial(t).JoinLink(ctxT(t), n, code); err != nil {
			t.Fatal(err)
		}
		var rejected error
		ctx, cancel := context.WithTimeout(ctxT(t), 3*time.Second)
		defer cancel()
		_, err = e.WaitLinkOffer(ctx, first, l, func(err error) { rejected = err }, nil)
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(rejected, protocol.CodeBadSignature) {
			t.Fatalf("wait = %v, rejected %v; want a timeout after a bad_signature rejection", err, rejected)
		}
		// An approval of it anyway by a device that skipped the check
		// works only with a signature; a wrong one is bad_signature.
		bogus := &client.LinkOffer{Device: n.Device}
		err = e.ApproveLink(ctxT(t), first, l, bogus)
		wantCode(t, err, protocol.CodeBadSignature)
		if own, _, _ := e.Devices(ctxT(t), first); len(own.Devices) != 1 {
			t.Fatalf("devices after a refused link: %d", len(own.Devices))
		}
	})

	t.Run("Expired", func(t *testing.T) {
		fresh(t, short)
		l, err := e.StartLink(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond) // past LinkTTL
		err = ts.dial(t).JoinLink(ctxT(t), newDeviceOf(t, first.User, 1), l.Code)
		wantCode(t, err, protocol.CodeNotFound)
	})

	t.Run("Reused", func(t *testing.T) {
		fresh(t)
		l, err := e.StartLink(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		n := newDeviceOf(t, first.User, 1)
		cn := ts.dial(t)
		if err := cn.JoinLink(ctxT(t), n, l.Code); err != nil {
			t.Fatal(err)
		}
		o, err := e.WaitLinkOffer(ctxT(t), first, l, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.ApproveLink(ctxT(t), first, l, o); err != nil {
			t.Fatal(err)
		}
		err = e.ApproveLink(ctxT(t), first, l, o)
		wantCode(t, err, protocol.CodeNotFound)
		err = ts.dial(t).JoinLink(ctxT(t), newDeviceOf(t, first.User, 2), l.Code)
		wantCode(t, err, protocol.CodeNotFound)
	})

	t.Run("TriesPerCode", func(t *testing.T) {
		fresh(t)
		l, err := e.StartLink(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		for range linkTriesPerCode {
			if err := ts.dial(t).JoinLink(ctxT(t), newDeviceOf(t, first.User, 1), l.Code); err != nil {
				t.Fatal(err)
			}
		}
		err = ts.dial(t).JoinLink(ctxT(t), newDeviceOf(t, first.User, 1), l.Code)
		wantCode(t, err, protocol.CodeRateLimited)
		// The code is void now.
		err = ts.dial(t).JoinLink(ctxT(t), newDeviceOf(t, first.User, 1), l.Code)
		wantCode(t, err, protocol.CodeNotFound)
	})

	t.Run("ApproveByAnotherDevice", func(t *testing.T) {
		fresh(t)
		l, err := e.StartLink(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		n := newDeviceOf(t, first.User, 1)
		if err := ts.dial(t).JoinLink(ctxT(t), n, l.Code); err != nil {
			t.Fatal(err)
		}
		o, err := e.WaitLinkOffer(ctxT(t), first, l, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Only the device that made the code approves.
		other := ts.dial(t)
		third := newDeviceOf(t, first.User, 2)
		if _, err := other.Login(ctxT(t), third, "alice password", true); err != nil {
			t.Fatal(err)
		}
		err = other.ApproveLink(ctxT(t), third, l, o)
		wantCode(t, err, protocol.CodeNotFound)
	})

	t.Run("MissingProof", func(t *testing.T) {
		fresh(t)
		l, err := e.StartLink(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		n := newDeviceOf(t, first.User, 1)
		c := ts.dial(t)
		b, _ := n.Bundle()
		sig, _ := protocol.SignClientAuth(n.Signing, c.ChannelBinding(), first.User)
		fp, _ := n.Fingerprint()
		// A proof of the right size without a key_challenge: bad_key.
		_, err = c.Request(ctxT(t), &protocol.Message{Type: protocol.MsgLinkJoin, User: first.User, Link: l.Code.ID[:], Keys: b,
			Sig: sig, Proof: make([]byte, protocol.ChallengeSize), MAC: protocol.LinkMAC(l.Code, fp)})
		wantCode(t, err, protocol.CodeBadKey)
		// No mac at all: bad_request.
		_, err = c.Request(ctxT(t), &protocol.Message{Type: protocol.MsgLinkJoin, User: first.User, Link: l.Code.ID[:], Keys: b,
			Sig: sig, Proof: make([]byte, protocol.ChallengeSize)})
		wantCode(t, err, protocol.CodeBadRequest)
	})
}

// TestDeviceLinkRateLimits: an address gets linkJoinsPerAddr joins in a
// window, a user linkStartsPerUser codes.
func TestDeviceLinkRateLimits(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	first := identity(t, "alice", 0)
	e := ts.dial(t)
	if _, err := e.Register(ctxT(t), first, "alice password"); err != nil {
		t.Fatal(err)
	}
	var code protocol.LinkCode
	for i := range linkStartsPerUser {
		l, err := e.StartLink(ctxT(t))
		if err != nil {
			t.Fatalf("code %d: %v", i+1, err)
		}
		code = l.Code
	}
	_, err := e.StartLink(ctxT(t))
	wantCode(t, err, protocol.CodeRateLimited)

	bad := code
	bad.ID[7] ^= 1
	for range linkJoinsPerAddr {
		err := ts.dial(t).JoinLink(ctxT(t), newDeviceOf(t, "alice", 1), bad)
		wantCode(t, err, protocol.CodeNotFound)
	}
	// Now even the right code is refused from this address.
	err = ts.dial(t).JoinLink(ctxT(t), newDeviceOf(t, "alice", 1), code)
	wantCode(t, err, protocol.CodeRateLimited)
}

// TestDeviceLinkPasswordPathStays: a user who has no device at hand still
// adds one with the password (login with keys), also after devices were
// linked, and that device can link the next one.
func TestDeviceLinkPasswordPathStays(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	first := identity(t, "alice", 0)
	if _, err := ts.dial(t).Register(ctxT(t), first, "alice password"); err != nil {
		t.Fatal(err)
	}
	// Every device lost: no connection, no keys. The password adds one.
	fresh := newDeviceOf(t, "alice", 1)
	c := ts.dial(t)
	if _, err := c.Login(ctxT(t), fresh, "alice password", true); err != nil {
		t.Fatal(err)
	}
	linked := newDeviceOf(t, "alice", 2)
	linkUp(t, ts, ts, c, fresh, linked)
	// A wrong password still adds nothing.
	_, err := ts.dial(t).Login(ctxT(t), newDeviceOf(t, "alice", 2), "wrong password", true)
	wantCode(t, err, protocol.CodeAuthFailed)
}

// TestDeviceLinkTwoNodes: the existing device on one node, the new one on
// another, link records and counters in a real Redis, the approval carried
// by the broker.
func TestDeviceLinkTwoNodes(t *testing.T) {
	nodeA, nodeB := twoNodes(t)
	first := identity(t, "alice", 0)
	e := nodeA.dial(t)
	if _, err := e.Register(ctxT(t), first, "alice password"); err != nil {
		t.Fatal(err)
	}
	cn := linkUp(t, nodeA, nodeB, e, first, identity(t, "alice", 1))
	stillWorks(t, cn, "alice")
}
