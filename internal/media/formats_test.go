package media

import (
	"bytes"
	"context"
	"image"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/secret"
	"github.com/feedd/feedd/internal/store"
	"github.com/feedd/feedd/internal/testutil"
)

// formatEnv is a media store and the real database (SQLite in a temp dir)
// holding a few small images, as a poll leaves them: JPEGs only.
type formatEnv struct {
	t      *testing.T
	clock  *testutil.Clock
	media  *Store
	db     *store.Store
	dbPath string
	dir    string
	keys   []string
}

func newFormatEnv(t *testing.T, images int) *formatEnv {
	t.Helper()
	e := &formatEnv{t: t, clock: &testutil.Clock{T: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)},
		dir: t.TempDir(), dbPath: filepath.Join(t.TempDir(), "feedd.db")}
	e.media = newStore(t, Options{Dir: e.dir, Widths: []int{24, 48}})
	e.db = e.openDB()
	for i := range images {
		// Small pictures keep the encoders quick; the sizes are what counts.
		p, err := process(pngBytes(t, gradientSeed(64, 48, i)), e.media.lim)
		if err != nil {
			t.Fatal(err)
		}
		m, err := e.media.save(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		m.Key = "img-" + string(rune('a'+i))
		if err := e.db.PutMedia(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		e.keys = append(e.keys, m.Key)
	}
	return e
}

func (e *formatEnv) openDB() *store.Store {
	e.t.Helper()
	box, err := secret.New(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		e.t.Fatal(err)
	}
	db, err := store.Open(context.Background(), e.dbPath, box, store.Options{Now: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { db.Close() })
	return db
}

func (e *formatEnv) worker(db FormatStore, o FormatOptions) *FormatWorker {
	e.t.Helper()
	if o.Formats == nil {
		o.Formats = []string{model.FormatAVIF, model.FormatWebP}
	}
	o.Now = e.clock.Now
	w, err := e.media.NewFormatWorker(db, o)
	if err != nil {
		e.t.Fatal(err)
	}
	return w
}

func (e *formatEnv) row(key string) model.Media {
	e.t.Helper()
	m, err := e.db.Media(context.Background(), key)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// files lists the stored files with ext.
func (e *formatEnv) files(ext string) []string {
	var out []string
	for _, f := range listFiles(e.t, e.dir) {
		if strings.HasSuffix(f, ext) {
			out = append(out, f)
		}
	}
	return out
}

func gradientSeed(w, h, seed int) *image.RGBA {
	img := gradient(w, h)
	for i := range img.Pix {
		if i%4 != 3 {
			img.Pix[i] += byte(seed * 40)
		}
	}
	return img
}

func formatsOf(m model.Media) map[string][]int {
	out := map[string][]int{}
	for _, v := range m.Variants {
		out[v.Format] = append(out[v.Format], v.Width)
	}
	return out
}

func TestFormatWorkerStoresEverySizeInAVIFAndWebP(t *testing.T) {
	e := newFormatEnv(t, 2)
	var notified []string
	reg := prometheus.NewRegistry()
	w := e.worker(e.db, FormatOptions{Registerer: reg, Stored: func(ids []string) { notified = append(notified, ids...) }})
	n, err := w.Drain(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("Drain = %d, %v; want 2 images", n, err)
	}
	for _, f := range []string{model.FormatAVIF, model.FormatWebP} {
		if ok, failed := promtest.ToFloat64(w.encodes.WithLabelValues(f, "ok")), promtest.ToFloat64(w.encodes.WithLabelValues(f, "failed")); ok != 2 || failed != 0 {
			t.Errorf("%s encodes: %v ok, %v failed; want 2, 0", f, ok, failed)
		}
	}
	if q := promtest.ToFloat64(w.queue); q != 0 {
		t.Errorf("queue %v after Drain, want 0", q)
	}
	if c := promtest.CollectAndCount(reg, "feedd_media_encode_seconds"); c != 2 {
		t.Errorf("%d encode-time series, want one per format", c)
	}
	srv := httptest.NewServer(http.StripPrefix("/media", e.media.Handler()))
	defer srv.Close()
	for _, key := range e.keys {
		m := e.row(key)
		got := formatsOf(m)
		for _, f := range []string{"", model.FormatAVIF, model.FormatWebP} {
			if !slices.Equal(got[f], []int{24, 48}) {
				t.Errorf("%s: %q widths %v, want [24 48]", key, f, got[f])
			}
		}
		var sum int64
		for _, v := range m.Variants {
			sum += v.Bytes
			if v.Format == "" {
				continue
			}
			resp, err := http.Get(srv.URL + "/media/" + v.File)
			if err != nil {
				t.Fatal(err)
			}
			var body bytes.Buffer
			body.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != model.FormatType(v.Format) || int64(body.Len()) != v.Bytes {
				t.Errorf("%s: %d %s, %d bytes", v.File, resp.StatusCode, resp.Header.Get("Content-Type"), body.Len())
			}
			magic := map[string]string{model.FormatAVIF: "ftypavif", model.FormatWebP: "WEBP"}[v.Format]
			if !bytes.Contains(body.Bytes()[:16], []byte(magic)) {
				t.Errorf("%s does not start like %s: % x", v.File, v.Format, body.Bytes()[:16])
			}
		}
		if m.Bytes != sum {
			t.Errorf("%s: bytes %d, variants sum to %d", key, m.Bytes, sum)
		}
	}
	// Nothing left to do: a second pass encodes nothing.
	if n, err := w.Drain(context.Background()); err != nil || n != 0 {
		t.Errorf("second Drain = %d, %v", n, err)
	}
	if len(notified) != 0 {
		t.Errorf("notified %v for images no feed shows", notified)
	}
}

// cancelAfterFirst is the database of a process killed right after it
// recorded its first image.
type cancelAfterFirst struct {
	FormatStore
	cancel context.CancelFunc
	once   sync.Once
}

func (c *cancelAfterFirst) AddFormats(ctx context.Context, m model.Media, added []model.Variant, formats []string) ([]string, error) {
	ids, err := c.FormatStore.AddFormats(ctx, m, added, formats)
	c.once.Do(c.cancel)
	return ids, err
}

// countingStore counts the images the worker records.
type countingStore struct {
	FormatStore
	mu   sync.Mutex
	keys []string
}

func (c *countingStore) AddFormats(ctx context.Context, m model.Media, added []model.Variant, formats []string) ([]string, error) {
	c.mu.Lock()
	c.keys = append(c.keys, m.Key)
	c.mu.Unlock()
	return c.FormatStore.AddFormats(ctx, m, added, formats)
}

// Instances sharing a database encode each image once between them: two
// workers draining together record every image once in all, and an image
// claimed by an instance that died waits for its claim to lapse, then is
// encoded by another.
func TestFormatWorkersOfTwoInstancesEncodeEachImageOnce(t *testing.T) {
	e := newFormatEnv(t, 6)
	ctx := context.Background()
	// "dead" claimed img-f and stopped.
	if ok, err := e.db.ClaimFormats(ctx, "img-f", []string{model.FormatAVIF}, 1, e.clock.Now(), "dead", e.clock.Now().Add(formatLease)); err != nil || !ok {
		t.Fatalf("claim = %v, %v", ok, err)
	}
	a, b := &countingStore{FormatStore: e.db}, &countingStore{FormatStore: e.db}
	wa, wb := e.worker(a, FormatOptions{Holder: "a"}), e.worker(b, FormatOptions{Holder: "b"})
	var wg sync.WaitGroup
	for _, w := range []*FormatWorker{wa, wb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := w.Drain(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	all := append(slices.Clone(a.keys), b.keys...)
	slices.Sort(all)
	if !slices.Equal(all, e.keys[:5]) {
		t.Fatalf("recorded by a %v and b %v, want each of %v once", a.keys, b.keys, e.keys[:5])
	}
	if got := formatsOf(e.row("img-f")); len(got[model.FormatAVIF]) != 0 {
		t.Fatalf("img-f encoded while another instance held it: %v", got)
	}
	e.clock.Advance(formatLease)
	if n, err := wb.Drain(ctx); err != nil || n != 1 {
		t.Fatalf("after the claim lapsed Drain = %d, %v; want img-f", n, err)
	}
	if got := formatsOf(e.row("img-f")); len(got[model.FormatAVIF]) != 2 || len(got[model.FormatWebP]) != 2 {
		t.Fatalf("img-f: %v after the claim lapsed", got)
	}
}

func TestFormatWorkerResumesAfterARestart(t *testing.T) {
	e := newFormatEnv(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	first := e.worker(&cancelAfterFirst{FormatStore: e.db, cancel: cancel}, FormatOptions{})
	if n, _ := first.Drain(ctx); n != 1 {
		t.Fatalf("the first process finished %d images before it stopped, want 1", n)
	}
	// A new process: the pending set comes from the database.
	e.db.Close()
	e.db = e.openDB()
	counting := &countingStore{FormatStore: e.db}
	if n, err := e.worker(counting, FormatOptions{}).Drain(context.Background()); err != nil || n != 2 {
		t.Fatalf("after the restart Drain = %d, %v; want the 2 images left", n, err)
	}
	// The first process finished img-a (the pending order is by key among
	// images stored at one time); the second does only the others.
	if !slices.Equal(counting.keys, e.keys[1:]) {
		t.Errorf("the restarted worker recorded %v, want %v", counting.keys, e.keys[1:])
	}
	for _, key := range e.keys {
		if got := formatsOf(e.row(key)); len(got[model.FormatAVIF]) != 2 || len(got[model.FormatWebP]) != 2 {
			t.Errorf("%s: %v after the restart", key, got)
		}
	}
	// Every stored AVIF and WebP file is named by a row: none left over.
	named := map[string]bool{}
	for _, key := range e.keys {
		for _, v := range e.row(key).Variants {
			named[v.File] = true
		}
	}
	for _, f := range append(e.files(".avif"), e.files(".webp")...) {
		if !named[f] {
			t.Errorf("orphan file %s", f)
		}
	}
}

// removingStore deletes the image while the worker encodes it, as a poll
// that dropped the post would.
type removingStore struct {
	FormatStore
	db *store.Store
}

func (r *removingStore) AddFormats(ctx context.Context, m model.Media, added []model.Variant, formats []string) ([]string, error) {
	if _, err := r.db.DropUnreferenced(ctx, []string{m.Key}); err != nil {
		return nil, err
	}
	return r.FormatStore.AddFormats(ctx, m, added, formats)
}

func TestFormatWorkerSkipsAnImageRemovedMeanwhileAndLeavesNoFiles(t *testing.T) {
	e := newFormatEnv(t, 1)
	w := e.worker(&removingStore{FormatStore: e.db, db: e.db}, FormatOptions{})
	if _, err := w.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Media(context.Background(), e.keys[0]); err == nil {
		t.Fatal("the image is still stored")
	}
	if left := append(e.files(".avif"), e.files(".webp")...); len(left) != 0 {
		t.Errorf("files of the removed image left: %v", left)
	}
}

// failureCounter counts the failures the worker records.
type failureCounter struct {
	FormatStore
	n int
}

func (f *failureCounter) FormatFailed(ctx context.Context, key string, retryAt func(int) time.Time) (int, error) {
	f.n++
	return f.FormatStore.FormatFailed(ctx, key, retryAt)
}

func TestFormatWorkerRetriesFailuresWithBackoffThenGivesUp(t *testing.T) {
	e := newFormatEnv(t, 1)
	m := e.row(e.keys[0])
	// The largest JPEG is gone: every attempt fails.
	if err := os.Remove(filepath.Join(e.dir, filepath.FromSlash(m.Variants[len(m.Variants)-1].File))); err != nil {
		t.Fatal(err)
	}
	failures := &failureCounter{FormatStore: e.db}
	w := e.worker(failures, FormatOptions{MaxFailures: 3})
	for range 10 {
		// Twice at each moment: the second finds nothing due.
		for range 2 {
			if n, err := w.Drain(context.Background()); err != nil || n != 0 {
				t.Fatalf("Drain = %d, %v", n, err)
			}
		}
		e.clock.Advance(24 * time.Hour)
	}
	if failures.n != 3 {
		t.Errorf("%d attempts, want 3", failures.n)
	}
	if n, _ := e.db.CountPendingFormats(context.Background(), w.formats, 3); n != 0 {
		t.Errorf("still %d pending after giving up", n)
	}
	if f := formatsOf(e.row(e.keys[0])); len(f) != 1 {
		t.Errorf("formats %v, want the JPEGs alone", f)
	}
}

func TestFormatWorkerBacksOffExponentially(t *testing.T) {
	e := newFormatEnv(t, 1)
	m := e.row(e.keys[0])
	os.Remove(filepath.Join(e.dir, filepath.FromSlash(m.Variants[len(m.Variants)-1].File)))
	w := e.worker(e.db, FormatOptions{})
	for _, wait := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute} {
		if _, err := w.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		due := func(at time.Time) bool {
			p, err := e.db.PendingFormats(context.Background(), w.formats, DefaultMaxFormatFailures, at, w.holder, 1)
			if err != nil {
				t.Fatal(err)
			}
			return len(p) == 1
		}
		if due(e.clock.Now().Add(wait-time.Second)) || !due(e.clock.Now().Add(wait)) {
			t.Fatalf("not due exactly %v after the failure", wait)
		}
		e.clock.Advance(wait)
	}
}

func TestFormatWorkerStopsWithItsContext(t *testing.T) {
	e := newFormatEnv(t, 0)
	w := e.worker(e.db, FormatOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	w.Notify()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestNewFormatWorkerRejectsBadOptions(t *testing.T) {
	e := newFormatEnv(t, 0)
	for _, o := range []FormatOptions{
		{Formats: []string{"jpeg"}},
		{Formats: []string{model.FormatAVIF}, AVIFQuality: 101},
		{Formats: []string{model.FormatWebP}, WebPQuality: -1},
	} {
		if _, err := e.media.NewFormatWorker(e.db, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// A fresh download's pixels, not its stored JPEG, are what the worker
// encodes: it still succeeds with the JPEG gone. Encoding the JPEG would
// spend bytes on its artefacts.
func TestFormatWorkerEncodesAFreshDownloadFromItsPixels(t *testing.T) {
	e := newFormatEnv(t, 0)
	src := newSource(t, false, serveBytes(pngBytes(t, gradientSeed(64, 48, 3))))
	e.media = newStore(t, Options{Dir: e.dir, Widths: []int{24, 48}, Hosts: []HostPattern{hostOf(t, src.Server)}, AllowPrivate: true})
	w := e.worker(e.db, FormatOptions{})
	m, err := e.media.Fetch(context.Background(), src.URL+"/p.png")
	if err != nil {
		t.Fatal(err)
	}
	m.Key = "fresh"
	if err := e.db.PutMedia(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(e.dir, filepath.FromSlash(m.Variants[len(m.Variants)-1].File))); err != nil {
		t.Fatal(err)
	}
	if n, err := w.Drain(context.Background()); err != nil || n != 1 {
		t.Fatalf("Drain = %d, %v; want the image encoded from the kept pixels", n, err)
	}
	if got := formatsOf(e.row("fresh")); len(got[model.FormatAVIF]) != 2 || len(got[model.FormatWebP]) != 2 {
		t.Errorf("formats %v", got)
	}
	// Taken once: the pixels are not kept after their encode.
	if img := e.media.sources.take(m.Variants[len(m.Variants)-1].File); img != nil {
		t.Error("the pixels are still kept after the encode")
	}
}
