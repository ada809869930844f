package auth

import (
	"context"
	"errors"
	"fmt"
	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/testutil"
	"slices"
	"sync"
	"time"
)

type clock = testutil.Clock

func newClock() *clock { return &clock{T: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)} }

// memStore is an in-memory Store with the semantics internal/store promises.
type memStore struct {
	mu        sync.Mutex
	n         int
	feeds     map[string]*memFeed
	states    map[string]*memState
	deletions map[string]DeletionRequest
	// connectErr, when set, makes Connect fail (nothing stored).
	connectErr error
	calls      map[string]int
}

type memFeed struct {
	rec   FeedRecord
	tok   *Token
	files []string
}

type memState struct {
	st   OAuthState
	used bool
}

func newMemStore() *memStore {
	return &memStore{feeds: map[string]*memFeed{}, states: map[string]*memState{}, deletions: map[string]DeletionRequest{}, calls: map[string]int{}}
}

func (m *memStore) snapshot(f *memFeed) FeedRecord {
	r := f.rec
	r.AllowedOrigins = slices.Clone(r.AllowedOrigins)
	if r.Account != nil {
		a := *r.Account
		r.Account = &a
	}
	if f.tok != nil {
		t := f.tok.TokenMeta
		r.Token = &t
	}
	return r
}

func (m *memStore) CreateFeed(_ context.Context, name string, origins []string) (FeedRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	id := fmt.Sprintf("feed%06d", m.n)
	m.feeds[id] = &memFeed{rec: FeedRecord{ID: id, Name: name, AllowedOrigins: slices.Clone(origins), Status: StatusNotConnected}}
	return m.snapshot(m.feeds[id]), nil
}

func (m *memStore) Feed(_ context.Context, id string) (FeedRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.feeds[id]
	if !ok {
		return FeedRecord{}, ErrNotFound
	}
	return m.snapshot(f), nil
}

func (m *memStore) Feeds(_ context.Context) ([]FeedRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []FeedRecord
	for _, f := range m.feeds {
		out = append(out, m.snapshot(f))
	}
	slices.SortFunc(out, func(a, b FeedRecord) int { return cmpString(a.ID, b.ID) })
	return out, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (m *memStore) UpdateFeed(_ context.Context, id string, name *string, origins *[]string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.feeds[id]
	if !ok {
		return ErrNotFound
	}
	if name != nil {
		f.rec.Name = *name
	}
	if origins != nil {
		f.rec.AllowedOrigins = slices.Clone(*origins)
	}
	return nil
}

func (m *memStore) DeleteFeed(_ context.Context, id string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.feeds[id]
	if !ok {
		return nil, ErrNotFound
	}
	delete(m.feeds, id)
	return f.files, nil
}

func (m *memStore) SetStatus(_ context.Context, id, status, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.feeds[id]
	if !ok {
		return ErrNotFound
	}
	f.rec.Status, f.rec.StatusReason = status, reason
	return nil
}

func (m *memStore) Connect(_ context.Context, id string, acct Account, tok Token) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls["connect"]++
	if m.connectErr != nil {
		return nil, m.connectErr
	}
	f, ok := m.feeds[id]
	if !ok {
		return nil, ErrNotFound
	}
	var files []string
	if f.rec.Account != nil && f.rec.Account.IGUserID != acct.IGUserID {
		files, f.files, f.rec.PostCount = f.files, nil, 0
	}
	f.rec.Account, f.tok = &acct, &tok
	f.rec.Status, f.rec.StatusReason = StatusActive, ""
	return files, nil
}

func (m *memStore) Disconnect(_ context.Context, id string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.feeds[id]
	if !ok {
		return nil, ErrNotFound
	}
	files := f.files
	f.files, f.tok, f.rec.Account = nil, nil, nil
	f.rec.Status, f.rec.StatusReason, f.rec.PostCount = StatusNotConnected, "", 0
	return files, nil
}

func (m *memStore) Token(_ context.Context, id string) (Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.feeds[id]
	if !ok {
		return Token{}, ErrNotFound
	}
	if f.tok == nil {
		return Token{}, ErrNoToken
	}
	return *f.tok, nil
}

func (m *memStore) ReplaceToken(_ context.Context, id, old string, tok Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.feeds[id]
	if !ok {
		return ErrNotFound
	}
	if f.tok == nil || f.tok.AccessToken != old {
		return ErrTokenChanged
	}
	f.tok = &tok
	return nil
}

func (m *memStore) RecordRefreshFailure(_ context.Context, id, msg string, next time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.feeds[id]
	if !ok || f.tok == nil {
		return ErrNotFound
	}
	f.tok.RefreshFailures++
	f.tok.LastRefreshError, f.tok.NextRefreshAt = msg, next
	return nil
}

func (m *memStore) TokensDue(_ context.Context, now time.Time, window time.Duration) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for id, f := range m.feeds {
		t := f.tok
		if t == nil {
			continue
		}
		if (!t.NextRefreshAt.IsZero() && !now.Before(t.NextRefreshAt)) ||
			(now.Sub(t.ObtainedAt) >= 24*time.Hour && t.ExpiresAt.Sub(now) < window) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (m *memStore) FeedsForInstagramUser(_ context.Context, uid string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for id, f := range m.feeds {
		if a := f.rec.Account; a != nil && (a.AppUserID == uid || a.IGUserID == uid) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (m *memStore) CreateState(_ context.Context, st OAuthState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.states[string(st.Hash)] = &memState{st: st}
	return nil
}

func (m *memStore) ConsumeState(_ context.Context, hash []byte, now time.Time) (OAuthState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.states[string(hash)]
	switch {
	case !ok:
		return OAuthState{}, ErrStateNotFound
	case s.used:
		return OAuthState{}, ErrStateUsed
	case !now.Before(s.st.ExpiresAt):
		return OAuthState{}, ErrStateExpired
	}
	s.used = true
	return s.st, nil
}

func (m *memStore) CreateDeletionRequest(_ context.Context, r DeletionRequest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deletions[r.Code] = r
	return nil
}

func (m *memStore) DeletionRequest(_ context.Context, code string) (DeletionRequest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.deletions[code]
	if !ok {
		return DeletionRequest{}, ErrNotFound
	}
	return r, nil
}

func (m *memStore) CompleteDeletionRequest(_ context.Context, code string, at time.Time, n int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.deletions[code]
	if !ok {
		return ErrNotFound
	}
	r.CompletedAt, r.FeedsAffected = at, n
	m.deletions[code] = r
	return nil
}

// setFetched pretends the poller stored posts and files.
func (m *memStore) setFetched(id string, at time.Time, ok bool, files ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.feeds[id]
	f.rec.LastFetchAt, f.rec.LastFetchOK = at, ok
	f.files = append(f.files, files...)
	f.rec.PostCount = len(f.files)
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

type fakeInval struct {
	mu  sync.Mutex
	ids []string
}

func (f *fakeInval) Invalidate(id string) {
	f.mu.Lock()
	f.ids = append(f.ids, id)
	f.mu.Unlock()
}

type fakeFetcher struct {
	store *memStore
	now   func() time.Time
	err   error
	calls int
	mu    sync.Mutex
}

func (f *fakeFetcher) FetchNow(_ context.Context, id string) error {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	f.store.setFetched(id, f.now(), f.err == nil, "media/"+id+"-a.jpg")
	return f.err
}

type syncBuffer = testutil.SyncBuffer

var errTest = errors.New("test: injected failure")

type graphToken = graph.Token
