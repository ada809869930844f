package sandbox

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Token and code lifetimes of the real platform.
const (
	CodeTTL       = time.Hour
	ShortTokenTTL = time.Hour
	LongTokenTTL  = 60 * 24 * time.Hour
	// RefreshMinAge is how old a long-lived token must be before it can be refreshed.
	RefreshMinAge = 24 * time.Hour
	// ScopeBasic is the only scope feedd asks for.
	ScopeBasic = "instagram_business_basic"
)

// Token host error messages, as the real token host words them.
const (
	MsgInvalidApp       = "Invalid platform app"
	MsgCodeNotFound     = "Matching code was not found or was already used"
	MsgCodeExpired      = "This authorization code has expired"
	MsgRedirectMismatch = "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request"
	MsgBadClientSecret  = "Error validating client secret."
	// MsgTooYoung is the refresh refusal for a token younger than 24 hours.
	MsgTooYoung = "The access token can only be refreshed once it is at least 24 hours old; try again later."
)

type token struct {
	acct       *account
	long       bool
	issuedAt   time.Time
	expiresAt  time.Time
	revoked    bool
	superseded bool
}

type authCode struct {
	acct        *account
	clientID    string
	redirectURI string
	scopes      []string
	issuedAt    time.Time
	used        bool
}

// secretString returns an unguessable string: tokens and codes come from
// crypto/rand, unlike ids, so that no test can depend on their value.
func secretString(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

func (s *Sandbox) issueTokenLocked(a *account, long bool, issued time.Time, ttl time.Duration) (string, *token) {
	str := secretString("IGAA", 96)
	t := &token{acct: a, long: long, issuedAt: issued, expiresAt: issued.Add(ttl)}
	if s.opts.TokenKey != nil {
		str = s.sealToken(t)
	}
	s.tokens[str] = t
	return str, t
}

// sealToken makes a token string that carries its own account, kind and
// lifetime under an HMAC of Options.TokenKey, so a sandbox restarted with
// the same key still knows the tokens it issued (a demo kept in a data
// dir). Revocations are not remembered across restarts.
func (s *Sandbox) sealToken(t *token) string {
	idx := slices.Index(s.accounts, t.acct)
	b := make([]byte, 0, 16+1+1+16+16)
	b = append(b, make([]byte, 16)...)
	_, _ = rand.Read(b[:16])
	long := byte(0)
	if t.long {
		long = 1
	}
	b = append(b, byte(idx), long)
	b = binary.BigEndian.AppendUint64(b, uint64(t.issuedAt.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(t.expiresAt.Unix()))
	mac := hmac.New(sha256.New, s.opts.TokenKey)
	mac.Write(b)
	b = mac.Sum(b)[:len(b)+16]
	return "IGAA" + base64.RawURLEncoding.EncodeToString(b)
}

// openTokenLocked accepts a sealed token this sandbox did not issue in
// this run but whose seal verifies.
func (s *Sandbox) openTokenLocked(str string) (*token, bool) {
	if s.opts.TokenKey == nil || !strings.HasPrefix(str, "IGAA") {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(str[4:])
	if err != nil || len(b) != 16+2+16+16 {
		return nil, false
	}
	body, sum := b[:len(b)-16], b[len(b)-16:]
	mac := hmac.New(sha256.New, s.opts.TokenKey)
	mac.Write(body)
	if !hmac.Equal(mac.Sum(nil)[:16], sum) || int(body[16]) >= len(s.accounts) {
		return nil, false
	}
	t := &token{acct: s.accounts[body[16]], long: body[17] == 1,
		issuedAt:  time.Unix(int64(binary.BigEndian.Uint64(body[18:26])), 0),
		expiresAt: time.Unix(int64(binary.BigEndian.Uint64(body[26:34])), 0)}
	s.tokens[str] = t
	return t, true
}

// longLivedTTLLocked is a shade under 60 days, never exactly the same, as
// the real expires_in (5183944) shows.
func (s *Sandbox) longLivedTTLLocked() time.Duration {
	return LongTokenTTL - time.Duration(20+s.rng.IntN(100))*time.Second
}

// MintLongLivedToken returns a long-lived token for acct issued at
// obtainedAt, like the App Dashboard's "Generate token". It panics on an
// unknown account (a test bug).
func (s *Sandbox) MintLongLivedToken(acct string, obtainedAt time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.lookupLocked(acct)
	if err != nil {
		panic(err)
	}
	str, _ := s.issueTokenLocked(a, true, obtainedAt, s.longLivedTTLLocked())
	return str
}

// IssueCode returns an authorization code for acct, as if its owner had
// clicked Allow for redirectURI.
func (s *Sandbox) IssueCode(acct, redirectURI string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.lookupLocked(acct)
	if err != nil {
		return "", err
	}
	if !slices.Contains(s.opts.RedirectURIs, redirectURI) {
		return "", fmt.Errorf("%w: %q", ErrRedirectURI, redirectURI)
	}
	return s.issueCodeLocked(a, redirectURI, []string{ScopeBasic}), nil
}

func (s *Sandbox) issueCodeLocked(a *account, redirectURI string, scopes []string) string {
	c := secretString("AQ", 120)
	s.codes[c] = &authCode{acct: a, clientID: s.opts.AppID, redirectURI: redirectURI, scopes: scopes, issuedAt: s.now()}
	return c
}

// Approve is the non-interactive Allow: it returns the URL the browser would
// be redirected to (redirectURI?code=...&state=...#_).
func (s *Sandbox) Approve(acct, redirectURI, state string) (string, error) {
	code, err := s.IssueCode(acct, redirectURI)
	if err != nil {
		return "", err
	}
	return redirectWith(redirectURI, url.Values{"code": {code}}, state, "_"), nil
}

// DenyURL returns the URL the browser is sent to when the owner clicks Cancel.
func DenyURL(redirectURI, state string) string {
	return redirectWith(redirectURI, url.Values{
		"error":             {"access_denied"},
		"error_reason":      {"user_denied"},
		"error_description": {"The user denied your request."},
	}, state, "")
}

func redirectWith(redirectURI string, add url.Values, state, fragment string) string {
	u, err := url.Parse(redirectURI)
	if err != nil {
		return redirectURI
	}
	q := u.Query()
	for k, v := range add {
		q[k] = v
	}
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	u.Fragment = fragment
	return u.String()
}

// SignedRequest returns a valid signed_request for userID, as Meta posts to
// the deauthorize and data deletion callbacks.
func (s *Sandbox) SignedRequest(userID string) string {
	payload, _ := json.Marshal(map[string]any{
		"algorithm": "HMAC-SHA256",
		"issued_at": s.now().Unix(),
		"user_id":   userID,
	})
	return SignRequest(s.opts.AppSecret, payload)
}

// SignRequest signs any payload as a signed_request with secret, so tests can
// also forge bad ones (wrong algorithm, wrong key).
func SignRequest(secret string, payload []byte) string {
	p := base64.RawURLEncoding.EncodeToString(payload)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(p))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)) + "." + p
}

// ---- authorize page ----

type authReq struct {
	ClientID, RedirectURI, ResponseType, Scope, State string
	Scopes                                            []string
}

var deadScopes = map[string]bool{"user_profile": true, "user_media": true, "business_basic": true,
	"business_content_publish": true, "business_manage_messages": true, "business_manage_comments": true}

var knownScopes = map[string]bool{ScopeBasic: true, "instagram_business_content_publish": true,
	"instagram_business_manage_messages": true, "instagram_business_manage_comments": true,
	"instagram_business_manage_insights": true}

// checkAuthorize validates the authorize parameters; a non-empty message
// means an error page, never a redirect.
func (s *Sandbox) checkAuthorize(v url.Values) (authReq, string) {
	ar := authReq{ClientID: v.Get("client_id"), RedirectURI: v.Get("redirect_uri"), ResponseType: v.Get("response_type"),
		Scope: v.Get("scope"), State: v.Get("state")}
	if ar.ClientID != s.opts.AppID {
		return ar, MsgInvalidApp
	}
	s.mu.Lock()
	registered := slices.Contains(s.opts.RedirectURIs, ar.RedirectURI)
	s.mu.Unlock()
	if !registered {
		return ar, "Invalid Request: Redirect URI does not match the registered redirect URIs for this app (it must match exactly, trailing slash included)."
	}
	if ar.ResponseType != "code" {
		return ar, "Invalid Request: response_type must be code."
	}
	var dead, unknown []string
	for _, sc := range strings.FieldsFunc(ar.Scope, func(r rune) bool { return r == ',' || r == ' ' }) {
		switch {
		case deadScopes[sc]:
			dead = append(dead, sc)
		case !knownScopes[sc]:
			unknown = append(unknown, sc)
		default:
			ar.Scopes = append(ar.Scopes, sc)
		}
	}
	switch {
	case len(dead) > 0:
		return ar, "Invalid Scopes: " + strings.Join(dead, ", ") + ". These scopes no longer exist; use " + ScopeBasic + "."
	case len(unknown) > 0:
		return ar, "Invalid Scopes: " + strings.Join(unknown, ", ") + "."
	case !slices.Contains(ar.Scopes, ScopeBasic):
		return ar, "Invalid Scopes: the request must include " + ScopeBasic + "."
	}
	return ar, ""
}

func (s *Sandbox) handleAuthorize(r *http.Request, rc *reqCtx) *response {
	var v url.Values
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		v = r.URL.Query()
	case http.MethodPost:
		r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			return s.errorPage(http.StatusBadRequest, "The form could not be read.")
		}
		v = r.PostForm
	default:
		return s.errorPage(http.StatusMethodNotAllowed, "Method not allowed.")
	}
	ar, msg := s.checkAuthorize(v)
	if msg != "" {
		return s.errorPage(http.StatusBadRequest, msg)
	}
	if r.Method != http.MethodPost {
		return s.consentPage(http.StatusOK, rc, ar, "", AccountBusiness)
	}
	switch v.Get("decision") {
	case "cancel":
		return redirectResponse(DenyURL(ar.RedirectURI, ar.State))
	case "allow":
	default:
		return s.consentPage(http.StatusBadRequest, rc, ar, "Choose Allow or Cancel.", v.Get("account"))
	}
	s.mu.Lock()
	a, err := s.lookupLocked(v.Get("account"))
	if err == nil {
		rc.account = a
		code := s.issueCodeLocked(a, ar.RedirectURI, ar.Scopes)
		s.mu.Unlock()
		return redirectResponse(redirectWith(ar.RedirectURI, url.Values{"code": {code}}, ar.State, "_"))
	}
	s.mu.Unlock()
	return s.consentPage(http.StatusBadRequest, rc, ar, "Choose an account to log in as.", "")
}

func redirectResponse(loc string) *response {
	resp := newResponse(http.StatusFound, "", nil)
	resp.header.Set("Location", loc)
	resp.header.Set("Cache-Control", "no-store")
	return resp
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>feedd sandbox — not Instagram</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;background:#f4f1ea;color:#222;margin:0}
main{max-width:28rem;margin:3rem auto;background:#fff;border:3px dashed #c60;border-radius:12px;padding:1.5rem}
.banner{background:#c60;color:#fff;font-weight:700;padding:.4rem .8rem;border-radius:6px;text-align:center}
label{display:block;padding:.5rem;border:1px solid #ddd;border-radius:6px;margin:.4rem 0}
small{color:#666}.err{color:#a00;font-weight:600}
button{font:inherit;padding:.5rem 1.2rem;margin-right:.5rem;border-radius:6px;border:1px solid #888;background:#eee}
button.allow{background:#1a6;color:#fff;border-color:#1a6}
code{background:#f2f2f2;padding:0 .2rem}
</style></head><body><main>
<p class="banner">feedd sandbox — not Instagram</p>
{{if .Error}}<h1>Something went wrong</h1><p class="err">{{.Error}}</p>
<p><small>This is a pretend login page that feedd's sandbox shows in place of Instagram's. Nothing here talks to Meta.</small></p>
{{else}}<h1>Log in to the sandbox</h1>
<p>App <code>{{.AppID}}</code> asks for <code>{{.Scope}}</code>: to read your profile and your posts.</p>
{{if .Notice}}<p class="err">{{.Notice}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="client_id" value="{{.Req.ClientID}}">
<input type="hidden" name="redirect_uri" value="{{.Req.RedirectURI}}">
<input type="hidden" name="response_type" value="{{.Req.ResponseType}}">
<input type="hidden" name="scope" value="{{.Req.Scope}}">
<input type="hidden" name="state" value="{{.Req.State}}">
<fieldset><legend>Log in as</legend>
{{range .Accounts}}<label><input type="radio" name="account" value="{{.Username}}"{{if .Checked}} checked{{end}}> <b>@{{.Username}}</b> — {{.Name}} <small>({{.Type}})</small></label>
{{end}}</fieldset>
<p><button class="allow" type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="cancel">Cancel</button></p>
</form>
<p><small>A pretend login page served by feedd's sandbox. No password, no Meta.</small></p>
{{end}}</main></body></html>
`))

type pageAccount struct {
	Username, Name, Type string
	Checked              bool
}

type pageData struct {
	Error, Notice, AppID, Scope, Action string
	Req                                 authReq
	Accounts                            []pageAccount
}

func (s *Sandbox) consentPage(status int, rc *reqCtx, ar authReq, notice, checked string) *response {
	d := pageData{Notice: notice, AppID: s.opts.AppID, Scope: strings.Join(ar.Scopes, ", "), Req: ar,
		Action: rc.base + "/www/oauth/authorize"}
	for _, a := range s.Accounts() {
		typ := strings.ToLower(strings.ReplaceAll(a.AccountType, "_", " ")) + " account"
		d.Accounts = append(d.Accounts, pageAccount{Username: a.Username, Name: a.Name, Type: typ, Checked: a.Username == checked})
	}
	return renderPage(status, d)
}

func (s *Sandbox) errorPage(status int, msg string) *response {
	return renderPage(status, pageData{Error: msg})
}

func renderPage(status int, d pageData) *response {
	var b bytes.Buffer
	if err := pageTmpl.Execute(&b, d); err != nil {
		return newResponse(http.StatusInternalServerError, "text/plain; charset=utf-8", []byte("feedd sandbox: page failed\n"))
	}
	resp := newResponse(status, "text/html; charset=utf-8", b.Bytes())
	resp.header.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'")
	resp.header.Set("Cache-Control", "no-store")
	resp.header.Set("Referrer-Policy", "no-referrer")
	return resp
}

// ---- token host (api host): code -> short-lived token ----

func tokenHostError(msg string) *response {
	body, _ := json.Marshal(struct {
		ErrorType    string `json:"error_type"`
		Code         int    `json:"code"`
		ErrorMessage string `json:"error_message"`
	}{"OAuthException", 400, msg})
	return newResponse(http.StatusBadRequest, "application/json; charset=UTF-8", body)
}

func (s *Sandbox) handleTokenHost(r *http.Request, rc *reqCtx) *response {
	if r.Method != http.MethodPost {
		return tokenHostError("Unsupported request - method type: " + strings.ToLower(r.Method))
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return tokenHostError("Invalid request body")
	}
	f := r.PostForm // fields in the query string do not count, as on the real host
	for _, k := range []string{"client_id", "client_secret", "grant_type", "redirect_uri", "code"} {
		if f.Get(k) == "" {
			return tokenHostError("Missing required field " + k)
		}
	}
	if f.Get("client_id") != s.opts.AppID {
		return tokenHostError(MsgInvalidApp)
	}
	if !hmac.Equal([]byte(f.Get("client_secret")), []byte(s.opts.AppSecret)) {
		return tokenHostError(MsgBadClientSecret)
	}
	if f.Get("grant_type") != "authorization_code" {
		return tokenHostError("Unsupported grant_type: grant_type must be authorization_code")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.codes[f.Get("code")]
	if !ok || c.used || c.clientID != f.Get("client_id") {
		return tokenHostError(MsgCodeNotFound)
	}
	rc.account = c.acct
	now := s.now()
	if !now.Before(c.issuedAt.Add(CodeTTL)) {
		c.used = true
		return tokenHostError(MsgCodeExpired)
	}
	if c.redirectURI != f.Get("redirect_uri") {
		return tokenHostError(MsgRedirectMismatch)
	}
	c.used = true
	tok, _ := s.issueTokenLocked(c.acct, false, now, ShortTokenTTL)

	shape := c.acct.tokenShape
	if shape == TokenShapeDefault {
		shape = s.tokenShape
	}
	var body []byte
	if shape == TokenShapeData {
		body, _ = json.Marshal(map[string]any{"data": []any{map[string]any{
			"access_token": tok, "user_id": c.acct.id, "permissions": strings.Join(c.scopes, ","),
		}}})
	} else {
		// user_id as a bare JSON number far above 2^53, as live traffic sends it.
		body, _ = json.Marshal(struct {
			AccessToken string      `json:"access_token"`
			UserID      json.Number `json:"user_id"`
			Permissions []string    `json:"permissions"`
		}{tok, json.Number(c.acct.id), c.scopes})
	}
	resp := newResponse(http.StatusOK, "application/json; charset=UTF-8", body)
	resp.header.Set("Cache-Control", "no-store")
	return resp
}

// ---- graph host: exchange and refresh ----

func tokenResponse(tok string, ttl time.Duration) *response {
	body, _ := json.Marshal(struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
	}{tok, "bearer", int64(ttl / time.Second)})
	resp := newResponse(http.StatusOK, "application/json; charset=UTF-8", body)
	resp.header.Set("Cache-Control", "no-store")
	return resp
}

func unsupportedMethod(r *http.Request, object string) *apiError {
	return &apiError{code: 100, subcode: 33, typ: "GraphMethodException",
		msg: fmt.Sprintf("Unsupported %s request. Object with ID '%s' does not exist, cannot be loaded due to missing permissions, or does not support this operation.",
			strings.ToLower(r.Method), object)}
}

func (s *Sandbox) handleExchange(r *http.Request, rc *reqCtx) *response {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return graphErrorResponse(unsupportedMethod(r, "access_token"))
	}
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, aerr := s.tokenLocked(q.Get("access_token"), rc)
	if aerr == nil {
		aerr = s.throttledLocked(t.acct)
	}
	switch {
	case aerr != nil:
	case q.Get("grant_type") != "ig_exchange_token":
		aerr = &apiError{code: 100, typ: "OAuthException", msg: "(#100) Param grant_type must be ig_exchange_token"}
	case !hmac.Equal([]byte(q.Get("client_secret")), []byte(s.opts.AppSecret)):
		aerr = &apiError{code: 101, typ: "OAuthException", msg: MsgBadClientSecret}
	case t.long:
		aerr = &apiError{code: 100, typ: "OAuthException", msg: "(#100) The access token is already long-lived; only a short-lived token can be exchanged"}
	}
	if aerr != nil {
		return graphErrorResponse(aerr)
	}
	ttl := s.longLivedTTLLocked()
	tok, _ := s.issueTokenLocked(t.acct, true, s.now(), ttl)
	return tokenResponse(tok, ttl)
}

func (s *Sandbox) handleRefresh(r *http.Request, rc *reqCtx) *response {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return graphErrorResponse(unsupportedMethod(r, "refresh_access_token"))
	}
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, aerr := s.tokenLocked(q.Get("access_token"), rc)
	if aerr == nil {
		aerr = s.throttledLocked(t.acct)
	}
	now := s.now()
	switch {
	case aerr != nil:
	case q.Get("grant_type") != "ig_refresh_token":
		aerr = &apiError{code: 100, typ: "OAuthException", msg: "(#100) Param grant_type must be ig_refresh_token"}
	case !t.long || now.Sub(t.issuedAt) < RefreshMinAge:
		// A short-lived token is under an hour old, so it meets the same refusal.
		aerr = &apiError{code: 100, typ: "OAuthException", msg: MsgTooYoung}
	}
	if aerr != nil {
		return graphErrorResponse(aerr)
	}
	ttl := s.longLivedTTLLocked()
	tok, _ := s.issueTokenLocked(t.acct, true, now, ttl)
	if !s.opts.RefreshKeepsOldToken {
		t.superseded = true
	}
	return tokenResponse(tok, ttl)
}

// tokenLocked resolves an access token, noting its account on rc even when
// the token is dead (usage headers and call records name it).
func (s *Sandbox) tokenLocked(str string, rc *reqCtx) (*token, *apiError) {
	if str == "" {
		return nil, &apiError{code: 2500, typ: "OAuthException", msg: "An active access token must be used to query information about the current user."}
	}
	t, ok := s.tokens[str]
	if !ok {
		t, ok = s.openTokenLocked(str)
	}
	if !ok {
		return nil, &apiError{code: 190, typ: "OAuthException", msg: "Invalid OAuth access token - Cannot parse access token"}
	}
	rc.account = t.acct
	now := s.now()
	switch {
	case t.revoked:
		return nil, &apiError{code: 190, subcode: 460, typ: "OAuthException",
			msg: "Error validating access token: The session has been invalidated because the user changed their password or Meta has changed the session for security reasons."}
	case !now.Before(t.expiresAt):
		const layout = "Monday, 02-Jan-06 15:04:05 MST"
		return nil, &apiError{code: 190, subcode: 463, typ: "OAuthException",
			msg: fmt.Sprintf("Error validating access token: Session has expired on %s. The current time is %s.",
				t.expiresAt.UTC().Format(layout), now.UTC().Format(layout))}
	case t.superseded:
		return nil, &apiError{code: 190, subcode: 467, typ: "OAuthException",
			msg: "Error validating access token: The session is invalid because a newer access token replaced this one."}
	}
	return t, nil
}
