package owner

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/store"
	"github.com/feedd/feedd/internal/testenv"
)

func TestAdminAPIFeeds(t *testing.T) {
	e := newEnv(t)
	var st Status
	code := e.api("POST", "/api/admin/feeds", `{"name":"Shop","allowed_origins":["HTTPS://Shop.Example:443/"]}`, &st)
	if code != http.StatusCreated || st.ID == "" || st.Status != model.StatusNotConnected || !slices.Equal(st.AllowedOrigins, []string{"https://shop.example"}) {
		t.Fatalf("create: %d %+v", code, st)
	}
	bad := []struct{ name, method, path, body, field string }{
		{"unknown field", "POST", "/api/admin/feeds", `{"name":"x","colour":"red"}`, "colour"},
		{"no name", "POST", "/api/admin/feeds", `{"allowed_origins":[]}`, "name"},
		{"empty name", "POST", "/api/admin/feeds", `{"name":" "}`, "name"},
		{"name type", "POST", "/api/admin/feeds", `{"name":5}`, "name"},
		{"origin path", "POST", "/api/admin/feeds", `{"name":"x","allowed_origins":["https://a.example/blog"]}`, "allowed_origins[0]"},
		{"origin star", "PATCH", "/api/admin/feeds/" + st.ID, `{"allowed_origins":["*"]}`, "allowed_origins[0]"},
		{"two objects", "PATCH", "/api/admin/feeds/" + st.ID, `{"name":"a"}{"name":"b"}`, "body"},
		{"not json", "PATCH", "/api/admin/feeds/" + st.ID, `name=a`, "body"},
		{"token missing", "POST", "/api/admin/feeds/" + st.ID + "/token", `{}`, "access_token"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			var ae apiError
			if code := e.api(tt.method, tt.path, tt.body, &ae); code != http.StatusBadRequest || !strings.HasPrefix(ae.Error.Message, tt.field) {
				t.Fatalf("%d %+v: want 400 naming %q", code, ae.Error, tt.field)
			}
		})
	}
	var big apiError
	if code := e.api("POST", "/api/admin/feeds", `{"name":"`+strings.Repeat("x", 70<<10)+`"}`, &big); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %d", code)
	}
	if got := e.status(st.ID); got.Name != "Shop" || len(got.AllowedOrigins) != 1 {
		t.Fatalf("refused edits changed the feed: %+v", got)
	}

	if code := e.api("PATCH", "/api/admin/feeds/"+st.ID, `{"name":"Shop 2","allowed_origins":[]}`, &st); code != 200 || st.Name != "Shop 2" || len(st.AllowedOrigins) != 0 {
		t.Fatalf("patch: %d %+v", code, st)
	}
	if e.Feeds.Invalidations(st.ID) == 0 {
		t.Error("a PATCH did not invalidate the feed's cached answers")
	}
	var list struct{ Feeds []Status }
	if code := e.api("GET", "/api/admin/feeds", "", &list); code != 200 || len(list.Feeds) != 1 {
		t.Fatalf("list: %d %+v", code, list)
	}
	for _, p := range []string{"GET /api/admin/feeds/zzzzzzzzzz", "PATCH /api/admin/feeds/zzzzzzzzzz", "DELETE /api/admin/feeds/zzzzzzzzzz",
		"POST /api/admin/feeds/zzzzzzzzzz/connect", "POST /api/admin/feeds/zzzzzzzzzz/refresh", "DELETE /api/admin/feeds/zzzzzzzzzz/token"} {
		m, path, _ := strings.Cut(p, " ")
		body := ""
		if m == "PATCH" {
			body = `{"name":"x"}`
		}
		if code := e.api(m, path, body, nil); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, code)
		}
	}

	// Delete removes the token, the posts and their files.
	id := e.connectAPI("Doomed", sandbox.AccountBusiness)
	e.Feeds.FetchNow(context.Background(), id)
	if code := e.api("DELETE", "/api/admin/feeds/"+id, "", nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if code := e.api("GET", "/api/admin/feeds/"+id, "", nil); code != http.StatusNotFound {
		t.Fatalf("deleted feed answers %d", code)
	}
	if !slices.Contains(e.Files.Removed(), "media/"+id+"-a.jpg") {
		t.Errorf("deleting the feed left its files: removed %v", e.Files.Removed())
	}
}

func TestAdminAPIRefreshNow(t *testing.T) {
	e := newEnv(t)
	var ae apiError
	if id := e.createFeed("Unconnected").ID; e.api("POST", "/api/admin/feeds/"+id+"/refresh", "", &ae) != http.StatusConflict || ae.Error.Code != "not_connected" {
		t.Fatalf("refresh of an unconnected feed: %+v", ae)
	}
	id := e.connectAPI("Live", sandbox.AccountBusiness)
	e.settle()
	if e.Feeds.Fetches() != 1 {
		t.Fatalf("connect started %d fetches, want 1", e.Feeds.Fetches())
	}
	var st Status
	if code := e.api("POST", "/api/admin/feeds/"+id+"/refresh", "", &st); code != 200 || st.LastFetch == nil || !st.LastFetch.OK {
		t.Fatalf("refresh: %d %+v", code, st.LastFetch)
	}
	// A failed fetch is shown in last_fetch, never as a 5xx.
	e.Clock.Advance(time.Minute)
	e.Feeds.SetErr(testenv.ErrInjected)
	if code := e.api("POST", "/api/admin/feeds/"+id+"/refresh", "", &st); code != 200 || st.LastFetch == nil || st.LastFetch.OK {
		t.Fatalf("failed refresh: %d %+v", code, st.LastFetch)
	}
	if e.Feeds.Fetches() != 3 {
		t.Fatalf("fetcher called %d times, want 3 (connect, two refreshes)", e.Feeds.Fetches())
	}
	// Through the setup page: back to the feed page with the failure as a flash.
	resp, _ := e.post("/setup/feeds/"+id+"/refresh", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup/feeds/"+id {
		t.Fatalf("setup refresh: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, body := e.get(e.srv.URL + "/setup/feeds/" + id); !strings.Contains(body, "Fetching failed") {
		t.Fatalf("no failure flash:\n%s", body)
	}

	noFetch := newEnv(t)
	noFetch.noFeeds = true
	noFetch.start()
	id = noFetch.connectAPI("NoFetcher", sandbox.AccountBusiness)
	if code := noFetch.api("POST", "/api/admin/feeds/"+id+"/refresh", "", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("without a fetcher: %d", code)
	}
}

var formRE = regexp.MustCompile(`(?s)<form method="post" action="([^"]+)">(.*?)</form>`)

// TestSetupPagesEscapeAndCarryCSRF renders the pages with hostile names
// from the owner and from Instagram: nothing is interpreted as markup,
// and every form carries the session's CSRF token.
func TestSetupPagesEscapeAndCarryCSRF(t *testing.T) {
	e := newEnv(t)
	const evil = `<script>alert(1)</script>"><img src=x onerror=alert(2)>`
	resp, _ := e.post("/setup/feeds", url.Values{"name": {evil}})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/setup/feeds/") {
		t.Fatalf("create: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	id := strings.TrimPrefix(resp.Header.Get("Location"), "/setup/feeds/")
	now := e.Clock.Now()
	if _, _, err := e.Store.Connect(context.Background(), id, store.AnyGeneration,
		model.Account{AppUserID: "91", IGUserID: "1", Username: evil, Name: evil, AccountType: "BUSINESS", ConnectedAt: now},
		model.Token{AccessToken: "IGAAhostile-account-token", TokenInfo: model.TokenInfo{ObtainedAt: now, ExpiresAt: now.AddDate(0, 0, 60)}}); err != nil {
		t.Fatal(err)
	}
	// An error flash quoting the owner's input.
	e.post("/setup/feeds/"+id+"/origins", url.Values{"allowed_origins": {`<b>bold</b>`}})

	csrfField := `name="_csrf" value="` + e.csrf + `"`
	var actions []string
	for _, page := range []string{"/setup", "/setup/feeds/" + id, "/setup/feeds/" + id + "/disconnect", "/setup/feeds/" + id + "/delete"} {
		resp, body := e.get(e.srv.URL + page)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", page, resp.StatusCode)
		}
		for _, bad := range []string{"<script>alert", "<img src=x", "<b>bold"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s renders %q unescaped", page, bad)
			}
		}
		if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s does not show the escaped name", page)
		}
		forms := formRE.FindAllStringSubmatch(body, -1)
		if len(forms) == 0 {
			t.Fatalf("%s has no forms", page)
		}
		for _, f := range forms {
			if !strings.Contains(f[2], csrfField) {
				t.Errorf("%s: form %s lacks the CSRF token", page, f[1])
			}
			actions = append(actions, f[1])
		}
	}
	if _, body := e.get(e.srv.URL + "/setup/feeds/" + id); strings.Contains(body, "&lt;b&gt;bold") {
		t.Error("the flash was shown twice")
	}
	for _, want := range []string{"/setup/feeds", "/rename", "/origins", "/connect", "/disconnect", "/token", "/refresh", "/delete"} {
		if !slices.ContainsFunc(actions, func(a string) bool { return strings.HasSuffix(a, want) }) {
			t.Errorf("no form posts to ...%s (forms: %v)", want, actions)
		}
	}
	// Every form's action is under the CSRF-checked /setup group: a post
	// with a wrong token is refused and changes nothing.
	before := e.status(id)
	for _, a := range actions {
		if !strings.HasPrefix(a, "/setup/") {
			t.Errorf("form action %q is outside /setup", a)
			continue
		}
		resp, _ := e.post(a, url.Values{"_csrf": {"forged"}, "name": {"x"}, "confirm": {"yes"}, "access_token": {"IGAAx"}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s with a forged CSRF token: %d", a, resp.StatusCode)
		}
	}
	if after := e.status(id); after.Name != before.Name || after.Status != before.Status {
		t.Errorf("forged posts changed the feed: %+v", after)
	}
}

// TestNoOpenRedirect: no parameter steers a redirect off feedd.
func TestNoOpenRedirect(t *testing.T) {
	e := newEnv(t)
	id := e.createFeed("Redirects").ID
	hostile := url.Values{"next": {"https://evil.example/"}, "return": {"//evil.example"}, "return_to": {"https://evil.example"}, "redirect_uri": {"https://evil.example"}}
	sameSite := func(loc string) bool { return strings.HasPrefix(loc, "/setup") && !strings.HasPrefix(loc, "//") }

	cb := e.authorize(e.connectBrowser(id), sandbox.AccountBusiness)
	resp, _ := e.get(cb + "&" + hostile.Encode())
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup/feeds/"+id {
		t.Fatalf("callback: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, a := range []string{"/setup/feeds", "/setup/feeds/" + id + "/rename", "/setup/feeds/" + id + "/origins",
		"/setup/feeds/" + id + "/refresh", "/setup/feeds/" + id + "/token", "/setup/feeds/%2F%2Fevil.example/rename",
		"/setup/feeds/" + id + "/delete"} {
		v := url.Values{"name": {"x"}}
		for k, vs := range hostile {
			v[k] = vs
		}
		resp, _ := e.post(a, v)
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !sameSite(loc) {
			t.Errorf("POST %s: %d, Location %q", a, resp.StatusCode, loc)
		}
	}
	// Connect redirects only to the configured authorize URL, whatever is posted.
	resp, _ = e.post("/setup/feeds/"+id+"/connect", hostile)
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, e.Sandbox.AuthorizeURL()+"?") || strings.Contains(loc, "evil.example") {
		t.Errorf("connect: Location %q", loc)
	}
	// A missing feed redirects home, not to the path it was given.
	resp, _ = e.get(e.srv.URL + "/setup/feeds/%2F%2Fevil.example")
	if loc := resp.Header.Get("Location"); loc != "/setup" {
		t.Errorf("unknown feed page: Location %q", loc)
	}
}

// TestCallbackTamperedAndForeignState: a state altered by one character,
// or returned through another signed-in browser, connects nothing.
func TestCallbackTamperedAndForeignState(t *testing.T) {
	e := newEnv(t)
	id := e.createFeed("Tamper").ID
	cb, err := url.Parse(e.authorize(e.connectBrowser(id), sandbox.AccountBusiness))
	if err != nil {
		t.Fatal(err)
	}
	q := cb.Query()
	e.AddSecret(q.Get("code"))
	st := q.Get("state")
	flip := "A"
	if st[0] == 'A' {
		flip = "B"
	}
	q.Set("state", flip+st[1:])
	tampered := *cb
	tampered.RawQuery = q.Encode()
	resp, body := e.get(tampered.String())
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "not one feedd issued") {
		t.Fatalf("tampered state: %d\n%s", resp.StatusCode, body)
	}
	// Another admin browser (its own session cookie) cannot finish this browser's flow.
	other, err := http.NewRequest("GET", cb.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	other.AddCookie(&http.Cookie{Name: "feedd_session", Value: "another-session-cookie-value"})
	r2, err := http.DefaultTransport.RoundTrip(other)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign session: %d", r2.StatusCode)
	}
	if s := e.status(id); s.Status != model.StatusNotConnected {
		t.Fatalf("feed changed: %+v", s)
	}
	if n := e.GraphCalls(sandbox.EndpointToken); n != 0 {
		t.Fatalf("%d token exchanges for refused states", n)
	}
}

// TestRejectedTokenNeverShown: a pasted token that Instagram refuses is
// named in plain words, but never echoed in the page, the API answer or a log.
func TestRejectedTokenNeverShown(t *testing.T) {
	e := newEnv(t)
	id := e.createFeed("Secret").ID
	const bogus = "IGAAbogus-token-that-must-not-echo"
	e.AddSecret(bogus)
	resp, _ := e.post("/setup/feeds/"+id+"/token", url.Values{"access_token": {bogus}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("paste: %d", resp.StatusCode)
	}
	_, body := e.get(e.srv.URL + "/setup/feeds/" + id)
	if !strings.Contains(body, "token") || strings.Contains(body, bogus) {
		t.Fatalf("feed page after a refused token:\n%s", body)
	}
	var ae apiError
	if code := e.api("POST", "/api/admin/feeds/"+id+"/token", `{"access_token":"`+bogus+`"}`, &ae); code != 400 || strings.Contains(ae.Error.Message, bogus) {
		t.Fatalf("%d %+v", code, ae)
	}
	// A forged Meta callback is logged without the app secret (assertNoSecrets scans at cleanup).
	if code, _ := e.postCallback("/auth/instagram/delete", "signed_request="+url.QueryEscape(signed("wrong-secret", map[string]any{"algorithm": "HMAC-SHA256", "user_id": "1"}))); code != http.StatusForbidden {
		t.Fatalf("forged callback: %d", code)
	}
}

// A feed whose token Instagram stopped accepting says so loudly on its page.
func TestNeedsReauthFeedPageHasLoudBanner(t *testing.T) {
	e := newEnv(t)
	id := e.connectAPI("Revoked", sandbox.AccountBusiness)
	if err := e.Sandbox.RevokeTokens(sandbox.AccountBusiness); err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance(time.Hour)
	if err := e.conn.CheckTokens(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, page := e.get(e.srv.URL + "/setup/feeds/" + id)
	if !strings.Contains(page, `role="alert" class="flash error banner-loud"`) || !strings.Contains(page, "Reconnect") {
		t.Fatalf("setup page has no loud banner:\n%s", page)
	}
}
