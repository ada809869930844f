// Package server is feedd's HTTP front: the Echo instance, its middleware
// (recover, request id, request log, security headers, body limit, rate
// limit, gzip), the one error handler, health and metrics routes, and the
// throttle of failed admin credentials.
//
// Other packages register their routes on the groups it hands out:
// Public (rate limited, embeddable), Admin (/api/admin, JSON, admin only),
// Setup (/setup, HTML, admin only), SignIn (/setup/login, HTML) and Echo
// for anything else. Who is admin is the Gate's decision (SetGate). It
// knows nothing of feeds, Instagram or rendering.
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/feedd/feedd/internal/ui"
	"github.com/feedd/feedd/internal/web"
)

// Server timeouts (issue 2): slow clients cannot hold connections open.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 60 * time.Second
	IdleTimeout       = 120 * time.Second
)

// DefaultBodyLimit bounds request bodies when Options.BodyLimit is zero.
const DefaultBodyLimit = 1 << 20

// DefaultShutdownTimeout is how long Run waits for in-flight requests.
const DefaultShutdownTimeout = 10 * time.Second

// Options configures a Server. Registry is required.
type Options struct {
	Addr string // listen address, e.g. ":8080" or "127.0.0.1:0"
	// Listener, when set, is used instead of binding Addr (the demo binds
	// first to learn its port before the rest is configured).
	Listener  net.Listener
	PublicURL *url.URL // how browsers reach feedd; https makes cookies Secure
	Logger    *slog.Logger
	// Registry receives the HTTP metrics and the Go and process collectors;
	// /metrics serves it.
	Registry *prometheus.Registry
	// RateLimit is visitor requests per second per client on the public
	// group (burst twice that); zero or less disables the limit.
	RateLimit float64
	// RateLimitIPv6Prefix is how many leading bits of an IPv6 address make
	// one client for the visitor limits (1 to 128; DefaultIPv6Prefix when
	// 0). IPv4 clients are counted by address.
	RateLimitIPv6Prefix int
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	BodyLimit      int64 // request body limit in bytes; DefaultBodyLimit when 0
	Now            func() time.Time
	// Ready reports whether feedd can serve (database reachable) for /readyz.
	Ready func(ctx context.Context) error
	// FormActionOrigins are origins that setup forms may submit or redirect
	// to besides feedd itself (the Instagram authorize URL's origin), for
	// the setup pages' Content-Security-Policy.
	FormActionOrigins []string
	ShutdownTimeout   time.Duration // DefaultShutdownTimeout when 0
	// ReadHeaderTimeout and ReadTimeout bound how long a client may take to
	// send its request (slow-client protection); the package's constants
	// when 0. Tests shorten them.
	ReadHeaderTimeout, ReadTimeout time.Duration
}

// Server is feedd's HTTP server.
type Server struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time
	// since is time.Since with the real clock (one monotonic read, where
	// now().Sub reads the wall clock as well), now().Sub with a test's.
	since  func(time.Time) time.Duration
	echo   *echo.Echo
	public *PublicGroup
	admin  *echo.Group
	setup  *echo.Group
	signIn *echo.Group
	gate   atomic.Pointer[Gate] // admits the owner; nil: nobody

	prefix    string // PublicURL's path, without a trailing slash
	bodyLimit int64
	metrics   *httpMetrics
	visitors  *ipLimiter // public group rate limit; nil when disabled
	failures  *ipLimiter // failed admin credentials
	// routeLimits are the named limits anonymous routes opt into.
	routeLimits map[RouteLimit]*routeLimiter
	setupCSP    []string

	// routes holds every registered route pattern; unmatched stands for
	// requests that match none.
	routes    cow[string, *route]
	unmatched *route

	mu       sync.Mutex
	listener net.Listener
	http     *http.Server
}

// New builds the server and registers its own routes.
func New(opts Options) (*Server, error) {
	if opts.Registry == nil {
		return nil, errors.New("server: Options.Registry is required")
	}
	if opts.PublicURL == nil {
		opts.PublicURL = &url.URL{Scheme: "http", Host: "localhost:8080"}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	since := time.Since
	if opts.Now == nil {
		opts.Now = time.Now
	} else {
		since = func(t time.Time) time.Duration { return opts.Now().Sub(t) }
	}
	if opts.Ready == nil {
		opts.Ready = func(context.Context) error { return nil }
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	if opts.RateLimitIPv6Prefix <= 0 || opts.RateLimitIPv6Prefix > 128 {
		opts.RateLimitIPv6Prefix = DefaultIPv6Prefix
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		now:       opts.Now,
		since:     since,
		prefix:    strings.TrimRight(opts.PublicURL.Path, "/"),
		bodyLimit: opts.BodyLimit,
		failures:  newIPLimiter(failureRate, failureBurst, opts.Now),
		unmatched: &route{label: "unmatched"},
	}
	s.routeLimits = newRouteLimiters(opts.RateLimitIPv6Prefix, opts.Now)
	if s.bodyLimit <= 0 {
		s.bodyLimit = DefaultBodyLimit
	}
	if opts.RateLimit > 0 {
		s.visitors = newIPLimiter(opts.RateLimit, 2*opts.RateLimit, opts.Now)
		s.visitors.v6Bits = opts.RateLimitIPv6Prefix
	}
	s.setupCSP = []string{setupCSP(opts.FormActionOrigins)}

	if err := opts.Registry.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("server: register go collector: %w", err)
	}
	if err := opts.Registry.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("server: register process collector: %w", err)
	}
	m, err := newHTTPMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	s.metrics = m

	e := echo.NewWithConfig(echo.Config{
		Logger:           opts.Logger,
		HTTPErrorHandler: s.handleError,
		IPExtractor:      func(r *http.Request) string { return s.clientAddr(r).String() },
		OnAddRoute:       s.onAddRoute,
		// Groups' middleware should run for their own routes only; unknown
		// paths are answered by the core middleware's 404.
		NoGroupAutoRegister404Routes: true,
	})
	e.Use(s.core)
	s.echo = e
	s.public = &PublicGroup{g: e.Group(""), s: s}
	s.admin = e.Group("/api/admin", web.Gzip, s.ownerOnly(false))
	s.setup = e.Group("/setup", web.Gzip, s.setupHeaders, s.ownerOnly(true))
	s.signIn = e.Group("/setup/login", web.Gzip, s.setupHeaders)

	// Unknown paths under the owner groups still require the credential,
	// so they do not reveal which admin routes exist.
	s.admin.RouteNotFound("/*", notFound)
	s.setup.RouteNotFound("/*", notFound)

	e.GET("/healthz", s.healthz)
	e.HEAD("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.HEAD("/readyz", s.readyz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{})))
	e.GET(ui.CSSRoute, s.css)
	e.HEAD(ui.CSSRoute, s.css)
	return s, nil
}

// onAddRoute records every route pattern as owner-only; the public group
// marks its own routes public as it adds them (PublicGroup.Add).
func (s *Server) onAddRoute(r echo.Route) error {
	s.recordRoute(r.Path, false)
	return nil
}

// recordRoute enters a route pattern in the route table, so the core
// middleware leaves public routes embeddable and logs them cheaply. A
// pattern registered on both kinds of group counts as public.
func (s *Server) recordRoute(path string, public bool) {
	if rt, ok := s.routes.load(path); !ok || public && !rt.public {
		s.routes.store(path, &route{label: path, public: public})
	}
}

// route finds the request's route: its pattern's, or unmatched for a path
// no route matched.
func (s *Server) route(c *echo.Context) *route {
	rt, ok := s.routes.load(c.Path())
	if !ok || !rt.public && isNotFoundRoute(c) {
		return s.unmatched
	}
	return rt
}

// Echo returns the Echo instance, for routes outside the groups.
func (s *Server) Echo() *echo.Echo { return s.echo }

// Public returns the group for visitor routes: rate limited per client IP,
// embeddable in other sites' frames, no gzip (handlers that benefit wrap
// themselves with web.Gzip). Routes added anywhere else are owner routes.
func (s *Server) Public() *PublicGroup { return s.public }

// PublicGroup is the group of visitor routes. A route is public because it
// was added through this group (or a sub-group of it): each addition is
// recorded as public in the route table.
type PublicGroup struct {
	g *echo.Group
	s *Server
}

// Add registers a public route; see echo.Group.Add.
func (p *PublicGroup) Add(method, path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) echo.RouteInfo {
	ri := p.g.Add(method, path, h, m...)
	p.s.recordRoute(ri.Path, true)
	return ri
}

// GET registers a public GET route.
func (p *PublicGroup) GET(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) echo.RouteInfo {
	return p.Add(http.MethodGet, path, h, m...)
}

// HEAD registers a public HEAD route.
func (p *PublicGroup) HEAD(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) echo.RouteInfo {
	return p.Add(http.MethodHead, path, h, m...)
}

// OPTIONS registers a public OPTIONS route.
func (p *PublicGroup) OPTIONS(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) echo.RouteInfo {
	return p.Add(http.MethodOptions, path, h, m...)
}

// POST registers a public POST route.
func (p *PublicGroup) POST(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) echo.RouteInfo {
	return p.Add(http.MethodPost, path, h, m...)
}

// Group returns a public sub-group with prefix and its own middleware.
func (p *PublicGroup) Group(prefix string, m ...echo.MiddlewareFunc) *PublicGroup {
	return &PublicGroup{g: p.g.Group(prefix, m...), s: p.s}
}

// Admin returns the /api/admin group: admin credential required (401 JSON),
// CSRF checked for cookie sessions.
func (s *Server) Admin() *echo.Group { return s.admin }

// Setup returns the /setup group: admin credential required (browsers
// without a session are redirected to the sign-in page), CSRF checked,
// strict Content-Security-Policy.
func (s *Server) Setup() *echo.Group { return s.setup }

// Handler returns the server's http.Handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.echo }

// Prefix is the public URL's path prefix ("" at the root), for links.
func (s *Server) Prefix() string { return s.prefix }

// Listen binds the listen address; Run calls it when it was not called.
// Calling it first lets the caller learn Addr before serving.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener != nil {
		return nil
	}
	if s.opts.Listener != nil {
		s.listener = s.opts.Listener
		return nil
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("server: listen on %s: %w", s.opts.Addr, err)
	}
	s.listener = ln
	return nil
}

// Addr is the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener == nil {
		return nil
	}
	return s.listener.Addr()
}

// Run serves until ctx is done, then stops accepting connections and waits
// up to the shutdown timeout for in-flight requests before returning, so
// the caller can stop workers and close the database after it.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	srv := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: cmp.Or(s.opts.ReadHeaderTimeout, ReadHeaderTimeout),
		ReadTimeout:       cmp.Or(s.opts.ReadTimeout, ReadTimeout),
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.http = srv
	ln := s.listener
	s.mu.Unlock()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("http server listening", slog.String("addr", ln.Addr().String()))

	select {
	case err := <-errc:
		return fmt.Errorf("server: serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("http server shutting down", slog.Duration("timeout", s.opts.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		// In-flight requests outlived the timeout: cut them off.
		_ = srv.Close()
		err = fmt.Errorf("server: shutdown: %w", err)
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("server: serve: %w", serr)
	}
	return err
}

func notFound(*echo.Context) error { return echo.ErrNotFound }

func (s *Server) healthz(c *echo.Context) error {
	h := c.Response().Header()
	h["Cache-Control"] = hdrNoStore
	return c.String(http.StatusOK, "ok")
}

func (s *Server) readyz(c *echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	c.Response().Header()["Cache-Control"] = hdrNoStore
	if err := s.opts.Ready(ctx); err != nil {
		s.log.Warn("not ready", slog.Any("error", err))
		return c.String(http.StatusServiceUnavailable, "not ready")
	}
	return c.String(http.StatusOK, "ready")
}

func (s *Server) css(c *echo.Context) error {
	ui.ServeCSS(c.Response(), c.Request())
	return nil
}
