package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/sandbox"
)

// soakPlan sizes one soak run.
type soakPlan struct {
	name      string
	feeds     int
	creator   int           // feeds on the small account (revoked in each cycle); the rest share the big one
	duration  time.Duration // load and fault cycling, after warm-up
	phase     time.Duration // length of each fault phase
	rate      int           // visitor requests per second
	workers   int
	fetch     time.Duration // FEEDD_FETCH_INTERVAL
	appWide   bool          // throttle with code 4 (app-wide) rather than per account
	warmup    time.Duration
	longBlock bool // the run outlasts Instagram's shortest throttle block (1 min)
	// formats keeps the AVIF and WebP worker on. Its backlog outlasts a
	// half-minute run, so the run would end mid-encode, holding one
	// encoder's working memory (capped, measured by BenchmarkEncode) that
	// the memory check would read as growth; the crash test covers the
	// worker's failure paths.
	formats bool
}

// TestSoakShort is the CI soak: 20 feeds, every fault once, about half a
// minute.
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: skipped with -short")
	}
	runSoak(t, soakPlan{
		name: "soak (short)", feeds: 20, creator: 3,
		duration: 25 * time.Second, phase: 4 * time.Second,
		rate: 50, workers: 4, fetch: 2 * time.Second, warmup: 3 * time.Second,
	})
}

// TestSoak is the long soak: FEEDD_SOAK=10m runs 100 feeds for ten
// minutes with 30 s fault phases.
func TestSoak(t *testing.T) {
	v := os.Getenv("FEEDD_SOAK")
	if v == "" {
		t.Skip("soak: set FEEDD_SOAK to a duration (e.g. 10m) to run")
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Minute {
		t.Fatalf("FEEDD_SOAK=%q: want a Go duration of at least 1m", v)
	}
	runSoak(t, soakPlan{
		name: "soak", feeds: 100, creator: 5,
		duration: d, phase: 30 * time.Second,
		rate: 100, workers: 4, fetch: 20 * time.Second, appWide: true, warmup: 20 * time.Second,
		longBlock: true, formats: true,
	})
}

func runSoak(t *testing.T, p soakPlan) {
	sb, sbHost := newSandbox(t)
	in := startApp(t, sb, sbHost, t.TempDir(), func(c *config.Config) {
		c.FetchInterval = p.fetch
		if !p.formats {
			c.MediaFormats = nil
		}
	})
	ctx := context.Background()
	acctOf := func(i int) string {
		if i < p.creator {
			return sandbox.AccountCreator
		}
		return sandbox.AccountBusiness
	}
	connectStart := time.Now()
	ids := connectFeeds(t, in, sb, p.feeds, acctOf)
	connectTook := time.Since(connectStart)

	tally := newCallTally()
	tally.drain(sb) // connect-time calls are not polling
	tally = newCallTally()

	v := newVisitors(in.base, ids, p.workers)
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() { v.run(loadCtx, p.rate, p.workers); close(loadDone) }()
	defer func() { stopLoad(); <-loadDone }()

	time.Sleep(p.warmup)
	start := sample()
	runStart := time.Now()

	// The fault cycler: normal → outage → throttling → revoked tokens
	// (reconnected by pasting a fresh token) → expired media URLs →
	// normal, again and again.
	var reconnects sync.WaitGroup
	var recMu sync.Mutex
	var recStats struct{ needsReauth, pasted, attempts, failed int }
	var recTimes []time.Duration
	cycles := 0
	phases := []string{"normal", "outage", "throttle", "revoke", "expired_media"}
	deadline := runStart.Add(p.duration)
	var ph int
	for time.Now().Before(deadline) {
		name := phases[ph%len(phases)]
		switch name {
		case "normal":
			sb.SetMediaURLTTL(72*time.Hour, 24*time.Hour)
			cycles++
		case "outage":
			sb.SetOutage(true)
		case "throttle":
			sb.SetOutage(false)
			if p.appWide {
				sb.ThrottleApp(p.phase)
			} else {
				// An account-wide block (code 80002) on the big account;
				// the small account stays reachable for its reconnects.
				if err := sb.Throttle(sandbox.AccountBusiness, p.phase); err != nil {
					t.Fatal(err)
				}
			}
		case "revoke":
			if err := sb.RevokeTokens(sandbox.AccountCreator); err != nil {
				t.Fatal(err)
			}
			// The owners notice (needs_reauth in the setup page) and paste a
			// new token; while Instagram's rate limit holds they are told to
			// try again later, and do.
			reconnects.Add(1)
			go func() {
				defer reconnects.Done()
				time.Sleep(p.phase / 2)
				for i := range p.creator {
					looked := time.Now()
					st, err := in.m.Owner.Feed(ctx, ids[i])
					if err == nil && st.Status == "needs_reauth" {
						recMu.Lock()
						recStats.needsReauth++
						recMu.Unlock()
					}
					var perr error
					n := 0
					for try := time.Now(); time.Since(try) < 4*time.Minute; {
						n++
						if perr = pasteFresh(ctx, in, sb, ids[i], sandbox.AccountCreator); perr == nil {
							break
						}
						time.Sleep(time.Second)
					}
					recMu.Lock()
					recStats.attempts += n
					if perr != nil {
						recStats.failed++
						t.Errorf("reconnect feed %s: gave up after %d pastes: %v", ids[i], n, perr)
					} else {
						recStats.pasted++
						recTimes = append(recTimes, time.Since(looked))
					}
					recMu.Unlock()
				}
			}()
		case "expired_media":
			sb.ExpireMediaURLs()
			sb.SetMediaURLTTL(-time.Second, -time.Second)
			for _, a := range []string{sandbox.AccountBusiness, sandbox.AccountCreator} {
				if _, err := sb.AddPost(a, sandbox.PostSpec{Caption: fmt.Sprintf("soak post %d", ph)}); err != nil {
					t.Fatal(err)
				}
			}
		}
		ph++
		phaseStart := time.Now()
		time.Sleep(min(p.phase, time.Until(deadline)))
		tally.drainPhase(sb, name, time.Since(phaseStart))
	}
	// End on a healthy sandbox, then a last normal phase under load.
	sb.SetOutage(false)
	sb.SetMediaURLTTL(72*time.Hour, 24*time.Hour)
	reconnects.Wait()
	lastStart := time.Now()
	time.Sleep(p.phase)
	tally.drainPhase(sb, "normal", time.Since(lastStart))
	end := sample()
	elapsed := time.Since(runStart)
	stopLoad()
	<-loadDone
	vs := v.stats()

	// Every feed catches up once Instagram is healthy again: fresh
	// snapshot, the newest post (added while media URLs were expired) with
	// its pictures. Feeds still inside Instagram's shortest rate-limit
	// block (a minute) are checked only by the long soak.
	caught, blocked := 0, 0
	for i, id := range ids {
		acct := acctOf(i)
		a, err := sb.Account(acct)
		if err != nil {
			t.Fatal(err)
		}
		if !in.m.Graph.BlockedUntil(a.UserID).IsZero() {
			blocked++
			if p.longBlock {
				t.Errorf("feed %s: Graph calls for %s still paused after the run", id, acct)
			}
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, time.Minute)
		err = in.m.Feeds.FetchNow(fctx, id)
		cancel()
		if err != nil {
			t.Errorf("feed %s (%s): fetch after the run: %v", id, acct, err)
			continue
		}
		if msg := checkCaughtUp(in, sb, id, acct); msg != "" {
			t.Errorf("feed %s (%s): %s", id, acct, msg)
			continue
		}
		caught++
	}
	catchUp := newCallTally()
	catchUp.drain(sb)

	hours := elapsed.Hours()
	perFeedHour := float64(tally.graph) / float64(p.feeds) / hours
	// A healthy feed costs one media call per FetchInterval (the profile is
	// re-read daily). Faults must not multiply that: allow twice the healthy
	// rate plus the reconnects' calls and the first retries of each fault.
	healthy := time.Hour.Seconds() / p.fetch.Seconds()
	bound := 2*healthy + 30
	lines := []string{
		fmt.Sprintf("command: `%s`", commandOf(p)),
		fmt.Sprintf("feeds %d (%d on %s, %d on %s), FEEDD_FETCH_INTERVAL %s, fault phase %s, %d full cycles, run %s after %s warm-up; connecting took %s",
			p.feeds, p.feeds-p.creator, sandbox.AccountBusiness, p.creator, sandbox.AccountCreator, p.fetch, p.phase, cycles, elapsed.Round(time.Second), p.warmup, connectTook.Round(time.Millisecond)),
		fmt.Sprintf("visitors: %d requests at %d/s target (%d skipped because the workers were busy), p50 %s, p99 %s, max %s",
			vs.total, p.rate, vs.skipped, vs.p50.Round(time.Microsecond), vs.p99.Round(time.Microsecond), vs.max.Round(time.Millisecond)),
		fmt.Sprintf("visitor answers: %s", vs.byKind),
		fmt.Sprintf("5xx %d, 429 %d, unexplained 404 %d, other %d, transport errors %d; explained media 404 (image dropped by a newer snapshot) %d; stale JSON answers %d",
			vs.c5xx, vs.c429, vs.c404, vs.other, vs.transport, vs.gone404, vs.stale),
		fmt.Sprintf("Graph calls: %d over %s = **%.1f per feed per hour** (healthy rate %.0f, bound %.0f); peak %d calls/s app-wide",
			tally.graph, elapsed.Round(time.Second), perFeedHour, healthy, bound, tally.peakPerSecond()),
		fmt.Sprintf("Graph calls per feed per hour by phase: %s", tally.phaseRates(p.feeds)),
		fmt.Sprintf("sandbox calls during the run: %s; in the catch-up fetch of every feed afterwards: %s", tally, catchUp),
		fmt.Sprintf("reconnects after revocation: %d pasted (%d feeds already needs_reauth when the owner looked), %d paste attempts, %d failed; time from the owner's first paste to success %v",
			recStats.pasted, recStats.needsReauth, recStats.attempts, recStats.failed, roundAll(recTimes)),
		fmt.Sprintf("after the run: %d feeds caught up (fresh snapshot, newest post with pictures), %d inside a rate-limit block (not fetched)", caught, blocked),
		fmt.Sprintf("start (after warm-up): %s", start),
		fmt.Sprintf("end: %s", end),
		fmt.Sprintf("feedd log: %d warnings, %d errors", in.logs.warns, in.logs.errors),
	}
	report(t, p.name, lines)
	t.Logf("feedd log lines by level and message:\n%s", in.logs.summary())
	for _, b := range vs.bad {
		t.Logf("unexpected answer: %s", b)
	}
	for _, e := range in.logs.first {
		t.Logf("feedd error log: %s", e)
	}

	if vs.c5xx != 0 {
		t.Errorf("visitors got %d 5xx answers", vs.c5xx)
	}
	if vs.c429 != 0 || vs.c404 != 0 || vs.other != 0 || vs.transport != 0 {
		t.Errorf("visitors got 429×%d, unexplained 404×%d, other×%d, transport errors×%d", vs.c429, vs.c404, vs.other, vs.transport)
	}
	if vs.total < int(float64(p.rate)*elapsed.Seconds()*0.5) {
		t.Errorf("only %d visitor requests in %s at %d/s: the load did not hold", vs.total, elapsed.Round(time.Second), p.rate)
	}
	if perFeedHour > bound {
		t.Errorf("call storm: %.1f Graph calls per feed per hour, bound %.0f", perFeedHour, bound)
	}
	if end.goroutines > start.goroutines+10 {
		t.Errorf("goroutines grew from %d to %d", start.goroutines, end.goroutines)
	}
	if end.rssKB > start.rssKB*3/2+8<<10 {
		t.Errorf("resident memory grew from %s to %s", mib(start.rssKB), mib(end.rssKB))
	}
	if caught+blocked != p.feeds {
		t.Errorf("%d of %d feeds did not catch up after the run", p.feeds-caught-blocked, p.feeds)
	}
	if !p.longBlock && blocked == p.feeds {
		t.Errorf("every feed still blocked: nothing was checked after the run")
	}
}

// checkCaughtUp says what is wrong with feed id's JSON after a healthy
// fetch, or "".
func checkCaughtUp(in *instance, sb *sandbox.Sandbox, id, acct string) string {
	resp, err := http.Get(in.base + "/api/v1/feeds/" + id)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("JSON answered %d", resp.StatusCode)
	}
	var d feedDoc
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return err.Error()
	}
	posts, err := sb.Posts(acct)
	if err != nil {
		return err.Error()
	}
	switch {
	case d.Stale:
		return "still stale"
	case len(d.Account) == 0 || string(d.Account) == "null":
		return "no account"
	case len(d.Posts) == 0:
		return "no posts"
	case d.Posts[0].ID != posts[0].ID:
		return fmt.Sprintf("newest post %s, Instagram's newest is %s", d.Posts[0].ID, posts[0].ID)
	}
	for _, p := range d.Posts {
		if len(p.Images) == 0 {
			return fmt.Sprintf("post %s has no pictures", p.ID)
		}
	}
	return ""
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Millisecond)
	}
	return out
}

func commandOf(p soakPlan) string {
	if p.longBlock {
		return fmt.Sprintf("FEEDD_SOAK=%s go test -run 'TestSoak$' -v -timeout %s ./internal/soak/", p.duration, p.duration+10*time.Minute)
	}
	return "go test -run TestSoakShort -v ./internal/soak/"
}
