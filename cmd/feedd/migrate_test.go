package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/secret"
	"github.com/feedd/feedd/internal/store"
	"github.com/feedd/feedd/internal/store/storetest"
)

func TestMigrateCommand(t *testing.T) {
	url := storetest.PostgresURL(t)
	ctx := context.Background()
	raw := bytes.Repeat([]byte{7}, secret.KeySize)
	key := base64.StdEncoding.EncodeToString(raw)
	box, err := secret.New(raw)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src, err := store.Open(ctx, filepath.Join(dir, "feedd.db"), box, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := src.CreateFeed(ctx, "moved", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := src.Connect(ctx, f.ID, f.Generation, model.Account{IGUserID: "1"},
		model.Token{AccessToken: "IGAAmovedToken"}); err != nil {
		t.Fatal(err)
	}
	src.Close()
	env := envOf("FEEDD_SECRET_KEY", key, "FEEDD_LOG_LEVEL", "warn")

	if code, _, stderr := runCmd(t, env, "migrate", "--from", dir); code != exitUsage || !strings.Contains(stderr, "FEEDD_DATABASE_URL") {
		t.Errorf("without a target: exit %d, %q", code, stderr)
	}
	bad := "mysql://feedd:pw-in-bad-url@db/feedd"
	if code, _, stderr := runCmd(t, env, "migrate", "--from", dir, "--to", bad); code != exitUsage || strings.Contains(stderr, "pw-in-bad-url") {
		t.Errorf("bad target: exit %d, %q", code, stderr)
	}
	// A running install is refused.
	running, err := store.Open(ctx, filepath.Join(dir, "feedd.db"), box, store.Options{Lock: true})
	if err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCmd(t, env, "migrate", "--from", dir, "--to", url); code != exitFailed || !strings.Contains(stderr, "stop it") {
		t.Errorf("running install: exit %d, %q", code, stderr)
	}
	running.Close()

	code, stdout, stderr := runCmd(t, env, "migrate", "--from", dir, "--to", url)
	if code != exitOK || !strings.Contains(stdout, "feeds") || !strings.Contains(stdout, "media/") {
		t.Fatalf("migrate: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	pg, err := store.OpenPostgres(ctx, url, box, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if tok, err := pg.Token(ctx, f.ID); err != nil || tok.AccessToken != "IGAAmovedToken" {
		t.Errorf("token after migrate: %q, %v", tok.AccessToken, err)
	}
	// FEEDD_DATABASE_URL names the target too; a used one is refused.
	code, _, stderr = runCmd(t, envOf("FEEDD_SECRET_KEY", key, "FEEDD_DATABASE_URL", url, "FEEDD_DATA_DIR", dir), "migrate")
	if code != exitFailed || !strings.Contains(stderr, "not empty") {
		t.Errorf("second migrate: exit %d, %q", code, stderr)
	}
	// Another key is refused before anything is copied.
	other := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{8}, secret.KeySize))
	code, _, stderr = runCmd(t, envOf("FEEDD_SECRET_KEY", other), "migrate", "--from", dir, "--to", storetest.PostgresURL(t))
	if code != exitFailed || !strings.Contains(stderr, "FEEDD_SECRET_KEY does not match") {
		t.Errorf("wrong key: exit %d, %q", code, stderr)
	}
}
