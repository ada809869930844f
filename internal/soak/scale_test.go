package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/sandbox"
)

// TestScaleFigures measures feedd with 1,000 connected feeds: resident
// memory with every feed in the hot cache, and, after a restart on the
// same data dir, the time until the first feed and then all of them are
// served from the persisted snapshots (no poll is due). FEEDD_SCALE=1 runs
// it; FEEDD_SCALE_FEEDS overrides the number of feeds.
//
// The sandbox has two connectable accounts, so the feeds share them (950
// on one, 50 on the other). Posts and pictures are then shared too (a media
// key is the Instagram media id), which is also what happens when one
// account feeds several sites; each feed still has its own snapshot rows,
// cache entries and poll schedule, which is what grows with feeds.
func TestScaleFigures(t *testing.T) {
	if os.Getenv("FEEDD_SCALE") == "" {
		t.Skip("scale: set FEEDD_SCALE=1 to run")
	}
	n := 1000
	if v := os.Getenv("FEEDD_SCALE_FEEDS"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil || n < 1 {
			t.Fatalf("FEEDD_SCALE_FEEDS=%q: want a positive number", v)
		}
	}
	sb, sbHost := newSandbox(t)
	dir := t.TempDir()
	tweak := func(c *config.Config) {
		c.FetchInterval = 15 * time.Minute // the default: no poll falls due while measuring
		c.GraphRate, c.GraphBurst = 500, 100
	}
	in := startApp(t, sb, sbHost, dir, tweak)
	waitOK(t, in.base+"/healthz", time.Minute)
	empty := settledSample()

	acctOf := func(i int) string {
		if i%20 == 0 {
			return sandbox.AccountCreator
		}
		return sandbox.AccountBusiness
	}
	connectStart := time.Now()
	ids := connectFeeds(t, in, sb, n, acctOf)
	connectTook := time.Since(connectStart)
	connected := settledSample()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 30 * time.Second}
	cacheStart := time.Now()
	if bad := serveAll(client, in.base, ids, 4, time.Minute); bad != "" {
		t.Fatalf("caching every feed: %s", bad)
	}
	cacheTook := time.Since(cacheStart)
	cached := settledSample()
	// Warm: every answer now comes from the hot cache.
	warmStart := time.Now()
	if bad := serveAll(client, in.base, ids, 4, time.Minute); bad != "" {
		t.Fatalf("warm pass: %s", bad)
	}
	warmTook := time.Since(warmStart)

	in.stop(t)
	in.m = nil // the test's own reference would keep the stopped program's cache alive
	client.CloseIdleConnections()
	stopped := settledSample()
	if os.Getenv("FEEDD_SCALE_HEAP") != "" {
		f, err := os.Create(os.Getenv("FEEDD_SCALE_HEAP"))
		if err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	tally := newCallTally()
	tally.drain(sb)
	tally = newCallTally()

	// Restart on the same data dir: app.New through to answers.
	t0 := time.Now()
	in2 := startApp(t, sb, sbHost, dir, tweak)
	newTook := time.Since(t0)
	var first time.Duration
	for {
		if ok, _ := feedHasPosts(client, in2.base, ids[0]); ok {
			first = time.Since(t0)
			break
		}
		if time.Since(t0) > time.Minute {
			t.Fatalf("feed %s not served with posts within a minute of the restart", ids[0])
		}
		time.Sleep(time.Millisecond)
	}
	if bad := serveAll(client, in2.base, ids, 4, time.Minute); bad != "" {
		t.Fatalf("after the restart: %s", bad)
	}
	all := time.Since(t0)
	tally.drain(sb)
	restarted := settledSample()

	perFeed := func(a, b procFigures) string {
		return fmt.Sprintf("%.1f KiB RSS, %.1f KiB heap per feed",
			float64(b.rssKB-a.rssKB)/float64(n), float64(int64(b.heapInuse)-int64(a.heapInuse))/1024/float64(n))
	}
	report(t, fmt.Sprintf("scale: %d feeds", n), []string{
		"command: `FEEDD_SCALE=1 go test -run TestScaleFigures -v -timeout 30m ./internal/soak/`",
		fmt.Sprintf("%d feeds (%d on %s, %d on %s; about 50 posts each, pictures shared by media id), sandbox images are small placeholders",
			n, n-(n+19)/20, sandbox.AccountBusiness, (n+19)/20, sandbox.AccountCreator),
		fmt.Sprintf("empty server: %s", empty),
		fmt.Sprintf("%d feeds connected and fetched (took %s), none requested since: %s", n, connectTook.Round(time.Second), connected),
		fmt.Sprintf("**%d feeds cached** (each feed JSON requested once, %s for all, cold from SQLite): **%s**", n, cacheTook.Round(time.Millisecond), cached),
		fmt.Sprintf("cost of the cache: %s; of connected feeds over the empty server: %s", perFeed(connected, cached), perFeed(empty, connected)),
		fmt.Sprintf("second pass over all %d feeds from the hot cache: %s (4 keep-alive clients)", n, warmTook.Round(time.Millisecond)),
		fmt.Sprintf("first instance stopped (app.Run returned), before the restart: %s", stopped),
		fmt.Sprintf("restart on the same data dir: app.New %s; **first feed served with its posts %s** after app.New began; **all %d feeds served with posts %s**", newTook.Round(time.Millisecond), first.Round(time.Millisecond), n, all.Round(time.Millisecond)),
		fmt.Sprintf("Graph calls during the restart measurement: %d (none are needed: snapshots are persisted)", tally.graph),
		fmt.Sprintf("after the restart, all served once: %s", restarted),
	})
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

// waitOK waits for u to answer 200.
func waitOK(t testing.TB, u string, limit time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for ctx.Err() == nil {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not answer 200 within %s", u, limit)
}
