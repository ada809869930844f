package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/labstack/echo/v5"
	"golang.org/x/time/rate"

	"github.com/feedd/feedd/internal/cluster"
	"github.com/feedd/feedd/internal/connection"
	"github.com/feedd/feedd/internal/doctor"
	"github.com/feedd/feedd/internal/feed"
	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/mail"
	"github.com/feedd/feedd/internal/media"
	"github.com/feedd/feedd/internal/owner"
	"github.com/feedd/feedd/internal/render"
	"github.com/feedd/feedd/internal/server"
	"github.com/feedd/feedd/internal/web"
)

// MediaDir is the stored images' directory inside the data dir.
const MediaDir = "media"

// wire builds the Instagram client, the media store, the connection
// service, the feed service and the owner service over the store, registers
// their routes on the server and their loops as workers. It runs the
// start-up media sweep before anything can download.
func (m *Main) wire(ctx context.Context) error {
	cfg := m.Config
	var limiter *rate.Limiter
	if cfg.GraphRate > 0 {
		limiter = rate.NewLimiter(rate.Limit(cfg.GraphRate), max(cfg.GraphBurst, 1))
	}
	gc, err := graph.New(graph.Config{
		AppID:        cfg.InstagramAppID,
		AppSecret:    cfg.InstagramAppSecret,
		RedirectURI:  cfg.RedirectURI(),
		AuthorizeURL: cfg.AuthorizeURL,
		TokenURL:     cfg.TokenURL,
		GraphURL:     cfg.GraphURL,
		APIVersion:   cfg.APIVersion,
		Limiter:      limiter,
		AccountRate:  cfg.GraphAccountRate,
		Now:          m.Now,
		Logger:       m.Logger,
		Registerer:   m.Registry,
	})
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	m.Graph = gc

	ms, err := m.openMedia(ctx)
	if err != nil {
		return err
	}
	m.Media = ms
	m.OnClose(func() error { return ms.Close() })
	if err := m.sweepMedia(ctx); err != nil {
		return err
	}

	var mailer connection.Mailer
	if a := cfg.Alerts; a != nil {
		mm, err := mail.New(mail.Config{Addr: a.SMTPAddr, Username: a.Username, Password: a.Password, From: a.From, To: a.To, Now: m.Now})
		if err != nil {
			return fmt.Errorf("app: %w", err)
		}
		mailer = mm
	}
	instance := cluster.NewInstanceID()
	claims, err := m.newClaims(ctx, instance)
	if err != nil {
		return err
	}
	events, err := m.newEvents(instance)
	if err != nil {
		return err
	}
	cs, err := connection.New(connection.Options{
		Claims:        claims,
		Store:         m.Store,
		Graph:         gc,
		Files:         ms,
		PublicURL:     cfg.PublicBase(),
		RedirectURI:   cfg.RedirectURI(),
		AppID:         cfg.InstagramAppID,
		AppSecret:     cfg.InstagramAppSecret,
		CheckInterval: cfg.TokenCheckInterval,
		RefreshWindow: cfg.TokenRefreshWindow,
		NotifyWebhook: cfg.NotifyWebhook,
		NotifySecret:  cfg.NotifyWebhookSecret,
		Mailer:        mailer,
		Now:           m.Now,
		Logger:        m.Logger,
		Registerer:    m.Registry,
		Guard:         m.Guard,
	})
	if err != nil {
		return fmt.Errorf("app: connection service: %w", err)
	}
	m.Connections = cs
	m.OnClose(func() error { cs.Close(); return nil })

	fs, err := feed.New(feed.Options{
		Claims:        claims,
		Events:        feedEvents(events),
		Store:         m.Store,
		Graph:         gc,
		Media:         ms,
		Connections:   cs,
		PublicURL:     cfg.PublicBase(),
		FetchInterval: cfg.FetchInterval,
		CacheMemory:   cfg.CacheMemory,
		Now:           m.Now,
		Logger:        m.Logger,
		Registerer:    m.Registry,
		Guard:         m.Guard,
	})
	if err != nil {
		return fmt.Errorf("app: feed service: %w", err)
	}
	m.Feeds = fs
	m.OnClose(func() error { fs.Close(); return nil })
	// AVIF and WebP beside the JPEGs, in the background: a feed shows its
	// JPEGs until an image's formats are stored, then its cached documents
	// are dropped so that they list them.
	formats, err := ms.NewFormatWorker(m.Store, media.FormatOptions{
		Formats:    cfg.MediaFormats,
		Holder:     instance,
		Stored:     func(ids []string) { invalidateAll(fs, ids) },
		Now:        m.Now,
		Logger:     m.Logger,
		Registerer: m.Registry,
	})
	if err != nil {
		return fmt.Errorf("app: media formats: %w", err)
	}
	m.listen(events, fs)

	cs.SetFeeds(fs)
	ow, err := owner.New(owner.Options{
		Store:       m.Store,
		Connections: cs,
		Feeds:       fs,
		Files:       ms,
		PublicURL:   cfg.PublicBase(),
		Now:         m.Now,
		Logger:      m.Logger,
	})
	if err != nil {
		return fmt.Errorf("app: owner service: %w", err)
	}
	m.Owner = ow
	gate, err := owner.NewGate(owner.GateOptions{
		Store:     m.Store,
		PublicURL: cfg.PublicURL,
		Failures:  m.Server,
		Now:       m.Now,
		Logger:    m.Logger,
		Guard:     m.Guard,
	})
	if err != nil {
		return fmt.Errorf("app: owner gate: %w", err)
	}
	m.Gate = gate

	rh, err := render.NewHandlers(render.Config{Source: fs, PublicURL: cfg.PublicBase(), Logger: m.Logger})
	if err != nil {
		return fmt.Errorf("app: render: %w", err)
	}

	srv := m.Server
	pub := srv.Public()
	feed.NewHandler(fs).Register(pub)
	// The HTML fragment and embed page are compressed per response (they
	// vary with the options); the widget assets and the feed JSON carry
	// precompressed bytes, which Gzip leaves alone.
	rh.Register(pub.Group("", web.Gzip))
	mediaHandler := echo.WrapHandler(http.StripPrefix("/media", ms.Handler()))
	pub.GET("/media/*", mediaHandler)
	pub.HEAD("/media/*", mediaHandler)

	srv.SetGate(gate)
	gate.RegisterSignIn(srv.SignIn(), srv.Setup())
	oh := owner.NewHandler(ow, owner.HTTPOptions{Checks: doctor.Checker(doctor.Input{Config: cfg, Now: m.Now, InServer: true})})
	oh.RegisterSetup(srv.Setup())
	oh.RegisterAdmin(srv.Admin())
	oh.RegisterCallbacks(srv.Echo(), srv.Limit(server.LimitCallback))

	m.AddWorker("poller", WorkerFunc(fs.Run))
	m.AddWorker("token_refresher", WorkerFunc(cs.Run))
	m.AddWorker("notifications", WorkerFunc(cs.RunNotifications))
	m.AddWorker("purge_expired", WorkerFunc(gate.Run))
	if m.sweepGrace() > 0 {
		m.AddWorker("media_sweep", WorkerFunc(m.runMediaSweep))
	}
	m.AddWorker("media_formats", WorkerFunc(func(ctx context.Context) error { formats.Run(ctx); return nil }))
	return nil
}

// openMedia opens the media store: the bucket of FEEDD_MEDIA_URL, checked
// to be reachable and writable, or the media directory in the data dir.
func (m *Main) openMedia(ctx context.Context) (*media.Store, error) {
	cfg := m.Config
	hosts, err := media.ParseHosts(strings.Join(cfg.MediaHosts, ","))
	if err != nil {
		return nil, fmt.Errorf("app: FEEDD_MEDIA_HOSTS: %w", err)
	}
	o := media.Options{
		// With a bucket, the directory holds only temp files.
		Dir:          filepath.Join(cfg.DataDir, MediaDir),
		PublicURL:    cfg.MediaPublicURL,
		SweepGrace:   m.sweepGrace(),
		SweptAtStart: true, // start sweeps right after, which counts the bytes
		Hosts:        hosts,
		AllowPrivate: cfg.MediaAllowPrivate,
		Logger:       m.Logger,
		Registerer:   m.Registry,
		Now:          m.Now,
	}
	if st := cfg.MediaStorage; st != nil {
		b, err := media.OpenS3(ctx, media.S3Options{
			Endpoint:        st.Endpoint,
			Insecure:        st.Insecure,
			Region:          st.Region,
			Bucket:          st.Bucket,
			Prefix:          st.Prefix,
			AccessKeyID:     st.AccessKeyID,
			SecretAccessKey: st.SecretAccessKey,
			SessionToken:    st.SessionToken,
		})
		if err != nil {
			return nil, fmt.Errorf("app: FEEDD_MEDIA_URL: %w", err)
		}
		o.Backend = b
	}
	ms, err := media.New(o)
	if err != nil {
		if o.Backend != nil {
			o.Backend.Close()
		}
		return nil, fmt.Errorf("app: media store: %w", err)
	}
	if cfg.MediaStorage != nil {
		m.Logger.Info("media in object storage", slog.String("media_url", cfg.MediaStorage.String()))
	}
	return ms, nil
}

// sweepGrace is how old an orphaned media row or file must be before the
// sweep removes it. When other instances may write to the bucket or the
// database, media.DefaultSweepGrace, so that nothing they just stored and
// have not recorded yet is removed; SQLite and the data dir's media belong
// to this process alone (the store refuses a second one on the data dir).
func (m *Main) sweepGrace() time.Duration {
	if m.Config.MediaStorage != nil || m.Config.DatabaseURL != "" {
		return media.DefaultSweepGrace
	}
	return 0
}

// sweepMedia drops media rows no feed references any more (left by a
// poll that stopped half-way) and then every file no row names, so nothing
// half-written or orphaned is ever served. Rows and files younger than the
// grace period are left: another instance sharing the storage may be
// between storing and recording them.
func (m *Main) sweepMedia(ctx context.Context) error {
	files, err := m.Store.SweepMedia(ctx, m.Now().Add(-m.sweepGrace()))
	if err != nil {
		return fmt.Errorf("app: sweep media rows: %w", err)
	}
	if err := m.Media.Remove(files); err != nil {
		m.Logger.Warn("could not delete orphaned media files", slog.Any("error", err))
	}
	keep, err := m.Store.ReferencedFiles(ctx)
	if err != nil {
		return fmt.Errorf("app: list media files: %w", err)
	}
	n, bytes, err := m.Media.Sweep(ctx, func(f string) bool { _, ok := keep[f]; return ok })
	if err != nil {
		return fmt.Errorf("app: sweep media dir: %w", err)
	}
	if n > 0 {
		m.Logger.Info("removed orphaned media files", slog.Int("files", n), slog.Int64("bytes", bytes))
	}
	return nil
}

// invalidateAll drops the cached documents of the feeds ids.
func invalidateAll(fs *feed.Service, ids []string) {
	for _, id := range ids {
		fs.Invalidate(id)
	}
}
