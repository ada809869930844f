// Package testutil holds what many of feedd's test suites share: a
// settable clock, a log sink safe for concurrent writes, and the lookup of
// the browser for browser tests.
package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Clock is a fake clock for code that takes a Now func. Set T before use
// or build it with NewClock.
type Clock struct {
	mu sync.Mutex
	T  time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{T: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.T
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.T = c.T.Add(d)
	c.mu.Unlock()
}

// Add is Advance.
func (c *Clock) Add(d time.Duration) { c.Advance(d) }

// SyncBuffer collects log output written from several goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Chromium returns the path of the system's Chromium for browser tests, or
// skips the test when there is none, unless FEEDD_BROWSER_TESTS=1 (as CI
// sets after installing Debian's chromium) makes that a failure.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("FEEDD_BROWSER_TESTS") == "1" {
		t.Fatal("FEEDD_BROWSER_TESTS=1 but no chromium on PATH")
	}
	t.Skip("browser tests skipped: no chromium on PATH (install Debian's chromium, or set FEEDD_BROWSER_TESTS=1 to make this a failure)")
	return ""
}
