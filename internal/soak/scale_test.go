package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/app"
	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/secret"
	"github.com/feedd/feedd/internal/store"
)

// Budgets of the scale test (issue 16).
const (
	scaleRSSBudget   = 200 << 10 // kB: resident memory with the cache at its bound
	scaleFirstBudget = 100 * time.Millisecond
)

// TestScaleFigures measures feedd with 10,000 connected feeds, the hot
// cache at its default bound (FEEDD_CACHE_MEMORY 64 MiB):
//
//   - the time from start until every feed has had its first poll, and the
//     p99 of warm feed requests while those polls run, against the p99 of
//     the same requests once they are done;
//   - resident memory and Go heap once every feed has been requested (the
//     cache full, evicting), against the 200 MiB budget;
//   - after a restart on the same data dir, the time until the first feed
//     and then all of them are served from the persisted snapshots (no poll
//     is due), against the 100 ms budget for the first.
//
// FEEDD_SCALE=1 runs it; FEEDD_SCALE_FEEDS overrides the number of feeds.
// The feeds are created and connected in the database before feedd starts,
// as after an import, so that the poller alone brings them their posts.
//
// The sandbox has two connectable accounts, so the feeds share them (95 %
// on one, 5 % on the other) and their budgets are lifted
// (FEEDD_GRAPH_ACCOUNT_RATE), as with many accounts each would have its
// own. Posts and pictures are shared too (a media key is the Instagram media
// id), which is also what happens when one account feeds several sites;
// each feed still has its own snapshot rows, cache entries and poll
// schedule, which is what grows with feeds.
func TestScaleFigures(t *testing.T) {
	if os.Getenv("FEEDD_SCALE") == "" {
		t.Skip("scale: set FEEDD_SCALE=1 to run")
	}
	n := 10000
	if v := os.Getenv("FEEDD_SCALE_FEEDS"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil || n < 1 {
			t.Fatalf("FEEDD_SCALE_FEEDS=%q: want a positive number", v)
		}
	}
	sb, sbHost := newSandbox(t)
	dir := t.TempDir()
	acctOf := func(i int) string {
		if i%20 == 0 {
			return sandbox.AccountCreator
		}
		return sandbox.AccountBusiness
	}
	seedStart := time.Now()
	ids := seedFeeds(t, dir, sb, n, acctOf)
	seedTook := time.Since(seedStart)
	load0 := loadAverage()

	// The first start: the poller brings every feed its first snapshot
	// while visitors read a few hundred feeds that already have theirs.
	t0 := time.Now()
	in := startApp(t, sb, sbHost, dir, nil)
	polled := func() int { return int(counterValue(in.m.Registry, "feedd_polls_total", "outcome", "ok")) }
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 30 * time.Second}
	hot := ids[:min(200, n)]
	if bad := serveAll(client, in.base, hot, 4, 5*time.Minute); bad != "" {
		t.Fatalf("the first feeds: %s", bad)
	}
	hotAt := time.Since(t0)
	busyCtx, stopBusy := context.WithCancel(context.Background())
	busy := make(chan []time.Duration, 1)
	go func() { busy <- steadyLoad(busyCtx, client, in.base, hot, 200, 4) }()
	for polled() < n {
		if time.Since(t0) > 20*time.Minute {
			t.Fatalf("%d of %d feeds polled after 20 minutes", polled(), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	firstAll, polls := time.Since(t0), polled()
	stopBusy()
	during := <-busy
	load1 := loadAverage()
	quietCtx, stopQuiet := context.WithTimeout(context.Background(), 15*time.Second)
	quiet := steadyLoad(quietCtx, client, in.base, hot, 200, 4)
	stopQuiet()
	failed := counterValue(in.m.Registry, "feedd_polls_total", "outcome", "error") +
		counterValue(in.m.Registry, "feedd_polls_total", "outcome", "throttled")
	polledFig := settledSample()

	// Every feed requested once: the cache fills to its bound and evicts.
	cacheStart := time.Now()
	if bad := serveAll(client, in.base, ids, 4, 5*time.Minute); bad != "" {
		t.Fatalf("requesting every feed: %s", bad)
	}
	cacheTook := time.Since(cacheStart)
	full := settledSample()
	peak := sample()
	if p := os.Getenv("FEEDD_SCALE_HEAP"); p != "" {
		// What the process holds with the cache at its bound.
		if f, err := os.Create(p); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	cacheBytes := gaugeValue(in.m.Registry, "feedd_feed_cache_bytes")
	cacheEntries := gaugeValue(in.m.Registry, "feedd_feed_cache_entries")
	evictions := counterValue(in.m.Registry, "feedd_feed_cache_evictions_total", "", "")

	in.stop(t)
	in.m = nil // the test's own reference would keep the stopped program's cache alive
	client.CloseIdleConnections()
	tally := newCallTally()
	tally.drain(sb)
	tally = newCallTally()

	// Restart on the same data dir: app.New through to answers.
	t1 := time.Now()
	in2 := startApp(t, sb, sbHost, dir, nil)
	newTook := time.Since(t1)
	var first time.Duration
	for {
		if ok, _ := feedHasPosts(client, in2.base, ids[0]); ok {
			first = time.Since(t1)
			break
		}
		if time.Since(t1) > time.Minute {
			t.Fatalf("feed %s not served with posts within a minute of the restart", ids[0])
		}
		time.Sleep(time.Millisecond)
	}
	if bad := serveAll(client, in2.base, ids, 4, 5*time.Minute); bad != "" {
		t.Fatalf("after the restart: %s", bad)
	}
	all := time.Since(t1)
	tally.drain(sb)
	restarted := settledSample()

	lines := []string{
		fmt.Sprintf("command: `FEEDD_SCALE=1 go test -run TestScaleFigures -v -timeout 60m ./internal/soak/` (%d feeds)", n),
		fmt.Sprintf("%d feeds (%d on %s, %d on %s; about 50 posts each, pictures shared by media id), sandbox images are small placeholders; created and connected in the database in %s before the start",
			n, n-(n+19)/20, sandbox.AccountBusiness, (n+19)/20, sandbox.AccountCreator, seedTook.Round(time.Second)),
		fmt.Sprintf("load average (1, 5, 15 min) before the start: %s; when the first polls ended: %s", load0, load1),
		fmt.Sprintf("**every feed had its first poll %s after the start** (%d polls ok, %v failed); the first %d feeds were served with posts after %s",
			firstAll.Round(time.Second), polls, failed, len(hot), hotAt.Round(time.Millisecond)),
		fmt.Sprintf("warm feed requests (%d feeds, 200/s, 4 keep-alive clients): **p99 %s while the polls ran** (%d requests), p99 %s once they were done (%d requests); p50 %s and %s",
			len(hot), pct(during, 99), len(during), pct(quiet, 99), len(quiet), pct(during, 50), pct(quiet, 50)),
		fmt.Sprintf("after the first polls, %d feeds cached: %s", len(hot), polledFig),
		fmt.Sprintf("**every feed requested once (%s, 4 clients), the cache at its bound**: %s; peak before GC %s; cache %.1f MiB in %.0f entries, %.0f evictions",
			cacheTook.Round(time.Millisecond), full, mib(peak.rssKB), cacheBytes/(1<<20), cacheEntries, evictions),
		fmt.Sprintf("restart on the same data dir: app.New %s; **first feed served with its posts %s** after app.New began; **all %d feeds served with posts %s** (4 clients, most from the database)",
			newTook.Round(time.Millisecond), first.Round(time.Millisecond), n, all.Round(time.Millisecond)),
		fmt.Sprintf("Graph calls during the restart measurement: %d (none are needed: snapshots are persisted)", tally.graph),
		fmt.Sprintf("after the restart, all served once: %s", restarted),
	}
	report(t, fmt.Sprintf("scale: %d feeds", n), lines)

	if full.rssKB > scaleRSSBudget || peak.rssKB > scaleRSSBudget {
		t.Errorf("resident memory with every feed requested: %s settled, %s peak; budget %s", mib(full.rssKB), mib(peak.rssKB), mib(scaleRSSBudget))
	}
	if first > scaleFirstBudget {
		t.Errorf("first feed served %s after the restart began; budget %s", first, scaleFirstBudget)
	}
	if cacheBytes > float64(config.Default().CacheMemory) {
		t.Errorf("the cache holds %.0f bytes, over its bound", cacheBytes)
	}
	if tally.graph != 0 {
		t.Errorf("%d Graph calls after the restart", tally.graph)
	}
}

// seedFeeds creates n feeds in the data dir's database, each connected to
// acctOf(i) with a fresh token and viewed now, as if imported; no poll has
// run. It returns the ids in creation order.
func seedFeeds(t testing.TB, dir string, sb *sandbox.Sandbox, n int, acctOf func(int) string) []string {
	t.Helper()
	ctx := context.Background()
	box, err := secret.New(fixedKey)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(dir, app.DatabaseFile), box, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ids := make([]string, n)
	for i := range n {
		a, err := sb.Account(acctOf(i))
		if err != nil {
			t.Fatal(err)
		}
		f, err := st.CreateFeed(ctx, fmt.Sprintf("scale feed %05d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		obtained := time.Now().Add(-48 * time.Hour)
		tok := model.Token{AccessToken: sb.MintLongLivedToken(a.Username, obtained),
			TokenInfo: model.TokenInfo{ObtainedAt: obtained, ExpiresAt: obtained.Add(sandbox.LongTokenTTL)}}
		acct := model.Account{AppUserID: a.ID, IGUserID: a.UserID, Username: a.Username, Name: a.Name, AccountType: a.AccountType}
		if _, _, err := st.Connect(ctx, f.ID, store.AnyGeneration, acct, tok); err != nil {
			t.Fatal(err)
		}
		if err := st.MarkViewed(ctx, f.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		ids[i] = f.ID
	}
	return ids
}

// steadyLoad requests the feeds' JSON at rate per second from w keep-alive
// clients until ctx ends and returns the latencies of the answers (a
// request the clients could not start in time is not sent).
func steadyLoad(ctx context.Context, client *http.Client, base string, ids []string, rate, w int) []time.Duration {
	jobs := make(chan string, w)
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range jobs {
				start := time.Now()
				resp, err := client.Get(base + "/api/v1/feeds/" + id)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				el := time.Since(start)
				if resp.StatusCode == http.StatusOK {
					mu.Lock()
					lat = append(lat, el)
					mu.Unlock()
				}
			}
		}()
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	var i atomic.Int64
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			select {
			case jobs <- ids[int(i.Add(1))%len(ids)]:
			default:
			}
		}
	}
	close(jobs)
	wg.Wait()
	return lat
}

// pct is the p-th percentile of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)].Round(10 * time.Microsecond)
}

// loadAverage is /proc/loadavg's three figures ("?" without /proc).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	var a, b5, c float64
	if _, err := fmt.Sscan(string(b), &a, &b5, &c); err != nil {
		return "?"
	}
	return fmt.Sprintf("%.2f, %.2f, %.2f", a, b5, c)
}

// counterValue sums the counter name over the series whose label has
// value ("" label: every series).
func counterValue(reg prometheus.Gatherer, name, label, value string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					match = true
				}
			}
			if match {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// gaugeValue is the unlabelled gauge name.
func gaugeValue(reg prometheus.Gatherer, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

// settledSample collects garbage and returns memory to the OS first, so
// the figure is what feedd keeps, not what it has not given back yet.
func settledSample() procFigures {
	runtime.GC()
	debug.FreeOSMemory()
	return sample()
}

// serveAll requests every feed's JSON with w clients and returns what went
// wrong ("" when every feed answered 200 with posts), retrying a feed
// that answers without posts until limit.
func serveAll(client *http.Client, base string, ids []string, w int, limit time.Duration) string {
	var next atomic.Int64
	var mu sync.Mutex
	var bad string
	deadline := time.Now().Add(limit)
	var wg sync.WaitGroup
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ids) {
					return
				}
				for {
					ok, why := feedHasPosts(client, base, ids[i])
					if ok {
						break
					}
					if time.Now().After(deadline) {
						mu.Lock()
						bad = fmt.Sprintf("feed %s: %s", ids[i], why)
						mu.Unlock()
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	return bad
}

// feedHasPosts says whether the feed's JSON answers 200 with posts, and
// what it answered otherwise.
func feedHasPosts(client *http.Client, base, id string) (bool, string) {
	resp, err := client.Get(base + "/api/v1/feeds/" + id)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return false, fmt.Sprintf("status %d", resp.StatusCode)
	}
	var d feedDoc
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return false, err.Error()
	}
	if len(d.Posts) == 0 {
		return false, "no posts"
	}
	return true, ""
}
