// Package media downloads images from allowed hosts without letting a URL
// reach internal addresses, resizes them to a few widths, stores the JPEGs
// under content-addressed names and serves them.
package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/model"
)

// Defaults for zero Options fields.
const (
	DefaultMaxBytes  = 15 << 20
	DefaultMaxPixels = 40_000_000
	DefaultMaxSide   = 12_000
	DefaultTimeout   = 20 * time.Second
	DefaultQuality   = 82
	maxRedirects     = 3
	// tempPrefix marks files being written; Sweep removes old ones and the
	// handler never serves them (they do not match fileRE).
	tempPrefix = ".tmp-"
	// staleTemp is how old a temp file must be before Sweep removes it, so a
	// sweep never races a write in progress.
	staleTemp = 15 * time.Minute
)

// DefaultWidths are the stored widths when Options.Widths is empty.
var DefaultWidths = []int{320, 640, 1080}

// fileRE is the only shape of a stored file's relative name:
// "<2 hex shard>/<32 hex hash>-<width>.jpg", the shard being the hash's first
// two characters (checked separately).
var fileRE = regexp.MustCompile(`^([0-9a-f]{2})/([0-9a-f]{32})-([1-9][0-9]{0,4})\.jpg$`)

// Options configure a Store. Zero fields take the defaults above.
type Options struct {
	// Dir is where files are stored (<data dir>/media); created if missing.
	Dir string
	// Hosts is the download allow-list (FEEDD_MEDIA_HOSTS, see ParseHosts).
	Hosts []HostPattern
	// AllowPrivate permits loopback/private targets and plain http
	// (FEEDD_MEDIA_ALLOW_PRIVATE; tests and the sandbox only).
	AllowPrivate bool
	// MaxBytes caps a download's body.
	MaxBytes int64
	// MaxPixels caps width×height; MaxSide caps either side.
	MaxPixels int
	MaxSide   int
	// Timeout bounds one download, redirects included.
	Timeout time.Duration
	// Widths are the stored widths; see Fetch for which are produced.
	Widths []int
	// Quality is the JPEG quality, 1-100.
	Quality int
	// Logger receives debug lines; nil discards them.
	Logger *slog.Logger
	// Registerer, when set, receives the store's metrics.
	Registerer prometheus.Registerer
	// Resolver replaces DNS lookups (tests); the dialer still checks every
	// address it connects to.
	Resolver Resolver
	// Now is the clock used by Sweep to age temp files; nil means time.Now.
	Now func() time.Time
}

// Store fetches, stores, removes and serves media files.
type Store struct {
	dir    string
	root   *os.Root
	hosts  []HostPattern
	opts   Options
	lim    limits
	log    *slog.Logger
	now    func() time.Time
	dial   *dialer
	tr     *http.Transport
	client *http.Client
	// decodeSem bounds concurrent decodes: each may hold up to
	// MaxPixels×4 bytes.
	decodeSem chan struct{}
	// writeMu makes "exists? else rename" atomic so bytes are counted once.
	writeMu   sync.Mutex
	rename    func(oldpath, newpath string) error // os.Rename; tests inject failures
	stored    atomic.Int64
	downloads *prometheus.CounterVec
}

// Download outcomes, the values of feedd_media_downloads_total{outcome}.
var outcomes = []string{"ok", "bad_url", "host_not_allowed", "private_address", "too_large", "bad_image", "upstream", "timeout", "error"}

// New creates the directory if needed, totals the bytes already stored and
// returns a Store.
func New(o Options) (*Store, error) {
	if o.Dir == "" {
		return nil, errors.New("media: no directory")
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxPixels <= 0 {
		o.MaxPixels = DefaultMaxPixels
	}
	if o.MaxSide <= 0 {
		o.MaxSide = DefaultMaxSide
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Quality == 0 {
		o.Quality = DefaultQuality
	}
	if o.Quality < 1 || o.Quality > 100 {
		return nil, fmt.Errorf("media: quality %d outside 1-100", o.Quality)
	}
	widths := slices.Clone(o.Widths)
	if len(widths) == 0 {
		widths = slices.Clone(DefaultWidths)
	}
	slices.Sort(widths)
	widths = slices.Compact(widths)
	if widths[0] < 1 || widths[len(widths)-1] > o.MaxSide {
		return nil, fmt.Errorf("media: widths %v must be within 1-%d", widths, o.MaxSide)
	}
	o.Widths = widths
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("media: create dir: %w", err)
	}
	root, err := os.OpenRoot(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("media: open dir: %w", err)
	}
	s := &Store{
		dir:       o.Dir,
		root:      root,
		hosts:     slices.Clone(o.Hosts),
		opts:      o,
		lim:       limits{maxPixels: o.MaxPixels, maxSide: o.MaxSide, widths: widths, quality: o.Quality},
		log:       o.Logger,
		now:       o.Now,
		dial:      newDialer(o.AllowPrivate, o.Resolver),
		decodeSem: make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
		rename:    os.Rename,
	}
	s.tr = &http.Transport{
		Proxy:                 nil, // a proxy would dial on our behalf, past the address check
		DialContext:           s.dial.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: o.Timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
	}
	s.client = &http.Client{Transport: s.tr, CheckRedirect: s.checkRedirect}

	var total int64
	_ = s.walk(func(rel string, info fs.FileInfo) {
		if fileRE.MatchString(rel) {
			total += info.Size()
		}
	})
	s.stored.Store(total)

	s.downloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feedd_media_downloads_total",
		Help: "Media downloads by outcome.",
	}, []string{"outcome"})
	for _, oc := range outcomes {
		s.downloads.WithLabelValues(oc)
	}
	if o.Registerer != nil {
		gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "feedd_media_bytes_stored",
			Help: "Bytes of stored media files.",
		}, func() float64 { return float64(s.stored.Load()) })
		for _, c := range []prometheus.Collector{gauge, s.downloads} {
			if err := o.Registerer.Register(c); err != nil {
				root.Close()
				return nil, fmt.Errorf("media: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Close releases the directory handle and idle connections.
func (s *Store) Close() error {
	s.tr.CloseIdleConnections()
	return s.root.Close()
}

// BytesStored is the total size of the stored files.
func (s *Store) BytesStored() int64 { return s.stored.Load() }

// checkURL validates a source or redirect URL: scheme, credentials, host
// against the allow-list.
func (s *Store) checkURL(u *url.URL) error {
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && s.opts.AllowPrivate:
	default:
		return fmt.Errorf("%w: scheme %q (want https)", ErrBadURL, u.Scheme)
	}
	if u.User != nil {
		return fmt.Errorf("%w: credentials in URL", ErrBadURL)
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return fmt.Errorf("%w: no host", ErrBadURL)
	}
	port := u.Port()
	if port == "" {
		port = defaultPort(u.Scheme)
	}
	if !hostAllowed(s.hosts, u.Scheme, host, port) {
		return fmt.Errorf("%w: %s", ErrHostNotAllowed, u.Host)
	}
	return nil
}

func (s *Store) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return fmt.Errorf("%w: more than %d redirects", ErrUpstream, maxRedirects)
	}
	if err := s.checkURL(req.URL); err != nil {
		return fmt.Errorf("redirect to %s: %w", redact(req.URL), err)
	}
	return nil
}

// Fetch downloads the image at srcURL, stores one JPEG per width and returns
// what was stored: the original's size, its dominant colour and the files,
// smallest first, as a model.Media without a Key (the caller names it). The widths are every configured width below the
// original's, plus the original's own width when it is not wider than the
// largest configured one; nothing is upscaled. Files whose content already
// exists are not written again.
//
// Errors wrap the package's sentinels and name the URL's host and path only:
// the query of a signed CDN URL never appears.
func (s *Store) Fetch(ctx context.Context, srcURL string) (model.Media, error) {
	img, err := s.fetch(ctx, srcURL)
	s.downloads.WithLabelValues(outcome(err)).Inc()
	return img, err
}

func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrBadURL):
		return "bad_url"
	case errors.Is(err, ErrHostNotAllowed):
		return "host_not_allowed"
	case errors.Is(err, ErrPrivateAddress):
		return "private_address"
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	case errors.Is(err, ErrBadImage):
		return "bad_image"
	case errors.Is(err, ErrUpstream):
		return "upstream"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	}
	return "error"
}

func (s *Store) fetch(ctx context.Context, srcURL string) (model.Media, error) {
	u, err := url.Parse(srcURL)
	if err != nil {
		// url.Parse's error quotes the whole URL, signature included.
		return model.Media{}, fmt.Errorf("%w: unparsable", ErrBadURL)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	safe := redact(u)
	if err := s.checkURL(u); err != nil {
		return model.Media{}, fmt.Errorf("media: fetch %s: %w", safe, err)
	}
	data, err := s.download(ctx, u)
	if err != nil {
		return model.Media{}, fmt.Errorf("media: fetch %s: %w", safe, err)
	}
	select {
	case s.decodeSem <- struct{}{}:
	case <-ctx.Done():
		return model.Media{}, fmt.Errorf("media: fetch %s: %w", safe, ctx.Err())
	}
	p, err := process(data, s.lim)
	<-s.decodeSem
	if err != nil {
		return model.Media{}, fmt.Errorf("media: fetch %s: %w", safe, err)
	}
	img, err := s.save(p)
	if err != nil {
		return model.Media{}, fmt.Errorf("media: store %s: %w", safe, err)
	}
	s.log.Debug("media stored", slog.String("host", u.Host), slog.String("path", u.EscapedPath()),
		slog.Int("width", img.Width), slog.Int("height", img.Height), slog.Int("variants", len(img.Variants)))
	return img, nil
}

// download returns the body of a 200 answer, at most MaxBytes long.
func (s *Store) download(ctx context.Context, u *url.URL) ([]byte, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, s.opts.Timeout, ErrTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadURL, redactErr(err))
	}
	// Only formats feedd decodes: a CDN choosing by Accept must not send
	// AVIF or HEIC.
	req.Header.Set("Accept", "image/jpeg,image/png,image/webp,image/gif;q=0.8")
	req.Header.Set("User-Agent", "feedd-media/1")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, s.netErr(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &UpstreamError{Status: resp.StatusCode}
	}
	if resp.ContentLength > s.opts.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrTooLarge, resp.ContentLength, s.opts.MaxBytes)
	}
	var buf bytes.Buffer
	if resp.ContentLength > 0 {
		buf.Grow(int(resp.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, s.opts.MaxBytes+1))
	if err != nil {
		return nil, s.netErr(ctx, err)
	}
	if n > s.opts.MaxBytes {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, s.opts.MaxBytes)
	}
	return buf.Bytes(), nil
}

// netErr turns a transport error into one without the URL (url.Error
// quotes it whole) and maps our own deadline to ErrTimeout.
func (s *Store) netErr(ctx context.Context, err error) error {
	err = redactErr(err)
	if errors.Is(context.Cause(ctx), ErrTimeout) {
		return fmt.Errorf("%w after %s", ErrTimeout, s.opts.Timeout)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	}
	return err
}

// redactErr drops the URL from *url.Error, keeping what it wraps.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}

// save writes the variants that are not stored yet and describes them.
func (s *Store) save(p processed) (model.Media, error) {
	img := model.Media{Width: p.width, Height: p.height, Color: p.color}
	for _, v := range p.variants {
		name := v.hash[:2] + "/" + v.hash + "-" + strconv.Itoa(v.width) + ".jpg"
		if err := s.writeFile(name, v.data); err != nil {
			return model.Media{}, err
		}
		n := int64(len(v.data))
		img.Bytes += n
		img.Variants = append(img.Variants, model.Variant{Width: v.width, Height: v.height, File: name, Bytes: n})
	}
	return img, nil
}

// writeFile makes rel appear complete or not at all: temp file in the same
// directory, fsync, rename, fsync of the directory. An existing file with
// the name already has these bytes (the name is their hash) and is kept.
func (s *Store) writeFile(rel string, data []byte) error {
	final := filepath.Join(s.dir, filepath.FromSlash(rel))
	if _, err := os.Lstat(final); err == nil {
		return nil
	}
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if _, err := os.Lstat(final); err == nil {
		os.Remove(tmp)
		ok = true
		return nil
	}
	if err := s.rename(tmp, final); err != nil {
		return err
	}
	ok = true
	s.stored.Add(int64(len(data)))
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	return nil
}

// validName reports whether rel is exactly a stored file's name.
func validName(rel string) bool {
	m := fileRE.FindStringSubmatch(rel)
	return m != nil && m[1] == m[2][:2]
}

// Remove deletes stored files by their relative names. Missing files are
// not an error; a name that is not a stored file's (one that could escape
// the directory, say) is refused and reported, and the others are still
// removed.
func (s *Store) Remove(files []string) error {
	var errs []error
	for _, rel := range files {
		if !validName(rel) {
			errs = append(errs, fmt.Errorf("%w: %q", ErrBadPath, rel))
			continue
		}
		if err := s.removeFile(rel); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Store) removeFile(rel string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	info, err := s.root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("media: remove %s: %w", rel, err)
	}
	if err := s.root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("media: remove %s: %w", rel, err)
	}
	s.stored.Add(-info.Size())
	return nil
}

// Sweep removes every stored file for which keep returns false, temp files
// left by an interrupted write, and empty shard directories, and recounts
// the stored bytes. Run it at startup before downloads begin: a file just
// written but not yet recorded by the caller would look orphaned. Files
// that are neither stored media nor temp files are left alone.
func (s *Store) Sweep(keep func(file string) bool) (removed int, bytes int64, err error) {
	cutoff := s.now().Add(-staleTemp)
	var errs []error
	var total int64
	var dirs []string
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	werr := s.walk(func(rel string, info fs.FileInfo) {
		if info.IsDir() {
			dirs = append(dirs, rel)
			return
		}
		base := filepath.Base(rel)
		switch {
		case validName(rel):
			if keep(rel) {
				total += info.Size()
				return
			}
		case strings.HasPrefix(base, tempPrefix) && info.ModTime().Before(cutoff):
		default:
			return
		}
		if err := s.root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("media: sweep %s: %w", rel, err))
			if validName(rel) {
				total += info.Size()
			}
			return
		}
		removed++
		bytes += info.Size()
	})
	if werr != nil {
		errs = append(errs, werr)
	}
	// Deepest first; Remove fails harmlessly on a directory still in use.
	slices.Reverse(dirs)
	for _, d := range dirs {
		_ = s.root.Remove(d)
	}
	s.stored.Store(total)
	return removed, bytes, errors.Join(errs...)
}

// walk calls fn for every regular file and every directory below Dir (not
// Dir itself), with slash-separated relative names; symlinks are skipped.
func (s *Store) walk(fn func(rel string, info fs.FileInfo)) error {
	return fs.WalkDir(s.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == "." {
				return err
			}
			return nil
		}
		if p == "." || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if d.IsDir() || info.Mode().IsRegular() {
			fn(p, info)
		}
		return nil
	})
}
