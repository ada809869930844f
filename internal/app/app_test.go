package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"github.com/feedd/feedd/internal/testutil"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/store"
)

func testConfig(t *testing.T, dir string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.PublicURL, _ = url.Parse("http://feedd.test")
	return cfg
}

type syncBuffer = testutil.SyncBuffer

// running starts m and returns a stop function that shuts it down and
// returns Run's error.
func running(t *testing.T, m *Main) func() error {
	t.Helper()
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

var linkRE = regexp.MustCompile(`http://feedd\.test/setup/login\?t=[A-Za-z0-9_-]+`)

func TestFirstStartPrintsSetupURLOnce(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	logs := &syncBuffer{}
	m, err := New(context.Background(), testConfig(t, dir), Options{Stdout: &out, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	printed := out.String()
	link := linkRE.FindString(printed)
	if link == "" || strings.Count(printed, "/setup/login?t=") != 1 {
		t.Fatalf("stdout lacks one setup URL:\n%s", printed)
	}
	stop := running(t, m)

	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get(m.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
		if path == "/metrics" && !strings.Contains(string(body), "feedd_http_requests_total") {
			t.Errorf("metrics lack request counts")
		}
	}

	// The printed link signs a browser in once.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	u, _ := url.Parse(link)
	resp, err := client.Get(m.URL() + u.RequestURI())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("setup link: %d cookies %v", resp.StatusCode, resp.Cookies())
	}
	resp, err = client.Get(m.URL() + u.RequestURI())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("setup link reused: %d", resp.StatusCode)
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	token := strings.TrimPrefix(u.RawQuery, "t=")
	for _, secret := range []string{token, adminTokenFrom(printed)} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log holds a secret %q:\n%s", secret, logs)
		}
	}

	// Second start on the same data: nothing printed, same key, same token.
	out.Reset()
	m2, err := New(context.Background(), testConfig(t, dir), Options{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if out.Len() != 0 {
		t.Errorf("second start printed:\n%s", out.String())
	}
}

func adminTokenFrom(printed string) string {
	for _, line := range strings.Split(printed, "\n") {
		if l := strings.TrimSpace(line); len(l) == 43 && !strings.Contains(l, " ") {
			return l
		}
	}
	return "no-token-found"
}

func TestPrintedTokenIsTheAdminToken(t *testing.T) {
	var out bytes.Buffer
	m, err := New(context.Background(), testConfig(t, t.TempDir()), Options{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	running(t, m)
	tok := adminTokenFrom(out.String())
	for _, tt := range []struct {
		token string
		want  int
	}{{tok, 404}, {"wrong", 401}} {
		// No admin routes are registered yet: a right token reaches the
		// router (404), a wrong one stops at authentication (401).
		req, _ := http.NewRequest("GET", m.URL()+"/api/admin/nothing", nil)
		req.Header.Set("Authorization", "Bearer "+tt.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("token %q: %d, want %d", tt.token, resp.StatusCode, tt.want)
		}
	}
}

func TestAdminTokenFromConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.AdminToken = "operator-chosen-token-0123456789"
	var out bytes.Buffer
	m, err := New(context.Background(), cfg, Options{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Errorf("printed although FEEDD_ADMIN_TOKEN is set:\n%s", out.String())
	}
	h, err := m.Store.AdminTokenHash(context.Background())
	if err != nil || len(h) != 32 {
		t.Fatalf("hash %x %v", h, err)
	}
	if bytes.Contains(h, []byte(cfg.AdminToken)) {
		t.Error("token stored in the clear")
	}
	m.Close()
	if err := ResetAdminToken(context.Background(), cfg, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "FEEDD_ADMIN_TOKEN") {
		t.Errorf("reset with FEEDD_ADMIN_TOKEN set: %v", err)
	}
}

func TestResetAdminToken(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	var out bytes.Buffer
	m, err := New(context.Background(), cfg, Options{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	old, _ := m.Store.AdminTokenHash(context.Background())
	m.Close()

	out.Reset()
	if err := ResetAdminToken(context.Background(), cfg, &out, nil); err != nil {
		t.Fatal(err)
	}
	tok := adminTokenFrom(out.String())
	if tok == "no-token-found" || !linkRE.MatchString(out.String()) {
		t.Fatalf("reset printed:\n%s", out.String())
	}
	m, err = New(context.Background(), cfg, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	now, _ := m.Store.AdminTokenHash(context.Background())
	if bytes.Equal(old, now) {
		t.Error("token hash unchanged")
	}
	if err := ResetAdminToken(context.Background(), testConfig(t, t.TempDir()), io.Discard, nil); err == nil || !strings.Contains(err.Error(), "no feedd database") {
		t.Errorf("reset on an empty dir: %v", err)
	}
}

func TestWrongSecretKey(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.SecretKeys = [][]byte{bytes.Repeat([]byte{1}, 32)}
	m, err := New(context.Background(), cfg, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	cfg.SecretKeys = [][]byte{bytes.Repeat([]byte{2}, 32)}
	_, err = New(context.Background(), cfg, Options{Stdout: io.Discard})
	if !errors.Is(err, store.ErrWrongKey) || !strings.Contains(err.Error(), "FEEDD_SECRET_KEY") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(cfg.SecretKeys[0])) {
		t.Error("key in error")
	}
	// The old key as a previous key opens it (rotation).
	cfg.SecretKeys = [][]byte{bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{1}, 32)}
	m, err = New(context.Background(), cfg, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatalf("rotation: %v", err)
	}
	m.Close()
}

// TestShutdownOrder: in-flight request finishes, then workers stop, then
// close hooks run, then the database closes.
func TestShutdownOrder(t *testing.T) {
	m, err := New(context.Background(), testConfig(t, t.TempDir()), Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []string
	record := func(e string) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	started, release := make(chan struct{}), make(chan struct{})
	m.Server.Echo().GET("/slow", func(c *echo.Context) error {
		close(started)
		<-release
		record("request finished")
		return c.String(200, "ok")
	})
	workerUp := make(chan struct{})
	m.AddWorker("poller", WorkerFunc(func(ctx context.Context) error {
		close(workerUp)
		<-ctx.Done()
		record("worker stopped")
		return nil
	}))
	m.OnClose(func() error {
		if err := m.Store.Ping(context.Background()); err != nil {
			t.Errorf("database closed before the close hook: %v", err)
		}
		record("close hook")
		return nil
	})
	stop := running(t, m)
	<-workerUp

	got := make(chan int, 1)
	go func() {
		resp, err := http.Get(m.URL() + "/slow")
		if err != nil {
			got <- 0
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// Wait until shutdown has begun (new connections refused) while the
	// request is still in flight.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		resp, err := http.Get(m.URL() + "/healthz")
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections after shutdown began")
		}
	}
	mu.Lock()
	early := append([]string(nil), events...)
	mu.Unlock()
	if len(early) != 0 {
		t.Errorf("stopped %v before the in-flight request finished", early)
	}
	close(release)
	if code := <-got; code != 200 {
		t.Errorf("in-flight request: %d", code)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	want := []string{"request finished", "worker stopped", "close hook"}
	if strings.Join(events, ",") != strings.Join(want, ",") {
		t.Errorf("order %v, want %v", events, want)
	}
	if err := m.Store.Ping(context.Background()); err == nil {
		t.Error("database still open after Run")
	}
}
