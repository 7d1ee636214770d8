package server

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// TestDevices: register makes one device; login with new keys from a
// second identity adds another; both authenticate; lookup and devices
// list both with pkg/e2e's user fingerprint; removing the second from the
// first closes the second's connection with session_revoked, and its keys
// no longer authenticate.
func TestDevices(t *testing.T) {
	ts := authServer(t)
	const pw = "alice password"
	first, second, bob := identity(t, "alice", 0), identity(t, "alice", 1), identity(t, "bob", 2)
	c1 := ts.dial(t)
	if _, err := c1.Register(ctxT(t), first, pw); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.dial(t).Register(ctxT(t), bob, "bob password"); err != nil {
		t.Fatal(err)
	}
	own, this, err := c1.Devices(ctxT(t), first)
	if err != nil || len(own.Devices) != 1 || own.Devices[0].ID != first.Device || this != first.Device ||
		own.Fingerprint != userFingerprint(t, first) {
		t.Fatalf("devices after register: %+v, this %s, %v", own, this, err)
	}

	second.DeviceName = "laptop"
	c2 := ts.dial(t)
	if _, err := c2.Login(ctxT(t), second, pw, true); err != nil {
		t.Fatal(err)
	}
	for _, id := range []*client.Identity{first, second} {
		if _, err := ts.dial(t).Auth(ctxT(t), id); err != nil {
			t.Fatalf("auth as device %s: %v", id.Device, err)
		}
	}
	cb := ts.dial(t)
	if _, err := cb.Auth(ctxT(t), bob); err != nil {
		t.Fatal(err)
	}
	look, err := cb.Lookup(ctxT(t), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(look.Devices) != 2 || look.Devices[0].ID != first.Device || look.Devices[1].ID != second.Device ||
		look.Devices[1].Name != "laptop" || look.Fingerprint != userFingerprint(t, first, second) {
		t.Fatalf("lookup of alice: %+v", look)
	}
	if own, this, err := c2.Devices(ctxT(t), second); err != nil || len(own.Devices) != 2 || this != second.Device {
		t.Fatalf("devices on the second: %+v, this %s, %v", own, this, err)
	}

	if err := c1.RemoveDevice(ctxT(t), first, second.Device); err != nil {
		t.Fatal(err)
	}
	wantRevoked(t, c2)
	_, err = ts.dial(t).Auth(ctxT(t), second)
	wantCode(t, err, protocol.CodeAuthFailed)
	stillWorks(t, c1, "alice")
	if own, _, err := c1.Devices(ctxT(t), first); err != nil || len(own.Devices) != 1 || own.Devices[0].ID != first.Device {
		t.Fatalf("devices after the removal: %+v, %v", own, err)
	}
	// Removed for good: its id cannot come back.
	_, err = ts.dial(t).Login(ctxT(t), second, pw, true)
	wantCode(t, err, protocol.CodeConflict)
}

// TestRemoveDeviceRefusals: the last device, another user's device, an
// unknown one, a request signed by no current device, and an anonymous
// connection are all refused, and nothing is removed.
func TestRemoveDeviceRefusals(t *testing.T) {
	ts := authServer(t)
	alice, bob := identity(t, "alice", 0), identity(t, "bob", 1)
	ca, cb := ts.dial(t), ts.dial(t)
	if _, err := ca.Register(ctxT(t), alice, "alice password"); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Register(ctxT(t), bob, "bob password"); err != nil {
		t.Fatal(err)
	}
	err := ca.RemoveDevice(ctxT(t), alice, alice.Device)
	wantCode(t, err, protocol.CodeBadRequest) // its own, and the last
	err = ca.RemoveDevice(ctxT(t), alice, bob.Device)
	wantCode(t, err, protocol.CodeNotFound)
	err = ca.RemoveDevice(ctxT(t), alice, uuid.New())
	wantCode(t, err, protocol.CodeNotFound)
	// Signed with bob's keys on alice's connection.
	err = ca.RemoveDevice(ctxT(t), &client.Identity{User: "alice", Signing: bob.Signing}, bob.Device)
	wantCode(t, err, protocol.CodeAuthFailed)
	// For bob, on alice's connection.
	err = ca.RemoveDevice(ctxT(t), bob, bob.Device)
	wantCode(t, err, protocol.CodeUnauthenticated)
	err = ts.dial(t).RemoveDevice(ctxT(t), alice, alice.Device)
	wantCode(t, err, protocol.CodeUnauthenticated)
	_, _, err = ts.dial(t).Devices(ctxT(t), alice)
	wantCode(t, err, protocol.CodeUnauthenticated)

	for _, id := range []*client.Identity{alice, bob} {
		if _, err := ts.dial(t).Auth(ctxT(t), id); err != nil {
			t.Fatalf("%s's device after the refusals: %v", id.User, err)
		}
	}
	stillWorks(t, ca, "alice")
	stillWorks(t, cb, "bob")
}

// TestAuthDevice: auth naming an unknown device, or another user's, fails
// even with the right keys; auth without a device id (a profile from
// before devices) finds the device by its signature and learns its id.
func TestAuthDevice(t *testing.T) {
	ts := authServer(t)
	alice, bob := identity(t, "alice", 0), identity(t, "bob", 1)
	if _, err := ts.dial(t).Register(ctxT(t), alice, "alice password"); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.dial(t).Register(ctxT(t), bob, "bob password"); err != nil {
		t.Fatal(err)
	}
	for _, device := range []uuid.UUID{uuid.New(), bob.Device} {
		id := *alice
		id.Device = device
		_, err := ts.dial(t).Auth(ctxT(t), &id)
		wantCode(t, err, protocol.CodeAuthFailed)
	}
	old := *alice
	old.Device = uuid.Nil
	r, err := ts.dial(t).Auth(ctxT(t), &old)
	if err != nil || r.Device != alice.Device.String() || old.Device != alice.Device {
		t.Fatalf("auth without a device id: %+v, %v; learned %s, want %s", r, err, old.Device, alice.Device)
	}
}

// TestUpgradedAccountIsOneDevice: an account whose keys were published
// before devices existed (a version-1 bundle in key_sets, no device) is,
// once the server's store is migrated, one device with the user's id as
// device id: a client from before devices signs in without a device id
// and learns it, then signs in naming it; lookup lists the device with
// its version-1 self-signature, checked, and pkg/e2e's user fingerprint.
func TestUpgradedAccountIsOneDevice(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	alice := identity(t, "alice", 0)
	old, err := store.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := protocol.NewKeyBundle("alice", alice.Signing, &alice.Encryption.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	u, _, err := old.CreateUserWithKeys(ctx, store.User{Name: "alice", PasswordHash: "$argon2id$v=19$m=1024,t=1,p=2$c2FsdA$aGFzaA"},
		store.KeySet{SigningKey: b.Signing, EncryptionKey: b.Encryption, SelfSignature: b.SelfSignature})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	// Take the database back to before migration 0004.
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TABLE devices`, `DELETE FROM schema_migrations WHERE version >= 4`} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := store.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ts := authServer(t, func(_ *Config, d *Deps) { d.Store = db })
	legacy := *alice
	legacy.Device = uuid.Nil
	c := ts.dial(t)
	r, err := c.Auth(ctxT(t), &legacy)
	if err != nil || r.Device != u.ID.String() || legacy.Device != u.ID {
		t.Fatalf("auth of the upgraded account: %+v, %v; learned %s, want the user id %s", r, err, legacy.Device, u.ID)
	}
	if _, err := ts.dial(t).Auth(ctxT(t), &legacy); err != nil {
		t.Fatalf("auth naming the learned device: %v", err)
	}
	look, err := c.Lookup(ctxT(t), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(look.Devices) != 1 || look.Devices[0].ID != u.ID || look.Fingerprint != userFingerprint(t, &legacy) ||
		string(look.Devices[0].Keys.SelfSignature) != string(b.SelfSignature) {
		t.Fatalf("lookup of the upgraded account: %+v", look)
	}
}

// TestDeviceLimit: a 17th device is limit_reached, not counted as a
// failed login, and adds nothing.
func TestDeviceLimit(t *testing.T) {
	ts := authServer(t, withoutRateLimits, func(c *Config, _ *Deps) { c.LoginFailuresPerUser = 1 })
	const pw = "alice password"
	alice := identity(t, "alice", 0)
	if _, err := ts.dial(t).Register(ctxT(t), alice, pw); err != nil {
		t.Fatal(err)
	}
	c := ts.dial(t)
	for i := 1; i <= store.MaxDevicesPerUser; i++ {
		d := *alice // the same keys may serve several devices
		d.Device = uuid.New()
		_, err := c.Login(ctxT(t), &d, pw, true)
		if i < store.MaxDevicesPerUser && err != nil {
			t.Fatalf("device %d: %v", i+1, err)
		}
		if i == store.MaxDevicesPerUser {
			wantCode(t, err, protocol.CodeLimitReached)
		}
	}
	u, _ := ts.store.UserByName(ctxT(t), "alice")
	if ds, err := ts.store.DevicesOf(ctxT(t), u.ID); err != nil || len(ds) != store.MaxDevicesPerUser {
		t.Fatalf("%d devices, %v; want %d", len(ds), err, store.MaxDevicesPerUser)
	}
	// One failed password would have used up alice's limit of one.
	if _, err := c.Login(ctxT(t), alice, pw, false); err != nil {
		t.Fatalf("a plain login after the refusal: %v", err)
	}
}

// TestDeviceChangeAcrossNodes: a device added on node A is told to the
// user's connection on node B, through the broker (Redis).
func TestDeviceChangeAcrossNodes(t *testing.T) {
	nodeA, nodeB := twoNodes(t)

	const pw = "alice password"
	alice, laptop := identity(t, "alice", 0), identity(t, "alice", 1)
	if _, err := nodeA.dial(t).Register(ctxT(t), alice, pw); err != nil {
		t.Fatal(err)
	}
	onB := nodeB.dial(t)
	if _, err := onB.Auth(ctxT(t), alice); err != nil {
		t.Fatal(err)
	}
	if _, err := nodeA.dial(t).Login(ctxT(t), laptop, pw, true); err != nil {
		t.Fatal(err)
	}
	ev := next(t, onB, protocol.MsgKeyChange)
	if ev.User != "alice" || ev.Room != "" || ev.Device != laptop.Device.String() || ev.Event != "device_added" ||
		ev.Fingerprint != userFingerprint(t, alice, laptop).String() {
		t.Fatalf("alice's device on node B was told %+v", ev)
	}
}
