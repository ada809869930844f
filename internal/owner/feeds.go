// Package owner is the site owner's side of feedd: feeds and their
// settings (create, list, edit, delete, each feed's status), the setup
// pages, the admin JSON API and the pages of the connect flow and Meta's
// callbacks, and the Gate that admits the owner (admin token, sign-in,
// sessions, CSRF). Anything about a feed's Instagram connection is asked of
// internal/connection.
package owner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/feedd/feedd/internal/connection"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/web"
)

// Status is a feed as the owner sees it (product.md's status object). It
// never holds a token.
type Status struct {
	ID             string         `json:"id"`
	Name           string         `json:"name"`
	AllowedOrigins []string       `json:"allowed_origins"`
	Status         model.Status   `json:"status"`
	StatusReason   string         `json:"status_reason,omitempty"`
	Account        *AccountStatus `json:"account"`
	Token          *TokenStatus   `json:"token"`
	LastFetch      *LastFetch     `json:"last_fetch"`
	PostCount      int            `json:"post_count"`
	// Video and MediaBytes are in the status of one feed (GET and PATCH
	// of /api/admin/feeds/{id}), not in the list.
	Video      *VideoView  `json:"video,omitempty"`
	MediaBytes *MediaBytes `json:"media_bytes,omitempty"`
	// Sources are the feed's Instagram accounts, the main one first
	// (absent while it is not connected). Status and StatusReason are the
	// worst of theirs.
	Sources []SourceStatus `json:"sources,omitempty"`
}

// AccountStatus is the connected account in a Status.
type AccountStatus struct {
	Username    string    `json:"username"`
	Name        string    `json:"name,omitempty"`
	AccountType string    `json:"account_type"`
	ProfileURL  string    `json:"profile_url"`
	UserID      string    `json:"user_id"`
	ConnectedAt time.Time `json:"connected_at"`
}

// TokenStatus is what the owner may see of a token.
type TokenStatus struct {
	ExpiresAt        time.Time  `json:"expires_at"`
	ExpiryAssumed    bool       `json:"expiry_assumed,omitempty"`
	RefreshedAt      *time.Time `json:"refreshed_at"`
	LastRefreshError string     `json:"last_refresh_error,omitempty"`
}

// LastFetch is the outcome of the feed's last poll.
type LastFetch struct {
	At    time.Time `json:"at"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

// Patch is a partial feed update; nil fields stay as they are.
type Patch struct {
	Name           *string     `json:"name"`
	AllowedOrigins *[]string   `json:"allowed_origins"`
	Video          *VideoPatch `json:"video"`
}

const (
	maxNameLen    = 100
	maxOrigins    = 50
	maxOriginLen  = 255
	notFoundWhat  = "feed"
	codeBadName   = "invalid_name"
	codeBadOrigin = "invalid_allowed_origins"
)

func statusOf(f model.Feed) Status {
	st := Status{
		ID: f.ID, Name: f.Name, AllowedOrigins: f.AllowedOrigins, Status: f.Status,
		StatusReason: f.StatusReason, PostCount: f.PostCount,
	}
	if st.AllowedOrigins == nil {
		st.AllowedOrigins = []string{}
	}
	if st.Status == "" {
		st.Status = model.StatusNotConnected
	}
	if a := f.Account; a != nil {
		st.Account = &AccountStatus{
			Username: a.Username, Name: a.Name, AccountType: a.AccountType, UserID: a.IGUserID,
			ProfileURL: "https://www.instagram.com/" + url.PathEscape(a.Username) + "/", ConnectedAt: a.ConnectedAt.UTC(),
		}
	}
	if t := f.Token; t != nil {
		ts := &TokenStatus{ExpiresAt: t.ExpiresAt.UTC(), ExpiryAssumed: t.ExpiryAssumed, LastRefreshError: t.LastRefreshError}
		if !t.RefreshedAt.IsZero() {
			r := t.RefreshedAt.UTC()
			ts.RefreshedAt = &r
		}
		st.Token = ts
	}
	if !f.LastFetchAt.IsZero() {
		st.LastFetch = &LastFetch{At: f.LastFetchAt.UTC(), OK: f.LastFetchOK, Error: f.LastFetchError}
	}
	return st
}

func feedNotFound() *web.Error { return web.NotFound(notFoundWhat) }

// clientErr turns a domain error into the answer the owner sees, where one fits.
func clientErr(err error) error {
	switch {
	case errors.Is(err, model.ErrNotFound):
		return feedNotFound()
	case errors.Is(err, model.ErrNotConnected):
		return web.New(http.StatusConflict, "not_connected", "feed is not connected: connect an Instagram account first")
	case errors.Is(err, model.ErrConnectionChanged):
		return web.New(http.StatusConflict, "feed_changed", "the feed was connected or disconnected meanwhile; nothing was changed: try again")
	case errors.Is(err, model.ErrSourceNotFound):
		return web.BadRequest(codeBadSource, "source: the feed has no source with this id")
	case errors.Is(err, connection.ErrNoFeeds):
		return web.New(http.StatusServiceUnavailable, "unavailable", "fetching is not available")
	}
	return err
}

// NormalizeName trims a feed name and checks it.
func NormalizeName(name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return "", web.BadRequest(codeBadName, "name: must not be empty")
	case !utf8.ValidString(name):
		return "", web.BadRequest(codeBadName, "name: must be valid UTF-8")
	case utf8.RuneCountInString(name) > maxNameLen:
		return "", web.BadRequest(codeBadName, "name: at most %d characters", maxNameLen)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return "", web.BadRequest(codeBadName, "name: must not contain control characters")
		}
	}
	return name, nil
}

// NormalizeOrigins validates allowed origins: scheme://host[:port], no
// path. An empty list means any site may embed the feed; "*" is refused
// so that "any" has exactly one spelling. The result is lower-cased,
// without default ports, deduplicated.
func NormalizeOrigins(in []string) ([]string, error) {
	if len(in) > maxOrigins {
		return nil, web.BadRequest(codeBadOrigin, "allowed_origins: at most %d origins", maxOrigins)
	}
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	for i, raw := range in {
		o, err := normalizeOrigin(strings.TrimSpace(raw))
		if err != nil {
			return nil, web.BadRequest(codeBadOrigin, "allowed_origins[%d]: %s", i, err.Error())
		}
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	return out, nil
}

func normalizeOrigin(raw string) (string, error) {
	if raw == "*" {
		return "", errors.New(`"*" is not allowed; leave the list empty to allow any site`)
	}
	if raw == "" {
		return "", errors.New("must not be empty")
	}
	if len(raw) > maxOriginLen {
		return "", fmt.Errorf("longer than %d characters", maxOriginLen)
	}
	quoted := fmt.Sprintf("%q", raw)
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" {
		return "", fmt.Errorf("%s is not an origin like https://example.com", quoted)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", fmt.Errorf("%s: want http:// or https:// followed by a host", quoted)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("%s: an origin has no path, query or user; use scheme://host[:port]", quoted)
	}
	host := strings.ToLower(u.Hostname())
	if host == "" || strings.ContainsAny(host, "*") {
		return "", fmt.Errorf("%s: want a host name (no wildcards)", quoted)
	}
	port := u.Port()
	if port != "" {
		var n int
		if _, err := fmt.Sscanf(port, "%d", &n); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%s: port out of range", quoted)
		}
		if (scheme == "http" && n == 80) || (scheme == "https" && n == 443) {
			port = "" // browsers omit default ports in Origin
		}
	}
	if strings.Contains(host, ":") { // IPv6 literal
		host = "[" + host + "]"
		if port != "" {
			return scheme + "://" + host + ":" + port, nil
		}
		return scheme + "://" + host, nil
	}
	if port != "" {
		return scheme + "://" + net.JoinHostPort(host, port), nil
	}
	return scheme + "://" + host, nil
}

// Store is what the owner surface needs from the database; *store.Store
// implements it.
type Store interface {
	CreateFeed(ctx context.Context, name string, origins []string) (model.Feed, error)
	Feed(ctx context.Context, id string) (model.Feed, error)
	Feeds(ctx context.Context) ([]model.Feed, error)
	UpdateFeed(ctx context.Context, id string, name *string, origins *[]string) (model.Feed, error)
	DeleteFeed(ctx context.Context, id string) ([]string, error)
	CurationStore
	NotificationStore
	VideoStore
	SourceStore
}

// Invalidator drops a feed's cached answers (the feed service).
type Invalidator interface {
	Invalidate(feedID string)
}

// FileRemover deletes stored media files (the media store).
type FileRemover interface {
	Remove(files []string) error
}

// Options configures a Service. Store, Connections and PublicURL are required.
type Options struct {
	Store       Store
	Connections *connection.Service
	Feeds       Invalidator // nil: caches expire on their own
	Files       FileRemover // nil: files are left for the start-up sweep
	PublicURL   string      // FEEDD_PUBLIC_URL
	Now         func() time.Time
	Logger      *slog.Logger
}

// Service is the owner's feeds: create, list, edit, delete, and each
// feed's status; anything about a feed's connection goes to Connections.
type Service struct {
	store     Store
	conn      *connection.Service
	feeds     Invalidator
	files     FileRemover
	publicURL string
	prefix    string // the public URL's path ("" at the root), for links and redirects
	now       func() time.Time
	log       *slog.Logger
}

// New returns a Service.
func New(opts Options) (*Service, error) {
	if opts.Store == nil || opts.Connections == nil {
		return nil, errors.New("owner: Store and Connections are required")
	}
	pu, err := url.Parse(opts.PublicURL)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return nil, fmt.Errorf("owner: PublicURL %q: want an absolute http(s) URL", opts.PublicURL)
	}
	s := &Service{store: opts.Store, conn: opts.Connections, feeds: opts.Feeds, files: opts.Files,
		publicURL: strings.TrimRight(opts.PublicURL, "/"), prefix: strings.TrimRight(pu.Path, "/"),
		now: opts.Now, log: opts.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

func (s *Service) invalidate(id string) {
	if s.feeds != nil {
		s.feeds.Invalidate(id)
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

// CreateFeed creates a not-connected feed.
func (s *Service) CreateFeed(ctx context.Context, name string, origins []string) (Status, error) {
	name, err := NormalizeName(name)
	if err != nil {
		return Status{}, err
	}
	origins, err = NormalizeOrigins(origins)
	if err != nil {
		return Status{}, err
	}
	f, err := s.store.CreateFeed(ctx, name, origins)
	if err != nil {
		return Status{}, fmt.Errorf("owner: create feed: %w", err)
	}
	s.log.Info("feed created", slog.String("feed", f.ID))
	return statusOf(f), nil
}

// Feed returns one feed's status.
func (s *Service) Feed(ctx context.Context, id string) (Status, error) {
	if !model.ValidFeedID(id) {
		return Status{}, feedNotFound()
	}
	f, err := s.store.Feed(ctx, id)
	if err != nil {
		return Status{}, clientErr(err)
	}
	st := statusOf(f)
	if err := s.withMedia(ctx, &st); err != nil {
		return Status{}, err
	}
	if f.Account != nil {
		srcs, err := s.store.Sources(ctx, id)
		if err != nil {
			return Status{}, err
		}
		withSources(&st, srcs, f.HeaderSource)
	}
	return st, nil
}

// Feeds returns every feed's status.
func (s *Service) Feeds(ctx context.Context) ([]Status, error) {
	fs, err := s.store.Feeds(ctx)
	if err != nil {
		return nil, err
	}
	further, err := s.store.FurtherSources(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Status, len(fs))
	for i, f := range fs {
		out[i] = statusOf(f)
		withSources(&out[i], append([]model.Source{model.MainSourceOf(f)}, further[f.ID]...), f.HeaderSource)
	}
	return out, nil
}

// UpdateFeed renames a feed, replaces its allowed origins and/or changes
// its video settings.
func (s *Service) UpdateFeed(ctx context.Context, id string, p Patch) (Status, error) {
	if !model.ValidFeedID(id) {
		return Status{}, feedNotFound()
	}
	if p.Name != nil {
		n, err := NormalizeName(*p.Name)
		if err != nil {
			return Status{}, err
		}
		p.Name = &n
	}
	if p.AllowedOrigins != nil {
		o, err := NormalizeOrigins(*p.AllowedOrigins)
		if err != nil {
			return Status{}, err
		}
		p.AllowedOrigins = &o
	}
	// Every field is checked before anything is written.
	var videos model.VideoSettings
	if p.Video != nil {
		var err error
		if videos, err = s.nextVideos(ctx, id, *p.Video); err != nil {
			return Status{}, err
		}
	}
	if p.Name != nil || p.AllowedOrigins != nil {
		if _, err := s.store.UpdateFeed(ctx, id, p.Name, p.AllowedOrigins); err != nil {
			return Status{}, clientErr(err)
		}
		s.invalidate(id)
	}
	if p.Video != nil {
		if err := s.setVideos(ctx, id, videos); err != nil {
			return Status{}, err
		}
	}
	return s.Feed(ctx, id)
}

// DeleteFeed deletes a feed with its token, posts and stored media.
func (s *Service) DeleteFeed(ctx context.Context, id string) error {
	if !model.ValidFeedID(id) {
		return feedNotFound()
	}
	files, err := s.store.DeleteFeed(ctx, id)
	if err != nil {
		return clientErr(err)
	}
	s.removeFiles(files)
	s.invalidate(id)
	s.conn.Forget(id)
	s.log.Info("feed deleted", slog.String("feed", id), slog.Int("files", len(files)))
	return nil
}

// Connect issues a single-use connect state for the feed and returns the
// Instagram URL to send the owner to; sessionHash binds the state to a
// browser session (nil: to the feed only).
func (s *Service) Connect(ctx context.Context, id string, sessionHash []byte) (string, error) {
	u, err := s.conn.Connect(ctx, id, sessionHash)
	return u, clientErr(err)
}

// PasteToken connects the feed with a token made elsewhere and returns its status.
func (s *Service) PasteToken(ctx context.Context, id, token string) (Status, error) {
	if err := s.conn.PasteToken(ctx, id, token); err != nil {
		return Status{}, clientErr(err)
	}
	return s.Feed(ctx, id)
}

// Disconnect removes the feed's token, account, posts and media; the feed stays.
func (s *Service) Disconnect(ctx context.Context, id string) (Status, error) {
	if err := s.conn.Disconnect(ctx, id); err != nil {
		return Status{}, clientErr(err)
	}
	return s.Feed(ctx, id)
}

// FetchNow polls the feed at once (media included) and returns its status;
// a failed poll shows in last_fetch, not as an error.
func (s *Service) FetchNow(ctx context.Context, id string) (Status, error) {
	if !model.ValidFeedID(id) {
		return Status{}, feedNotFound()
	}
	if err := s.conn.FetchNow(ctx, id); err != nil {
		return Status{}, clientErr(err)
	}
	return s.Feed(ctx, id)
}
