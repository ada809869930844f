package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/feedd/feedd/internal/web"
)

// Status is a feed as the owner sees it (product.md's status object). It
// never holds a token.
type Status struct {
	ID             string         `json:"id"`
	Name           string         `json:"name"`
	AllowedOrigins []string       `json:"allowed_origins"`
	Status         string         `json:"status"`
	StatusReason   string         `json:"status_reason,omitempty"`
	Account        *AccountStatus `json:"account"`
	Token          *TokenStatus   `json:"token"`
	LastFetch      *LastFetch     `json:"last_fetch"`
	PostCount      int            `json:"post_count"`
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
	Name           *string   `json:"name"`
	AllowedOrigins *[]string `json:"allowed_origins"`
}

const (
	maxNameLen    = 100
	maxOrigins    = 50
	maxOriginLen  = 255
	maxFeedIDLen  = 32
	notFoundWhat  = "feed"
	codeBadName   = "invalid_name"
	codeBadOrigin = "invalid_allowed_origins"
)

func statusOf(f FeedRecord) Status {
	st := Status{
		ID: f.ID, Name: f.Name, AllowedOrigins: f.AllowedOrigins, Status: f.Status,
		StatusReason: f.StatusReason, PostCount: f.PostCount,
	}
	if st.AllowedOrigins == nil {
		st.AllowedOrigins = []string{}
	}
	if st.Status == "" {
		st.Status = StatusNotConnected
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

// validFeedID reports whether id can be a feed id at all (so hostile ids never reach the store).
func validFeedID(id string) bool {
	if id == "" || len(id) > maxFeedIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func feedNotFound() *web.Error { return web.NotFound(notFoundWhat) }

// mapStoreErr turns a store error into a client error where one fits.
func mapStoreErr(err error) error {
	if errors.Is(err, ErrNotFound) {
		return feedNotFound()
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
		return Status{}, fmt.Errorf("auth: create feed: %w", err)
	}
	s.log.Info("feed created", feedAttr(f.ID))
	return statusOf(f), nil
}

// Feed returns one feed's status.
func (s *Service) Feed(ctx context.Context, id string) (Status, error) {
	if !validFeedID(id) {
		return Status{}, feedNotFound()
	}
	f, err := s.store.Feed(ctx, id)
	if err != nil {
		return Status{}, mapStoreErr(err)
	}
	return statusOf(f), nil
}

// Feeds returns every feed's status.
func (s *Service) Feeds(ctx context.Context) ([]Status, error) {
	fs, err := s.store.Feeds(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Status, len(fs))
	for i, f := range fs {
		out[i] = statusOf(f)
	}
	return out, nil
}

// UpdateFeed renames a feed and/or replaces its allowed origins.
func (s *Service) UpdateFeed(ctx context.Context, id string, p Patch) (Status, error) {
	if !validFeedID(id) {
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
	if p.Name != nil || p.AllowedOrigins != nil {
		if err := s.store.UpdateFeed(ctx, id, p.Name, p.AllowedOrigins); err != nil {
			return Status{}, mapStoreErr(err)
		}
		s.invalidate(id)
	}
	return s.Feed(ctx, id)
}

// DeleteFeed deletes a feed with its token, posts and stored media.
func (s *Service) DeleteFeed(ctx context.Context, id string) error {
	if !validFeedID(id) {
		return feedNotFound()
	}
	files, err := s.store.DeleteFeed(ctx, id)
	if err != nil {
		return mapStoreErr(err)
	}
	s.removeFiles(files)
	s.invalidate(id)
	s.metrics.forget(id)
	s.log.Info("feed deleted", feedAttr(id), intAttr("files", len(files)))
	return nil
}

// Disconnect removes the feed's token, account, posts and media; the feed stays.
func (s *Service) Disconnect(ctx context.Context, id string) (Status, error) {
	if !validFeedID(id) {
		return Status{}, feedNotFound()
	}
	files, err := s.store.Disconnect(ctx, id)
	if err != nil {
		return Status{}, mapStoreErr(err)
	}
	s.removeFiles(files)
	s.invalidate(id)
	s.metrics.forget(id)
	s.log.Info("feed disconnected", feedAttr(id))
	return s.Feed(ctx, id)
}

// FetchNow polls the feed at once (media included) and returns its status;
// a failed poll shows in last_fetch, not as an error.
func (s *Service) FetchNow(ctx context.Context, id string) (Status, error) {
	st, err := s.Feed(ctx, id)
	if err != nil {
		return Status{}, err
	}
	if st.Status == StatusNotConnected {
		return Status{}, web.New(http.StatusConflict, "not_connected", "feed is not connected: connect an Instagram account first")
	}
	if s.fetcher == nil {
		return Status{}, web.New(http.StatusServiceUnavailable, "unavailable", "fetching is not available")
	}
	if err := s.fetcher.FetchNow(ctx, id); err != nil {
		if ctx.Err() != nil {
			return Status{}, ctx.Err()
		}
		s.log.Info("fetch now failed", feedAttr(id), errAttr(err))
	}
	return s.Feed(ctx, id)
}
