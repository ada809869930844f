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
)

// fetchJSON returns the feed body for a raw query string.
func (fx *fixture) fetchJSON(t *testing.T, id, rawQuery string) []byte {
	t.Helper()
	v, _ := url.ParseQuery(rawQuery)
	q, err := ParseQuery(v)
	if err != nil {
		t.Fatal(err)
	}
	e, err := fx.svc.Entry(context.Background(), id, q)
	if err != nil {
		t.Fatalf("Entry(%s, %q): %v", id, rawQuery, err)
	}
	return e.JSON
}

func (fx *fixture) doc(t *testing.T, rawQuery string) Doc {
	t.Helper()
	var d Doc
	if err := json.Unmarshal(fx.fetchJSON(t, "feed1", rawQuery), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func ids(d Doc) string {
	var s []string
	for _, p := range d.Posts {
		s = append(s, p.ID)
	}
	return strings.Join(s, ",")
}

func (fx *fixture) fetchNow(t *testing.T) error {
	t.Helper()
	return fx.svc.FetchNow(context.Background(), "feed1")
}

func TestSnapshotToDoc(t *testing.T) {
	fx := newFixture(t)
	if err := fx.fetchNow(t); err != nil {
		t.Fatal(err)
	}
	d := fx.doc(t, "")
	if d.Version != 1 || d.ID != "feed1" || d.Stale || d.Next != nil {
		t.Fatalf("header fields: %+v", d)
	}
	if d.UpdatedAt == nil || !d.UpdatedAt.Equal(fx.clock.Now()) {
		t.Errorf("updated_at = %v, want the fetch time", d.UpdatedAt)
	}
	if d.Account == nil || d.Account.Username != "acme" || d.Account.ProfileURL != "https://www.instagram.com/acme/" ||
		d.Account.Avatar == nil || !strings.HasPrefix(d.Account.Avatar.URL, "https://feeds.example.com/media/") {
		t.Fatalf("account: %+v", d.Account)
	}
	if got := ids(d); got != "101,102,103,104,105" {
		t.Fatalf("posts = %s", got)
	}
	byID := map[string]Post{}
	for _, p := range d.Posts {
		byID[p.ID] = p
		if len(p.Images) != 3 || p.Images[0].Width != 320 || p.Images[1].Width != 640 || p.Images[2].Width != 1080 {
			t.Errorf("post %s images not smallest first with real sizes: %+v", p.ID, p.Images)
		}
		for _, im := range p.Images {
			if !strings.HasPrefix(im.URL, "https://feeds.example.com/media/") || strings.Contains(im.URL, "cdninstagram") || im.Height == 0 {
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
		{"104", "video", true, "Post by @acme"},
		{"105", "video", false, "Post by @acme"},
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
	// itself never, the reel without media_url through its thumbnail.
	if n := fx.media.count(cdn("c1021")); n != 1 {
		t.Errorf("first carousel child downloaded %d times", n)
	}
	if n := fx.media.count("https://video.cdninstagram.com/v/r103.mp4?oh=x"); n != 0 {
		t.Error("a video file was downloaded")
	}
	if n := fx.media.count(cdn("r104thumb")); n != 1 {
		t.Error("the reel without media_url was not stored from its thumbnail")
	}

	// Fields Instagram omitted stay omitted.
	var raw struct {
		Posts []map[string]json.RawMessage `json:"posts"`
	}
	json.Unmarshal(fx.fetchJSON(t, "feed1", ""), &raw)
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
	fx := newFixture(t)
	fx.fetchNow(t)
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
		if got := ids(d); got != tt.want || (d.Next != nil) != tt.next {
			t.Errorf("%s: got %s next=%v, want %s next=%v", tt.query, got, d.Next != nil, tt.want, tt.next)
		}
	}
	// Walk the pages with the cursor.
	var all []string
	q := "limit=2"
	for range 10 {
		d := fx.doc(t, q)
		all = append(all, ids(d))
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
	items := sampleMedia()
	fx.graph.set(append(items[:1:1], items[2:]...), nil) // delete 102
	fx.fetchNow(t)
	d2 := fx.doc(t, "limit=2&after="+url.QueryEscape(*d.Next))
	if got := ids(d2); got != "103,104" {
		t.Fatalf("after a deleted post: %s", got)
	}
}

func TestNewDeletedAndEditedPosts(t *testing.T) {
	fx := newFixture(t)
	fx.fetchNow(t)
	items := sampleMedia()
	items = items[1:] // 101 deleted
	items[0].Caption = ptr("Three views, edited")
	newPost := GraphMedia{ID: "100", MediaType: "IMAGE", MediaURL: cdn("img100"), Permalink: "https://www.instagram.com/p/A100/", Timestamp: ts(21)}
	items = append([]GraphMedia{newPost}, items...)
	fx.graph.set(items, nil)
	fx.clock.Add(20 * time.Minute)
	if err := fx.fetchNow(t); err != nil {
		t.Fatal(err)
	}
	d := fx.doc(t, "")
	if got := ids(d); got != "100,102,103,104,105" {
		t.Fatalf("posts = %s", got)
	}
	if *d.Posts[1].Caption != "Three views, edited" {
		t.Errorf("caption not updated: %q", *d.Posts[1].Caption)
	}
	// Only the new image was downloaded; old ones are kept, not re-fetched.
	if fx.media.count(cdn("img100")) != 1 || fx.media.count(cdn("c1023")) != 1 {
		t.Error("downloads: new post not fetched once or an old one fetched again")
	}
	// The deleted post's files were removed.
	if len(fx.media.removed) != 3 || !strings.HasSuffix(fx.media.removed[0], ".jpg") {
		t.Errorf("removed files = %v, want the deleted post's 3 sizes", fx.media.removed)
	}
}

func TestExpiredCDNURLsKeepLocalCopies(t *testing.T) {
	fx := newFixture(t)
	fx.fetchNow(t)
	before := fx.fetchJSON(t, "feed1", "")
	// Days later every signed URL answers 403; the stored copies still serve
	// and nothing is downloaded again.
	fx.media.mu.Lock()
	for _, m := range sampleMedia() {
		fx.media.fail[m.MediaURL] = true
		fx.media.fail[m.ThumbnailURL] = true
	}
	fx.media.mu.Unlock()
	fx.clock.Add(72 * time.Hour)
	if err := fx.fetchNow(t); err != nil {
		t.Fatal(err)
	}
	d := fx.doc(t, "")
	if ids(d) != "101,102,103,104,105" || d.Stale {
		t.Fatalf("after expiry: %s stale=%v", ids(d), d.Stale)
	}
	var old Doc
	json.Unmarshal(before, &old)
	if old.Posts[0].Images[0].URL != d.Posts[0].Images[0].URL {
		t.Error("image URLs changed")
	}
}

func TestFailedDownloadLeavesPostOutAndRetries(t *testing.T) {
	fx := newFixture(t)
	fx.media.fail[cdn("img101")] = true
	fx.fetchNow(t)
	if got := ids(fx.doc(t, "")); got != "102,103,104,105" {
		t.Fatalf("posts = %s, want 101 left out while it has no image", got)
	}
	fx.media.mu.Lock()
	fx.media.fail[cdn("img101")] = false
	fx.media.mu.Unlock()
	fx.fetchNow(t)
	if got := ids(fx.doc(t, "")); got != "101,102,103,104,105" {
		t.Fatalf("posts = %s after the retry", got)
	}
}

func TestOutageServesStaleWithoutCallStorm(t *testing.T) {
	fx := newFixture(t)
	fx.fetchNow(t)
	good := fx.doc(t, "")
	fx.graph.set(nil, &graphErr{kind: KindTransient})
	fx.clock.Add(16 * time.Minute)
	calls := fx.graph.mediaCalls.Load()
	if err := fx.fetchNow(t); err == nil {
		t.Fatal("want the poll error")
	}
	d := fx.doc(t, "")
	if !d.Stale || ids(d) != ids(good) || d.Account == nil {
		t.Fatalf("during outage: stale=%v posts=%s", d.Stale, ids(d))
	}
	f := fx.store.feed("feed1")
	if f.FetchFailures != 1 || f.LastFetchOK || !f.NextFetchAt.After(fx.clock.Now()) {
		t.Fatalf("fetch record: %+v", f)
	}
	if msg := fx.store.errs["feed1"]; !strings.Contains(msg, "unreachable") {
		t.Errorf("owner message %q", msg)
	}
	// Many visitors and poller rounds before the backoff ends: no calls.
	for range 100 {
		fx.svc.Invalidate("feed1")
		fx.doc(t, "")
	}
	fx.svc.pollDue(context.Background())
	if got := fx.graph.mediaCalls.Load() - calls; got != 1 {
		t.Fatalf("graph calls during outage = %d, want 1", got)
	}
	// Backoff grows with consecutive failures and is capped.
	if b1, b3, b20 := fx.svc.backoff(1), fx.svc.backoff(3), fx.svc.backoff(20); b1 != time.Minute || b3 != 4*time.Minute || b20 != time.Hour {
		t.Errorf("backoff = %v %v %v", b1, b3, b20)
	}
	// Recovery clears stale.
	fx.graph.set(sampleMedia(), nil)
	fx.clock.Add(2 * time.Minute)
	fx.svc.pollDue(context.Background())
	if d := fx.doc(t, ""); d.Stale {
		t.Fatal("still stale after a good poll")
	}
	if f := fx.store.feed("feed1"); f.FetchFailures != 0 {
		t.Fatalf("failures = %d after success", f.FetchFailures)
	}
}

func TestThrottledWaitsForTheBlock(t *testing.T) {
	fx := newFixture(t)
	fx.fetchNow(t)
	fx.graph.set(nil, &graphErr{kind: KindThrottled, retry: 40 * time.Minute})
	fx.clock.Add(16 * time.Minute)
	fx.svc.pollDue(context.Background())
	f := fx.store.feed("feed1")
	if want := fx.clock.Now().Add(40 * time.Minute); !f.NextFetchAt.Equal(want) {
		t.Fatalf("next fetch %v, want the block's end %v", f.NextFetchAt, want)
	}
	if d := fx.doc(t, ""); !d.Stale || len(d.Posts) != 5 {
		t.Fatal("throttled feed not served stale")
	}
	calls := fx.graph.mediaCalls.Load()
	fx.clock.Add(30 * time.Minute)
	fx.svc.pollDue(context.Background())
	if fx.graph.mediaCalls.Load() != calls {
		t.Fatal("polled during the block")
	}
	fx.clock.Add(11 * time.Minute)
	fx.svc.pollDue(context.Background())
	if fx.graph.mediaCalls.Load() != calls+1 {
		t.Fatal("not polled after the block")
	}
}

func TestTokenInvalidMarksNeedsReauth(t *testing.T) {
	fx := newFixture(t)
	fx.fetchNow(t)
	fx.graph.set(nil, &graphErr{kind: KindTokenInvalid})
	fx.clock.Add(16 * time.Minute)
	fx.svc.pollDue(context.Background())
	f := fx.store.feed("feed1")
	if f.Status != StatusNeedsReauth {
		t.Fatalf("status %s", f.Status)
	}
	if d := fx.doc(t, ""); !d.Stale || len(d.Posts) != 5 {
		t.Fatal("last good snapshot not served")
	}
	calls := fx.graph.mediaCalls.Load()
	fx.clock.Add(time.Hour)
	fx.svc.pollDue(context.Background())
	if fx.graph.mediaCalls.Load() != calls {
		t.Fatal("a needs_reauth feed was polled")
	}
	if err := fx.fetchNow(t); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("FetchNow on needs_reauth: %v", err)
	}
}

func TestTokenInvalidRacingARefreshIsNotReauth(t *testing.T) {
	fx := newFixture(t)
	fx.fetchNow(t)
	fx.graph.set(nil, &graphErr{kind: KindTokenInvalid})
	// The refresher swaps the token while the poll holds the old one.
	fx.graph.onMedia = func() {
		fx.store.mu.Lock()
		fx.store.tokens["feed1"] = "tok-new"
		fx.store.mu.Unlock()
	}
	fx.clock.Add(16 * time.Minute)
	fx.svc.pollDue(context.Background())
	f := fx.store.feed("feed1")
	if f.Status != StatusActive || f.NextFetchAt.After(fx.clock.Now()) {
		t.Fatalf("status %s next %v: the race marked the feed", f.Status, f.NextFetchAt)
	}
	fx.graph.onMedia = nil
	fx.graph.set(sampleMedia(), nil)
	fx.svc.pollDue(context.Background())
	if got := fx.graph.tokens[len(fx.graph.tokens)-1]; got != "tok-new" {
		t.Fatalf("retry used %q", got)
	}
}

func TestNotFetchedFeedAnswersAtOnceAndFetchesInBackground(t *testing.T) {
	fx := newFixture(t)
	gate := make(chan struct{})
	fx.graph.gate = gate
	d := fx.doc(t, "") // must not wait for the gated Graph call
	if d.Account != nil || len(d.Posts) != 0 || d.UpdatedAt != nil || d.Stale {
		t.Fatalf("not-fetched doc: %+v", d)
	}
	if !strings.Contains(string(fx.fetchJSON(t, "feed1", "")), `"account":null`) {
		t.Error("account not null")
	}
	close(gate)
	waitFor(t, func() bool { return !fx.store.feed("feed1").FetchedAt.IsZero() })
	waitFor(t, func() bool { return len(fx.doc(t, "").Posts) == 5 })
	if n := fx.graph.mediaCalls.Load(); n != 1 {
		t.Fatalf("media calls = %d", n)
	}
}

func TestUnconnectedAndUnknownFeeds(t *testing.T) {
	fx := newFixture(t)
	fx.store.addFeed("feed2", nil, nil)
	d := Doc{}
	json.Unmarshal(fx.fetchJSON(t, "feed2", ""), &d)
	if d.Account != nil || len(d.Posts) != 0 {
		t.Fatalf("unconnected: %+v", d)
	}
	if fx.graph.mediaCalls.Load() != 0 {
		t.Fatal("fetch started for an unconnected feed")
	}
	for _, id := range []string{"nope", "../x", "", strings.Repeat("a", 100)} {
		if _, err := fx.svc.Entry(context.Background(), id, DefaultQuery); !errors.Is(err, ErrNotFound) {
			t.Errorf("Entry(%q) = %v, want ErrNotFound", id, err)
		}
	}
	if err := fx.svc.FetchNow(context.Background(), "feed2"); !errors.Is(err, ErrNotConnected) {
		t.Errorf("FetchNow(unconnected) = %v", err)
	}
	if err := fx.svc.FetchNow(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("FetchNow(unknown) = %v", err)
	}
}

func TestColdStartOneGraphCall(t *testing.T) {
	fx := newFixture(t)
	gate := make(chan struct{})
	fx.graph.gate = gate
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := fx.svc.Entry(context.Background(), "feed1", DefaultQuery)
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
	waitFor(t, func() bool { return !fx.store.feed("feed1").FetchedAt.IsZero() })
	for range 100 {
		fx.svc.Entry(context.Background(), "feed1", DefaultQuery)
	}
	if n := fx.graph.mediaCalls.Load(); n != 1 {
		t.Fatalf("media calls = %d, want exactly 1", n)
	}
	if n := fx.graph.meCalls.Load(); n > 1 {
		t.Fatalf("profile calls = %d", n)
	}
	if n := fx.store.reads.Load(); n > 10 {
		t.Errorf("store reads = %d: misses did not collapse", n)
	}
}

func TestFetchNowJoinsAndSkipsBackoff(t *testing.T) {
	fx := newFixture(t)
	fx.fetchNow(t)
	fx.graph.set(nil, &graphErr{kind: KindTransient})
	fx.fetchNow(t) // backoff now
	fx.graph.set(sampleMedia(), nil)
	gate := make(chan struct{})
	fx.graph.gate = gate
	calls := fx.graph.mediaCalls.Load()
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() { defer wg.Done(); fx.svc.FetchNow(context.Background(), "feed1") }()
	}
	waitFor(t, func() bool { return fx.graph.mediaCalls.Load() == calls+1 })
	close(gate)
	wg.Wait()
	if got := fx.graph.mediaCalls.Load() - calls; got != 1 {
		t.Fatalf("5 concurrent refreshes made %d calls", got)
	}
	if f := fx.store.feed("feed1"); !f.LastFetchOK {
		t.Fatal("refresh did not succeed during backoff")
	}
}

func TestFetchNowReturnsPromptlyWhenThrottled(t *testing.T) {
	fx := newFixture(t)
	fx.graph.set(nil, &graphErr{kind: KindThrottled, retry: time.Hour})
	err := fx.fetchNow(t)
	if err == nil {
		t.Fatal("want the throttle error")
	}
	f := fx.store.feed("feed1")
	if f.LastFetchOK || !strings.Contains(fx.store.errs["feed1"], "rate limited") {
		t.Fatalf("failure not recorded: %+v %q", f, fx.store.errs["feed1"])
	}
}

func TestRestartServesPersistedSnapshot(t *testing.T) {
	fx := newFixture(t)
	fx.fetchNow(t)
	first := fx.fetchJSON(t, "feed1", "")
	fx.svc.Close()
	// Instagram is down after the restart: the stored snapshot serves.
	fx.graph.set(nil, &graphErr{kind: KindTransient})
	fx.svc = fx.newService(t)
	calls := fx.graph.mediaCalls.Load()
	if got := fx.fetchJSON(t, "feed1", ""); string(got) != string(first) {
		t.Fatalf("after restart:\n%s\nwant\n%s", got, first)
	}
	if fx.graph.mediaCalls.Load() != calls {
		t.Fatal("a request after restart called Instagram")
	}
}

func TestProfileReadOnlyWhenNeeded(t *testing.T) {
	fx := newFixture(t)
	fx.fetchNow(t)
	if n := fx.graph.meCalls.Load(); n != 1 {
		t.Fatalf("first fetch: %d profile calls, want 1 (no avatar yet)", n)
	}
	for range 3 {
		fx.clock.Add(16 * time.Minute)
		fx.fetchNow(t)
	}
	if n := fx.graph.meCalls.Load(); n != 1 {
		t.Fatalf("%d profile calls, want 1 within a day", n)
	}
	fx.clock.Add(25 * time.Hour)
	fx.fetchNow(t)
	if n := fx.graph.meCalls.Load(); n != 2 {
		t.Fatalf("%d profile calls after a day, want 2", n)
	}
	// A new profile picture gets a new key; the old file goes.
	fx.graph.mu.Lock()
	fx.graph.profile.ProfilePictureURL = "https://scontent.cdninstagram.com/v/avatar2.jpg?oh=sig2&oe=BBBB"
	fx.graph.mu.Unlock()
	fx.clock.Add(25 * time.Hour)
	fx.fetchNow(t)
	d := fx.doc(t, "")
	if d.Account.Avatar == nil || fx.media.count(fx.graph.profile.ProfilePictureURL) != 1 {
		t.Fatal("new avatar not stored")
	}
}

func TestViewsAreDebounced(t *testing.T) {
	fx := newFixture(t) // viewed just now
	for range 50 {
		fx.svc.Invalidate("feed1")
		fx.doc(t, "")
	}
	if n := fx.store.views.Load(); n != 0 {
		t.Fatalf("MarkViewed calls = %d, want 0 (viewed recently)", n)
	}
	fx.clock.Add(2 * time.Hour)
	for range 50 {
		fx.svc.Invalidate("feed1")
		fx.doc(t, "")
	}
	if n := fx.store.views.Load(); n != 1 {
		t.Fatalf("MarkViewed calls = %d, want 1 after the debounce", n)
	}
}

func TestPollerSkipsFeedsNotViewedFor30Days(t *testing.T) {
	fx := newFixture(t)
	fx.doc(t, "") // viewed now; triggers the first fetch
	fx.svc.Close()
	fx.svc = fx.newService(t)
	calls := fx.graph.mediaCalls.Load()
	fx.clock.Add(31 * 24 * time.Hour)
	fx.svc.pollDue(context.Background())
	if fx.graph.mediaCalls.Load() != calls {
		t.Fatal("polled a feed nobody viewed for 31 days")
	}
	fx.doc(t, "") // a visitor comes back
	fx.svc.pollDue(context.Background())
	if fx.graph.mediaCalls.Load() != calls+1 {
		t.Fatal("not polled after a new view")
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	fx := newFixture(t)
	fx.store.MarkViewed(context.Background(), "feed1", fx.clock.Now())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fx.svc.Run(ctx) }()
	waitFor(t, func() bool { return fx.graph.mediaCalls.Load() == 1 }) // first round runs at once
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
	fx := newFixture(t)
	fx.fetchNow(t)
	e1, _ := fx.svc.Entry(context.Background(), "feed1", DefaultQuery)
	e2, _ := fx.svc.Entry(context.Background(), "feed1", DefaultQuery)
	if e1 != e2 {
		t.Fatal("second request not served from cache")
	}
	items := sampleMedia()
	fx.graph.set(items[1:], nil)
	fx.clock.Add(16 * time.Minute)
	fx.fetchNow(t)
	e3, _ := fx.svc.Entry(context.Background(), "feed1", DefaultQuery)
	if e3 == e1 || e3.ETag == e1.ETag {
		t.Fatal("new snapshot not served")
	}
}

func TestDocForRenderer(t *testing.T) {
	fx := newFixture(t)
	fx.store.mu.Lock()
	fx.store.feeds["feed1"].AllowedOrigins = []string{"https://shop.example"}
	fx.store.mu.Unlock()
	fx.fetchNow(t)
	d, origins, err := fx.svc.Doc(context.Background(), "feed1", 2, "", []string{"image", "carousel"})
	if err != nil || ids(*d) != "101,102" || len(origins) != 1 || origins[0] != "https://shop.example" {
		t.Fatalf("Doc = %v %v %v", d, origins, err)
	}
	if _, _, err := fx.svc.Doc(context.Background(), "feed1", 101, "", nil); err == nil {
		t.Error("limit 101 accepted")
	}
	if _, _, err := fx.svc.Doc(context.Background(), "nope", 0, "", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown feed: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // generous: the machine is shared
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestMetrics(t *testing.T) {
	fx := newFixture(t)
	reg := prometheus.NewRegistry()
	svc, err := New(Options{Store: fx.store, Graph: fx.graph, Media: fx.media, Now: fx.clock.Now, Logger: quietLogger(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	svc.FetchNow(context.Background(), "feed1")
	fx.graph.set(nil, &graphErr{kind: KindThrottled, retry: time.Hour})
	svc.FetchNow(context.Background(), "feed1")
	svc.Entry(context.Background(), "feed1", DefaultQuery)
	svc.Entry(context.Background(), "feed1", DefaultQuery)
	fx.clock.Add(90 * time.Second)
	want := `
# HELP feedd_feed_age_seconds Seconds since the feed's last good snapshot.
# TYPE feedd_feed_age_seconds gauge
feedd_feed_age_seconds{feed="feed1"} 90
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
	fx := newFixture(t)
	var items []GraphMedia
	for i := range 20 {
		id := strconv.Itoa(200 + i)
		items = append(items, GraphMedia{ID: id, MediaType: "IMAGE", MediaURL: cdn("img" + id),
			Permalink: "https://www.instagram.com/p/" + id + "/", Timestamp: ts(22).Add(-time.Duration(i) * time.Hour)})
	}
	fx.graph.set(items, nil)
	early := map[string]bool{}
	for _, m := range items[:FirstPublish] {
		early[m.MediaURL] = true
	}
	early[fx.graph.profile.ProfilePictureURL] = true
	reached, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fx.media.gate = func(url string) {
		if !early[url] {
			once.Do(func() { close(reached) })
			<-release
		}
	}
	done := make(chan error, 1)
	go func() { done <- fx.svc.FetchNow(context.Background(), "feed1") }()
	select {
	case <-reached:
	case err := <-done:
		t.Fatalf("fetch ended (%v) before downloading older posts", err)
	}
	if d := fx.doc(t, "limit=50"); len(d.Posts) != FirstPublish || d.Posts[0].ID != "200" || d.Account == nil || d.Stale {
		t.Fatalf("while older images download: %d posts (first %q), account %v, stale %v; want the newest %d, not stale",
			len(d.Posts), ids(d), d.Account, d.Stale, FirstPublish)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := fx.doc(t, "limit=50"); len(d.Posts) != 20 {
		t.Fatalf("after the poll: %d posts, want 20", len(d.Posts))
	}
}
