// Package egress keeps webhook deliveries on the public internet. Whoever
// may create a webhook subscription chooses where the service POSTs; without
// this guard they could make it reach loopback, other pods, or the cloud
// metadata service at 169.254.169.254 (server-side request forgery).
//
// The guard that counts is at dial time, on the address actually connected
// to, so neither DNS (rebinding included) nor redirects get around it.
// PublicHost only turns the obvious cases away early, with a clear error.
package egress

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrNotAllowed is the dial error for a destination that is not public.
var ErrNotAllowed = errors.New("destination address not allowed")

// nonPublic are the ranges that are not on the public internet beyond what
// netip's predicates (loopback, link-local, multicast, unspecified, RFC 1918,
// fc00::/7) already cover.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT, often a cluster's pod or node range
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the broadcast address
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated): ::127.0.0.1 and the like
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001::/32"),       // Teredo: tunnels to an embedded IPv4 address
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: tunnels to an embedded IPv4 address
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
}

// nat64 is the well-known NAT64 prefix: its addresses reach the IPv4
// address in their last 32 bits, so they are as public as that one is.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Public reports whether addr is a public unicast address that a webhook
// may connect to. IPv4-mapped IPv6 addresses are judged as IPv4.
func Public(addr netip.Addr) bool {
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() || !addr.IsGlobalUnicast() || addr.IsPrivate() {
		return false
	}
	if nat64.Contains(addr) {
		b := addr.As16()
		return Public(netip.AddrFrom4([4]byte(b[12:])))
	}
	for _, p := range nonPublic {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}

// PublicHost reports whether host (a URL's host, without port) may be a
// webhook endpoint as far as can be told without DNS: false for localhost
// names, literal non-public addresses and numeric hosts, true for other
// names. Names are not resolved: what they resolve to may change after the
// check, so the dial-time guard decides them.
func PublicHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return false
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		return Public(addr)
	}
	// No DNS name ends in a numeric label, but some resolvers read such a
	// host as IPv4 in a legacy form: "2130706433", "127.1", "0x7f.1".
	return !numeric(host[strings.LastIndexByte(host, '.')+1:])
}

func numeric(label string) bool {
	digits := "0123456789"
	if rest, ok := strings.CutPrefix(label, "0x"); ok {
		label, digits = rest, "0123456789abcdef"
	}
	return strings.Trim(label, digits) == ""
}

// NewClient returns the HTTP client for webhook posts, each bounded by
// timeout. Unless allowPrivateNetworks (for development and tests), it
// refuses to connect to any address that is not Public, failing with
// ErrNotAllowed; every connection is checked, including those of
// redirects and every address a name resolves to.
func NewClient(timeout time.Duration, allowPrivateNetworks bool) *http.Client {
	if allowPrivateNetworks {
		return newClient(timeout, nil)
	}
	return newClient(timeout, Public)
}

// newClient returns a client that dials only addresses allow accepts (any
// when nil).
func newClient(timeout time.Duration, allow func(netip.Addr) bool) *http.Client {
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if allow != nil {
		// Control runs after DNS, on the very address about to be connected.
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !allow(ap.Addr()) {
				return ErrNotAllowed
			}
			return nil
		}
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			// No Proxy, whatever HTTP(S)_PROXY say: through a proxy the guard
			// would only ever see the proxy's address, and the proxy would
			// connect wherever the URL points, private addresses included.
			Proxy:                 nil,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
	}
}
