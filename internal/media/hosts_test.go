package media

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParseHostsAccepts(t *testing.T) {
	tests := []struct {
		in   string
		want []HostPattern
	}{
		{"", nil},
		{" , ", nil},
		{"*.cdninstagram.com,*.fbcdn.net", []HostPattern{{Host: "cdninstagram.com", Wildcard: true}, {Host: "fbcdn.net", Wildcard: true}}},
		{"CDN.Example.COM.", []HostPattern{{Host: "cdn.example.com"}}},
		{"cdn.example.com:8443", []HostPattern{{Host: "cdn.example.com", Port: "8443"}}},
		{"*.example.com:8443", []HostPattern{{Host: "example.com", Port: "8443", Wildcard: true}}},
		{"127.0.0.1:9000", []HostPattern{{Host: "127.0.0.1", Port: "9000"}}},
		{"[::1]:9000", []HostPattern{{Host: "::1", Port: "9000"}}},
		{"[::1]", []HostPattern{{Host: "::1"}}},
		{"::1", []HostPattern{{Host: "::1"}}},
		{"localhost", []HostPattern{{Host: "localhost"}}},
		{"scontent_x.cdn.com", []HostPattern{{Host: "scontent_x.cdn.com"}}},
		{"cdn.example.com:0443", []HostPattern{{Host: "cdn.example.com", Port: "443"}}},
		{"*.localhost", []HostPattern{{Host: "localhost", Wildcard: true}}},
	}
	for _, tt := range tests {
		got, err := ParseHosts(tt.in)
		if err != nil {
			t.Errorf("ParseHosts(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseHosts(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseHostsRejectsWithTheEntryNamed(t *testing.T) {
	for _, in := range []string{
		"https://cdn.example.com", "cdn.example.com/path", "user@cdn.example.com",
		"cdn.example.com:", "cdn.example.com:0", "cdn.example.com:65536", "cdn.example.com:http",
		"cdn.example.com:+443", "cdn.example.com:-1", "*.com", "*", "*.", "*.127.0.0.1", "-bad.example.com",
		"bad-.example.com", "a..b", "exa mple.com", "*.*.example.com", "ex!ample.com",
		"[::1", "fe80::1%eth0", strings.Repeat("a", 64) + ".com",
	} {
		_, err := ParseHosts("ok.example.com," + in)
		if err == nil {
			t.Errorf("ParseHosts(%q) accepted", in)
			continue
		}
		if !strings.Contains(err.Error(), in) {
			t.Errorf("ParseHosts(%q) error %q does not name the entry", in, err)
		}
	}
}

func TestHostPatternMatch(t *testing.T) {
	ps, err := ParseHosts("*.cdninstagram.com,fbcdn.net,media.example.com:8443")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		scheme, host, port string
		want               bool
	}{
		{"https", "scontent-ams2-1.cdninstagram.com", "443", true},
		{"https", "a.b.cdninstagram.com", "443", true},
		{"https", "cdninstagram.com", "443", false}, // the domain itself is not a subdomain
		{"https", "evilcdninstagram.com", "443", false},
		{"https", "cdninstagram.com.evil.net", "443", false},
		{"https", "x.cdninstagram.com", "8443", false}, // no port in the pattern: default port only
		{"http", "x.cdninstagram.com", "80", true},
		{"http", "x.cdninstagram.com", "443", false},
		{"https", "fbcdn.net", "443", true},
		{"https", "x.fbcdn.net", "443", false},
		{"https", "media.example.com", "8443", true},
		{"https", "media.example.com", "443", false},
		{"ftp", "fbcdn.net", "21", false},
	}
	for _, tt := range tests {
		if got := hostAllowed(ps, tt.scheme, tt.host, tt.port); got != tt.want {
			t.Errorf("allowed(%s://%s:%s) = %v, want %v", tt.scheme, tt.host, tt.port, got, tt.want)
		}
	}
}

func TestHostPatternStringRoundTrips(t *testing.T) {
	in := "*.cdninstagram.com,fbcdn.net:8443,[::1]:9000,127.0.0.1"
	ps, err := ParseHosts(in)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	if got := strings.Join(out, ","); got != in {
		t.Errorf("String() = %q, want %q", got, in)
	}
}

func TestPublicAddr(t *testing.T) {
	tests := map[string]bool{
		"157.240.1.35":      true,
		"2a03:2880:f12f::1": true,
		"127.0.0.1":         false,
		"127.8.9.10":        false,
		"::1":               false,
		"::ffff:127.0.0.1":  false,
		"::ffff:10.1.2.3":   false,
		"10.0.0.1":          false,
		"172.16.5.4":        false,
		"192.168.1.1":       false,
		"169.254.169.254":   false, // cloud metadata
		"fe80::1":           false,
		"fc00::1":           false,
		"fd12:3456::1":      false,
		"0.0.0.0":           false,
		"::":                false,
		"100.64.0.1":        false,
		"100.127.255.254":   false,
		"224.0.0.1":         false,
		"ff02::1":           false,
		"255.255.255.255":   false,
		"64:ff9b::7f00:1":   false, // NAT64 form of 127.0.0.1
		"2002:7f00:1::1":    false, // 6to4 form of 127.0.0.1
		"::127.0.0.1":       false, // IPv4-compatible form
		"198.18.0.1":        false,
		"fe80::1%eth0":      false,
		"100.128.0.1":       true,
	}
	for s, want := range tests {
		if got := publicAddr(netip.MustParseAddr(s)); got != want {
			t.Errorf("publicAddr(%s) = %v, want %v", s, got, want)
		}
	}
}
