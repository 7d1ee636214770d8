package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/internal/password"
	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/e2e"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

var (
	idOnce sync.Once
	idKeys []*rsa.PrivateKey
)

// identity returns a 2048-bit identity for user, its keys drawn from a pool
// made once per test binary (slot picks which pair). Its device id is
// derived from user and slot, so that calling it again gives the same
// device.
func identity(t *testing.T, user string, slot int) *client.Identity {
	t.Helper()
	idOnce.Do(func() {
		for range 6 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			idKeys = append(idKeys, k)
		}
	})
	return &client.Identity{User: user, Device: testDeviceID(user, slot), Signing: idKeys[2*slot], Encryption: idKeys[2*slot+1]}
}

// testDeviceID is the device id of identity(t, user, slot).
func testDeviceID(user string, slot int) uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "%s/%d", user, slot))
}

// userFingerprint is the user fingerprint of ids, all devices of one
// user, as pkg/e2e computes it.
func userFingerprint(t *testing.T, ids ...*client.Identity) protocol.Fingerprint {
	t.Helper()
	var ds []e2e.Device
	for _, id := range ids {
		d, err := id.Public()
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	fp, err := e2e.UserFingerprint(ids[0].User, ds)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

func authServer(t *testing.T, opts ...serverOption) *testServer {
	return startServer(t, append([]serverOption{func(c *Config, _ *Deps) { c.AllowAnonymous = false }}, opts...)...)
}

func wantCode(t *testing.T, err error, want protocol.Code) {
	t.Helper()
	var pe *protocol.PeerError
	if !errors.As(err, &pe) || pe.Code != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestRegisterLookupAndMutualAuth(t *testing.T) {
	ts := authServer(t)
	alice, bob := identity(t, "alice", 0), identity(t, "bob", 1)
	ca, cb := ts.dial(t), ts.dial(t)

	_, err := ca.Join(ctxT(t), "general", "")
	wantCode(t, err, protocol.CodeUnauthenticated)

	for _, x := range []struct {
		c  *client.Conn
		id *client.Identity
	}{{ca, alice}, {cb, bob}} {
		r, err := x.c.Register(ctxT(t), x.id, "correct horse battery")
		if err != nil {
			t.Fatal(err)
		}
		fp := userFingerprint(t, x.id)
		if r.Type != protocol.MsgAuthed || r.User != x.id.User || r.Device != x.id.Device.String() || r.Fingerprint != fp.String() {
			t.Fatalf("register answer %+v, want authed by device %s, %s", r, x.id.Device, fp)
		}
	}
	// Each sees the other's fingerprint, checked client-side.
	got, err := ca.Lookup(ctxT(t), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if want := userFingerprint(t, bob); got.Fingerprint != want || len(got.Devices) != 1 || got.Devices[0].ID != bob.Device {
		t.Fatalf("alice sees bob as %s, want %s", got.Fingerprint, want)
	}
	_, err = ca.Lookup(ctxT(t), "nobody")
	wantCode(t, err, protocol.CodeNotFound)

	// Logged-in users speak as their account, whatever name they ask for.
	for _, c := range []*client.Conn{ca, cb} {
		if _, err := c.Join(ctxT(t), "General", "mallory"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ca.Send(ctxT(t), "general", "hi bob"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, cb, protocol.MsgMessage); m.From != "alice" || m.Body != "hi bob" || m.Anon {
		t.Fatalf("bob got %+v", m)
	}
	// Rooms are durable.
	u, _ := ts.store.UserByName(ctxT(t), "alice")
	rooms, err := ts.store.RoomsOf(ctxT(t), u.ID)
	if err != nil || len(rooms) != 1 || rooms[0].Name != "general" {
		t.Fatalf("alice's rooms: %v %v", rooms, err)
	}

	// A later connection authenticates by signature alone.
	c2 := ts.dial(t)
	if _, err := c2.Auth(ctxT(t), alice); err != nil {
		t.Fatalf("auth: %v", err)
	}
	// Someone with bob's keys cannot claim to be alice.
	c3 := ts.dial(t)
	_, err = c3.Auth(ctxT(t), &client.Identity{User: "alice", Signing: bob.Signing, Encryption: bob.Encryption})
	wantCode(t, err, protocol.CodeAuthFailed)
	_, err = c3.Auth(ctxT(t), identity(t, "nobody", 2))
	wantCode(t, err, protocol.CodeAuthFailed)

	// A signature made for one connection is worthless on another.
	sig, _ := protocol.SignClientAuth(alice.Signing, c2.ChannelBinding(), "alice")
	_, err = c3.Request(ctxT(t), &protocol.Message{Type: protocol.MsgAuth, User: "alice", Sig: sig})
	wantCode(t, err, protocol.CodeAuthFailed)

	// A resumed session keeps its user.
	ticket := c2.Ticket()
	c2.Close()
	r := ts.dial(t, func(cfg *client.Config) { cfg.Resume = &ticket; cfg.ResumeOnly = true })
	if r.Session().User != "alice" {
		t.Fatalf("resumed session user %q, want alice", r.Session().User)
	}
	if _, err := r.Join(ctxT(t), "general", ""); err != nil {
		t.Fatalf("resumed session cannot join: %v", err)
	}
}

func TestLoginPasswordAndThrottle(t *testing.T) {
	ts := authServer(t, func(c *Config, _ *Deps) { c.LoginFailuresPerUser = 3 })
	alice := identity(t, "alice", 0)
	if _, err := ts.dial(t).Register(ctxT(t), alice, "s3cret-'; DROP TABLE users;--"); err != nil {
		t.Fatal(err)
	}
	c := ts.dial(t)
	if _, err := c.Login(ctxT(t), alice, "s3cret-'; DROP TABLE users;--", false); err != nil {
		t.Fatalf("login: %v", err)
	}
	c = ts.dial(t)
	_, errWrong := c.Login(ctxT(t), alice, "wrong password", false)
	wantCode(t, errWrong, protocol.CodeAuthFailed)
	_, errUnknown := c.Login(ctxT(t), identity(t, "nobody", 2), "wrong password", false)
	wantCode(t, errUnknown, protocol.CodeAuthFailed)
	if errWrong.Error() != errUnknown.Error() {
		t.Fatalf("unknown user and wrong password differ: %q vs %q", errUnknown, errWrong)
	}
	// Two failures so far for alice; the third reaches the limit.
	_, err := c.Login(ctxT(t), alice, "wrong again", false)
	wantCode(t, err, protocol.CodeAuthFailed)
	_, err = c.Login(ctxT(t), alice, "wrong again!", false)
	wantCode(t, err, protocol.CodeAuthFailed)
	_, err = c.Login(ctxT(t), alice, "s3cret-'; DROP TABLE users;--", false)
	wantCode(t, err, protocol.CodeRateLimited)
	// Someone guessing alice's password does not lock out her devices:
	// signature authentication is counted apart.
	if _, err := c.Auth(ctxT(t), alice); err != nil {
		t.Fatalf("auth during a password lockout: %v", err)
	}
}

// TestAuthThrottlePerAddress: failed signatures are limited per client
// address, so an attacker elsewhere cannot lock out a user's devices.
func TestAuthThrottlePerAddress(t *testing.T) {
	ts := authServer(t, func(c *Config, _ *Deps) {
		c.LoginFailuresPerAddr = 3
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	alice, mallory := identity(t, "alice", 0), identity(t, "alice", 1)
	if _, err := ts.dial(t).Register(ctxT(t), alice, "alice password"); err != nil {
		t.Fatal(err)
	}
	from := func(addr string) func(*client.Config) {
		return func(cfg *client.Config) { cfg.Header = http.Header{"X-Forwarded-For": {addr}} }
	}
	attacker := ts.dial(t, from("203.0.113.66"))
	for range 3 {
		_, err := attacker.Auth(ctxT(t), mallory)
		wantCode(t, err, protocol.CodeAuthFailed)
	}
	_, err := attacker.Auth(ctxT(t), alice)
	wantCode(t, err, protocol.CodeRateLimited)
	// Alice's device, elsewhere, is not locked out.
	if _, err := ts.dial(t, from("198.51.100.5")).Auth(ctxT(t), alice); err != nil {
		t.Fatalf("alice's device after an attacker's failures: %v", err)
	}
}

func TestKeyChangeReachesContacts(t *testing.T) {
	ts := authServer(t)
	alice, bob := identity(t, "alice", 0), identity(t, "bob", 1)
	ca, cb := ts.dial(t), ts.dial(t)
	if _, err := ca.Register(ctxT(t), alice, "alice password"); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Register(ctxT(t), bob, "bob password"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Conn{ca, cb} {
		if _, err := c.Join(ctxT(t), "team", ""); err != nil {
			t.Fatal(err)
		}
	}
	// Alice on a new device: new keys, authorised by her password.
	device := identity(t, "alice", 2)
	cn := ts.dial(t)
	r, err := cn.Login(ctxT(t), device, "alice password", true)
	if err != nil {
		t.Fatal(err)
	}
	// The answer, and bob in the room they share, and alice's first device
	// both there and directly, all have the device added and alice's new
	// user fingerprint.
	bothFP := userFingerprint(t, alice, device).String()
	if r.Device != device.Device.String() || r.Fingerprint != bothFP {
		t.Fatalf("login with new keys: %+v", r)
	}
	ev := next(t, cb, protocol.MsgKeyChange)
	if ev.User != "alice" || ev.Device != device.Device.String() || ev.Event != "device_added" || ev.Fingerprint != bothFP || ev.Room != "team" {
		t.Fatalf("key change event %+v", ev)
	}
	for range 2 {
		ev := next(t, ca, protocol.MsgKeyChange)
		if ev.User != "alice" || ev.Device != device.Device.String() || ev.Fingerprint != bothFP {
			t.Fatalf("alice's first device was told %+v", ev)
		}
	}
	// Both devices authenticate: a new device adds, it does not replace.
	for _, id := range []*client.Identity{alice, device} {
		if _, err := ts.dial(t).Auth(ctxT(t), id); err != nil {
			t.Fatalf("auth as device %s: %v", id.Device, err)
		}
	}
	u, _ := ts.store.UserByName(ctxT(t), "alice")
	if ds, err := ts.store.DevicesOf(ctxT(t), u.ID); err != nil || len(ds) != 2 {
		t.Fatalf("alice's devices: %d, %v", len(ds), err)
	}
}

// TestRegisterBadInput: each bad registration gets its code and leaves the
// database without the user.
func TestRegisterBadInput(t *testing.T) {
	ts := authServer(t)
	alice := identity(t, "alice", 0)
	other := identity(t, "alice", 1)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallDER, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)

	cases := []struct {
		name string
		user string
		mod  func(c *client.Conn, m *protocol.Message)
		want protocol.Code
	}{
		{"password too short", "alice", func(_ *client.Conn, m *protocol.Message) { m.Password = "short" }, protocol.CodeBadRequest},
		{"password too long", "alice", func(_ *client.Conn, m *protocol.Message) { m.Password = strings.Repeat("p", 1025) }, protocol.CodeBadRequest},
		{"user name with SQL", "a'; DROP TABLE users;--", nil, protocol.CodeBadRequest},
		{"user name upper-case", "Alice", nil, protocol.CodeBadRequest},
		{"user name too long", strings.Repeat("a", 33), nil, protocol.CodeBadRequest},
		{"signing key not RSA", "alice", func(_ *client.Conn, m *protocol.Message) { m.Keys.Signing = ecDER }, protocol.CodeBadKey},
		{"encryption key too short", "alice", func(_ *client.Conn, m *protocol.Message) { m.Keys.Encryption = smallDER }, protocol.CodeBadKey},
		{"key garbage", "alice", func(_ *client.Conn, m *protocol.Message) { m.Keys.Signing = []byte("'); DELETE FROM keys;--") }, protocol.CodeBadKey},
		{"key oversized", "alice", func(_ *client.Conn, m *protocol.Message) { m.Keys.Signing = make([]byte, 5000) }, protocol.CodeBadKey},
		{"self-signature by another key", "alice", func(_ *client.Conn, m *protocol.Message) {
			b, _ := other.Bundle()
			m.Keys.SelfSignature = b.SelfSignature
		}, protocol.CodeBadSignature},
		{"connection signature by another key", "alice", func(c *client.Conn, m *protocol.Message) {
			m.Sig, _ = protocol.SignClientAuth(other.Signing, c.ChannelBinding(), "alice")
		}, protocol.CodeBadSignature},
		{"connection signature for another name", "alice", func(c *client.Conn, m *protocol.Message) {
			m.Sig, _ = protocol.SignClientAuth(alice.Signing, c.ChannelBinding(), "bob")
		}, protocol.CodeBadSignature},
		{"signature oversized", "alice", func(_ *client.Conn, m *protocol.Message) { m.Sig = make([]byte, 2000) }, protocol.CodeBadRequest},
		{"keys missing", "alice", func(_ *client.Conn, m *protocol.Message) { m.Keys = nil }, protocol.CodeBadRequest},
		{"bundle without a device id (version 1)", "alice", func(_ *client.Conn, m *protocol.Message) {
			m.Keys, _ = protocol.NewKeyBundle("alice", alice.Signing, &alice.Encryption.PublicKey)
		}, protocol.CodeBadKey},
		{"version-1 self-signature with a device id", "alice", func(_ *client.Conn, m *protocol.Message) {
			b, _ := protocol.NewKeyBundle("alice", alice.Signing, &alice.Encryption.PublicKey)
			b.Device = m.Keys.Device
			m.Keys = b
		}, protocol.CodeBadSignature},
		{"device id changed after signing", "alice", func(_ *client.Conn, m *protocol.Message) { m.Keys.Device = uuid.NewString() }, protocol.CodeBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.dial(t)
			id := &client.Identity{User: tc.user, Signing: alice.Signing, Encryption: alice.Encryption}
			bundleUser := strings.ToLower(tc.user)
			if !protocol.ValidUserName(bundleUser) {
				bundleUser = "alice" // no bundle can name an invalid user; the request must still be refused
			}
			b, err := protocol.NewDeviceBundle(bundleUser, uuid.New(), id.Signing, &id.Encryption.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			sig, _ := protocol.SignClientAuth(id.Signing, c.ChannelBinding(), tc.user)
			m := &protocol.Message{Type: protocol.MsgRegister, User: tc.user, Password: "a fine password", Keys: b, Sig: sig}
			if tc.mod != nil {
				tc.mod(c, m)
			}
			_, err = c.Request(ctxT(t), m)
			wantCode(t, err, tc.want)
			for _, name := range []string{"alice", strings.ToLower(tc.user)} {
				if _, err := ts.store.UserByName(context.Background(), name); !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrInvalid) {
					t.Fatalf("user %q exists after a refused registration (%v)", name, err)
				}
			}
		})
	}
	// And the same connection-independent registration then works.
	if _, err := ts.dial(t).Register(ctxT(t), alice, "a fine password"); err != nil {
		t.Fatal(err)
	}
	// A duplicate name is a conflict and leaves the first account alone.
	_, err := ts.dial(t).Register(ctxT(t), other, "another password")
	wantCode(t, err, protocol.CodeConflict)
	if low := strings.ToLower(err.Error()); strings.Contains(low, "constraint") || strings.Contains(low, "sql") {
		t.Fatalf("conflict answer leaks database text: %v", err)
	}
	if _, err := ts.dial(t).Auth(ctxT(t), alice); err != nil {
		t.Fatalf("first alice after duplicate: %v", err)
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}
	cases := []struct {
		remote, xff, want string
	}{
		{"203.0.113.9:5000", "", "203.0.113.9"},
		{"203.0.113.9:5000", "198.51.100.1", "203.0.113.9"},          // untrusted peer: header ignored
		{"127.0.0.1:5000", "198.51.100.1", "198.51.100.1"},           // proxy on this host
		{"127.0.0.1:5000", "198.51.100.1, 10.1.2.3", "198.51.100.1"}, // two trusted hops
		{"127.0.0.1:5000", "6.6.6.6, 198.51.100.1", "198.51.100.1"},  // a client-forged first entry is skipped
		{"127.0.0.1:5000", "garbage", "127.0.0.1"},
		{"[::1]:5000", "198.51.100.1", "::1"},
		{"127.0.0.1:5000", "", "127.0.0.1"},
	}
	for _, tc := range cases {
		r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := clientIP(r, trusted); got != tc.want {
			t.Errorf("clientIP(%s, %q) = %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}

// TestPasswordHashUpgradedAtLogin: raising the Argon2id parameters takes
// effect for an existing account at its next login.
func TestPasswordHashUpgradedAtLogin(t *testing.T) {
	old := authServer(t)
	alice := identity(t, "alice", 0)
	if _, err := old.dial(t).Register(ctxT(t), alice, "alice password"); err != nil {
		t.Fatal(err)
	}
	before, _ := old.store.UserByName(ctxT(t), "alice")
	if !strings.Contains(before.PasswordHash, "m=1024,t=1,") {
		t.Fatalf("registered hash %q, want the test's small parameters", before.PasswordHash)
	}
	// A second server on the same database with stronger parameters.
	stronger := authServer(t, func(_ *Config, d *Deps) {
		d.Store = old.store
		d.Hasher = password.NewHasher(password.Params{Memory: 2048, Time: 2}, 2)
	})
	if _, err := stronger.dial(t).Login(ctxT(t), alice, "alice password", false); err != nil {
		t.Fatal(err)
	}
	after, _ := old.store.UserByName(ctxT(t), "alice")
	if !strings.Contains(after.PasswordHash, "m=2048,t=2,") {
		t.Fatalf("hash after login %q, want it upgraded to m=2048,t=2", after.PasswordHash)
	}
	// And the upgraded hash still checks out, on either server.
	if _, err := old.dial(t).Login(ctxT(t), alice, "alice password", false); err != nil {
		t.Fatalf("login after upgrade: %v", err)
	}
}

// TestDatabaseDown: with the database gone, account requests get
// "unavailable", nothing crashes, and the session goes on.
func TestDatabaseDown(t *testing.T) {
	db, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "down.db"))
	if err != nil {
		t.Fatal(err)
	}
	ts := authServer(t, func(_ *Config, d *Deps) { d.Store = db })
	c := ts.dial(t)
	db.Close()
	alice := identity(t, "alice", 0)
	_, err = c.Register(ctxT(t), alice, "alice password")
	wantCode(t, err, protocol.CodeUnavailable)
	_, err = c.Login(ctxT(t), alice, "alice password", false)
	wantCode(t, err, protocol.CodeUnavailable)
	_, err = c.Auth(ctxT(t), alice)
	wantCode(t, err, protocol.CodeUnavailable)
	if c.Err() != nil {
		t.Fatalf("session ended: %v", c.Err())
	}
}

// TestLoginAfterSessionEnded: a connection whose session another
// connection ended can still log in; only resuming is gone.
func TestLoginAfterSessionEnded(t *testing.T) {
	ts := authServer(t)
	alice := identity(t, "alice", 0)
	first := ts.dial(t)
	ticket := first.Ticket()
	other := ts.dial(t, func(cfg *client.Config) { cfg.Resume = &ticket; cfg.ResumeOnly = true })
	if err := other.End(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	r, err := first.Register(ctxT(t), alice, "alice password")
	if err != nil || r.User != "alice" {
		t.Fatalf("register on a connection whose session ended: %+v, %v", r, err)
	}
	if _, err := first.Join(ctxT(t), "general", ""); err != nil {
		t.Fatal(err)
	}
	cfg := ts.clientConfig()
	cfg.Resume, cfg.ResumeOnly = &ticket, true
	if _, err := client.Dial(ctxT(t), cfg); !errors.Is(err, protocol.CodeSessionUnknown) {
		t.Fatalf("the ended session resumed after a login: %v", err)
	}
}
