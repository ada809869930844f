package owner

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/secret"
	"github.com/feedd/feedd/internal/store"
)

var errTest = errors.New("test: injected failure")

// openStore opens a fresh SQLite store in a temp dir, as feedd does.
func openStore(t *testing.T, now func() time.Time) *store.Store {
	t.Helper()
	box, err := secret.New(bytes.Repeat([]byte{7}, secret.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "feedd.db"), box, store.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// faultStore is the real store with failures a test switches on.
type faultStore struct {
	*store.Store
	mu         sync.Mutex
	connectErr error // returned by Connect while set
}

func (f *faultStore) setConnectErr(err error) {
	f.mu.Lock()
	f.connectErr = err
	f.mu.Unlock()
}

func (f *faultStore) Connect(ctx context.Context, feedID string, gen int64, acct model.Account, tok model.Token) (model.Feed, []string, error) {
	f.mu.Lock()
	err := f.connectErr
	f.mu.Unlock()
	if err != nil {
		return model.Feed{}, nil, err
	}
	return f.Store.Connect(ctx, feedID, gen, acct, tok)
}

// fakeFiles records removed files.
type fakeFiles struct {
	mu      sync.Mutex
	removed []string
}

func (f *fakeFiles) Remove(files []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, files...)
	return nil
}

func (f *fakeFiles) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.removed)
}

// fakeFeeds stands in for the feed service: a fetch stores what a poll
// stores (one post with one image file, the outcome in last_fetch), and
// invalidations are recorded.
type fakeFeeds struct {
	e     *env
	mu    sync.Mutex
	err   error // the outcome of the next fetches
	calls int
	inval []string
}

func (f *fakeFeeds) FetchNow(_ context.Context, id string) error {
	f.mu.Lock()
	f.calls++
	err := f.err
	f.mu.Unlock()
	f.e.setFetched(id, f.e.clock.Now(), err == nil)
	return err
}

func (f *fakeFeeds) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *fakeFeeds) fetches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeFeeds) Invalidate(id string) {
	f.mu.Lock()
	f.inval = append(f.inval, id)
	f.mu.Unlock()
}

func (f *fakeFeeds) invalidated() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.inval)
}

// setFetched stores what a poll at `at` stores: one post with one image
// file (when it succeeded), and the poll's outcome.
func (e *env) setFetched(id string, at time.Time, ok bool) {
	e.t.Helper()
	ctx := context.Background()
	f, err := e.store.Feed(ctx, id)
	if err != nil {
		if !errors.Is(err, model.ErrNotFound) { // deleted while it was fetched
			e.t.Error(err)
		}
		return
	}
	if ok && f.Account != nil {
		key := "post:" + id
		if err := e.store.PutMedia(ctx, model.Media{Key: key, Width: 10, Height: 10,
			Variants: []model.Variant{{Width: 10, Height: 10, File: "media/" + id + "-a.jpg", Bytes: 1}}}); err != nil {
			e.t.Error(err)
			return
		}
		posts := []model.Post{{ID: "p-" + id, MediaType: model.MediaImage, Permalink: "https://www.instagram.com/p/" + id, Timestamp: at, MediaKey: key}}
		if _, err := e.store.ReplacePosts(ctx, id, f.Generation, nil, posts, at); err != nil {
			if !errors.Is(err, model.ErrConnectionChanged) { // a poll of an older connection writes nothing
				e.t.Error(err)
			}
			return
		}
	}
	r := model.FetchResult{At: at, OK: ok, NextFetchAt: at.Add(15 * time.Minute)}
	if !ok {
		r.Err, r.Failures = "Instagram could not be reached", 1
	}
	if err := e.store.RecordFetch(ctx, id, f.Generation, r); err != nil && !errors.Is(err, model.ErrConnectionChanged) {
		e.t.Error(err)
	}
}

// retryGate makes the connection service's waits visible to a test and
// lets each one end only when the test says so.
type retryGate struct {
	waits   chan time.Duration
	release chan struct{}
}

func newRetryGate() *retryGate {
	return &retryGate{waits: make(chan time.Duration), release: make(chan struct{})}
}

func (g *retryGate) sleep(ctx context.Context, d time.Duration) error {
	select {
	case g.waits <- d:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// next waits for the service to start its next wait and returns its length.
func (g *retryGate) next(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-g.waits:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("the service did not retry")
		return 0
	}
}
