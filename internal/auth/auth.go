// Package auth is the owner's side of feedd: feeds and their settings, the
// OAuth connect flow, pasted tokens, the token refresher, Meta's
// deauthorize and data-deletion callbacks, the setup pages and the admin
// JSON API. The setup pages and the API call the same Service methods.
package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/feedd/feedd/internal/graph"
)

// Feed status values, as stored and shown to the owner.
const (
	StatusNotConnected = "not_connected"
	StatusActive       = "active"
	StatusNeedsReauth  = "needs_reauth"
	StatusError        = "error"
)

// Sentinel errors the Store adapter maps its own errors to.
var (
	ErrNotFound      = errors.New("auth: not found")
	ErrStateNotFound = errors.New("auth: state not found")
	ErrStateUsed     = errors.New("auth: state already used")
	ErrStateExpired  = errors.New("auth: state expired")
	ErrTokenChanged  = errors.New("auth: token changed meanwhile")
	ErrNoToken       = errors.New("auth: feed has no token")
)

// FeedRecord is a stored feed with what its status view needs.
type FeedRecord struct {
	ID             string
	Name           string
	AllowedOrigins []string
	Status         string
	StatusReason   string
	CreatedAt      time.Time
	Account        *Account   // nil when not connected
	Token          *TokenMeta // nil when not connected
	LastFetchAt    time.Time  // zero: never polled
	LastFetchOK    bool
	LastFetchError string
	PostCount      int
}

// Account is the connected Instagram professional account of a feed.
type Account struct {
	AppUserID      string // app-scoped id (/me id, the code exchange's user_id)
	IGUserID       string // professional account id (/me user_id); the Graph throttle key
	Username       string
	Name           string
	AccountType    string
	FollowersCount *int64
	FollowsCount   *int64
	MediaCount     *int64
	ConnectedAt    time.Time
}

// TokenMeta is what may be shown about a token: never the token itself.
type TokenMeta struct {
	ObtainedAt       time.Time // when this token string was issued (the 24h rule counts from here)
	ExpiresAt        time.Time
	ExpiryAssumed    bool      // pasted token whose expiry is a guess
	RefreshedAt      time.Time // zero: never refreshed
	NextRefreshAt    time.Time // zero: by the window rule only
	RefreshFailures  int
	LastRefreshError string
}

// Token is a stored token with its plaintext; it lives in memory only.
type Token struct {
	AccessToken string
	TokenMeta
}

// OAuthState is an issued connect state, stored by hash only.
type OAuthState struct {
	Hash        []byte // SHA-256 of the state string
	FeedID      string
	SessionHash []byte // nil: issued by the admin API, bound to the feed only
	CreatedAt   time.Time
	ExpiresAt   time.Time
}

// DeletionRequest records one of Meta's deauthorize or data-deletion callbacks.
type DeletionRequest struct {
	Code          string // confirmation code, unguessable
	Kind          string // "deauthorize" or "delete"
	UserID        string
	RequestedAt   time.Time
	CompletedAt   time.Time // zero: not completed
	FeedsAffected int
}

// Store is what the service needs from the database. The adapter over
// internal/store maps its errors to this package's sentinels.
type Store interface {
	CreateFeed(ctx context.Context, name string, origins []string) (FeedRecord, error)
	Feed(ctx context.Context, id string) (FeedRecord, error) // ErrNotFound
	Feeds(ctx context.Context) ([]FeedRecord, error)
	UpdateFeed(ctx context.Context, id string, name *string, origins *[]string) error
	// DeleteFeed removes the feed with its token, account and posts and
	// returns the media files no longer referenced, to delete after commit.
	DeleteFeed(ctx context.Context, id string) ([]string, error)
	SetStatus(ctx context.Context, id, status, reason string) error
	// Connect stores account and token and sets the feed active, in one
	// transaction; it returns media files no longer referenced (when the
	// feed switched accounts), to delete after commit.
	Connect(ctx context.Context, feedID string, acct Account, tok Token) ([]string, error)
	// Disconnect removes token, account and posts; status not_connected.
	Disconnect(ctx context.Context, feedID string) ([]string, error)
	Token(ctx context.Context, feedID string) (Token, error) // ErrNoToken / ErrNotFound
	// ReplaceToken swaps the token only if the stored one is still oldAccessToken (else ErrTokenChanged).
	ReplaceToken(ctx context.Context, feedID, oldAccessToken string, tok Token) error
	// RecordRefreshFailure counts a failed refresh and sets when to try again.
	RecordRefreshFailure(ctx context.Context, feedID, msg string, nextAt time.Time) error
	// TokensDue lists feeds whose token is at least 24h old and expires
	// within window, or whose next_refresh_at has come.
	TokensDue(ctx context.Context, now time.Time, window time.Duration) ([]string, error)
	FeedsForInstagramUser(ctx context.Context, userID string) ([]string, error)
	CreateState(ctx context.Context, st OAuthState) error
	// ConsumeState marks the state used; ErrStateNotFound / ErrStateUsed / ErrStateExpired.
	ConsumeState(ctx context.Context, hash []byte, now time.Time) (OAuthState, error)
	CreateDeletionRequest(ctx context.Context, r DeletionRequest) error
	DeletionRequest(ctx context.Context, code string) (DeletionRequest, error) // ErrNotFound
	CompleteDeletionRequest(ctx context.Context, code string, at time.Time, feeds int) error
}

// Graph is the part of the Instagram client the service calls; *graph.Client implements it.
type Graph interface {
	AuthorizeURL(state string) string
	ExchangeCode(ctx context.Context, code string) (graph.ShortLived, error)
	ExchangeLongLived(ctx context.Context, shortToken string) (graph.Token, error)
	Refresh(ctx context.Context, acct, token string) (graph.Token, error)
	Me(ctx context.Context, acct, token string) (graph.Profile, error)
}

// Fetcher polls a feed now (the feed service).
type Fetcher interface {
	FetchNow(ctx context.Context, feedID string) error
}

// FileRemover deletes stored media files (the media store).
type FileRemover interface {
	Remove(files []string) error
}

// Invalidator drops a feed's cached answers so visitors see a change at once.
type Invalidator interface {
	Invalidate(feedID string)
}

// Options configures a Service. Store, Graph and PublicURL are required.
type Options struct {
	Store       Store
	Graph       Graph
	Fetcher     Fetcher     // nil: "refresh now" answers 503
	Files       FileRemover // nil: files are left for the startup sweep
	Invalidator Invalidator // nil: caches expire on their own

	PublicURL   string // FEEDD_PUBLIC_URL
	RedirectURI string // default PublicURL + "/auth/instagram/callback"
	AppID       string // FEEDD_INSTAGRAM_APP_ID; empty: connect explains what to set
	AppSecret   string // FEEDD_INSTAGRAM_APP_SECRET; verifies Meta's signed requests

	CheckInterval time.Duration // FEEDD_TOKEN_CHECK_INTERVAL (default 1h)
	RefreshWindow time.Duration // FEEDD_TOKEN_REFRESH_WINDOW (default 720h)
	// Jitter bounds the random pause before each refresh in a check (default min(CheckInterval/10, 30s)).
	Jitter time.Duration
	// NotifyWebhook (FEEDD_NOTIFY_WEBHOOK) receives JSON events; empty: none.
	NotifyWebhook string
	HTTPClient    *http.Client // for the webhook (default: 10s timeout)

	Now        func() time.Time
	Sleep      func(ctx context.Context, d time.Duration) error // jitter waits; tests make it instant
	Rand       io.Reader                                        // default crypto/rand
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics kept but not registered
}

// Service implements the owner's operations.
type Service struct {
	store      Store
	graph      Graph
	fetcher    Fetcher
	files      FileRemover
	inval      Invalidator
	publicURL  string
	prefix     string // the public URL's path ("" at the root), for links and redirects
	redirect   string
	appID      string
	appSecret  string
	interval   time.Duration
	window     time.Duration
	jitter     time.Duration
	webhook    string
	hc         *http.Client
	now        func() time.Time
	sleep      func(context.Context, time.Duration) error
	rand       io.Reader
	log        *slog.Logger
	metrics    *metrics
	refreshing singleflight.Group

	notifyWG sync.WaitGroup
	// bg scopes the first fetch started after a connect; Close ends it.
	bg       context.Context
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup
	mu       sync.Mutex
	warned   map[string]time.Time // feed → last token_expiring event
}

// Defaults for the token lifecycle.
const (
	DefaultCheckInterval = time.Hour
	DefaultRefreshWindow = 720 * time.Hour
	// StateTTL is how long a connect state stays valid.
	StateTTL = 15 * time.Minute
	// MinTokenAge is Instagram's rule: a token can be refreshed once it is 24 hours old.
	MinTokenAge = 24 * time.Hour
	// AssumedLifetime is the expiry assumed for a pasted token that cannot be refreshed yet.
	AssumedLifetime = 60 * 24 * time.Hour
)

// New validates opts and returns a Service.
func New(opts Options) (*Service, error) {
	if opts.Store == nil || opts.Graph == nil {
		return nil, errors.New("auth: Store and Graph are required")
	}
	pu, err := url.Parse(opts.PublicURL)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return nil, fmt.Errorf("auth: PublicURL %q: want an absolute http(s) URL", opts.PublicURL)
	}
	s := &Service{
		store: opts.Store, graph: opts.Graph, fetcher: opts.Fetcher, files: opts.Files, inval: opts.Invalidator,
		publicURL: strings.TrimRight(opts.PublicURL, "/"), redirect: opts.RedirectURI,
		appID: opts.AppID, appSecret: opts.AppSecret,
		interval: opts.CheckInterval, window: opts.RefreshWindow, jitter: opts.Jitter,
		webhook: opts.NotifyWebhook, hc: opts.HTTPClient, now: opts.Now, sleep: opts.Sleep,
		rand: opts.Rand, log: opts.Logger, warned: map[string]time.Time{},
	}
	s.prefix = strings.TrimRight(pu.Path, "/")
	s.bg, s.bgCancel = context.WithCancel(context.Background())
	if s.redirect == "" {
		s.redirect = s.publicURL + "/auth/instagram/callback"
	}
	if s.interval <= 0 {
		s.interval = DefaultCheckInterval
	}
	if s.window <= 0 {
		s.window = DefaultRefreshWindow
	}
	if s.jitter <= 0 {
		s.jitter = min(s.interval/10, 30*time.Second)
	}
	if s.webhook != "" {
		wu, err := url.Parse(s.webhook)
		if err != nil || (wu.Scheme != "http" && wu.Scheme != "https") || wu.Host == "" {
			return nil, errors.New("auth: NotifyWebhook: want an absolute http(s) URL")
		}
	}
	if s.hc == nil {
		s.hc = &http.Client{Timeout: 10 * time.Second}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.sleep == nil {
		s.sleep = sleepCtx
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.metrics, err = newMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	return s, nil
}

// Close waits for webhook deliveries in flight.
func (s *Service) Close() {
	s.bgCancel()
	s.bgWG.Wait()
	s.notifyWG.Wait()
}

// RedirectURI is the exact URI to register in the Instagram app.
func (s *Service) RedirectURI() string { return s.redirect }

// PublicURL is feedd's public base URL without a trailing slash.
func (s *Service) PublicURL() string { return s.publicURL }

// AppConfigured reports whether the Instagram app id and secret are set.
func (s *Service) AppConfigured() bool { return s.appID != "" && s.appSecret != "" }

func sleepCtx(ctx context.Context, d time.Duration) error {
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

func (s *Service) invalidate(id string) {
	if s.inval != nil {
		s.inval.Invalidate(id)
	}
}

func (s *Service) removeFiles(files []string) {
	if s.files == nil || len(files) == 0 {
		return
	}
	if err := s.files.Remove(files); err != nil {
		s.log.Warn("auth: removing media files", slog.Int("files", len(files)), slog.Any("error", err))
	}
}
