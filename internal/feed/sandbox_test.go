package feed

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
)

// newSandboxEnv connects the feed to account. With placeholders the sandbox
// serves tiny images, for tests about many posts rather than pixels.
func newSandboxEnv(t *testing.T, account string, placeholders bool) *env {
	t.Helper()
	return newEnv(t, envOptions{account: account, pictures: !placeholders})
}

// sandboxDoc is the feed's first MaxLimit posts.
func (e *env) sandboxDoc(t *testing.T) Doc {
	t.Helper()
	q, _ := NewQuery(MaxLimit, "", nil)
	en, err := e.svc.Entry(context.Background(), e.id, q)
	if err != nil {
		t.Fatal(err)
	}
	var d Doc
	if err := json.Unmarshal(en.JSON, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSandboxFullFeed(t *testing.T) {
	env := newSandboxEnv(t, sandbox.AccountBusiness, true)
	if err := env.fetchNow(); err != nil {
		t.Fatal(err)
	}
	if n := env.calls(sandbox.EndpointMedia); n != 1 {
		t.Errorf("media calls for 50 posts = %d, want 1 (nested children, one page)", n)
	}
	d := env.sandboxDoc(t)
	posts, _ := env.sb.Posts(sandbox.AccountBusiness)
	if len(d.Posts) != 50 || len(posts) < 55 {
		t.Fatalf("feed has %d posts of the account's %d, want the newest 50", len(d.Posts), len(posts))
	}
	if d.Account == nil || d.Account.Username != sandbox.AccountBusiness || d.Account.Avatar == nil || !env.fileExists(t, d.Account.Avatar.URL) {
		t.Fatalf("account %+v", d.Account)
	}
	want := map[string]sandbox.Post{}
	for _, p := range posts {
		want[p.ID] = p
	}
	kinds := map[string]int{}
	for i, p := range d.Posts {
		sp := want[p.ID]
		if p.ID != posts[i].ID {
			t.Fatalf("post %d is %s, want %s (newest first)", i, p.ID, posts[i].ID)
		}
		kinds[p.Type]++
		if p.IsReel {
			kinds["reel"]++
			if !sp.HasMediaURL {
				kinds["reel without media_url"]++
			}
		}
		if p.IsReel != sp.Reel || (sp.Caption == "") != (p.Caption == nil) || (sp.HideLikes) != (p.LikeCount == nil) {
			t.Errorf("post %s fields differ from the sandbox: %+v vs %+v", p.ID, p, sp)
		}
		if len(p.Images) == 0 || !env.fileExists(t, p.Images[0].URL) || p.Alt == "" {
			t.Errorf("post %s: no stored image or alt", p.ID)
		}
		for j := 1; j < len(p.Images); j++ {
			if p.Images[j].Width <= p.Images[j-1].Width {
				t.Errorf("post %s: images not smallest first: %+v", p.ID, p.Images)
			}
		}
		if p.Type == TypeCarousel && len(p.Children) != len(sp.Children) {
			t.Errorf("carousel %s has %d children, want %d", p.ID, len(p.Children), len(sp.Children))
		}
	}
	for _, k := range []string{"image", "video", "carousel", "reel", "reel without media_url"} {
		if kinds[k] == 0 {
			t.Errorf("no %s in the feed (kinds %v)", k, kinds)
		}
	}
	// Nothing served to a browser points at Instagram's CDN.
	e, _ := env.svc.Entry(context.Background(), env.id, DefaultQuery)
	if strings.Contains(string(e.JSON), env.sb.BaseURL()+"/cdn/") || strings.Contains(string(e.JSON), "oe=") {
		t.Fatal("feed JSON holds a CDN URL")
	}
}

func TestSandboxChangesExpiryOutageThrottle(t *testing.T) {
	env := newSandboxEnv(t, sandbox.AccountCreator, true)
	ctx := context.Background()
	if err := env.fetchNow(); err != nil {
		t.Fatal(err)
	}
	before := env.sandboxDoc(t)
	if len(before.Posts) == 0 {
		t.Fatal("no posts")
	}
	cdnCalls := env.calls(sandbox.EndpointCDN)

	// New, deleted and edited posts.
	newID, err := env.sb.AddPost(sandbox.AccountCreator, sandbox.PostSpec{Caption: "Brand new. Second sentence.", Timestamp: env.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	gone := before.Posts[len(before.Posts)-1].ID
	edited := before.Posts[0].ID
	env.sb.DeletePost(sandbox.AccountCreator, gone)
	env.sb.EditCaption(sandbox.AccountCreator, edited, "Edited caption")
	env.clock.Add(16 * time.Minute)
	env.svc.pollDue(ctx)
	d := env.sandboxDoc(t)
	if d.Posts[0].ID != newID || d.Posts[0].Alt != "Brand new." {
		t.Fatalf("new post missing: first is %s %q", d.Posts[0].ID, d.Posts[0].Alt)
	}
	for _, p := range d.Posts {
		if p.ID == gone {
			t.Fatal("deleted post still served")
		}
		if p.ID == edited && (p.Caption == nil || *p.Caption != "Edited caption") {
			t.Fatalf("edited caption not updated: %v", p.Caption)
		}
	}
	if got := env.calls(sandbox.EndpointCDN) - cdnCalls; got != 1 {
		t.Errorf("%d downloads for one new post, want 1 (old images are not fetched again)", got)
	}

	// Signed URLs expire: stored copies keep working, nothing re-downloads.
	env.sb.ExpireMediaURLs()
	env.clock.Add(16 * time.Minute)
	cdnCalls = env.calls(sandbox.EndpointCDN)
	if err := env.fetchNow(); err != nil {
		t.Fatal(err)
	}
	d = env.sandboxDoc(t)
	if d.Stale || len(d.Posts) != len(before.Posts) || env.calls(sandbox.EndpointCDN) != cdnCalls {
		t.Fatalf("after URL expiry: stale=%v posts=%d downloads=%d", d.Stale, len(d.Posts), env.calls(sandbox.EndpointCDN)-cdnCalls)
	}
	for _, p := range d.Posts {
		if !env.fileExists(t, p.Images[0].URL) {
			t.Fatalf("post %s lost its local copy", p.ID)
		}
	}

	// Outage: stale but served; one poll's quick retries, then nothing
	// until the backoff ends however many visitors come.
	env.sb.SetOutage(true)
	env.clock.Add(16 * time.Minute)
	env.svc.pollDue(ctx)
	mediaCalls := env.calls(sandbox.EndpointMedia)
	d = env.sandboxDoc(t)
	if !d.Stale || len(d.Posts) != len(before.Posts) {
		t.Fatalf("outage: stale=%v posts=%d", d.Stale, len(d.Posts))
	}
	for range 50 {
		env.svc.Invalidate(env.id)
		env.sandboxDoc(t)
		env.svc.pollDue(ctx)
	}
	if got := env.calls(sandbox.EndpointMedia); got != mediaCalls {
		t.Fatalf("%d Graph calls during the backoff", got-mediaCalls)
	}
	env.sb.SetOutage(false)
	env.clock.Add(2 * time.Minute)
	env.svc.pollDue(ctx)
	if d := env.sandboxDoc(t); d.Stale {
		t.Fatal("still stale after the outage")
	}

	// Throttled: served stale; the client refuses further calls without
	// touching the network, and "refresh now" returns promptly.
	env.sb.Throttle(sandbox.AccountCreator, time.Hour)
	env.clock.Add(16 * time.Minute)
	env.svc.pollDue(ctx)
	if d := env.sandboxDoc(t); !d.Stale || len(d.Posts) == 0 {
		t.Fatal("throttled feed not served stale")
	}
	f := env.feed()
	if !f.NextFetchAt.After(env.clock.Now().Add(30 * time.Minute)) {
		t.Errorf("next poll %v is before the block ends", f.NextFetchAt.Sub(env.clock.Now()))
	}
	mediaCalls = env.calls(sandbox.EndpointMedia)
	start := time.Now()
	if err := env.fetchNow(); err == nil {
		t.Fatal("refresh now during a block succeeded")
	}
	if time.Since(start) > 2*time.Second || env.calls(sandbox.EndpointMedia) != mediaCalls {
		t.Fatalf("refresh now during a block called Instagram (%d) or hung", env.calls(sandbox.EndpointMedia)-mediaCalls)
	}
	if msg := env.feed().LastFetchError; !strings.Contains(msg, "rate limited") {
		t.Errorf("last fetch error %q", msg)
	}
}

func TestSandboxRevokedTokenAndRestartWhileDown(t *testing.T) {
	env := newSandboxEnv(t, sandbox.AccountCreator, true)
	ctx := context.Background()
	if err := env.fetchNow(); err != nil {
		t.Fatal(err)
	}
	good := env.sandboxDoc(t)

	// Restart with Instagram down: the stored snapshot serves at once.
	env.svc.Close()
	env.sb.SetOutage(true)
	env.svc = env.newService()
	calls := len(env.sb.Calls())
	d := env.sandboxDoc(t)
	if len(d.Posts) != len(good.Posts) || d.Stale || d.Account == nil {
		t.Fatalf("after restart: %d posts stale=%v", len(d.Posts), d.Stale)
	}
	if len(env.sb.Calls()) != calls {
		t.Fatal("serving after a restart called Instagram")
	}
	env.sb.SetOutage(false)

	// A revoked token: needs_reauth, polling stops, the last feed stays.
	env.sb.RevokeTokens(sandbox.AccountCreator)
	env.clock.Add(16 * time.Minute)
	env.svc.pollDue(ctx)
	if f := env.feed(); f.Status != model.StatusNeedsReauth {
		t.Fatalf("status %s after a revoked token", f.Status)
	}
	if d := env.sandboxDoc(t); !d.Stale || len(d.Posts) != len(good.Posts) {
		t.Fatal("last good feed not served after revocation")
	}
	mediaCalls := env.calls(sandbox.EndpointMedia)
	env.clock.Add(time.Hour)
	env.svc.pollDue(ctx)
	if env.calls(sandbox.EndpointMedia) != mediaCalls {
		t.Fatal("a needs_reauth feed was polled")
	}
	if tok, _ := env.st.Token(ctx, env.id); strings.Contains(env.feed().LastFetchError, tok.AccessToken) {
		t.Fatal("the token leaked into the owner-facing error")
	}
}

func TestSandboxColdStartOneGraphCall(t *testing.T) {
	env := newSandboxEnv(t, sandbox.AccountCreator, true)
	env.sb.SetLatency(50 * time.Millisecond) // the fetch is in flight while requests pile up
	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			if _, err := env.svc.Entry(context.Background(), env.id, DefaultQuery); err != nil {
				t.Error(err)
			}
			mu.Lock()
			slowest = max(slowest, time.Since(start))
			mu.Unlock()
		}()
	}
	wg.Wait()
	waitFor(t, func() bool { return !env.feed().FetchedAt.IsZero() })
	env.sb.SetLatency(0)
	for range 100 {
		env.svc.Entry(context.Background(), env.id, DefaultQuery)
	}
	if n := env.calls(sandbox.EndpointMedia); n != 1 {
		t.Fatalf("1,000 cold requests made %d media calls, want 1", n)
	}
	if n := env.calls(sandbox.EndpointMe); n > 1 {
		t.Fatalf("%d profile calls", n)
	}
	t.Logf("slowest cold request: %v", slowest)
	if d := env.sandboxDoc(t); len(d.Posts) == 0 {
		t.Fatal("feed empty after the first fetch")
	}
}

func TestSandboxRealPictures(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes and resizes the creator's pictures")
	}
	env := newSandboxEnv(t, sandbox.AccountCreator, false)
	if err := env.fetchNow(); err != nil {
		t.Fatal(err)
	}
	// Every stored size exists, smallest first, with its real size.
	d := env.sandboxDoc(t)
	if len(d.Posts) == 0 {
		t.Fatal("no posts")
	}
	for _, p := range d.Posts {
		if len(p.Images) < 2 || p.Color == "" {
			t.Errorf("post %s: %d sizes, colour %q", p.ID, len(p.Images), p.Color)
		}
		for j, im := range p.Images {
			if !env.fileExists(t, im.URL) || im.Width == 0 || im.Height == 0 || (j > 0 && im.Width <= p.Images[j-1].Width) {
				t.Errorf("post %s image %d: %+v", p.ID, j, im)
			}
		}
	}
}
