// Package config parses feedd's configuration from the environment, once,
// into one typed struct. Nothing else in feedd reads the environment.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	netmail "net/mail"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// KeySize is the length in bytes of a FEEDD_SECRET_KEY after base64 decoding.
const KeySize = 32

// CallbackPath is the path of the OAuth redirect target under the public URL.
const CallbackPath = "/auth/instagram/callback"

// Config is feedd's whole configuration, validated.
type Config struct {
	Addr      string   // FEEDD_ADDR: listen address
	PublicURL *url.URL // FEEDD_PUBLIC_URL: scheme and host (and optional path prefix), no trailing slash
	DataDir   string   // FEEDD_DATA_DIR
	// DatabaseURL (FEEDD_DATABASE_URL, optional, a secret: it may hold a
	// password) is the PostgreSQL database several instances share; ""
	// keeps the embedded SQLite database in the data dir.
	DatabaseURL string

	InstagramAppID     string // FEEDD_INSTAGRAM_APP_ID; "" when unset
	InstagramAppSecret string // FEEDD_INSTAGRAM_APP_SECRET; "" when unset

	// SecretKeys holds the token encryption keys (32 bytes each): the first
	// is current, the rest are previous keys still accepted for decryption.
	// Empty when FEEDD_SECRET_KEY is unset (a key file is used instead).
	SecretKeys [][]byte
	AdminToken string // FEEDD_ADMIN_TOKEN; "" when unset

	AuthorizeURL string // FEEDD_INSTAGRAM_AUTHORIZE_URL
	TokenURL     string // FEEDD_INSTAGRAM_TOKEN_URL
	GraphURL     string // FEEDD_INSTAGRAM_GRAPH_URL, no trailing slash
	APIVersion   string // FEEDD_INSTAGRAM_API_VERSION, e.g. v25.0

	// MediaHosts lists the only hosts media may be downloaded from:
	// "host", "host:port" or "*.domain" (lower case).
	MediaHosts        []string
	MediaAllowPrivate bool // FEEDD_MEDIA_ALLOW_PRIVATE
	// MediaStorage (FEEDD_MEDIA_URL) is the S3-compatible bucket media
	// is stored in; nil: the media directory in the data dir.
	MediaStorage *MediaStorage
	// MediaPublicURL (FEEDD_MEDIA_PUBLIC_URL) is where the stored files
	// are public (a public bucket or a CDN); /media/ redirects there. No
	// trailing slash; "" when unset.
	MediaPublicURL string
	// MediaFormats (FEEDD_MEDIA_FORMATS) are the formats stored beside the
	// JPEGs by the background encoder, sorted: "avif", "webp"; empty for
	// "none".
	MediaFormats []string

	FetchInterval      time.Duration // FEEDD_FETCH_INTERVAL
	TokenCheckInterval time.Duration // FEEDD_TOKEN_CHECK_INTERVAL
	TokenRefreshWindow time.Duration // FEEDD_TOKEN_REFRESH_WINDOW

	// GraphRate (FEEDD_GRAPH_RATE) is an optional app-wide ceiling on
	// outbound Graph calls per second, on top of each account's own
	// budget; 0: none.
	GraphRate  float64
	GraphBurst int // FEEDD_GRAPH_BURST: token-bucket burst for GraphRate
	// GraphAccountRate (FEEDD_GRAPH_ACCOUNT_RATE) is the Graph calls per
	// second one Instagram account gets; it slows down as the account's
	// usage header climbs.
	GraphAccountRate float64
	RateLimit        float64 // FEEDD_RATE_LIMIT: visitor requests per second per client
	// RateLimitIPv6Prefix (FEEDD_RATE_LIMIT_IPV6_PREFIX) is how many leading
	// bits of an IPv6 address make one client for the visitor limits.
	RateLimitIPv6Prefix int
	// CacheMemory (FEEDD_CACHE_MEMORY) bounds the hot cache, in bytes.
	CacheMemory int64

	// NotifyWebhook (FEEDD_NOTIFY_WEBHOOK, optional) receives owner
	// notifications; treated as a secret since such URLs often embed one.
	NotifyWebhook string
	// NotifyWebhookSecret (FEEDD_NOTIFY_WEBHOOK_SECRET, optional) signs
	// the webhook's deliveries.
	NotifyWebhookSecret string
	// Alerts (FEEDD_SMTP_*, FEEDD_ALERT_EMAIL) e-mails the events an owner
	// must act on; nil: no e-mail.
	Alerts *Alerts

	TrustedProxies []netip.Prefix // FEEDD_TRUSTED_PROXIES
	LogFormat      string         // FEEDD_LOG_FORMAT: "text" or "json"
	LogLevel       slog.Level     // FEEDD_LOG_LEVEL
}

// MediaStorage locates the bucket, and the prefix in it, of FEEDD_MEDIA_URL
// (s3://bucket/prefix?endpoint=host:port&region=name), with the standard
// AWS credential variables.
type MediaStorage struct {
	Bucket   string
	Prefix   string // no leading or trailing slash; "" is the whole bucket
	Endpoint string // host[:port]; s3.amazonaws.com when not given
	Insecure bool   // the endpoint was given as http://host:port
	Region   string // "" lets the client ask the server

	AccessKeyID     string // AWS_ACCESS_KEY_ID
	SecretAccessKey string // AWS_SECRET_ACCESS_KEY
	SessionToken    string // AWS_SESSION_TOKEN; "" when unset
}

// String is the URL without credentials, for logs and errors.
func (m *MediaStorage) String() string {
	if m == nil {
		return ""
	}
	ep := m.Endpoint
	if m.Insecure {
		ep = "http://" + ep
	}
	s := "s3://" + m.Bucket + "/" + m.Prefix + "?endpoint=" + ep
	if m.Region != "" {
		s += "&region=" + m.Region
	}
	return s
}

// DefaultS3Endpoint is the endpoint of FEEDD_MEDIA_URL without one.
const DefaultS3Endpoint = "s3.amazonaws.com"

// Default returns the configuration with every default applied and no
// secrets set.
func Default() Config {
	u, _ := url.Parse("http://localhost:8080")
	return Config{
		Addr:                ":8080",
		PublicURL:           u,
		DataDir:             "./feedd-data",
		AuthorizeURL:        "https://www.instagram.com/oauth/authorize",
		TokenURL:            "https://api.instagram.com/oauth/access_token",
		GraphURL:            "https://graph.instagram.com",
		APIVersion:          "v25.0",
		MediaHosts:          []string{"*.cdninstagram.com", "*.fbcdn.net"},
		MediaFormats:        []string{"avif", "webp"},
		FetchInterval:       15 * time.Minute,
		TokenCheckInterval:  time.Hour,
		TokenRefreshWindow:  720 * time.Hour,
		GraphBurst:          5,
		GraphAccountRate:    0.2,
		RateLimit:           20,
		RateLimitIPv6Prefix: 64,
		CacheMemory:         64 << 20,
		LogFormat:           "text",
		LogLevel:            slog.LevelInfo,
	}
}

// RedirectURI is the OAuth redirect URI registered with the Instagram app.
func (c Config) RedirectURI() string {
	if c.PublicURL == nil {
		return CallbackPath
	}
	return strings.TrimRight(c.PublicURL.String(), "/") + CallbackPath
}

// PublicBase is the public URL as a string without a trailing slash.
func (c Config) PublicBase() string {
	if c.PublicURL == nil {
		return ""
	}
	return strings.TrimRight(c.PublicURL.String(), "/")
}

// LogValue is a redacted dump for the start-up log: secrets show only
// whether they are set.
func (c Config) LogValue() slog.Value {
	set := func(b bool) string {
		if b {
			return "set"
		}
		return "unset"
	}
	proxies := make([]string, len(c.TrustedProxies))
	for i, p := range c.TrustedProxies {
		proxies[i] = p.String()
	}
	keys := "unset"
	if n := len(c.SecretKeys); n > 0 {
		keys = "set"
		if n > 1 {
			keys = fmt.Sprintf("set (+%d previous)", n-1)
		}
	}
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("public_url", c.PublicBase()),
		slog.String("data_dir", c.DataDir),
		slog.String("database_url", redactedURL(c.DatabaseURL)),
		slog.String("instagram_app_id", set(c.InstagramAppID != "")),
		slog.String("instagram_app_secret", set(c.InstagramAppSecret != "")),
		slog.String("secret_key", keys),
		slog.String("admin_token", set(c.AdminToken != "")),
		slog.String("authorize_url", c.AuthorizeURL),
		slog.String("token_url", c.TokenURL),
		slog.String("graph_url", c.GraphURL),
		slog.String("api_version", c.APIVersion),
		slog.String("media_hosts", strings.Join(c.MediaHosts, ",")),
		slog.Bool("media_allow_private", c.MediaAllowPrivate),
		slog.String("media_url", c.MediaStorage.String()),
		slog.String("media_public_url", c.MediaPublicURL),
		slog.String("media_formats", strings.Join(c.MediaFormats, ",")),
		slog.Duration("fetch_interval", c.FetchInterval),
		slog.Duration("token_check_interval", c.TokenCheckInterval),
		slog.Duration("token_refresh_window", c.TokenRefreshWindow),
		slog.Float64("graph_rate", c.GraphRate),
		slog.Int("graph_burst", c.GraphBurst),
		slog.Float64("graph_account_rate", c.GraphAccountRate),
		slog.Float64("rate_limit", c.RateLimit),
		slog.Int("rate_limit_ipv6_prefix", c.RateLimitIPv6Prefix),
		slog.Int64("cache_memory", c.CacheMemory),
		slog.String("notify_webhook", set(c.NotifyWebhook != "")),
		slog.String("notify_webhook_secret", set(c.NotifyWebhookSecret != "")),
		slog.Any("alerts", c.Alerts),
		slog.String("trusted_proxies", strings.Join(proxies, ",")),
		slog.String("log_format", c.LogFormat),
		slog.String("log_level", c.LogLevel.String()),
	)
}

// Env is a lookup over the process environment, for Load.
func Env(name string) (string, bool) { return os.LookupEnv(name) }

// Load parses the configuration from lookup (use Env for the process
// environment). It returns warnings for accepted but questionable values
// and an error of one line naming the first variable that is wrong.
func Load(lookup func(string) (string, bool)) (Config, []string, error) {
	p := &parser{lookup: lookup, cfg: Default()}
	c := &p.cfg

	p.str("FEEDD_ADDR", &c.Addr, validAddr)
	p.publicURL("FEEDD_PUBLIC_URL")
	p.str("FEEDD_DATA_DIR", &c.DataDir, nonEmpty)
	p.databaseURL("FEEDD_DATABASE_URL")
	p.secret("FEEDD_INSTAGRAM_APP_ID", &c.InstagramAppID)
	p.secret("FEEDD_INSTAGRAM_APP_SECRET", &c.InstagramAppSecret)
	p.secretKeys("FEEDD_SECRET_KEY")
	p.secret("FEEDD_ADMIN_TOKEN", &c.AdminToken)
	p.str("FEEDD_INSTAGRAM_AUTHORIZE_URL", &c.AuthorizeURL, validUpstreamURL)
	p.str("FEEDD_INSTAGRAM_TOKEN_URL", &c.TokenURL, validUpstreamURL)
	p.str("FEEDD_INSTAGRAM_GRAPH_URL", &c.GraphURL, validUpstreamURL)
	c.GraphURL = strings.TrimRight(c.GraphURL, "/")
	p.str("FEEDD_INSTAGRAM_API_VERSION", &c.APIVersion, validAPIVersion)
	p.mediaHosts("FEEDD_MEDIA_HOSTS")
	p.boolean("FEEDD_MEDIA_ALLOW_PRIVATE", &c.MediaAllowPrivate)
	p.mediaURL("FEEDD_MEDIA_URL")
	p.awsCredentials()
	p.mediaPublicURL("FEEDD_MEDIA_PUBLIC_URL")
	p.mediaFormats("FEEDD_MEDIA_FORMATS")
	p.interval("FEEDD_FETCH_INTERVAL", &c.FetchInterval, true)
	p.interval("FEEDD_TOKEN_CHECK_INTERVAL", &c.TokenCheckInterval, true)
	p.interval("FEEDD_TOKEN_REFRESH_WINDOW", &c.TokenRefreshWindow, false)
	p.ceiling("FEEDD_GRAPH_RATE", &c.GraphRate)
	p.burst("FEEDD_GRAPH_BURST", &c.GraphBurst)
	p.rate("FEEDD_GRAPH_ACCOUNT_RATE", &c.GraphAccountRate)
	p.rate("FEEDD_RATE_LIMIT", &c.RateLimit)
	p.prefixBits("FEEDD_RATE_LIMIT_IPV6_PREFIX", &c.RateLimitIPv6Prefix)
	p.size("FEEDD_CACHE_MEMORY", &c.CacheMemory, 1<<20)
	p.webhook("FEEDD_NOTIFY_WEBHOOK")
	p.secret("FEEDD_NOTIFY_WEBHOOK_SECRET", &c.NotifyWebhookSecret)
	if c.NotifyWebhook != "" && c.NotifyWebhookSecret == "" {
		p.warnings = append(p.warnings, "FEEDD_NOTIFY_WEBHOOK is set without FEEDD_NOTIFY_WEBHOOK_SECRET: its deliveries are not signed, so the receiver cannot tell them from forgeries")
	}
	p.alerts()
	p.proxies("FEEDD_TRUSTED_PROXIES")
	p.logFormat("FEEDD_LOG_FORMAT")
	p.logLevel("FEEDD_LOG_LEVEL")

	if p.err != nil {
		return Config{}, nil, p.err
	}
	return p.cfg, p.warnings, nil
}

type parser struct {
	lookup   func(string) (string, bool)
	cfg      Config
	warnings []string
	err      error
}

// get returns the trimmed value of name; ok is false when unset or blank,
// so an empty variable means "use the default".
func (p *parser) get(name string) (string, bool) {
	v, ok := p.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

func (p *parser) fail(name, format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...))
	}
}

func (p *parser) str(name string, dst *string, check func(string) error) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	if err := check(v); err != nil {
		p.fail(name, "%q %v", display(v), err)
		return
	}
	*dst = v
}

// secret reads name or name_FILE (never both); its value never appears in
// an error.
func (p *parser) secret(name string, dst *string) {
	v, ok := p.secretValue(name)
	if ok {
		*dst = v
	}
}

func (p *parser) secretValue(name string) (string, bool) {
	v, ok := p.get(name)
	path, fileOK := p.get(name + "_FILE")
	switch {
	case ok && fileOK:
		p.fail(name, "both %s and %s_FILE are set; use one", name, name)
		return "", false
	case fileOK:
		b, err := os.ReadFile(path)
		if err != nil {
			p.fail(name+"_FILE", "cannot read %q: %v", path, unwrapPathErr(err))
			return "", false
		}
		v = strings.TrimRight(string(b), "\r\n")
		if strings.TrimSpace(v) == "" {
			p.fail(name+"_FILE", "%q is empty", path)
			return "", false
		}
		return v, true
	}
	return v, ok
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (p *parser) secretKeys(name string) {
	v, ok := p.secretValue(name)
	if !ok {
		return
	}
	var keys [][]byte
	for i, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		k, err := decodeKey(part)
		if err != nil {
			which := "the key"
			if strings.Contains(v, ",") {
				which = fmt.Sprintf("key %d", i+1)
			}
			p.fail(name, "%s %v", which, err)
			return
		}
		keys = append(keys, k)
	}
	p.cfg.SecretKeys = keys
}

// decodeKey accepts standard or URL-safe base64, padded or not.
func decodeKey(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("is empty")
	}
	var k []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("is not base64 (generate one with: openssl rand -base64 32)")
	}
	if len(k) != KeySize {
		return nil, fmt.Errorf("is %d bytes after base64 decoding, want %d", len(k), KeySize)
	}
	return k, nil
}

func (p *parser) publicURL(name string) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	u, err := url.Parse(v)
	switch {
	case err != nil:
		p.fail(name, "%q is not a URL", display(v))
	case u.Scheme != "http" && u.Scheme != "https":
		p.fail(name, "%q must start with http:// or https://", display(v))
	case u.Host == "":
		p.fail(name, "%q has no host", display(v))
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		p.fail(name, "%q must not contain credentials, a query or a fragment", display(v))
	default:
		u.Path = strings.TrimRight(u.Path, "/")
		u.RawPath = ""
		p.cfg.PublicURL = u
	}
}

// display shows a rejected value in an error; a URL loses its
// credentials, query and fragment, which may carry secrets.
func display(v string) string {
	u, err := url.Parse(v)
	if err != nil || u.Scheme == "" {
		return cutSecrets(v)
	}
	if u.User == nil && u.RawQuery == "" && u.Fragment == "" && !u.ForceQuery {
		// Values such as "a:://user:pw@" or "a:/://user:pw@" have no
		// User for net/url but still read as credentials to a person.
		return cutSecrets(v)
	}
	c := *u
	c.User, c.RawQuery, c.Fragment, c.ForceQuery = nil, "", "", false
	return strings.TrimSuffix(cutSecrets(c.String()), "…") + "…"
}

// cutSecrets shortens a value that does not parse as a URL the way display
// does for one that does: nothing after the first '?' or '#', and when an
// '@' is left (credentials, however the value is written) nothing from the
// first "//" on, or nothing at all without one.
func cutSecrets(v string) string {
	cut := false
	if i := strings.IndexAny(v, "?#"); i >= 0 {
		v, cut = v[:i], true
	}
	if strings.Contains(v, "@") {
		i := strings.Index(v, "//")
		if i < 0 {
			return "…"
		}
		v, cut = v[:i+2], true
	}
	if cut {
		return v + "…"
	}
	return v
}

func (p *parser) boolean(name string, dst *bool) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, "%q is not a boolean (true or false)", v)
		return
	}
	*dst = b
}

func (p *parser) interval(name string, dst *time.Duration, warnShort bool) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		p.fail(name, "%q is not a duration (e.g. 15m)", v)
		return
	}
	if d <= 0 {
		p.fail(name, "%q must be positive", v)
		return
	}
	if warnShort && d < time.Minute {
		p.warnings = append(p.warnings, fmt.Sprintf("%s is %s, shorter than a minute: fine for tests, heavy on Instagram's rate limits", name, d))
	}
	*dst = d
}

func (p *parser) rate(name string, dst *float64) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f != f {
		p.fail(name, "%q is not a number", v)
		return
	}
	if f <= 0 || f > 1e9 {
		p.fail(name, "%q must be a positive number of requests per second", v)
		return
	}
	*dst = f
}

// ceiling reads an optional rate: 0 means none.
func (p *parser) ceiling(name string, dst *float64) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f != f {
		p.fail(name, "%q is not a number", v)
		return
	}
	if f < 0 || f > 1e9 {
		p.fail(name, "%q must be 0 (no ceiling) or a positive number of calls per second", v)
		return
	}
	*dst = f
}

func (p *parser) prefixBits(name string, dst *int) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 128 {
		p.fail(name, "%q is not a prefix length, a whole number from 1 to 128", v)
		return
	}
	*dst = n
}

// sizeUnits are the units a size may carry, matched case-insensitively.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"b", 1},
}

// size reads a byte count: a whole number with an optional unit (B, KB,
// MB, GB, KiB, MiB, GiB), at least least bytes.
func (p *parser) size(name string, dst *int64, least int64) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	num, mult := strings.ToLower(v), int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		p.fail(name, "%q is not a size (e.g. 64MiB)", v)
		return
	}
	if n*mult < least {
		p.fail(name, "%q must be at least 1MiB", v)
		return
	}
	*dst = n * mult
}

func (p *parser) burst(name string, dst *int) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		p.fail(name, "%q is not a positive whole number", v)
		return
	}
	*dst = n
}

func (p *parser) mediaHosts(name string) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	var hosts []string
	for _, h := range strings.Split(v, ",") {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			continue
		}
		if err := validMediaHost(h); err != nil {
			p.fail(name, "%q %v", h, err)
			return
		}
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		p.fail(name, "%q lists no host", v)
		return
	}
	p.cfg.MediaHosts = hosts
}

// validMediaHost accepts "host", "host:port" and "*.domain".
func validMediaHost(h string) error {
	const want = "is not a media host pattern (host, host:port or *.domain)"
	if strings.HasPrefix(h, "*.") {
		d := h[2:]
		if strings.ContainsAny(d, ":*") || !validHostname(d) || !strings.Contains(d, ".") && d != "localhost" {
			return errors.New(want)
		}
		return nil
	}
	if strings.Contains(h, "*") || strings.ContainsAny(h, "/@?#") {
		return errors.New(want)
	}
	host := h
	if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") && strings.Count(h, ":") > 1 {
		// A bare IPv6 literal.
		if _, err := netip.ParseAddr(h); err == nil {
			return nil
		}
		return errors.New(want)
	}
	if strings.Contains(h, ":") {
		hp, port, err := net.SplitHostPort(h)
		if err != nil {
			return errors.New(want)
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return errors.New(want)
		}
		host = hp
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !validHostname(host) {
		return errors.New(want)
	}
	return nil
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func (p *parser) proxies(name string) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	var out []netip.Prefix
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			// A bare address means just that host.
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				p.fail(name, "%q is not a CIDR (e.g. 10.0.0.0/8)", s)
				return
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, pfx.Masked())
	}
	p.cfg.TrustedProxies = out
}

// databaseURL reads a postgres:// or postgresql:// URL (or name_FILE); the
// value never appears in an error, since it may hold a password.
func (p *parser) databaseURL(name string) {
	v, ok := p.secretValue(name)
	if !ok {
		return
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		p.fail(name, "is not a PostgreSQL URL (postgres://user:password@host:5432/dbname); leave it unset for SQLite in the data dir")
		return
	}
	p.cfg.DatabaseURL = v
}

// redactedURL shows a URL without its password, or "unset".
func redactedURL(v string) string {
	if v == "" {
		return "unset"
	}
	u, err := url.Parse(v)
	if err != nil {
		return "set"
	}
	return u.Redacted()
}

// webhook reads an optional http(s) URL as a secret: errors never show it.
func (p *parser) webhook(name string) {
	v, ok := p.secretValue(name)
	if !ok {
		return
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.fail(name, "is not an http(s) URL")
		return
	}
	p.cfg.NotifyWebhook = v
}

// mediaURL reads s3://bucket/prefix?endpoint=…&region=….
func (p *parser) mediaURL(name string) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	m, err := parseMediaURL(v)
	if err != nil {
		p.fail(name, "%q %v", display(v), err)
		return
	}
	p.cfg.MediaStorage = m
}

// awsCredentials reads the standard AWS variables (each also as _FILE)
// when FEEDD_MEDIA_URL is set. Without any, requests are anonymous (a
// private server that needs no signature); half a key pair is an error.
func (p *parser) awsCredentials() {
	m := p.cfg.MediaStorage
	if m == nil {
		return
	}
	p.secret("AWS_ACCESS_KEY_ID", &m.AccessKeyID)
	p.secret("AWS_SECRET_ACCESS_KEY", &m.SecretAccessKey)
	p.secret("AWS_SESSION_TOKEN", &m.SessionToken)
	if (m.AccessKeyID == "") != (m.SecretAccessKey == "") || m.SessionToken != "" && m.AccessKeyID == "" {
		p.fail("FEEDD_MEDIA_URL", "needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or their _FILE forms), or neither for anonymous access")
	}
}

// parseMediaURL checks every part of an s3:// URL; its errors name the part
// that is wrong.
func parseMediaURL(v string) (*MediaStorage, error) {
	u, err := url.Parse(v)
	if err != nil {
		return nil, errors.New("is not a URL (want s3://bucket/prefix?endpoint=host:port&region=name)")
	}
	if u.Scheme != "s3" {
		return nil, errors.New("must start with s3:// (s3://bucket/prefix?endpoint=host:port&region=name)")
	}
	if u.User != nil {
		return nil, errors.New("must not contain credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	if u.Fragment != "" {
		return nil, errors.New("must not contain a fragment")
	}
	m := &MediaStorage{Bucket: u.Host, Endpoint: DefaultS3Endpoint}
	if !validBucket(m.Bucket) {
		return nil, fmt.Errorf("has bucket %q: want 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit", m.Bucket)
	}
	m.Prefix = strings.Trim(u.Path, "/")
	if m.Prefix != "" {
		for _, seg := range strings.Split(m.Prefix, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.Trim(seg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
				return nil, fmt.Errorf("has prefix %q: want segments of letters, digits, '.', '_' and '-', separated by single slashes", m.Prefix)
			}
		}
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, errors.New("has a query that does not parse")
	}
	for k, vs := range q {
		if len(vs) != 1 {
			return nil, fmt.Errorf("has parameter %q more than once", k)
		}
		switch val := vs[0]; k {
		case "endpoint":
			if err := m.setEndpoint(val); err != nil {
				return nil, err
			}
		case "region":
			if val == "" || strings.Trim(val, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
				return nil, fmt.Errorf("has region %q: want lower-case letters, digits and '-' (e.g. eu-central-1)", val)
			}
			m.Region = val
		default:
			return nil, fmt.Errorf("has unknown parameter %q (known: endpoint, region)", k)
		}
	}
	return m, nil
}

// setEndpoint accepts host[:port] (HTTPS), https://host[:port] or
// http://host[:port] (plain HTTP, for a server on a private network).
func (m *MediaStorage) setEndpoint(val string) error {
	bad := fmt.Errorf("has endpoint %q: want host[:port], https://host[:port] or http://host[:port], nothing more", val)
	hostport := val
	if scheme, rest, ok := strings.Cut(val, "://"); ok {
		switch scheme {
		case "https":
		case "http":
			m.Insecure = true
		default:
			return bad
		}
		hostport = rest
	}
	if hostport == "" || strings.ContainsAny(hostport, "/?#@ ") {
		return bad
	}
	host := hostport
	if h, port, err := net.SplitHostPort(hostport); err == nil {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return bad
		}
		host = h
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostname(strings.ToLower(host)) {
		return bad
	}
	m.Endpoint = hostport
	return nil
}

// validBucket follows S3's bucket naming rules.
func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 || strings.Trim(b, "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" {
		return false
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	return alnum(b[0]) && alnum(b[len(b)-1]) && !strings.Contains(b, "..")
}

// mediaPublicURL reads where the stored files are public.
func (p *parser) mediaPublicURL(name string) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	if err := validUpstreamURL(v); err != nil {
		p.fail(name, "%q %v", display(v), err)
		return
	}
	p.cfg.MediaPublicURL = strings.TrimRight(v, "/")
}

// mediaFormats reads a comma-separated list of avif and webp, or "none".
func (p *parser) mediaFormats(name string) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	out := []string{}
	if strings.ToLower(v) != "none" {
		for _, f := range strings.Split(strings.ToLower(v), ",") {
			f = strings.TrimSpace(f)
			if f != "avif" && f != "webp" {
				p.fail(name, "%q is not a list of avif and webp (or none)", display(v))
				return
			}
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	slices.Sort(out)
	p.cfg.MediaFormats = out
}

func (p *parser) logFormat(name string) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	switch f := strings.ToLower(v); f {
	case "text", "json":
		p.cfg.LogFormat = f
	default:
		p.fail(name, "%q is not a log format (text or json)", v)
	}
}

func (p *parser) logLevel(name string) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	var l slog.Level
	switch strings.ToLower(v) {
	case "debug":
		l = slog.LevelDebug
	case "info":
		l = slog.LevelInfo
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		p.fail(name, "%q is not a log level (debug, info, warn or error)", v)
		return
	}
	p.cfg.LogLevel = l
}

func nonEmpty(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("is empty")
	}
	return nil
}

func validAddr(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("is not a listen address (e.g. :8080 or 127.0.0.1:8080)")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return errors.New("has a bad port")
	}
	return nil
}

func validUpstreamURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("is not an http(s) URL")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must not contain credentials, a query or a fragment")
	}
	return nil
}

func validAPIVersion(s string) error {
	if len(s) < 2 || s[0] != 'v' || strings.Trim(s[1:], "0123456789.") != "" {
		return errors.New("is not an API version (e.g. v25.0)")
	}
	return nil
}

// Alerts is the mail server and the recipients of the e-mail alerts.
type Alerts struct {
	SMTPAddr string   // FEEDD_SMTP_ADDR: host:port; port 465 is implicit TLS, any other STARTTLS
	Username string   // FEEDD_SMTP_USERNAME; "" sends without authentication
	Password string   // FEEDD_SMTP_PASSWORD
	From     string   // FEEDD_SMTP_FROM
	To       []string // FEEDD_ALERT_EMAIL: one or more addresses, comma-separated
}

// LogValue shows the alerts' settings without the password.
func (a *Alerts) LogValue() slog.Value {
	if a == nil {
		return slog.StringValue("unset")
	}
	pw := "unset"
	if a.Password != "" {
		pw = "set"
	}
	return slog.GroupValue(slog.String("smtp_addr", a.SMTPAddr), slog.String("smtp_username", a.Username),
		slog.String("smtp_password", pw), slog.String("smtp_from", a.From), slog.Int("recipients", len(a.To)))
}

// alerts reads the e-mail alert variables: FEEDD_SMTP_ADDR and
// FEEDD_ALERT_EMAIL switch e-mail on together; the others need them.
func (p *parser) alerts() {
	a := &Alerts{}
	addr, hasAddr := p.get("FEEDD_SMTP_ADDR")
	to, hasTo := p.get("FEEDD_ALERT_EMAIL")
	from, hasFrom := p.get("FEEDD_SMTP_FROM")
	user, hasUser := p.get("FEEDD_SMTP_USERNAME")
	p.secret("FEEDD_SMTP_PASSWORD", &a.Password)
	if !hasAddr && !hasTo {
		for name, set := range map[string]bool{"FEEDD_SMTP_FROM": hasFrom, "FEEDD_SMTP_USERNAME": hasUser, "FEEDD_SMTP_PASSWORD": a.Password != ""} {
			if set {
				p.fail(name, "is set without FEEDD_SMTP_ADDR and FEEDD_ALERT_EMAIL, which switch e-mail alerts on")
			}
		}
		return
	}
	switch {
	case !hasAddr:
		p.fail("FEEDD_SMTP_ADDR", "is needed by FEEDD_ALERT_EMAIL: the mail server as host:port (e.g. smtp.example.com:587)")
		return
	case !hasTo:
		p.fail("FEEDD_ALERT_EMAIL", "is needed by FEEDD_SMTP_ADDR: the addresses that get the alerts, comma-separated")
		return
	case !hasFrom:
		p.fail("FEEDD_SMTP_FROM", "is needed by FEEDD_SMTP_ADDR: the sender address of the alerts")
		return
	case a.Password != "" && !hasUser:
		p.fail("FEEDD_SMTP_PASSWORD", "is set without FEEDD_SMTP_USERNAME")
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		p.fail("FEEDD_SMTP_ADDR", "%q is not host:port (e.g. smtp.example.com:587)", display(addr))
		return
	}
	if _, err := netmail.ParseAddress(from); err != nil {
		p.fail("FEEDD_SMTP_FROM", "%q is not an e-mail address", from)
		return
	}
	list, err := netmail.ParseAddressList(to)
	if err != nil {
		p.fail("FEEDD_ALERT_EMAIL", "%q is not a comma-separated list of e-mail addresses", to)
		return
	}
	for _, r := range list {
		a.To = append(a.To, r.String())
	}
	a.SMTPAddr, a.From, a.Username = addr, from, user
	p.cfg.Alerts = a
}
