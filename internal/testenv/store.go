// Package testenv builds what the connection, owner and server test
// suites run on: the real store in a temp dir with failures a test
// switches on, the sandbox on loopback with a Graph client on it, stand-ins
// for the media files and the feed service, a log sink scanned for
// secrets, and requests to a server's owner routes. Tests only: no
// production package imports it.
//
// It is apart from internal/testutil because it imports the store, the
// sandbox and the Graph client, whose own tests use testutil.
package testenv

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

// ErrInjected is the failure FaultStore returns.
var ErrInjected = errors.New("test: injected failure")

// Store opens a fresh SQLite store in a temp dir, as feedd does.
func Store(t testing.TB, now func() time.Time) *store.Store {
	t.Helper()
	return StoreAt(t, filepath.Join(t.TempDir(), "feedd.db"), now)
}

// StoreAt opens a fresh SQLite store at path, closed when the test ends.
func StoreAt(t testing.TB, path string, now func() time.Time) *store.Store {
	t.Helper()
	box, err := secret.New(bytes.Repeat([]byte{7}, secret.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(context.Background(), path, box, store.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Op names a store method that FaultStore can fail.
type Op string

// The store methods FaultStore can fail.
const (
	OpConnect              Op = "Connect"
	OpReplaceToken         Op = "ReplaceToken"
	OpRecordRefreshFailure Op = "RecordRefreshFailure"
	OpAddSource            Op = "AddSource"
)

// FaultStore is the real store with failures a test switches on.
type FaultStore struct {
	*store.Store
	mu   sync.Mutex
	fail map[Op]int
}

// Fail makes the next n calls of op fail with ErrInjected.
func (f *FaultStore) Fail(op Op, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail == nil {
		f.fail = map[Op]int{}
	}
	f.fail[op] = n
}

// failing takes one of op's pending failures.
func (f *FaultStore) failing(op Op) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[op] > 0 {
		f.fail[op]--
		return true
	}
	return false
}

// Connect is the store's, unless a failure is pending.
func (f *FaultStore) Connect(ctx context.Context, feedID string, gen int64, acct model.Account, tok model.Token) (model.Feed, []string, error) {
	if f.failing(OpConnect) {
		return model.Feed{}, nil, ErrInjected
	}
	return f.Store.Connect(ctx, feedID, gen, acct, tok)
}

// ReplaceToken is the store's, unless a failure is pending.
func (f *FaultStore) ReplaceToken(ctx context.Context, feedID, old string, nt model.Token) error {
	if f.failing(OpReplaceToken) {
		return ErrInjected
	}
	return f.Store.ReplaceToken(ctx, feedID, old, nt)
}

// RecordRefreshFailure is the store's, unless a failure is pending.
func (f *FaultStore) RecordRefreshFailure(ctx context.Context, feedID, errText string, nextAt time.Time) error {
	if f.failing(OpRecordRefreshFailure) {
		return ErrInjected
	}
	return f.Store.RecordRefreshFailure(ctx, feedID, errText, nextAt)
}

// AddSource is the store's, unless a failure is pending.
func (f *FaultStore) AddSource(ctx context.Context, feedID string, gen int64, newID string, acct model.Account, tok model.Token) (model.Source, error) {
	if f.failing(OpAddSource) {
		return model.Source{}, ErrInjected
	}
	return f.Store.AddSource(ctx, feedID, gen, newID, acct, tok)
}

// Files stands in for the media store and records the files removed.
type Files struct {
	mu      sync.Mutex
	removed []string
}

// Remove records files as removed.
func (f *Files) Remove(files []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, files...)
	return nil
}

// Removed lists the files removed so far.
func (f *Files) Removed() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.removed)
}

// RetryGate is a Sleep that shows the test each wait a service starts
// and ends it only when the test says so.
type RetryGate struct {
	waits   chan time.Duration
	release chan struct{}
}

// NewRetryGate returns a gate with no wait started.
func NewRetryGate() *RetryGate {
	return &RetryGate{waits: make(chan time.Duration), release: make(chan struct{})}
}

// Sleep waits until the test has seen the wait (Next) and ended it
// (Release), or until ctx ends.
func (g *RetryGate) Sleep(ctx context.Context, d time.Duration) error {
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

// Next waits for the service to start its next wait and returns its length.
func (g *RetryGate) Next(t testing.TB) time.Duration {
	t.Helper()
	select {
	case d := <-g.waits:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("the service did not retry")
		return 0
	}
}

// Release ends the wait Next returned.
func (g *RetryGate) Release() { g.release <- struct{}{} }
