// Package app wires feedd together: data dir, secret key, store, admin
// credential, metrics registry and HTTP server, plus the background workers
// other packages provide. Main is the whole program; cmd/feedd and the
// end-to-end tests both run it.
package app

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/connection"
	"github.com/feedd/feedd/internal/feed"
	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/guard"
	"github.com/feedd/feedd/internal/media"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/owner"
	"github.com/feedd/feedd/internal/secret"
	"github.com/feedd/feedd/internal/server"
	"github.com/feedd/feedd/internal/store"
)

// DatabaseFile is the SQLite database's name inside the data dir.
const DatabaseFile = "feedd.db"

// Options are the parts of the program's surroundings that Main uses.
type Options struct {
	// Stdout receives the one-time admin token and setup URL (never the
	// log). Default os.Stdout.
	Stdout io.Writer
	Logger *slog.Logger     // default: discard
	Now    func() time.Time // default time.Now
	// Listener, when set, is served instead of binding FEEDD_ADDR.
	Listener net.Listener
	// Mount, when set, is called with the server before anything listens,
	// to add routes of the caller's own (the demo's sandbox and front page).
	Mount func(m *Main) error
	// MediaSweepEvery is how often media storage shared with other
	// instances is swept while running; 0 means mediaSweepInterval.
	MediaSweepEvery time.Duration
}

// Worker is a background loop (poller, token refresher...). Run blocks
// until ctx is done and returns nil then.
type Worker interface {
	Run(ctx context.Context) error
}

// WorkerFunc adapts a function to Worker.
type WorkerFunc func(ctx context.Context) error

// Run calls f.
func (f WorkerFunc) Run(ctx context.Context) error { return f(ctx) }

type namedWorker struct {
	name string
	w    Worker
}

// Main is the feedd program.
type Main struct {
	Config      config.Config
	Logger      *slog.Logger
	Now         func() time.Time
	Box         *secret.Box
	Store       *store.Store
	Registry    *prometheus.Registry
	Guard       *guard.Guard // recovers panics of background goroutines
	Server      *server.Server
	Graph       *graph.Client
	Media       *media.Store
	Feeds       *feed.Service
	Connections *connection.Service
	Owner       *owner.Service
	Gate        *owner.Gate // admin sign-in, sessions and CSRF of the owner routes

	stdout  io.Writer
	mu      sync.Mutex
	workers []namedWorker
	closers []func() error
	closed  bool

	// sweepEvery is Options.MediaSweepEvery with its default.
	sweepEvery time.Duration
}

// New prepares the program: data dir (0700), secret key (generated into
// the data dir when FEEDD_SECRET_KEY is unset, with a warning), store
// (a clear error when the key does not match), admin credential (printed
// once when generated), metrics registry and HTTP server. Nothing listens
// until Start or Run.
func New(ctx context.Context, cfg config.Config, opts Options) (_ *Main, err error) {
	m := &Main{Config: cfg, Logger: opts.Logger, Now: opts.Now, stdout: opts.Stdout, sweepEvery: opts.MediaSweepEvery}
	if m.sweepEvery <= 0 {
		m.sweepEvery = mediaSweepInterval
	}
	if m.Logger == nil {
		m.Logger = slog.New(slog.DiscardHandler)
	}
	if m.Now == nil {
		m.Now = time.Now
	}
	if m.stdout == nil {
		m.stdout = os.Stdout
	}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("app: create data dir %s: %w", cfg.DataDir, err)
	}
	if err := checkSharedKey(cfg); err != nil {
		return nil, err
	}
	if m.Box, err = openBox(cfg, m.Logger); err != nil {
		return nil, err
	}
	m.Store, err = OpenStore(ctx, cfg, m.Box, store.Options{Now: m.Now, Logger: m.Logger, Lock: true})
	if err != nil {
		if errors.Is(err, store.ErrWrongKey) {
			return nil, fmt.Errorf("app: %w (data dir %s)", err, cfg.DataDir)
		}
		return nil, fmt.Errorf("app: open database: %w", err)
	}
	if err := m.ensureAdminToken(ctx, m.Store); err != nil {
		return nil, err
	}

	m.Registry = prometheus.NewRegistry()
	if m.Guard, err = guard.New(m.Logger, m.Registry); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	var formOrigins []string
	if o := originOf(cfg.AuthorizeURL); o != "" {
		formOrigins = append(formOrigins, o)
	}
	m.Server, err = server.New(server.Options{
		Addr:                cfg.Addr,
		Listener:            opts.Listener,
		PublicURL:           cfg.PublicURL,
		Logger:              m.Logger,
		Registry:            m.Registry,
		RateLimit:           cfg.RateLimit,
		RateLimitIPv6Prefix: cfg.RateLimitIPv6Prefix,
		TrustedProxies:      cfg.TrustedProxies,
		Now:                 opts.Now, // nil in production: the server then times requests with one monotonic read
		Ready:               m.Store.Ping,
		FormActionOrigins:   formOrigins,
	})
	if err != nil {
		return nil, err
	}
	if err := m.wire(ctx); err != nil {
		return nil, err
	}
	if opts.Mount != nil {
		if err := opts.Mount(m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func openBox(cfg config.Config, log *slog.Logger) (*secret.Box, error) {
	keys := cfg.SecretKeys
	if len(keys) == 0 {
		// LoadOrCreateKey warns once, when it generates the key.
		k, _, err := secret.LoadOrCreateKey(cfg.DataDir, log)
		if err != nil {
			return nil, fmt.Errorf("app: %w", err)
		}
		keys = [][]byte{k}
	}
	box, err := secret.New(keys[0], keys[1:]...)
	if err != nil {
		return nil, fmt.Errorf("app: FEEDD_SECRET_KEY: %w", err)
	}
	return box, nil
}

// ensureAdminToken makes sure an admin credential exists. FEEDD_ADMIN_TOKEN
// wins (stored as a hash; sessions survive restarts with the same token).
// Without it, a token is generated once and printed with a one-time setup
// URL to stdout, never to the log.
func (m *Main) ensureAdminToken(ctx context.Context, st owner.GateStore) error {
	stored, err := st.AdminTokenHash(ctx)
	if err != nil && !errors.Is(err, model.ErrNotFound) {
		return fmt.Errorf("app: read admin token: %w", err)
	}
	if tok := m.Config.AdminToken; tok != "" {
		if subtle.ConstantTimeCompare(stored, owner.HashToken(tok)) == 1 {
			return nil
		}
		if err := owner.SetAdminToken(ctx, st, tok); err != nil {
			return fmt.Errorf("app: %w", err)
		}
		m.Logger.Info("admin token set from FEEDD_ADMIN_TOKEN")
		return nil
	}
	if stored != nil {
		return nil
	}
	tok, err := owner.GenerateAdminToken()
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	if err := owner.SetAdminToken(ctx, st, tok); err != nil {
		return fmt.Errorf("app: %w", err)
	}
	link, err := owner.IssueSetupLink(ctx, st, m.Config.PublicURL, m.Now())
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	m.Logger.Warn("generated an admin token; it was printed once to stdout")
	PrintAdminToken(m.stdout, tok, link)
	return nil
}

// PrintAdminToken writes a new admin token (and, when given, a one-time
// setup link) for the operator.
func PrintAdminToken(w io.Writer, token, setupLink string) {
	fmt.Fprintf(w, "\nfeedd admin token (shown only this once; keep it safe, it protects /setup and /api/admin):\n\n    %s\n\n", token)
	if setupLink != "" {
		fmt.Fprintf(w, "Open this one-time setup link within 24 hours to sign in:\n\n    %s\n\n", setupLink)
	}
}

// AddWorker registers a background loop started by Run and stopped after
// the HTTP server has finished its requests. Call before Run.
func (m *Main) AddWorker(name string, w Worker) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.workers = append(m.workers, namedWorker{name, w})
}

// OnClose registers a cleanup run after the workers have stopped and
// before the database closes (e.g. flushing a cache). Called in reverse
// order of registration.
func (m *Main) OnClose(fn func() error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closers = append(m.closers, fn)
}

// Start binds the listen address, so Addr and URL work before Run.
func (m *Main) Start() error { return m.Server.Listen() }

// Addr is the bound address (nil before Start or Run).
func (m *Main) Addr() net.Addr { return m.Server.Addr() }

// URL is http://<bound address>, for tests and the healthcheck.
func (m *Main) URL() string {
	a := m.Addr()
	if a == nil {
		return ""
	}
	return "http://" + a.String()
}

// Run serves and runs the workers until ctx is done, then shuts down in a
// fixed order: stop accepting, finish in-flight requests, stop the
// workers, run the OnClose hooks, close the database.
func (m *Main) Run(ctx context.Context) error {
	if err := m.Start(); err != nil {
		return err
	}
	m.Logger.Info("feedd started", slog.String("addr", m.Addr().String()), slog.String("public_url", m.Config.PublicBase()))

	wctx, stopWorkers := context.WithCancel(context.Background())
	defer stopWorkers()
	var wg sync.WaitGroup
	m.mu.Lock()
	workers := append([]namedWorker(nil), m.workers...)
	m.mu.Unlock()
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.w.Run(wctx); err != nil && !errors.Is(err, context.Canceled) {
				m.Logger.Error("worker stopped", slog.String("worker", w.name), slog.Any("error", err))
			}
		}()
	}

	serveErr := m.Server.Run(ctx)
	m.Logger.Info("http server stopped; stopping workers")
	stopWorkers()
	wg.Wait()
	err := m.Close()
	m.Logger.Info("feedd stopped")
	return errors.Join(serveErr, err)
}

// Close runs the OnClose hooks and closes the database. It is safe to call
// more than once; Run calls it.
func (m *Main) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	closers := m.closers
	m.mu.Unlock()
	var err error
	for i := len(closers) - 1; i >= 0; i-- {
		err = errors.Join(err, closers[i]())
	}
	if m.Store != nil {
		if cerr := m.Store.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("app: close database: %w", cerr))
		}
	}
	return err
}

// ResetAdminToken replaces the admin token of the data in cfg.DataDir:
// every session and setup link ends, and the new token is printed once to
// w with a fresh setup link. Used by "feedd admin reset-token".
func ResetAdminToken(ctx context.Context, cfg config.Config, w io.Writer, log *slog.Logger) error {
	if cfg.AdminToken != "" {
		return errors.New("app: FEEDD_ADMIN_TOKEN is set; the admin token is the value of that variable: change it there and restart")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.DatabaseURL == "" {
		dbPath := filepath.Join(cfg.DataDir, DatabaseFile)
		if _, err := os.Stat(dbPath); err != nil {
			return fmt.Errorf("app: no feedd database at %s (check FEEDD_DATA_DIR): %w", dbPath, err)
		}
	}
	box, err := openBox(cfg, log)
	if err != nil {
		return err
	}
	// Without the instance lock: this short-lived command runs beside the
	// server, and SQLite's own locking orders its one write with the server's.
	st, err := OpenStore(ctx, cfg, box, store.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("app: open database: %w", err)
	}
	defer st.Close()
	tok, err := owner.GenerateAdminToken()
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	if err := owner.SetAdminToken(ctx, st, tok); err != nil {
		return fmt.Errorf("app: %w", err)
	}
	link, err := owner.IssueSetupLink(ctx, st, cfg.PublicURL, time.Now())
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	log.Warn("admin token reset; all sessions ended")
	PrintAdminToken(w, tok, link)
	return nil
}

// OpenStore opens the configured database: PostgreSQL when
// FEEDD_DATABASE_URL is set, otherwise SQLite in the data dir, where
// opts.Lock makes this process the only one serving it.
func OpenStore(ctx context.Context, cfg config.Config, box *secret.Box, opts store.Options) (*store.Store, error) {
	if cfg.DatabaseURL != "" {
		return store.OpenPostgres(ctx, cfg.DatabaseURL, box, opts)
	}
	return store.Open(ctx, filepath.Join(cfg.DataDir, DatabaseFile), box, opts)
}

// CopyToPostgres copies the SQLite database of a stopped install (from: its
// data dir or its feedd.db) into the empty PostgreSQL database at url, and
// reports the rows copied per table to w. The install's key must be
// FEEDD_SECRET_KEY or its data dir's key file; a running install is refused
// (its instance lock is held). Used by "feedd migrate".
func CopyToPostgres(ctx context.Context, cfg config.Config, from, url string, w io.Writer, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fi, err := os.Stat(from)
	if err != nil {
		return fmt.Errorf("app: no feedd install at %s: %w", from, err)
	}
	path, dataDir := from, filepath.Dir(from)
	if fi.IsDir() {
		path, dataDir = filepath.Join(from, DatabaseFile), from
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("app: no feedd database in %s: %w", from, err)
		}
	}
	if len(cfg.SecretKeys) == 0 {
		// Never generate a key here: it could not open the tokens.
		if _, err := os.Stat(filepath.Join(dataDir, secret.KeyFileName)); err != nil {
			return fmt.Errorf("app: FEEDD_SECRET_KEY is not set and %s has no %s: set FEEDD_SECRET_KEY to the key of this install", dataDir, secret.KeyFileName)
		}
	}
	cfg.DataDir = dataDir
	box, err := openBox(cfg, log)
	if err != nil {
		return err
	}
	src, err := store.Open(ctx, path, box, store.Options{Logger: log, Lock: true})
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("app: %w: stop it before moving its data", err)
		}
		return fmt.Errorf("app: open %s: %w", path, err)
	}
	defer src.Close()
	counts, err := store.CopyToPostgres(ctx, src, url)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	for _, c := range counts {
		fmt.Fprintf(w, "%-20s %d rows\n", c.Table, c.Rows)
	}
	fmt.Fprintf(w, "copied %s into %s\n", path, store.RedactURL(url))
	return nil
}

// originOf returns scheme://host of a URL, or "".
func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
