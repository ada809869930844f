package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/app"
	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/testutil"
)

const adminToken = "e2e-admin-token-0123456789abcdef"

// env is the real program (app.Main) on a loopback port, the sandbox as
// Instagram on another, and a webhook receiver on a third.
type env struct {
	t       *testing.T
	m       *app.Main
	sb      *sandbox.Sandbox
	clock   *testutil.Clock
	dataDir string
	logs    *testutil.SyncBuffer
	hooks   *hookSink
}

type envOptions struct {
	clock *testutil.Clock // nil: a clock starting now
}

func start(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, clock: o.clock, dataDir: t.TempDir(), logs: &testutil.SyncBuffer{}, hooks: &hookSink{}}
	if e.clock == nil {
		e.clock = testutil.NewClock(time.Now().UTC().Truncate(time.Second))
	}
	e.sb = sandbox.New(sandbox.Options{Seed: 3})
	sbSrv := httptest.NewServer(e.sb)
	t.Cleanup(sbSrv.Close)
	if err := e.sb.SetBaseURL(sbSrv.URL); err != nil {
		t.Fatal(err)
	}
	hookSrv := httptest.NewServer(e.hooks)
	t.Cleanup(hookSrv.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	cfg := config.Default()
	cfg.Addr = ln.Addr().String()
	cfg.DataDir = e.dataDir
	cfg.PublicURL, _ = url.Parse(base)
	cfg.AdminToken = adminToken
	cfg.SecretKeys = [][]byte{bytes.Repeat([]byte{7}, config.KeySize)}
	cfg.InstagramAppID, cfg.InstagramAppSecret = e.sb.AppID(), e.sb.AppSecret()
	cfg.AuthorizeURL, cfg.TokenURL, cfg.GraphURL = e.sb.AuthorizeURL(), e.sb.TokenURL(), e.sb.GraphURL()
	sbURL, _ := url.Parse(sbSrv.URL)
	cfg.MediaHosts = []string{sbURL.Host}
	cfg.MediaAllowPrivate = true
	cfg.GraphRate, cfg.GraphBurst = 1000, 1000
	cfg.RateLimit = 10000
	cfg.NotifyWebhook = hookSrv.URL + "/hook"
	e.sb.AddRedirectURI(cfg.RedirectURI())

	e.m, err = app.New(context.Background(), cfg, app.Options{
		Stdout:   io.Discard,
		Logger:   slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:      e.clock.Now,
		Listener: ln,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		if t.Failed() {
			t.Logf("feedd log:\n%s", tail(e.logs.String(), 60))
		}
	})
	return e
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// do sends a request to feedd (with the admin credential for /api/admin)
// and returns the status and body.
func (e *env) do(method, path string, body any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.m.URL()+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if strings.HasPrefix(path, "/api/admin") {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// status is the part of the admin feed status the tests read.
type status struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Account *struct {
		Username string `json:"username"`
	} `json:"account"`
	LastFetch *struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	} `json:"last_fetch"`
	PostCount int `json:"post_count"`
}

func (e *env) createFeed(name string) string {
	e.t.Helper()
	code, b := e.do(http.MethodPost, "/api/admin/feeds", map[string]any{"name": name})
	if code != http.StatusCreated {
		e.t.Fatalf("create feed: %d %s", code, b)
	}
	var st status
	json.Unmarshal(b, &st)
	return st.ID
}

// paste connects feed id to the sandbox account acct with a pasted token
// old enough to refresh.
func (e *env) paste(id, acct string) {
	e.t.Helper()
	tok := e.sb.MintLongLivedToken(acct, time.Now().Add(-48*time.Hour))
	code, b := e.do(http.MethodPost, "/api/admin/feeds/"+id+"/token", map[string]any{"access_token": tok})
	if code != http.StatusOK && code != http.StatusCreated {
		e.t.Fatalf("paste token for %s: %d %s", acct, code, b)
	}
}

func (e *env) feedStatus(id string) status {
	e.t.Helper()
	code, b := e.do(http.MethodGet, "/api/admin/feeds/"+id, nil)
	if code != http.StatusOK {
		e.t.Fatalf("feed status: %d %s", code, b)
	}
	var st status
	if err := json.Unmarshal(b, &st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

// refresh is the owner's "refresh now": it waits for a fetch of the feed.
func (e *env) refresh(id string) status {
	e.t.Helper()
	code, b := e.do(http.MethodPost, "/api/admin/feeds/"+id+"/refresh", nil)
	if code != http.StatusOK {
		e.t.Fatalf("refresh: %d %s", code, b)
	}
	var st status
	json.Unmarshal(b, &st)
	return st
}

// doc is the public feed JSON as the tests read it.
type doc struct {
	Stale   bool `json:"stale"`
	Account *struct {
		Username string `json:"username"`
		Avatar   *struct {
			URL string `json:"url"`
		} `json:"avatar"`
	} `json:"account"`
	Posts []struct {
		ID string `json:"id"`
	} `json:"posts"`
}

func (e *env) feedJSON(id, query string) (int, doc) {
	e.t.Helper()
	code, b := e.do(http.MethodGet, "/api/v1/feeds/"+id+query, nil)
	var d doc
	if code == http.StatusOK {
		if err := json.Unmarshal(b, &d); err != nil {
			e.t.Fatalf("feed JSON: %v: %s", err, b)
		}
	}
	return code, d
}

// eventually retries cond until it holds or the bound passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// postIDs is the set of the sandbox account's post ids.
func (e *env) postIDs(acct string) map[string]bool {
	e.t.Helper()
	posts, err := e.sb.Posts(acct)
	if err != nil {
		e.t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, p := range posts {
		ids[p.ID] = true
	}
	return ids
}

func (e *env) username(acct string) string {
	e.t.Helper()
	a, err := e.sb.Account(acct)
	if err != nil {
		e.t.Fatal(err)
	}
	return a.Username
}

// mediaFiles lists the stored image files in the data dir.
func (e *env) mediaFiles() []string {
	e.t.Helper()
	var files []string
	root := filepath.Join(e.dataDir, app.MediaDir)
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			files = append(files, p)
		}
		return nil
	})
	return files
}

// quiet waits until the sandbox has received no request for d (a fetch in
// flight has ended), within a bound.
func (e *env) quiet(d time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	n := len(e.sb.Calls())
	for time.Now().Before(deadline) {
		time.Sleep(d)
		m := len(e.sb.Calls())
		if m == n {
			return
		}
		n = m
	}
	e.t.Fatal("sandbox never went quiet")
}

// hookSink receives the notification webhook's events.
type hookSink struct {
	mu     sync.Mutex
	events []hookEvent
}

type hookEvent struct {
	Event  string `json:"event"`
	FeedID string `json:"feed_id"`
}

func (h *hookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var ev hookEvent
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.events = append(h.events, ev)
	h.mu.Unlock()
}

// count returns how many events named name arrived for feed.
func (h *hookSink) count(feed, name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, ev := range h.events {
		if ev.FeedID == feed && ev.Event == name {
			n++
		}
	}
	return n
}

func (h *hookSink) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprint(h.events)
}
