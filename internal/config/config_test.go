package config

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func key(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }

func TestLoadDefaults(t *testing.T) {
	c, warns, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings = %v", warns)
	}
	want := Default()
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load() = %+v\nwant %+v", c, want)
	}
	checks := map[string]any{
		"addr": c.Addr, "public": c.PublicBase(), "data": c.DataDir, "graph": c.GraphURL,
		"version": c.APIVersion, "fetch": c.FetchInterval, "check": c.TokenCheckInterval,
		"window": c.TokenRefreshWindow, "rate": c.RateLimit, "graph_rate": c.GraphRate, "fmt": c.LogFormat, "lvl": c.LogLevel,
	}
	wantv := map[string]any{
		"addr": ":8080", "public": "http://localhost:8080", "data": "./feedd-data", "graph": "https://graph.instagram.com",
		"version": "v25.0", "fetch": 15 * time.Minute, "check": time.Hour, "window": 720 * time.Hour,
		"rate": 20.0, "graph_rate": 0.0, "fmt": "text", "lvl": slog.LevelInfo,
	}
	for k, v := range wantv {
		if checks[k] != v {
			t.Errorf("%s = %v, want %v", k, checks[k], v)
		}
	}
	if got := c.RedirectURI(); got != "http://localhost:8080/auth/instagram/callback" {
		t.Errorf("RedirectURI = %q", got)
	}
	if c.SecretKeys != nil || c.AdminToken != "" {
		t.Error("secrets must be unset by default")
	}
}

func TestLoadValues(t *testing.T) {
	c, warns, err := Load(env(map[string]string{
		"FEEDD_ADDR":                    "127.0.0.1:9000",
		"FEEDD_PUBLIC_URL":              "https://feeds.example.org/prefix/",
		"FEEDD_DATA_DIR":                "/var/lib/feedd",
		"FEEDD_INSTAGRAM_APP_ID":        "123",
		"FEEDD_INSTAGRAM_APP_SECRET":    "shh",
		"FEEDD_SECRET_KEY":              key(1) + ", " + key(2),
		"FEEDD_ADMIN_TOKEN":             "admintok",
		"FEEDD_INSTAGRAM_AUTHORIZE_URL": "http://127.0.0.1:1/oauth/authorize",
		"FEEDD_INSTAGRAM_TOKEN_URL":     "http://127.0.0.1:1/oauth/access_token",
		"FEEDD_INSTAGRAM_GRAPH_URL":     "http://127.0.0.1:1/graph/",
		"FEEDD_INSTAGRAM_API_VERSION":   "v21.0",
		"FEEDD_MEDIA_HOSTS":             "127.0.0.1:8081, *.Example.com,cdn.example.net",
		"FEEDD_MEDIA_ALLOW_PRIVATE":     "true",
		"FEEDD_FETCH_INTERVAL":          "30s",
		"FEEDD_TOKEN_CHECK_INTERVAL":    "2m",
		"FEEDD_TOKEN_REFRESH_WINDOW":    "240h",
		"FEEDD_GRAPH_RATE":              "0.5",
		"FEEDD_GRAPH_BURST":             "3",
		"FEEDD_RATE_LIMIT":              "100",
		"FEEDD_TRUSTED_PROXIES":         "10.0.0.0/8, 192.168.1.7, ::1",
		"FEEDD_LOG_FORMAT":              "JSON",
		"FEEDD_LOG_LEVEL":               "debug",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "FEEDD_FETCH_INTERVAL") {
		t.Errorf("warnings = %q, want one about FEEDD_FETCH_INTERVAL", warns)
	}
	if got := c.RedirectURI(); got != "https://feeds.example.org/prefix/auth/instagram/callback" {
		t.Errorf("RedirectURI = %q", got)
	}
	if len(c.SecretKeys) != 2 || c.SecretKeys[0][0] != 1 || c.SecretKeys[1][0] != 2 {
		t.Errorf("SecretKeys = %v", c.SecretKeys)
	}
	if c.GraphURL != "http://127.0.0.1:1/graph" {
		t.Errorf("GraphURL = %q (trailing slash must go)", c.GraphURL)
	}
	if want := []string{"127.0.0.1:8081", "*.example.com", "cdn.example.net"}; !reflect.DeepEqual(c.MediaHosts, want) {
		t.Errorf("MediaHosts = %q", c.MediaHosts)
	}
	wantP := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("::1/128")}
	if !reflect.DeepEqual(c.TrustedProxies, wantP) {
		t.Errorf("TrustedProxies = %v", c.TrustedProxies)
	}
	if c.LogFormat != "json" || c.LogLevel != slog.LevelDebug || !c.MediaAllowPrivate ||
		c.GraphRate != 0.5 || c.GraphBurst != 3 || c.RateLimit != 100 || c.AdminToken != "admintok" ||
		c.InstagramAppSecret != "shh" || c.Addr != "127.0.0.1:9000" || c.TokenRefreshWindow != 240*time.Hour {
		t.Errorf("unexpected config %+v", c)
	}
}

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		name, value string
		want        string // substring of the one-line error
	}{
		{"FEEDD_FETCH_INTERVAL", "abc", `FEEDD_FETCH_INTERVAL: "abc" is not a duration (e.g. 15m)`},
		{"FEEDD_FETCH_INTERVAL", "0s", `FEEDD_FETCH_INTERVAL: "0s" must be positive`},
		{"FEEDD_TOKEN_CHECK_INTERVAL", "-1h", "FEEDD_TOKEN_CHECK_INTERVAL"},
		{"FEEDD_TOKEN_REFRESH_WINDOW", "10", "not a duration"},
		{"FEEDD_PUBLIC_URL", "localhost:8080", "FEEDD_PUBLIC_URL"},
		{"FEEDD_PUBLIC_URL", "ftp://example.org", "http:// or https://"},
		{"FEEDD_PUBLIC_URL", "https://", "has no host"},
		{"FEEDD_INSTAGRAM_GRAPH_URL", "graph.instagram.com", "FEEDD_INSTAGRAM_GRAPH_URL"},
		{"FEEDD_INSTAGRAM_API_VERSION", "25", "not an API version"},
		{"FEEDD_SECRET_KEY", "not base64!!", "FEEDD_SECRET_KEY: the key is not base64"},
		{"FEEDD_SECRET_KEY", base64.StdEncoding.EncodeToString(make([]byte, 16)), "16 bytes after base64 decoding, want 32"},
		{"FEEDD_SECRET_KEY", key(1) + ",short", "FEEDD_SECRET_KEY: key 2"},
		{"FEEDD_LOG_LEVEL", "verbose", `FEEDD_LOG_LEVEL: "verbose" is not a log level`},
		{"FEEDD_LOG_FORMAT", "xml", "FEEDD_LOG_FORMAT"},
		{"FEEDD_TRUSTED_PROXIES", "10.0.0.0/33", `FEEDD_TRUSTED_PROXIES: "10.0.0.0/33" is not a CIDR`},
		{"FEEDD_MEDIA_HOSTS", "*", "FEEDD_MEDIA_HOSTS"},
		{"FEEDD_MEDIA_HOSTS", "cdn.*.com", "not a media host pattern"},
		{"FEEDD_MEDIA_HOSTS", "https://cdn.example.com", "not a media host pattern"},
		{"FEEDD_MEDIA_HOSTS", "cdn.example.com:99999", "not a media host pattern"},
		{"FEEDD_MEDIA_HOSTS", " , ", "lists no host"},
		{"FEEDD_MEDIA_ALLOW_PRIVATE", "maybe", "not a boolean"},
		{"FEEDD_GRAPH_RATE", "-0.5", "must be 0 (no ceiling) or a positive number"},
		{"FEEDD_RATE_LIMIT", "fast", "not a number"},
		{"FEEDD_GRAPH_BURST", "0", "not a positive whole number"},
		{"FEEDD_ADDR", "8080", "not a listen address"},
		{"FEEDD_NOTIFY_WEBHOOK", "hooks.example.org/x", "FEEDD_NOTIFY_WEBHOOK: is not an http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			_, _, err := Load(env(map[string]string{tt.name: tt.value}))
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) || !strings.HasPrefix(msg, strings.SplitN(tt.name, "_FILE", 2)[0]) {
				t.Errorf("error %q, want it to name the variable and contain %q", msg, tt.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
		})
	}
}

func TestRejectedURLHidesSecrets(t *testing.T) {
	_, _, err := Load(env(map[string]string{"FEEDD_INSTAGRAM_GRAPH_URL": "https://user:pw@graph.example.org/?access_token=IGQVJsecret"}))
	if err == nil {
		t.Fatal("accepted a URL with credentials and a query")
	}
	if strings.Contains(err.Error(), "IGQVJsecret") || strings.Contains(err.Error(), "pw") {
		t.Errorf("error leaks a secret: %q", err)
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, _, err := Load(env(map[string]string{
		"FEEDD_INSTAGRAM_APP_SECRET_FILE": write("app", "app-secret\n"),
		"FEEDD_ADMIN_TOKEN_FILE":          write("admin", "tok with space\r\n"),
		"FEEDD_SECRET_KEY_FILE":           write("key", key(7)+"\n"),
		"FEEDD_INSTAGRAM_APP_ID_FILE":     write("id", "42\n"),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.InstagramAppSecret != "app-secret" || c.AdminToken != "tok with space" || c.InstagramAppID != "42" {
		t.Errorf("secrets from files: %q %q %q", c.InstagramAppSecret, c.AdminToken, c.InstagramAppID)
	}
	if len(c.SecretKeys) != 1 || c.SecretKeys[0][0] != 7 {
		t.Errorf("key from file: %v", c.SecretKeys)
	}

	_, _, err = Load(env(map[string]string{"FEEDD_ADMIN_TOKEN": "a", "FEEDD_ADMIN_TOKEN_FILE": write("a2", "b")}))
	if err == nil || !strings.HasPrefix(err.Error(), "FEEDD_ADMIN_TOKEN: both") {
		t.Errorf("both set: err = %v", err)
	}
	_, _, err = Load(env(map[string]string{"FEEDD_INSTAGRAM_APP_SECRET_FILE": filepath.Join(dir, "missing")}))
	if err == nil || !strings.HasPrefix(err.Error(), "FEEDD_INSTAGRAM_APP_SECRET_FILE: cannot read") {
		t.Errorf("missing file: err = %v", err)
	}
	_, _, err = Load(env(map[string]string{"FEEDD_ADMIN_TOKEN_FILE": write("empty", "\n")}))
	if err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty file: err = %v", err)
	}
	// A bad key read from a file never echoes the file's content.
	_, _, err = Load(env(map[string]string{"FEEDD_SECRET_KEY_FILE": write("badkey", "c2VjcmV0LXZhbHVl")}))
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0LXZhbHVl") {
		t.Errorf("bad key file: err = %v", err)
	}
}

func TestLogValueRedacts(t *testing.T) {
	c, _, err := Load(env(map[string]string{
		"FEEDD_INSTAGRAM_APP_SECRET": "app-secret-value",
		"FEEDD_ADMIN_TOKEN":          "admin-token-value",
		"FEEDD_SECRET_KEY":           key(9),
		"FEEDD_INSTAGRAM_APP_ID":     "app-id-value",
		"FEEDD_NOTIFY_WEBHOOK":       "https://hooks.example.org/services/webhook-secret-value",
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, newH := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		slog.New(newH(&buf)).Info("config", "config", c)
		out := buf.String()
		for _, secret := range []string{"app-secret-value", "admin-token-value", key(9), "app-id-value", "CQkJ", "webhook-secret-value"} {
			if strings.Contains(out, secret) {
				t.Errorf("log output contains %q: %s", secret, out)
			}
		}
		if !strings.Contains(out, "admin_token") || !strings.Contains(out, "set") || !strings.Contains(out, "fetch_interval") {
			t.Errorf("log output lacks the dump: %s", out)
		}
	}
}

func TestLimitsAndCacheSize(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want func(Config) bool
		desc string
	}{
		{nil, func(c Config) bool {
			return c.CacheMemory == 64<<20 && c.RateLimitIPv6Prefix == 64 && c.GraphRate == 0 && c.GraphAccountRate == 0.2
		}, "defaults: 64 MiB cache, /64, no app-wide ceiling, 0.2 calls/s per account"},
		{map[string]string{"FEEDD_CACHE_MEMORY": "128MiB"}, func(c Config) bool { return c.CacheMemory == 128<<20 }, "128MiB"},
		{map[string]string{"FEEDD_CACHE_MEMORY": "100 MB"}, func(c Config) bool { return c.CacheMemory == 100e6 }, "SI megabytes"},
		{map[string]string{"FEEDD_CACHE_MEMORY": "1gib"}, func(c Config) bool { return c.CacheMemory == 1<<30 }, "units in any case"},
		{map[string]string{"FEEDD_CACHE_MEMORY": "33554432"}, func(c Config) bool { return c.CacheMemory == 32<<20 }, "plain bytes"},
		{map[string]string{"FEEDD_RATE_LIMIT_IPV6_PREFIX": "48"}, func(c Config) bool { return c.RateLimitIPv6Prefix == 48 }, "/48"},
		{map[string]string{"FEEDD_RATE_LIMIT_IPV6_PREFIX": "128"}, func(c Config) bool { return c.RateLimitIPv6Prefix == 128 }, "per address"},
		{map[string]string{"FEEDD_GRAPH_RATE": "0"}, func(c Config) bool { return c.GraphRate == 0 }, "0: no ceiling"},
		{map[string]string{"FEEDD_GRAPH_RATE": "25"}, func(c Config) bool { return c.GraphRate == 25 }, "a ceiling"},
		{map[string]string{"FEEDD_GRAPH_ACCOUNT_RATE": "1.5"}, func(c Config) bool { return c.GraphAccountRate == 1.5 }, "per account"},
	}
	for _, tt := range tests {
		c, _, err := Load(env(tt.env))
		if err != nil || !tt.want(c) {
			t.Errorf("%s: %v, config %+v", tt.desc, err, c)
		}
	}
	for _, tt := range []struct{ name, value, want string }{
		{"FEEDD_CACHE_MEMORY", "lots", `FEEDD_CACHE_MEMORY: "lots" is not a size (e.g. 64MiB)`},
		{"FEEDD_CACHE_MEMORY", "64 MiBs", "is not a size"},
		{"FEEDD_CACHE_MEMORY", "-5MiB", "is not a size"},
		{"FEEDD_CACHE_MEMORY", "1.5GiB", "is not a size"},
		{"FEEDD_CACHE_MEMORY", "512KiB", "must be at least 1MiB"},
		{"FEEDD_CACHE_MEMORY", "99999999999GiB", "is not a size"},
		{"FEEDD_RATE_LIMIT_IPV6_PREFIX", "0", "a whole number from 1 to 128"},
		{"FEEDD_RATE_LIMIT_IPV6_PREFIX", "129", "a whole number from 1 to 128"},
		{"FEEDD_RATE_LIMIT_IPV6_PREFIX", "/64", "a whole number from 1 to 128"},
		{"FEEDD_GRAPH_RATE", "-1", "must be 0 (no ceiling) or a positive number"},
		{"FEEDD_GRAPH_ACCOUNT_RATE", "0", "must be a positive number"},
	} {
		_, _, err := Load(env(map[string]string{tt.name: tt.value}))
		if err == nil || !strings.HasPrefix(err.Error(), tt.name+": ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s=%q: error %v, want one naming the variable with %q", tt.name, tt.value, err, tt.want)
		}
	}
}
