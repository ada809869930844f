package server

import (
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v5"
)

// Failed admin credentials per client IP: a burst of 10, then one every 6s.
const (
	failureRate  = 1.0 / 6
	failureBurst = 10
)

const (
	limiterShards   = 16
	maxPerShard     = 8192 // bounds memory: at most 16×8192 tracked IPs
	minSweepEvery   = time.Second
	defaultSweepMax = time.Minute
)

// DefaultIPv6Prefix is how many leading bits of an IPv6 address name one
// client for the visitor limits: a /64 is what one subscriber or host
// usually holds, so the addresses inside it share one budget.
const DefaultIPv6Prefix = 64

// ipLimiter is a token bucket per client with bounded memory: buckets that
// have refilled completely are forgotten (they are the same as new ones),
// and a full shard evicts an arbitrary bucket rather than grow. A client is
// an IPv4 address, or the IPv6 prefix of v6Bits bits.
type ipLimiter struct {
	rate       float64 // tokens per second
	burst      float64
	now        func() time.Time
	sweepEvery time.Duration
	shards     [limiterShards]limiterShard
	v6Bits     int // 128: every IPv6 address on its own
}

type limiterShard struct {
	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket // pointers: a request updates its bucket in place
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newIPLimiter(rate, burst float64, now func() time.Time) *ipLimiter {
	if burst < 1 {
		burst = 1
	}
	l := &ipLimiter{rate: rate, burst: burst, now: now, v6Bits: 128}
	// A bucket idle for burst/rate seconds is full again and can go.
	l.sweepEvery = time.Duration(burst / rate * float64(time.Second))
	l.sweepEvery = min(max(l.sweepEvery, minSweepEvery), defaultSweepMax)
	for i := range l.shards {
		l.shards[i].buckets = make(map[netip.Addr]*bucket)
	}
	return l
}

// key is the client ip belongs to.
func (l *ipLimiter) key(ip netip.Addr) netip.Addr {
	if !ip.Is6() || l.v6Bits >= 128 {
		return ip
	}
	p, err := ip.Prefix(l.v6Bits)
	if err != nil {
		return ip
	}
	return p.Addr()
}

func (l *ipLimiter) shard(key netip.Addr) *limiterShard {
	// IPv4 addresses vary most in their low bytes, IPv6 prefixes in the
	// bytes just above the cut: fold all of them.
	b := key.As16()
	var h uint32
	for _, c := range b {
		h = h*31 + uint32(c)
	}
	return &l.shards[h%limiterShards]
}

// allow takes one token for ip. When none is left it reports how long
// until one will be.
func (l *ipLimiter) allow(ip netip.Addr) (bool, time.Duration) {
	return l.allowAt(ip, l.now())
}

// allowAt is allow at a time the caller already read.
func (l *ipLimiter) allowAt(ip netip.Addr, now time.Time) (bool, time.Duration) {
	ip = l.key(ip)
	sh := l.shard(ip)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if now.Sub(sh.lastSweep) >= l.sweepEvery {
		l.sweep(sh, now)
	}
	b := sh.buckets[ip]
	if b == nil {
		if len(sh.buckets) >= maxPerShard {
			for k := range sh.buckets {
				delete(sh.buckets, k)
				break
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		sh.buckets[ip] = b
	} else if dt := now.Sub(b.last); dt > 0 {
		b.tokens = min(l.burst, b.tokens+dt.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

// peek reports whether ip has a token left, without taking one.
func (l *ipLimiter) peek(ip netip.Addr) (bool, time.Duration) {
	now := l.now()
	ip = l.key(ip)
	sh := l.shard(ip)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[ip]
	if b == nil {
		return true, 0
	}
	tokens := min(l.burst, b.tokens+max(0, now.Sub(b.last).Seconds())*l.rate)
	if tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - tokens) / l.rate * float64(time.Second))
}

func (l *ipLimiter) sweep(sh *limiterShard, now time.Time) {
	sh.lastSweep = now
	for k, b := range sh.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(sh.buckets, k)
		}
	}
}

// size is the number of tracked IPs (tests).
func (l *ipLimiter) size() int {
	n := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		n += len(l.shards[i].buckets)
		l.shards[i].mu.Unlock()
	}
	return n
}

// ClientIP is the request's client IP: the direct peer, or the nearest
// untrusted address in X-Forwarded-For when the peer is a trusted proxy.
func ClientIP(c *echo.Context) string { return c.RealIP() }

// clientAddr finds the client address without allocating for IPv4.
func (s *Server) clientAddr(r *http.Request) netip.Addr {
	peer := parseHostPort(r.RemoteAddr)
	if len(s.opts.TrustedProxies) == 0 || !s.trusted(peer) {
		return peer
	}
	// Walk X-Forwarded-For from the right: each trusted hop vouches for the
	// address to its left; the first untrusted one is the client.
	client := peer
	xff := r.Header["X-Forwarded-For"]
	for i := len(xff) - 1; i >= 0; i-- {
		v := xff[i]
		for v != "" {
			part := v
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				part, v = v[j+1:], v[:j]
			} else {
				v = ""
			}
			a, err := netip.ParseAddr(strings.TrimSpace(part))
			if err != nil {
				return client
			}
			a = a.Unmap()
			if !s.trusted(a) {
				return a
			}
			client = a
		}
	}
	return client
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func parseHostPort(hp string) netip.Addr {
	if ap, err := netip.ParseAddrPort(hp); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(hp); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

// RouteLimit names a rate limit of its own that a few anonymous routes opt
// into at registration (Server.Limit): a budget per client and one for all
// clients together, so that a flood from many addresses cannot hold the
// database writer these routes write through. Owner routes keep their own
// rules (the gate, and the throttle of failed credentials).
type RouteLimit string

// The named route limits.
const (
	// LimitCallback is for the OAuth callback: each request consumes an
	// OAuth state, a write.
	LimitCallback RouteLimit = "callback"
)

// routeBudget is a route limit's rates: requests per second and bursts, per
// client and in total.
type routeBudget struct {
	clientRate, clientBurst float64
	totalRate, totalBurst   float64
}

// routeLimits are the budgets of the named limits. An owner connects or
// signs in with a handful of requests; a flood gets a few writes a second.
var routeLimits = map[RouteLimit]routeBudget{
	LimitCallback: {clientRate: 0.2, clientBurst: 10, totalRate: 5, totalBurst: 20},
}

// routeLimiter is one named limit's state.
type routeLimiter struct {
	clients *ipLimiter
	total   *ipLimiter // one bucket, under the zero address
}

func newRouteLimiters(v6Bits int, now func() time.Time) map[RouteLimit]*routeLimiter {
	out := make(map[RouteLimit]*routeLimiter, len(routeLimits))
	for name, b := range routeLimits {
		l := &routeLimiter{clients: newIPLimiter(b.clientRate, b.clientBurst, now), total: newIPLimiter(b.totalRate, b.totalBurst, now)}
		l.clients.v6Bits = v6Bits
		out[name] = l
	}
	return out
}

// Limit returns the middleware of the named route limit, for a route or a
// group to opt into at registration. Every route that names the same limit
// shares its budgets.
func (s *Server) Limit(name RouteLimit) echo.MiddlewareFunc {
	l := s.routeLimits[name]
	if l == nil {
		panic("server: unknown route limit " + string(name))
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			now := s.now()
			if ok, wait := l.clients.allowAt(s.clientAddr(c.Request()), now); !ok {
				return rateLimited(wait)
			}
			if ok, wait := l.total.allowAt(netip.Addr{}, now); !ok {
				return rateLimited(wait)
			}
			return next(c)
		}
	}
}
