package server

import (
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/testenv"
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
				r := testenv.Req(http.MethodGet, "/api/v1/feeds/abc", nil)
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
			r := testenv.Req(http.MethodGet, "/api/v1/feeds/abc", nil, "X-Forwarded-For", xff)
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

// rotating returns the n-th client of a flood that takes a new /64 for
// every request.
func rotating(n int) string {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(n >> 16), byte(n >> 8), byte(n), 7: 1, 15: 1}).String()
}

// The OAuth callback writes through the database's one writer for
// anonymous clients. Its limit of its own holds a flood from many
// addresses to a small total, and one client to less.
func TestRouteLimitsHoldAnonymousFloods(t *testing.T) {
	tests := []struct {
		name  string
		limit RouteLimit
		path  string // what the flood asks for
		one   string // what one client asks for, again and again
		setup func(f *fixture, hits *int)
	}{
		{"callback", LimitCallback, "/auth/instagram/callback?state=x&code=y", "/auth/instagram/callback?state=x&code=y", func(f *fixture, hits *int) {
			f.srv.Echo().GET("/auth/instagram/callback", func(c *echo.Context) error { *hits++; return c.String(400, "bad state") },
				f.srv.Limit(LimitCallback))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) {
				o.TrustedProxies = []netip.Prefix{mustPrefix("10.0.0.0/8")}
			})
			var hits int
			if tt.setup != nil {
				tt.setup(f, &hits)
			}
			budget := routeLimits[tt.limit]
			get := func(path, client string) int {
				r := testenv.Req(http.MethodGet, path, nil, "X-Forwarded-For", client)
				r.RemoteAddr = "10.0.0.1:1"
				return f.do(r).Code
			}
			passed := 0
			for i := range 500 {
				if get(tt.path, rotating(i)) != http.StatusTooManyRequests {
					passed++
				}
			}
			if passed != int(budget.totalBurst) {
				t.Errorf("%d of 500 requests from 500 addresses answered, want the total burst %v", passed, budget.totalBurst)
			}
			if tt.setup != nil && hits != passed {
				t.Errorf("handler ran %d times for %d answers", hits, passed)
			}
			// The total refills with time; one client still has its own limit.
			f.clock.Add(time.Minute)
			passed = 0
			for range 100 {
				if get(tt.one, "198.51.100.7") != http.StatusTooManyRequests {
					passed++
				}
			}
			if passed != int(budget.clientBurst) {
				t.Errorf("one client got %d answers in a row, want its burst %v", passed, budget.clientBurst)
			}
			r := testenv.Req(http.MethodGet, tt.one, nil, "X-Forwarded-For", "198.51.100.7")
			r.RemoteAddr = "10.0.0.1:1"
			w := f.do(r)
			if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
				t.Errorf("over the limit: %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
			}
		})
	}
	t.Run("owner routes keep their rules", func(t *testing.T) {
		f := newFixture(t, nil)
		f.srv.Admin().GET("/ping", func(c *echo.Context) error { return c.NoContent(204) })
		for i := range 200 {
			r := testenv.Req(http.MethodGet, "/api/admin/ping", nil, "Authorization", "Bearer "+testToken)
			r.RemoteAddr = "[" + rotating(i) + "]:1"
			if w := f.do(r); w.Code != 204 {
				t.Fatalf("admin request %d: %d", i, w.Code)
			}
		}
	})
}

// A flood of made-up setup links and wrong tokens from many addresses never
// refuses the owner's right credential: failures only read, and each
// failing client is slowed on its own.
func TestRightCredentialIsAnsweredDuringASignInFlood(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.TrustedProxies = []netip.Prefix{mustPrefix("10.0.0.0/8")}
	})
	for i := range 500 {
		r := testenv.Req(http.MethodGet, "/setup/login?t=made-up-link", nil, "X-Forwarded-For", rotating(i))
		r.RemoteAddr = "10.0.0.1:1"
		if c := f.do(r).Code; c >= 500 {
			t.Fatalf("flood request %d answered %d", i, c)
		}
	}
	if ck := f.signIn(t); ck == nil || ck.Value == "" {
		t.Fatal("the right admin token was refused during the flood")
	}
}
