package media

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// HostPattern is one entry of the media host allow-list.
//
//   - "host" matches that host on the scheme's default port;
//   - "host:port" matches that host on that port only;
//   - "*.domain" matches every subdomain of domain (not domain itself) on
//     the default port, "*.domain:port" on that port.
type HostPattern struct {
	// Host is the lower-case host name or IP literal; for a wildcard, the
	// domain after "*.".
	Host string
	// Port is the required port, or "" for the scheme's default port.
	Port string
	// Wildcard marks a "*.domain" pattern.
	Wildcard bool
}

// String renders the pattern as it is written in FEEDD_MEDIA_HOSTS.
func (p HostPattern) String() string {
	h := p.Host
	if p.Wildcard {
		h = "*." + h
	}
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if p.Port != "" {
		h += ":" + p.Port
	}
	return h
}

// ParseHosts parses a comma-separated allow-list such as
// "*.cdninstagram.com,*.fbcdn.net,cdn.example.com:8443". Blank entries are
// ignored; anything else that is not a valid pattern is an error naming it.
func ParseHosts(s string) ([]HostPattern, error) {
	var out []HostPattern
	for _, raw := range strings.Split(s, ",") {
		entry := strings.TrimSpace(raw)
		if entry == "" {
			continue
		}
		p, err := parseHost(entry)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func parseHost(entry string) (HostPattern, error) {
	bad := func(why string) (HostPattern, error) {
		return HostPattern{}, fmt.Errorf("media: host pattern %q: %s", entry, why)
	}
	if strings.ContainsAny(entry, "/?#@ \t") {
		return bad("want host, host:port or *.domain")
	}
	host, port := strings.ToLower(entry), ""
	if strings.HasPrefix(host, "[") || strings.Count(host, ":") == 1 {
		if h, p, err := net.SplitHostPort(host); err == nil {
			host, port = h, p
		} else if strings.HasPrefix(host, "[") {
			if !strings.HasSuffix(host, "]") {
				return bad("malformed IPv6 literal")
			}
			host = host[1 : len(host)-1]
		} else {
			return bad("malformed port")
		}
		if port != "" || strings.HasSuffix(entry, ":") {
			n, err := strconv.Atoi(port)
			if err != nil || n < 1 || n > 65535 || strings.Trim(port, "0123456789") != "" {
				return bad("port must be 1-65535")
			}
			port = strconv.Itoa(n) // "0443" and "443" are one port
		}
	}
	p := HostPattern{Port: port}
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		p.Wildcard = true
		host = rest
		// A bare TLD would allow half the internet; "localhost" is the
		// exception, for development.
		if !strings.Contains(host, ".") && host != "localhost" {
			return bad("a wildcard needs a domain with a dot, such as *.example.com")
		}
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if p.Wildcard {
			return bad("a wildcard cannot apply to an IP address")
		}
		if a.Zone() != "" {
			return bad("zoned addresses are not allowed")
		}
		p.Host = a.String()
		return p, nil
	}
	host = strings.TrimSuffix(host, ".")
	if !validHostname(host) {
		return bad("invalid host name")
	}
	p.Host = host
	return p, nil
}

// validHostname reports whether h is a plausible DNS name: labels of
// letters, digits, '-' and '_' (CDNs use it), 1-63 bytes, not starting or
// ending with '-'.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Match reports whether host (lower-case, without brackets or trailing dot)
// and port (the effective port: explicit or the scheme's default), reached
// with scheme, are allowed by the pattern.
func (p HostPattern) Match(scheme, host, port string) bool {
	want := p.Port
	if want == "" {
		want = defaultPort(scheme)
	}
	if want == "" || port != want {
		return false
	}
	if p.Wildcard {
		return len(host) > len(p.Host)+1 && strings.HasSuffix(host, "."+p.Host)
	}
	return host == p.Host
}

func defaultPort(scheme string) string {
	switch scheme {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

// hostAllowed reports whether any pattern matches.
func hostAllowed(patterns []HostPattern, scheme, host, port string) bool {
	for _, p := range patterns {
		if p.Match(scheme, host, port) {
			return true
		}
	}
	return false
}
