package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/app"
	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/sandbox"
)

// fixedKey is the token encryption key of every run, so that a restart on
// the same data dir opens the same tokens.
var fixedKey = bytes.Repeat([]byte{0x5a}, config.KeySize)

const adminToken = "soak-admin-token-0123456789abcdefghij"

// newSandbox starts the fake Instagram on its own loopback server. Its call
// budgets are lifted: many feeds share two accounts here, and the test
// throttles on purpose rather than through the usage counters.
func newSandbox(t testing.TB) (*sandbox.Sandbox, string) {
	t.Helper()
	sb := sandbox.New(sandbox.Options{
		Seed:                  1,
		DisableImageGenerator: true,
		AccountCallBudget:     1 << 30,
		AppCallBudget:         1 << 30,
	})
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	if err := sb.SetBaseURL(srv.URL); err != nil {
		t.Fatal(err)
	}
	return sb, srv.Listener.Addr().String()
}

// instance is one running feedd program.
type instance struct {
	m      *app.Main
	base   string
	logs   *logCounter
	cancel context.CancelFunc
	done   chan error
}

// startApp builds and runs feedd on a fresh loopback port over dir, wired to
// sb, with the visitor rate limit off (all load comes from one IP).
func startApp(t testing.TB, sb *sandbox.Sandbox, sbHost, dir string, tweak func(*config.Config)) *instance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	cfg := config.Default()
	cfg.Addr = ln.Addr().String()
	cfg.DataDir = dir
	cfg.PublicURL, _ = url.Parse(base)
	cfg.InstagramAppID, cfg.InstagramAppSecret = sb.AppID(), sb.AppSecret()
	cfg.AuthorizeURL, cfg.TokenURL, cfg.GraphURL = sb.AuthorizeURL(), sb.TokenURL(), sb.GraphURL()
	cfg.MediaHosts = []string{sbHost}
	cfg.MediaAllowPrivate = true
	cfg.SecretKeys = [][]byte{fixedKey}
	cfg.AdminToken = adminToken
	cfg.RateLimit = 0
	cfg.GraphRate, cfg.GraphBurst = 50, 50
	// The sandbox has two accounts for all the feeds; an account's own
	// budget would be the bottleneck of every test here.
	cfg.GraphAccountRate = 1e6
	if tweak != nil {
		tweak(&cfg)
	}
	logs := &logCounter{}
	m, err := app.New(context.Background(), cfg, app.Options{
		Stdout:   io.Discard,
		Logger:   slog.New(logs),
		Listener: ln,
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{m: m, base: base, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- m.Run(ctx) }()
	t.Cleanup(func() { in.stop(t) })
	return in
}

// stop shuts the program down and waits for it; safe to call twice.
func (in *instance) stop(t testing.TB) {
	if in.cancel == nil {
		return
	}
	in.cancel()
	in.cancel = nil
	select {
	case err := <-in.done:
		if err != nil {
			t.Errorf("feedd stopped with: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("feedd did not stop within 30s")
	}
}

// connectFeeds creates n feeds and connects each with a pasted token, as
// an owner would; acctOf picks each feed's account. It returns the ids in
// order and waits until every feed has its first snapshot.
func connectFeeds(t testing.TB, in *instance, sb *sandbox.Sandbox, n int, acctOf func(i int) string) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, n)
	for i := range n {
		st, err := in.m.Owner.CreateFeed(ctx, fmt.Sprintf("soak feed %04d", i), nil)
		if err != nil {
			t.Fatalf("create feed %d: %v", i, err)
		}
		ids[i] = st.ID
	}
	// A few owners at once, as the setup page would see them.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := atomic.Int64{}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := pasteFresh(ctx, in, sb, ids[i], acctOf(i)); err != nil {
					errs <- fmt.Errorf("connect feed %d: %w", i, err)
					return
				}
				// Joins the first fetch the connect started.
				if err := in.m.Feeds.FetchNow(ctx, ids[i]); err != nil {
					errs <- fmt.Errorf("first fetch of feed %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids
}

// pasteFresh connects feed id to acct with a newly minted long-lived token
// (two days old, so the refresh at paste time succeeds).
func pasteFresh(ctx context.Context, in *instance, sb *sandbox.Sandbox, id, acct string) error {
	tok := sb.MintLongLivedToken(acct, time.Now().Add(-48*time.Hour))
	_, err := in.m.Owner.PasteToken(ctx, id, tok)
	return err
}

// logCounter is a slog handler that counts warnings and errors and keeps
// the first few error messages for the report.
type logCounter struct {
	mu     sync.Mutex
	warns  int
	errors int
	first  []string
	counts map[string]int
}

func (l *logCounter) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler            { return l }
func (l *logCounter) WithGroup(string) slog.Handler                 { return l }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts = map[string]int{}
	}
	l.counts[r.Level.String()+" "+r.Message]++
	if r.Level >= slog.LevelError {
		l.errors++
		if len(l.first) < 10 {
			var b strings.Builder
			b.WriteString(r.Message)
			r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
			l.first = append(l.first, b.String())
		}
	} else {
		l.warns++
	}
	return nil
}

func (l *logCounter) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]string, 0, len(l.counts))
	for k := range l.counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %6d × %s\n", l.counts[k], k)
	}
	return b.String()
}

// --- visitors ---

// visitors sends a steady request rate at the feeds from a few keep-alive
// workers and records every answer.
type visitors struct {
	base   string
	ids    []string
	client *http.Client

	mu       sync.Mutex
	etags    map[string]string   // feed id -> last ETag
	media    map[string][]string // feed id -> image URLs of its last JSON
	byKind   map[string]map[int]int
	latency  []time.Duration
	bad      []string // first unexpected answers
	transErr int
	gone404  int // media 404s for an image no longer in its feed (explained)
	stale    int
	skipped  atomic.Int64
	sent     atomic.Int64
}

func newVisitors(base string, ids []string, workers int) *visitors {
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers, IdleConnTimeout: time.Minute}
	return &visitors{
		base: base, ids: ids,
		client: &http.Client{Transport: tr, Timeout: 15 * time.Second},
		etags:  map[string]string{}, media: map[string][]string{}, byKind: map[string]map[int]int{},
	}
}

// run sends rate requests per second until ctx ends.
func (v *visitors) run(ctx context.Context, rate, workers int) {
	jobs := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 42))
			for range jobs {
				v.one(rnd)
			}
		}()
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer func() { tick.Stop(); close(jobs); wg.Wait() }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			select {
			case jobs <- struct{}{}:
				v.sent.Add(1)
			default:
				v.skipped.Add(1) // the workers fell behind: a slow server shows here
			}
		}
	}
}

// one sends one visitor request: feed JSON (half of them revalidating
// with the last ETag), the HTML fragment, or a stored image.
func (v *visitors) one(rnd *rand.Rand) {
	id := v.ids[rnd.IntN(len(v.ids))]
	switch p := rnd.IntN(100); {
	case p < 35:
		v.feedJSON(id, false)
	case p < 70:
		v.feedJSON(id, true)
	case p < 85:
		v.get("fragment", v.base+"/feeds/"+id+".html", nil)
	default:
		v.mu.Lock()
		urls := v.media[id]
		v.mu.Unlock()
		if len(urls) == 0 {
			v.feedJSON(id, false)
			return
		}
		u := urls[rnd.IntN(len(urls))]
		code, _ := v.get("media", u, nil)
		if code == http.StatusNotFound {
			v.explainMedia404(id, u)
		}
	}
}

type feedDoc struct {
	Stale   bool            `json:"stale"`
	Account json.RawMessage `json:"account"`
	Posts   []struct {
		ID     string `json:"id"`
		Images []struct {
			URL string `json:"url"`
		} `json:"images"`
	} `json:"posts"`
}

func (d *feedDoc) imageURLs() []string {
	var out []string
	for _, p := range d.Posts {
		for _, im := range p.Images {
			out = append(out, im.URL)
		}
	}
	return out
}

func (v *visitors) feedJSON(id string, revalidate bool) {
	hdr := http.Header{}
	kind := "json"
	if revalidate {
		v.mu.Lock()
		et := v.etags[id]
		v.mu.Unlock()
		if et != "" {
			hdr.Set("If-None-Match", et)
			kind = "json_inm"
		}
	}
	code, resp := v.get(kind, v.base+"/api/v1/feeds/"+id, hdr)
	if code != http.StatusOK || resp == nil {
		return
	}
	var d feedDoc
	if err := json.Unmarshal(resp.body, &d); err != nil {
		v.record("json", 0, fmt.Sprintf("feed %s: undecodable JSON: %v", id, err))
		return
	}
	v.mu.Lock()
	v.etags[id] = resp.etag
	v.media[id] = d.imageURLs()
	if d.Stale {
		v.stale++
	}
	v.mu.Unlock()
}

// explainMedia404 decides whether a missing image is explained: it is
// when the feed no longer lists it (a newer snapshot dropped the post and
// its file was removed between the visitor's JSON and image requests).
func (v *visitors) explainMedia404(id, u string) {
	code, resp := v.get("json", v.base+"/api/v1/feeds/"+id, nil)
	if code == http.StatusOK {
		var d feedDoc
		if json.Unmarshal(resp.body, &d) == nil {
			v.mu.Lock()
			v.media[id] = d.imageURLs()
			v.mu.Unlock()
			if !slices.Contains(d.imageURLs(), u) {
				v.mu.Lock()
				v.gone404++
				v.byKind["media"][http.StatusNotFound]--
				v.mu.Unlock()
				return
			}
		}
	}
	v.mu.Lock()
	if len(v.bad) < 20 {
		v.bad = append(v.bad, fmt.Sprintf("media 404 for an image feed %s still lists: %s", id, u))
	}
	v.mu.Unlock()
}

type answer struct {
	body []byte
	etag string
}

func (v *visitors) get(kind, u string, hdr http.Header) (int, *answer) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		v.record(kind, 0, err.Error())
		return 0, nil
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	start := time.Now()
	resp, err := v.client.Do(req)
	if err != nil {
		v.record(kind, 0, fmt.Sprintf("GET %s: %v", u, err))
		return 0, nil
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	el := time.Since(start)
	if rerr != nil {
		v.record(kind, 0, fmt.Sprintf("GET %s: reading body: %v", u, rerr))
		return 0, nil
	}
	msg := ""
	switch {
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests:
		msg = fmt.Sprintf("GET %s: %d %.200s", u, resp.StatusCode, body)
	case resp.StatusCode == http.StatusNotFound && kind != "media":
		msg = fmt.Sprintf("GET %s: 404 %.200s", u, body)
	case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotModified && resp.StatusCode != http.StatusNotFound:
		msg = fmt.Sprintf("GET %s: %d %.200s", u, resp.StatusCode, body)
	}
	v.record(kind, resp.StatusCode, msg)
	v.mu.Lock()
	v.latency = append(v.latency, el)
	v.mu.Unlock()
	return resp.StatusCode, &answer{body: body, etag: resp.Header.Get("ETag")}
}

func (v *visitors) record(kind string, code int, bad string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.byKind[kind] == nil {
		v.byKind[kind] = map[int]int{}
	}
	v.byKind[kind][code]++
	if code == 0 {
		v.transErr++
	}
	if bad != "" && len(v.bad) < 20 {
		v.bad = append(v.bad, bad)
	}
}

// visitorStats is what the visitors saw.
type visitorStats struct {
	total, c5xx, c404, c429, c304, other, transport, gone404, stale int
	p50, p99, max                                                   time.Duration
	byKind                                                          string
	bad                                                             []string
	skipped                                                         int64
}

func (v *visitors) stats() visitorStats {
	v.mu.Lock()
	defer v.mu.Unlock()
	var s visitorStats
	kinds := make([]string, 0, len(v.byKind))
	for k := range v.byKind {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	var b strings.Builder
	for _, k := range kinds {
		codes := make([]int, 0)
		for c := range v.byKind[k] {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		fmt.Fprintf(&b, "%s:", k)
		for _, c := range codes {
			n := v.byKind[k][c]
			fmt.Fprintf(&b, " %d×%d", n, c)
			s.total += n
			switch {
			case c == 0:
				s.transport += n
			case c >= 500:
				s.c5xx += n
			case c == 404:
				s.c404 += n
			case c == 429:
				s.c429 += n
			case c == 304:
				s.c304 += n
			case c != 200:
				s.other += n
			}
		}
		b.WriteString("; ")
	}
	s.byKind = strings.TrimSuffix(b.String(), "; ")
	s.gone404, s.stale, s.bad = v.gone404, v.stale, slices.Clone(v.bad)
	s.skipped = v.skipped.Load()
	lat := slices.Clone(v.latency)
	slices.Sort(lat)
	if len(lat) > 0 {
		s.p50, s.p99, s.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	return s
}

// --- process figures ---

// procFigures is one sample of the process's size.
type procFigures struct {
	rssKB      int64
	heapInuse  uint64
	goroutines int
}

func (p procFigures) String() string {
	return fmt.Sprintf("RSS %.1f MiB, Go heap in use %.1f MiB, %d goroutines",
		float64(p.rssKB)/1024, float64(p.heapInuse)/(1<<20), p.goroutines)
}

// sample reads RSS, heap and goroutines a few times over about a second
// and keeps the median of each, so one in-flight fetch does not decide.
func sample() procFigures {
	var rss []int64
	var heap []uint64
	var gor []int
	for i := range 5 {
		if i > 0 {
			time.Sleep(250 * time.Millisecond)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		rss = append(rss, readRSS())
		heap = append(heap, ms.HeapInuse)
		gor = append(gor, runtime.NumGoroutine())
	}
	slices.Sort(rss)
	slices.Sort(heap)
	slices.Sort(gor)
	return procFigures{rssKB: rss[2], heapInuse: heap[2], goroutines: gor[2]}
}

// readRSS is VmRSS of this process in kB (0 where /proc is missing).
func readRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return n
		}
	}
	return 0
}

// --- Graph call accounting ---

// graphEndpoints are the sandbox endpoints that count as Graph API calls
// (the CDN serves images and is not rate limited).
var graphEndpoints = map[string]bool{
	sandbox.EndpointMe: true, sandbox.EndpointMedia: true, sandbox.EndpointMediaNode: true,
	sandbox.EndpointRefresh: true, sandbox.EndpointExchange: true, sandbox.EndpointToken: true,
}

// callTally drains the sandbox's call log now and then (so the test's own
// bookkeeping does not grow the process being measured) and keeps counts.
type callTally struct {
	mu         sync.Mutex
	byEndpoint map[string]int
	byStatus   map[int]int
	graph      int
	cdn        int
	perSecond  map[int64]int // graph calls per wall-clock second
	phaseCalls map[string]int
	phaseTime  map[string]time.Duration
}

func newCallTally() *callTally {
	return &callTally{byEndpoint: map[string]int{}, byStatus: map[int]int{}, perSecond: map[int64]int{}}
}

func (c *callTally) drain(sb *sandbox.Sandbox) {
	calls := sb.Calls()
	sb.ResetCalls()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cl := range calls {
		c.byEndpoint[cl.Endpoint]++
		if graphEndpoints[cl.Endpoint] {
			c.graph++
			c.byStatus[cl.Status]++
			c.perSecond[cl.Time.Unix()]++
		} else if cl.Endpoint == sandbox.EndpointCDN {
			c.cdn++
		}
	}
}

// drainPhase drains the log and attributes its Graph calls to a fault
// phase that lasted d.
func (c *callTally) drainPhase(sb *sandbox.Sandbox, phase string, d time.Duration) {
	before := c.graphCalls()
	c.drain(sb)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.phaseCalls == nil {
		c.phaseCalls, c.phaseTime = map[string]int{}, map[string]time.Duration{}
	}
	c.phaseCalls[phase] += c.graph - before
	c.phaseTime[phase] += d
}

func (c *callTally) graphCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.graph
}

// phaseRates is Graph calls per feed per hour in each phase.
func (c *callTally) phaseRates(feeds int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for _, ph := range []string{"normal", "outage", "throttle", "revoke", "expired_media"} {
		if d := c.phaseTime[ph]; d > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f (%d calls in %s)", ph,
				float64(c.phaseCalls[ph])/float64(feeds)/d.Hours(), c.phaseCalls[ph], d.Round(time.Second)))
		}
	}
	return strings.Join(parts, ", ")
}

func (c *callTally) peakPerSecond() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := 0
	for _, n := range c.perSecond {
		m = max(m, n)
	}
	return m
}

func (c *callTally) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("graph %d (by endpoint %v; by status %v), cdn %d", c.graph, sortedMap(c.byEndpoint), sortedMap(c.byStatus), c.cdn)
}

func sortedMap[K int | string](m map[K]int) string {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%v:%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// --- report ---

// report appends a Markdown block to FEEDD_SOAK_REPORT when set, and logs
// it either way.
func report(t testing.TB, title string, lines []string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "\n### %s (%s)\n\n", title, time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "- machine: %s/%s, GOMAXPROCS %d, NumCPU %d, %s\n", runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version())
	for _, l := range lines {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	t.Log(b.String())
	path := os.Getenv("FEEDD_SOAK_REPORT")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("FEEDD_SOAK_REPORT: %v", err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		t.Errorf("FEEDD_SOAK_REPORT: %v", err)
	}
}

func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
