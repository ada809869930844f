package soak

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/sandbox"
)

// TestHostileMix measures feedd under a hostile mix of requests at the
// configured visitor rate limit (FEEDD_RATE_LIMIT, 20/s per client), for
// FEEDD_HOSTILE (a Go duration, e.g. 60s), after a quiet phase of the same
// well-behaved visitors alone:
//
//   - random well-formed cursors with random limits, types and junk
//     parameters (some for feeds that do not exist), each request from a
//     new IPv6 /64: 8 streams at the rate limit each (with
//     FEEDD_HOSTILE_REPEAT set, each made-up query is asked twice, so that
//     the cache keeps it and fills to its bound);
//   - one stream at five times the limit rotating addresses inside a
//     single /64 (the visitor limit counts the /64 as one client);
//   - OAuth callbacks with made-up states and codes, sign-in attempts with
//     wrong tokens and made-up setup links, each from a new /64, at the
//     rate limit each.
//
// Meanwhile 20 well-behaved visitors (one IPv4 address each, 5 requests
// a second each) read their feeds, and the poller keeps polling the 20
// feeds every 10 s while new posts appear. Budgets (issue 16): resident
// memory grows by at most 70 MiB, the visitors' p99 stays within twice its
// quiet value, and every new post is stored by a poll (no write starved).
func TestHostileMix(t *testing.T) {
	v := os.Getenv("FEEDD_HOSTILE")
	if v == "" {
		t.Skip("hostile: set FEEDD_HOSTILE to a duration (e.g. 60s) to run")
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 10*time.Second {
		t.Fatalf("FEEDD_HOSTILE=%q: want a Go duration of at least 10s", v)
	}
	const (
		feeds     = 20
		fetch     = 10 * time.Second
		goodRate  = 100 // requests per second, all good visitors together
		quietTime = 20 * time.Second
	)
	limit := int(config.Default().RateLimit)
	sb, sbHost := newSandbox(t)
	in := startApp(t, sb, sbHost, t.TempDir(), func(c *config.Config) {
		c.RateLimit = config.Default().RateLimit
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.FetchInterval = fetch
	})
	acctOf := func(i int) string {
		if i < 2 {
			return sandbox.AccountCreator
		}
		return sandbox.AccountBusiness
	}
	ids := connectFeeds(t, in, sb, feeds, acctOf)
	load0 := loadAverage()

	good := newGoodVisitors(in.base, ids)
	goodCtx, stopGood := context.WithCancel(context.Background())
	goodDone := make(chan struct{})
	go func() { good.run(goodCtx, goodRate); close(goodDone) }()
	defer func() { stopGood(); <-goodDone }()

	time.Sleep(5 * time.Second) // warm: every feed's answers cached
	good.reset()
	quietPost, err := sb.AddPost(sandbox.AccountCreator, sandbox.PostSpec{Caption: "quiet phase"})
	if err != nil {
		t.Fatal(err)
	}
	quietDelay, shown := waitNewest(in.base, ids[0], quietPost, quietTime)
	if !shown {
		t.Fatalf("a post added in the quiet phase was not shown within %s", quietTime)
	}
	time.Sleep(quietTime - quietDelay)
	quiet := good.reset()
	before := sample()
	polls0 := counterValue(in.m.Registry, "feedd_polls_total", "outcome", "ok")

	// The hostile phase.
	h := &hostile{base: in.base, ids: ids, client: &http.Client{
		Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute},
		Timeout:   15 * time.Second,
	}, codes: map[string]map[int]int{}, repeat: os.Getenv("FEEDD_HOSTILE_REPEAT") != ""}
	hctx, stopHostile := context.WithTimeout(context.Background(), d)
	defer stopHostile()
	var wg sync.WaitGroup
	stream := func(kind string, rate int, seed uint64) {
		wg.Add(1)
		go func() { defer wg.Done(); h.run(hctx, kind, rate, seed) }()
	}
	for i := range 8 {
		stream("cursor", limit, uint64(i))
	}
	stream("same_64", 5*limit, 100)
	stream("callback", limit, 200)
	stream("sign_in", limit, 300)

	// Memory, sampled every second; new posts, every 2.5 fetch intervals.
	var peakRSS int64
	var peakCache float64
	var postMu sync.Mutex
	var delays []time.Duration
	var lost []string
	tick := time.NewTicker(time.Second)
	nextPost := time.Now()
	for hctx.Err() == nil {
		<-tick.C
		peakRSS = max(peakRSS, readRSS())
		peakCache = max(peakCache, gaugeValue(in.m.Registry, "feedd_feed_cache_bytes"))
		if time.Now().After(nextPost) && time.Until(deadlineOf(hctx)) > 3*fetch {
			nextPost = time.Now().Add(5 * fetch / 2)
			id, err := sb.AddPost(sandbox.AccountCreator, sandbox.PostSpec{Caption: "hostile phase " + time.Now().Format(time.TimeOnly)})
			if err != nil {
				t.Fatal(err)
			}
			added := time.Now()
			wg.Add(1)
			go func() {
				defer wg.Done()
				took, ok := waitNewest(in.base, ids[0], id, 3*fetch+5*time.Second)
				postMu.Lock()
				defer postMu.Unlock()
				if ok {
					delays = append(delays, took)
				} else {
					lost = append(lost, fmt.Sprintf("post %s added %s not shown after %s", id, added.Format(time.TimeOnly), 3*fetch+5*time.Second))
				}
			}()
		}
	}
	tick.Stop()
	wg.Wait()
	during := good.reset()
	after := sample()
	polls := counterValue(in.m.Registry, "feedd_polls_total", "outcome", "ok") - polls0
	load1 := loadAverage()
	stopGood()
	<-goodDone

	growth := max(peakRSS, after.rssKB) - before.rssKB
	slices.Sort(delays)
	lines := []string{
		fmt.Sprintf("command: `%sFEEDD_HOSTILE=%s go test -run TestHostileMix -v -timeout 10m ./internal/soak/`", map[bool]string{true: "FEEDD_HOSTILE_REPEAT=1 "}[h.repeat], d),
		fmt.Sprintf("%d feeds polled every %s; FEEDD_RATE_LIMIT %d/s per client (burst %d), IPv6 clients by /64, behind a trusted proxy (X-Forwarded-For); load average (1, 5, 15 min) %s before, %s after",
			feeds, fetch, limit, 2*limit, load0, load1),
		fmt.Sprintf("well-behaved visitors: 20 IPv4 clients, %d requests/s in all (feed JSON, half revalidating with If-None-Match, a tenth the next page)", goodRate),
		fmt.Sprintf("**quiet** (%s, visitors alone): %s", quietTime, quiet),
		fmt.Sprintf("**hostile** (%s, visitors and the mix): %s; **p99 %.2f× the quiet one**", d, during, float64(during.p99)/float64(max(quiet.p99, 1))),
		fmt.Sprintf("hostile answers by kind and status: %s", h.summary()),
		fmt.Sprintf("resident memory: %s before the mix, peak %s during it, %s after it: **growth %s**; hot cache peak %.1f MiB (bound %d MiB)",
			mib(before.rssKB), mib(peakRSS), mib(after.rssKB), mib(growth), peakCache/(1<<20), config.Default().CacheMemory>>20),
		fmt.Sprintf("writes: %.0f polls stored their posts during the mix; %d new posts shown after %v (added every %s, polled every %s; in the quiet phase one was shown after %s)",
			polls, len(delays), roundAll(delays), 5*fetch/2, fetch, quietDelay.Round(100*time.Millisecond)),
		fmt.Sprintf("feedd log: %d warnings, %d errors", in.logs.warns, in.logs.errors),
	}
	report(t, fmt.Sprintf("hostile mix: %s", d), lines)
	t.Logf("feedd log lines by level and message:\n%s", in.logs.summary())

	if growth > 70<<10 {
		t.Errorf("resident memory grew by %s under the mix, budget 70 MiB", mib(growth))
	}
	if during.p99 > 2*quiet.p99 {
		t.Errorf("visitors' p99 %s under the mix, more than twice the quiet %s", during.p99, quiet.p99)
	}
	if during.refused+during.failed > 0 || quiet.refused+quiet.failed > 0 {
		t.Errorf("well-behaved visitors refused (429) %d times, failed %d times", during.refused+quiet.refused, during.failed+quiet.failed)
	}
	for _, l := range lost {
		t.Error(l)
	}
	if len(delays) == 0 {
		t.Error("no new post was checked during the mix")
	}
	if n := h.count("cursor", 500) + h.count("callback", 500) + h.count("sign_in", 500); n > 0 {
		t.Errorf("%d hostile requests answered 500", n)
	}
	if h.count("same_64", http.StatusTooManyRequests) == 0 {
		t.Error("rotating addresses inside one /64 was never limited")
	}
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// waitNewest waits until feed id's JSON shows post first, and says how long
// that took.
func waitNewest(base, id, post string, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < limit {
		resp, err := http.Get(base + "/api/v1/feeds/" + id)
		if err == nil {
			var d feedDoc
			derr := json.NewDecoder(resp.Body).Decode(&d)
			resp.Body.Close()
			if derr == nil && len(d.Posts) > 0 && d.Posts[0].ID == post {
				return time.Since(start), true
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return 0, false
}

// goodVisitors are well-behaved visitors: each client has its own IPv4
// address and stays far below the rate limit.
type goodVisitors struct {
	base   string
	ids    []string
	client *http.Client

	mu    sync.Mutex
	etags map[string]string
	next  map[string]string
	lat   []time.Duration
	stats goodStats
}

// goodStats is what the visitors saw in one phase.
type goodStats struct {
	n, refused, failed int
	p50, p99, max      time.Duration
}

func (s goodStats) String() string {
	return fmt.Sprintf("%d requests, p50 %s, p99 %s, max %s, %d refused (429), %d failed",
		s.n, s.p50, s.p99, s.max.Round(100*time.Microsecond), s.refused, s.failed)
}

func newGoodVisitors(base string, ids []string) *goodVisitors {
	return &goodVisitors{base: base, ids: ids, etags: map[string]string{}, next: map[string]string{},
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 15 * time.Second}}
}

// run sends rate requests a second from 4 keep-alive connections until ctx
// ends; request n comes from client n mod 20.
func (g *goodVisitors) run(ctx context.Context, rate int) {
	jobs := make(chan int, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				g.one(n)
			}
		}()
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer func() { tick.Stop(); close(jobs); wg.Wait() }()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			select {
			case jobs <- n:
			default:
			}
		}
	}
}

func (g *goodVisitors) one(n int) {
	client := n % 20
	id := g.ids[client%len(g.ids)]
	u := g.base + "/api/v1/feeds/" + id
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", client+1))
	req.Header.Set("Accept-Encoding", "gzip")
	g.mu.Lock()
	switch {
	case n%10 == 3 && g.next[id] != "":
		req.URL.RawQuery = "after=" + url.QueryEscape(g.next[id])
	case n%2 == 1 && g.etags[id] != "":
		req.Header.Set("If-None-Match", g.etags[id])
	}
	g.mu.Unlock()
	start := time.Now()
	resp, err := g.client.Do(req)
	if err != nil {
		g.record(0, 0)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	el := time.Since(start)
	g.record(resp.StatusCode, el)
	if resp.StatusCode == http.StatusOK && req.URL.RawQuery == "" {
		g.mu.Lock()
		g.etags[id] = resp.Header.Get("ETag")
		learn := g.next[id] == ""
		g.mu.Unlock()
		if learn {
			g.learnNext(id)
		}
	}
}

func (g *goodVisitors) learnNext(id string) {
	resp, err := g.client.Get(g.base + "/api/v1/feeds/" + id + "?limit=5")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	var d struct{ Next *string }
	if json.NewDecoder(resp.Body).Decode(&d) == nil && d.Next != nil {
		g.mu.Lock()
		g.next[id] = *d.Next
		g.mu.Unlock()
	}
}

func (g *goodVisitors) record(code int, el time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch code {
	case http.StatusOK, http.StatusNotModified:
		g.lat = append(g.lat, el)
	case http.StatusTooManyRequests:
		g.stats.refused++
	default:
		g.stats.failed++
	}
}

// reset returns the phase's figures and starts a new phase.
func (g *goodVisitors) reset() goodStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.stats
	s.n = len(g.lat) + s.refused + s.failed
	s.p50, s.p99 = pct(g.lat, 50), pct(g.lat, 99)
	if len(g.lat) > 0 {
		s.max = slices.Max(g.lat)
	}
	g.lat, g.stats = nil, goodStats{}
	return s
}

// hostile sends the hostile mix and counts its answers.
type hostile struct {
	base   string
	ids    []string
	client *http.Client
	repeat bool // every made-up query is asked twice, so that it is cached

	mu    sync.Mutex
	codes map[string]map[int]int
}

// run sends rate requests a second of kind until ctx ends.
func (h *hostile) run(ctx context.Context, kind string, rate int, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 16))
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, 8)
	var again *http.Request
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		req := again
		if again == nil {
			req = h.request(kind, rnd)
			if h.repeat && kind == "cursor" {
				// The same made-up query once more, from another /64.
				again = req.Clone(context.Background())
				again.Header.Set("X-Forwarded-For", h.request(kind, rnd).Header.Get("X-Forwarded-For"))
			}
		} else {
			again = nil
		}
		select {
		case sem <- struct{}{}:
		default:
			h.add(kind, -1) // the server is behind: counted, not sent
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			code := 0
			if resp, err := h.client.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
			h.add(kind, code)
		}()
	}
}

// request builds one hostile request of kind.
func (h *hostile) request(kind string, rnd *rand.Rand) *http.Request {
	var req *http.Request
	addr := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(rnd.UintN(256)), byte(rnd.UintN(256)), byte(rnd.UintN(256)), byte(rnd.UintN(256)), 15: 1})
	switch kind {
	case "cursor", "same_64":
		id := h.ids[rnd.IntN(len(h.ids))]
		if rnd.IntN(10) == 0 {
			id = randomString(rnd, 10) // a feed that does not exist
		}
		q := url.Values{}
		ts := time.Now().Add(-time.Duration(rnd.Int64N(int64(90 * 24 * time.Hour)))).Unix()
		q.Set("after", base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(ts, 10)+":"+strconv.FormatUint(rnd.Uint64(), 10))))
		q.Set("limit", strconv.Itoa(1+rnd.IntN(100)))
		q.Set("type", []string{"image", "video", "carousel", "reel", "image,reel", "video,carousel"}[rnd.IntN(6)])
		for range 3 {
			q.Set(randomString(rnd, 6), randomString(rnd, 12))
		}
		req, _ = http.NewRequest(http.MethodGet, h.base+"/api/v1/feeds/"+id+"?"+q.Encode(), nil)
		if kind == "same_64" {
			b := addr.As16()
			copy(b[:8], []byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0, 1})
			for i := 8; i < 16; i++ {
				b[i] = byte(rnd.UintN(256))
			}
			addr = netip.AddrFrom16(b)
		}
	case "callback":
		q := url.Values{"state": {randomString(rnd, 43)}, "code": {randomString(rnd, 60)}}
		req, _ = http.NewRequest(http.MethodGet, h.base+"/auth/instagram/callback?"+q.Encode(), nil)
	case "sign_in":
		if rnd.IntN(2) == 0 {
			req, _ = http.NewRequest(http.MethodGet, h.base+"/setup/login?t="+randomString(rnd, 43), nil)
		} else {
			form := url.Values{"token": {randomString(rnd, 32)}}
			req, _ = http.NewRequest(http.MethodPost, h.base+"/setup/login", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", h.base)
		}
	}
	req.Header.Set("X-Forwarded-For", addr.String())
	return req
}

// add counts an answer of kind with code (-1: not sent, 0: no answer).
func (h *hostile) add(kind string, code int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.codes[kind] == nil {
		h.codes[kind] = map[int]int{}
	}
	h.codes[kind][code]++
}

// count is how many answers of kind had code.
func (h *hostile) count(kind string, code int) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.codes[kind][code]
}

func (h *hostile) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var parts []string
	for _, k := range []string{"cursor", "same_64", "callback", "sign_in"} {
		parts = append(parts, k+" "+sortedMap(h.codes[k]))
	}
	return strings.Join(parts, "; ") + " (status -1: not sent, the server was behind; 0: transport error)"
}

func randomString(rnd *rand.Rand, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rnd.IntN(len(alphabet))]
	}
	return string(b)
}
