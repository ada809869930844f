package owner

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/doctor"
)

// setupPageWith serves the setup routes with checks plugged in on the
// real server (whose /healthz the checks may ask) and returns the /setup page.
func setupPageWith(t *testing.T, e *env, checks func(*httptest.Server) func(context.Context) []doctor.Check) string {
	t.Helper()
	var h atomic.Pointer[http.Handler]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*h.Load()).ServeHTTP(w, r) }))
	var fn func(context.Context) []doctor.Check
	if checks != nil {
		fn = checks(srv)
	}
	s := e.newServer(slog.New(slog.DiscardHandler))
	NewHandler(e.svc, HTTPOptions{Checks: fn}).RegisterSetup(s.Setup())
	hh := s.Handler()
	h.Store(&hh)
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/setup", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /setup: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

func TestSetupPageShowsEachCheckWithItsFix(t *testing.T) {
	e := newEnv(t)
	page := setupPageWith(t, e, func(*httptest.Server) func(context.Context) []doctor.Check {
		return func(context.Context) []doctor.Check {
			return []doctor.Check{
				{ID: "app_id", Title: "Instagram app ID", OK: true, Detail: "1234567890123456"},
				{ID: "reachable", Title: "Public URL reaches this feedd", Severity: doctor.Fail,
					Detail: `answered 502 "<script>alert(1)</script>"`, Fix: "Check FEEDD_PUBLIC_URL & the proxy."},
				{ID: "secret_key", Title: "Token encryption key", Severity: doctor.Warn, Detail: "generated key file", Fix: "Back it up."},
			}
		}
	})
	for _, want := range []string{
		`<h2 id="check-h">Setup check</h2>`,
		`<li class="check check-ok" data-check="app_id">`,
		`<span class="check-state">OK</span> <strong>Instagram app ID</strong>`,
		`<li class="check check-fail" data-check="reachable">`,
		`<span class="check-state">Problem</span>`,
		`&lt;script&gt;alert(1)&lt;/script&gt;`,
		`<span class="hint">Check FEEDD_PUBLIC_URL &amp; the proxy.</span>`,
		`<li class="check check-warn" data-check="secret_key">`,
		`<span class="check-state">Warning</span>`,
		`The setup check found a problem: <a href="#setup-check">see below</a>.`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("setup page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>") {
		t.Error("a check's detail reached the page unescaped")
	}
	if strings.Contains(page, " style=") || strings.Contains(page, "<style") {
		t.Error("inline style on the page (CSP forbids it)")
	}
}

func TestSetupPageWithoutChecksHasNoSection(t *testing.T) {
	e := newEnv(t)
	page := setupPageWith(t, e, nil)
	if strings.Contains(page, "Setup check") || strings.Contains(page, "setup-check") {
		t.Error("a setup check section without checks")
	}
	page = setupPageWith(t, e, func(*httptest.Server) func(context.Context) []doctor.Check {
		return func(context.Context) []doctor.Check {
			return []doctor.Check{{ID: "app_id", Title: "Instagram app ID", OK: true, Detail: "1"}}
		}
	})
	if !strings.Contains(page, "Setup check") || strings.Contains(page, `role="alert"`) {
		t.Error("all-green checks: section missing, or a problem announced")
	}
}

// The real checks, run by the page against its own server: the page's
// request to /healthz goes back to the same server while it renders.
func TestSetupPageRunsTheRealChecks(t *testing.T) {
	e := newEnv(t)
	const appSecret = "0123456789abcdef0123456789abcdef"
	page := setupPageWith(t, e, func(srv *httptest.Server) func(context.Context) []doctor.Check {
		cfg := config.Default()
		cfg.PublicURL, _ = url.Parse(srv.URL)
		cfg.DataDir = t.TempDir()
		cfg.InstagramAppID = "1234567890123456"
		cfg.InstagramAppSecret = appSecret
		return doctor.Checker(doctor.Input{Config: cfg, InServer: true})
	})
	for _, want := range []string{
		`<li class="check check-ok" data-check="reachable">`,
		`<li class="check check-ok" data-check="app_secret">`,
		`<li class="check check-warn" data-check="secret_key">`,
		`/auth/instagram/callback</span>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("setup page lacks %q", want)
		}
	}
	if strings.Contains(page, appSecret) {
		t.Error("the app secret is on the page")
	}
}
