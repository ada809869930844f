package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

func envOf(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func runCmd(t *testing.T, env func(string) (string, bool), args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, env, &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	version, commit = "1.2.3", "abc1234"
	defer func() { version, commit = "dev", "" }()
	code, out, _ := runCmd(t, envOf(), "version")
	if code != 0 || strings.TrimSpace(out) != "feedd 1.2.3 (commit abc1234, "+runtime.Version()+")" {
		t.Fatalf("%d %q", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {"admin"}, {"admin", "delete-everything"}, {"serve", "extra"}} {
		code, out, errOut := runCmd(t, envOf(), args...)
		if code != exitUsage || out != "" || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: code %d stdout %q stderr %q", args, code, out, errOut)
		}
	}
	if code, out, _ := runCmd(t, envOf(), "help"); code != 0 || !strings.Contains(out, "reset-token") {
		t.Errorf("help: %d %q", code, out)
	}
}

func TestInvalidConfigIsOneLineNamingTheVariable(t *testing.T) {
	tests := []struct{ name, value string }{
		{"FEEDD_FETCH_INTERVAL", "abc"},
		{"FEEDD_PUBLIC_URL", "not a url"},
		{"FEEDD_SECRET_KEY", "c2hvcnQ="},
		{"FEEDD_LOG_LEVEL", "loud"},
		{"FEEDD_TRUSTED_PROXIES", "10.0.0.0/99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, envOf(tt.name, tt.value, "FEEDD_DATA_DIR", t.TempDir()), "serve")
			if code != exitUsage {
				t.Errorf("exit %d", code)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tt.name) || out != "" {
				t.Errorf("stderr %q stdout %q", errOut, out)
			}
		})
	}
}

func TestServeStartsAndStops(t *testing.T) {
	// Find a free port, then let serve listen on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	env := envOf("FEEDD_ADDR", addr, "FEEDD_DATA_DIR", dir, "FEEDD_PUBLIC_URL", "http://feedd.test", "FEEDD_LOG_FORMAT", "json")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncWriter
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, env, &out, &errb) }()

	healthy := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var hc bytes.Buffer
		if healthcheck(context.Background(), env, &hc) == 0 {
			healthy = true
			break
		}
	}
	cancel()
	code := <-done
	if !healthy {
		t.Fatalf("never healthy; stderr:\n%s", errb.String())
	}
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errb.String())
	}
	printed := out.String()
	if !regexp.MustCompile(`http://feedd\.test/setup/login\?t=\S+`).MatchString(printed) {
		t.Errorf("no setup URL on stdout:\n%s", printed)
	}
	logs := errb.String()
	if !strings.Contains(logs, `"admin_token":"unset"`) || !strings.Contains(logs, `"msg":"starting feedd"`) {
		t.Errorf("redacted config not logged:\n%s", logs)
	}
	if strings.Contains(logs, "setup/login?t=") {
		t.Error("setup URL logged")
	}
}

func TestHealthcheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(404)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer bad.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedAddr := closed.Listener.Addr().String()
	closed.Close()

	tests := []struct {
		addr string
		want int
	}{
		{ok.Listener.Addr().String(), 0},
		{":" + portOf(ok.Listener.Addr().String()), 0},
		{bad.Listener.Addr().String(), 1},
		{closedAddr, 1},
		{"no-port", 1},
	}
	for _, tt := range tests {
		var errb bytes.Buffer
		if got := healthcheck(context.Background(), envOf("FEEDD_ADDR", tt.addr), &errb); got != tt.want {
			t.Errorf("%s: exit %d, want %d (%s)", tt.addr, got, tt.want, errb.String())
		}
	}
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
