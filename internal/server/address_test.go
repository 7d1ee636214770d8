package server

import (
	"errors"
	"net/http"
	"net/netip"
	"testing"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// TestAuthThrottlePerSlash64: failed auths from one IPv6 /64 share one
// count, whichever addresses in it they come from; an IPv4-mapped address
// counts as the IPv4 address.
func TestAuthThrottlePerSlash64(t *testing.T) {
	ts := authServer(t, func(c *Config, _ *Deps) {
		c.LoginFailuresPerAddr = 3
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	alice, mallory := identity(t, "alice", 0), identity(t, "alice", 1)
	if _, err := ts.dial(t).Register(ctxT(t), alice, "alice password"); err != nil {
		t.Fatal(err)
	}
	auth := func(addr string, id *client.Identity) error {
		c := ts.dial(t, func(cfg *client.Config) { cfg.Header = http.Header{"X-Forwarded-For": {addr}} })
		_, err := c.Auth(ctxT(t), id)
		return err
	}
	for i, addr := range []string{"2001:db8:5:6::1", "2001:db8:5:6::2", "2001:db8:5:6:abcd::3"} {
		if err := auth(addr, mallory); !errors.Is(err, protocol.CodeAuthFailed) {
			t.Fatalf("failure %d from %s: %v, want auth_failed", i+1, addr, err)
		}
	}
	wantCode(t, auth("2001:db8:5:6:ffff:ffff:ffff:ffff", alice), protocol.CodeRateLimited)
	if err := auth("2001:db8:5:7::1", alice); err != nil {
		t.Fatalf("auth from the next /64: %v", err)
	}

	for i, addr := range []string{"198.51.100.9", "::ffff:198.51.100.9", "198.51.100.9"} {
		if err := auth(addr, mallory); !errors.Is(err, protocol.CodeAuthFailed) {
			t.Fatalf("failure %d from %s: %v, want auth_failed", i+1, addr, err)
		}
	}
	wantCode(t, auth("::ffff:198.51.100.9", alice), protocol.CodeRateLimited)
	if err := auth("198.51.100.10", alice); err != nil {
		t.Fatalf("auth from the next IPv4 address: %v", err)
	}
}

func TestAddrKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
	} {
		if got := addrKey(netip.MustParseAddr(tc.in)); got != tc.want {
			t.Errorf("addrKey(%s) = %s, want %s", tc.in, got, tc.want)
		}
		if got := remoteAddrKey(tc.in); got != tc.want {
			t.Errorf("remoteAddrKey(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	same := func(a, b string) bool {
		return addrKey(netip.MustParseAddr(a)) == addrKey(netip.MustParseAddr(b))
	}
	if !same("2001:db8::1", "2001:db8::ffff:ffff:ffff:ffff") {
		t.Error("two addresses in one /64 have different keys")
	}
	if same("2001:db8:0:0::1", "2001:db8:0:1::1") {
		t.Error("addresses in different /64s share a key")
	}
	if same("192.0.2.1", "192.0.2.2") {
		t.Error("two IPv4 addresses share a key")
	}
	if got := remoteAddrKey("@"); got != "@" {
		t.Errorf(`remoteAddrKey("@") = %q, want it kept`, got)
	}
}
