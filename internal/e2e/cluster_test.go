package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/feedd/feedd/internal/media/mediatest"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/store/storetest"
	"github.com/feedd/feedd/internal/testutil"
)

// The multi-instance settings of the test: the shortest intervals the
// configuration takes without a test-only knob.
const (
	clusterInterval = 2 * time.Second // FEEDD_FETCH_INTERVAL; the poller looks as often
	clusterLease    = 5 * time.Second // the lease that interval gives (app.leaseTTL)
)

// clusterDatabase is an empty PostgreSQL database of the test's own and a
// connection to it (see storetest.PostgresURL: skipped without a server,
// failing under CI).
func clusterDatabase(t *testing.T) (dbURL string, db *pgx.Conn) {
	t.Helper()
	dbURL = storetest.PostgresURL(t)
	ctx := context.Background()
	var err error
	if db, err = pgx.Connect(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	return dbURL, db
}

// clusterBucket is FEEDD_MEDIA_URL for the instances: a fresh prefix on
// the S3 server of FEEDD_TEST_S3_URL (skipped without one, failed under CI).
func clusterBucket(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(mediatest.S3URL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + mediatest.Storage(t).Prefix
	return u.String()
}

// buildFeedd builds the binary the instances run.
func buildFeedd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "feedd")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/feedd/feedd/cmd/feedd").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// aheadClock is the sandbox's clock: real time plus the days the test
// simulates, so that tokens it issued become old enough to refresh.
type aheadClock struct{ ahead atomic.Int64 }

func (c *aheadClock) Now() time.Time       { return time.Now().Add(time.Duration(c.ahead.Load())) }
func (c *aheadClock) skip(d time.Duration) { c.ahead.Add(int64(d)) }

// instance is one "feedd serve" process.
type instance struct {
	name   string
	base   string
	cmd    *exec.Cmd
	logs   *testutil.SyncBuffer
	exited chan struct{}
}

var instanceRE = regexp.MustCompile(`msg="claiming polls and token refreshes" instance=(\S+)`)

// id is the instance id its leases carry, from its log.
func (in *instance) id() string {
	if m := instanceRE.FindStringSubmatch(in.logs.String()); m != nil {
		return m[1]
	}
	return ""
}

// balancer spreads requests over the instances in turn, as a load
// balancer without sticky sessions would.
type balancer struct {
	next  atomic.Int64
	mu    sync.Mutex
	alive []*url.URL
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	targets := b.alive
	b.mu.Unlock()
	target := targets[int(b.next.Add(1))%len(targets)]
	httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
}

func (b *balancer) remove(base string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var keep []*url.URL
	for _, u := range b.alive {
		if "http://"+u.Host != base {
			keep = append(keep, u)
		}
	}
	b.alive = keep
}

// cluster is three instances of the real binary on one PostgreSQL
// database, the sandbox as Instagram, and a balancer as their public URL.
type cluster struct {
	t     *testing.T
	db    *pgx.Conn
	sb    *sandbox.Sandbox
	clock *aheadClock
	lb    *balancer
	pub   string
	ins   []*instance
	http  *http.Client
}

func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	dbURL, db := clusterDatabase(t)
	mediaURL := clusterBucket(t)
	bin := buildFeedd(t)
	c := &cluster{t: t, db: db, clock: &aheadClock{}, lb: &balancer{},
		http: &http.Client{Timeout: time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	// Small pictures and image URLs that outlive the simulated days: the
	// test is about who polls, not about images.
	c.sb = sandbox.New(sandbox.Options{Seed: 3, Now: c.clock.Now, DisableImageGenerator: true,
		MediaURLTTL: 1000 * time.Hour, VideoCoverTTL: 1000 * time.Hour})
	sbSrv := httptest.NewServer(c.sb)
	t.Cleanup(sbSrv.Close)
	if err := c.sb.SetBaseURL(sbSrv.URL); err != nil {
		t.Fatal(err)
	}
	lbSrv := httptest.NewServer(c.lb)
	t.Cleanup(lbSrv.Close)
	c.pub = lbSrv.URL
	c.sb.AddRedirectURI(c.pub + "/auth/instagram/callback")
	sbURL, _ := url.Parse(sbSrv.URL)
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"FEEDD_PUBLIC_URL=" + c.pub,
		"FEEDD_DATABASE_URL=" + dbURL,
		"FEEDD_SECRET_KEY=" + key,
		"FEEDD_ADMIN_TOKEN=" + adminToken,
		"FEEDD_INSTAGRAM_APP_ID=" + c.sb.AppID(), "FEEDD_INSTAGRAM_APP_SECRET=" + c.sb.AppSecret(),
		"FEEDD_INSTAGRAM_AUTHORIZE_URL=" + c.sb.AuthorizeURL(), "FEEDD_INSTAGRAM_TOKEN_URL=" + c.sb.TokenURL(),
		"FEEDD_INSTAGRAM_GRAPH_URL=" + c.sb.GraphURL(),
		"FEEDD_MEDIA_HOSTS=" + sbURL.Host, "FEEDD_MEDIA_ALLOW_PRIVATE=true",
		"FEEDD_FETCH_INTERVAL=" + clusterInterval.String(),
		"FEEDD_TOKEN_CHECK_INTERVAL=1s",
		// Every token a day old is due: each simulated day is one refresh slot.
		"FEEDD_TOKEN_REFRESH_WINDOW=2000h",
		"FEEDD_GRAPH_RATE=1000", "FEEDD_GRAPH_BURST=1000", "FEEDD_GRAPH_ACCOUNT_RATE=1000",
		"FEEDD_RATE_LIMIT=100000",
		"FEEDD_LOG_LEVEL=info",
		"FEEDD_MEDIA_URL=" + mediaURL,
		"AWS_ACCESS_KEY_ID=" + os.Getenv("AWS_ACCESS_KEY_ID"),
		"AWS_SECRET_ACCESS_KEY=" + os.Getenv("AWS_SECRET_ACCESS_KEY"),
	}
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		in := &instance{name: fmt.Sprintf("instance %d", i+1), base: "http://" + addr, logs: &testutil.SyncBuffer{}, exited: make(chan struct{})}
		in.cmd = exec.Command(bin, "serve")
		in.cmd.Env = append(env, "FEEDD_ADDR="+addr, "FEEDD_DATA_DIR="+t.TempDir())
		in.cmd.Stdout, in.cmd.Stderr = in.logs, in.logs
		if err := in.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = in.cmd.Wait(); close(in.exited) }()
		t.Cleanup(func() {
			select {
			case <-in.exited:
			default:
				_ = in.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-in.exited:
				case <-time.After(15 * time.Second):
					_ = in.cmd.Process.Kill()
					<-in.exited
				}
			}
			if t.Failed() {
				t.Logf("%s log:\n%s", in.name, tail(in.logs.String(), 40))
			}
		})
		c.ins = append(c.ins, in)
		u, _ := url.Parse(in.base)
		c.lb.alive = append(c.lb.alive, u)
	}
	for _, in := range c.ins {
		eventually(t, 60*time.Second, in.name+" ready", func() bool {
			select {
			case <-in.exited:
				t.Fatalf("%s exited:\n%s", in.name, in.logs.String())
			default:
			}
			resp, err := c.http.Get(in.base + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK && in.id() != ""
		})
	}
	return c
}

// request sends a request to base (an instance or the balancer) with the
// admin credential on /api/admin, and returns status, headers and body.
func (c *cluster) request(base, method, path string, body any, hdr http.Header) (int, http.Header, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if strings.HasPrefix(path, "/api/admin") {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s%s: %v", method, base, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func (c *cluster) get(in *instance, path string, hdr http.Header) (int, http.Header, []byte) {
	c.t.Helper()
	return c.request(in.base, http.MethodGet, path, nil, hdr)
}

func (c *cluster) status(in *instance, id string) status {
	c.t.Helper()
	code, _, b := c.get(in, "/api/admin/feeds/"+id, nil)
	if code != http.StatusOK {
		c.t.Fatalf("feed status on %s: %d %s", in.name, code, b)
	}
	var st status
	if err := json.Unmarshal(b, &st); err != nil {
		c.t.Fatal(err)
	}
	return st
}

// calls lists the times of the sandbox's calls of endpoint per account
// that it answered with 200.
func (c *cluster) calls(endpoint string) map[string][]time.Time {
	out := map[string][]time.Time{}
	for _, call := range c.sb.Calls() {
		if call.Endpoint == endpoint && call.Status == http.StatusOK {
			out[call.Account] = append(out[call.Account], call.Time)
		}
	}
	for _, ts := range out {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	}
	return out
}

// lease reads a feed's poll lease from the database.
func (c *cluster) lease(id string) (holder string, lastFetch int64) {
	c.t.Helper()
	var h *string
	var lf *int64
	if err := c.db.QueryRow(context.Background(), `SELECT poll_holder, last_fetch_at FROM feeds WHERE id = $1`, id).Scan(&h, &lf); err != nil {
		c.t.Fatal(err)
	}
	if h != nil {
		holder = *h
	}
	if lf != nil {
		lastFetch = *lf
	}
	return holder, lastFetch
}

// The acceptance test of several instances (issue 17): three instances of
// the real binary on one PostgreSQL database serve the same feed with the
// same ETag; an owner's session, a connect flow and an admin change work
// across them and show on all within a second; over many poll intervals
// and simulated days each poll and each token refresh happens once per
// slot; an instance killed in the middle of a poll is taken over within
// the lease time and nothing is lost.
func TestThreeInstancesOnOneDatabase(t *testing.T) {
	c := startCluster(t, 3)
	one, two, three := c.ins[0], c.ins[1], c.ins[2]

	// A session made on one instance is valid on the others.
	cookie := c.signIn(one)
	for _, in := range []*instance{two, three} {
		if code, _, b := c.get(in, "/setup", http.Header{"Cookie": {cookie}}); code != http.StatusOK {
			t.Fatalf("session of instance 1 on %s: %d %.200s", in.name, code, b)
		}
	}
	if code, _, _ := c.get(two, "/setup", nil); code == http.StatusOK {
		t.Fatal("the setup page answered without a session: the session check above proves nothing")
	}

	// A connect flow started on instance 1 completes on instance 2.
	studio := c.createFeed(one, "studio")
	code, _, b := c.request(one.base, http.MethodPost, "/api/admin/feeds/"+studio+"/connect", nil, nil)
	if code != http.StatusOK {
		t.Fatalf("connect: %d %s", code, b)
	}
	var authz struct {
		AuthorizeURL string `json:"authorize_url"`
	}
	json.Unmarshal(b, &authz)
	au, err := url.Parse(authz.AuthorizeURL)
	if err != nil {
		t.Fatal(err)
	}
	redirect, err := c.sb.Approve(sandbox.AccountCreator, c.pub+"/auth/instagram/callback", au.Query().Get("state"))
	if err != nil {
		t.Fatal(err)
	}
	ru, _ := url.Parse(redirect)
	if code, _, b := c.get(two, ru.RequestURI(), nil); code/100 != 3 {
		t.Fatalf("callback of instance 1's state on instance 2: %d %.300s", code, b)
	}
	if st := c.status(three, studio); st.Status != "active" {
		t.Fatalf("after the connect: %+v", st)
	}

	bakery := c.createFeed(two, "bakery")
	tok := c.sb.MintLongLivedToken(sandbox.AccountBusiness, c.clock.Now().Add(-48*time.Hour))
	if code, _, b := c.request(three.base, http.MethodPost, "/api/admin/feeds/"+bakery+"/token", map[string]any{"access_token": tok}, nil); code/100 != 2 {
		t.Fatalf("paste token: %d %s", code, b)
	}
	// A visitor's view makes the feeds wanted by the pollers.
	for _, id := range []string{studio, bakery} {
		eventually(t, 60*time.Second, "first poll of "+id, func() bool {
			code, _, b := c.request(c.pub, http.MethodGet, "/api/v1/feeds/"+id, nil, nil)
			var d doc
			json.Unmarshal(b, &d)
			st := c.status(one, id)
			return code == http.StatusOK && len(d.Posts) > 0 && st.LastFetch != nil && st.LastFetch.OK
		})
	}

	// All serve the same feed with the same ETag (a poll may land between
	// the three reads: then they are read again).
	eventually(t, 10*time.Second, "the same ETag on every instance", func() bool {
		tags := map[string]bool{}
		for _, in := range c.ins {
			code, h, _ := c.get(in, "/api/v1/feeds/"+bakery, nil)
			if code != http.StatusOK {
				return false
			}
			tags[h.Get("ETag")] = true
		}
		return len(tags) == 1
	})

	// An image stored by whichever instance polled is served by each.
	_, _, b = c.get(one, "/api/v1/feeds/"+bakery, nil)
	var pics struct {
		Posts []struct {
			Images []struct {
				URL string `json:"url"`
			} `json:"images"`
		} `json:"posts"`
	}
	if err := json.Unmarshal(b, &pics); err != nil || len(pics.Posts) == 0 || len(pics.Posts[0].Images) == 0 {
		t.Fatalf("no image in the feed: %v %.300s", err, b)
	}
	pic := strings.TrimPrefix(pics.Posts[0].Images[0].URL, c.pub)
	for _, in := range c.ins {
		if code, _, _ := c.get(in, pic, nil); code != http.StatusOK {
			t.Errorf("image %s on %s: %d", pic, in.name, code)
		}
	}

	// An owner's change through instance 1 shows on 2 and 3 within a
	// second. The feed is not connected: no poll changes it meanwhile,
	// and the others have its answer cached.
	idle := c.createFeed(one, "idle")
	other := http.Header{"Origin": {"https://other.example"}}
	for _, in := range []*instance{two, three} {
		if _, h, _ := c.get(in, "/api/v1/feeds/"+idle, other); h.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s before the change: CORS %q", in.name, h.Get("Access-Control-Allow-Origin"))
		}
	}
	start := time.Now()
	if code, _, b := c.request(one.base, http.MethodPatch, "/api/admin/feeds/"+idle, map[string]any{"allowed_origins": []string{"https://shop.example"}}, nil); code != http.StatusOK {
		t.Fatalf("edit: %d %s", code, b)
	}
	for _, in := range []*instance{two, three} {
		eventually(t, time.Second, "the edit on "+in.name, func() bool {
			_, h, _ := c.get(in, "/api/v1/feeds/"+idle, other)
			return h.Get("Access-Control-Allow-Origin") == ""
		})
	}
	t.Logf("an edit on instance 1 showed on 2 and 3 after %s", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if code, _, b := c.request(one.base, http.MethodDelete, "/api/admin/feeds/"+idle, nil, nil); code/100 != 2 {
		t.Fatalf("delete: %d %s", code, b)
	}
	for _, in := range []*instance{two, three} {
		eventually(t, time.Second, "the delete on "+in.name, func() bool {
			code, _, _ := c.get(in, "/api/v1/feeds/"+idle, nil)
			return code == http.StatusNotFound
		})
	}
	t.Logf("a delete on instance 1 showed on 2 and 3 after %s", time.Since(start).Round(time.Millisecond))

	c.countSlots(t, []string{studio, bakery})
	c.killDuringPoll(t, bakery)
	c.deauthorizeElsewhere(t, studio, sandbox.AccountCreator)
}

// deauthorizeElsewhere sends Meta's deauthorize callback for acct to one
// live instance and checks that another serves the feed without its
// account and posts within a second.
func (c *cluster) deauthorizeElsewhere(t *testing.T, id, acct string) {
	var live []*instance
	for _, in := range c.ins {
		select {
		case <-in.exited:
		default:
			live = append(live, in)
		}
	}
	a, err := c.sb.Account(acct)
	if err != nil {
		t.Fatal(err)
	}
	// Signed now: the sandbox's own clock is days ahead by now.
	payload, _ := json.Marshal(map[string]any{"algorithm": "HMAC-SHA256", "issued_at": time.Now().Unix(), "user_id": a.ID})
	form := url.Values{"signed_request": {sandbox.SignRequest(c.sb.AppSecret(), payload)}}
	if _, _, b := c.get(live[1], "/api/v1/feeds/"+id, nil); !strings.Contains(string(b), a.Username) {
		t.Fatalf("before the callback %s does not serve the account: %.200s", live[1].name, b)
	}
	req, _ := http.NewRequest(http.MethodPost, live[0].base+"/auth/instagram/deauthorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("deauthorize on %s: %d", live[0].name, resp.StatusCode)
	}
	start := time.Now()
	eventually(t, time.Second, "the deauthorized feed on "+live[1].name, func() bool {
		code, _, b := c.get(live[1], "/api/v1/feeds/"+id, nil)
		var d doc
		json.Unmarshal(b, &d)
		return code == http.StatusOK && d.Account == nil && len(d.Posts) == 0
	})
	t.Logf("Meta's deauthorize on %s showed on %s after %s", live[0].name, live[1].name, time.Since(start).Round(time.Millisecond))
	if st := c.status(live[1], id); st.Status != "not_connected" {
		t.Errorf("after the deauthorize: %s", st.Status)
	}
}

func (c *cluster) signIn(in *instance) string {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, in.base+"/setup/login", strings.NewReader(url.Values{"token": {adminToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "feedd_session" {
			return ck.Name + "=" + ck.Value
		}
	}
	c.t.Fatalf("sign in on %s: %d, no session cookie", in.name, resp.StatusCode)
	return ""
}

func (c *cluster) createFeed(in *instance, name string) string {
	c.t.Helper()
	code, _, b := c.request(in.base, http.MethodPost, "/api/admin/feeds", map[string]any{"name": name}, nil)
	if code != http.StatusCreated {
		c.t.Fatalf("create feed: %d %s", code, b)
	}
	var st status
	json.Unmarshal(b, &st)
	return st.ID
}

// countSlots lets the instances poll for many intervals while the test
// simulates days passing for the tokens, and checks from the sandbox's
// answered calls that each slot was done once: one token refresh per
// account per simulated day, and /me/media calls of a feed never closer
// together than a poll interval allows (a second poll of one slot would
// follow the first within moments), as many as the elapsed time has
// slots. A poll that Instagram refused (it held a token a refresh had just
// replaced) is polled again at once with the new token, as it should be:
// only answered calls count.
func (c *cluster) countSlots(t *testing.T, feeds []string) {
	ctx := context.Background()
	c.sb.ResetCalls()
	start := time.Now()
	const days = 4
	for range days {
		// A day passes: for Instagram (the sandbox's clock) and for the
		// tokens feedd stored (obtained a day earlier).
		c.clock.skip(25 * time.Hour)
		if _, err := c.db.Exec(ctx, `UPDATE tokens SET obtained_at = obtained_at - 90000`); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * clusterInterval)
	}
	time.Sleep(clusterInterval)
	elapsed := time.Since(start)

	refreshes := c.calls(sandbox.EndpointRefresh)
	polls := c.calls(sandbox.EndpointMedia)
	for _, acct := range []string{sandbox.AccountCreator, sandbox.AccountBusiness} {
		if n := len(refreshes[acct]); n != days {
			t.Errorf("%s: %d token refreshes over %d simulated days, want %d", acct, n, days, days)
		}
		ts := polls[acct]
		// Slots come at least 0.9 intervals apart (the jitter); a poll
		// starts up to one poller round after its slot.
		most := int(elapsed/(clusterInterval*9/10)) + 1
		least := int(elapsed / (2*clusterInterval + clusterInterval/2))
		if len(ts) > most || len(ts) < least {
			t.Errorf("%s: %d polls in %s, want %d to %d (one per slot)", acct, len(ts), elapsed.Round(time.Millisecond), least, most)
		}
		for i := 1; i < len(ts); i++ {
			if gap := ts[i].Sub(ts[i-1]); gap < clusterInterval*3/4 {
				t.Errorf("%s: two polls %s apart: one slot polled twice", acct, gap.Round(time.Millisecond))
			}
		}
		t.Logf("%s: %d polls and %d token refreshes in %s (%d simulated days)", acct, len(ts), len(refreshes[acct]), elapsed.Round(time.Millisecond), days)
	}
	for _, id := range feeds {
		if st := c.status(c.ins[0], id); st.Status != "active" {
			t.Errorf("feed %s after the intervals: %s (a token refreshed twice dies)", id, st.Status)
		}
	}
}

// killDuringPoll makes the feed's polls slow, SIGKILLs the instance that
// holds the poll, and checks that another instance polls it within the
// lease time with nothing lost.
func (c *cluster) killDuringPoll(t *testing.T, id string) {
	before := c.status(c.ins[0], id)
	c.sb.SetLatency(3 * time.Second)
	var victim *instance
	eventually(t, 3*clusterInterval+5*time.Second, "a poll in progress", func() bool {
		holder, _ := c.lease(id)
		for _, in := range c.ins {
			if holder != "" && in.id() == holder {
				victim = in
			}
		}
		return victim != nil
	})
	_, lastBefore := c.lease(id)
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.exited
	killed := time.Now()
	c.lb.remove(victim.base)
	c.sb.SetLatency(0)
	var rest []*instance
	for _, in := range c.ins {
		if in != victim {
			rest = append(rest, in)
		}
	}
	// Taken over: another instance holds the poll, or already finished it.
	eventually(t, clusterLease+clusterInterval+2*time.Second, "another instance taking the poll over", func() bool {
		holder, last := c.lease(id)
		return (holder != "" && holder != victim.id()) || last > lastBefore
	})
	t.Logf("%s killed in the middle of a poll; taken over after %s (lease %s)", victim.name, time.Since(killed).Round(time.Millisecond), clusterLease)
	eventually(t, 30*time.Second, "the poll after the kill", func() bool {
		_, last := c.lease(id)
		return last > lastBefore
	})
	after := c.status(rest[0], id)
	if after.Status != "active" || after.LastFetch == nil || !after.LastFetch.OK || after.PostCount < before.PostCount {
		t.Errorf("after the takeover: %+v (before: %d posts)", after, before.PostCount)
	}
	eventually(t, 10*time.Second, "the same feed on the surviving instances", func() bool {
		tags := map[string]bool{}
		for _, in := range rest {
			code, h, b := c.get(in, "/api/v1/feeds/"+id, nil)
			var d doc
			json.Unmarshal(b, &d)
			if code != http.StatusOK || len(d.Posts) == 0 {
				return false
			}
			tags[h.Get("ETag")] = true
		}
		return len(tags) == 1
	})
}
