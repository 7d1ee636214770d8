package server

import (
	"errors"
	"strings"
	"testing"

	"github.com/secure-messenger/messenger/internal/password"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// wantRevoked waits for c to be closed by the server with a sealed
// session_revoked.
func wantRevoked(t *testing.T, c *client.Conn) {
	t.Helper()
	err := waitEnd(t, c)
	var pe *protocol.PeerError
	if !errors.As(err, &pe) || pe.Code != protocol.CodeSessionRevoked || !pe.Sealed {
		t.Fatalf("connection ended with %v, want a sealed session_revoked", err)
	}
}

// resume dials ts resuming ticket, or failing.
func (ts *testServer) resume(t *testing.T, ticket client.Ticket) (*client.Conn, error) {
	t.Helper()
	cfg := ts.clientConfig()
	cfg.Resume, cfg.ResumeOnly = &ticket, true
	c, err := client.Dial(ctxT(t), cfg)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// stillWorks checks that c is open and logged in as user by joining a room
// and hearing itself there.
func stillWorks(t *testing.T, c *client.Conn, user string) {
	t.Helper()
	if _, err := c.Join(ctxT(t), "check", ""); err != nil {
		t.Fatalf("%s's connection: join: %v", user, err)
	}
	if _, err := c.Send(ctxT(t), "check", "still here"); err != nil {
		t.Fatalf("%s's connection: send: %v", user, err)
	}
	if m := next(t, c, protocol.MsgMessage); m.From != user || m.Anon {
		t.Fatalf("%s's connection speaks as %+v", user, m)
	}
}

// stolenSession registers alice (keys of slot 0) and returns a connection
// of one of her devices and an attacker's connection that resumed the
// device's session with a stolen ticket, and that ticket.
func stolenSession(t *testing.T, ts *testServer) (device, attacker *client.Conn, ticket client.Ticket) {
	t.Helper()
	alice := identity(t, "alice", 0)
	if _, err := ts.dial(t).Register(ctxT(t), alice, "alice password"); err != nil {
		t.Fatal(err)
	}
	device = ts.dial(t)
	if _, err := device.Auth(ctxT(t), alice); err != nil {
		t.Fatal(err)
	}
	ticket = device.Ticket()
	attacker, err := ts.resume(t, ticket)
	if err != nil {
		t.Fatal(err)
	}
	if attacker.Session().User != "alice" {
		t.Fatalf("the stolen ticket resumed as %q, want alice", attacker.Session().User)
	}
	return device, attacker, ticket
}

// wantTicketRevoked checks that ticket no longer resumes: session_revoked
// once (the record is deleted then), session_unknown afterwards.
func wantTicketRevoked(t *testing.T, ts *testServer, ticket client.Ticket) {
	t.Helper()
	_, err := ts.resume(t, ticket)
	var pe *protocol.PeerError
	if !errors.As(err, &pe) || pe.Code != protocol.CodeSessionRevoked || !pe.Sealed {
		t.Fatalf("resuming a revoked session: %v, want a sealed session_revoked", err)
	}
	if _, err := ts.resume(t, ticket); !errors.Is(err, protocol.CodeSessionUnknown) {
		t.Fatalf("resuming a revoked session again: %v, want session_unknown (record deleted)", err)
	}
}

// TestNewKeysRevokeSessions: an attacker who resumed alice's session with
// a stolen ticket is shut out when alice adds a new device and removes the
// old one from it: his open connection is closed and the ticket no longer
// resumes. The connection that removed the device stays, as does its
// session. (Adding a device alone revokes nothing: TestAddDeviceKeepsSessions.)
func TestNewKeysRevokeSessions(t *testing.T) {
	ts := authServer(t)
	device, attacker, ticket := stolenSession(t, ts)
	bob := identity(t, "bob", 1)
	cb := ts.dial(t)
	if _, err := cb.Register(ctxT(t), bob, "bob password"); err != nil {
		t.Fatal(err)
	}
	stillWorks(t, attacker, "alice")

	// Alice resets her keys on a connection that was logged in with the
	// old ones.
	reset := ts.dial(t)
	if _, err := reset.Auth(ctxT(t), identity(t, "alice", 0)); err != nil {
		t.Fatal(err)
	}
	fresh := identity(t, "alice", 2)
	if _, err := reset.Login(ctxT(t), fresh, "alice password", true); err != nil {
		t.Fatalf("login with new keys: %v", err)
	}
	stillWorks(t, attacker, "alice")
	if err := reset.RemoveDevice(ctxT(t), fresh, identity(t, "alice", 0).Device); err != nil {
		t.Fatalf("remove the old device: %v", err)
	}

	wantRevoked(t, attacker)
	wantRevoked(t, device)
	wantTicketRevoked(t, ts, ticket)

	stillWorks(t, reset, "alice")
	stillWorks(t, cb, "bob") // other users are not touched
	again, err := ts.resume(t, reset.Ticket())
	if err != nil || again.Session().User != "alice" {
		t.Fatalf("the resetting connection's session: %v", err)
	}
	stillWorks(t, again, "alice")
}

// TestPasswordChangeRevokesSessions: the same with a password change; the
// connection that made it stays, and only the new password logs in.
func TestPasswordChangeRevokesSessions(t *testing.T) {
	ts := authServer(t)
	device, attacker, ticket := stolenSession(t, ts)
	alice := identity(t, "alice", 0)
	anon := ts.dial(t) // not logged in: not touched

	changer := ts.dial(t)
	if _, err := changer.Auth(ctxT(t), alice); err != nil {
		t.Fatal(err)
	}
	if err := changer.ChangePassword(ctxT(t), alice, "alice password", "a new password"); err != nil {
		t.Fatal(err)
	}

	wantRevoked(t, attacker)
	wantRevoked(t, device)
	wantTicketRevoked(t, ts, ticket)

	stillWorks(t, changer, "alice")
	again, err := ts.resume(t, changer.Ticket())
	if err != nil || again.Session().User != "alice" {
		t.Fatalf("the changing connection's session: %v", err)
	}
	if _, err := anon.Lookup(ctxT(t), "alice"); !errors.Is(err, protocol.CodeUnauthenticated) || anon.Err() != nil {
		t.Fatalf("anonymous connection: %v, %v; want it open and unauthenticated", err, anon.Err())
	}

	_, err = ts.dial(t).Login(ctxT(t), alice, "alice password", false)
	wantCode(t, err, protocol.CodeAuthFailed)
	if _, err := ts.dial(t).Login(ctxT(t), alice, "a new password", false); err != nil {
		t.Fatalf("login with the new password: %v", err)
	}
	// The keys did not change: alice's devices sign in again with them.
	if _, err := ts.dial(t).Auth(ctxT(t), alice); err != nil {
		t.Fatalf("auth after the password change: %v", err)
	}
}

// TestPasswordChangeRefused: what passwd refuses, and that wrong passwords
// and signatures count as failed password logins.
func TestPasswordChangeRefused(t *testing.T) {
	ts := authServer(t, func(c *Config, _ *Deps) { c.LoginFailuresPerUser = 3 })
	alice, bob := identity(t, "alice", 0), identity(t, "bob", 1)
	for _, id := range []*client.Identity{alice, bob} {
		if _, err := ts.dial(t).Register(ctxT(t), id, id.User+" password"); err != nil {
			t.Fatal(err)
		}
	}
	err := ts.dial(t).ChangePassword(ctxT(t), alice, "alice password", "a new password")
	wantCode(t, err, protocol.CodeUnauthenticated)

	c := ts.dial(t)
	if _, err := c.Auth(ctxT(t), alice); err != nil {
		t.Fatal(err)
	}
	err = c.ChangePassword(ctxT(t), bob, "bob password", "a new password")
	wantCode(t, err, protocol.CodeUnauthenticated) // logged in as alice, not bob
	err = c.ChangePassword(ctxT(t), alice, "alice password", "short")
	wantCode(t, err, protocol.CodeBadRequest)

	// Two failures: a wrong password, then a signature by other keys.
	err = c.ChangePassword(ctxT(t), alice, "not alice's password", "a new password")
	wantCode(t, err, protocol.CodeAuthFailed)
	err = c.ChangePassword(ctxT(t), &client.Identity{User: "alice", Signing: bob.Signing}, "alice password", "a new password")
	wantCode(t, err, protocol.CodeAuthFailed)
	// A signature made for another connection is worthless here.
	other := ts.dial(t)
	sig, _ := protocol.SignClientAuth(alice.Signing, other.ChannelBinding(), "alice")
	_, err = c.Request(ctxT(t), &protocol.Message{Type: protocol.MsgPasswd, User: "alice", Password: "alice password", NewPassword: "a new password", Sig: sig})
	wantCode(t, err, protocol.CodeAuthFailed)
	// Three failures reach the limit, shared with login.
	err = c.ChangePassword(ctxT(t), alice, "alice password", "a new password")
	wantCode(t, err, protocol.CodeRateLimited)
	_, err = ts.dial(t).Login(ctxT(t), alice, "alice password", false)
	wantCode(t, err, protocol.CodeRateLimited)

	if c.Err() != nil {
		t.Fatalf("a refused passwd ended the connection: %v", c.Err())
	}
	u, _ := ts.store.UserByName(ctxT(t), "alice")
	if u.Generation != 1 {
		t.Fatalf("refused changes left generation %d, want 1", u.Generation)
	}
	if !strings.Contains(ts.logs.String(), "passwd: wrong password") || strings.Contains(ts.logs.String(), "not alice's password") {
		t.Errorf("log lacks the failure or shows the password:\n%s", ts.logs)
	}
}

// TestRehashDoesNotRevoke: upgrading a password hash at login (the same
// password) revokes nothing.
func TestRehashDoesNotRevoke(t *testing.T) {
	old := authServer(t, func(c *Config, _ *Deps) { c.CredentialCheck = 1 }) // every request
	alice := identity(t, "alice", 0)
	if _, err := old.dial(t).Register(ctxT(t), alice, "alice password"); err != nil {
		t.Fatal(err)
	}
	live := old.dial(t)
	if _, err := live.Auth(ctxT(t), alice); err != nil {
		t.Fatal(err)
	}
	// Logging in on a server with stronger parameters re-hashes. Every
	// request on old's connections compares their generation with the
	// database's.
	stronger := authServer(t, func(_ *Config, d *Deps) {
		d.Store = old.store
		d.Hasher = password.NewHasher(password.Params{Memory: 2048, Time: 2}, 2)
	})
	before, _ := old.store.UserByName(ctxT(t), "alice")
	if _, err := stronger.dial(t).Login(ctxT(t), alice, "alice password", false); err != nil {
		t.Fatal(err)
	}
	after, _ := old.store.UserByName(ctxT(t), "alice")
	if after.PasswordHash == before.PasswordHash {
		t.Fatal("the hash was not upgraded")
	}
	if _, err := old.resume(t, live.Ticket()); err != nil {
		t.Fatalf("resume after a rehash: %v", err)
	}
	stillWorks(t, live, "alice")
}

// TestLostRevocationCaughtByCheck: a node that misses the revocation (here:
// two servers on one database with separate brokers) closes the user's
// connection at its next credential check.
func TestLostRevocationCaughtByCheck(t *testing.T) {
	a := authServer(t)
	alice := identity(t, "alice", 0)
	if _, err := a.dial(t).Register(ctxT(t), alice, "alice password"); err != nil {
		t.Fatal(err)
	}
	b := authServer(t, func(c *Config, d *Deps) {
		d.Store = a.store
		c.CredentialCheck = 1 // every request
	})
	onB := b.dial(t)
	if _, err := onB.Auth(ctxT(t), alice); err != nil {
		t.Fatal(err)
	}
	stillWorks(t, onB, "alice")
	changer := a.dial(t)
	if _, err := changer.Auth(ctxT(t), alice); err != nil {
		t.Fatal(err)
	}
	if err := changer.ChangePassword(ctxT(t), alice, "alice password", "a new password"); err != nil {
		t.Fatal(err)
	}
	// The next request finds out; it is not carried out.
	if _, err := onB.Join(ctxT(t), "after", ""); err == nil {
		t.Fatal("a request on a revoked connection was carried out")
	}
	wantRevoked(t, onB)
}

// TestRevocationAcrossNodes: two nodes behind one Redis (sessions and
// broker); a password change on node A closes alice's connection on node
// B, and her session's ticket resumes on neither.
func TestRevocationAcrossNodes(t *testing.T) {
	nodeA, nodeB := twoNodes(t)

	alice := identity(t, "alice", 0)
	if _, err := nodeA.dial(t).Register(ctxT(t), alice, "alice password"); err != nil {
		t.Fatal(err)
	}
	onB := nodeB.dial(t)
	if _, err := onB.Auth(ctxT(t), alice); err != nil {
		t.Fatal(err)
	}
	ticket := onB.Ticket()
	if r, err := nodeA.resume(t, ticket); err != nil || r.Session().User != "alice" {
		t.Fatalf("node A does not resume node B's session: %v", err)
	}

	changer := nodeA.dial(t)
	if _, err := changer.Auth(ctxT(t), alice); err != nil {
		t.Fatal(err)
	}
	if err := changer.ChangePassword(ctxT(t), alice, "alice password", "a new password"); err != nil {
		t.Fatal(err)
	}
	wantRevoked(t, onB)
	// The ticket resumes on neither node. (Whether the record is already
	// deleted when the first refusal arrives depends on when node A's own
	// revocation comes back from Redis; TestPasswordChangeRevokesSessions
	// checks the deletion.)
	for _, n := range []*testServer{nodeA, nodeB} {
		_, err := n.resume(t, ticket)
		if !errors.Is(err, protocol.CodeSessionRevoked) && !errors.Is(err, protocol.CodeSessionUnknown) {
			t.Fatalf("resuming a revoked session: %v, want session_revoked or session_unknown", err)
		}
	}
	stillWorks(t, changer, "alice")
}
