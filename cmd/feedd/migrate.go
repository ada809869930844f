package main

import (
	"context"
	"fmt"
	"io"

	"github.com/feedd/feedd/internal/app"
	"github.com/feedd/feedd/internal/store"
)

// runMigrate is "feedd migrate": it copies a stopped SQLite install (from:
// its data dir or feedd.db; FEEDD_DATA_DIR when empty) into an empty
// PostgreSQL database (to; FEEDD_DATABASE_URL when empty).
func runMigrate(ctx context.Context, from, to string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	cfg, _, ok := loadConfig(env, stderr)
	if !ok {
		return exitUsage
	}
	if from == "" {
		from = cfg.DataDir
	}
	if to == "" {
		to = cfg.DatabaseURL
	}
	if to == "" {
		return badUsage(stderr, "migrate needs the target database: --to postgres://... or FEEDD_DATABASE_URL")
	}
	if err := store.ValidateURL(to); err != nil {
		return badUsage(stderr, "--to: "+err.Error())
	}
	if err := app.CopyToPostgres(ctx, cfg, from, to, stdout, newLogger(cfg, stderr)); err != nil {
		fmt.Fprintln(stderr, "feedd: "+err.Error())
		return exitFailed
	}
	fmt.Fprintln(stdout, "Images are files, not rows: move the data dir's media/ directory (or its bucket) along; see docs/deployment.md.")
	return exitOK
}
