package app

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/feedd/feedd/internal/store"
	"github.com/feedd/feedd/internal/store/storetest"
)

// With FEEDD_DATABASE_URL the program keeps its state in PostgreSQL: it
// is ready (/readyz pings the database), leaves no SQLite file in the data
// dir, and the admin token is reset there.
func TestPostgresStore(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.DatabaseURL = storetest.PostgresURL(t)
	cfg.SecretKeys = [][]byte{bytes.Repeat([]byte{3}, 32)}
	m, err := New(context.Background(), cfg, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	running(t, m)
	resp, err := http.Get(m.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz = %d", resp.StatusCode)
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, "feedd.db*")); len(matches) > 0 {
		t.Errorf("SQLite files in the data dir: %v", matches)
	}
	old, err := m.Store.AdminTokenHash(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := ResetAdminToken(context.Background(), cfg, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if now, _ := m.Store.AdminTokenHash(context.Background()); bytes.Equal(old, now) {
		t.Error("reset-token left the stored admin token as it was")
	}
}

// A second program on the same SQLite data dir is refused with the dir
// and the holder's pid; once the first closes, the data dir is free again.
func TestSecondProgramOnTheDataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	m, err := New(context.Background(), cfg, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(context.Background(), cfg, Options{Stdout: io.Discard})
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "pid ") {
		t.Fatalf("second program: %v", err)
	}
	m.Close()
	m, err = New(context.Background(), cfg, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	m.Close()
}
