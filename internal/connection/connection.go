// Package connection is a feed's Instagram connection lifecycle: the OAuth
// connect flow (state issue and callback), pasted tokens, the token
// refresher, reauthorization, disconnecting, Meta's deauthorize and
// data-deletion callbacks, and the notification webhook. Every change of a
// feed's connection status goes through one function (transition) that
// stores it, logs it, counts it, drops the feed's cached answers and
// notifies the owner once.
package connection

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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/guard"
	"github.com/feedd/feedd/internal/model"
)

// Store is what the service needs from the database; *store.Store
// implements it.
type Store interface {
	Feed(ctx context.Context, id string) (model.Feed, error)
	Feeds(ctx context.Context) ([]model.Feed, error)
	FeedsForInstagramUser(ctx context.Context, userID string) ([]model.Feed, error)
	ChangeStatus(ctx context.Context, c model.StatusChange) (from model.Status, changed bool, err error)
	Connect(ctx context.Context, feedID string, gen int64, acct model.Account, tok model.Token) (prev model.Feed, files []string, err error)
	Disconnect(ctx context.Context, feedID string) (prev model.Feed, files []string, err error)
	Token(ctx context.Context, feedID string) (model.Token, error)
	ReplaceToken(ctx context.Context, feedID, oldAccessToken string, nt model.Token) error
	RecordRefreshFailure(ctx context.Context, feedID, errText string, nextAt time.Time) error
	TokensDue(ctx context.Context, now time.Time, window time.Duration) ([]model.Token, error)
	CreateState(ctx context.Context, st model.OAuthState) error
	ConsumeState(ctx context.Context, stateHash []byte, now time.Time) (model.OAuthState, error)
	CreateDeletionRequest(ctx context.Context, d model.DeletionRequest) error
	DeletionRequest(ctx context.Context, code string) (model.DeletionRequest, error)
	CompleteDeletionRequest(ctx context.Context, code string, at time.Time, feedsAffected int) error
	AddNotifications(ctx context.Context, ns []model.Notification, maxPending int) (dropped int, err error)
	ClaimNotification(ctx context.Context, now, until time.Time) (model.Notification, error)
	FinishNotification(ctx context.Context, n model.Notification) error
	ClaimTokenTask(ctx context.Context, feedID string, task model.TokenTask, now time.Time, every time.Duration) (bool, error)
}

// Graph is the part of the Instagram client the service calls; *graph.Client implements it.
type Graph interface {
	AuthorizeURL(state string, forceReauth bool) string
	ExchangeCode(ctx context.Context, code string) (graph.ShortLived, error)
	ExchangeLongLived(ctx context.Context, shortToken string) (graph.Token, error)
	Refresh(ctx context.Context, acct, token string) (graph.Token, error)
	Me(ctx context.Context, acct, token string) (graph.Profile, error)
}

// Feeds is what the service needs from the feed service: a fetch now (the
// first poll after a connect, "refresh now") and dropping a feed's cached
// answers.
type Feeds interface {
	FetchNow(ctx context.Context, feedID string) error
	Invalidate(feedID string)
}

// FileRemover deletes stored media files (the media store).
type FileRemover interface {
	Remove(files []string) error
}

// Options configures a Service. Store, Graph and PublicURL are required.
type Options struct {
	Store Store
	Graph Graph
	Files FileRemover // nil: files are left for the start-up sweep

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
	// NotifySecret (FEEDD_NOTIFY_WEBHOOK_SECRET) signs the webhook's
	// deliveries; empty: unsigned.
	NotifySecret string
	HTTPClient   *http.Client // for the webhook (default: 10s timeout)
	// Mailer e-mails the needs_reauth and token_expiring events; nil: no e-mail.
	Mailer Mailer

	Now        func() time.Time
	Sleep      func(ctx context.Context, d time.Duration) error // jitter and retry waits; tests make them instant
	Rand       io.Reader                                        // default crypto/rand
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics kept but not registered
	Guard      *guard.Guard          // recovers panics of the service's goroutines
	// Claims, with several instances on one database, makes each token
	// refresh run on one of them (nil: this instance refreshes every token).
	Claims RefreshClaims
}

// Service runs the connection lifecycle of every feed.
type Service struct {
	store      Store
	graph      Graph
	files      FileRemover
	feeds      atomic.Pointer[Feeds]
	publicURL  string
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
	guard      *guard.Guard
	metrics    *metrics
	refreshing singleflight.Group
	claims     RefreshClaims

	notifySecret string // signs webhook deliveries
	mailer       Mailer

	// bg scopes the goroutines the service starts (first fetch after a
	// connect, webhook deliveries, retried token writes); Close ends it and
	// waits for them.
	bg       context.Context
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup

	mu      sync.Mutex
	pending map[string]*pending // feed → issued token not stored yet
	sending bool                // a goroutine is delivering notifications
	again   bool                // notifications were queued since that goroutine last looked
}

// Defaults and rules of the token lifecycle.
const (
	DefaultCheckInterval = time.Hour
	DefaultRefreshWindow = 720 * time.Hour
	// StateTTL is how long a connect state stays valid.
	StateTTL = 15 * time.Minute
	// MinTokenAge is Instagram's rule: a token can be refreshed once it is 24 hours old.
	MinTokenAge = 24 * time.Hour
	// AssumedLifetime is the expiry assumed for a token whose real one is unknown.
	AssumedLifetime = 60 * 24 * time.Hour
)

// New validates opts and returns a Service. Call SetFeeds before Run.
func New(opts Options) (*Service, error) {
	if opts.Store == nil || opts.Graph == nil {
		return nil, errors.New("connection: Store and Graph are required")
	}
	pu, err := url.Parse(opts.PublicURL)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return nil, fmt.Errorf("connection: PublicURL %q: want an absolute http(s) URL", opts.PublicURL)
	}
	s := &Service{
		store: opts.Store, graph: opts.Graph, files: opts.Files,
		publicURL: strings.TrimRight(opts.PublicURL, "/"), redirect: opts.RedirectURI,
		appID: opts.AppID, appSecret: opts.AppSecret,
		interval: opts.CheckInterval, window: opts.RefreshWindow, jitter: opts.Jitter,
		webhook: opts.NotifyWebhook, notifySecret: opts.NotifySecret, mailer: opts.Mailer, hc: opts.HTTPClient, now: opts.Now, sleep: opts.Sleep,
		rand: opts.Rand, log: opts.Logger, guard: opts.Guard,
		pending: map[string]*pending{}, claims: opts.Claims,
	}
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
			return nil, errors.New("connection: NotifyWebhook: want an absolute http(s) URL")
		}
	}
	if s.hc == nil {
		s.hc = &http.Client{Timeout: 10 * time.Second}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.sleep == nil {
		s.sleep = graph.Sleep
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

// SetFeeds gives the service the feed service, which is built with this
// service as its source of tokens. Call it once, before Run.
func (s *Service) SetFeeds(f Feeds) { s.feeds.Store(&f) }

func (s *Service) feedService() Feeds {
	if f := s.feeds.Load(); f != nil {
		return *f
	}
	return nil
}

// Close ends the service's background work and waits for it.
func (s *Service) Close() {
	s.bgCancel()
	s.bgWG.Wait()
}

// Wait blocks until the background work started so far (first fetches
// after connects, webhook deliveries, retried token writes) has finished.
func (s *Service) Wait() { s.bgWG.Wait() }

// RedirectURI is the exact URI to register in the Instagram app.
func (s *Service) RedirectURI() string { return s.redirect }

// AppConfigured reports whether the Instagram app id and secret are set.
func (s *Service) AppConfigured() bool { return s.appID != "" && s.appSecret != "" }

// MissingAppVars names the unset variables of the Instagram app's id and secret.
func (s *Service) MissingAppVars() []string {
	var missing []string
	if s.appID == "" {
		missing = append(missing, "FEEDD_INSTAGRAM_APP_ID")
	}
	if s.appSecret == "" {
		missing = append(missing, "FEEDD_INSTAGRAM_APP_SECRET")
	}
	return missing
}

// goBG runs fn in a goroutine that Close waits for, with panics recovered.
func (s *Service) goBG(where string, fn func()) {
	s.bgWG.Add(1)
	s.guard.Go(where, func() {
		defer s.bgWG.Done()
		fn()
	})
}

func (s *Service) invalidate(id string) {
	if f := s.feedService(); f != nil {
		f.Invalidate(id)
	}
}

func (s *Service) removeFiles(files []string) {
	if s.files == nil || len(files) == 0 {
		return
	}
	if err := s.files.Remove(files); err != nil {
		s.log.Warn("removing media files", slog.Int("files", len(files)), slog.Any("error", err))
	}
}

// Forget drops what the service keeps in memory about a feed that was
// deleted: its expiry gauge, expiry warnings and a token not stored yet.
func (s *Service) Forget(feedID string) {
	s.metrics.forget(feedID)
	s.mu.Lock()
	delete(s.pending, feedID)
	s.mu.Unlock()
}

// FetchNow polls a connected feed at once, media included. A failed poll
// shows in the feed's last fetch; only an unusable request is an error.
func (s *Service) FetchNow(ctx context.Context, feedID string) error {
	f, err := s.store.Feed(ctx, feedID)
	if err != nil {
		return err
	}
	if f.Status == model.StatusNotConnected {
		return model.ErrNotConnected
	}
	fs := s.feedService()
	if fs == nil {
		return ErrNoFeeds
	}
	if err := fs.FetchNow(ctx, feedID); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.log.Info("fetch now failed", feedAttr(feedID), errAttr(err))
	}
	return nil
}

// ErrNoFeeds reports that no feed service was set, so nothing can be fetched.
var ErrNoFeeds = errors.New("connection: fetching is not available")
