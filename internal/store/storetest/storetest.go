// Package storetest gives tests a fresh PostgreSQL database of their own on
// the server named by FEEDD_TEST_DATABASE_URL, so that tests against the
// PostgreSQL store stay independent and can run in parallel.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// EnvURL names the variable holding the PostgreSQL server tests use: a URL
// of a role that may create databases, e.g.
// postgres://feedd@127.0.0.1:55432/postgres.
const EnvURL = "FEEDD_TEST_DATABASE_URL"

// PostgresURL creates an empty database on the test server and returns its
// URL; the database is dropped when the test ends. Without
// FEEDD_TEST_DATABASE_URL the test is skipped, or fails when CI is set (CI
// must not pass by skipping).
func PostgresURL(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvURL)
	if admin == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set; CI runs the PostgreSQL tests", EnvURL)
		}
		t.Skipf("PostgreSQL tests skipped: set %s (e.g. postgres://feedd@127.0.0.1:55432/postgres) to run them", EnvURL)
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("%s does not parse", EnvURL)
	}
	var b [8]byte
	rand.Read(b[:])
	name := "feedd_test_" + hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	defer db.Close()
	// The name is ours (hex), so it is safe to splice into the statement.
	if _, err := db.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("storetest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db, err := sql.Open("pgx", admin)
		if err != nil {
			t.Errorf("storetest: %v", err)
			return
		}
		defer db.Close()
		// FORCE ends connections a failed test left open.
		if _, err := db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("storetest: drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}
