package owner

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/connection"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/testenv"
)

func stateOf(t *testing.T, authorizeURL string) string {
	t.Helper()
	u, err := url.Parse(authorizeURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("state")
}

// connectBrowser runs the setup page's Connect button and returns the authorize URL.
func (e *env) connectBrowser(id string) string {
	e.t.Helper()
	resp, body := e.post("/setup/feeds/"+id+"/connect", nil)
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("connect: %d %s", resp.StatusCode, body)
	}
	return resp.Header.Get("Location")
}

func TestBrowserFlowApproveConnectsAndLandsOnFeedPage(t *testing.T) {
	e := newEnv(t)
	resp, _ := e.post("/setup/feeds", url.Values{"name": {"Bakery"}, "allowed_origins": {"https://bakery.example\nhttps://www.bakery.example:443"}})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/setup/feeds/") {
		t.Fatalf("create: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	id := strings.TrimPrefix(resp.Header.Get("Location"), "/setup/feeds/")
	_, page := e.get(e.srv.URL + "/setup/feeds/" + id)
	if !strings.Contains(page, "Feed created") || !strings.Contains(page, `name="_csrf" value="`+e.csrf) {
		t.Fatalf("feed page lacks the flash or the CSRF field:\n%s", page)
	}

	authz := e.connectBrowser(id)
	st := stateOf(t, authz)
	if len(st) < 22 { // 128 bits in base64url
		t.Fatalf("state %q is too short", st)
	}
	q, _ := url.Parse(authz)
	if got := q.Query().Get("redirect_uri"); got != e.srv.URL+"/auth/instagram/callback" {
		t.Fatalf("redirect_uri = %q", got)
	}
	cb := e.authorize(authz, sandbox.AccountBusiness)
	if !strings.HasSuffix(cb, "#_") {
		t.Fatalf("sandbox redirect %q lacks the #_ quirk", cb)
	}
	code, _ := url.Parse(cb)
	e.AddSecret(code.Query().Get("code"))
	resp, body := e.get(cb)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup/feeds/"+id {
		t.Fatalf("callback: %d %q %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	_, page = e.get(e.srv.URL + "/setup/feeds/" + id)
	if !strings.Contains(page, "Connected.") || !strings.Contains(page, "@"+sandbox.AccountBusiness) {
		t.Fatalf("feed page after connect:\n%s", page)
	}

	s := e.status(id)
	if s.Status != model.StatusActive || s.Account == nil || s.Account.AccountType != "BUSINESS" || s.Token == nil {
		t.Fatalf("status after connect: %+v", s)
	}
	if left := s.Token.ExpiresAt.Sub(e.Clock.Now()); left < 59*24*time.Hour || left > 61*24*time.Hour || s.Token.ExpiryAssumed {
		t.Fatalf("token expires in %v (assumed %v), want about 60 days from Instagram's expires_in", left, s.Token.ExpiryAssumed)
	}
	if got := strings.Join(s.AllowedOrigins, " "); got != "https://bakery.example https://www.bakery.example" {
		t.Fatalf("origins = %q", got)
	}
	acct, _ := e.Sandbox.Account(sandbox.AccountBusiness)
	f, err := e.Store.Feed(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	a := *f.Account
	if a.AppUserID != acct.ID || a.IGUserID != acct.UserID {
		t.Fatalf("stored ids %q/%q, want %q/%q", a.AppUserID, a.IGUserID, acct.ID, acct.UserID)
	}
	// Replaying the same redirect is refused: the state works once.
	resp, body = e.get(cb)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "already used") {
		t.Fatalf("replayed callback: %d\n%s", resp.StatusCode, body)
	}
}

func TestBrowserFlowDenyLeavesFeedAsItWas(t *testing.T) {
	e := newEnv(t)
	id := e.createFeed("Deny").ID
	cb := e.authorize(e.connectBrowser(id), "")
	resp, body := e.get(cb)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "cancelled") || !strings.Contains(body, "/setup/feeds/"+id) {
		t.Fatalf("deny: %d\n%s", resp.StatusCode, body)
	}
	if s := e.status(id); s.Status != model.StatusNotConnected || s.Account != nil || s.Token != nil {
		t.Fatalf("feed changed by a denied connect: %+v", s)
	}

	// A connected feed keeps its token when a reconnect is denied.
	e.get(e.authorize(e.connectBrowser(id), sandbox.AccountCreator))
	before := e.status(id)
	resp, _ = e.get(e.authorize(e.connectBrowser(id), ""))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("second deny: %d", resp.StatusCode)
	}
	if after := e.status(id); after.Status != model.StatusActive || after.Account.Username != before.Account.Username {
		t.Fatalf("denied reconnect changed the feed: %+v", after)
	}
	// Denial without a state echo still explains itself.
	resp, body = e.get(e.srv.URL + "/auth/instagram/callback?error=access_denied&error_reason=user_denied")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "cancelled") {
		t.Fatalf("stateless deny: %d\n%s", resp.StatusCode, body)
	}
}

func TestCallbackStateFailuresHaveDistinctPages(t *testing.T) {
	e := newEnv(t)
	id := e.createFeed("States").ID
	cb := func(state string) (int, string) {
		resp, body := e.get(e.srv.URL + "/auth/instagram/callback?code=AQxyz&state=" + url.QueryEscape(state))
		return resp.StatusCode, body
	}
	tests := []struct {
		name, state, want string
		status            int
	}{
		{"garbage", "<script>", "not one feedd issued", 400},
		{"unknown", strings.Repeat("A", 43), "not one feedd issued", 400},
		{"empty", "", "not one feedd issued", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := cb(tt.state)
			if code != tt.status || !strings.Contains(body, tt.want) || strings.Contains(body, "<script>") {
				t.Fatalf("%d\n%s", code, body)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		st := stateOf(t, e.connectBrowser(id))
		e.Clock.Advance(connection.StateTTL + time.Second)
		code, body := cb(st)
		if code != 400 || !strings.Contains(body, "expired") {
			t.Fatalf("%d\n%s", code, body)
		}
	})
	t.Run("other session", func(t *testing.T) {
		st := stateOf(t, e.connectBrowser(id))
		resp, err := http.Get(e.srv.URL + "/auth/instagram/callback?code=AQxyz&state=" + st) // no cookie
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("callback from another browser: %d", resp.StatusCode)
		}
	})
	if s := e.status(id); s.Status != model.StatusNotConnected {
		t.Fatalf("feed changed: %+v", s)
	}
	if e.GraphCalls(sandbox.EndpointToken) != 0 {
		t.Fatal("a bad state reached the token host")
	}
}

func TestAPIConnectIsBoundToTheFeedOnlyAndSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	id := e.createFeed("API").ID
	var out struct {
		AuthorizeURL string `json:"authorize_url"`
	}
	if code := e.api("POST", "/api/admin/feeds/"+id+"/connect", "", &out); code != 200 || out.AuthorizeURL == "" {
		t.Fatalf("connect: %d %+v", code, out)
	}
	cb := e.authorize(out.AuthorizeURL, sandbox.AccountCreator)
	e.start() // restart between connect and callback: the state lives in the store
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(cb) // a different client, no session: fine for API-issued states
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback: %d", resp.StatusCode)
	}
	if s := e.status(id); s.Status != model.StatusActive || s.Account.AccountType != "MEDIA_CREATOR" {
		t.Fatalf("status: %+v", s)
	}
}

func TestCallbackFailuresExplainAndChangeNothing(t *testing.T) {
	e := newEnv(t)
	callbackURI := e.srv.URL + "/auth/instagram/callback"
	tests := []struct {
		name   string
		setup  func() (acct string, after func())
		status int
		want   []string
	}{
		{"personal account", func() (string, func()) { return sandbox.AccountPersonal, nil }, 403,
			[]string{"personal Instagram account", "professional"}},
		{"redirect mismatch", func() (string, func()) {
			e.useGraph(e.NewGraph(callbackURI+"/", e.Sandbox.AppID(), e.Sandbox.AppSecret()))
			return sandbox.AccountBusiness, func() { e.useGraph(e.Graph) }
		}, 400, []string{"redirect URI", "<code class=\"copy\">" + callbackURI + "</code>"}},
		{"invalid platform app", func() (string, func()) {
			e.useGraph(e.NewGraph(callbackURI, "1234567890", e.Sandbox.AppSecret()))
			return sandbox.AccountBusiness, func() { e.useGraph(e.Graph) }
		}, 400, []string{"Invalid platform app", "FEEDD_INSTAGRAM_APP_ID"}},
		{"instagram unreachable", func() (string, func()) {
			e.Sandbox.SetOutage(true)
			return sandbox.AccountBusiness, func() { e.Sandbox.SetOutage(false) }
		}, 502, []string{"could not be reached"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := e.createFeed("Fail").ID
			authz := e.connectBrowser(id)
			cb := e.authorize(authz, sandbox.AccountBusiness)
			acct, after := tt.setup()
			if acct != sandbox.AccountBusiness {
				cb = e.authorize(e.connectBrowser(id), acct)
			}
			u, _ := url.Parse(cb)
			e.AddSecret(u.Query().Get("code"))
			resp, body := e.get(cb)
			if after != nil {
				after()
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d\n%s", resp.StatusCode, tt.status, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q:\n%s", w, body)
				}
			}
			if s := e.status(id); s.Status != model.StatusNotConnected || s.Token != nil {
				t.Fatalf("failed connect changed the feed: %+v", s)
			}
		})
	}
}

func TestCallbackReusedCodeIsExplained(t *testing.T) {
	e := newEnv(t)
	id := e.createFeed("Code").ID
	code, err := e.Sandbox.IssueCode(sandbox.AccountBusiness, e.srv.URL+"/auth/instagram/callback")
	if err != nil {
		t.Fatal(err)
	}
	e.AddSecret(code)
	for i, want := range []int{http.StatusSeeOther, http.StatusBadRequest} {
		st := stateOf(t, e.connectBrowser(id))
		resp, body := e.get(e.srv.URL + "/auth/instagram/callback?code=" + url.QueryEscape(code) + "&state=" + st + "#_")
		if resp.StatusCode != want {
			t.Fatalf("use %d: %d\n%s", i+1, resp.StatusCode, body)
		}
		if i == 1 && !strings.Contains(body, "expired or was already used") {
			t.Fatalf("reused code page:\n%s", body)
		}
	}
	if s := e.status(id); s.Status != model.StatusActive {
		t.Fatalf("a failed second connect broke the first: %+v", s)
	}
}

// A connect whose store write fails answers 500 with a page saying what
// happens, leaves the feed as it was meanwhile, and keeps the token
// Instagram issued: the write is retried and the feed ends connected.
func TestFailedStoreWriteLeavesFeedUntouchedAndIsRetried(t *testing.T) {
	gate := testenv.NewRetryGate()
	e := newEnv(t, func(o *connection.Options) { o.Sleep = gate.Sleep })
	id := e.createFeed("Store").ID
	cb := e.authorize(e.connectBrowser(id), sandbox.AccountBusiness)
	e.Store.Fail(testenv.OpConnect, 1)
	resp, body := e.get(cb)
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "could not save it yet") {
		t.Fatalf("status %d\n%s", resp.StatusCode, body)
	}
	f, err := e.Store.Feed(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if f.Status != model.StatusNotConnected || f.Token != nil {
		t.Fatalf("feed half-connected: %+v", f)
	}
	gate.Next(t)
	gate.Release()
	if s := e.status(id); s.Status != model.StatusActive || s.Account == nil || s.Token == nil {
		t.Fatalf("after the retry: %+v", s)
	}
}

func TestConnectWithoutAppConfigSaysWhatToSet(t *testing.T) {
	e := newEnv(t, func(o *connection.Options) { o.AppID, o.AppSecret = "", "" })
	id := e.createFeed("Unconfigured").ID
	var ae apiError
	if code := e.api("POST", "/api/admin/feeds/"+id+"/connect", "", &ae); code != http.StatusConflict ||
		!strings.Contains(ae.Error.Message, "FEEDD_INSTAGRAM_APP_ID and FEEDD_INSTAGRAM_APP_SECRET") ||
		!strings.Contains(ae.Error.Message, e.srv.URL+"/auth/instagram/callback") {
		t.Fatalf("connect: %d %+v", code, ae)
	}
	_, page := e.get(e.srv.URL + "/setup")
	for _, w := range []string{"<code>FEEDD_INSTAGRAM_APP_ID</code>", "<code>FEEDD_INSTAGRAM_APP_SECRET</code>", "<code class=\"copy\">" + e.srv.URL + "/auth/instagram/callback</code>"} {
		if !strings.Contains(page, w) {
			t.Errorf("setup page lacks %q", w)
		}
	}
}
