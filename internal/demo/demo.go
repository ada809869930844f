// Package demo is "feedd demo": the real feedd server with the built-in
// Instagram sandbox mounted under /sandbox on the same port, a demo feed
// connected through the real OAuth exchange, poller and media store, and a
// front page at / that shows the widget on a sample site, the JSON, the
// HTML fragment and the way to the setup page.
package demo

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/app"
	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/owner"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/secret"
)

// DefaultAddr is where the demo listens unless FEEDD_ADDR says otherwise;
// loopback only, because the demo hands out setup links to its visitors.
const DefaultAddr = "127.0.0.1:8080"

// FeedName is the demo feed's name; a demo restarted on the same data dir
// finds its feed by it instead of making another.
const FeedName = "Sandbox bakery (demo)"

// SandboxPath is where the sandbox is mounted.
const SandboxPath = "/sandbox"

// Options configure a demo run.
type Options struct {
	// DataDir keeps the demo's data; "" uses a temporary directory removed
	// at exit.
	DataDir string
	// Env is the environment (FEEDD_ADDR, FEEDD_LOG_LEVEL... are honoured;
	// the Instagram settings are the sandbox's).
	Env    func(string) (string, bool)
	Stdout io.Writer // where to say what to open
	Logger *slog.Logger
	// Ready, when set, is called with the demo's base URL once the demo
	// feed has its posts.
	Ready func(baseURL string)
	// Sandbox, when set, is given the demo's sandbox (tests measure
	// against its original pictures).
	Sandbox func(*sandbox.Sandbox)
}

// Run runs the demo until ctx ends.
func Run(ctx context.Context, opts Options) error {
	start := time.Now()
	if opts.Env == nil {
		opts.Env = func(string) (string, bool) { return "", false }
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	log := opts.Logger

	dir, temp := opts.DataDir, opts.DataDir == ""
	if temp {
		d, err := os.MkdirTemp("", "feedd-demo-")
		if err != nil {
			return fmt.Errorf("demo: temporary data dir: %w", err)
		}
		dir = d
		defer os.RemoveAll(dir)
	}

	cfg, _, err := config.Load(opts.Env)
	if err != nil {
		return err
	}
	addr := DefaultAddr
	if v, ok := opts.Env("FEEDD_ADDR"); ok && v != "" {
		addr = cfg.Addr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil && addr == DefaultAddr {
		// The usual port is taken: any free one will do for a demo.
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		return fmt.Errorf("demo: listen on %s: %w", addr, err)
	}
	base := baseURL(ln.Addr())

	tokenKey, err := sandboxTokenKey(cfg, dir, temp, log)
	if err != nil {
		ln.Close()
		return err
	}
	sb := sandbox.New(sandbox.Options{
		TokenKey:     tokenKey,
		RedirectURIs: []string{base + config.CallbackPath},
		BaseURL:      base + SandboxPath,
		Seed:         1,
		Logger:       log.With(slog.String("component", "sandbox")),
	})
	if opts.Sandbox != nil {
		opts.Sandbox(sb)
	}

	cfg.DataDir = dir
	cfg.Addr = ln.Addr().String()
	cfg.PublicURL, _ = url.Parse(base)
	cfg.InstagramAppID, cfg.InstagramAppSecret = sb.AppID(), sb.AppSecret()
	cfg.AuthorizeURL, cfg.TokenURL, cfg.GraphURL = sb.AuthorizeURL(), sb.TokenURL(), sb.GraphURL()
	cfg.MediaHosts = []string{ln.Addr().String()}
	cfg.MediaAllowPrivate = true
	if temp && len(cfg.SecretKeys) == 0 {
		// A throwaway data dir needs no key file to back up.
		key := make([]byte, config.KeySize)
		if _, err := rand.Read(key); err != nil {
			ln.Close()
			return err
		}
		cfg.SecretKeys = [][]byte{key}
	}
	if cfg.AdminToken == "" {
		// A fresh token per run: the demo signs its visitors in through
		// one-time setup links instead (see setupLink).
		if cfg.AdminToken, err = owner.GenerateAdminToken(); err != nil {
			ln.Close()
			return err
		}
	}

	var front *frontPage
	m, err := app.New(ctx, cfg, app.Options{
		Stdout:   io.Discard,
		Logger:   log,
		Listener: ln,
		Mount: func(m *app.Main) error {
			e := m.Server.Echo()
			h := echo.WrapHandler(sb)
			e.Any(SandboxPath, h)
			e.Any(SandboxPath+"/*", h)
			front = newFrontPage(m, base)
			e.GET("/", front.serve)
			e.HEAD("/", front.serve)
			e.GET("/demo/setup", front.setupLink)
			return nil
		},
	})
	if err != nil {
		ln.Close()
		return err
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()

	id, err := connectDemoFeed(runCtx, m, sb, base)
	if err != nil {
		cancel()
		return errors.Join(fmt.Errorf("demo: connect the demo feed: %w", err), <-done)
	}
	front.setFeed(id)
	// Pictures of the other sandbox accounts, drawn ahead of a visitor
	// connecting one from the setup page.
	go sb.Warm(runCtx, 12)
	fmt.Fprintf(opts.Stdout, `
feedd demo is running (ready in %s), with sandbox data: no Meta app, nothing leaves this machine.

    Open %s/

  The demo feed's JSON:  %s/api/v1/feeds/%s
  Setup page:            %s/demo/setup
  Data:                  %s%s

Press Ctrl+C to stop.
`, time.Since(start).Round(10*time.Millisecond), base, base, id, base, dir, tempNote(temp))
	if opts.Ready != nil {
		opts.Ready(base)
	}
	return <-done
}

// sandboxTokenKey lets the sandbox of a demo kept in a data dir accept
// the tokens of the previous run, so its feeds stay connected across
// restarts. It is derived from the data dir's secret key.
func sandboxTokenKey(cfg config.Config, dir string, temp bool, log *slog.Logger) ([]byte, error) {
	if temp {
		return nil, nil
	}
	var key []byte
	if len(cfg.SecretKeys) > 0 {
		key = cfg.SecretKeys[0]
	} else {
		k, _, err := secret.LoadOrCreateKey(dir, log)
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		key = k
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("feedd demo sandbox tokens"))
	return mac.Sum(nil), nil
}

func tempNote(temp bool) string {
	if temp {
		return " (temporary: removed when the demo stops; keep it with --data-dir)"
	}
	return ""
}

// baseURL is how a browser on this machine reaches addr.
func baseURL(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// connectDemoFeed finds the demo feed (a demo restarted on the same data
// dir) or creates it and connects it the way an owner would: a state from
// the connect flow, the sandbox's consent answered with Allow, and the
// redirect followed to feedd's own callback, which exchanges the code for
// short- and long-lived tokens. Then it polls once, media included.
func connectDemoFeed(ctx context.Context, m *app.Main, sb *sandbox.Sandbox, base string) (string, error) {
	feeds, err := m.Owner.Feeds(ctx)
	if err != nil {
		return "", err
	}
	var id string
	for _, f := range feeds {
		if f.Name == FeedName {
			id = f.ID
			if f.Status == model.StatusActive && f.PostCount > 0 {
				return id, nil
			}
		}
	}
	if id == "" {
		st, err := m.Owner.CreateFeed(ctx, FeedName, nil)
		if err != nil {
			return "", err
		}
		id = st.ID
	}
	authorize, err := m.Owner.Connect(ctx, id, nil)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(authorize)
	if err != nil {
		return "", err
	}
	redirect, err := sb.Approve(sandbox.AccountBusiness, m.Connections.RedirectURI(), u.Query().Get("state"))
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, redirect, nil)
	if err != nil {
		return "", err
	}
	client := &http.Client{
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound {
		return "", fmt.Errorf("callback answered %d: %s", resp.StatusCode, firstLine(body))
	}
	// The first poll publishes the newest page as soon as its pictures are
	// stored and goes on with the older posts' pictures in the background.
	polled := make(chan error, 1)
	go func() { polled <- m.Feeds.FetchNow(ctx, id) }()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-polled:
			if err != nil {
				return "", fmt.Errorf("first poll: %w", err)
			}
			return id, nil
		case <-tick.C:
			if d, _, err := m.Feeds.Doc(ctx, id, 1, "", nil); err == nil && len(d.Posts) > 0 {
				return id, nil
			}
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

func firstLine(b []byte) string {
	s := string(b)
	if len(s) > 200 {
		s = s[:200]
	}
	return strconv.Quote(s)
}
