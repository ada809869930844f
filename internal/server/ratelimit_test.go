package server

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/labstack/echo/v5"
)

// An IPv6 client usually holds a whole /64: the visitor limit counts the
// prefix (Options.RateLimitIPv6Prefix, 64 by default) as one client, so
// rotating addresses inside it gains nothing. IPv4 clients are counted by
// address.
func TestRateLimitKeysIPv6ByPrefix(t *testing.T) {
	tests := []struct {
		name   string
		prefix int
		peers  []string // the first two use the burst, the last is judged
		want   int
	}{
		{"same /64 shares one budget", 0, []string{"[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff::9]:1", "[2001:db8:1:2:abcd:ef01:2345:6789]:1"}, 429},
		{"another /64 has its own", 0, []string{"[2001:db8:1:2::1]:1", "[2001:db8:1:2::2]:1", "[2001:db8:1:3::1]:1"}, 200},
		{"a /48 prefix shares wider", 48, []string{"[2001:db8:1:2::1]:1", "[2001:db8:1:3::1]:1", "[2001:db8:1:ffff::1]:1"}, 429},
		{"prefix 128 counts addresses", 128, []string{"[2001:db8:1:2::1]:1", "[2001:db8:1:2::1]:1", "[2001:db8:1:2::2]:1"}, 200},
		{"IPv4 by address", 0, []string{"192.0.2.1:1", "192.0.2.1:2", "192.0.2.2:1"}, 200},
		{"IPv4 address over its budget", 0, []string{"192.0.2.1:1", "192.0.2.1:2", "192.0.2.1:3"}, 429},
		{"IPv4-mapped IPv6 is IPv4", 0, []string{"[::ffff:192.0.2.1]:1", "192.0.2.1:2", "[::ffff:192.0.2.2]:1"}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) {
				o.RateLimit = 1 // burst 2
				o.RateLimitIPv6Prefix = tt.prefix
			})
			f.srv.Public().GET("/api/v1/feeds/:id", func(c *echo.Context) error { return c.String(200, "{}") })
			var code int
			for _, p := range tt.peers {
				r := req(http.MethodGet, "/api/v1/feeds/abc", nil)
				r.RemoteAddr = p
				code = f.do(r).Code
			}
			if code != tt.want {
				t.Errorf("third request: %d, want %d", code, tt.want)
			}
		})
	}
	t.Run("behind a trusted proxy", func(t *testing.T) {
		f := newFixture(t, func(o *Options) {
			o.RateLimit = 1
			o.TrustedProxies = []netip.Prefix{mustPrefix("10.0.0.0/8")}
		})
		f.srv.Public().GET("/api/v1/feeds/:id", func(c *echo.Context) error { return c.String(200, "{}") })
		var code int
		for _, xff := range []string{"2001:db8:9::1", "2001:db8:9::2", "2001:db8:9:0:1::3"} {
			r := req(http.MethodGet, "/api/v1/feeds/abc", nil, "X-Forwarded-For", xff)
			r.RemoteAddr = "10.0.0.1:1"
			code = f.do(r).Code
		}
		if code != 429 {
			t.Errorf("third address of one /64 behind the proxy: %d, want 429", code)
		}
	})
}

// Keys of many /64s spread over the limiter's shards (their low half is
// zero, so a hash of the low bytes alone would put them all in one).
func TestPrefixKeysSpreadOverShards(t *testing.T) {
	l := newIPLimiter(1, 2, newClock().Now)
	l.v6Bits = 64
	const n = limiterShards * 200
	for i := range n {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 15: 1})
		l.allow(a)
	}
	if got := l.size(); got != n {
		t.Fatalf("%d buckets for %d /64s", got, n)
	}
	for i := range l.shards {
		if m := len(l.shards[i].buckets); m > 3*n/limiterShards {
			t.Errorf("shard %d holds %d of %d buckets", i, m, n)
		}
	}
}
