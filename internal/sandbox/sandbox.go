// Package sandbox is a fake of the Instagram platform that feedd talks to:
// the authorize page, the token host, the Graph API (/me, /me/media, token
// exchange and refresh) and a CDN of signed image URLs. It is an
// http.Handler used by tests and by `feedd demo`; it never calls Meta.
//
// The sandbox copies the real platform's quirks on purpose (big numeric user
// ids, two token response shapes, absent optional fields, +0000 timestamps,
// signed URLs that expire) so that a client that works here works there.
package sandbox

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Errors returned by the sandbox's Go API.
var (
	ErrUnknownAccount = errors.New("sandbox: unknown account")
	ErrUnknownPost    = errors.New("sandbox: unknown post")
	ErrRedirectURI    = errors.New("sandbox: redirect_uri is not registered")
	ErrInvalidPost    = errors.New("sandbox: invalid post")
	ErrInvalidBaseURL = errors.New("sandbox: invalid base URL")
)

// Usernames of the seeded accounts.
const (
	// AccountBusiness is a BUSINESS account with about 60 posts, so paging past 50 matters.
	AccountBusiness = "sandbox_bakery"
	// AccountCreator is a MEDIA_CREATOR account with a handful of posts.
	AccountCreator = "sandbox_studio"
	// AccountPersonal is a PERSONAL account, which feedd must refuse to connect.
	AccountPersonal = "sandbox_personal"
)

// Endpoint names recorded in Call.Endpoint.
const (
	EndpointAuthorize = "authorize"
	EndpointToken     = "token"    // api host: code -> short-lived token
	EndpointExchange  = "exchange" // graph: ig_exchange_token
	EndpointRefresh   = "refresh"  // graph: ig_refresh_token
	EndpointMe        = "me"
	EndpointMedia     = "media"      // /me/media
	EndpointMediaNode = "media_node" // /{media-id}
	EndpointCDN       = "cdn"
	EndpointPermalink = "permalink"
	EndpointUnknown   = "unknown"
)

// TokenShape selects how the token host answers a code exchange.
type TokenShape int

const (
	// TokenShapeDefault means "inherit": the sandbox-wide shape for an account, flat for the sandbox.
	TokenShapeDefault TokenShape = iota
	// TokenShapeFlat is what live traffic shows: {"access_token","user_id":<big number>,"permissions":[...]}.
	TokenShapeFlat
	// TokenShapeData is the documented shape: {"data":[{"access_token","user_id":"...","permissions":"a,b"}]}.
	TokenShapeData
)

// OutageMode selects how requests fail while an outage is on.
type OutageMode int

const (
	// OutageServerError answers 503 with a transient Graph error (code 2).
	OutageServerError OutageMode = iota
	// OutageDropConnection closes the connection without an answer.
	OutageDropConnection
)

// Options configure a Sandbox. The zero value works: it serves at the root of
// whatever host it is reached on, with a built-in app id and secret.
type Options struct {
	AppID        string   // Instagram app id expected as client_id; default DefaultAppID
	AppSecret    string   // app secret; default DefaultAppSecret
	RedirectURIs []string // registered redirect URIs, matched exactly (trailing slash included)
	// BaseURL is the externally visible base of the sandbox, e.g.
	// http://127.0.0.1:8080/sandbox. Its path is also accepted as a mount
	// prefix. Empty: derived per request from the Host header, served at root.
	BaseURL string
	Now     func() time.Time // clock for every expiry decision; default time.Now
	Seed    uint64           // seeds ids, captions and pictures deterministically
	Logger  *slog.Logger     // default discards

	TokenShape            TokenShape    // code exchange response shape; default flat
	RefreshKeepsOldToken  bool          // when false (the default) a refresh kills the old token string
	MediaURLTTL           time.Duration // lifetime of minted image URLs; default 72h
	VideoCoverTTL         time.Duration // lifetime of minted video cover URLs; default 24h
	AccountCallBudget     int           // calls per account per rolling 24h that make 100% usage; default 1000
	AppCallBudget         int           // calls per app per rolling hour that make 100% usage; default 2000
	DisableImageGenerator bool          // serve a tiny placeholder JPEG instead of drawing (benchmarks of others)
	// TokenKey, when set, seals the account and lifetime into each token
	// string so that a sandbox restarted with the same key accepts the
	// tokens an earlier run issued (the demo with --data-dir).
	TokenKey []byte
}

// Defaults used when Options leave them empty.
const (
	DefaultAppID     = "990011223344556"
	DefaultAppSecret = "5a6e6462c0ffee5eed5a6e6462c0ffee" // 32 hex characters, like a real Instagram app secret
)

// Account describes a seeded account.
type Account struct {
	ID             string // app-scoped id: the token exchange's user_id and /me id
	UserID         string // professional account id (17841...)
	Username       string
	Name           string
	AccountType    string // BUSINESS, MEDIA_CREATOR or PERSONAL
	FollowersCount int
	FollowsCount   int
	MediaCount     int // posts currently visible
}

// Call records one request the sandbox received. It never holds a token,
// code or secret: Path has no query string.
type Call struct {
	Time     time.Time
	Method   string
	Path     string
	Endpoint string
	Account  string // username of the account the request acted for, "" if unknown
	Status   int    // 0 when the connection was dropped
}

// Sandbox is a fake Instagram platform. Its methods are safe for concurrent use.
type Sandbox struct {
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	prefix string // path of BaseURL, "" or "/x"
	cdnKey []byte

	mu                sync.Mutex
	baseURL           string
	rng               *rand.Rand
	accounts          []*account
	byKey             map[string]*account
	tokens            map[string]*token
	codes             map[string]*authCode
	media             map[string]*post     // media id -> post, children included
	images            map[string]imageSpec // CDN path -> what to draw
	calls             []Call
	appCalls          []time.Time
	outage            bool
	outageMode        OutageMode
	latency           time.Duration
	appThrottledUntil time.Time
	tokenShape        TokenShape
	mediaTTL          time.Duration
	coverTTL          time.Duration
	urlGen            int    // bumped by ExpireMediaURLs; older URLs then read as expired
	videoBody         []byte // SetVideoFile; nil: the sample clip
	videoType         string

	imgMu    sync.Mutex
	imgCache map[string][]byte
	imgSF    singleflight.Group
}

// New builds a Sandbox seeded with its demo accounts.
func New(opts Options) *Sandbox {
	if opts.AppID == "" {
		opts.AppID = DefaultAppID
	}
	if opts.AppSecret == "" {
		opts.AppSecret = DefaultAppSecret
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MediaURLTTL == 0 {
		opts.MediaURLTTL = 72 * time.Hour
	}
	if opts.VideoCoverTTL == 0 {
		opts.VideoCoverTTL = 24 * time.Hour
	}
	if opts.AccountCallBudget <= 0 {
		opts.AccountCallBudget = 1000
	}
	if opts.AppCallBudget <= 0 {
		opts.AppCallBudget = 2000
	}
	if opts.TokenShape == TokenShapeDefault {
		opts.TokenShape = TokenShapeFlat
	}
	opts.RedirectURIs = append([]string(nil), opts.RedirectURIs...)
	keySum := sha256.Sum256([]byte(fmt.Sprintf("feedd-sandbox-cdn|%d|%s", opts.Seed, opts.AppSecret)))
	s := &Sandbox{
		opts:       opts,
		log:        opts.Logger,
		now:        opts.Now,
		cdnKey:     keySum[:],
		rng:        rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		byKey:      map[string]*account{},
		tokens:     map[string]*token{},
		codes:      map[string]*authCode{},
		media:      map[string]*post{},
		images:     map[string]imageSpec{},
		tokenShape: opts.TokenShape,
		mediaTTL:   opts.MediaURLTTL,
		coverTTL:   opts.VideoCoverTTL,
		imgCache:   map[string][]byte{},
	}
	if opts.BaseURL != "" {
		if err := s.SetBaseURL(opts.BaseURL); err != nil {
			s.log.Warn("sandbox base url ignored", slog.Any("error", err))
		}
	}
	s.seed()
	return s
}

// SetBaseURL sets the externally visible base URL, for callers that learn it
// only after listening (httptest.NewServer). Its path becomes the mount prefix.
func (s *Sandbox) SetBaseURL(base string) error {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%w: %q must be an absolute http(s) URL without query", ErrInvalidBaseURL, base)
	}
	b := strings.TrimRight(u.String(), "/")
	s.mu.Lock()
	s.baseURL = b
	s.prefix = strings.TrimRight(u.Path, "/")
	s.mu.Unlock()
	return nil
}

// BaseURL returns the configured base URL ("" when derived per request).
func (s *Sandbox) BaseURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseURL
}

// AuthorizeURL is the authorize page, for FEEDD_INSTAGRAM_AUTHORIZE_URL.
func (s *Sandbox) AuthorizeURL() string { return s.BaseURL() + "/www/oauth/authorize" }

// TokenURL is the code exchange endpoint, for FEEDD_INSTAGRAM_TOKEN_URL.
func (s *Sandbox) TokenURL() string { return s.BaseURL() + "/api/oauth/access_token" }

// GraphURL is the Graph root (without version), for FEEDD_INSTAGRAM_GRAPH_URL.
func (s *Sandbox) GraphURL() string { return s.BaseURL() + "/graph" }

// AppID returns the Instagram app id the sandbox accepts.
func (s *Sandbox) AppID() string { return s.opts.AppID }

// AppSecret returns the app secret the sandbox accepts.
func (s *Sandbox) AppSecret() string { return s.opts.AppSecret }

// RedirectURIs returns the registered redirect URIs.
func (s *Sandbox) RedirectURIs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.opts.RedirectURIs...)
}

// AddRedirectURI registers one more redirect URI (exact match).
func (s *Sandbox) AddRedirectURI(uri string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.RedirectURIs = append(s.opts.RedirectURIs, uri)
}

// requestBase is the base URL for links in a response: the configured one,
// else scheme://host of the request.
func (s *Sandbox) requestBase(r *http.Request) string {
	s.mu.Lock()
	b := s.baseURL
	s.mu.Unlock()
	if b != "" {
		return b
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// response is what a handler produces; the dispatcher records the call
// before writing it, so Calls() already holds a call once its answer arrives.
type response struct {
	status int
	header http.Header
	body   []byte
}

func newResponse(status int, contentType string, body []byte) *response {
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return &response{status: status, header: h, body: body}
}

// reqCtx carries per-request facts handlers learn (the account acted for).
type reqCtx struct {
	base    string
	path    string // request path without the mount prefix
	account *account
}

type route struct {
	endpoint string
	handle   func(*Sandbox, *http.Request, *reqCtx) *response
	graph    bool // Graph host: usage headers and Graph error envelope
}

// ServeHTTP serves every sandbox endpoint. It accepts paths with or without
// the BaseURL path prefix, so it works mounted under http.StripPrefix or not.
func (s *Sandbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	p := r.URL.Path
	s.mu.Lock()
	prefix := s.prefix
	outage, mode, latency := s.outage, s.outageMode, s.latency
	s.mu.Unlock()
	if prefix != "" && (p == prefix || strings.HasPrefix(p, prefix+"/")) {
		p = strings.TrimPrefix(p, prefix)
	}
	rt := s.route(p)
	rc := &reqCtx{base: s.requestBase(r), path: p}

	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			s.record(Call{Time: start, Method: r.Method, Path: r.URL.Path, Endpoint: rt.endpoint})
			return
		}
	}

	var resp *response
	if outage {
		if mode == OutageDropConnection {
			s.record(Call{Time: start, Method: r.Method, Path: r.URL.Path, Endpoint: rt.endpoint})
			dropConnection(w)
			return
		}
		resp = outageResponse(rt.graph)
	} else {
		resp = rt.handle(s, r, rc)
	}
	if rt.graph {
		s.addUsageHeaders(resp, rc.account)
	}
	name := ""
	if rc.account != nil {
		name = rc.account.username
	}
	s.record(Call{Time: start, Method: r.Method, Path: r.URL.Path, Endpoint: rt.endpoint, Account: name, Status: resp.status})
	s.log.LogAttrs(r.Context(), slog.LevelDebug, "sandbox request",
		slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.String("endpoint", rt.endpoint), slog.String("account", name), slog.Int("status", resp.status))

	for k, v := range resp.header {
		w.Header()[k] = v
	}
	if resp.header.Get("Content-Type") != "" {
		w.Header().Set("X-Content-Type-Options", "nosniff")
	}
	w.WriteHeader(resp.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(resp.body)
	}
}

func (s *Sandbox) route(p string) route {
	switch {
	case p == "/www/oauth/authorize" || p == "/www/oauth/authorize/":
		return route{endpoint: EndpointAuthorize, handle: (*Sandbox).handleAuthorize}
	case strings.HasPrefix(p, "/www/p/") || strings.HasPrefix(p, "/www/reel/"):
		return route{endpoint: EndpointPermalink, handle: (*Sandbox).handlePermalink}
	case p == "/api/oauth/access_token" || p == "/api/oauth/access_token/":
		return route{endpoint: EndpointToken, handle: (*Sandbox).handleTokenHost}
	case p == "/graph/access_token":
		return route{endpoint: EndpointExchange, handle: (*Sandbox).handleExchange, graph: true}
	case p == "/graph/refresh_access_token":
		return route{endpoint: EndpointRefresh, handle: (*Sandbox).handleRefresh, graph: true}
	case strings.HasPrefix(p, "/graph/"):
		return s.graphRoute(p)
	case strings.HasPrefix(p, "/cdn/"):
		return route{endpoint: EndpointCDN, handle: (*Sandbox).handleCDN}
	}
	return route{endpoint: EndpointUnknown, handle: func(*Sandbox, *http.Request, *reqCtx) *response {
		return newResponse(http.StatusNotFound, "text/plain; charset=utf-8", []byte("feedd sandbox: not found\n"))
	}}
}

func (s *Sandbox) record(c Call) {
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.mu.Unlock()
}

func outageResponse(graph bool) *response {
	if graph {
		return graphErrorResponse(&apiError{status: http.StatusServiceUnavailable, code: 2, typ: "OAuthException", transient: true,
			msg: "An unexpected error has occurred. Please retry your request later."})
	}
	return newResponse(http.StatusServiceUnavailable, "text/plain; charset=utf-8", []byte("Service Unavailable\n"))
}

// dropConnection closes the client connection without an answer, which a
// client sees as a reset or an unexpected EOF.
func dropConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// Calls returns a copy of the requests received so far, oldest first.
func (s *Sandbox) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// ResetCalls forgets the recorded calls (usage counters are kept).
func (s *Sandbox) ResetCalls() {
	s.mu.Lock()
	s.calls = nil
	s.mu.Unlock()
}

// SetOutage turns a full outage on or off: every endpoint fails.
func (s *Sandbox) SetOutage(on bool) {
	s.mu.Lock()
	s.outage = on
	s.mu.Unlock()
}

// SetOutageMode selects how an outage fails (5xx answers or dropped connections).
func (s *Sandbox) SetOutageMode(m OutageMode) {
	s.mu.Lock()
	s.outageMode = m
	s.mu.Unlock()
}

// SetLatency delays every answer by d (0 turns it off). A request whose
// context ends while waiting gets no answer.
func (s *Sandbox) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// SetTokenShape sets the sandbox-wide code exchange response shape.
func (s *Sandbox) SetTokenShape(shape TokenShape) {
	if shape == TokenShapeDefault {
		shape = TokenShapeFlat
	}
	s.mu.Lock()
	s.tokenShape = shape
	s.mu.Unlock()
}

// SetAccountTokenShape overrides the code exchange shape for one account
// (TokenShapeDefault goes back to the sandbox-wide shape).
func (s *Sandbox) SetAccountTokenShape(acct string, shape TokenShape) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.lookupLocked(acct)
	if err != nil {
		return err
	}
	a.tokenShape = shape
	return nil
}

// SetMediaURLTTL sets the lifetime of URLs minted from now on for images and
// video covers. Zero or negative values mint URLs that are already expired.
func (s *Sandbox) SetMediaURLTTL(image, videoCover time.Duration) {
	s.mu.Lock()
	s.mediaTTL, s.coverTTL = image, videoCover
	s.mu.Unlock()
}

// ExpireMediaURLs makes every URL minted so far answer 403 "URL signature
// expired"; URLs minted afterwards work.
func (s *Sandbox) ExpireMediaURLs() {
	s.mu.Lock()
	s.urlGen++
	s.mu.Unlock()
}

// Throttle makes Graph calls for acct fail with code 80002 and usage headers
// at 100% until regainAfter has passed on the sandbox clock.
func (s *Sandbox) Throttle(acct string, regainAfter time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.lookupLocked(acct)
	if err != nil {
		return err
	}
	a.throttledUntil = s.now().Add(regainAfter)
	return nil
}

// ThrottleApp makes every Graph call fail with code 4 (application request
// limit) until regainAfter has passed on the sandbox clock.
func (s *Sandbox) ThrottleApp(regainAfter time.Duration) {
	s.mu.Lock()
	s.appThrottledUntil = s.now().Add(regainAfter)
	s.mu.Unlock()
}

// RevokeTokens kills every token issued so far for acct ("" for all
// accounts), as a password change would: Graph answers 190/460.
func (s *Sandbox) RevokeTokens(acct string) error {
	return s.eachToken(acct, func(t *token) { t.revoked = true })
}

// ExpireTokens makes every token issued so far for acct ("" for all) expired
// now: Graph answers 190/463 and refresh is refused.
func (s *Sandbox) ExpireTokens(acct string) error {
	return s.eachToken(acct, func(t *token) {
		if now := s.now(); t.expiresAt.After(now) {
			t.expiresAt = now
		}
	})
}

func (s *Sandbox) eachToken(acct string, fn func(*token)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var a *account
	if acct != "" {
		var err error
		if a, err = s.lookupLocked(acct); err != nil {
			return err
		}
	}
	for _, t := range s.tokens {
		if a == nil || t.acct == a {
			fn(t)
		}
	}
	return nil
}

// Accounts lists the seeded accounts.
func (s *Sandbox) Accounts() []Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Account, 0, len(s.accounts))
	for _, a := range s.accounts {
		out = append(out, a.public())
	}
	return out
}

// Account returns one account by username, app-scoped id or professional id.
func (s *Sandbox) Account(acct string) (Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.lookupLocked(acct)
	if err != nil {
		return Account{}, err
	}
	return a.public(), nil
}

func (s *Sandbox) lookupLocked(acct string) (*account, error) {
	if a, ok := s.byKey[acct]; ok {
		return a, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownAccount, acct)
}

// randomString returns n characters of [A-Za-z0-9] from the seeded generator.
func (s *Sandbox) randomStringLocked(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[s.rng.IntN(len(alphabet))]
	}
	return string(b)
}

// hash64 gives a stable number for a string (picture variety).
func hash64(parts ...string) uint64 {
	h := sha256.New()
	for _, p := range parts {
		_, _ = io.WriteString(h, p)
		_, _ = h.Write([]byte{0})
	}
	return binary.BigEndian.Uint64(h.Sum(nil))
}
