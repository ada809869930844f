package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/app"
	"github.com/feedd/feedd/internal/doctor"
)

const (
	testAppID     = "1234567890123456"
	testAppSecret = "0123456789abcdef0123456789abcdef"
)

var checkLine = regexp.MustCompile(`^(ok  |FAIL|warn)  [^—]+ — .+`)

// doctorLines runs feedd doctor and splits its report: the check lines and
// the summary.
func doctorLines(t *testing.T, env func(string) (string, bool)) (int, []string, string) {
	t.Helper()
	code, out, errOut := runCmd(t, env, "doctor")
	if errOut != "" {
		t.Errorf("stderr: %q", errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 2 {
		t.Fatalf("output too short:\n%s", out)
	}
	for _, l := range lines[:len(lines)-1] {
		if !checkLine.MatchString(l) {
			t.Errorf("not a check line: %q", l)
		}
	}
	return code, lines[:len(lines)-1], lines[len(lines)-1]
}

func lineFor(lines []string, title string) string {
	for _, l := range lines {
		if strings.Contains(l, "  "+title+" — ") {
			return l
		}
	}
	return ""
}

func TestDoctorAgainstTheRunningServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	env := envOf("FEEDD_ADDR", addr, "FEEDD_DATA_DIR", dir, "FEEDD_PUBLIC_URL", "http://"+addr,
		"FEEDD_INSTAGRAM_APP_ID", testAppID, "FEEDD_INSTAGRAM_APP_SECRET", testAppSecret, "FEEDD_LOG_LEVEL", "error")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncWriter
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, env, &out, &errb) }()
	defer func() { cancel(); <-done }()
	healthy := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var hc bytes.Buffer
		if healthcheck(context.Background(), env, &hc) == 0 {
			healthy = true
			break
		}
	}
	if !healthy {
		t.Fatalf("never healthy; stderr:\n%s", errb.String())
	}

	code, lines, summary := doctorLines(t, env)
	if code != exitOK {
		t.Errorf("exit %d", code)
	}
	for _, l := range lines {
		// serve generated the key file: the only expected warning.
		if !strings.HasPrefix(l, "ok  ") && !strings.HasPrefix(l, "warn  Token encryption key") {
			t.Errorf("unexpected: %s", l)
		}
		if strings.Contains(l, testAppSecret) {
			t.Errorf("the app secret is printed: %s", l)
		}
	}
	if l := lineFor(lines, "Public URL reaches this feedd"); !strings.Contains(l, "answered feedd's 200 ok") {
		t.Errorf("the real /healthz was not recognised: %q", l)
	}
	if l := lineFor(lines, "OAuth redirect URI"); !strings.Contains(l, "— http://"+addr+"/auth/instagram/callback / Register exactly") {
		t.Errorf("redirect URI line: %q", l)
	}
	if summary != "feedd doctor: no failures, 1 warning" {
		t.Errorf("summary %q", summary)
	}
}

func TestDoctorReportsAnUnconfiguredMachine(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, app.DatabaseFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, lines, summary := doctorLines(t, envOf("FEEDD_DATA_DIR", dir, "FEEDD_PUBLIC_URL", closedURL,
		"FEEDD_INSTAGRAM_APP_SECRET", "short-secret-value", "FEEDD_FETCH_INTERVAL", "10s"))
	if code != exitFailed {
		t.Errorf("exit %d, want %d", code, exitFailed)
	}
	want := map[string]string{
		"Instagram app ID":              "FAIL  Instagram app ID — FEEDD_INSTAGRAM_APP_ID is not set",
		"Instagram app secret":          "FAIL  Instagram app secret — FEEDD_INSTAGRAM_APP_SECRET is 18 characters",
		"Public URL reaches this feedd": "warn  Public URL reaches this feedd — " + closedURL + "/healthz not reachable — is feedd running?",
		"Token encryption key":          "FAIL  Token encryption key — FEEDD_SECRET_KEY is not set and",
		"Data dir is writable":          "ok    Data dir is writable — " + dir,
		"Clock is right":                "ok    Clock is right — not checked",
		"Configuration":                 "warn  Configuration — FEEDD_FETCH_INTERVAL is 10s",
	}
	for title, prefix := range want {
		if l := lineFor(lines, title); !strings.HasPrefix(l, prefix) {
			t.Errorf("%s: got %q, want it to start with %q", title, l, prefix)
		}
	}
	for _, l := range lines {
		if strings.Contains(l, "short-secret-value") {
			t.Errorf("the app secret is printed: %s", l)
		}
	}
	if summary != "feedd doctor: 3 failures, 2 warnings" {
		t.Errorf("summary %q", summary)
	}
}

func TestDoctorInvalidConfigIsAFailedCheck(t *testing.T) {
	code, lines, summary := doctorLines(t, envOf("FEEDD_PUBLIC_URL", "ftp://example.com", "FEEDD_DATA_DIR", t.TempDir()))
	if code != exitFailed || len(lines) != 1 || !strings.HasPrefix(lines[0], "FAIL  Configuration — FEEDD_PUBLIC_URL: ") {
		t.Errorf("exit %d, lines %q", code, lines)
	}
	if !strings.Contains(summary, "does not load") {
		t.Errorf("summary %q", summary)
	}
}

func TestDoctorTakesNoArguments(t *testing.T) {
	code, out, errOut := runCmd(t, envOf(), "doctor", "--fix")
	if code != exitUsage || out != "" || !strings.Contains(errOut, "doctor takes no arguments") {
		t.Errorf("exit %d stdout %q stderr %q", code, out, errOut)
	}
}

// doctor cannot import app (app imports owner, which imports doctor), so it
// keeps its own copy of the database's file name.
func TestDoctorKnowsTheDatabaseFile(t *testing.T) {
	if doctor.DatabaseFile != app.DatabaseFile {
		t.Errorf("doctor.DatabaseFile %q, app.DatabaseFile %q", doctor.DatabaseFile, app.DatabaseFile)
	}
}
