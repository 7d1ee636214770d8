package server

import (
	"errors"
	"testing"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/e2e"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// TestRemoveDeviceRevokesThatDeviceOnly: alice has three devices, each
// connected, the second also on node B. Removing the second from the
// first closes the second's connections on both nodes with
// session_revoked and makes its ticket worthless; the third device's
// connection stays, and its ticket still resumes. So does the first's.
func TestRemoveDeviceRevokesThatDeviceOnly(t *testing.T) {
	nodeA, nodeB := twoNodes(t)
	const pw = "alice password"
	first, second, third := identity(t, "alice", 0), identity(t, "alice", 1), newDeviceOf(t, "alice", 2)
	c1 := nodeA.dial(t)
	if _, err := c1.Register(ctxT(t), first, pw); err != nil {
		t.Fatal(err)
	}
	c2 := nodeA.dial(t)
	if _, err := c2.Login(ctxT(t), second, pw, true); err != nil {
		t.Fatal(err)
	}
	c2b := nodeB.dial(t)
	if _, err := c2b.Auth(ctxT(t), second); err != nil {
		t.Fatal(err)
	}
	c3 := nodeB.dial(t)
	if _, err := c3.Login(ctxT(t), third, pw, true); err != nil {
		t.Fatal(err)
	}
	ticket2, ticket3 := c2.Ticket(), c3.Ticket()

	if err := c1.RemoveDevice(ctxT(t), first, second.Device); err != nil {
		t.Fatal(err)
	}
	wantRevoked(t, c2)
	wantRevoked(t, c2b)
	stillWorks(t, c1, "alice")
	stillWorks(t, c3, "alice")

	// The removed device's ticket: refused (and its record gone), on
	// either node.
	for _, ts := range []*testServer{nodeA, nodeB} {
		c, err := ts.resume(t, ticket2)
		if err == nil {
			err = waitEnd(t, c)
		}
		var pe *protocol.PeerError
		if !errors.As(err, &pe) || pe.Code != protocol.CodeSessionRevoked && pe.Code != protocol.CodeSessionUnknown {
			t.Fatalf("resuming the removed device's session: %v, want session_revoked (or, once deleted, session_unknown)", err)
		}
	}
	// The third device's ticket resumes, logged in as that device.
	c3.Close()
	r3, err := nodeA.resume(t, ticket3)
	if err != nil {
		t.Fatalf("resuming the third device's session: %v", err)
	}
	if _, this, err := r3.Devices(ctxT(t), third); err != nil || this != third.Device {
		t.Fatalf("resumed session's device: %s, %v; want %s", this, err, third.Device)
	}
	stillWorks(t, r3, "alice")
	// And the removed keys no longer sign in.
	_, err = nodeB.dial(t).Auth(ctxT(t), second)
	wantCode(t, err, protocol.CodeAuthFailed)
}

// TestRemovedDeviceGetsNoNewKeys: after bob removes his second device,
// the next key alice makes wraps to bob's first device and her own only,
// and the server refuses an envelope that still wraps to the removed one.
func TestRemovedDeviceGetsNoNewKeys(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	u := registerConvUsers(t, ts)
	cva := openConv(t, u.ca, u.alice, "bob")
	if _, _, err := cva.SendText(ctxT(t), "before"); err != nil {
		t.Fatal(err)
	}
	if err := u.cb1.RemoveDevice(ctxT(t), u.bob1, u.bob2.Device); err != nil {
		t.Fatal(err)
	}
	wantRevoked(t, u.cb2)

	// An envelope made from the old directory (still listing bob2) is
	// refused.
	me := &e2e.LocalDevice{User: "alice", ID: u.alice.Device, Signing: u.alice.Signing, Encryption: u.alice.Encryption}
	var devs []e2e.Device
	for _, id := range []*client.Identity{u.alice, u.bob1, u.bob2} {
		d, err := id.Public()
		if err != nil {
			t.Fatal(err)
		}
		devs = append(devs, d)
	}
	next := int(cva.KeyVersion()) + 1
	stale, _, err := e2e.NewKeyEnvelope(me, e2e.EnvelopeParams{Conversation: cva.ID(), KeyVersion: uint32(next), Devices: devs})
	if err != nil {
		t.Fatal(err)
	}
	_, err = u.ca.Request(ctxT(t), &protocol.Message{Type: protocol.MsgConvPutKey, Conv: cva.ID().String(), Version: next, Envelope: stale})
	wantCode(t, err, protocol.CodeBadRequest)

	// Alice's client, told of the change, rotates to the current devices.
	if err := cva.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cva.SendText(ctxT(t), "after"); err != nil {
		t.Fatal(err)
	}
	r, err := u.ca.Request(ctxT(t), &protocol.Message{Type: protocol.MsgConvKeys, Conv: cva.ID().String()})
	if err != nil || len(r.Envelopes) < 2 {
		t.Fatalf("conv_keys: %+v, %v", r, err)
	}
	latest, err := e2e.ParseKeyEnvelope(r.Envelopes[len(r.Envelopes)-1].Envelope)
	if err != nil {
		t.Fatal(err)
	}
	if int(latest.KeyVersion) != next {
		t.Fatalf("latest key version %d, want %d (a rotation)", latest.KeyVersion, next)
	}
	for _, st := range latest.Stanzas {
		if st.Device == u.bob2.Device {
			t.Fatalf("the key after the removal wraps to the removed device %s", st.Device)
		}
	}
	if len(latest.Stanzas) != 2 {
		t.Fatalf("latest envelope wraps to %d devices, want alice's and bob's first", len(latest.Stanzas))
	}
}
