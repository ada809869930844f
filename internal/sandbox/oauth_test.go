package sandbox

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestTokenLadderEndToEnd(t *testing.T) {
	e := newEnv(t, Options{})
	biz := mustAccount(t, e.sb, AccountBusiness)

	// Code -> short-lived token, flat live shape with user_id a bare big number.
	r := e.exchangeCode(e.codeFor(AccountBusiness))
	if r.status != 200 {
		t.Fatalf("code exchange: %d %s", r.status, r.body)
	}
	if !strings.Contains(string(r.body), `"user_id":`+biz.ID+`,`) {
		t.Fatalf("user_id is not a bare JSON number %s: %s", biz.ID, r.body)
	}
	var asFloat struct{ UserID float64 }
	_ = json.Unmarshal(r.body, &asFloat)
	exact, _ := new(big.Int).SetString(biz.ID, 10)
	if f, _ := new(big.Float).SetFloat64(asFloat.UserID).Int(nil); f.Cmp(exact) == 0 {
		t.Fatalf("user_id %s survives float64; it must not, or the quirk is not exercised", biz.ID)
	}
	flat := r.json(t)
	if perms, ok := flat["permissions"].([]any); !ok || len(perms) != 1 || perms[0] != ScopeBasic {
		t.Fatalf("permissions = %v, want [%s]", flat["permissions"], ScopeBasic)
	}
	short := flat["access_token"].(string)

	// Short -> long: about 60 days, never exactly.
	r = e.graph("/access_token", url.Values{"grant_type": {"ig_exchange_token"}, "client_secret": {e.sb.AppSecret()}, "access_token": {short}})
	if r.status != 200 {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	long := r.json(t)
	expiresIn, _ := long["expires_in"].(json.Number).Int64()
	if long["token_type"] != "bearer" || expiresIn >= 5184000 || expiresIn < 5184000-200 {
		t.Fatalf("long-lived answer %v: want bearer and expires_in just under 5184000", long)
	}
	longTok := long["access_token"].(string)
	if longTok == short || r.header.Get("X-App-Usage") == "" {
		t.Fatalf("long token must differ from the short one and carry usage headers")
	}

	// /me: id equals the exchange user_id; user_id is the professional id.
	me := e.graph("/v25.0/me", url.Values{"fields": {"id,user_id,username,account_type"}, "access_token": {longTok}}).json(t)
	if me["id"] != biz.ID || me["user_id"] != biz.UserID || !strings.HasPrefix(biz.UserID, "17841") ||
		me["username"] != AccountBusiness || me["account_type"] != "BUSINESS" {
		t.Fatalf("/me = %v, want id %s user_id %s", me, biz.ID, biz.UserID)
	}

	// Refresh: refused before 24h with a message about the 24 hours, not a 190.
	refresh := func(tok string) result {
		return e.graph("/refresh_access_token", url.Values{"grant_type": {"ig_refresh_token"}, "access_token": {tok}})
	}
	r = refresh(longTok)
	if code, _, msg, _ := graphErr(t, r); code == 190 || !strings.Contains(msg, "24 hours") || r.status != 400 {
		t.Fatalf("young refresh: code %d msg %q, want a non-190 error naming 24 hours", code, msg)
	}
	e.clock.Add(25 * time.Hour)
	r = refresh(longTok)
	if r.status != 200 {
		t.Fatalf("refresh after 25h: %d %s", r.status, r.body)
	}
	newTok := r.json(t)["access_token"].(string)
	if newTok == longTok {
		t.Fatal("refresh returned the same token string")
	}
	// The old string stops working; the new one works.
	if code, sub, _, _ := graphErr(t, e.graph("/v25.0/me", url.Values{"access_token": {longTok}})); code != 190 || sub != 467 {
		t.Fatalf("old token after refresh: %d/%d, want 190/467", code, sub)
	}
	if r := e.graph("/v25.0/me", url.Values{"access_token": {newTok}}); r.status != 200 {
		t.Fatalf("new token: %d %s", r.status, r.body)
	}
	// The new token is young again.
	if _, _, msg, _ := graphErr(t, refresh(newTok)); !strings.Contains(msg, "24 hours") {
		t.Fatalf("fresh token refresh: %q", msg)
	}
}

func TestRefreshAllowedFromExactly24Hours(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.sb.MintLongLivedToken(AccountBusiness, e.clock.Now().Add(-RefreshMinAge))
	r := e.graph("/refresh_access_token", url.Values{"grant_type": {"ig_refresh_token"}, "access_token": {tok}})
	if r.status != 200 {
		t.Fatalf("refresh at 24h: %d %s", r.status, r.body)
	}
	// The new expiry is about 60 days from the refresh, whatever the old one was.
	if n, _ := r.json(t)["expires_in"].(json.Number).Int64(); time.Duration(n)*time.Second < LongTokenTTL-200*time.Second {
		t.Fatalf("expires_in %d", n)
	}
}

func TestRefreshKeepsOldTokenWhenConfigured(t *testing.T) {
	e := newEnv(t, Options{RefreshKeepsOldToken: true})
	tok := e.sb.MintLongLivedToken(AccountCreator, e.clock.Now().Add(-48*time.Hour))
	r := e.graph("/refresh_access_token", url.Values{"grant_type": {"ig_refresh_token"}, "access_token": {tok}})
	if r.status != 200 {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	if r := e.graph("/v25.0/me", url.Values{"access_token": {tok}}); r.status != 200 {
		t.Fatalf("old token should still work: %d %s", r.status, r.body)
	}
}

func TestRefreshFailures(t *testing.T) {
	e := newEnv(t, Options{})
	now := e.clock.Now()
	tests := []struct {
		name      string
		token     func() string
		method    string
		grant     string
		code, sub int
		msgPart   string
	}{
		{"expired token is dead", func() string { return e.sb.MintLongLivedToken(AccountBusiness, now.Add(-61*24*time.Hour)) }, "GET", "ig_refresh_token", 190, 463, "expired"},
		{"revoked token is dead", func() string {
			tok := e.sb.MintLongLivedToken(AccountCreator, now.Add(-48*time.Hour))
			_ = e.sb.RevokeTokens(AccountCreator)
			return tok
		}, "GET", "ig_refresh_token", 190, 460, "invalidated"},
		{"23h-old long-lived token is too young", func() string { return e.sb.MintLongLivedToken(AccountBusiness, now.Add(-23*time.Hour)) }, "GET", "ig_refresh_token", 100, 0, "24 hours"},
		{"short-lived token is too young", func() string { return e.shortToken(AccountBusiness) }, "GET", "ig_refresh_token", 100, 0, "24 hours"},
		{"POST is refused", func() string { return e.sb.MintLongLivedToken(AccountBusiness, now.Add(-48*time.Hour)) }, "POST", "ig_refresh_token", 100, 33, "Unsupported post request"},
		{"wrong grant type", func() string { return e.sb.MintLongLivedToken(AccountBusiness, now.Add(-48*time.Hour)) }, "GET", "ig_exchange_token", 100, 0, "grant_type"},
		{"unknown token", func() string { return "IGAAnotatoken" }, "GET", "ig_refresh_token", 190, 0, "Cannot parse"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := e.sb.GraphURL() + "/refresh_access_token?" + url.Values{"grant_type": {tc.grant}, "access_token": {tc.token()}}.Encode()
			req, _ := http.NewRequest(tc.method, u, nil)
			r := e.do(req)
			code, sub, msg, _ := graphErr(t, r)
			if code != tc.code || sub != tc.sub || !strings.Contains(msg, tc.msgPart) || r.status != 400 {
				t.Fatalf("got %d %d/%d %q, want 400 %d/%d containing %q", r.status, code, sub, msg, tc.code, tc.sub, tc.msgPart)
			}
		})
	}
}

func TestExchangeFailures(t *testing.T) {
	e := newEnv(t, Options{})
	tests := []struct {
		name      string
		params    func() url.Values
		advance   time.Duration
		code, sub int
	}{
		{"wrong client secret", func() url.Values {
			return url.Values{"grant_type": {"ig_exchange_token"}, "client_secret": {"nope"}, "access_token": {e.shortToken(AccountBusiness)}}
		}, 0, 101, 0},
		{"long-lived token cannot be exchanged again", func() url.Values {
			return url.Values{"grant_type": {"ig_exchange_token"}, "client_secret": {e.sb.AppSecret()}, "access_token": {e.longToken(AccountBusiness)}}
		}, 0, 100, 0},
		{"expired short-lived token", func() url.Values {
			return url.Values{"grant_type": {"ig_exchange_token"}, "client_secret": {e.sb.AppSecret()}, "access_token": {e.shortToken(AccountBusiness)}}
		}, 61 * time.Minute, 190, 463},
		{"missing token", func() url.Values {
			return url.Values{"grant_type": {"ig_exchange_token"}, "client_secret": {e.sb.AppSecret()}}
		}, 0, 2500, 0},
		{"wrong grant type", func() url.Values {
			return url.Values{"grant_type": {"ig_refresh_token"}, "client_secret": {e.sb.AppSecret()}, "access_token": {e.shortToken(AccountBusiness)}}
		}, 0, 100, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.params()
			e.clock.Add(tc.advance)
			code, sub, _, _ := graphErr(t, e.graph("/access_token", p))
			if code != tc.code || sub != tc.sub {
				t.Fatalf("got %d/%d, want %d/%d", code, sub, tc.code, tc.sub)
			}
		})
	}
}

func TestTokenShapes(t *testing.T) {
	e := newEnv(t, Options{TokenShape: TokenShapeData})
	biz := mustAccount(t, e.sb, AccountBusiness)
	var data struct {
		Data []struct {
			AccessToken string `json:"access_token"`
			UserID      string `json:"user_id"` // documented shape: a string
			Permissions string `json:"permissions"`
		} `json:"data"`
	}
	r := e.exchangeCode(e.codeFor(AccountBusiness))
	if err := json.Unmarshal(r.body, &data); err != nil || len(data.Data) != 1 {
		t.Fatalf("data shape: %v %s", err, r.body)
	}
	if d := data.Data[0]; d.UserID != biz.ID || d.Permissions != ScopeBasic || !strings.HasPrefix(d.AccessToken, "IGAA") {
		t.Fatalf("data shape content: %+v", d)
	}

	// Per-account override back to flat while the sandbox says data.
	if err := e.sb.SetAccountTokenShape(AccountCreator, TokenShapeFlat); err != nil {
		t.Fatal(err)
	}
	cr := mustAccount(t, e.sb, AccountCreator)
	if r := e.exchangeCode(e.codeFor(AccountCreator)); !strings.Contains(string(r.body), `"user_id":`+cr.ID+`,`) {
		t.Fatalf("per-account flat shape: %s", r.body)
	}
	// Sandbox-wide switch at run time.
	e.sb.SetTokenShape(TokenShapeFlat)
	if r := e.exchangeCode(e.codeFor(AccountBusiness)); strings.Contains(string(r.body), `"data"`) {
		t.Fatalf("SetTokenShape(flat) ignored: %s", r.body)
	}
}

func TestTokenHostErrors(t *testing.T) {
	e := newEnv(t, Options{})
	good := func() url.Values {
		return url.Values{"client_id": {e.sb.AppID()}, "client_secret": {e.sb.AppSecret()}, "grant_type": {"authorization_code"},
			"redirect_uri": {testRedirect}, "code": {e.codeFor(AccountBusiness)}}
	}
	used := good()
	if r := e.postForm(e.sb.TokenURL(), used); r.status != 200 {
		t.Fatalf("first use: %d %s", r.status, r.body)
	}
	tests := []struct {
		name    string
		form    func() url.Values
		advance time.Duration
		method  string
		want    string
	}{
		{"code used twice", func() url.Values { return used }, 0, "POST", MsgCodeNotFound},
		{"unknown code", func() url.Values { v := good(); v.Set("code", "AQnope"); return v }, 0, "POST", MsgCodeNotFound},
		{"code with the #_ suffix left on", func() url.Values { v := good(); v.Set("code", v.Get("code")+"#_"); return v }, 0, "POST", MsgCodeNotFound},
		{"expired code", good, time.Hour, "POST", MsgCodeExpired},
		{"redirect_uri differs by a trailing slash", func() url.Values { v := good(); v.Set("redirect_uri", testRedirect+"/"); return v }, 0, "POST", MsgRedirectMismatch},
		{"Meta app id instead of Instagram app id", func() url.Values { v := good(); v.Set("client_id", "123"); return v }, 0, "POST", MsgInvalidApp},
		{"wrong secret", func() url.Values { v := good(); v.Set("client_secret", "x"); return v }, 0, "POST", MsgBadClientSecret},
		{"missing code", func() url.Values { v := good(); v.Del("code"); return v }, 0, "POST", "Missing required field code"},
		{"wrong grant type", func() url.Values { v := good(); v.Set("grant_type", "password"); return v }, 0, "POST", "grant_type"},
		{"GET is refused", good, 0, "GET", "method type: get"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			form := tc.form()
			e.clock.Add(tc.advance)
			var r result
			if tc.method == "GET" {
				r = e.get(e.sb.TokenURL() + "?" + form.Encode())
			} else {
				r = e.postForm(e.sb.TokenURL(), form)
			}
			var env struct {
				ErrorType    string `json:"error_type"`
				Code         int    `json:"code"`
				ErrorMessage string `json:"error_message"`
			}
			if err := json.Unmarshal(r.body, &env); err != nil || r.status != 400 || env.ErrorType != "OAuthException" || env.Code != 400 {
				t.Fatalf("not the token-host envelope: %d %s", r.status, r.body)
			}
			if !strings.Contains(env.ErrorMessage, tc.want) {
				t.Fatalf("message %q, want %q", env.ErrorMessage, tc.want)
			}
		})
	}
}

func TestTokenHostIgnoresQueryStringFields(t *testing.T) {
	e := newEnv(t, Options{})
	v := url.Values{"client_id": {e.sb.AppID()}, "client_secret": {e.sb.AppSecret()}, "grant_type": {"authorization_code"},
		"redirect_uri": {testRedirect}, "code": {e.codeFor(AccountBusiness)}}
	req, _ := http.NewRequest(http.MethodPost, e.sb.TokenURL()+"?"+v.Encode(), nil)
	if r := e.do(req); r.status != 400 || !strings.Contains(string(r.body), "Missing required field") {
		t.Fatalf("fields in the query string must not count: %d %s", r.status, r.body)
	}
}

func TestAuthorizePage(t *testing.T) {
	e := newEnv(t, Options{})
	q := func(mod func(url.Values)) string {
		v := url.Values{"client_id": {e.sb.AppID()}, "redirect_uri": {testRedirect}, "response_type": {"code"},
			"scope": {ScopeBasic}, "state": {`s"><script>x</script>`}}
		if mod != nil {
			mod(v)
		}
		return e.sb.AuthorizeURL() + "?" + v.Encode()
	}
	r := e.get(q(nil))
	page := string(r.body)
	if r.status != 200 || !strings.Contains(page, "feedd sandbox — not Instagram") || !strings.Contains(page, ScopeBasic) ||
		!strings.Contains(page, `value="`+AccountPersonal+`"`) || !strings.Contains(page, `action="`+e.base+`/www/oauth/authorize"`) ||
		strings.Contains(page, "<script>x") {
		t.Fatalf("consent page wrong (%d):\n%s", r.status, page)
	}

	errorPages := []struct {
		name string
		mod  func(url.Values)
		want string
	}{
		{"unknown client_id", func(v url.Values) { v.Set("client_id", "1") }, MsgInvalidApp},
		{"unregistered redirect_uri", func(v url.Values) { v.Set("redirect_uri", "https://evil.example/cb") }, "Redirect URI"},
		{"redirect_uri with extra trailing slash", func(v url.Values) { v.Set("redirect_uri", testRedirect+"/") }, "Redirect URI"},
		{"dead Basic Display scopes", func(v url.Values) { v.Set("scope", "user_profile,user_media") }, "user_profile, user_media"},
		{"old scope name", func(v url.Values) { v.Set("scope", "business_basic") }, "business_basic"},
		{"missing basic scope", func(v url.Values) { v.Set("scope", "instagram_business_manage_comments") }, ScopeBasic},
		{"wrong response_type", func(v url.Values) { v.Set("response_type", "token") }, "response_type"},
	}
	for _, tc := range errorPages {
		t.Run(tc.name, func(t *testing.T) {
			r := e.get(q(tc.mod))
			if r.status != 400 || r.header.Get("Location") != "" || !strings.Contains(string(r.body), tc.want) {
				t.Fatalf("want a 400 error page naming %q, got %d Location=%q", tc.want, r.status, r.header.Get("Location"))
			}
		})
	}

	form := func(decision, acct string) url.Values {
		return url.Values{"client_id": {e.sb.AppID()}, "redirect_uri": {testRedirect}, "response_type": {"code"},
			"scope": {ScopeBasic}, "state": {"xyz"}, "account": {acct}, "decision": {decision}}
	}
	t.Run("allow redirects with code, state and #_", func(t *testing.T) {
		r := e.postForm(e.sb.AuthorizeURL(), form("allow", AccountCreator))
		loc, _ := url.Parse(r.header.Get("Location"))
		if r.status != http.StatusFound || loc == nil || loc.Fragment != "_" || loc.Query().Get("state") != "xyz" ||
			!strings.HasPrefix(r.header.Get("Location"), testRedirect+"?") {
			t.Fatalf("allow: %d Location=%q", r.status, r.header.Get("Location"))
		}
		if r := e.exchangeCode(loc.Query().Get("code")); r.status != 200 {
			t.Fatalf("code from the page does not exchange: %s", r.body)
		}
		if c := e.sb.Calls(); c[len(c)-2].Account != AccountCreator {
			t.Fatalf("authorize call not attributed: %+v", c[len(c)-2])
		}
	})
	t.Run("cancel redirects with access_denied", func(t *testing.T) {
		r := e.postForm(e.sb.AuthorizeURL(), form("cancel", ""))
		loc, _ := url.Parse(r.header.Get("Location"))
		if r.status != http.StatusFound || loc.Query().Get("error") != "access_denied" || loc.Query().Get("error_reason") != "user_denied" ||
			loc.Query().Get("error_description") == "" || loc.Query().Get("state") != "xyz" || loc.Query().Has("code") {
			t.Fatalf("cancel: %d Location=%q", r.status, r.header.Get("Location"))
		}
	})
	t.Run("allow without an account re-asks", func(t *testing.T) {
		r := e.postForm(e.sb.AuthorizeURL(), form("allow", "nobody"))
		if r.status != 400 || r.header.Get("Location") != "" || !strings.Contains(string(r.body), "Choose an account") {
			t.Fatalf("got %d %q", r.status, r.header.Get("Location"))
		}
	})
	t.Run("tampered hidden redirect_uri is refused", func(t *testing.T) {
		f := form("allow", AccountBusiness)
		f.Set("redirect_uri", "https://evil.example/cb")
		if r := e.postForm(e.sb.AuthorizeURL(), f); r.status != 400 || r.header.Get("Location") != "" {
			t.Fatalf("got %d %q", r.status, r.header.Get("Location"))
		}
	})
}

func TestApproveRejectsUnregisteredRedirect(t *testing.T) {
	e := newEnv(t, Options{})
	if _, err := e.sb.Approve(AccountBusiness, "https://evil.example/cb", "s"); err == nil {
		t.Fatal("Approve accepted an unregistered redirect URI")
	}
	if _, err := e.sb.Approve("nobody", testRedirect, "s"); err == nil {
		t.Fatal("Approve accepted an unknown account")
	}
}

func TestSignedRequestVerifies(t *testing.T) {
	e := newEnv(t, Options{AppSecret: "s3cret"})
	sr := e.sb.SignedRequest("17841400000000001")
	if regexp.MustCompile(`[=+/]`).MatchString(sr) {
		t.Fatalf("signed_request must be base64url without padding: %s", sr)
	}
	sig, payload, ok := strings.Cut(sr, ".")
	if !ok {
		t.Fatal("no dot")
	}
	m := hmac.New(sha256.New, []byte("s3cret"))
	m.Write([]byte(payload))
	got, _ := base64.RawURLEncoding.DecodeString(sig)
	if !hmac.Equal(got, m.Sum(nil)) {
		t.Fatal("signature does not verify with the app secret")
	}
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	var p struct {
		Algorithm string `json:"algorithm"`
		IssuedAt  int64  `json:"issued_at"`
		UserID    string `json:"user_id"`
	}
	if err := json.Unmarshal(raw, &p); err != nil || p.Algorithm != "HMAC-SHA256" || p.UserID != "17841400000000001" || p.IssuedAt != e.clock.Now().Unix() {
		t.Fatalf("payload %s", raw)
	}
}

// A sandbox restarted with the same TokenKey accepts the tokens an
// earlier run issued; one with another key, or none, does not.
func TestSealedTokensSurviveARestart(t *testing.T) {
	key := []byte("demo data dir key")
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	first := New(Options{TokenKey: key, Now: func() time.Time { return now }})
	tok := first.MintLongLivedToken(AccountBusiness, now)
	for _, tc := range []struct {
		name string
		key  []byte
		ok   bool
	}{{"same key", key, true}, {"other key", []byte("other"), false}, {"no key", nil, false}} {
		sb := New(Options{TokenKey: tc.key, Now: func() time.Time { return now.Add(time.Hour) }})
		srv := httptest.NewServer(sb)
		resp, err := http.Get(srv.URL + "/graph/v25.0/me?fields=username&access_token=" + url.QueryEscape(tok))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if got := resp.StatusCode == 200 && strings.Contains(string(body), AccountBusiness); got != tc.ok {
			t.Errorf("%s: %d %s", tc.name, resp.StatusCode, body)
		}
	}
}
