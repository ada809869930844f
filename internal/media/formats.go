package media

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/retry"
)

// ErrBadFormats is returned for FormatOptions naming an unknown format or
// a quality outside 1-100.
var ErrBadFormats = errors.New("media: formats")

// FormatStore is what the background encoder needs of the database; the
// pending set is derived from it, so a restart resumes unfinished work.
type FormatStore interface {
	PendingFormats(ctx context.Context, formats []string, maxFailures int, now time.Time, holder string, limit int) ([]model.Media, error)
	ClaimFormats(ctx context.Context, key string, formats []string, maxFailures int, now time.Time, holder string, until time.Time) (bool, error)
	CountPendingFormats(ctx context.Context, formats []string, maxFailures int) (int, error)
	AddFormats(ctx context.Context, m model.Media, added []model.Variant, formats []string) ([]string, error)
	FormatFailed(ctx context.Context, key string, retryAt func(failures int) time.Time) (int, error)
	UnnamedFiles(ctx context.Context, files []string) ([]string, error)
}

// Defaults of FormatOptions.
const (
	DefaultMaxFormatFailures = 5
	DefaultFormatIdle        = 30 * time.Second
	formatRetryBase          = time.Minute
	formatRetryMax           = 6 * time.Hour
	formatBatch              = 16
	// formatLease is how long an instance holds an image it encodes:
	// many times one image's encodes (seconds to a minute), and the wait
	// before another instance takes over from one that died.
	formatLease = 10 * time.Minute
)

// FormatOptions configure the background encoder.
type FormatOptions struct {
	// Formats to store beside the JPEGs (model.FormatAVIF,
	// model.FormatWebP); empty: none, and the worker only waits for its
	// context to end.
	Formats []string
	// AVIFQuality and WebPQuality, 1-100; 0 takes the defaults.
	AVIFQuality, WebPQuality int
	// MaxFailures: an image whose encoding failed this many times is left
	// with its JPEGs; the count is stored, so a restart does not reset it.
	MaxFailures int
	// Idle is how often the worker looks for work when nobody notifies it.
	Idle time.Duration
	// Stored is called with the feeds showing an image whose formats were
	// just recorded: their cached documents now lack the sources.
	Stored func(feedIDs []string)
	// Holder names this instance in its claims of images to encode, so
	// that instances sharing a database encode each image once; empty: a
	// random name.
	Holder string
	// Now is the clock of the retry back-off; nil means time.Now.
	Now func() time.Time
	// Logger receives the worker's lines; nil discards them.
	Logger *slog.Logger
	// Registerer, when set, receives the worker's metrics.
	Registerer prometheus.Registerer
}

// FormatWorker encodes stored images as AVIF and WebP beside their JPEGs,
// one image at a time in one goroutine, so it uses at most one core and
// one encoder's memory. A feed never waits for it: the JPEGs are served
// until it has finished an image.
type FormatWorker struct {
	s       *Store
	db      FormatStore
	formats []string
	quality map[string]int
	maxFail int
	holder  string
	idle    time.Duration
	now     func() time.Time
	stored  func(feedIDs []string)
	log     *slog.Logger
	wake    chan struct{}

	encodes *prometheus.CounterVec
	seconds *prometheus.HistogramVec
	queue   prometheus.Gauge
}

// NewFormatWorker returns a worker that stores s's images in o.Formats.
func (s *Store) NewFormatWorker(db FormatStore, o FormatOptions) (*FormatWorker, error) {
	if o.AVIFQuality == 0 {
		o.AVIFQuality = DefaultAVIFQuality
	}
	if o.WebPQuality == 0 {
		o.WebPQuality = DefaultWebPQuality
	}
	for name, q := range map[string]int{"AVIF": o.AVIFQuality, "WebP": o.WebPQuality} {
		if q < 1 || q > 100 {
			return nil, fmt.Errorf("%w: %s quality %d outside 1-100", ErrBadFormats, name, q)
		}
	}
	for _, f := range o.Formats {
		if f != model.FormatAVIF && f != model.FormatWebP {
			return nil, fmt.Errorf("%w: unknown format %q", ErrBadFormats, f)
		}
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = DefaultMaxFormatFailures
	}
	if o.Idle <= 0 {
		o.Idle = DefaultFormatIdle
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Holder == "" {
		o.Holder = rand.Text()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	formats := slices.Clone(o.Formats)
	slices.Sort(formats)
	w := &FormatWorker{
		s: s, db: db, formats: slices.Compact(formats),
		quality: map[string]int{model.FormatAVIF: o.AVIFQuality, model.FormatWebP: o.WebPQuality},
		maxFail: o.MaxFailures, holder: o.Holder, idle: o.Idle, now: o.Now, stored: o.Stored, log: o.Logger,
		wake: make(chan struct{}, 1),
		encodes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedd_media_encodes_total",
			Help: "Images encoded in AVIF or WebP beside their JPEGs, by format and outcome (ok, failed).",
		}, []string{"format", "outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "feedd_media_encode_seconds",
			Help:    "Time to encode one image (all its sizes) in one format.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32},
		}, []string{"format"}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "feedd_media_encode_queue",
			Help: "Stored images still waiting for a format, as last counted.",
		}),
	}
	for _, f := range w.formats {
		w.encodes.WithLabelValues(f, "ok")
		w.encodes.WithLabelValues(f, "failed")
	}
	if len(w.formats) > 0 {
		s.sources.enable()
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{w.encodes, w.seconds, w.queue} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("media: register metrics: %w", err)
			}
		}
	}
	return w, nil
}

// Notify tells the worker that new images were stored; it never blocks.
func (w *FormatWorker) Notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run works until ctx ends: whatever is pending, then again when notified
// or every Idle.
func (w *FormatWorker) Run(ctx context.Context) {
	if len(w.formats) == 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(w.idle)
	defer t.Stop()
	for {
		if _, err := w.Drain(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("media formats", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-t.C:
		}
	}
}

// Drain encodes every image that is due now and returns how many it
// finished (encoded or found complete). Failed images are counted, deferred
// with back-off and, after MaxFailures, left with their JPEGs.
func (w *FormatWorker) Drain(ctx context.Context) (int, error) {
	done, attempted := 0, false
	w.count(ctx)
	defer w.count(ctx)
	for {
		batch, err := w.db.PendingFormats(ctx, w.formats, w.maxFail, w.now(), w.holder, formatBatch)
		if err != nil {
			return done, err
		}
		if len(batch) == 0 {
			if attempted {
				// Idle until the next poll: the compiled encoders' memory
				// (tens of MiB) goes back; compiling again takes seconds.
				releaseEncoders()
			}
			return done, nil
		}
		for _, m := range batch {
			if err := ctx.Err(); err != nil {
				return done, err
			}
			// Another instance may have taken, finished or failed the
			// image since the batch was read: this one goes on.
			now := w.now()
			mine, err := w.db.ClaimFormats(ctx, m.Key, w.formats, w.maxFail, now, w.holder, now.Add(formatLease))
			if err != nil {
				return done, err
			}
			if !mine {
				continue
			}
			attempted = true
			if err := w.one(ctx, m); err != nil {
				if ctx.Err() != nil {
					return done, ctx.Err()
				}
				w.failed(ctx, m.Key, err)
				continue
			}
			w.queue.Dec()
			done++
		}
	}
}

func (w *FormatWorker) count(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	if n, err := w.db.CountPendingFormats(ctx, w.formats, w.maxFail); err == nil {
		w.queue.Set(float64(n))
	}
}

func (w *FormatWorker) failed(ctx context.Context, key string, cause error) {
	now := w.now()
	n, err := w.db.FormatFailed(ctx, key, func(n int) time.Time {
		return now.Add(retry.Backoff(formatRetryBase, formatRetryMax, n))
	})
	if errors.Is(err, model.ErrNotFound) {
		return
	}
	if err != nil {
		w.log.Warn("media formats failure not recorded", slog.String("key", key), slog.Any("error", err))
		return
	}
	if n >= w.maxFail {
		w.log.Warn("media formats given up", slog.String("key", key), slog.Int("failures", n), slog.Any("error", cause))
		return
	}
	w.log.Info("media formats failed", slog.String("key", key), slog.Int("failures", n), slog.Any("error", cause))
}

// one encodes the formats m lacks and records them.
func (w *FormatWorker) one(ctx context.Context, m model.Media) error {
	var jpegs []model.Variant
	have := map[string]bool{}
	for _, v := range m.Variants {
		switch {
		case v.Format != "":
			have[v.Format] = true
		case strings.HasSuffix(v.File, ".jpg") && v.Width > 0 && v.Height > 0:
			jpegs = append(jpegs, v)
		}
	}
	var missing []string
	for _, f := range w.formats {
		if !have[f] {
			missing = append(missing, f)
		}
	}
	done := slices.Sorted(func(yield func(string) bool) {
		for f := range have {
			if !yield(f) {
				return
			}
		}
	})
	if len(jpegs) == 0 || len(missing) == 0 {
		// Nothing to encode (a video's row, or formats stored earlier):
		// recorded, so that it leaves the pending set.
		_, err := w.db.AddFormats(ctx, m, nil, append(done, w.formats...))
		return err
	}
	slices.SortFunc(jpegs, func(a, b model.Variant) int { return a.Width - b.Width })
	largest := jpegs[len(jpegs)-1]
	base := w.s.sources.take(largest.File)
	if base == nil || base.Rect.Dx() != largest.Width || base.Rect.Dy() != largest.Height {
		var err error
		if base, err = w.readJPEG(ctx, largest.File); err != nil {
			return err
		}
	}
	sizes := make([]image.Point, len(jpegs))
	for i, v := range jpegs {
		sizes[i] = image.Pt(v.Width, v.Height)
	}
	// The smaller sizes are scaled down from the largest, not decoded from
	// their own JPEGs: scaling hides the larger one's artefacts where the
	// small JPEGs have their own.
	scaled := cascade(base, sizes)
	base = nil
	var added []model.Variant
	for _, f := range missing {
		start := time.Now()
		vs, err := w.encodeAll(ctx, f, scaled)
		if err != nil {
			w.encodes.WithLabelValues(f, "failed").Inc()
			w.cleanup(added)
			return err
		}
		w.seconds.WithLabelValues(f).Observe(time.Since(start).Seconds())
		w.encodes.WithLabelValues(f, "ok").Inc()
		added = append(added, vs...)
	}
	feeds, err := w.db.AddFormats(ctx, m, added, append(done, missing...))
	if errors.Is(err, model.ErrNotFound) {
		// The image was removed or replaced while it was being encoded.
		w.cleanup(added)
		w.log.Debug("media formats skipped", slog.String("key", m.Key))
		return nil
	}
	if err != nil {
		w.cleanup(added)
		return err
	}
	if w.stored != nil && len(feeds) > 0 {
		w.stored(feeds)
	}
	return nil
}

// encodeAll encodes every size in format f and stores the files.
func (w *FormatWorker) encodeAll(ctx context.Context, f string, scaled []*image.RGBA) ([]model.Variant, error) {
	var out []model.Variant
	for _, img := range scaled {
		data, err := encodeImage(ctx, f, img, w.quality[f])
		if err != nil {
			w.cleanup(out)
			return nil, err
		}
		sum := sha256.Sum256(data)
		hash := hex.EncodeToString(sum[:16])
		name := hash[:2] + "/" + hash + "-" + strconv.Itoa(img.Rect.Dx()) + "." + f
		if err := w.s.put(ctx, name, data); err != nil {
			w.cleanup(out)
			return nil, fmt.Errorf("media: store %s: %w", name, err)
		}
		out = append(out, model.Variant{Width: img.Rect.Dx(), Height: img.Rect.Dy(), File: name, Bytes: int64(len(data)), Format: f})
	}
	return out, nil
}

// cleanup removes files written for an encode that will not be recorded,
// except those a media row names (content addressing shares files).
func (w *FormatWorker) cleanup(vs []model.Variant) {
	if len(vs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	files := make([]string, len(vs))
	for i, v := range vs {
		files[i] = v.File
	}
	unnamed, err := w.db.UnnamedFiles(ctx, files)
	if err == nil {
		err = w.s.Remove(unnamed)
	}
	if err != nil {
		// The start-up sweep removes what is left.
		w.log.Warn("media formats cleanup", slog.Any("error", err))
	}
}

// readJPEG decodes a stored JPEG into RGBA, within the store's limits.
func (w *FormatWorker) readJPEG(ctx context.Context, name string) (*image.RGBA, error) {
	obj, err := w.s.backend.Open(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("media: open %s: %w", name, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(io.LimitReader(obj, w.s.opts.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("media: read %s: %w", name, err)
	}
	if int64(len(data)) > w.s.opts.MaxBytes {
		return nil, fmt.Errorf("%w: %s larger than %d bytes", ErrTooLarge, name, w.s.opts.MaxBytes)
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadImage, name, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > w.s.lim.maxSide || cfg.Height > w.s.lim.maxSide {
		return nil, fmt.Errorf("%w: %s is %dx%d", ErrBadImage, name, cfg.Width, cfg.Height)
	}
	src, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadImage, name, err)
	}
	b := src.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(out, out.Bounds(), src, b.Min, draw.Src)
	return out, nil
}

// sourceKeep is how many downloads' pixels the store keeps for the
// background encoder: a 1080×1350 image is 5.6 MiB.
const sourceKeep = 4

// sourceCache keeps the pixels of the last few downloads, by the name of
// their largest JPEG, so that the background encoder starts from them
// rather than from that JPEG: encoding a JPEG's artefacts again costs
// bytes for no likeness to the original. It is empty until a FormatWorker
// uses it; after a restart, or once a poll stored more images than it
// keeps, the encoder decodes the JPEG instead.
type sourceCache struct {
	mu    sync.Mutex
	on    bool
	names []string // oldest first
	pix   map[string]*image.RGBA
}

func (c *sourceCache) enable() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.on = true
	c.pix = map[string]*image.RGBA{}
}

// keepSource remembers the pixels of m's largest JPEG.
func (s *Store) keepSource(m model.Media, largest *image.RGBA) {
	c := &s.sources
	if largest == nil || len(m.Variants) == 0 {
		return
	}
	name := m.Variants[len(m.Variants)-1].File
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return
	}
	if _, ok := c.pix[name]; ok {
		return
	}
	if len(c.names) == sourceKeep {
		delete(c.pix, c.names[0])
		c.names = c.names[1:]
	}
	c.names = append(c.names, name)
	c.pix[name] = largest
}

// take returns and forgets the pixels kept for the JPEG name, if any.
func (c *sourceCache) take(name string) *image.RGBA {
	c.mu.Lock()
	defer c.mu.Unlock()
	img, ok := c.pix[name]
	if !ok {
		return nil
	}
	delete(c.pix, name)
	c.names = slices.DeleteFunc(c.names, func(n string) bool { return n == name })
	return img
}
