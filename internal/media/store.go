// Package media downloads images from allowed hosts without letting a URL
// reach internal addresses, resizes them to a few widths, stores the JPEGs
// under content-addressed names in a Backend (a local directory or an
// S3-compatible bucket) and serves them.
package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
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
	// DefaultSweepGrace is the grace period (Options.SweepGrace) for
	// storage shared by several instances: far longer than a poll takes
	// from storing its images to recording them.
	DefaultSweepGrace = time.Hour
	// tempPrefix marks local files being written; Sweep removes old ones
	// and the handler never serves them (they do not match fileRE).
	tempPrefix = ".tmp-"
	// staleTemp is how old a temp file must be before Sweep removes it, so a
	// sweep never races a write in progress.
	staleTemp = 15 * time.Minute
	// removeTimeout bounds Remove, which has no context of its own.
	removeTimeout = time.Minute
)

// DefaultWidths are the stored widths when Options.Widths is empty.
var DefaultWidths = []int{320, 640, 1080}

// fileRE is the only shape of a stored image's relative name:
// "<2 hex shard>/<32 hex hash>-<width>.<jpg|avif|webp>", the shard being the
// hash's first two characters (checked separately).
var fileRE = regexp.MustCompile(`^([0-9a-f]{2})/([0-9a-f]{32})-([1-9][0-9]{0,4})\.(jpg|avif|webp)$`)

// Options configure a Store. Zero fields take the defaults above.
type Options struct {
	// Backend holds the files; nil means a Local backend on Dir.
	Backend Backend
	// Dir is where files are stored (<data dir>/media) when Backend is
	// nil; with a Backend it holds only the temp files of streamed writes.
	// Created if missing.
	Dir string
	// PublicURL, when set, is where the files are public (a bucket's
	// website or a CDN in front of it): the handler redirects /media/<name>
	// to PublicURL/<name> instead of serving the bytes.
	PublicURL string
	// SweepGrace protects files younger than it from Sweep, so that a file
	// another instance just put, and has not recorded yet, is never
	// removed. 0 means none: for storage that only this process writes,
	// swept before it downloads anything.
	SweepGrace time.Duration
	// SweptAtStart: the caller sweeps right after New, and the sweep counts
	// the stored bytes, so New does not list the storage first (for a
	// bucket, one full listing at start instead of two). Until that sweep
	// the stored-bytes gauge reads 0.
	SweptAtStart bool
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
	// Now is the clock used by Sweep to age files; nil means time.Now.
	Now func() time.Time
}

// Store fetches, stores, removes and serves media files.
type Store struct {
	backend Backend
	sources sourceCache // the pixels of recent downloads, for the FormatWorker
	public  string      // Options.PublicURL without a trailing slash
	grace   time.Duration
	hosts   []HostPattern
	opts    Options
	lim     limits
	log     *slog.Logger
	now     func() time.Time
	dial    *dialer
	tr      *http.Transport
	client  *http.Client
	// decodeSem bounds concurrent decodes: each may hold up to
	// MaxPixels×4 bytes.
	decodeSem chan struct{}
	// nameMu serialises the puts and deletes of one name (striped by the
	// shard byte), so that its bytes are counted once.
	nameMu    [256]sync.Mutex
	stored    atomic.Int64
	downloads *prometheus.CounterVec
}

// Download outcomes, the values of feedd_media_downloads_total{outcome}.
var outcomes = []string{"ok", "bad_url", "host_not_allowed", "private_address", "too_large", "bad_image", "not_video", "upstream", "timeout", "error"}

// New opens the backend (a Local one on Dir when Options.Backend is nil),
// totals the bytes already stored and returns a Store, which then owns the
// backend and closes it. When New fails, a backend it was given is left to
// the caller.
func New(o Options) (*Store, error) {
	if o.Backend == nil && o.Dir == "" {
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
	if o.SweepGrace < 0 {
		return nil, fmt.Errorf("media: negative sweep grace %s", o.SweepGrace)
	}
	public := strings.TrimRight(o.PublicURL, "/")
	if public != "" {
		u, err := url.Parse(public)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("media: public URL %q is not an http(s) URL without credentials, query or fragment", public)
		}
	}
	backend := o.Backend
	if backend != nil && o.Dir != "" {
		if err := os.MkdirAll(o.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("media: create dir: %w", err)
		}
	}
	if backend == nil {
		l, err := NewLocal(o.Dir, o.Now)
		if err != nil {
			return nil, err
		}
		backend = l
	}
	s := &Store{
		backend:   backend,
		public:    public,
		grace:     o.SweepGrace,
		hosts:     slices.Clone(o.Hosts),
		opts:      o,
		lim:       limits{maxPixels: o.MaxPixels, maxSide: o.MaxSide, widths: widths, quality: o.Quality},
		log:       o.Logger,
		now:       o.Now,
		dial:      newDialer(o.AllowPrivate, o.Resolver),
		decodeSem: make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
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

	if !o.SweptAtStart {
		var total int64
		if err := backend.List(context.Background(), func(oi ObjectInfo) error {
			if validName(oi.Name) {
				total += oi.Size
			}
			return nil
		}); err != nil {
			s.closeOwned()
			return nil, fmt.Errorf("media: count stored files: %w", err)
		}
		s.stored.Store(total)
	}

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
				s.closeOwned()
				return nil, fmt.Errorf("media: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// closeOwned closes the backend if New opened it.
func (s *Store) closeOwned() {
	if s.opts.Backend == nil {
		s.backend.Close()
	}
}

// Close releases the backend and idle connections.
func (s *Store) Close() error {
	s.tr.CloseIdleConnections()
	return s.backend.Close()
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
	case errors.Is(err, ErrNotVideo):
		return "not_video"
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
	img, err := s.save(ctx, p)
	if err != nil {
		return model.Media{}, fmt.Errorf("media: store %s: %w", safe, err)
	}
	s.keepSource(img, p.largest)
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
func (s *Store) save(ctx context.Context, p processed) (model.Media, error) {
	img := model.Media{Width: p.width, Height: p.height, Color: p.color}
	for _, v := range p.variants {
		name := v.hash[:2] + "/" + v.hash + "-" + strconv.Itoa(v.width) + ".jpg"
		if err := s.put(ctx, name, v.data); err != nil {
			return model.Media{}, err
		}
		n := int64(len(v.data))
		img.Bytes += n
		img.Variants = append(img.Variants, model.Variant{Width: v.width, Height: v.height, File: name, Bytes: n})
	}
	return img, nil
}

// put stores data under name (a name validName accepts) and counts its
// bytes if it is new.
func (s *Store) put(ctx context.Context, name string, data []byte) error {
	mu := s.lockName(name)
	defer mu.Unlock()
	created, err := s.backend.Put(ctx, name, bytes.NewReader(data), int64(len(data)), contentType(name))
	if err != nil {
		return err
	}
	if created {
		s.stored.Add(int64(len(data)))
	}
	return nil
}

// lockName locks the stripe of name: its first byte, the shard.
func (s *Store) lockName(name string) *sync.Mutex {
	mu := &s.nameMu[name[0]]
	mu.Lock()
	return mu
}

// validName reports whether rel is exactly a stored file's name.
func validName(rel string) bool {
	m := fileRE.FindStringSubmatch(rel)
	return m != nil && m[1] == m[2][:2] || validVideoName(rel)
}

// Remove deletes stored files by their relative names. Missing files are
// not an error; a name that is not a stored file's (one that could escape
// the directory, say) is refused and reported, and the others are still
// removed.
func (s *Store) Remove(files []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	var errs []error
	for _, rel := range files {
		if !validName(rel) {
			errs = append(errs, fmt.Errorf("%w: %q", ErrBadPath, rel))
			continue
		}
		if err := s.remove(ctx, rel); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Store) remove(ctx context.Context, name string) error {
	mu := s.lockName(name)
	defer mu.Unlock()
	freed, err := s.backend.Delete(ctx, name)
	s.stored.Add(-freed)
	return err
}
