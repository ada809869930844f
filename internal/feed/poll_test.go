package feed

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/guard"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/store"
	"github.com/feedd/feedd/internal/testutil"
)

// heldAfterFirstPage is an env on the business account (more posts than
// the first page) whose image downloads are held once the first page's
// covers and the avatar are stored, so that a test can change the
// connection while the first poll is half-way.
func heldAfterFirstPage(t *testing.T) (*env, *gatedMedia) {
	t.Helper()
	var gm *gatedMedia
	var n atomic.Int32
	fx := newEnv(t, envOptions{account: sandbox.AccountBusiness, media: func(m Media) Media {
		gm = newGatedMedia(m, func(string) bool { return n.Add(1) > FirstPublish+1 })
		return gm
	}})
	return fx, gm
}

// startHeldPoll starts the feed's first poll and returns once its first
// page is published and its other downloads are held.
func startHeldPoll(t *testing.T, fx *env, gm *gatedMedia) chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fx.fetchNow() }()
	select {
	case <-gm.reached:
	case err := <-done:
		t.Fatalf("poll ended (%v) before its downloads were held", err)
	}
	if d := fx.doc(t, ""); len(d.Posts) == 0 || d.Account == nil || d.Account.Username != fx.user {
		t.Fatalf("first page of %s not published: %+v", fx.user, d)
	}
	return done
}

// filesOf lists the local files a document's images name.
func (e *env) filesOf(t *testing.T, d Doc) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	add := func(ims []Image) {
		for _, im := range ims {
			rel, ok := strings.CutPrefix(im.URL, "https://feeds.example.com/media/")
			if !ok {
				t.Fatalf("image URL %s is not a local one", im.URL)
			}
			out[rel] = true
		}
	}
	if d.Account != nil && d.Account.Avatar != nil {
		add([]Image{*d.Account.Avatar})
	}
	for _, p := range d.Posts {
		add(p.Images)
		for _, c := range p.Children {
			add(c.Images)
		}
	}
	return out
}

// Connecting another account while a poll of the first one downloads its
// images: the feed shows the new account's posts and profile only, and no
// image of the first account stays on disk.
func TestReconnectDuringAPollShowsOnlyTheNewAccount(t *testing.T) {
	fx, gm := heldAfterFirstPage(t)
	oldUser := fx.user
	done := startHeldPoll(t, fx, gm)

	fx.connect(fx.id, sandbox.AccountCreator)
	close(gm.release)
	if err := <-done; err != nil {
		t.Fatalf("refresh: %v", err)
	}

	b, _ := fx.sb.Account(sandbox.AccountCreator)
	want, _ := fx.sb.Posts(sandbox.AccountCreator)
	old, _ := fx.sb.Posts(sandbox.AccountBusiness)
	d := fx.doc(t, "limit=100")
	if d.Account == nil || d.Account.Username != b.Username || d.Account.Avatar == nil {
		t.Fatalf("account after the reconnect: %+v, want %s with an avatar", d.Account, b.Username)
	}
	if len(d.Posts) != len(want) {
		t.Errorf("%d posts, want the new account's %d", len(d.Posts), len(want))
	}
	for _, p := range d.Posts {
		if slices.ContainsFunc(old, func(o sandbox.Post) bool { return o.ID == p.ID }) {
			t.Fatalf("post %s of %s shown after connecting %s", p.ID, oldUser, b.Username)
		}
	}
	if f := fx.feed(); f.Account == nil || f.Account.Username != b.Username || f.PostCount != len(want) {
		t.Errorf("stored feed: %+v", f)
	}
	// Every file on disk is one the feed shows.
	shown := fx.filesOf(t, d)
	for _, f := range fx.mediaFiles() {
		if !shown[f] {
			t.Errorf("file %s left on disk; the feed does not show it", f)
		}
	}
}

// Meta's data deletion during a poll: the poll's late writes bring nothing
// back and leave no image on disk.
func TestDataDeletionDuringAPollLeavesNothing(t *testing.T) {
	fx, gm := heldAfterFirstPage(t)
	done := startHeldPoll(t, fx, gm)

	_, files, err := fx.st.Disconnect(context.Background(), fx.id)
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.media.Remove(files); err != nil {
		t.Fatal(err)
	}
	close(gm.release)
	if err := <-done; !errors.Is(err, model.ErrNotConnected) {
		t.Errorf("refresh after the deletion: %v, want not connected", err)
	}
	fx.svc.Invalidate(fx.id)
	if d := fx.doc(t, ""); d.Account != nil || len(d.Posts) != 0 {
		t.Errorf("feed after the deletion: %+v", d)
	}
	if f := fx.feed(); f.Status != model.StatusNotConnected || f.Account != nil || f.PostCount != 0 {
		t.Errorf("stored feed after the deletion: %+v", f)
	}
	if files := fx.mediaFiles(); len(files) != 0 {
		t.Errorf("%d images left on disk after the deletion, e.g. %s", len(files), files[0])
	}
}

// failingSave fails ReplacePosts while fail is set, as a busy or broken
// database would.
type failingSave struct {
	*store.Store
	fail atomic.Bool
}

var errLocked = errors.New("store: replace posts: database is locked (5) (SQLITE_BUSY)")

func (s *failingSave) ReplacePosts(ctx context.Context, feedID string, gen int64, acct *model.Account, posts []model.Post, at time.Time) ([]string, error) {
	if s.fail.Load() {
		return nil, errLocked
	}
	return s.Store.ReplacePosts(ctx, feedID, gen, acct, posts, at)
}

// A poll whose snapshot cannot be saved is a failed poll: recorded with its
// reason and a backoff, the previous snapshot served stale, and not tried
// again on every scheduler round.
func TestFailedSaveIsRecordedWithBackoff(t *testing.T) {
	fs := &failingSave{}
	fx := sampleEnv(t, envOptions{store: func(st *store.Store) Store { fs.Store = st; return fs }})
	if err := fx.fetchNow(); err != nil {
		t.Fatal(err)
	}
	fs.fail.Store(true)
	fx.clock.Add(16 * time.Minute)
	if err := fx.fetchNow(); err == nil {
		t.Fatal("a poll whose snapshot could not be saved succeeded")
	}
	f := fx.feed()
	if f.LastFetchOK || f.FetchFailures != 1 || !f.NextFetchAt.After(fx.clock.Now()) || !strings.Contains(f.LastFetchError, "save") {
		t.Fatalf("failed save recorded as ok %v, failures %d, next in %v, error %q; want a failure with backoff",
			f.LastFetchOK, f.FetchFailures, f.NextFetchAt.Sub(fx.clock.Now()), f.LastFetchError)
	}
	if d := fx.doc(t, ""); !d.Stale || len(d.Posts) != 5 {
		t.Errorf("after a failed save: stale %v, %d posts; want the previous 5, stale", d.Stale, len(d.Posts))
	}
	calls := fx.calls(sandbox.EndpointMedia)
	for range 20 {
		fx.svc.pollDue(context.Background())
	}
	if n := fx.calls(sandbox.EndpointMedia) - calls; n != 0 {
		t.Fatalf("%d Graph calls from scheduler rounds during the backoff", n)
	}
	fs.fail.Store(false)
	fx.clock.Add(time.Hour)
	fx.svc.pollDue(context.Background())
	if f := fx.feed(); !f.LastFetchOK || fx.calls(sandbox.EndpointMedia) != calls+1 {
		t.Fatalf("not polled again after the backoff: ok %v", f.LastFetchOK)
	}
}

// A feed that was never fetched starts one poll, whatever the visitors ask
// and whenever they ask, even after that poll failed to save.
func TestNeverFetchedFeedStartsOneFetch(t *testing.T) {
	fs := &failingSave{}
	fs.fail.Store(true)
	fx := newEnv(t, envOptions{store: func(st *store.Store) Store { fs.Store = st; return fs }})
	queries := []string{"", "limit=5", "type=image", "limit=7&type=video", "limit=100"}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fx.doc(t, queries[i%len(queries)])
		}()
	}
	wg.Wait()
	eventually(t, "the failed first poll in last_fetch", func() bool { return !fx.feed().LastFetchAt.IsZero() })
	for i := range 50 {
		fx.svc.Invalidate(fx.id)
		fx.doc(t, queries[i%len(queries)])
		fx.doc(t, "limit="+strconv.Itoa(1+i))
	}
	fx.svc.Close() // waits for any fetch still running
	if n := fx.calls(sandbox.EndpointMedia); n != 1 {
		t.Fatalf("%d Graph media calls for a feed that was never fetched, want 1", n)
	}
	if f := fx.feed(); f.LastFetchOK || f.LastFetchError == "" {
		t.Errorf("the failed first poll is not in last_fetch: ok %v %q", f.LastFetchOK, f.LastFetchError)
	}
}

// diskFull fails to store images while full is set, as a full disk would.
type diskFull struct {
	Media
	full atomic.Bool
}

func (m *diskFull) Fetch(ctx context.Context, rawURL string) (model.Media, error) {
	if m.full.Load() {
		return model.Media{}, fmt.Errorf("media: store %s: %w", pathOf(rawURL),
			&fs.PathError{Op: "write", Path: "ab/.tmp-123", Err: syscall.ENOSPC})
	}
	return m.Media.Fetch(ctx, rawURL)
}

// Images that cannot be stored on feedd's own disk fail the poll: the owner
// sees why, the previous snapshot is served, the poll backs off.
func TestImageStorageErrorFailsThePoll(t *testing.T) {
	df := &diskFull{}
	fx := sampleEnv(t, envOptions{media: func(m Media) Media { df.Media = m; return df }})
	if err := fx.fetchNow(); err != nil {
		t.Fatal(err)
	}
	fx.addPost("106", sandbox.PostSpec{Timestamp: ts(22)})
	df.full.Store(true)
	fx.clock.Add(16 * time.Minute)
	if err := fx.fetchNow(); err == nil {
		t.Fatal("a poll whose images could not be stored succeeded")
	}
	f := fx.feed()
	if f.LastFetchOK || !f.NextFetchAt.After(fx.clock.Now()) || !strings.Contains(f.LastFetchError, "no space left") {
		t.Fatalf("disk full recorded as ok %v, next in %v, error %q", f.LastFetchOK, f.NextFetchAt.Sub(fx.clock.Now()), f.LastFetchError)
	}
	if d := fx.doc(t, ""); !d.Stale || fx.ids(d) != "101,102,103,104,105" {
		t.Errorf("after a failed poll: stale %v, posts %s; want the previous snapshot, stale", d.Stale, fx.ids(d))
	}
}

// A poll that runs out of time while storing images is a failed poll too.
func TestFetchTimeoutIsRecorded(t *testing.T) {
	fx := newEnv(t, envOptions{
		media:   func(m Media) Media { return newGatedMedia(m, func(string) bool { return true }) },
		options: func(o *Options) { o.FetchTimeout = 100 * time.Millisecond },
	})
	if err := fx.fetchNow(); err == nil {
		t.Fatal("a poll that ran out of time succeeded")
	}
	f := fx.feed()
	if f.LastFetchAt.IsZero() || f.LastFetchOK || !f.NextFetchAt.After(fx.clock.Now()) || !strings.Contains(f.LastFetchError, "longer than") {
		t.Fatalf("timed-out poll recorded at %v, ok %v, next in %v, error %q", f.LastFetchAt, f.LastFetchOK, f.NextFetchAt.Sub(fx.clock.Now()), f.LastFetchError)
	}
}

// panics is how many panics the guard counted under where.
func panics(t *testing.T, reg *prometheus.Registry, where string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "feedd_panics_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "where" && l.GetValue() == where {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// guarded sets up a guard counting into a registry of its own.
func guarded(t *testing.T) (*prometheus.Registry, func(*Options)) {
	t.Helper()
	reg := prometheus.NewRegistry()
	g, err := guard.New(quietLogger(), reg)
	if err != nil {
		t.Fatal(err)
	}
	return reg, func(o *Options) { o.Guard = g }
}

// panickyMedia panics on downloads from one path.
type panickyMedia struct {
	Media
	path atomic.Value
}

func (m *panickyMedia) Fetch(ctx context.Context, rawURL string) (model.Media, error) {
	if p, _ := m.path.Load().(string); p != "" && pathOf(rawURL) == p {
		panic("image decoder bug")
	}
	return m.Media.Fetch(ctx, rawURL)
}

// An image whose processing panics costs that image, not the process: the
// poll stores the others and the next poll runs.
func TestPanickingImageDownloadIsContained(t *testing.T) {
	reg, withGuard := guarded(t)
	pm := &panickyMedia{}
	fx := sampleEnv(t, envOptions{options: withGuard, media: func(m Media) Media { pm.Media = m; return pm }})
	pm.path.Store(urlPath(t, fx.graphMedia()["101"].MediaURL))
	if err := fx.fetchNow(); err != nil {
		t.Fatal(err)
	}
	if got := fx.ids(fx.doc(t, "")); got != "102,103,104,105" {
		t.Fatalf("posts = %s, want every post but the one whose image panicked", got)
	}
	if n := panics(t, reg, "feed_media_download"); n != 1 {
		t.Errorf("panics counted: %v, want 1", n)
	}
	pm.path.Store("")
	fx.clock.Add(16 * time.Minute)
	fx.svc.pollDue(context.Background())
	if got := fx.ids(fx.doc(t, "")); got != "101,102,103,104,105" {
		t.Fatalf("next poll: posts = %s", got)
	}
}

// panickySave panics in ReplacePosts while armed.
type panickySave struct {
	*store.Store
	armed atomic.Bool
}

func (s *panickySave) ReplacePosts(ctx context.Context, feedID string, gen int64, acct *model.Account, posts []model.Post, at time.Time) ([]string, error) {
	if s.armed.Load() {
		panic("nil map in the snapshot writer")
	}
	return s.Store.ReplacePosts(ctx, feedID, gen, acct, posts, at)
}

// A poll that panics is a failed poll: the caller gets an error, the
// failure is recorded with backoff, and a later poll runs.
func TestPanickingPollIsRecorded(t *testing.T) {
	reg, withGuard := guarded(t)
	ps := &panickySave{}
	ps.armed.Store(true)
	fx := sampleEnv(t, envOptions{options: withGuard, store: func(st *store.Store) Store { ps.Store = st; return ps }})
	if err := fx.fetchNow(); err == nil {
		t.Fatal("a poll that panicked succeeded")
	}
	f := fx.feed()
	if f.LastFetchAt.IsZero() || f.LastFetchOK || !f.NextFetchAt.After(fx.clock.Now()) || f.LastFetchError == "" {
		t.Fatalf("panicked poll recorded at %v, ok %v, next in %v, error %q", f.LastFetchAt, f.LastFetchOK, f.NextFetchAt.Sub(fx.clock.Now()), f.LastFetchError)
	}
	if n := panics(t, reg, "feed_poll"); n != 1 {
		t.Errorf("panics counted: %v, want 1", n)
	}
	ps.armed.Store(false)
	fx.clock.Add(time.Hour)
	fx.svc.pollDue(context.Background())
	if d := fx.doc(t, ""); len(d.Posts) != 5 || d.Stale {
		t.Fatalf("next poll: %d posts, stale %v", len(d.Posts), d.Stale)
	}
}

// panickyDue panics the first time the poller lists due feeds.
type panickyDue struct {
	*store.Store
	calls atomic.Int32
}

func (s *panickyDue) DueFeeds(ctx context.Context, now, viewedSince time.Time) ([]model.Feed, error) {
	if s.calls.Add(1) == 1 {
		panic("bad row")
	}
	return s.Store.DueFeeds(ctx, now, viewedSince)
}

// A panic in one round of the poller does not stop it: the next round polls.
func TestPollerSurvivesAPanic(t *testing.T) {
	reg, withGuard := guarded(t)
	pd := &panickyDue{}
	fx := newEnv(t, envOptions{
		store:   func(st *store.Store) Store { pd.Store = st; return pd },
		options: func(o *Options) { withGuard(o); o.PollEvery = 5 * time.Millisecond },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fx.svc.Run(ctx) }()
	eventually(t, "a poll after the panicking round", func() bool { return fx.feed().LastFetchOK })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := panics(t, reg, "feed_poller"); n != 1 {
		t.Errorf("panics counted: %v, want 1", n)
	}
}

// A feed nobody viewed for 30 days is not polled; viewed again, it is polled
// at once and its JSON says stale until that poll ends.
func TestFeedViewedAgainAfterAMonthIsPolledAtOnce(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	if err := fx.fetchNow(); err != nil {
		t.Fatal(err)
	}
	if d := fx.doc(t, ""); d.Stale || len(d.Posts) != 5 {
		t.Fatalf("fresh feed: stale %v, %d posts", d.Stale, len(d.Posts))
	}
	fx.clock.Add(31 * 24 * time.Hour)
	fx.svc.pollDue(context.Background())
	polls := fx.conns.entered.Load()
	if polls != 1 {
		t.Fatalf("a feed nobody viewed for 31 days was polled")
	}
	gate := make(chan struct{})
	fx.conns.setGate(gate) // the poll stays in flight while we look
	for _, q := range []string{"", "limit=3"} {
		if d := fx.doc(t, q); !d.Stale || len(d.Posts) == 0 {
			t.Errorf("view%s after a month: stale %v, %d posts; want stale with the old posts", q, d.Stale, len(d.Posts))
		}
	}
	eventually(t, "a poll started by the view", func() bool { return fx.conns.entered.Load() > polls })
	close(gate)
	eventually(t, "a feed no longer stale after the poll", func() bool {
		d := fx.doc(t, "")
		return !d.Stale && len(d.Posts) == 5
	})
	if n := fx.calls(sandbox.EndpointMedia); n != 2 {
		t.Errorf("%d media calls, want 2 (the first poll and the one the view started)", n)
	}
}

// The token never reaches the service's log or the owner-facing error,
// whatever the poll meets.
func TestTokenNeverLogged(t *testing.T) {
	var logs testutil.SyncBuffer
	fx := sampleEnv(t, envOptions{options: func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}})
	tok, err := fx.st.Token(context.Background(), fx.id)
	if err != nil {
		t.Fatal(err)
	}
	fx.fetchNow()
	fx.sb.SetOutage(true)
	fx.clock.Add(16 * time.Minute)
	fx.fetchNow()
	fx.sb.SetOutage(false)
	fx.sb.RevokeTokens(fx.acct)
	fx.clock.Add(time.Hour)
	fx.fetchNow()
	if fx.feed().Status != model.StatusNeedsReauth || logs.String() == "" {
		t.Fatal("the revoked token was not seen")
	}
	for name, text := range map[string]string{"log": logs.String(), "last_fetch error": fx.feed().LastFetchError} {
		if strings.Contains(text, tok.AccessToken) || strings.Contains(text, "access_token=") {
			t.Errorf("the token appears in the %s:\n%s", name, text)
		}
	}
}
