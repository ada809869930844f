// Package mediatest gives tests a bucket prefix of their own on the
// S3-compatible server named by FEEDD_TEST_S3_URL (started by
// scripts/ci-services.sh).
package mediatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/media"
)

// S3URL returns FEEDD_TEST_S3_URL, in the form of FEEDD_MEDIA_URL. Unset,
// the test is skipped, or fails when CI is set: CI must run against the
// real server.
func S3URL(t testing.TB) string {
	t.Helper()
	v := os.Getenv("FEEDD_TEST_S3_URL")
	if v == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("FEEDD_TEST_S3_URL is not set: CI runs the S3 tests against the server scripts/ci-services.sh starts")
		}
		t.Skip("FEEDD_TEST_S3_URL not set (scripts/ci-services.sh starts an S3 server and prints it)")
	}
	return v
}

// Storage parses FEEDD_TEST_S3_URL and the AWS credential variables with
// feedd's own configuration parser, and moves the prefix to a fresh one
// below it, unique to this test and run.
func Storage(t testing.TB) *config.MediaStorage {
	t.Helper()
	raw := S3URL(t)
	cfg, _, err := config.Load(func(name string) (string, bool) {
		if name == "FEEDD_MEDIA_URL" {
			return raw, true
		}
		if strings.HasPrefix(name, "AWS_") {
			return os.LookupEnv(name)
		}
		return "", false
	})
	if err != nil {
		t.Fatalf("FEEDD_TEST_S3_URL: %v", err)
	}
	st := cfg.MediaStorage
	var b [4]byte
	rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, t.Name())
	st.Prefix = strings.TrimPrefix(st.Prefix+"/"+name+"-"+hex.EncodeToString(b[:]), "/")
	t.Cleanup(func() { empty(t, Options(st)) })
	return st
}

// Options are the media.S3Options of st.
func Options(st *config.MediaStorage) media.S3Options {
	return media.S3Options{
		Endpoint:        st.Endpoint,
		Insecure:        st.Insecure,
		Region:          st.Region,
		Bucket:          st.Bucket,
		Prefix:          st.Prefix,
		AccessKeyID:     st.AccessKeyID,
		SecretAccessKey: st.SecretAccessKey,
		SessionToken:    st.SessionToken,
	}
}

// Backend opens an S3 backend on a fresh prefix (see Storage).
func Backend(t testing.TB) (*media.S3, media.S3Options) {
	t.Helper()
	o := Options(Storage(t))
	b, err := media.OpenS3(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, o
}

// empty deletes every object under the test's prefix.
func empty(t testing.TB, o media.S3Options) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := media.OpenS3(ctx, o)
	if err != nil {
		t.Logf("clean-up of %s: %v", o.Prefix, err)
		return
	}
	defer b.Close()
	var names []string
	if err := b.List(ctx, func(oi media.ObjectInfo) error { names = append(names, oi.Name); return nil }); err != nil {
		t.Logf("clean-up of %s: %v", o.Prefix, err)
	}
	for _, n := range names {
		if _, err := b.Delete(ctx, n); err != nil {
			t.Logf("clean-up of %s: %v", o.Prefix, err)
			return
		}
	}
}
