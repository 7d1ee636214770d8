package server

import "net/netip"

// Client addresses for per-address limits. Every limit counted per client
// address (failed logins and auths, registrations, connections and
// handshakes) counts under addrKey, so that they all agree on what one
// client is.

// addrKey returns the key under which per-address limits count a client at
// ip:
//
//   - an IPv4 address as is ("192.0.2.1");
//   - an IPv4-mapped IPv6 address (::ffff:192.0.2.1) as the IPv4 address it
//     maps, so that a dual-stack listener counts it with the plain one;
//   - any other IPv6 address as its /64 network ("2001:db8:1:2::/64"),
//     without a zone. One subscriber is normally given at least a whole /64
//     (RFC 6177) and can pick a new address in it at will, so counting
//     single IPv6 addresses would let it dodge every per-address limit.
//
// An invalid (zero) Addr gives "invalid IP".
func addrKey(ip netip.Addr) string {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, err := ip.Prefix(64)
		if err == nil { // always, for an IPv6 address
			return p.String()
		}
	}
	return ip.String()
}

// remoteAddrKey is addrKey for a client address as clientIP returns it (the
// peer's remoteIP). A string that is not an IP address, which clientIP
// returns only for a listener that is not TCP, is its own key.
func remoteAddrKey(remote string) string {
	ip, err := netip.ParseAddr(remote)
	if err != nil {
		return remote
	}
	return addrKey(ip)
}
