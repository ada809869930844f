package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/ui"
	"github.com/feedd/feedd/internal/web"
)

// Lifetimes of admin credentials.
const (
	SessionTTL   = 30 * 24 * time.Hour
	SetupLinkTTL = 24 * time.Hour
)

// SessionCookie is the name of the admin session cookie.
const SessionCookie = "feedd_session"

// ErrNotFound is what an AdminStore returns for an unknown (or, for setup
// links, used or expired) session or link.
var ErrNotFound = errors.New("server: not found")

// AdminStore keeps the admin credentials. Hashes are SHA-256 of the secret;
// the secrets themselves are never stored.
type AdminStore interface {
	// AdminTokenHash returns the stored admin token hash, or nil when none
	// is set yet.
	AdminTokenHash(ctx context.Context) ([]byte, error)
	// SetAdminTokenHash replaces the admin token and deletes all sessions.
	SetAdminTokenHash(ctx context.Context, hash []byte) error
	CreateSession(ctx context.Context, s Session) error
	// Session returns the session with this id hash, or ErrNotFound.
	Session(ctx context.Context, idHash []byte) (Session, error)
	DeleteSession(ctx context.Context, idHash []byte) error
	CreateSetupLink(ctx context.Context, hash []byte, expires time.Time) error
	// ConsumeSetupLink marks the link used; ErrNotFound when it is unknown,
	// already used or expired at now.
	ConsumeSetupLink(ctx context.Context, hash []byte, now time.Time) error
}

// Session is a signed-in browser.
type Session struct {
	IDHash    []byte // SHA-256 of the cookie value
	CSRF      string // the session's CSRF token
	CreatedAt time.Time
	ExpiresAt time.Time
}

// context keys set by requireAdmin.
const (
	ctxSession = "feedd.session" // *Session when authenticated by cookie
	ctxBearer  = "feedd.bearer"  // true when authenticated by bearer token
)

// GenerateAdminToken returns a new random admin token (256 bits).
func GenerateAdminToken() (string, error) { return randomToken() }

// HashToken is how admin tokens, session ids and setup links are stored.
func HashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// SetAdminToken stores token's hash as the admin token (deleting sessions).
func SetAdminToken(ctx context.Context, st AdminStore, token string) error {
	if token == "" {
		return errors.New("server: empty admin token")
	}
	if err := st.SetAdminTokenHash(ctx, HashToken(token)); err != nil {
		return fmt.Errorf("server: store admin token: %w", err)
	}
	return nil
}

// IssueSetupLink creates a one-time sign-in link valid for SetupLinkTTL:
// PUBLIC_URL/setup/login?t=...
func IssueSetupLink(ctx context.Context, st AdminStore, publicURL *url.URL, now time.Time) (string, error) {
	t, err := randomToken()
	if err != nil {
		return "", err
	}
	if err := st.CreateSetupLink(ctx, HashToken(t), now.Add(SetupLinkTTL)); err != nil {
		return "", fmt.Errorf("server: store setup link: %w", err)
	}
	return strings.TrimRight(publicURL.String(), "/") + "/setup/login?t=" + t, nil
}

// IssueSetupLink is IssueSetupLink on the server's store, URL and clock.
func (s *Server) IssueSetupLink(ctx context.Context) (string, error) {
	return IssueSetupLink(ctx, s.opts.AdminStore, s.opts.PublicURL, s.now())
}

func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("server: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// SessionID returns the id hash of the request's admin session, when the
// request was authenticated by the session cookie (OAuth states bind to it).
func SessionID(c *echo.Context) ([]byte, bool) {
	if sess, ok := c.Get(ctxSession).(*Session); ok {
		return sess.IDHash, true
	}
	return nil, false
}

// CSRFToken returns the session's CSRF token for forms (hidden field
// "_csrf"), or "" when the request has no session.
func CSRFToken(c *echo.Context) string {
	if sess, ok := c.Get(ctxSession).(*Session); ok {
		return sess.CSRF
	}
	return ""
}

// checkToken compares a presented admin token with the stored hash.
func (s *Server) checkToken(ctx context.Context, token string) (bool, error) {
	stored, err := s.opts.AdminStore.AdminTokenHash(ctx)
	if err != nil {
		return false, fmt.Errorf("server: load admin token: %w", err)
	}
	if len(stored) != sha256.Size || token == "" {
		return false, nil
	}
	return subtle.ConstantTimeCompare(HashToken(token), stored) == 1, nil
}

// session finds a live session from the request's cookie.
func (s *Server) session(c *echo.Context) (*Session, error) {
	ck, err := c.Cookie(SessionCookie)
	if err != nil || ck.Value == "" || len(ck.Value) > 128 {
		return nil, nil
	}
	h := HashToken(ck.Value)
	sess, err := s.opts.AdminStore.Session(c.Request().Context(), h)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("server: load session: %w", err)
	}
	if subtle.ConstantTimeCompare(sess.IDHash, h) != 1 || !s.now().Before(sess.ExpiresAt) {
		return nil, nil
	}
	return &sess, nil
}

func bearerToken(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return "", false
	}
	return strings.TrimSpace(v[7:]), true
}

// requireAdmin admits a valid bearer token or session cookie. Browsers
// without a session asking for a page are sent to the sign-in page.
func (s *Server) requireAdmin(page bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			r := c.Request()
			if tok, ok := bearerToken(r); ok {
				good, err := s.checkToken(r.Context(), tok)
				if err != nil {
					return err
				}
				if !good {
					return s.credentialFailed(c)
				}
				c.Set(ctxBearer, true)
				return next(c)
			}
			sess, err := s.session(c)
			if err != nil {
				return err
			}
			if sess != nil {
				c.Set(ctxSession, sess)
				return next(c)
			}
			if page && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
				return c.Redirect(http.StatusSeeOther, s.prefix+"/setup/login")
			}
			return web.Unauthorized()
		}
	}
}

// credentialFailed answers a wrong credential: 401, or 429 once this
// client has failed too often. Only failures are throttled: a right
// credential is checked first and never refused.
func (s *Server) credentialFailed(c *echo.Context) error {
	ip := s.clientAddr(c.Request())
	ok, wait := s.failures.allow(ip)
	s.log.Warn("admin credential rejected", slog.String("client_ip", ip.String()), slog.String("path", c.Request().URL.Path),
		slog.Bool("throttled", !ok))
	if !ok {
		return &web.Error{Status: http.StatusTooManyRequests, Code: "rate_limited",
			Message: "too many failed sign-in attempts; wait and try again", RetryAfter: retrySeconds(wait)}
	}
	return web.Unauthorized()
}

var errCSRF = &web.Error{Status: http.StatusForbidden, Code: "csrf",
	Message: "missing or invalid CSRF token; reload the page and try again"}

var errCrossSite = &web.Error{Status: http.StatusForbidden, Code: "cross_site",
	Message: "cross-site request refused"}

// csrf protects state-changing requests authenticated by the session
// cookie: the session's token must come back in the "_csrf" form field or
// the X-CSRF-Token header, and the browser must not call it cross-site.
// Bearer requests carry their credential explicitly and are exempt.
func (s *Server) csrf(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		sess, ok := c.Get(ctxSession).(*Session)
		if !ok || safeMethod(c.Request().Method) {
			return next(c)
		}
		if !s.sameOrigin(c.Request()) {
			return errCrossSite
		}
		got := c.Request().Header.Get("X-CSRF-Token")
		if got == "" {
			got = c.FormValue("_csrf")
		}
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) != 1 {
			return errCSRF
		}
		return next(c)
	}
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sameOrigin checks the browser's own statement of where a request comes
// from, when it makes one.
func (s *Server) sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if origin == s.origin {
		return true
	}
	// Also accept the host the request was sent to (e.g. an operator
	// reaching feedd by IP before FEEDD_PUBLIC_URL is set).
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && u.Host == r.Host
}

// startSession signs a browser in: a random session id in the cookie, its
// hash and a CSRF token in the store.
func (s *Server) startSession(c *echo.Context) error {
	id, err := randomToken()
	if err != nil {
		return err
	}
	csrf, err := randomToken()
	if err != nil {
		return err
	}
	now := s.now()
	sess := Session{IDHash: HashToken(id), CSRF: csrf, CreatedAt: now, ExpiresAt: now.Add(SessionTTL)}
	if err := s.opts.AdminStore.CreateSession(c.Request().Context(), sess); err != nil {
		return fmt.Errorf("server: create session: %w", err)
	}
	c.SetCookie(s.cookie(id, sess.ExpiresAt))
	return nil
}

func (s *Server) cookie(value string, expires time.Time) *http.Cookie {
	path := s.prefix
	if path == "" {
		path = "/"
	}
	ck := &http.Cookie{
		Name:     SessionCookie,
		Value:    value,
		Path:     path,
		HttpOnly: true,
		Secure:   s.secure,
		SameSite: http.SameSiteLaxMode,
	}
	if value == "" {
		ck.MaxAge = -1
	} else {
		ck.Expires = expires
		ck.MaxAge = int(expires.Sub(s.now()) / time.Second)
	}
	return ck
}

//go:embed templates/*.html
var templateFS embed.FS

var loginTmpl = ui.Must(ui.Parse(templateFS, "templates/login.html"))

type loginData struct {
	Action string
}

func (s *Server) renderLogin(c *echo.Context, status int, errMsg string) error {
	c.Response().Header()["Cache-Control"] = hdrNoStore
	return ui.Render(c.Response(), status, loginTmpl, ui.Page{
		Title:  "Sign in",
		Error:  errMsg,
		Prefix: s.prefix,
		Data:   loginData{Action: s.prefix + "/setup/login"},
	})
}

// loginPage shows the sign-in form, or consumes a one-time setup link
// (?t=...) and redirects to /setup so the secret leaves the address bar.
func (s *Server) loginPage(c *echo.Context) error {
	r := c.Request()
	if t := r.URL.Query().Get("t"); t != "" {
		if len(t) > 128 {
			return s.badSetupLink(c)
		}
		err := s.opts.AdminStore.ConsumeSetupLink(r.Context(), HashToken(t), s.now())
		if errors.Is(err, ErrNotFound) {
			return s.badSetupLink(c)
		}
		if err != nil {
			return fmt.Errorf("server: consume setup link: %w", err)
		}
		if err := s.startSession(c); err != nil {
			return err
		}
		s.log.Info("signed in with a setup link", slog.String("client_ip", s.clientAddr(r).String()))
		return c.Redirect(http.StatusSeeOther, s.prefix+"/setup")
	}
	sess, err := s.session(c)
	if err != nil {
		return err
	}
	if sess != nil {
		return c.Redirect(http.StatusSeeOther, s.prefix+"/setup")
	}
	return s.renderLogin(c, http.StatusOK, "")
}

func (s *Server) badSetupLink(c *echo.Context) error {
	if err := s.credentialFailed(c); err != nil {
		if e, ok := web.As(err); ok && e.Status == http.StatusTooManyRequests {
			return err
		}
	}
	return s.renderLogin(c, http.StatusUnauthorized,
		"This setup link is not valid: it was already used, has expired or was mistyped. "+
			"Sign in with the admin token, or run \"feedd admin reset-token\" for a new one.")
}

// loginSubmit checks the admin token from the sign-in form.
func (s *Server) loginSubmit(c *echo.Context) error {
	r := c.Request()
	if !s.sameOrigin(r) {
		return errCrossSite
	}
	good, err := s.checkToken(r.Context(), strings.TrimSpace(c.FormValue("token")))
	if err != nil {
		return err
	}
	if !good {
		if err := s.credentialFailed(c); err != nil {
			if e, ok := web.As(err); ok && e.Status == http.StatusTooManyRequests {
				return err
			}
		}
		return s.renderLogin(c, http.StatusUnauthorized, "That admin token is not right. Check for missing characters and try again.")
	}
	if err := s.startSession(c); err != nil {
		return err
	}
	s.log.Info("signed in with the admin token", slog.String("client_ip", s.clientAddr(r).String()))
	return c.Redirect(http.StatusSeeOther, s.prefix+"/setup")
}

// logout ends the session (CSRF checked by the setup group).
func (s *Server) logout(c *echo.Context) error {
	if sess, ok := c.Get(ctxSession).(*Session); ok {
		if err := s.opts.AdminStore.DeleteSession(c.Request().Context(), sess.IDHash); err != nil {
			return fmt.Errorf("server: delete session: %w", err)
		}
	}
	c.SetCookie(s.cookie("", time.Time{}))
	return c.Redirect(http.StatusSeeOther, s.prefix+"/setup/login")
}
