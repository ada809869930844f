package owner

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/guard"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/store"
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

// GateStore keeps the admin credentials; *store.Store implements it.
// Hashes are SHA-256 of the secret; the secrets themselves are never
// stored.
type GateStore interface {
	// AdminTokenHash returns the stored hash, or model.ErrNotFound when none is set yet.
	AdminTokenHash(ctx context.Context) ([]byte, error)
	// SetAdminTokenHash replaces the admin token, ends every session and voids every setup link.
	SetAdminTokenHash(ctx context.Context, h []byte) error
	CreateSession(ctx context.Context, se model.Session) error
	// Session returns the session with this id hash live at now, or model.ErrNotFound.
	Session(ctx context.Context, idHash []byte, now time.Time) (model.Session, error)
	DeleteSession(ctx context.Context, idHash []byte) error
	CreateSetupLink(ctx context.Context, tokenHash []byte, expires time.Time) error
	// ConsumeSetupLink marks a link used (model.ErrNotFound, store.ErrLinkUsed, store.ErrLinkExpired).
	ConsumeSetupLink(ctx context.Context, tokenHash []byte, now time.Time) error
	// PurgeExpired deletes OAuth states, sessions and setup links expired before `before`.
	PurgeExpired(ctx context.Context, before time.Time) (int64, error)
}

// Failures answers a wrong admin credential: 401, or 429 once the client
// has failed too often (the server's limiter, which never refuses a right
// credential because it checks only failures).
type Failures interface {
	CredentialFailed(c *echo.Context) error
}

// GateOptions configures a Gate. Store and PublicURL are required.
type GateOptions struct {
	Store     GateStore
	PublicURL *url.URL // how browsers reach feedd; https makes cookies Secure
	Failures  Failures // nil: every wrong credential is a 401
	// PurgeEvery is how often Run deletes expired sessions, setup links and
	// OAuth states (default DefaultPurgeEvery).
	PurgeEvery time.Duration
	Now        func() time.Time
	Logger     *slog.Logger
	Guard      *guard.Guard // recovers a panic of a purge
}

// DefaultPurgeEvery is how often expired credentials are deleted.
const DefaultPurgeEvery = time.Hour

// purgeGrace keeps expired OAuth states a day, so a late callback still
// learns its state expired rather than that it is unknown.
const purgeGrace = 24 * time.Hour

// Gate admits the owner: a valid bearer admin token, or a signed-in
// browser's session cookie with its CSRF token on state-changing requests.
// It serves the sign-in page and purges expired credentials.
type Gate struct {
	store    GateStore
	failures Failures
	log      *slog.Logger
	now      func() time.Time
	guard    *guard.Guard
	every    time.Duration
	public   *url.URL
	prefix   string // PublicURL's path, without a trailing slash
	origin   string // PublicURL's scheme://host
	secure   bool   // PublicURL is https: Secure cookies
}

// NewGate returns a Gate.
func NewGate(opts GateOptions) (*Gate, error) {
	if opts.Store == nil || opts.PublicURL == nil {
		return nil, errors.New("owner: GateOptions.Store and PublicURL are required")
	}
	g := &Gate{
		store: opts.Store, failures: opts.Failures, log: opts.Logger, now: opts.Now, guard: opts.Guard,
		every: opts.PurgeEvery, public: opts.PublicURL,
		prefix: strings.TrimRight(opts.PublicURL.Path, "/"),
		origin: opts.PublicURL.Scheme + "://" + opts.PublicURL.Host,
		secure: opts.PublicURL.Scheme == "https",
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.every <= 0 {
		g.every = DefaultPurgeEvery
	}
	return g, nil
}

// context key set by Admit for requests authenticated by cookie.
const ctxSession = "feedd.session" // *model.Session

// GenerateAdminToken returns a new random admin token (256 bits).
func GenerateAdminToken() (string, error) { return randomToken() }

// HashToken is how admin tokens, session ids and setup links are stored.
func HashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// SetAdminToken stores token's hash as the admin token (ending every session).
func SetAdminToken(ctx context.Context, st GateStore, token string) error {
	if token == "" {
		return errors.New("owner: empty admin token")
	}
	if err := st.SetAdminTokenHash(ctx, HashToken(token)); err != nil {
		return fmt.Errorf("owner: store admin token: %w", err)
	}
	return nil
}

// IssueSetupLink creates a one-time sign-in link valid for SetupLinkTTL:
// PUBLIC_URL/setup/login?t=...
func IssueSetupLink(ctx context.Context, st GateStore, publicURL *url.URL, now time.Time) (string, error) {
	t, err := randomToken()
	if err != nil {
		return "", err
	}
	if err := st.CreateSetupLink(ctx, HashToken(t), now.Add(SetupLinkTTL)); err != nil {
		return "", fmt.Errorf("owner: store setup link: %w", err)
	}
	return strings.TrimRight(publicURL.String(), "/") + "/setup/login?t=" + t, nil
}

// IssueSetupLink is IssueSetupLink on the gate's store, URL and clock.
func (g *Gate) IssueSetupLink(ctx context.Context) (string, error) {
	return IssueSetupLink(ctx, g.store, g.public, g.now())
}

func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("owner: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// CSRFToken returns the session's CSRF token for forms (hidden field
// "_csrf"), or "" when the request has no session.
func CSRFToken(c *echo.Context) string {
	if sess, ok := c.Get(ctxSession).(*model.Session); ok {
		return sess.CSRF
	}
	return ""
}

// CSRFToken is the package's CSRFToken, for the server's error pages.
func (g *Gate) CSRFToken(c *echo.Context) string { return CSRFToken(c) }

// checkToken compares a presented admin token with the stored hash.
func (g *Gate) checkToken(ctx context.Context, token string) (bool, error) {
	stored, err := g.store.AdminTokenHash(ctx)
	if errors.Is(err, model.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("owner: load admin token: %w", err)
	}
	if len(stored) != sha256.Size || token == "" {
		return false, nil
	}
	return subtle.ConstantTimeCompare(HashToken(token), stored) == 1, nil
}

// session finds a live session from the request's cookie.
func (g *Gate) session(c *echo.Context) (*model.Session, error) {
	ck, err := c.Cookie(SessionCookie)
	if err != nil || ck.Value == "" || len(ck.Value) > 128 {
		return nil, nil
	}
	h := HashToken(ck.Value)
	sess, err := g.store.Session(c.Request().Context(), h, g.now())
	if errors.Is(err, model.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("owner: load session: %w", err)
	}
	if subtle.ConstantTimeCompare(sess.IDHash, h) != 1 || !g.now().Before(sess.ExpiresAt) {
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

// Admit runs next when the request carries the admin credential: a valid
// bearer token, or a session cookie (then state-changing requests must
// also carry the session's CSRF token and not come cross-site). Browsers
// without a session asking for a page (page) are sent to the sign-in page.
func (g *Gate) Admit(c *echo.Context, page bool, next echo.HandlerFunc) error {
	r := c.Request()
	if tok, ok := bearerToken(r); ok {
		good, err := g.checkToken(r.Context(), tok)
		if err != nil {
			return err
		}
		if !good {
			return g.credentialFailed(c)
		}
		// Bearer requests carry their credential explicitly: no CSRF check.
		return next(c)
	}
	sess, err := g.session(c)
	if err != nil {
		return err
	}
	if sess == nil {
		if page && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			return c.Redirect(http.StatusSeeOther, g.prefix+"/setup/login")
		}
		return web.Unauthorized()
	}
	c.Set(ctxSession, sess)
	if err := g.checkCSRF(c, sess); err != nil {
		return err
	}
	return next(c)
}

func (g *Gate) credentialFailed(c *echo.Context) error {
	if g.failures == nil {
		return web.Unauthorized()
	}
	return g.failures.CredentialFailed(c)
}

var errCSRF = &web.Error{Status: http.StatusForbidden, Code: "csrf",
	Message: "missing or invalid CSRF token; reload the page and try again"}

var errCrossSite = &web.Error{Status: http.StatusForbidden, Code: "cross_site",
	Message: "cross-site request refused"}

// checkCSRF protects state-changing requests authenticated by the session
// cookie: the session's token must come back in the "_csrf" form field or
// the X-CSRF-Token header, and the browser must not call it cross-site.
func (g *Gate) checkCSRF(c *echo.Context, sess *model.Session) error {
	if safeMethod(c.Request().Method) {
		return nil
	}
	if !g.sameOrigin(c.Request()) {
		return errCrossSite
	}
	got := c.Request().Header.Get("X-CSRF-Token")
	if got == "" {
		got = c.FormValue("_csrf")
	}
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) != 1 {
		return errCSRF
	}
	return nil
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sameOrigin checks the browser's own statement of where a request comes
// from, when it makes one.
func (g *Gate) sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if origin == g.origin {
		return true
	}
	// Also accept the host the request was sent to (e.g. an operator
	// reaching feedd by IP before FEEDD_PUBLIC_URL is set).
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && u.Host == r.Host
}

// startSession signs a browser in: a random session id in the cookie, its
// hash and a CSRF token in the store.
func (g *Gate) startSession(c *echo.Context) error {
	id, err := randomToken()
	if err != nil {
		return err
	}
	csrf, err := randomToken()
	if err != nil {
		return err
	}
	now := g.now()
	sess := model.Session{IDHash: HashToken(id), CSRF: csrf, CreatedAt: now, ExpiresAt: now.Add(SessionTTL)}
	if err := g.store.CreateSession(c.Request().Context(), sess); err != nil {
		return fmt.Errorf("owner: create session: %w", err)
	}
	c.SetCookie(g.cookie(id, sess.ExpiresAt))
	return nil
}

func (g *Gate) cookie(value string, expires time.Time) *http.Cookie {
	path := g.prefix
	if path == "" {
		path = "/"
	}
	ck := &http.Cookie{
		Name:     SessionCookie,
		Value:    value,
		Path:     path,
		HttpOnly: true,
		Secure:   g.secure,
		SameSite: http.SameSiteLaxMode,
	}
	if value == "" {
		ck.MaxAge = -1
	} else {
		ck.Expires = expires
		ck.MaxAge = int(expires.Sub(g.now()) / time.Second)
	}
	return ck
}

var loginTmpl = ui.Must(ui.Parse(templateFS, "templates/login.html"))

type loginData struct {
	Action string
}

// RegisterSignIn mounts the sign-in page and form on signIn (the
// /setup/login group, which needs no credential) and sign-out on setup.
func (g *Gate) RegisterSignIn(signIn, setup Router) {
	signIn.GET("", g.loginPage)
	signIn.POST("", g.loginSubmit)
	setup.POST("/logout", g.logout)
}

func (g *Gate) renderLogin(c *echo.Context, status int, errMsg string) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return ui.Render(c.Response(), status, loginTmpl, ui.Page{
		Title:  "Sign in",
		Error:  errMsg,
		Prefix: g.prefix,
		Data:   loginData{Action: g.prefix + "/setup/login"},
	})
}

// loginPage shows the sign-in form, or consumes a one-time setup link
// (?t=...) and redirects to /setup so the secret leaves the address bar.
func (g *Gate) loginPage(c *echo.Context) error {
	r := c.Request()
	if t := r.URL.Query().Get("t"); t != "" {
		if len(t) > 128 {
			return g.badSetupLink(c)
		}
		err := g.store.ConsumeSetupLink(r.Context(), HashToken(t), g.now())
		if errors.Is(err, model.ErrNotFound) || errors.Is(err, store.ErrLinkUsed) || errors.Is(err, store.ErrLinkExpired) {
			return g.badSetupLink(c)
		}
		if err != nil {
			return fmt.Errorf("owner: consume setup link: %w", err)
		}
		if err := g.startSession(c); err != nil {
			return err
		}
		g.log.Info("signed in with a setup link", slog.String("client_ip", c.RealIP()))
		return c.Redirect(http.StatusSeeOther, g.prefix+"/setup")
	}
	sess, err := g.session(c)
	if err != nil {
		return err
	}
	if sess != nil {
		return c.Redirect(http.StatusSeeOther, g.prefix+"/setup")
	}
	return g.renderLogin(c, http.StatusOK, "")
}

// refusedPage answers a wrong credential on the sign-in page with the
// page itself (401), unless the client is being slowed down (429).
func (g *Gate) refusedPage(c *echo.Context, msg string) error {
	if err := g.credentialFailed(c); err != nil {
		if e, ok := web.As(err); ok && e.Status == http.StatusTooManyRequests {
			return err
		}
	}
	return g.renderLogin(c, http.StatusUnauthorized, msg)
}

func (g *Gate) badSetupLink(c *echo.Context) error {
	return g.refusedPage(c, "This setup link is not valid: it was already used, has expired or was mistyped. "+
		"Sign in with the admin token, or run \"feedd admin reset-token\" for a new one.")
}

// loginSubmit checks the admin token from the sign-in form.
func (g *Gate) loginSubmit(c *echo.Context) error {
	r := c.Request()
	if !g.sameOrigin(r) {
		return errCrossSite
	}
	good, err := g.checkToken(r.Context(), strings.TrimSpace(c.FormValue("token")))
	if err != nil {
		return err
	}
	if !good {
		return g.refusedPage(c, "That admin token is not right. Check for missing characters and try again.")
	}
	if err := g.startSession(c); err != nil {
		return err
	}
	g.log.Info("signed in with the admin token", slog.String("client_ip", c.RealIP()))
	return c.Redirect(http.StatusSeeOther, g.prefix+"/setup")
}

// logout ends the session (the setup group has checked the CSRF token).
func (g *Gate) logout(c *echo.Context) error {
	if sess, ok := c.Get(ctxSession).(*model.Session); ok {
		if err := g.store.DeleteSession(c.Request().Context(), sess.IDHash); err != nil {
			return fmt.Errorf("owner: delete session: %w", err)
		}
	}
	c.SetCookie(g.cookie("", time.Time{}))
	return c.Redirect(http.StatusSeeOther, g.prefix+"/setup/login")
}

// Purge deletes the OAuth states, sessions and setup links that expired
// more than a day ago.
func (g *Gate) Purge(ctx context.Context) error {
	n, err := g.store.PurgeExpired(ctx, g.now().Add(-purgeGrace))
	if err != nil {
		return fmt.Errorf("owner: purge expired credentials: %w", err)
	}
	if n > 0 {
		g.log.Info("expired credentials purged", slog.Int64("rows", n))
	}
	return nil
}

// Run purges expired credentials at once and then every PurgeEvery until
// ctx ends. A failed or panicking purge is logged and the loop goes on.
func (g *Gate) Run(ctx context.Context) error {
	t := time.NewTicker(g.every)
	defer t.Stop()
	for {
		g.guard.Run("purge_expired", func() {
			if err := g.Purge(ctx); err != nil && ctx.Err() == nil {
				g.log.Error("purging expired credentials failed", slog.Any("error", err))
			}
		})
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
