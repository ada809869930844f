package demo

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/feed"
	"github.com/feedd/feedd/internal/sandbox"
)

// startDemo runs the demo on a free loopback port and returns its base URL
// once the demo feed has posts.
func startDemo(t *testing.T, dataDir string, extraEnv ...string) (string, func()) {
	base, _, stop := startDemoSandbox(t, dataDir, extraEnv...)
	return base, stop
}

// startDemoSandbox is startDemo that also hands back the demo's sandbox.
func startDemoSandbox(t *testing.T, dataDir string, extraEnv ...string) (string, *sandbox.Sandbox, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var sb *sandbox.Sandbox
	env := map[string]string{"FEEDD_ADDR": "127.0.0.1:0"}
	for i := 0; i+1 < len(extraEnv); i += 2 {
		env[extraEnv[i]] = extraEnv[i+1]
	}
	go func() {
		done <- Run(ctx, Options{
			DataDir: dataDir,
			Env:     func(k string) (string, bool) { v, ok := env[k]; return v, ok },
			Stdout:  io.Discard,
			Ready:   func(base string) { ready <- base },
			Sandbox: func(s *sandbox.Sandbox) { sb = s },
		})
	}()
	var base string
	select {
	case base = <-ready:
	case err := <-done:
		t.Fatalf("demo stopped before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("demo not ready after 60s")
	}
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo stopped with %v", err)
		}
	}
	return base, sb, stop
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

var feedIDRE = regexp.MustCompile(`data-feedd="([a-z0-9]+)"`)

func TestDemoServesAConnectedFeed(t *testing.T) {
	base, stop := startDemo(t, "")
	defer stop()
	c := &http.Client{Timeout: 10 * time.Second}

	resp, page := get(t, c, base+"/")
	if resp.StatusCode != 200 || !strings.Contains(page, "sandbox data") || !strings.Contains(page, base+"/widget.js") {
		t.Fatalf("front page: %d, labelled sandbox and with the widget? %q", resp.StatusCode, page)
	}
	m := feedIDRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("front page embeds no feed")
	}
	resp, body := get(t, c, base+"/api/v1/feeds/"+m[1])
	if resp.StatusCode != 200 {
		t.Fatalf("feed JSON: %d %s", resp.StatusCode, body)
	}
	var d feed.Doc
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Posts) < feed.FirstPublish || d.Account == nil || d.Account.Username != "sandbox_bakery" {
		t.Fatalf("demo feed: %d posts, account %+v", len(d.Posts), d.Account)
	}
	// Every picture is feedd's own copy, served from its /media.
	for _, p := range d.Posts {
		for _, im := range p.Images {
			if !strings.HasPrefix(im.URL, base+"/media/") {
				t.Fatalf("post %s: image %s is not served by feedd", p.ID, im.URL)
			}
		}
	}
	img := d.Posts[0].Images[0]
	resp, _ = get(t, c, img.URL)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("image: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp, frag := get(t, c, base+"/feeds/"+m[1]+".html")
	if resp.StatusCode != 200 || !strings.Contains(frag, base+"/media/") {
		t.Fatalf("fragment: %d", resp.StatusCode)
	}
}

var (
	csrfRE    = regexp.MustCompile(`name="_csrf" value="([^"]+)"`)
	feedURLRE = regexp.MustCompile(`/setup/feeds/([a-z0-9]+)`)
)

// The way a visitor of the demo connects a second sandbox account: the
// setup page, a new feed, Connect, the sandbox's consent screen, Allow.
func TestDemoConnectsASecondAccountThroughTheConsentPage(t *testing.T) {
	base, stop := startDemo(t, "")
	defer stop()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}

	resp, page := get(t, c, base+"/demo/setup")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Request.URL.Path, "/setup") {
		t.Fatalf("setup link ended on %s with %d", resp.Request.URL, resp.StatusCode)
	}
	tok := csrfRE.FindStringSubmatch(page)
	if tok == nil {
		t.Fatalf("setup page has no CSRF field: %s", page)
	}
	// The real server's guards: a form without its CSRF token and the admin
	// API without a credential change nothing.
	resp, err := c.PostForm(base+"/setup/feeds", url.Values{"name": {"Forged"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("form without CSRF token: %d, want 403", resp.StatusCode)
	}
	resp, _ = get(t, http.DefaultClient, base+"/api/admin/feeds")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("admin API without credential: %d, want 401", resp.StatusCode)
	}
	if _, page := get(t, c, base+"/setup"); strings.Contains(page, "Forged") {
		t.Fatal("a forged form created a feed")
	}
	resp, err = c.PostForm(base+"/setup/feeds", url.Values{"_csrf": {tok[1]}, "name": {"Studio"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fm := feedURLRE.FindStringSubmatch(resp.Request.URL.Path)
	if resp.StatusCode != 200 || fm == nil {
		t.Fatalf("create feed: %d at %s: %s", resp.StatusCode, resp.Request.URL, b)
	}
	id := fm[1]
	tok = csrfRE.FindStringSubmatch(string(b))

	// Connect: feedd answers with a redirect to the sandbox's consent page.
	resp, err = c.PostForm(base+"/setup/feeds/"+id+"/connect", url.Values{"_csrf": {tok[1]}})
	if err != nil {
		t.Fatal(err)
	}
	consent, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Request.URL.String(), base+SandboxPath+"/") || !strings.Contains(string(consent), "not Instagram") {
		t.Fatalf("connect ended on %s (%d)", resp.Request.URL, resp.StatusCode)
	}
	form := url.Values{"decision": {"allow"}, "account": {"sandbox_studio"}}
	for _, m := range regexp.MustCompile(`type="hidden" name="([a-z_]+)" value="([^"]*)"`).FindAllStringSubmatch(string(consent), -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	action := regexp.MustCompile(`<form method="post" action="([^"]+)"`).FindStringSubmatch(string(consent))
	resp, err = c.PostForm(html.UnescapeString(action[1]), form)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/setup/feeds/"+id {
		t.Fatalf("after Allow: %d at %s: %s", resp.StatusCode, resp.Request.URL, b)
	}
	if !strings.Contains(string(b), "sandbox_studio") {
		t.Fatal("feed page does not show the connected account")
	}
}

// A demo kept in a data dir comes back with its feed, without a second
// connect.
func TestDemoRestartsOnItsDataDir(t *testing.T) {
	dir := t.TempDir()
	base, stop := startDemo(t, dir)
	_, page := get(t, http.DefaultClient, base+"/")
	first := feedIDRE.FindStringSubmatch(page)
	stop()
	if _, err := os.Stat(dir + "/feedd.db"); err != nil {
		t.Fatal(err)
	}
	const admin = "demo-admin-token-for-the-restart-test"
	base, stop = startDemo(t, dir, "FEEDD_ADMIN_TOKEN", admin)
	defer stop()
	_, page = get(t, http.DefaultClient, base+"/")
	if again := feedIDRE.FindStringSubmatch(page); first == nil || again == nil || again[1] != first[1] {
		t.Fatalf("feed after restart %v, before %v", again, first)
	}
	// The sandbox of the new run still honours the token of the old one:
	// a poll now succeeds and the feed stays connected.
	req, _ := http.NewRequest(http.MethodPost, base+"/api/admin/feeds/"+first[1]+"/refresh", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Status    string `json:"status"`
		LastFetch struct {
			OK bool `json:"ok"`
		} `json:"last_fetch"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || st.Status != "active" || !st.LastFetch.OK {
		t.Fatalf("refresh after restart: %d %+v %v", resp.StatusCode, st, err)
	}
}
