package media_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/media"
	"github.com/feedd/feedd/internal/media/mediatest"
	"github.com/feedd/feedd/internal/model"
)

// The storage tests run on every backend: the local directory always, the
// S3-compatible server of FEEDD_TEST_S3_URL when it is set (in CI always:
// mediatest fails them otherwise). Each S3 test has a prefix of its own.

// opener opens a backend below the test's root at sub ("" is the root).
type opener func(t *testing.T, sub string) media.Backend

func forEachBackend(t *testing.T, test func(t *testing.T, open opener)) {
	t.Run("local", func(t *testing.T) {
		root := t.TempDir()
		test(t, func(t *testing.T, sub string) media.Backend {
			b, err := media.NewLocal(root+"/"+sub, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		})
	})
	t.Run("s3", func(t *testing.T) {
		st := mediatest.Storage(t)
		test(t, func(t *testing.T, sub string) media.Backend {
			o := mediatest.Options(st)
			o.Prefix = strings.TrimSuffix(o.Prefix+"/"+sub, "/")
			b, err := media.OpenS3(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		})
	})
}

// picture is a JPEG with detail, so its variants differ.
func picture(t *testing.T, w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetRGBA(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), uint8((x ^ y) & 0xff), 0xff})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// clock is a settable time for the store.
type clock struct{ t atomic.Pointer[time.Time] }

func newClock() *clock {
	c := &clock{}
	c.set(time.Now())
	return c
}
func (c *clock) now() time.Time      { return *c.t.Load() }
func (c *clock) set(t time.Time)     { c.t.Store(&t) }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

// storeWithImage is a store on b holding one fetched picture.
func storeWithImage(t *testing.T, b media.Backend, o media.Options) (*media.Store, model.Media) {
	t.Helper()
	data := picture(t, 700, 500)
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(data)
	}))
	t.Cleanup(src.Close)
	u, _ := url.Parse(src.URL)
	hosts, err := media.ParseHosts(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	o.Backend, o.Hosts, o.AllowPrivate = b, hosts, true
	s, err := media.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	img, err := s.Fetch(context.Background(), src.URL+"/p.jpg")
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Variants) < 2 {
		t.Fatalf("only %d variants stored", len(img.Variants))
	}
	return s, img
}

func get(t *testing.T, h http.Handler, method, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestStorageServesStoredImages(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		b := open(t, "media")
		s, img := storeWithImage(t, b, media.Options{})
		v := img.Variants[0]
		want := readObject(t, b, v.File)
		if int64(len(want)) != v.Bytes {
			t.Fatalf("stored %d bytes, variant says %d", len(want), v.Bytes)
		}
		if s.BytesStored() != img.Bytes {
			t.Errorf("BytesStored = %d, want %d", s.BytesStored(), img.Bytes)
		}
		h := s.Handler()
		path := "/" + v.File
		etag := `"` + v.File[3:35] + `"`

		rec := get(t, h, "GET", path)
		if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), want) {
			t.Fatalf("GET = %d, %d bytes; want 200 and the %d stored bytes", rec.Code, rec.Body.Len(), len(want))
		}
		for k, wantv := range map[string]string{
			"Content-Type":                 "image/jpeg",
			"Cache-Control":                "public, max-age=31536000, immutable",
			"ETag":                         etag,
			"Cross-Origin-Resource-Policy": "cross-origin",
			"X-Content-Type-Options":       "nosniff",
			"Content-Length":               fmt.Sprint(len(want)),
		} {
			if got := rec.Header().Get(k); got != wantv {
				t.Errorf("%s = %q, want %q", k, got, wantv)
			}
		}

		rec = get(t, h, "HEAD", path)
		if rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != fmt.Sprint(len(want)) {
			t.Errorf("HEAD = %d, body %d bytes, length %q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Length"))
		}
		rec = get(t, h, "GET", path, "If-None-Match", etag)
		if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
			t.Errorf("If-None-Match = %d with %d bytes, want 304", rec.Code, rec.Body.Len())
		}
		rec = get(t, h, "GET", path, "Range", "bytes=100-199")
		if rec.Code != http.StatusPartialContent || !bytes.Equal(rec.Body.Bytes(), want[100:200]) ||
			rec.Header().Get("Content-Range") != fmt.Sprintf("bytes 100-199/%d", len(want)) {
			t.Errorf("Range 100-199 = %d, %d bytes, Content-Range %q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Range"))
		}
		rec = get(t, h, "GET", path, "Range", "bytes=-10")
		if rec.Code != http.StatusPartialContent || !bytes.Equal(rec.Body.Bytes(), want[len(want)-10:]) {
			t.Errorf("Range -10 = %d, %q", rec.Code, rec.Body.Bytes())
		}
		rec = get(t, h, "GET", path, "Range", "bytes=0-9,20-29")
		if rec.Code != http.StatusPartialContent || !bytes.Contains(rec.Body.Bytes(), want[20:30]) ||
			!strings.HasPrefix(rec.Header().Get("Content-Type"), "multipart/byteranges") {
			t.Errorf("two ranges = %d, %s", rec.Code, rec.Header().Get("Content-Type"))
		}
		missing := v.File[:3] + strings.Repeat("0", 32) + "-320.jpg"
		for _, p := range []string{"/" + missing, "/" + v.File + ".bak", "/../" + v.File} {
			if rec := get(t, h, "GET", p); rec.Code != 404 {
				t.Errorf("GET %s = %d, want 404", p, rec.Code)
			}
		}

		if err := s.Remove([]string{v.File}); err != nil {
			t.Fatal(err)
		}
		if rec := get(t, h, "GET", path); rec.Code != 404 {
			t.Errorf("GET after Remove = %d, want 404", rec.Code)
		}
		if wantb := img.Bytes - v.Bytes; s.BytesStored() != wantb {
			t.Errorf("BytesStored after Remove = %d, want %d", s.BytesStored(), wantb)
		}
	})
}

func readObject(t *testing.T, b media.Backend, name string) []byte {
	t.Helper()
	o, err := b.Open(context.Background(), name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer o.Close()
	data, err := io.ReadAll(o)
	if err != nil {
		t.Fatal(err)
	}
	if o.Info().Size != int64(len(data)) {
		t.Errorf("%s: Info().Size = %d, read %d", name, o.Info().Size, len(data))
	}
	return data
}

func listNames(t *testing.T, b media.Backend) []string {
	t.Helper()
	var names []string
	if err := b.List(context.Background(), func(oi media.ObjectInfo) error {
		names = append(names, oi.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func TestBackendPutOpenDeleteList(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		b := open(t, "x")
		ctx := context.Background()
		name := "ab/ab" + strings.Repeat("1", 30) + "-320.jpg"
		data := []byte("not really a jpeg")
		created, err := b.Put(ctx, name, bytes.NewReader(data), int64(len(data)), "image/jpeg")
		if err != nil || !created {
			t.Fatalf("first Put = %v, %v; want created", created, err)
		}
		created, err = b.Put(ctx, name, bytes.NewReader(data), int64(len(data)), "image/jpeg")
		if err != nil || created {
			t.Fatalf("second Put = %v, %v; want existing", created, err)
		}
		if got := readObject(t, b, name); !bytes.Equal(got, data) {
			t.Errorf("read %q", got)
		}
		if got := listNames(t, b); !slices.Equal(got, []string{name}) {
			t.Errorf("List = %v", got)
		}
		if _, err := b.Open(ctx, "ab/missing"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open of a missing object: %v, want fs.ErrNotExist", err)
		}
		if n, err := b.Delete(ctx, name); err != nil || n != int64(len(data)) {
			t.Errorf("Delete = %d, %v", n, err)
		}
		if n, err := b.Delete(ctx, name); err != nil || n != 0 {
			t.Errorf("Delete of a missing object = %d, %v", n, err)
		}
		if got := listNames(t, b); len(got) != 0 {
			t.Errorf("List after Delete = %v", got)
		}
	})
}

func TestSweepKeepsYoungFilesAndNeverLeavesItsPrefix(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		clk := newClock()
		own := open(t, "site")
		s, img := storeWithImage(t, own, media.Options{Now: clk.now, SweepGrace: media.DefaultSweepGrace})

		// Objects that are not this store's: beside its prefix (one that
		// shares its first letters), above it, and foreign names inside it.
		valid := func(c string) string { return c + "/" + c + strings.Repeat("7", 30) + "-640.jpg" }
		put := func(b media.Backend, name string) {
			if _, err := b.Put(ctx, name, strings.NewReader("other"), 5, "image/jpeg"); err != nil {
				t.Fatal(err)
			}
		}
		sibling, parent := open(t, "site2"), open(t, "")
		put(sibling, valid("ab"))
		put(parent, valid("cd"))
		foreign := []string{"notes.txt", "ef/.feedd-probe-1", valid("ef") + ".bak"}
		for _, n := range foreign {
			put(own, n)
		}
		keep := img.Variants[0].File
		keepFn := func(f string) bool { return f == keep }

		// Young files stay whatever keep says: another instance may be
		// about to record them.
		if n, _, err := s.Sweep(ctx, keepFn); err != nil || n != 0 {
			t.Fatalf("sweep within the grace period removed %d (%v)", n, err)
		}
		clk.add(media.DefaultSweepGrace + time.Minute)
		n, freed, err := s.Sweep(ctx, keepFn)
		if err != nil {
			t.Fatal(err)
		}
		if n != len(img.Variants)-1 || freed != img.Bytes-img.Variants[0].Bytes {
			t.Errorf("removed %d files, %d bytes; want %d, %d", n, freed, len(img.Variants)-1, img.Bytes-img.Variants[0].Bytes)
		}
		want := append([]string{keep}, foreign...)
		slices.Sort(want)
		if got := listNames(t, own); !slices.Equal(got, want) {
			t.Errorf("own prefix after sweep: %v, want %v", got, want)
		}
		if got := listNames(t, sibling); !slices.Equal(got, []string{valid("ab")}) {
			t.Errorf("sibling prefix after sweep: %v", got)
		}
		if got := listNames(t, parent); !slices.Contains(got, valid("cd")) {
			t.Errorf("parent prefix after sweep: %v, lost %s", got, valid("cd"))
		}
		if s.BytesStored() != img.Variants[0].Bytes {
			t.Errorf("BytesStored = %d, want %d", s.BytesStored(), img.Variants[0].Bytes)
		}
	})
}

func TestPublicURLRedirects(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		b := open(t, "pub")
		s, img := storeWithImage(t, b, media.Options{PublicURL: "https://cdn.example.com/site/"})
		v := img.Variants[0].File
		for _, m := range []string{"GET", "HEAD"} {
			rec := get(t, s.Handler(), m, "/"+v)
			if rec.Code != http.StatusFound || rec.Header().Get("Location") != "https://cdn.example.com/site/"+v {
				t.Errorf("%s = %d to %q, want 302 to the public URL", m, rec.Code, rec.Header().Get("Location"))
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "public, max-age=3600" {
				t.Errorf("%s: Cache-Control %q", m, cc)
			}
		}
		if rec := get(t, s.Handler(), "GET", "/../etc/passwd"); rec.Code != 404 {
			t.Errorf("bad name = %d, want 404 (never redirected)", rec.Code)
		}
	})
}

func TestNewRefusesABadPublicURL(t *testing.T) {
	for _, u := range []string{"ftp://cdn.example.com", "https://user:pw@cdn.example.com", "https://cdn.example.com/?sig=1", "cdn.example.com"} {
		if _, err := media.New(media.Options{Dir: t.TempDir(), PublicURL: u}); err == nil {
			t.Errorf("New accepted PublicURL %q", u)
		}
	}
}

// TestS3ServesLargeObjectsInBoundedMemory puts an object and streams it
// through the handler, and checks that each allocated a fraction of its
// size.
func TestS3ServesLargeObjectsInBoundedMemory(t *testing.T) {
	b, _ := mediatest.Backend(t)
	s, err := media.New(media.Options{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	const size = 16 << 20
	name := "9f/9f" + strings.Repeat("3", 30) + "-1080.jpg"
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := b.Put(context.Background(), name, io.LimitReader(rand.Reader, size), size, "image/jpeg"); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/4 {
		t.Errorf("putting %d MiB allocated %d MiB: the object was buffered", size>>20, alloc>>20)
	}
	srv := httptest.NewServer(http.StripPrefix("/media", s.Handler()))
	t.Cleanup(srv.Close)

	runtime.GC()
	runtime.ReadMemStats(&before)
	resp, err := http.Get(srv.URL + "/media/" + name)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 32<<10))
	resp.Body.Close()
	runtime.ReadMemStats(&after)
	if err != nil || resp.StatusCode != 200 || n != size {
		t.Fatalf("GET = %d, %d bytes, %v", resp.StatusCode, n, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/4 {
		t.Errorf("serving %d MiB allocated %d MiB: the object was buffered", size>>20, alloc>>20)
	}
}

// TestS3UnreachableIsNotA404 cuts the way to the server after start-up: a
// cache in front must not keep a 404 for a file that exists.
func TestS3UnreachableIsNotA404(t *testing.T) {
	o := mediatest.Options(mediatest.Storage(t))
	target, _ := url.Parse("http://" + o.Endpoint)
	proxy := httptest.NewServer(httputil.NewSingleHostReverseProxy(target))
	o.Endpoint, o.Insecure = strings.TrimPrefix(proxy.URL, "http://"), true
	b, err := media.OpenS3(context.Background(), o)
	if err != nil {
		proxy.Close()
		t.Fatal(err)
	}
	s, img := storeWithImage(t, b, media.Options{})
	v := img.Variants[0].File
	if rec := get(t, s.Handler(), "GET", "/"+v); rec.Code != 200 {
		t.Fatalf("GET through the proxy = %d", rec.Code)
	}
	proxy.Close()
	rec := get(t, s.Handler(), "GET", "/"+v)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("GET with the server unreachable = %d (Cache-Control %q), want 503 no-store", rec.Code, rec.Header().Get("Cache-Control"))
	}
}

func TestS3StartUpCheckSaysWhatIsWrong(t *testing.T) {
	good := mediatest.Options(mediatest.Storage(t))
	if good.AccessKeyID == "" {
		t.Skip("the test server takes anonymous requests")
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for name, c := range map[string]struct {
		change func(*media.S3Options)
		want   string
	}{
		"wrong secret": {func(o *media.S3Options) { o.SecretAccessKey = "wrong-Secret-value-42" }, "SignatureDoesNotMatch"},
		"unknown key":  {func(o *media.S3Options) { o.AccessKeyID = "unknown-key-42" }, "InvalidAccessKeyId"},
		"other bucket": {func(o *media.S3Options) { o.Bucket = "feedd-not-allowed" }, `bucket "feedd-not-allowed"`},
		"no server": {func(o *media.S3Options) {
			o.Endpoint, o.ProbeTimeout = strings.TrimPrefix(closed.URL, "http://"), 5*time.Second
		}, "connection refused"},
	} {
		t.Run(name, func(t *testing.T) {
			o := good
			c.change(&o)
			b, err := media.OpenS3(context.Background(), o)
			if err == nil {
				b.Close()
				t.Fatal("OpenS3 succeeded")
			}
			msg := err.Error()
			if !errors.Is(err, media.ErrStorage) || !strings.Contains(msg, c.want) || !strings.Contains(msg, o.Endpoint) {
				t.Errorf("error %q, want ErrStorage naming %q and the endpoint", msg, c.want)
			}
			for _, secret := range []string{o.SecretAccessKey, good.SecretAccessKey} {
				if strings.Contains(msg, secret) {
					t.Errorf("error shows a secret: %q", msg)
				}
			}
		})
	}
}
