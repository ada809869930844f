package doctor

import (
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/secret"
)

const (
	goodID     = "1234567890123456"
	goodSecret = "0123456789abcdef0123456789abcdef"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// feeddHealth answers like feedd's /healthz.
func feeddHealth(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func find(t *testing.T, checks []Check, id string) Check {
	t.Helper()
	for _, c := range checks {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", id, checks)
	return Check{}
}

func wantStatus(t *testing.T, c Check, status string) {
	t.Helper()
	if c.Status() != status {
		t.Fatalf("%s: status %s, want %s (detail %q, fix %q)", c.ID, c.Status(), status, c.Detail, c.Fix)
	}
	if !c.OK && c.Fix == "" {
		t.Errorf("%s: failed without a fix", c.ID)
	}
}

func TestAppID(t *testing.T) {
	tests := []struct {
		name, id, status, inDetail string
	}{
		{"numeric is ok and shown", goodID, "ok", goodID},
		{"missing fails", "", "fail", "not set"},
		{"letters fail", "my-app", "fail", "not all digits"},
		{"a secret in the id variable fails without showing it", goodSecret, "fail", "looks like an app secret"},
		{"odd length warns", "12345", "warn", "5 digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := checkAppID(tt.id)
			wantStatus(t, c, tt.status)
			if !strings.Contains(c.Detail, tt.inDetail) {
				t.Errorf("detail %q does not say %q", c.Detail, tt.inDetail)
			}
			if !c.OK && !strings.Contains(c.Fix, "FEEDD_INSTAGRAM_APP_ID") {
				t.Errorf("fix %q does not name the variable", c.Fix)
			}
			if tt.id == goodSecret && strings.Contains(c.Detail+c.Fix, goodSecret) {
				t.Error("the value that looks like a secret was shown")
			}
			if c.OK && !strings.Contains(c.Fix, "not the Meta app ID") {
				t.Errorf("ok note %q does not warn about the Meta app ID", c.Fix)
			}
		})
	}
}

func TestAppSecret(t *testing.T) {
	tests := []struct {
		name, secret, status, inDetail string
	}{
		{"32 hex is ok", goodSecret, "ok", "32 hexadecimal"},
		{"upper-case hex is ok", strings.ToUpper(goodSecret), "ok", "32 hexadecimal"},
		{"missing fails", "", "fail", "not set"},
		{"too short fails", "abc123", "fail", "6 characters"},
		{"not hex fails", "0123456789abcdef0123456789abcdeg", "fail", "32 hexadecimal"},
		{"with a space fails", goodSecret + " ", "fail", "33 characters"},
		{"the app id fails", goodID, "fail", "same as the app ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := checkAppSecret(tt.secret, goodID)
			wantStatus(t, c, tt.status)
			if !strings.Contains(c.Detail, tt.inDetail) {
				t.Errorf("detail %q does not say %q", c.Detail, tt.inDetail)
			}
			if tt.secret != "" && strings.Contains(c.Detail+c.Fix+c.Title, strings.TrimSpace(tt.secret)) {
				t.Errorf("the secret appears in %+v", c)
			}
			if !c.OK && !strings.Contains(c.Fix, "FEEDD_INSTAGRAM_APP_SECRET") {
				t.Errorf("fix %q does not name the variable", c.Fix)
			}
		})
	}
}

func TestPublicURL(t *testing.T) {
	tests := []struct{ url, status string }{
		{"https://feeds.example.com", "ok"},
		{"https://example.com/feeds", "ok"},
		{"http://localhost:8080", "ok"},
		{"http://127.0.0.1:8080", "ok"},
		{"http://127.0.0.2", "ok"},
		{"http://[::1]:8080", "ok"},
		{"http://feedd.localhost", "ok"},
		{"http://feeds.example.com", "fail"},
		{"http://192.168.1.10:8080", "fail"},
		{"http://localhost.example.com", "fail"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			c := checkPublicURL(mustURL(t, tt.url))
			wantStatus(t, c, tt.status)
			if !c.OK && !strings.Contains(c.Fix, "FEEDD_PUBLIC_URL=https://") {
				t.Errorf("fix %q does not show the https variable", c.Fix)
			}
		})
	}
	wantStatus(t, checkPublicURL(nil), "fail")
}

func TestReachable(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte("<html>Bad Gateway\x1b[31m</html>"))
	}))
	defer other.Close()
	fake200 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("welcome to my blog"))
	}))
	defer fake200.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://feeds.example.com/healthz", http.StatusMovedPermanently)
	}))
	defer redirect.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	prefixed := httptest.NewServer(http.StripPrefix("/feeds", feeddHealth(t).Config.Handler))
	defer prefixed.Close()

	tests := []struct {
		name     string
		base     string
		inServer bool
		status   string
		inDetail string
	}{
		{"feedd answers", feeddHealth(t).URL, false, "ok", "200 ok"},
		{"feedd under a path prefix", prefixed.URL + "/feeds", false, "ok", "/feeds/healthz"},
		{"another server's error", other.URL, false, "fail", "502"},
		{"another server's 200", fake200.URL, false, "fail", "not feedd"},
		{"a redirect is not followed", redirect.URL, false, "fail", "redirect to https://feeds.example.com/healthz"},
		{"nothing listening from the command line", closedURL, false, "warn", "is feedd running?"},
		{"nothing listening from inside the server", closedURL, true, "fail", "could not reach itself"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.PublicURL = mustURL(t, tt.base)
			p := probeHealth(context.Background(), Input{Config: cfg, Now: time.Now, Timeout: 2 * time.Second})
			c := checkReachable(p, tt.inServer)
			wantStatus(t, c, tt.status)
			if !strings.Contains(c.Detail, tt.inDetail) {
				t.Errorf("detail %q does not say %q", c.Detail, tt.inDetail)
			}
			if strings.ContainsRune(c.Detail, '\x1b') {
				t.Errorf("control characters from the answer reach the detail: %q", c.Detail)
			}
		})
	}
}

func TestReachableUnknownHostFails(t *testing.T) {
	// No resolver is asked: the dialer answers as one would for a typo.
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: "feeds.exmaple.com", IsNotFound: true}}
	}}}
	cfg := config.Default()
	cfg.PublicURL = mustURL(t, "https://feeds.exmaple.com")
	for _, inServer := range []bool{false, true} {
		c := find(t, Run(context.Background(), Input{Config: cfg, HTTPClient: client, InServer: inServer, Now: time.Now}), IDReachable)
		wantStatus(t, c, "fail")
		if !strings.Contains(c.Detail, "feeds.exmaple.com does not resolve") || !strings.Contains(c.Fix, "FEEDD_PUBLIC_URL") {
			t.Errorf("%+v", c)
		}
	}
}

func TestReachableTimesOut(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	cfg := config.Default()
	cfg.PublicURL = mustURL(t, slow.URL)
	p := probeHealth(context.Background(), Input{Config: cfg, Now: time.Now, Timeout: 50 * time.Millisecond})
	wantStatus(t, checkReachable(p, false), "warn")
}

func TestRedirectURIIsShownExactly(t *testing.T) {
	cfg := config.Default()
	cfg.PublicURL = mustURL(t, "https://example.com/feeds")
	c := checkRedirectURI(cfg)
	wantStatus(t, c, "ok")
	if c.Detail != "https://example.com/feeds/auth/instagram/callback" {
		t.Errorf("detail %q, want the exact redirect URI", c.Detail)
	}
}

func TestMetasCallbackURLsCarryThePathPrefix(t *testing.T) {
	cfg := config.Default()
	cfg.PublicURL = mustURL(t, "https://example.com/feeds")
	for _, tt := range []struct {
		c    Check
		want string
	}{
		{checkDeauthorizeURL(cfg), "https://example.com/feeds/auth/instagram/deauthorize"},
		{checkDataDeletionURL(cfg), "https://example.com/feeds/auth/instagram/delete"},
	} {
		wantStatus(t, tt.c, "ok")
		if tt.c.Detail != tt.want || !strings.Contains(tt.c.Fix, "/auth/") {
			t.Errorf("%s: detail %q, want %q, with the note on /auth/", tt.c.Title, tt.c.Detail, tt.want)
		}
	}
}

func TestDataDir(t *testing.T) {
	t.Run("writable dir is ok and left clean", func(t *testing.T) {
		dir := t.TempDir()
		wantStatus(t, checkDataDir(dir), "ok")
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("left %v behind", ents)
		}
	})
	t.Run("missing dir with a writable parent is ok and not created", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "b")
		c := checkDataDir(dir)
		wantStatus(t, c, "ok")
		if !strings.Contains(c.Detail, "does not exist yet") {
			t.Errorf("detail %q", c.Detail)
		}
		if _, err := os.Stat(filepath.Dir(dir)); err == nil {
			t.Error("the check created directories")
		}
	})
	t.Run("a file fails", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		os.WriteFile(f, nil, 0o600)
		wantStatus(t, checkDataDir(f), "fail")
		wantStatus(t, checkDataDir(filepath.Join(f, "sub")), "fail")
	})
	t.Run("an unwritable dir fails", func(t *testing.T) {
		if runtime.GOOS != "linux" {
			t.Skip("uses /proc, which even root cannot write in")
		}
		c := checkDataDir("/proc/self")
		wantStatus(t, c, "fail")
		if !strings.Contains(c.Fix, "FEEDD_DATA_DIR") {
			t.Errorf("fix %q does not name the variable", c.Fix)
		}
	})
	t.Run("an unwritable media dir fails", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root writes anywhere")
		}
		dir := t.TempDir()
		media := filepath.Join(dir, "media")
		os.Mkdir(media, 0o500)
		t.Cleanup(func() { os.Chmod(media, 0o700) })
		wantStatus(t, checkDataDir(dir), "fail")
	})
}

func TestSecretKey(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	tests := []struct {
		name     string
		envKey   bool
		keyFile  string // contents; "" for none
		mode     os.FileMode
		database bool
		status   string
		inDetail string
	}{
		{"FEEDD_SECRET_KEY set", true, "", 0, true, "ok", "FEEDD_SECRET_KEY is set"},
		{"generated file warns", false, key + "\n", 0o600, true, "warn", "generated key file"},
		{"file readable by others fails", false, key + "\n", 0o644, true, "fail", "mode 0644"},
		{"file with junk fails", false, "not a key\n", 0o600, true, "fail", "does not hold"},
		{"nothing yet on a fresh dir warns", false, "", 0, false, "warn", "will generate"},
		{"missing key with a database fails", false, "", 0, true, "fail", "cannot be decrypted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := config.Default()
			cfg.DataDir = dir
			if tt.envKey {
				cfg.SecretKeys = [][]byte{make([]byte, 32)}
			}
			if tt.keyFile != "" {
				p := filepath.Join(dir, secret.KeyFileName)
				if err := os.WriteFile(p, []byte(tt.keyFile), tt.mode); err != nil {
					t.Fatal(err)
				}
				os.Chmod(p, tt.mode)
			}
			if tt.database {
				os.WriteFile(filepath.Join(dir, DatabaseFile), nil, 0o600)
			}
			c := checkSecretKey(cfg)
			wantStatus(t, c, tt.status)
			if !strings.Contains(c.Detail, tt.inDetail) {
				t.Errorf("detail %q does not say %q", c.Detail, tt.inDetail)
			}
			if !c.OK && !strings.Contains(c.Fix+c.Detail, "FEEDD_SECRET_KEY") && !strings.Contains(c.Fix, "chmod 600") {
				t.Errorf("fix %q names neither the variable nor the command", c.Fix)
			}
			if strings.Contains(c.Detail+c.Fix, key) {
				t.Error("the key was shown")
			}
		})
	}
}

func TestClock(t *testing.T) {
	srv := feeddHealth(t) // net/http stamps a real Date header
	cfg := config.Default()
	cfg.PublicURL = mustURL(t, srv.URL)
	tests := []struct {
		name   string
		shift  time.Duration
		status string
	}{
		{"in sync", 0, "ok"},
		{"4 minutes off is tolerated", 4 * time.Minute, "ok"},
		{"10 minutes ahead fails", 10 * time.Minute, "fail"},
		{"an hour behind fails", -time.Hour, "fail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := func() time.Time { return time.Now().Add(tt.shift) }
			c := find(t, Run(context.Background(), Input{Config: cfg, Now: now}), IDClock)
			wantStatus(t, c, tt.status)
			if !c.OK && !strings.Contains(c.Detail, "ahead of") == (tt.shift > 0) {
				t.Errorf("detail %q gets the direction wrong", c.Detail)
			}
		})
	}
	t.Run("unreachable is skipped as ok", func(t *testing.T) {
		c := checkClock(probe{err: context.DeadlineExceeded}, time.Now)
		wantStatus(t, c, "ok")
		if !strings.Contains(c.Detail, "not checked") {
			t.Errorf("detail %q", c.Detail)
		}
	})
	t.Run("no Date header is skipped as ok", func(t *testing.T) {
		wantStatus(t, checkClock(probe{status: 200, body: "ok"}, time.Now), "ok")
	})
}

func TestRunAllGreenAndNeverShowsSecrets(t *testing.T) {
	srv := feeddHealth(t)
	dir := t.TempDir()
	cfg := config.Default()
	cfg.PublicURL = mustURL(t, srv.URL)
	cfg.DataDir = dir
	cfg.InstagramAppID = goodID
	cfg.InstagramAppSecret = goodSecret
	cfg.SecretKeys = [][]byte{[]byte("0123456789abcdef0123456789abcdef")}
	cfg.AdminToken = "admin-token-never-shown"

	checks := Checker(Input{Config: cfg})(context.Background())
	wantIDs := []string{IDAppID, IDAppSecret, IDPublicURL, IDReachable, IDRedirectURI, IDDeauthorize, IDDataDeletion, IDDataDir, IDSecretKey, IDClock}
	if len(checks) != len(wantIDs) {
		t.Fatalf("%d checks, want %d", len(checks), len(wantIDs))
	}
	for i, c := range checks {
		if c.ID != wantIDs[i] {
			t.Errorf("check %d is %s, want %s", i, c.ID, wantIDs[i])
		}
		if !c.OK {
			t.Errorf("%s: %s — %s / %s", c.Status(), c.Title, c.Detail, c.Fix)
		}
		all := c.Title + c.Detail + c.Fix
		for _, s := range []string{goodSecret, "admin-token-never-shown", "0123456789abcdef0123456789abcdef"} {
			if strings.Contains(all, s) {
				t.Errorf("%s shows a secret: %q", c.ID, all)
			}
		}
	}
	if Failed(checks) {
		t.Error("Failed is true for all-green checks")
	}
}

func TestFailed(t *testing.T) {
	if Failed([]Check{{OK: true}, {Severity: Warn}}) {
		t.Error("a warning counts as failed")
	}
	if !Failed([]Check{{OK: true}, {Severity: Fail}}) {
		t.Error("a failure does not count")
	}
	if (Check{}).Status() != "fail" {
		t.Error("a failed check without a severity is not a failure")
	}
}
