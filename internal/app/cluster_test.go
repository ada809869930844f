package app

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/secret"
)

// A shared database without FEEDD_SECRET_KEY stops the start with a
// message naming both variables, before anything is opened or generated:
// a key file in one instance's data dir would seal tokens the others
// cannot open.
func TestSharedDatabaseNeedsTheSecretKey(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.DatabaseURL = "postgres://feedd:hunter2-password@127.0.0.1:1/feedd"
	_, err := New(context.Background(), cfg, Options{Stdout: io.Discard})
	if !errors.Is(err, ErrSharedKeyRequired) {
		t.Fatalf("err = %v, want ErrSharedKeyRequired", err)
	}
	for _, want := range []string{"FEEDD_SECRET_KEY", "FEEDD_DATABASE_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message does not name %s: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Error("the database password is in the message")
	}
	if _, err := os.Stat(filepath.Join(dir, secret.KeyFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a key file was generated: %v", err)
	}
}

// The lease follows the fetch interval within its bounds.
func TestLeaseTTL(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	for _, tc := range []struct{ interval, want string }{{"2s", "5s"}, {"12s", "12s"}, {"15m", "30s"}} {
		cfg.FetchInterval = mustDuration(t, tc.interval)
		if got := leaseTTL(cfg); got != mustDuration(t, tc.want) {
			t.Errorf("interval %s: lease %s, want %s", tc.interval, got, tc.want)
		}
	}
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// On SQLite a start ends the claims a crashed process left, so its polls
// do not wait for them to lapse.
func TestSQLiteStartClearsClaimsOfAnEarlierProcess(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	m, err := New(ctx, cfg, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	f, err := m.Store.CreateFeed(ctx, "f", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Store.Connect(ctx, f.ID, f.Generation, model.Account{AppUserID: "1", IGUserID: "1"},
		model.Token{AccessToken: "IGAAtoken", TokenInfo: model.TokenInfo{ExpiresAt: time.Now().AddDate(0, 2, 0)}}); err != nil {
		t.Fatal(err)
	}
	if f, err = m.Store.Feed(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	if ok, err := m.Store.ClaimPoll(ctx, f.ID, "crashed", f.NextFetchAt, false, time.Now().Add(time.Hour)); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	m.Close()

	m, err = New(ctx, cfg, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if ok, err := m.Store.ClaimPoll(ctx, f.ID, "next", f.NextFetchAt, false, time.Now().Add(time.Hour)); err != nil || !ok {
		t.Errorf("the crashed process's claim still holds after a start: %v %v", ok, err)
	}
}
