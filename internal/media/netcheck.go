package media

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// Resolver looks up the addresses of a host name. Tests inject one to point
// names at chosen addresses.
type Resolver func(ctx context.Context, host string) ([]netip.Addr, error)

// blockedPrefixes are ranges that are not publicly routable or that embed
// another address, beyond what netip's Is* methods already cover.
var blockedPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this network"
		"100.64.0.0/10",   // carrier-grade NAT
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"240.0.0.0/4",     // reserved, broadcast
		"::/96",           // IPv4-compatible (deprecated)
		"64:ff9b::/96",    // NAT64: may reach any IPv4 address
		"64:ff9b:1::/48",  // local NAT64
		"100::/64",        // discard
		"2001::/23",       // IETF protocol assignments (Teredo etc.)
		"2001:db8::/32",   // documentation
		"2002::/16",       // 6to4: embeds an IPv4 address
		"fec0::/10",       // site-local (deprecated)
		"ff00::/8",        // multicast
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// publicAddr reports whether a is a globally routable unicast address that
// feedd may download from without AllowPrivate.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	if !a.IsValid() || a.Zone() != "" {
		return false
	}
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range blockedPrefixes {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// dialer connects only to addresses the store allows, whatever the name
// resolved to: the check sits in the dialer, so redirects and DNS answers
// that change between checks cannot reach internal services.
type dialer struct {
	allowPrivate bool
	resolver     Resolver
	// trusted addresses skip the check; tests use it for the first hop of a
	// redirect so the second hop's refusal is what is tested.
	trusted map[netip.AddrPort]bool
	net     net.Dialer
}

func newDialer(allowPrivate bool, r Resolver) *dialer {
	d := &dialer{allowPrivate: allowPrivate, resolver: r}
	d.net.Control = d.control
	return d
}

func (d *dialer) check(ap netip.AddrPort) error {
	if d.allowPrivate || d.trusted[ap] || publicAddr(ap.Addr()) {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrPrivateAddress, ap.Addr().Unmap())
}

// control runs after resolution, right before connect(2), on the address
// actually dialed.
func (d *dialer) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparsable address %q", ErrPrivateAddress, address)
	}
	return d.check(ap)
}

// DialContext resolves with the injected resolver when there is one, and
// dials every candidate through the checking net.Dialer.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.resolver == nil {
		return d.net.DialContext(ctx, network, addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = d.resolver(ctx, host); err != nil {
		return nil, fmt.Errorf("media: resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("media: resolve %s: no addresses", host)
	}
	var errs []error
	for _, a := range addrs {
		c, err := d.net.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}
