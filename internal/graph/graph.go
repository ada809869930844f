// Package graph is feedd's client for Instagram API with Instagram Login:
// the OAuth token ladder, /me and /me/media, with tolerant decoding of the
// platform's quirks, typed errors, rate-limit bookkeeping and redaction of
// every secret. It knows nothing of HTTP servers or storage.
package graph

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Production endpoints and defaults.
const (
	DefaultAuthorizeURL = "https://www.instagram.com/oauth/authorize"
	DefaultTokenURL     = "https://api.instagram.com/oauth/access_token"
	DefaultGraphURL     = "https://graph.instagram.com"
	DefaultAPIVersion   = "v25.0"
	// Scope is the only permission feedd asks for (least privilege).
	Scope = "instagram_business_basic"
	// DefaultRetryBudget bounds the quick retries of one call.
	DefaultRetryBudget = 10 * time.Second
	// DefaultUsageHighWater is the usage percentage at which feedd stops calling.
	DefaultUsageHighWater = 90
	// DefaultAccountRate is the calls per second one Instagram account gets
	// (FEEDD_GRAPH_ACCOUNT_RATE's default): a feed polls once per interval,
	// so this leaves room for dozens of feeds on one account.
	DefaultAccountRate = 0.2
	// DefaultAccountBurst is how many calls for one account may go out at
	// once (a connect, a poll with its profile read and a token refresh).
	DefaultAccountBurst = 10
	// MaxBodyBytes bounds a response body.
	MaxBodyBytes = 4 << 20
)

// Endpoint names, used in errors, logs and metric labels.
const (
	endpointCode     = "code"
	endpointExchange = "exchange"
	endpointRefresh  = "refresh"
	endpointMe       = "me"
	endpointMedia    = "media"
)

// MediaFields is what Media asks for: one call, children expanded inline.
const MediaFields = "id,caption,media_type,media_url,permalink,thumbnail_url,timestamp,username," +
	"like_count,comments_count,alt_text,children{id,media_type,media_url,thumbnail_url,alt_text}"

// ProfileFields is what Me asks for.
const ProfileFields = "id,user_id,username,name,account_type,profile_picture_url,followers_count,follows_count,media_count"

// Config wires a Client. Zero values get production defaults.
type Config struct {
	AppID        string // the Instagram app id (not the Meta app id)
	AppSecret    string // the Instagram app secret
	RedirectURI  string // must equal a registered one exactly
	AuthorizeURL string
	TokenURL     string
	GraphURL     string
	APIVersion   string // e.g. v25.0
	HTTPClient   *http.Client
	// Limiter is the optional app-wide ceiling on outbound calls
	// (FEEDD_GRAPH_RATE), on top of each account's own budget; nil: none.
	Limiter *rate.Limiter
	// AccountRate is the calls per second allowed for one Instagram account
	// (default DefaultAccountRate), in bursts of up to AccountBurst (default
	// DefaultAccountBurst). It slows down as the account's usage header
	// climbs past half of UsageHighWater.
	AccountRate  float64
	AccountBurst int
	Now          func() time.Time
	// Sleep waits between retries; it must return ctx.Err() when ctx ends first. Tests record durations here.
	Sleep      func(ctx context.Context, d time.Duration) error
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are kept but not registered
	// RetryBudget bounds the quick retries of one call (default 10s).
	RetryBudget time.Duration
	// UsageHighWater is the usage percentage that pauses calls (default 90).
	UsageHighWater float64
}

// Client talks to Instagram. It is safe for concurrent use.
type Client struct {
	appID, appSecret, redirectURI string
	authorizeURL, tokenURL        *url.URL
	graphURL                      *url.URL
	graphBase                     string // GraphURL without trailing slash
	version                       string
	hc                            *http.Client
	limiter                       *rate.Limiter
	now                           func() time.Time
	sleep                         func(context.Context, time.Duration) error
	log                           *slog.Logger
	budget                        time.Duration
	highWater                     float64
	acctRate                      float64
	acctBurst                     int
	metrics                       *metrics

	mu        sync.Mutex
	until     map[string]time.Time  // throttle blocks by account id (appKey: app-wide)
	strikes   map[string]int        // consecutive throttles, for the back-off when no regain time is known
	accounts  map[string]*acctLimit // each account's own budget
	lastSweep time.Time             // of idle account budgets
}

var versionRe = regexp.MustCompile(`^v[0-9]{1,3}\.[0-9]{1,2}$`)

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	c := &Client{
		appID: cfg.AppID, appSecret: cfg.AppSecret, redirectURI: cfg.RedirectURI,
		version: cfg.APIVersion, hc: cfg.HTTPClient, limiter: cfg.Limiter, now: cfg.Now,
		sleep: cfg.Sleep, log: cfg.Logger, budget: cfg.RetryBudget, highWater: cfg.UsageHighWater,
		acctRate: cfg.AccountRate, acctBurst: cfg.AccountBurst,
		until: map[string]time.Time{}, strikes: map[string]int{}, accounts: map[string]*acctLimit{},
	}
	var err error
	if c.authorizeURL, err = parseBase("AuthorizeURL", cfg.AuthorizeURL, DefaultAuthorizeURL); err != nil {
		return nil, err
	}
	if c.tokenURL, err = parseBase("TokenURL", cfg.TokenURL, DefaultTokenURL); err != nil {
		return nil, err
	}
	if c.graphURL, err = parseBase("GraphURL", cfg.GraphURL, DefaultGraphURL); err != nil {
		return nil, err
	}
	c.graphBase = strings.TrimRight(c.graphURL.String(), "/")
	if c.version == "" {
		c.version = DefaultAPIVersion
	}
	if !versionRe.MatchString(c.version) {
		return nil, fmt.Errorf("graph: APIVersion %q: want a version like %s", c.version, DefaultAPIVersion)
	}
	if c.appID != "" && !isDigits([]byte(c.appID)) {
		return nil, fmt.Errorf("graph: AppID must be the numeric Instagram app id")
	}
	if c.hc == nil {
		c.hc = &http.Client{Timeout: 30 * time.Second}
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.sleep == nil {
		c.sleep = Sleep
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.budget <= 0 {
		c.budget = DefaultRetryBudget
	}
	if c.highWater <= 0 || c.highWater > 100 {
		c.highWater = DefaultUsageHighWater
	}
	if c.acctRate <= 0 {
		c.acctRate = DefaultAccountRate
	}
	if c.acctBurst < 1 {
		c.acctBurst = DefaultAccountBurst
	}
	if c.metrics, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	return c, nil
}

func parseBase(name, raw, def string) (*url.URL, error) {
	if raw == "" {
		raw = def
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("graph: %s %q: want an absolute http(s) URL", name, Redact(raw))
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("graph: %s %q: want no query, fragment or user info", name, Redact(raw))
	}
	return u, nil
}

// Sleep waits d or until ctx ends, then returns ctx's error, if any. A wait
// of nothing returns at once, with ctx's error if it has ended. It is the
// default of Config.Sleep, and of the waits of the services built on the
// client.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// AuthorizeURL returns where to send the owner to approve feedd.
// Instagram approves for whichever account is logged in in the browser;
// forceReauth asks it for its login screen instead, so the owner can
// choose another account.
func (c *Client) AuthorizeURL(state string, forceReauth bool) string {
	u := *c.authorizeURL
	q := url.Values{}
	q.Set("client_id", c.appID)
	q.Set("redirect_uri", c.redirectURI)
	q.Set("response_type", "code")
	q.Set("scope", Scope)
	q.Set("state", state)
	if forceReauth {
		q.Set("force_reauth", "true")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// ExchangeCode trades an authorization code for a short-lived token. The
// code works once, so the call is not retried once it may have reached
// the token host.
func (c *Client) ExchangeCode(ctx context.Context, code string) (ShortLived, error) {
	code = strings.TrimSpace(code)
	if i := strings.IndexByte(code, '#'); i >= 0 {
		code = code[:i] // the redirect's "#_" is not part of the code
	}
	if code == "" {
		return ShortLived{}, errorf(KindCodeInvalid, endpointCode, "empty authorization code")
	}
	if c.appID == "" || c.appSecret == "" {
		return ShortLived{}, errorf(KindInvalidApp, endpointCode, "app id and secret are not configured")
	}
	if c.redirectURI == "" {
		return ShortLived{}, errorf(KindRedirectMismatch, endpointCode, "redirect URI is not configured")
	}
	form := url.Values{}
	form.Set("client_id", c.appID)
	form.Set("client_secret", c.appSecret)
	form.Set("grant_type", "authorization_code")
	form.Set("redirect_uri", c.redirectURI)
	form.Set("code", code)
	var out ShortLived
	err := c.do(ctx, request{
		endpoint: endpointCode, method: http.MethodPost, url: c.tokenURL.String(), form: form,
		secrets: []string{code, c.appSecret},
	}, func(b *body) (err error) {
		out, err = decodeShortLived(b)
		return err
	})
	return out, err
}

// ExchangeLongLived trades a short-lived token for a long-lived (about 60-day) one.
func (c *Client) ExchangeLongLived(ctx context.Context, shortToken string) (Token, error) {
	if shortToken == "" {
		return Token{}, errorf(KindTokenInvalid, endpointExchange, "empty token")
	}
	if c.appSecret == "" {
		return Token{}, errorf(KindInvalidApp, endpointExchange, "app secret is not configured")
	}
	q := url.Values{}
	q.Set("grant_type", "ig_exchange_token")
	q.Set("client_secret", c.appSecret)
	q.Set("access_token", shortToken)
	return c.tokenCall(ctx, endpointExchange, "", c.graphBase+"/access_token?"+q.Encode(), shortToken)
}

// Refresh extends a long-lived token; acct is the account's throttle key.
// The returned token replaces the old one, which may stop working at once.
// A token under 24 hours old fails with ErrTokenTooYoung, not ErrTokenInvalid.
func (c *Client) Refresh(ctx context.Context, acct, token string) (Token, error) {
	if token == "" {
		return Token{}, errorf(KindTokenInvalid, endpointRefresh, "empty token")
	}
	q := url.Values{}
	q.Set("grant_type", "ig_refresh_token")
	q.Set("access_token", token)
	return c.tokenCall(ctx, endpointRefresh, acct, c.graphBase+"/refresh_access_token?"+q.Encode(), token)
}

func (c *Client) tokenCall(ctx context.Context, endpoint, acct, u, token string) (Token, error) {
	var out Token
	err := c.do(ctx, request{
		endpoint: endpoint, acct: acct, method: http.MethodGet, url: u, idempotent: true,
		secrets: []string{token, c.appSecret},
	}, func(b *body) (err error) {
		out, err = decodeToken(b, c.now())
		return err
	})
	return out, err
}

// Me reads the connected account's profile.
func (c *Client) Me(ctx context.Context, acct, token string) (Profile, error) {
	if token == "" {
		return Profile{}, errorf(KindTokenInvalid, endpointMe, "empty token")
	}
	q := url.Values{}
	q.Set("fields", ProfileFields)
	q.Set("access_token", token)
	var out Profile
	err := c.do(ctx, request{
		endpoint: endpointMe, acct: acct, method: http.MethodGet, idempotent: true,
		url: c.graphBase + "/" + c.version + "/me?" + q.Encode(), secrets: []string{token},
	}, func(b *body) (err error) {
		out, err = decodeProfile(b)
		return err
	})
	return out, err
}

// MaxPageSize is the largest limit feedd asks for.
const MaxPageSize = 100

// Media returns up to n of the account's newest posts, following cursor
// paging (one call per page, children expanded inline).
func (c *Client) Media(ctx context.Context, acct, token string, n int) ([]Media, error) {
	if token == "" {
		return nil, errorf(KindTokenInvalid, endpointMedia, "empty token")
	}
	if n <= 0 {
		return nil, errorf(KindBadRequest, endpointMedia, "count must be positive, got %d", n)
	}
	q := url.Values{}
	q.Set("fields", MediaFields)
	q.Set("limit", strconv.Itoa(min(n, MaxPageSize)))
	q.Set("access_token", token)
	next := c.graphBase + "/" + c.version + "/me/media?" + q.Encode()
	// Pages may hold fewer items than asked, even none (deleted posts keep
	// their slot), so walk on, but never in circles or without end.
	maxPages := (n+MaxPageSize-1)/MaxPageSize + (n+min(n, MaxPageSize)-1)/min(n, MaxPageSize) + 4
	var out []Media
	seen := make(map[string]struct{}, min(n, MaxPageSize))
	for pages := 0; next != "" && len(out) < n; pages++ {
		if pages == maxPages {
			return nil, errorf(KindTransient, endpointMedia, "paging did not end after %d pages", pages)
		}
		var page mediaPage
		err := c.do(ctx, request{
			endpoint: endpointMedia, acct: acct, method: http.MethodGet, url: next, idempotent: true,
			secrets: []string{token},
		}, func(b *body) (err error) {
			page, err = decodeMediaPage(b)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, m := range page.Items {
			// A post can shift onto the next page while we walk; keep it once.
			if _, dup := seen[m.ID]; !dup {
				seen[m.ID] = struct{}{}
				out = append(out, m)
			}
		}
		if page.Next == "" {
			break
		}
		cur := next
		if next, err = c.nextPage(page.Next, token); err != nil {
			return nil, err
		}
		if next == cur {
			break // a next link to the same page would loop forever
		}
	}
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// nextPage checks that paging.next stays on the Graph host and carries
// the caller's token (never a token an answer slipped in).
func (c *Client) nextPage(raw, token string) (string, error) {
	u, err := url.Parse(raw)
	basePath := strings.TrimRight(c.graphURL.Path, "/") + "/"
	if err != nil || u.Scheme != c.graphURL.Scheme || u.Host != c.graphURL.Host || u.User != nil ||
		!strings.HasPrefix(u.Path, basePath) {
		return "", errorf(KindBadRequest, endpointMedia, "paging.next %q does not point at the Graph URL",
			sanitizeMessage(Redact(raw), token))
	}
	q := u.Query()
	q.Set("access_token", token)
	u.RawQuery = q.Encode()
	u.Fragment = ""
	return u.String(), nil
}
