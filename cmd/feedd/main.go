// Command feedd is the self-hosted backend for embeddable Instagram feeds.
//
//	feedd [serve]             run the server (configured by FEEDD_* variables)
//	feedd demo [--data-dir D]  the server plus a built-in Instagram sandbox
//	feedd healthcheck         exit 0 when the local server's /healthz answers 200
//	feedd doctor              check the configuration; exit 1 when a check fails
//	feedd admin reset-token   print a new admin token; the old one stops working
//	feedd migrate             copy a SQLite install into an empty PostgreSQL database
//	feedd version             version, commit and Go version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/feedd/feedd/internal/app"
	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/demo"
)

// Set at build time: -ldflags "-X main.version=1.2.3 -X main.commit=abc123".
var (
	version = "dev"
	commit  = ""
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2 // bad command line or configuration
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], config.Env, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `feedd: a self-hosted backend for embeddable Instagram feeds.

Usage:
  feedd [serve]             run the server
  feedd demo [--data-dir D]  the server plus a built-in Instagram sandbox (no Meta app needed)
  feedd healthcheck         exit 0 when the local server's /healthz answers 200
  feedd doctor              check the configuration (app id and secret, public URL, data dir,
                            key, clock); exit 1 when a check fails
  feedd admin reset-token   print a new admin token; the old one and all sessions stop working
  feedd migrate [--from DATA_DIR] [--to postgres://...]
                            copy a stopped SQLite install into an empty PostgreSQL database
  feedd version             print version, commit and Go version
  feedd help                this text

Configuration comes from FEEDD_* environment variables (every secret also as
NAME_FILE); see docs/configuration.md.
`

// run is main without the process: tests call it.
func run(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		if len(args) > 0 {
			return badUsage(stderr, "serve takes no arguments; configure it with FEEDD_* variables")
		}
		return serve(ctx, env, stdout, stderr)
	case "demo":
		return runDemo(ctx, args, env, stdout, stderr)
	case "healthcheck":
		return healthcheck(ctx, env, stderr)
	case "doctor":
		return runDoctor(ctx, args, env, stdout, stderr)
	case "admin":
		if len(args) != 1 || args[0] != "reset-token" {
			return badUsage(stderr, "usage: feedd admin reset-token")
		}
		return resetToken(ctx, env, stdout, stderr)
	case "migrate":
		from, to, ok := migrateFlags(args, stderr)
		if !ok {
			return exitUsage
		}
		return runMigrate(ctx, from, to, env, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, versionLine())
		return exitOK
	case "help", "--help", "-help", "-h":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	return badUsage(stderr, fmt.Sprintf("unknown command %q (see feedd help)", cmd))
}

// migrateFlags parses "feedd migrate [--from DATA_DIR] [--to URL]".
func migrateFlags(args []string, stderr io.Writer) (from, to string, ok bool) {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := fs.String("from", "", "the SQLite install: its data dir or its feedd.db (default: FEEDD_DATA_DIR)")
	t := fs.String("to", "", "the empty PostgreSQL database, postgres://... (default: FEEDD_DATABASE_URL)")
	if err := fs.Parse(args); err != nil {
		return "", "", false
	}
	if fs.NArg() > 0 {
		badUsage(stderr, "usage: feedd migrate [--from DATA_DIR] [--to postgres://...]")
		return "", "", false
	}
	return *f, *t, true
}

func badUsage(stderr io.Writer, msg string) int {
	fmt.Fprintln(stderr, "feedd: "+msg)
	return exitUsage
}

func versionLine() string {
	c := commit
	if c == "" {
		c = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" && s.Value != "" {
					c = s.Value
				}
			}
		}
	}
	return fmt.Sprintf("feedd %s (commit %s, %s)", version, c, runtime.Version())
}

// loadConfig parses the configuration; an invalid one is one line on
// stderr naming the variable.
func loadConfig(env func(string) (string, bool), stderr io.Writer) (config.Config, []string, bool) {
	cfg, warnings, err := config.Load(env)
	if err != nil {
		fmt.Fprintln(stderr, "feedd: "+err.Error())
		return cfg, nil, false
	}
	return cfg, warnings, true
}

// newLogger configures slog once, from FEEDD_LOG_FORMAT and FEEDD_LOG_LEVEL.
// Logs go to stderr; stdout is kept for what the operator must read (the
// one-time admin token).
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h)
}

func serve(ctx context.Context, env func(string) (string, bool), stdout, stderr io.Writer) int {
	cfg, warnings, ok := loadConfig(env, stderr)
	if !ok {
		return exitUsage
	}
	log := newLogger(cfg, stderr)
	slog.SetDefault(log)
	log.Info("starting feedd", slog.String("version", version), slog.Any("config", cfg))
	for _, w := range warnings {
		log.Warn(w)
	}
	m, err := app.New(ctx, cfg, app.Options{Stdout: stdout, Logger: log})
	if err != nil {
		log.Error("cannot start", slog.Any("error", err))
		fmt.Fprintln(stderr, "feedd: "+err.Error())
		return exitFailed
	}
	if err := m.Run(ctx); err != nil {
		log.Error("stopped with an error", slog.Any("error", err))
		return exitFailed
	}
	return exitOK
}

func resetToken(ctx context.Context, env func(string) (string, bool), stdout, stderr io.Writer) int {
	cfg, _, ok := loadConfig(env, stderr)
	if !ok {
		return exitUsage
	}
	log := newLogger(cfg, stderr)
	if err := app.ResetAdminToken(ctx, cfg, stdout, log); err != nil {
		fmt.Fprintln(stderr, "feedd: "+err.Error())
		return exitFailed
	}
	return exitOK
}

// healthcheck asks the local server's /healthz, for Docker's HEALTHCHECK in
// an image without a shell or curl. It reads only FEEDD_ADDR, so an
// unrelated configuration problem does not mark a running server unhealthy.
func healthcheck(ctx context.Context, env func(string) (string, bool), stderr io.Writer) int {
	addr, ok := env("FEEDD_ADDR")
	if !ok || addr == "" {
		addr = config.Default().Addr
	}
	target, err := healthURL(addr)
	if err != nil {
		fmt.Fprintln(stderr, "feedd: FEEDD_ADDR: "+err.Error())
		return exitFailed
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		fmt.Fprintln(stderr, "feedd: healthcheck: "+err.Error())
		return exitFailed
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "feedd: healthcheck: "+err.Error())
		return exitFailed
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "feedd: healthcheck: %s answered %d\n", target, resp.StatusCode)
		return exitFailed
	}
	return exitOK
}

// healthURL is the /healthz URL of a server listening on addr: loopback
// when it listens on every interface.
func healthURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if port == "" || port == "0" {
		return "", errors.New("no fixed port to check")
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}

func runDemo(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "keep the demo's data in this directory (default: a temporary one, removed at exit)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		return badUsage(stderr, "demo takes no arguments besides --data-dir")
	}
	cfg, _, ok := loadConfig(env, stderr)
	if !ok {
		return exitUsage
	}
	if _, set := env("FEEDD_LOG_LEVEL"); !set {
		// The terminal is for the demo's instructions; warnings and errors
		// still show.
		cfg.LogLevel = slog.LevelWarn
	}
	log := newLogger(cfg, stderr)
	slog.SetDefault(log)
	err := demo.Run(ctx, demo.Options{DataDir: *dataDir, Env: env, Stdout: stdout, Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, "feedd: "+err.Error())
		return exitFailed
	}
	return exitOK
}
