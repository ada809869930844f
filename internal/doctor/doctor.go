// Package doctor checks a feedd configuration the way an owner would
// otherwise find out the hard way: a wrong app id or secret, a public URL
// that browsers cannot use, an unwritable data dir, a missing key, a wrong
// clock. The setup page and `feedd doctor` show the same checks.
//
// Every check reads only the configuration, the data dir and (for the
// public URL and the clock) one GET of the public URL's /healthz. Nothing is
// written except a temporary file, removed at once, and no secret is ever
// part of a result.
package doctor

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/secret"
)

// Severity says how bad a failed check is.
type Severity string

const (
	// Fail: feedd cannot work as configured.
	Fail Severity = "fail"
	// Warn: feedd works, but something is risky or could not be verified.
	Warn Severity = "warn"
)

// Check IDs, stable for scripts and tests.
const (
	IDAppID        = "app_id"
	IDAppSecret    = "app_secret"
	IDPublicURL    = "public_url"
	IDReachable    = "reachable"
	IDRedirectURI  = "redirect_uri"
	IDDeauthorize  = "deauthorize_url"
	IDDataDeletion = "data_deletion_url"
	IDDataDir      = "data_dir"
	IDSecretKey    = "secret_key"
	IDClock        = "clock"
)

// DatabaseFile is the SQLite database's name in the data dir (the same as
// app.DatabaseFile, which this package cannot import: app imports it).
const DatabaseFile = "feedd.db"

// MaxClockSkew is how far the local clock may be from the reference clock:
// OAuth codes, token expiry and signed requests depend on it.
const MaxClockSkew = 5 * time.Minute

// DefaultTimeout bounds the request to the public URL.
const DefaultTimeout = 3 * time.Second

// Check is one result.
type Check struct {
	ID       string   // stable identifier (IDAppID, ...)
	Title    string   // what is checked, for people
	OK       bool     // the check passed
	Severity Severity // how bad it is when !OK
	Detail   string   // what was found; never a secret
	Fix      string   // what to do about it; for a passed check an optional note
}

// Status is "ok", "fail" or "warn".
func (c Check) Status() string {
	if c.OK {
		return "ok"
	}
	if c.Severity == Warn {
		return "warn"
	}
	return "fail"
}

// Input is what the checks look at.
type Input struct {
	Config config.Config
	// HTTPClient asks the public URL; nil uses a client without keep-alives.
	// Redirects are never followed, whatever the client says.
	HTTPClient *http.Client
	// Now is the local clock (default time.Now).
	Now func() time.Time
	// Timeout bounds the request to the public URL (default DefaultTimeout).
	Timeout time.Duration
	// InServer is set when the checks run inside the serving feedd (the
	// setup page): then an unreachable public URL is a failure, not a
	// "feedd may not be running" warning.
	InServer bool
}

// Run runs every check, in a fixed order.
func Run(ctx context.Context, in Input) []Check {
	if in.Now == nil {
		in.Now = time.Now
	}
	if in.Timeout <= 0 {
		in.Timeout = DefaultTimeout
	}
	cfg := in.Config
	probe := probeHealth(ctx, in)
	return []Check{
		checkAppID(cfg.InstagramAppID),
		checkAppSecret(cfg.InstagramAppSecret, cfg.InstagramAppID),
		checkPublicURL(cfg.PublicURL),
		checkReachable(probe, in.InServer),
		checkRedirectURI(cfg),
		checkDeauthorizeURL(cfg),
		checkDataDeletionURL(cfg),
		checkDataDir(cfg.DataDir),
		checkSecretKey(cfg),
		checkClock(probe, in.Now),
	}
}

// Checker returns Run bound to in, for the setup page.
func Checker(in Input) func(ctx context.Context) []Check {
	return func(ctx context.Context) []Check { return Run(ctx, in) }
}

// Failed reports whether any check failed with severity Fail.
func Failed(checks []Check) bool {
	for _, c := range checks {
		if !c.OK && c.Severity != Warn {
			return true
		}
	}
	return false
}

func ok(id, title, detail string) Check {
	return Check{ID: id, Title: title, OK: true, Detail: detail}
}

func bad(id, title string, sev Severity, detail, fix string) Check {
	return Check{ID: id, Title: title, Severity: sev, Detail: detail, Fix: fix}
}

// ---------------------------------------------------------------- app

const (
	titleAppID     = "Instagram app ID"
	titleAppSecret = "Instagram app secret"
	whereAppKeys   = "the Meta App Dashboard: your app → Instagram → API setup with Instagram login"
)

func checkAppID(id string) Check {
	fix := "Set FEEDD_INSTAGRAM_APP_ID to the Instagram app ID from " + whereAppKeys +
		" (not the Meta app ID at the top of the dashboard), then restart feedd."
	switch {
	case id == "":
		return bad(IDAppID, titleAppID, Fail, "FEEDD_INSTAGRAM_APP_ID is not set, so Connect cannot work", fix)
	case !allDigits(id):
		// Not shown: a value in the wrong variable may well be the secret.
		d := fmt.Sprintf("FEEDD_INSTAGRAM_APP_ID is %d characters and not all digits; an app ID is a number", len(id))
		if isHex32(id) {
			d = "FEEDD_INSTAGRAM_APP_ID looks like an app secret (32 hexadecimal characters), not an app ID"
		}
		return bad(IDAppID, titleAppID, Fail, d, fix)
	case len(id) < 8 || len(id) > 20:
		return bad(IDAppID, titleAppID, Warn,
			fmt.Sprintf("%s is %d digits; Instagram app IDs are usually 15 to 17", id, len(id)), fix)
	}
	c := ok(IDAppID, titleAppID, id)
	c.Fix = "Make sure this is the Instagram app ID, not the Meta app ID: with the wrong one Instagram answers \"Invalid platform app\"."
	return c
}

func checkAppSecret(s, id string) Check {
	fix := "Set FEEDD_INSTAGRAM_APP_SECRET (or FEEDD_INSTAGRAM_APP_SECRET_FILE) to the Instagram app secret from " +
		whereAppKeys + " (\"Show\" next to Instagram app secret), then restart feedd."
	switch {
	case s == "":
		return bad(IDAppSecret, titleAppSecret, Fail, "FEEDD_INSTAGRAM_APP_SECRET is not set, so Connect and Meta's callbacks cannot work", fix)
	case s == id:
		return bad(IDAppSecret, titleAppSecret, Fail, "FEEDD_INSTAGRAM_APP_SECRET is the same as the app ID", fix)
	case !isHex32(s):
		return bad(IDAppSecret, titleAppSecret, Fail,
			fmt.Sprintf("FEEDD_INSTAGRAM_APP_SECRET is %d characters; an app secret is 32 hexadecimal characters (not shown here)", len([]rune(s))), fix)
	}
	return ok(IDAppSecret, titleAppSecret, "set, 32 hexadecimal characters (not shown)")
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isHex32(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// ---------------------------------------------------------------- public URL

const titlePublicURL = "Public URL uses https"

func checkPublicURL(u *url.URL) Check {
	if u == nil || u.Host == "" {
		return bad(IDPublicURL, titlePublicURL, Fail, "FEEDD_PUBLIC_URL is not a usable URL",
			"Set FEEDD_PUBLIC_URL to the address browsers use to reach feedd, e.g. https://feeds.example.com.")
	}
	base := strings.TrimRight(u.String(), "/")
	switch {
	case u.Scheme == "https":
		return ok(IDPublicURL, titlePublicURL, base)
	case u.Scheme == "http" && isLocalHost(u.Hostname()):
		c := ok(IDPublicURL, titlePublicURL, base+" (plain http, fine on this machine only)")
		c.Fix = "Before putting feedd online, serve it over https and set FEEDD_PUBLIC_URL to the https address."
		return c
	}
	return bad(IDPublicURL, titlePublicURL, Fail,
		base+" is plain http on a public host: the admin session and Instagram's sign-in code would travel unencrypted",
		"Put feedd behind a TLS proxy (see docs/deployment.md) and set FEEDD_PUBLIC_URL=https://"+u.Host+strings.TrimRight(u.EscapedPath(), "/")+".")
}

// isLocalHost reports names that only ever mean this machine.
func isLocalHost(h string) bool {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// ---------------------------------------------------------------- reachability

const (
	titleReachable = "Public URL reaches this feedd"
	healthBody     = "ok" // what feedd's /healthz answers (internal/server)
)

// probe is the outcome of one GET of the public URL's /healthz.
type probe struct {
	url    string
	err    error // transport error: nothing answered
	status int
	body   string
	loc    string // Location of a redirect
	date   string // the Date header
	took   time.Duration
}

func probeHealth(ctx context.Context, in Input) probe {
	base := in.Config.PublicBase()
	p := probe{url: base + "/healthz"}
	if in.Config.PublicURL == nil || in.Config.PublicURL.Host == "" {
		p.err = errors.New("no public URL")
		return p
	}
	ctx, cancel := context.WithTimeout(ctx, in.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		p.err = err
		return p
	}
	req.Header.Set("User-Agent", "feedd-doctor")
	req.Header.Set("Cache-Control", "no-cache")
	client := clientFor(in.HTTPClient)
	start := in.Now()
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		p.err = err
		return p
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	p.took = in.Now().Sub(start)
	p.status = resp.StatusCode
	p.body = strings.TrimSpace(string(b))
	p.loc = resp.Header.Get("Location")
	p.date = resp.Header.Get("Date")
	return p
}

func clientFor(c *http.Client) *http.Client {
	var cl http.Client
	if c != nil {
		cl = *c
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DisableKeepAlives = true // one request; leave no idle connection behind
		cl.Transport = tr
	}
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cl
}

func checkReachable(p probe, inServer bool) Check {
	var dnsErr *net.DNSError
	switch {
	case errors.As(p.err, &dnsErr) && dnsErr.IsNotFound:
		// A name that does not exist is a typo or a missing DNS record,
		// whether or not feedd is running.
		return bad(IDReachable, titleReachable, Fail,
			fmt.Sprintf("%s: the host %s does not resolve", p.url, hostOf(p.url)),
			"Check the host name in FEEDD_PUBLIC_URL, and that its DNS record exists and points to this server.")
	case p.err != nil && inServer:
		return bad(IDReachable, titleReachable, Fail,
			fmt.Sprintf("feedd could not reach itself at %s: %s", p.url, clean(p.err.Error())),
			"Check that FEEDD_PUBLIC_URL's host resolves to this server from the server too, and that the proxy in front forwards to feedd's FEEDD_ADDR; feed links and images are built on this URL.")
	case p.err != nil:
		return bad(IDReachable, titleReachable, Warn,
			fmt.Sprintf("%s not reachable — is feedd running? (%s)", p.url, clean(p.err.Error())),
			"Start feedd (feedd serve) and run feedd doctor again; if it is running, check that FEEDD_PUBLIC_URL's host resolves to it and the proxy in front forwards to FEEDD_ADDR.")
	case p.status >= 300 && p.status < 400:
		return bad(IDReachable, titleReachable, Fail,
			fmt.Sprintf("%s answered %d, a redirect to %s", p.url, p.status, clean(p.loc)),
			"Set FEEDD_PUBLIC_URL to the address browsers end up at (often the https:// one), including any path prefix, then restart feedd.")
	case p.status != http.StatusOK || p.body != healthBody:
		return bad(IDReachable, titleReachable, Fail,
			fmt.Sprintf("%s answered %d %q: that is not feedd's health check", p.url, p.status, clean(p.body)),
			"FEEDD_PUBLIC_URL must lead to this feedd: check its host, port and path prefix, and that the proxy in front forwards that path to feedd's FEEDD_ADDR.")
	}
	return ok(IDReachable, titleReachable,
		fmt.Sprintf("%s answered feedd's 200 ok in %s", p.url, p.took.Round(time.Millisecond)))
}

// clean makes text from outside fit on one short line.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > 160 {
		s = string(r[:160]) + "…"
	}
	return s
}

// ---------------------------------------------------------------- redirect URI

func checkRedirectURI(cfg config.Config) Check {
	c := ok(IDRedirectURI, "OAuth redirect URI", cfg.RedirectURI())
	c.Fix = "Register exactly this URI (same scheme, host, path, no trailing slash) under Business login settings → OAuth redirect URIs in " +
		whereAppKeys + "; it follows FEEDD_PUBLIC_URL. After saving, open Business login settings again: the dashboard may have added a trailing slash."
	return c
}

// Paths of Meta's server-to-server callbacks under the public URL, which
// internal/owner serves.
const (
	DeauthorizePath  = "/auth/instagram/deauthorize"
	DataDeletionPath = "/auth/instagram/delete"
)

// callbacksOpen is the note on Meta's callbacks: they come from Meta's
// servers, not from a browser.
const callbacksOpen = " Meta calls it from its own servers: basic auth, IP allow-lists or bot blocking in front of /auth/ stop the call."

func checkDeauthorizeURL(cfg config.Config) Check {
	c := ok(IDDeauthorize, "Deauthorize callback URL", cfg.PublicBase()+DeauthorizePath)
	c.Fix = "Register exactly this URL under Business login settings → Deauthorize callback URL in " + whereAppKeys + "." + callbacksOpen
	return c
}

func checkDataDeletionURL(cfg config.Config) Check {
	c := ok(IDDataDeletion, "Data deletion request URL", cfg.PublicBase()+DataDeletionPath)
	c.Fix = "Register exactly this URL under Business login settings → Data deletion request URL in " + whereAppKeys + "." + callbacksOpen
	return c
}

// ---------------------------------------------------------------- data dir

const titleDataDir = "Data dir is writable"

func checkDataDir(dir string) Check {
	fix := "Create FEEDD_DATA_DIR and give it to the user feedd runs as (e.g. chown feedd: DIR; chmod 700 DIR), or point FEEDD_DATA_DIR elsewhere."
	fix = strings.Replace(fix, "DIR", dir, 2)
	if dir == "" {
		return bad(IDDataDir, titleDataDir, Fail, "FEEDD_DATA_DIR is empty", fix)
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// feedd creates it at start: the nearest existing parent must take it.
		parent := existingParent(dir)
		if err := tryWrite(parent); err != nil {
			return bad(IDDataDir, titleDataDir, Fail,
				fmt.Sprintf("%s does not exist and cannot be created in %s: %s", dir, parent, clean(pathErr(err))), fix)
		}
		return ok(IDDataDir, titleDataDir, dir+" does not exist yet; feedd creates it at start")
	case err != nil:
		return bad(IDDataDir, titleDataDir, Fail, fmt.Sprintf("%s: %s", dir, clean(pathErr(err))), fix)
	case !fi.IsDir():
		return bad(IDDataDir, titleDataDir, Fail, dir+" is not a directory", fix)
	}
	if err := tryWrite(dir); err != nil {
		return bad(IDDataDir, titleDataDir, Fail, fmt.Sprintf("cannot write in %s: %s", dir, clean(pathErr(err))), fix)
	}
	// Stored images live below it; a media dir left by another user breaks
	// every poll while the database looks fine.
	media := filepath.Join(dir, "media")
	if fi, err := os.Stat(media); err == nil && fi.IsDir() {
		if err := tryWrite(media); err != nil {
			return bad(IDDataDir, titleDataDir, Fail, fmt.Sprintf("cannot write in %s: %s", media, clean(pathErr(err))), fix)
		}
	}
	return ok(IDDataDir, titleDataDir, dir)
}

// tryWrite creates and removes a temporary file in dir.
func tryWrite(dir string) error {
	f, err := os.CreateTemp(dir, ".feedd-doctor-*")
	if err != nil {
		return err
	}
	name := f.Name()
	_, werr := f.WriteString("feedd doctor\n")
	cerr := f.Close()
	rerr := os.Remove(name)
	return errors.Join(werr, cerr, rerr)
}

func existingParent(dir string) string {
	p := filepath.Clean(dir)
	for {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return p
		}
		next := filepath.Dir(p)
		if next == p {
			return p
		}
		p = next
	}
}

// pathErr drops the path an *os.PathError repeats.
func pathErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// ---------------------------------------------------------------- secret key

const titleSecretKey = "Token encryption key"

func checkSecretKey(cfg config.Config) Check {
	if n := len(cfg.SecretKeys); n > 0 {
		d := "FEEDD_SECRET_KEY is set"
		if n > 1 {
			d += fmt.Sprintf(" (with %d previous keys still accepted)", n-1)
		}
		return ok(IDSecretKey, titleSecretKey, d)
	}
	path := filepath.Join(cfg.DataDir, secret.KeyFileName)
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		db := filepath.Join(cfg.DataDir, DatabaseFile)
		if _, err := os.Stat(db); err == nil {
			return bad(IDSecretKey, titleSecretKey, Fail,
				fmt.Sprintf("FEEDD_SECRET_KEY is not set and %s is missing, but %s exists: its stored tokens cannot be decrypted", path, db),
				fmt.Sprintf("Restore %s from a backup, or set FEEDD_SECRET_KEY to the key used before; without it every feed must be connected again.", path))
		}
		return bad(IDSecretKey, titleSecretKey, Warn,
			fmt.Sprintf("FEEDD_SECRET_KEY is not set; feedd will generate %s at first start", path),
			"Set FEEDD_SECRET_KEY (or FEEDD_SECRET_KEY_FILE) to a key made with: openssl rand -base64 32 — and keep a copy; without the key stored tokens cannot be read.")
	}
	if err != nil {
		return bad(IDSecretKey, titleSecretKey, Fail, fmt.Sprintf("%s: %s", path, clean(pathErr(err))),
			"Run feedd doctor as the user feedd runs as, or set FEEDD_SECRET_KEY.")
	}
	if !fi.Mode().IsRegular() {
		return bad(IDSecretKey, titleSecretKey, Fail, path+" is not a regular file",
			fmt.Sprintf("Replace %s with the key file, or set FEEDD_SECRET_KEY.", path))
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return bad(IDSecretKey, titleSecretKey, Fail,
			fmt.Sprintf("%s has mode %04o: others can read it, so feedd refuses to start", path, perm),
			fmt.Sprintf("chmod 600 %s", path))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return bad(IDSecretKey, titleSecretKey, Fail, fmt.Sprintf("cannot read %s: %s", path, clean(pathErr(err))),
			"Run feedd doctor as the user feedd runs as, or set FEEDD_SECRET_KEY.")
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b))); err != nil || len(k) != config.KeySize {
		return bad(IDSecretKey, titleSecretKey, Fail, path+" does not hold a base64 32-byte key",
			fmt.Sprintf("Restore %s from a backup, or set FEEDD_SECRET_KEY to the key used before.", path))
	}
	return bad(IDSecretKey, titleSecretKey, Warn,
		fmt.Sprintf("generated key file %s (mode 0600); FEEDD_SECRET_KEY is not set", path),
		fmt.Sprintf("Back up %s with the data dir, or move its contents into FEEDD_SECRET_KEY (or FEEDD_SECRET_KEY_FILE) so a lost data dir does not lose the key with it.", path))
}

// ---------------------------------------------------------------- clock

const titleClock = "Clock is right"

func checkClock(p probe, now func() time.Time) Check {
	if p.err != nil || p.date == "" {
		return ok(IDClock, titleClock, "not checked: the public URL gave no reference time")
	}
	ref, err := http.ParseTime(p.date)
	if err != nil {
		return ok(IDClock, titleClock, "not checked: the public URL's Date header is unreadable")
	}
	local := now()
	// The Date header was stamped while the request was in flight: allow
	// for the round trip and its one-second resolution.
	skew := local.Sub(ref)
	if skew < 0 {
		skew = -skew
	}
	slack := p.took + time.Second
	if skew <= MaxClockSkew+slack {
		return ok(IDClock, titleClock, fmt.Sprintf("within %s of %s's clock", roundSkew(skew), hostOf(p.url)))
	}
	dir := "ahead of"
	if local.Before(ref) {
		dir = "behind"
	}
	return bad(IDClock, titleClock, Fail,
		fmt.Sprintf("this machine's clock is %s %s %s's (more than %s): sign-in codes, token expiry and Meta's signed requests depend on it", roundSkew(skew), dir, hostOf(p.url), MaxClockSkew),
		"Turn on time synchronisation (NTP, e.g. timedatectl set-ntp true) on this machine and on the one serving FEEDD_PUBLIC_URL.")
}

func roundSkew(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}

func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		return u.Host
	}
	return raw
}
