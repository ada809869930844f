package config

import (
	"maps"
	"net"
	"net/url"
	"strings"
	"testing"
)

// FuzzLoad drives Load with fuzzed values for a few variables: it never
// panics; it returns either a one-line error that starts with the name of
// a variable that was set, or a Config whose fields hold their promises;
// and no secret value (app secret, admin token, secret key, webhook URL) or
// URL password ever appears in the error.
func FuzzLoad(f *testing.F) {
	key := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	f.Add(":8080", "https://feeds.example.com/ig", key, "*.cdninstagram.com,*.fbcdn.net", "15m", "1", "app-secret-1", "admin-token-1", "https://hooks.example.com/x?token=abc", "10.0.0.0/8")
	f.Add("", "", "", "", "", "", "", "", "", "")
	f.Add("nope", "ftp://user:hunter2@example.com", "short", "*", "-1s", "NaN", "s", "t", "not a url", "bad")
	f.Add("127.0.0.1:99999", "https://user:hunter2@example.com/%zz", key+","+key, "[::1]:9000,127.0.0.1", "1ns", "1e10", "a\nb", "\x00", "http://u:p@[::1", "::1")
	f.Add(":0", "http://[::1]:8080/", "Zm9v,"+key, "cdninstagram.com.:443", "1h", "0.001", "", "", "javascript:alert(1)", "192.0.2.1,2001:db8::/32")
	f.Fuzz(func(t *testing.T, addr, public, secretKey, hosts, interval, rate, appSecret, adminToken, webhook, proxies string) {
		env := map[string]string{
			"FEEDD_ADDR":                 addr,
			"FEEDD_PUBLIC_URL":           public,
			"FEEDD_SECRET_KEY":           secretKey,
			"FEEDD_MEDIA_HOSTS":          hosts,
			"FEEDD_FETCH_INTERVAL":       interval,
			"FEEDD_GRAPH_RATE":           rate,
			"FEEDD_INSTAGRAM_APP_SECRET": appSecret,
			"FEEDD_ADMIN_TOKEN":          adminToken,
			"FEEDD_NOTIFY_WEBHOOK":       webhook,
			"FEEDD_TRUSTED_PROXIES":      proxies,
		}
		load := func(env map[string]string) (Config, error) {
			cfg, _, err := Load(func(name string) (string, bool) {
				v, ok := env[name]
				return v, ok
			})
			return cfg, err
		}
		cfg, err := load(env)
		// shows reports whether the error shows the value of the secret
		// variable name: the same load with that value swapped for another
		// of its length does not say it (it may be the message's own words).
		shows := func(msg, name, value string) bool {
			if len(value) < 4 || !strings.Contains(msg, value) {
				return false
			}
			other := maps.Clone(env)
			other[name] = strings.Repeat("#", len(env[name]))
			_, err := load(other)
			return err == nil || strings.Count(err.Error(), value) < strings.Count(msg, value)
		}
		if err != nil {
			msg := err.Error()
			name, _, ok := strings.Cut(msg, ":")
			if !ok || strings.TrimSpace(env[strings.TrimSuffix(name, "_FILE")]) == "" {
				t.Fatalf("error %q does not start with a variable that was set", msg)
			}
			if strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("error is not one line: %q", msg)
			}
			plain := []string{addr, public, hosts, interval, rate, proxies}
			for name, s := range map[string]string{"FEEDD_INSTAGRAM_APP_SECRET": appSecret, "FEEDD_ADMIN_TOKEN": adminToken,
				"FEEDD_SECRET_KEY": strings.TrimSpace(secretKey), "FEEDD_NOTIFY_WEBHOOK": strings.TrimSpace(webhook)} {
				if !appearsIn(s, plain) && shows(msg, name, s) {
					t.Fatalf("error %q shows a secret value %q", msg, s)
				}
			}
			for name, v := range map[string]string{"FEEDD_PUBLIC_URL": public, "FEEDD_NOTIFY_WEBHOOK": strings.TrimSpace(webhook)} {
				pw := password(v)
				if len(pw) < 4 || !strings.Contains(msg, pw) || appearsIn(pw, []string{addr, hosts, interval, rate, proxies}) {
					continue
				}
				// Shown only if the same load with another password of
				// its length says it fewer times (the password may also be
				// the URL's scheme or host).
				other := maps.Clone(env)
				scheme, rest, _ := strings.Cut(v, "://")
				other[name] = scheme + "://" + strings.Replace(rest, ":"+pw+"@", ":"+unlike(pw)+"@", 1)
				if _, err := load(other); err == nil || strings.Count(err.Error(), pw) < strings.Count(msg, pw) {
					t.Fatalf("error %q shows the password %q of a URL", msg, pw)
				}
			}
			return
		}
		if _, port, err := net.SplitHostPort(cfg.Addr); err != nil || port == "" {
			t.Fatalf("accepted listen address %q", cfg.Addr)
		}
		u := cfg.PublicURL
		if u == nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || strings.HasSuffix(u.Path, "/") {
			t.Fatalf("accepted public URL %v", u)
		}
		if _, err := url.Parse(cfg.RedirectURI()); err != nil {
			t.Fatalf("redirect URI %q does not parse: %v", cfg.RedirectURI(), err)
		}
		for i, k := range cfg.SecretKeys {
			if len(k) != KeySize {
				t.Fatalf("key %d is %d bytes", i+1, len(k))
			}
		}
		if len(cfg.MediaHosts) == 0 || cfg.FetchInterval <= 0 || cfg.GraphRate < 0 || cfg.GraphRate != cfg.GraphRate {
			t.Fatalf("accepted %v hosts, interval %v, rate %v", cfg.MediaHosts, cfg.FetchInterval, cfg.GraphRate)
		}
		for _, h := range cfg.MediaHosts {
			if h == "" || strings.ContainsAny(h, "/@?# ") {
				t.Fatalf("accepted media host %q", h)
			}
		}
		for _, p := range cfg.TrustedProxies {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("accepted proxy %v", p)
			}
		}
		// The redacted dump shows no secret.
		dump := cfg.LogValue().String()
		for _, s := range []string{cfg.InstagramAppSecret, cfg.AdminToken, cfg.NotifyWebhook} {
			if len(s) >= 4 && strings.Contains(dump, s) && !appearsIn(s, []string{addr, public, hosts, interval, rate, proxies, "set", "unset"}) {
				t.Fatalf("config dump shows secret %q: %s", s, dump)
			}
		}
	})
}

// unlike returns a plain word of s's length that is not s.
func unlike(s string) string {
	c := "x"
	if strings.Contains(s, c) {
		c = "y"
		if strings.Contains(s, c) {
			c = "z"
		}
	}
	return strings.Repeat(c, len(s))
}

func appearsIn(s string, vals []string) bool {
	for _, v := range vals {
		if strings.Contains(v, s) || strings.Contains(strings.ToLower(v), strings.ToLower(s)) {
			return true
		}
	}
	return false
}

// password is the password of a URL-looking value, parsed leniently: up to
// the last '@' of the authority, after the first ':'.
func password(v string) string {
	_, rest, ok := strings.Cut(v, "://")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	_, pw, ok := strings.Cut(rest[:at], ":")
	if !ok {
		return ""
	}
	return pw
}
