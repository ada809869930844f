package feed

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/store"
)

// sampleEnv is an env whose account holds the five sample posts.
func sampleEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	e := newEnv(t, o)
	e.useSample()
	return e
}

func TestSnapshotToDoc(t *testing.T) {
	fx := sampleEnv(t, envOptions{pictures: true})
	if err := fx.fetchNow(); err != nil {
		t.Fatal(err)
	}
	d := fx.doc(t, "")
	if d.Version != 1 || d.ID != fx.id || d.Stale || d.Next != nil {
		t.Fatalf("header fields: %+v", d)
	}
	if d.UpdatedAt == nil || !d.UpdatedAt.Equal(fx.clock.Now()) {
		t.Errorf("updated_at = %v, want the fetch time", d.UpdatedAt)
	}
	if d.Account == nil || d.Account.Username != fx.user || d.Account.ProfileURL != "https://www.instagram.com/"+fx.user+"/" ||
		d.Account.Avatar == nil || !strings.HasPrefix(d.Account.Avatar.URL, "https://feeds.example.com/media/") {
		t.Fatalf("account: %+v", d.Account)
	}
	if got := fx.ids(d); got != "101,102,103,104,105" {
		t.Fatalf("posts = %s", got)
	}
	byID := map[string]Post{}
	for _, p := range d.Posts {
		byID[fx.name(p.ID)] = p
		if len(p.Images) != 3 || p.Images[0].Width != 320 || p.Images[1].Width != 640 || p.Images[2].Width != 1080 {
			t.Errorf("post %s images not smallest first with real sizes: %+v", p.ID, p.Images)
		}
		for _, im := range p.Images {
			if !strings.HasPrefix(im.URL, "https://feeds.example.com/media/") || strings.Contains(im.URL, "/cdn/") || im.Height == 0 {
				t.Errorf("post %s image %+v is not a local absolute URL", p.ID, im)
			}
		}
		if p.Alt == "" || strings.HasPrefix(p.Alt, "image") {
			t.Errorf("post %s alt %q", p.ID, p.Alt)
		}
		if p.Color == "" {
			t.Errorf("post %s has no colour", p.ID)
		}
	}
	want := []struct {
		id, typ string
		reel    bool
		alt     string
	}{
		{"101", "image", false, "Sunrise over the harbour."},
		{"102", "carousel", false, "Three views"},
		{"103", "video", true, "Reel with sound"},
		{"104", "video", true, "Post by @" + fx.user},
		{"105", "video", false, "Post by @" + fx.user},
	}
	for _, w := range want {
		p := byID[w.id]
		if p.Type != w.typ || p.IsReel != w.reel || p.Alt != w.alt {
			t.Errorf("post %s: type %s reel %v alt %q; want %s %v %q", w.id, p.Type, p.IsReel, p.Alt, w.typ, w.reel, w.alt)
		}
	}
	c := byID["102"]
	if len(c.Children) != 3 || c.Children[0].Alt != "A red door" || c.Children[1].Type != "video" || c.Children[2].Alt != "Three views (3 of 3)" {
		t.Fatalf("carousel children: %+v", c.Children)
	}
	if c.Images[0].URL != c.Children[0].Images[0].URL {
		t.Error("carousel cover is not its first image child")
	}
	// The carousel's cover was not downloaded a second time, the video
	// itself never, the reel without media_url through its thumbnail: one
	// download per picture (7 and the avatar).
	paths := fx.cdnPaths()
	for p, n := range paths {
		if n != 1 {
			t.Errorf("%s downloaded %d times", p, n)
		}
		if strings.HasSuffix(p, ".mp4") {
			t.Error("a video file was downloaded")
		}
	}
	if len(paths) != 8 {
		t.Errorf("%d pictures downloaded, want 8", len(paths))
	}

	// Fields Instagram omitted stay omitted.
	var raw struct {
		Posts []map[string]json.RawMessage `json:"posts"`
	}
	json.Unmarshal(fx.fetchJSON(t, fx.id, ""), &raw)
	if _, ok := raw.Posts[3]["caption"]; ok {
		t.Error("caption invented for a post without one")
	}
	if _, ok := raw.Posts[2]["like_count"]; ok {
		t.Error("like_count invented for a post with hidden likes")
	}
	if _, ok := raw.Posts[0]["children"]; ok {
		t.Error("children on an image post")
	}
}

func TestPagingAndTypeFilter(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	fx.fetchNow()
	tests := []struct {
		query, want string
		next        bool
	}{
		{"limit=2", "101,102", true},
		{"type=reel", "103,104", false},
		{"type=video", "103,104,105", false},
		{"type=image,carousel", "101,102", false},
		{"type=IMAGE&type=reel", "101,103,104", false},
		{"limit=3&type=video", "103,104,105", false},
		{"limit=2&type=video", "103,104", true},
		{"limit=5", "101,102,103,104,105", false},
		{"foo=bar&limit=1", "101", true},
	}
	for _, tt := range tests {
		d := fx.doc(t, tt.query)
		if got := fx.ids(d); got != tt.want || (d.Next != nil) != tt.next {
			t.Errorf("%s: got %s next=%v, want %s next=%v", tt.query, got, d.Next != nil, tt.want, tt.next)
		}
	}
	// Walk the pages with the cursor.
	var all []string
	q := "limit=2"
	for range 10 {
		d := fx.doc(t, q)
		all = append(all, fx.ids(d))
		if d.Next == nil {
			break
		}
		q = "limit=2&after=" + url.QueryEscape(*d.Next)
	}
	if got := strings.Join(all, "|"); got != "101,102|103,104|105" {
		t.Fatalf("pages = %s", got)
	}
	// A cursor whose post was deleted continues at the next older post.
	d := fx.doc(t, "limit=2")
	fx.sb.DeletePost(fx.acct, fx.idOf("102"))
	fx.fetchNow()
	d2 := fx.doc(t, "limit=2&after="+url.QueryEscape(*d.Next))
	if got := fx.ids(d2); got != "103,104" {
		t.Fatalf("after a deleted post: %s", got)
	}
}

func TestNewDeletedAndEditedPosts(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	fx.fetchNow()
	before := fx.doc(t, "")
	downloads := fx.calls(sandbox.EndpointCDN)
	fx.sb.DeletePost(fx.acct, fx.idOf("101"))
	fx.sb.EditCaption(fx.acct, fx.idOf("102"), "Three views, edited")
	fx.addPost("100", sandbox.PostSpec{Timestamp: ts(21)})
	fx.clock.Add(20 * time.Minute)
	if err := fx.fetchNow(); err != nil {
		t.Fatal(err)
	}
	d := fx.doc(t, "")
	if got := fx.ids(d); got != "100,102,103,104,105" {
		t.Fatalf("posts = %s", got)
	}
	if *d.Posts[1].Caption != "Three views, edited" {
		t.Errorf("caption not updated: %q", *d.Posts[1].Caption)
	}
	// Only the new image was downloaded; old ones are kept, not re-fetched.
	if n := fx.calls(sandbox.EndpointCDN) - downloads; n != 1 {
		t.Errorf("%d downloads: new post not fetched once or an old one fetched again", n)
	}
	// The deleted post's files were removed.
	for _, im := range before.Posts[0].Images {
		if fx.fileExists(t, im.URL) {
			t.Errorf("file %s of the deleted post is still stored", im.URL)
		}
	}
}

func TestExpiredCDNURLsKeepLocalCopies(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	fx.fetchNow()
	before := fx.fetchJSON(t, fx.id, "")
	downloads := fx.calls(sandbox.EndpointCDN)
	// Days later every signed URL answers 403; the stored copies still serve
	// and nothing is downloaded again.
	fx.sb.ExpireMediaURLs()
	fx.clock.Add(72 * time.Hour)
	if err := fx.fetchNow(); err != nil {
		t.Fatal(err)
	}
	d := fx.doc(t, "")
	if fx.ids(d) != "101,102,103,104,105" || d.Stale || fx.calls(sandbox.EndpointCDN) != downloads {
		t.Fatalf("after expiry: %s stale=%v", fx.ids(d), d.Stale)
	}
	var old Doc
	json.Unmarshal(before, &old)
	if old.Posts[0].Images[0].URL != d.Posts[0].Images[0].URL {
		t.Error("image URLs changed")
	}
}

func TestFailedDownloadLeavesPostOutAndRetries(t *testing.T) {
	fm := &failingMedia{fail: map[string]bool{}}
	fx := sampleEnv(t, envOptions{media: func(m Media) Media { fm.Media = m; return fm }})
	img101 := urlPath(t, fx.graphMedia()["101"].MediaURL)
	fm.set(img101, true)
	fx.fetchNow()
	if got := fx.ids(fx.doc(t, "")); got != "102,103,104,105" {
		t.Fatalf("posts = %s, want 101 left out while it has no image", got)
	}
	fm.set(img101, false)
	fx.fetchNow()
	if got := fx.ids(fx.doc(t, "")); got != "101,102,103,104,105" {
		t.Fatalf("posts = %s after the retry", got)
	}
}

func TestOutageServesStaleWithoutCallStorm(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	fx.fetchNow()
	good := fx.doc(t, "")
	fx.sb.SetOutage(true)
	fx.clock.Add(16 * time.Minute)
	before := fx.calls(sandbox.EndpointMedia)
	if err := fx.fetchNow(); err == nil {
		t.Fatal("want the poll error")
	}
	calls := fx.calls(sandbox.EndpointMedia)
	if calls == before {
		t.Fatal("the poll did not call Instagram")
	}
	d := fx.doc(t, "")
	if !d.Stale || fx.ids(d) != fx.ids(good) || d.Account == nil {
		t.Fatalf("during outage: stale=%v posts=%s", d.Stale, fx.ids(d))
	}
	f := fx.feed()
	if f.FetchFailures != 1 || f.LastFetchOK || !f.NextFetchAt.After(fx.clock.Now()) {
		t.Fatalf("fetch record: %+v", f)
	}
	if msg := f.LastFetchError; !strings.Contains(msg, "unreachable") {
		t.Errorf("owner message %q", msg)
	}
	// Many visitors and poller rounds before the backoff ends: no calls
	// beyond the one poll's.
	for range 100 {
		fx.svc.Invalidate(fx.id)
		fx.doc(t, "")
	}
	fx.svc.pollDue(context.Background())
	if got := fx.calls(sandbox.EndpointMedia); got != calls {
		t.Fatalf("%d graph calls during outage after the poll", got-calls)
	}
	// Backoff grows with consecutive failures and is capped.
	if b1, b3, b20 := fx.svc.backoff(1), fx.svc.backoff(3), fx.svc.backoff(20); b1 != time.Minute || b3 != 4*time.Minute || b20 != time.Hour {
		t.Errorf("backoff = %v %v %v", b1, b3, b20)
	}
	// Recovery clears stale.
	fx.sb.SetOutage(false)
	fx.clock.Add(2 * time.Minute)
	fx.svc.pollDue(context.Background())
	if d := fx.doc(t, ""); d.Stale {
		t.Fatal("still stale after a good poll")
	}
	if f := fx.feed(); f.FetchFailures != 0 {
		t.Fatalf("failures = %d after success", f.FetchFailures)
	}
}

func TestThrottledWaitsForTheBlock(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	fx.fetchNow()
	fx.clock.Add(16 * time.Minute)
	fx.sb.Throttle(fx.acct, 40*time.Minute)
	fx.svc.pollDue(context.Background())
	f := fx.feed()
	// At the block's end, plus up to half the interval so that the feeds
	// it stopped do not all come back at once (jitter 0.5 here).
	if want := fx.clock.Now().Add(40*time.Minute + 15*time.Minute/4); !f.NextFetchAt.Equal(want) {
		t.Fatalf("next fetch %v, want a quarter interval after the block's end %v", f.NextFetchAt, want)
	}
	if d := fx.doc(t, ""); !d.Stale || len(d.Posts) != 5 {
		t.Fatal("throttled feed not served stale")
	}
	calls := fx.calls(sandbox.EndpointMedia)
	fx.clock.Add(30 * time.Minute)
	fx.svc.pollDue(context.Background())
	if fx.calls(sandbox.EndpointMedia) != calls {
		t.Fatal("polled during the block")
	}
	fx.clock.Add(15 * time.Minute)
	fx.svc.pollDue(context.Background())
	if fx.calls(sandbox.EndpointMedia) != calls+1 {
		t.Fatal("not polled after the block")
	}
}

func TestTokenInvalidMarksNeedsReauth(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	fx.fetchNow()
	fx.sb.RevokeTokens(fx.acct)
	fx.clock.Add(16 * time.Minute)
	fx.svc.pollDue(context.Background())
	f := fx.feed()
	if f.Status != model.StatusNeedsReauth {
		t.Fatalf("status %s", f.Status)
	}
	if d := fx.doc(t, ""); !d.Stale || len(d.Posts) != 5 {
		t.Fatal("last good snapshot not served")
	}
	calls := fx.calls(sandbox.EndpointMedia)
	fx.clock.Add(time.Hour)
	fx.svc.pollDue(context.Background())
	if fx.calls(sandbox.EndpointMedia) != calls {
		t.Fatal("a needs_reauth feed was polled")
	}
	if err := fx.fetchNow(); !errors.Is(err, model.ErrNotConnected) {
		t.Fatalf("FetchNow on needs_reauth: %v", err)
	}
}

func TestTokenInvalidRacingARefreshIsNotReauth(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	fx.fetchNow()
	// The refresher swaps the token while the poll holds the old one, and
	// Instagram kills the old string.
	var newTok string
	fx.conns.setOnToken(func(old string) {
		fx.sb.RevokeTokens(fx.acct)
		newTok = fx.sb.MintLongLivedToken(fx.acct, fx.clock.Now())
		if err := fx.st.ReplaceToken(context.Background(), fx.id, old, model.Token{AccessToken: newTok,
			TokenInfo: model.TokenInfo{ExpiresAt: fx.clock.Now().Add(sandbox.LongTokenTTL)}}); err != nil {
			t.Error(err)
		}
	})
	fx.clock.Add(16 * time.Minute)
	fx.svc.pollDue(context.Background())
	f := fx.feed()
	if f.Status != model.StatusActive || f.NextFetchAt.After(fx.clock.Now()) {
		t.Fatalf("status %s next %v: the race marked the feed", f.Status, f.NextFetchAt)
	}
	fx.conns.setOnToken(nil)
	fx.svc.pollDue(context.Background())
	if got := fx.conns.lastToken(); got != newTok || !fx.feed().LastFetchOK {
		t.Fatalf("retry did not use the new token or failed")
	}
}

func TestNotFetchedFeedAnswersAtOnceAndFetchesInBackground(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	gate := make(chan struct{})
	fx.conns.setGate(gate)
	d := fx.doc(t, "") // must not wait for the held poll
	if d.Account != nil || len(d.Posts) != 0 || d.UpdatedAt != nil || d.Stale {
		t.Fatalf("not-fetched doc: %+v", d)
	}
	if !strings.Contains(string(fx.fetchJSON(t, fx.id, "")), `"account":null`) {
		t.Error("account not null")
	}
	close(gate)
	waitFor(t, func() bool { return !fx.feed().FetchedAt.IsZero() })
	waitFor(t, func() bool { return len(fx.doc(t, "").Posts) == 5 })
	if n := fx.calls(sandbox.EndpointMedia); n != 1 {
		t.Fatalf("media calls = %d", n)
	}
}

func TestUnconnectedAndUnknownFeeds(t *testing.T) {
	fx := newEnv(t, envOptions{})
	f2, err := fx.st.CreateFeed(context.Background(), "Other", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := Doc{}
	json.Unmarshal(fx.fetchJSON(t, f2.ID, ""), &d)
	if d.Account != nil || len(d.Posts) != 0 {
		t.Fatalf("unconnected: %+v", d)
	}
	if fx.calls(sandbox.EndpointMedia) != 0 {
		t.Fatal("fetch started for an unconnected feed")
	}
	for _, id := range []string{"nope", "../x", "", strings.Repeat("a", 100), "zzzzzzzzzz"} {
		if _, err := fx.svc.Entry(context.Background(), id, DefaultQuery); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("Entry(%q) = %v, want ErrNotFound", id, err)
		}
	}
	if err := fx.svc.FetchNow(context.Background(), f2.ID); !errors.Is(err, model.ErrNotConnected) {
		t.Errorf("FetchNow(unconnected) = %v", err)
	}
	if err := fx.svc.FetchNow(context.Background(), "nope"); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("FetchNow(unknown) = %v", err)
	}
}

func TestColdStartOneGraphCall(t *testing.T) {
	cs := &countingStore{}
	fx := newEnv(t, envOptions{store: func(st *store.Store) Store { cs.Store = st; return cs }})
	gate := make(chan struct{})
	fx.conns.setGate(gate)
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := fx.svc.Entry(context.Background(), fx.id, DefaultQuery)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	close(gate)
	waitFor(t, func() bool { return !fx.feed().FetchedAt.IsZero() })
	for range 100 {
		fx.svc.Entry(context.Background(), fx.id, DefaultQuery)
	}
	if n := fx.calls(sandbox.EndpointMedia); n != 1 {
		t.Fatalf("media calls = %d, want exactly 1", n)
	}
	if n := fx.calls(sandbox.EndpointMe); n > 1 {
		t.Fatalf("profile calls = %d", n)
	}
	if n := cs.reads.Load(); n > 10 {
		t.Errorf("store reads = %d: misses did not collapse", n)
	}
}

func TestFetchNowJoinsAndSkipsBackoff(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	fx.fetchNow()
	fx.sb.SetOutage(true)
	fx.fetchNow() // backoff now
	fx.sb.SetOutage(false)
	gate := make(chan struct{})
	fx.conns.setGate(gate)
	calls := fx.calls(sandbox.EndpointMedia)
	entered := fx.conns.entered.Load()
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() { defer wg.Done(); fx.svc.FetchNow(context.Background(), fx.id) }()
	}
	waitFor(t, func() bool { return fx.conns.entered.Load() == entered+1 })
	close(gate)
	wg.Wait()
	if got := fx.calls(sandbox.EndpointMedia) - calls; got != 1 {
		t.Fatalf("5 concurrent refreshes made %d calls", got)
	}
	if f := fx.feed(); !f.LastFetchOK {
		t.Fatal("refresh did not succeed during backoff")
	}
}

func TestFetchNowReturnsPromptlyWhenThrottled(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	fx.sb.Throttle(fx.acct, time.Hour)
	err := fx.fetchNow()
	if err == nil {
		t.Fatal("want the throttle error")
	}
	f := fx.feed()
	if f.LastFetchOK || !strings.Contains(f.LastFetchError, "rate limited") {
		t.Fatalf("failure not recorded: %+v %q", f, f.LastFetchError)
	}
}

func TestRestartServesPersistedSnapshot(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	fx.fetchNow()
	first := fx.fetchJSON(t, fx.id, "")
	fx.svc.Close()
	// Instagram is down after the restart: the stored snapshot serves.
	fx.sb.SetOutage(true)
	fx.svc = fx.newService()
	calls := fx.calls(sandbox.EndpointMedia)
	if got := fx.fetchJSON(t, fx.id, ""); string(got) != string(first) {
		t.Fatalf("after restart:\n%s\nwant\n%s", got, first)
	}
	if fx.calls(sandbox.EndpointMedia) != calls {
		t.Fatal("a request after restart called Instagram")
	}
}

// avatarSwap reports another profile picture than Instagram's once set: the
// sandbox has no switch for a changed picture.
type avatarSwap struct {
	Graph
	mu      sync.Mutex
	picture string
}

func (g *avatarSwap) Me(ctx context.Context, acct, token string) (graph.Profile, error) {
	p, err := g.Graph.Me(ctx, acct, token)
	g.mu.Lock()
	if err == nil && g.picture != "" {
		p.ProfilePictureURL = g.picture
	}
	g.mu.Unlock()
	return p, err
}

func TestProfileReadOnlyWhenNeeded(t *testing.T) {
	sw := &avatarSwap{}
	fx := sampleEnv(t, envOptions{graph: func(g Graph) Graph { sw.Graph = g; return sw }})
	// Another picture the sandbox serves: the business account's.
	other, _ := fx.sb.Account(sandbox.AccountBusiness)
	p, err := fx.graph.Me(context.Background(), other.UserID, fx.sb.MintLongLivedToken(sandbox.AccountBusiness, fx.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	fx.sb.ResetCalls()
	fx.fetchNow()
	if n := fx.calls(sandbox.EndpointMe); n != 1 {
		t.Fatalf("first fetch: %d profile calls, want 1 (no avatar yet)", n)
	}
	for range 3 {
		fx.clock.Add(16 * time.Minute)
		fx.fetchNow()
	}
	if n := fx.calls(sandbox.EndpointMe); n != 1 {
		t.Fatalf("%d profile calls, want 1 within a day", n)
	}
	fx.clock.Add(25 * time.Hour)
	fx.fetchNow()
	if n := fx.calls(sandbox.EndpointMe); n != 2 {
		t.Fatalf("%d profile calls after a day, want 2", n)
	}
	// A new profile picture gets a new key; the old file goes.
	old := fx.doc(t, "").Account.Avatar
	sw.mu.Lock()
	sw.picture = p.ProfilePictureURL
	sw.mu.Unlock()
	fx.clock.Add(25 * time.Hour)
	fx.fetchNow()
	d := fx.doc(t, "")
	if d.Account.Avatar == nil || fx.cdnPaths()[urlPath(t, p.ProfilePictureURL)] != 1 || d.Account.Avatar.URL == old.URL {
		t.Fatal("new avatar not stored")
	}
	if fx.fileExists(t, old.URL) {
		t.Error("the old avatar's file is still stored")
	}
}

func TestViewsAreDebounced(t *testing.T) {
	cs := &countingStore{}
	fx := newEnv(t, envOptions{store: func(st *store.Store) Store { cs.Store = st; return cs }}) // viewed just now
	for range 50 {
		fx.svc.Invalidate(fx.id)
		fx.doc(t, "")
	}
	if n := cs.views.Load(); n != 0 {
		t.Fatalf("MarkViewed calls = %d, want 0 (viewed recently)", n)
	}
	fx.clock.Add(2 * time.Hour)
	for range 50 {
		fx.svc.Invalidate(fx.id)
		fx.doc(t, "")
	}
	if n := cs.views.Load(); n != 1 {
		t.Fatalf("MarkViewed calls = %d, want 1 after the debounce", n)
	}
}

func TestPollerSkipsFeedsNotViewedFor30Days(t *testing.T) {
	fx := newEnv(t, envOptions{})
	fx.doc(t, "") // viewed now; triggers the first fetch
	waitFor(t, func() bool { return fx.feed().LastFetchOK })
	fx.svc.Close()
	fx.svc = fx.newService()
	calls := fx.calls(sandbox.EndpointMedia)
	fx.clock.Add(31 * 24 * time.Hour)
	fx.svc.pollDue(context.Background())
	if fx.calls(sandbox.EndpointMedia) != calls {
		t.Fatal("polled a feed nobody viewed for 31 days")
	}
	fx.doc(t, "") // a visitor comes back
	fx.svc.pollDue(context.Background())
	if fx.calls(sandbox.EndpointMedia) != calls+1 {
		t.Fatal("not polled after a new view")
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	fx := newEnv(t, envOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fx.svc.Run(ctx) }()
	waitFor(t, func() bool { return fx.calls(sandbox.EndpointMedia) == 1 }) // first round runs at once
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestCacheInvalidatedByPoll(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	fx.fetchNow()
	e1, _ := fx.svc.Entry(context.Background(), fx.id, DefaultQuery)
	e2, _ := fx.svc.Entry(context.Background(), fx.id, DefaultQuery)
	if e1 != e2 {
		t.Fatal("second request not served from cache")
	}
	fx.sb.DeletePost(fx.acct, fx.idOf("101"))
	fx.clock.Add(16 * time.Minute)
	fx.fetchNow()
	e3, _ := fx.svc.Entry(context.Background(), fx.id, DefaultQuery)
	if e3 == e1 || e3.ETag == e1.ETag {
		t.Fatal("new snapshot not served")
	}
}

func TestDocForRenderer(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	if _, err := fx.st.UpdateFeed(context.Background(), fx.id, nil, &[]string{"https://shop.example"}); err != nil {
		t.Fatal(err)
	}
	fx.fetchNow()
	d, origins, err := fx.svc.Doc(context.Background(), fx.id, 2, "", []string{"image", "carousel"})
	if err != nil || fx.ids(*d) != "101,102" || len(origins) != 1 || origins[0] != "https://shop.example" {
		t.Fatalf("Doc = %v %v %v", d, origins, err)
	}
	if _, _, err := fx.svc.Doc(context.Background(), fx.id, 101, "", nil); err == nil {
		t.Error("limit 101 accepted")
	}
	if _, _, err := fx.svc.Doc(context.Background(), "nope", 0, "", nil); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("unknown feed: %v", err)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	eventually(t, "condition", cond)
}

// eventually waits for cond, failing the test with what when it does not
// come true.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // generous: the machine is shared
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s not reached", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestMetrics(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	reg := prometheus.NewRegistry()
	o := fx.options()
	o.Registerer = reg
	svc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	svc.FetchNow(context.Background(), fx.id)
	fx.sb.Throttle(fx.acct, time.Hour)
	svc.FetchNow(context.Background(), fx.id)
	svc.Entry(context.Background(), fx.id, DefaultQuery)
	svc.Entry(context.Background(), fx.id, DefaultQuery)
	fx.clock.Add(90 * time.Second)
	want := `
# HELP feedd_feed_age_seconds Seconds since the feed's last good snapshot.
# TYPE feedd_feed_age_seconds gauge
feedd_feed_age_seconds{feed="` + fx.id + `"} 90
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "feedd_feed_age_seconds"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(svc.metrics.pollsTotal.WithLabelValues("ok")); got != 1 {
		t.Errorf("ok polls = %v", got)
	}
	if got := testutil.ToFloat64(svc.metrics.pollsTotal.WithLabelValues("throttled")); got != 1 {
		t.Errorf("throttled polls = %v", got)
	}
	n, _ := testutil.GatherAndCount(reg, "feedd_feed_cache_requests_total")
	if n != 3 {
		t.Errorf("cache metric series = %d", n)
	}
}

// A newly connected feed shows its first page as soon as those covers are
// stored, while the images of older posts are still downloading.
func TestFirstPollPublishesFirstPageEarly(t *testing.T) {
	var gm *gatedMedia
	early := map[string]bool{}
	fx := newEnv(t, envOptions{media: func(m Media) Media {
		gm = newGatedMedia(m, func(u string) bool { return !early[pathOf(u)] })
		return gm
	}})
	fx.clearPosts()
	for i := range 20 {
		fx.addPost(strconv.Itoa(200+i), sandbox.PostSpec{Timestamp: ts(22).Add(-time.Duration(i) * time.Hour)})
	}
	items := fx.graphMedia()
	for i := range FirstPublish {
		early[urlPath(t, items[strconv.Itoa(200+i)].MediaURL)] = true
	}
	a, _ := fx.sb.Account(fx.acct)
	tok, _ := fx.st.Token(context.Background(), fx.id)
	p, err := fx.graph.Me(context.Background(), a.UserID, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	early[urlPath(t, p.ProfilePictureURL)] = true
	done := make(chan error, 1)
	go func() { done <- fx.fetchNow() }()
	select {
	case <-gm.reached:
	case err := <-done:
		t.Fatalf("fetch ended (%v) before downloading older posts", err)
	}
	if d := fx.doc(t, "limit=50"); len(d.Posts) != FirstPublish || fx.name(d.Posts[0].ID) != "200" || d.Account == nil || d.Stale {
		t.Fatalf("while older images download: %d posts (first %q), account %v, stale %v; want the newest %d, not stale",
			len(d.Posts), fx.ids(d), d.Account, d.Stale, FirstPublish)
	}
	close(gm.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := fx.doc(t, "limit=50"); len(d.Posts) != 20 {
		t.Fatalf("after the poll: %d posts, want 20", len(d.Posts))
	}
}

// After a delete every cached answer of the feed is gone at once (the owner
// surface invalidates the feed); after a disconnect it is empty at once.
func TestDeleteAndDisconnectShowAtOnce(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	if err := fx.fetchNow(); err != nil {
		t.Fatal(err)
	}
	other := fx.st
	kept, err := other.CreateFeed(context.Background(), "Kept", nil)
	if err != nil {
		t.Fatal(err)
	}
	fx.connect(kept.ID, fx.acct)
	if err := fx.svc.FetchNow(context.Background(), kept.ID); err != nil {
		t.Fatal(err)
	}
	queries := []string{"", "limit=3", "type=image"}
	for _, id := range []string{fx.id, kept.ID} {
		for _, q := range queries {
			if d := fx.docOf(t, id, q); len(d.Posts) == 0 {
				t.Fatalf("feed %s%s before: no posts", id, q)
			}
		}
	}
	files, err := fx.st.DeleteFeed(context.Background(), fx.id)
	if err != nil {
		t.Fatal(err)
	}
	fx.media.Remove(files)
	fx.svc.Invalidate(fx.id)
	for _, q := range queries {
		v, _ := url.ParseQuery(q)
		pq, _ := ParseQuery(v)
		if _, err := fx.svc.Entry(context.Background(), fx.id, pq); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("deleted feed?%s: %v, want not found", q, err)
		}
	}
	_, files, err = fx.st.Disconnect(context.Background(), kept.ID)
	if err != nil {
		t.Fatal(err)
	}
	fx.media.Remove(files)
	fx.svc.Invalidate(kept.ID)
	for _, q := range queries {
		if d := fx.docOf(t, kept.ID, q); d.Account != nil || len(d.Posts) != 0 {
			t.Errorf("disconnected feed?%s: account %+v, %d posts", q, d.Account, len(d.Posts))
		}
	}
}

// A cursor that names no stored post is answered like the docs promise (the
// page continues at the first older post) but never gets a cache entry of
// its own, however many such cursors visitors send.
func TestCursorNamingNoPostCreatesNoCacheEntry(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	if err := fx.fetchNow(); err != nil {
		t.Fatal(err)
	}
	d := fx.doc(t, "limit=2")
	for range 2 { // the real next page, kept from its second request on
		fx.doc(t, "limit=2&after="+url.QueryEscape(*d.Next))
	}
	entries := fx.svc.cache.Len()
	between := ts(19).Add(-time.Hour) // after 102, before 103
	var cursors []string
	for i := range 100 {
		cursors = append(cursors, encodeCursor(&Post{ID: "9" + strconv.Itoa(i), Timestamp: between}))
	}
	// A stored post's id with another time is not that post's cursor either.
	cursors = append(cursors, encodeCursor(&Post{ID: fx.idOf("102"), Timestamp: between}))
	// Each asked for twice: a page asked for once is not kept anyway.
	for range 2 {
		for _, c := range cursors {
			if got := fx.ids(fx.doc(t, "limit=2&after="+url.QueryEscape(c))); got != "103,104" {
				t.Fatalf("cursor %s: posts %s, want the page after 102", c, got)
			}
		}
	}
	if n := fx.svc.cache.Len(); n != entries {
		t.Fatalf("%d cache entries after %d cursors naming no post, want %d", n, len(cursors), entries)
	}
}
