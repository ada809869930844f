package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/color"
	"image/jpeg"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
)

// A signed query as the CDN gives it; it must never appear in an error.
const signed = "?oh=SIGNATURE_SECRET&oe=6A1B2C3D"

func TestFetchStoresEveryWidthSmallestFirst(t *testing.T) {
	src := newSource(t, false, serveBytes(jpegBytes(t, 1440, 1800)))
	s := newStore(t, Options{Hosts: []HostPattern{hostOf(t, src.Server)}, AllowPrivate: true})

	img, err := s.Fetch(context.Background(), src.URL+"/v/t51/p.jpg"+signed)
	if err != nil {
		t.Fatal(err)
	}
	if img.Width != 1440 || img.Height != 1800 {
		t.Errorf("size = %dx%d, want 1440x1800", img.Width, img.Height)
	}
	want := [][2]int{{320, 400}, {640, 800}, {1080, 1350}}
	if len(img.Variants) != len(want) {
		t.Fatalf("variants = %+v, want widths 320, 640, 1080", img.Variants)
	}
	var total int64
	for i, v := range img.Variants {
		if v.Width != want[i][0] || v.Height != want[i][1] {
			t.Errorf("variant %d = %dx%d, want %dx%d", i, v.Width, v.Height, want[i][0], want[i][1])
		}
		if !validName(v.File) {
			t.Errorf("variant %d file %q is not content-addressed", i, v.File)
		}
		fi, err := os.Stat(filepath.Join(localDir(s), v.File))
		if err != nil || fi.Size() != v.Bytes {
			t.Errorf("variant %d file: %v, size %v want %d", i, err, fi, v.Bytes)
		}
		got := decodeFile(t, localDir(s), v.File).Bounds()
		if got.Dx() != v.Width || got.Dy() != v.Height {
			t.Errorf("variant %d decodes as %v, want %dx%d", i, got, v.Width, v.Height)
		}
		total += v.Bytes
	}
	if img.Bytes != total || s.BytesStored() != total {
		t.Errorf("Bytes = %d, BytesStored = %d, want %d", img.Bytes, s.BytesStored(), total)
	}
	if len(img.Color) != 7 || img.Color[0] != '#' {
		t.Errorf("Color = %q, want #rrggbb", img.Color)
	}
}

func TestFetchNeverUpscalesAndKeepsAspect(t *testing.T) {
	tests := []struct {
		name string
		w, h int
		want [][2]int
	}{
		{"narrower than the smallest width: kept as is", 200, 100, [][2]int{{200, 100}}},
		{"between widths: own width is the largest", 800, 450, [][2]int{{320, 180}, {640, 360}, {800, 450}}},
		{"exactly the largest width", 1080, 1080, [][2]int{{320, 320}, {640, 640}, {1080, 1080}}},
		{"wider than the largest", 3000, 1000, [][2]int{{320, 107}, {640, 213}, {1080, 360}}},
		{"tall and thin", 330, 3300, [][2]int{{320, 3200}, {330, 3300}}},
		{"one pixel", 1, 1, [][2]int{{1, 1}}},
		{"very wide: height never zero", 4000, 2, [][2]int{{320, 1}, {640, 1}, {1080, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := process(jpegBytes(t, tt.w, tt.h), testLimits())
			if err != nil {
				t.Fatal(err)
			}
			var got [][2]int
			for _, v := range p.variants {
				got = append(got, [2]int{v.width, v.height})
				img, err := jpeg.Decode(bytes.NewReader(v.data))
				if err != nil || img.Bounds().Dx() != v.width || img.Bounds().Dy() != v.height {
					t.Errorf("variant %dx%d decodes as %v, %v", v.width, v.height, img.Bounds(), err)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("variants = %v, want %v", got, tt.want)
			}
		})
	}
}

func testLimits() limits {
	return limits{maxPixels: DefaultMaxPixels, maxSide: DefaultMaxSide, widths: DefaultWidths, quality: DefaultQuality}
}

func TestProcessAcceptsEverySupportedFormat(t *testing.T) {
	webpData, err := os.ReadFile("testdata/blue-purple-pink.lossy.webp")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
		w, h int
	}{
		{"jpeg", jpegBytes(t, 500, 400), 500, 400},
		{"png", pngBytes(t, gradient(300, 200)), 300, 200},
		{"gif first frame", gifBytes(t, 40, 30), 40, 30},
		{"webp", webpData, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := process(tt.data, testLimits())
			if err != nil {
				t.Fatal(err)
			}
			if tt.w != 0 && (p.width != tt.w || p.height != tt.h) {
				t.Errorf("size %dx%d, want %dx%d", p.width, p.height, tt.w, tt.h)
			}
			if len(p.variants) == 0 {
				t.Fatal("no variants")
			}
		})
	}
}

func TestProcessDominantColour(t *testing.T) {
	// A GIF whose first frame is green and second white: the first frame counts.
	p, err := process(gifBytes(t, 40, 30), testLimits())
	if err != nil {
		t.Fatal(err)
	}
	if p.color != "#108020" {
		t.Errorf("color = %s, want #108020 (the first frame's green)", p.color)
	}
	// Fully transparent PNG: flattened on white, not black.
	clear := gradient(50, 50)
	for i := 3; i < len(clear.Pix); i += 4 {
		clear.Pix[i-3], clear.Pix[i-2], clear.Pix[i-1], clear.Pix[i] = 0, 0, 0, 0
	}
	p, err = process(pngBytes(t, clear), testLimits())
	if err != nil {
		t.Fatal(err)
	}
	if p.color < "#f0f0f0" {
		t.Errorf("transparent image color = %s, want white", p.color)
	}
	// Mostly red with a blue stripe: red dominates.
	img := gradient(100, 100)
	for y := range 100 {
		for x := range 100 {
			c := color.RGBA{0xd0, 0x10, 0x10, 0xff}
			if x < 20 {
				c = color.RGBA{0x10, 0x10, 0xd0, 0xff}
			}
			img.SetRGBA(x, y, c)
		}
	}
	p, err = process(pngBytes(t, img), testLimits())
	if err != nil {
		t.Fatal(err)
	}
	if p.color[:3] < "#c0" || p.color[5:] > "20" {
		t.Errorf("color = %s, want the dominant red", p.color)
	}
}

func TestProcessRefusesBadImages(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"text", []byte("<html>signature expired</html>")},
		{"random", bytes.Repeat([]byte{0x13, 0x77, 0xa0}, 100)},
		{"truncated jpeg", jpegBytes(t, 64, 64)[:200]},
		{"png header only", pngBomb(10, 10)},
		{"png zero size", pngBomb(0, 10)},
		{"png bomb", pngBomb(50000, 50000)},
		{"png tall", pngBomb(10, 13000)},
		{"jpeg bomb", jpegBomb(t, 50000, 50000)},
		{"svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`)},
		{"bmp", append([]byte("BM"), make([]byte, 60)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := process(tt.data, testLimits())
			if !errors.Is(err, ErrBadImage) {
				t.Errorf("err = %v, want ErrBadImage", err)
			}
		})
	}
}

func TestProcessRefusesBombBeforeAllocating(t *testing.T) {
	for name, data := range map[string][]byte{"png": pngBomb(50000, 50000), "jpeg": jpegBomb(t, 50000, 50000)} {
		var before, after runtimeMem
		before.read()
		_, err := process(data, testLimits())
		after.read()
		if !errors.Is(err, ErrBadImage) || !strings.Contains(err.Error(), "50000x50000") {
			t.Errorf("%s: err = %v, want ErrBadImage naming 50000x50000", name, err)
		}
		if d := after.total - before.total; d > 1<<20 {
			t.Errorf("%s: allocated %d bytes refusing a bomb", name, d)
		}
	}
}

func TestFetchRefusesUnsafeURLs(t *testing.T) {
	src := newSource(t, false, serveBytes(jpegBytes(t, 50, 50)))
	local := hostOf(t, src.Server)
	tests := []struct {
		name string
		opts Options
		url  string
		want error
	}{
		{"host not in the list", Options{Hosts: mustHosts(t, "*.cdninstagram.com"), AllowPrivate: true}, src.URL + "/a.jpg", ErrHostNotAllowed},
		{"suffix trick", Options{Hosts: mustHosts(t, "*.cdninstagram.com")}, "https://cdninstagram.com.evil.test/a.jpg", ErrHostNotAllowed},
		{"right host, other port", Options{Hosts: mustHosts(t, "*.cdninstagram.com")}, "https://x.cdninstagram.com:8443/a.jpg", ErrHostNotAllowed},
		{"plain http without AllowPrivate", Options{Hosts: []HostPattern{local}}, src.URL + "/a.jpg", ErrBadURL},
		{"userinfo", Options{Hosts: []HostPattern{local}, AllowPrivate: true}, strings.Replace(src.URL, "://", "://u:p@", 1) + "/a.jpg", ErrBadURL},
		{"file scheme", Options{Hosts: []HostPattern{local}, AllowPrivate: true}, "file:///etc/passwd", ErrBadURL},
		{"no host", Options{Hosts: []HostPattern{local}, AllowPrivate: true}, "https:///a.jpg", ErrBadURL},
		{"unparsable", Options{Hosts: []HostPattern{local}, AllowPrivate: true}, "https://x.cdninstagram.com/%zz" + signed, ErrBadURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, tt.opts)
			_, err := s.Fetch(context.Background(), tt.url+signed)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "SIGNATURE_SECRET") {
				t.Errorf("error leaks the signed query: %v", err)
			}
		})
	}
	if n := src.hits.Load(); n != 0 {
		t.Errorf("source was contacted %d times", n)
	}
}

func mustHosts(t testing.TB, s string) []HostPattern {
	t.Helper()
	p, err := ParseHosts(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFetchRefusesPrivateAddresses(t *testing.T) {
	src := newSource(t, true, serveBytes(jpegBytes(t, 50, 50)))
	port := addrOf(t, src.Server).Port()
	resolveTo := func(addrs ...string) Resolver {
		return func(ctx context.Context, host string) ([]netip.Addr, error) {
			var out []netip.Addr
			for _, a := range addrs {
				out = append(out, netip.MustParseAddr(a))
			}
			return out, nil
		}
	}
	tests := []struct {
		name     string
		hosts    string
		url      string
		resolver Resolver
	}{
		{"IPv4 loopback literal", fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("https://127.0.0.1:%d/a.jpg", port), nil},
		{"name resolving to loopback", fmt.Sprintf("cdn.example.test:%d", port), fmt.Sprintf("https://cdn.example.test:%d/a.jpg", port), resolveTo("127.0.0.1")},
		{"name resolving to IPv4-mapped loopback", fmt.Sprintf("cdn.example.test:%d", port), fmt.Sprintf("https://cdn.example.test:%d/a.jpg", port), resolveTo("::ffff:127.0.0.1")},
		{"name resolving to private and metadata", fmt.Sprintf("cdn.example.test:%d", port), fmt.Sprintf("https://cdn.example.test:%d/a.jpg", port), resolveTo("10.0.0.7", "169.254.169.254")},
		{"localhost through the system resolver", fmt.Sprintf("localhost:%d", port), fmt.Sprintf("https://localhost:%d/a.jpg", port), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, Options{Hosts: mustHosts(t, tt.hosts), Resolver: tt.resolver})
			trustTLS(s, src.Server)
			_, err := s.Fetch(context.Background(), tt.url+signed)
			if !errors.Is(err, ErrPrivateAddress) {
				t.Errorf("err = %v, want ErrPrivateAddress", err)
			}
			if err != nil && strings.Contains(err.Error(), "SIGNATURE_SECRET") {
				t.Errorf("error leaks the signed query: %v", err)
			}
		})
	}
	if n := src.hits.Load(); n != 0 {
		t.Errorf("loopback source was contacted %d times", n)
	}
}

func TestFetchRedirects(t *testing.T) {
	img := jpegBytes(t, 50, 50)
	target := newSource(t, true, serveBytes(img))
	var redirectTo string
	hop := newSource(t, true, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, redirectTo, http.StatusFound)
	})
	// The first hop is trusted by address, so what is tested is the
	// refusal of the second hop with AllowPrivate off.
	newRedirectStore := func(t *testing.T, hosts string) *Store {
		s := newStore(t, Options{Hosts: mustHosts(t, hosts)})
		trustTLS(s, hop.Server)
		s.dial.trusted = map[netip.AddrPort]bool{addrOf(t, hop.Server): true}
		return s
	}
	hopHost, targetHost := hostOf(t, hop.Server).String(), hostOf(t, target.Server).String()

	t.Run("to a host not in the list", func(t *testing.T) {
		redirectTo = "https://evil.example.test/steal.jpg" + signed
		s := newRedirectStore(t, hopHost)
		_, err := s.Fetch(context.Background(), hop.URL+"/a.jpg"+signed)
		if !errors.Is(err, ErrHostNotAllowed) {
			t.Errorf("err = %v, want ErrHostNotAllowed", err)
		}
		if err != nil && strings.Contains(err.Error(), "SIGNATURE_SECRET") {
			t.Errorf("error leaks the signed query: %v", err)
		}
	})
	t.Run("to loopback on an allowed host", func(t *testing.T) {
		redirectTo = target.URL + "/a.jpg" + signed
		s := newRedirectStore(t, hopHost+","+targetHost)
		_, err := s.Fetch(context.Background(), hop.URL+"/a.jpg"+signed)
		if !errors.Is(err, ErrPrivateAddress) {
			t.Errorf("err = %v, want ErrPrivateAddress", err)
		}
		if n := target.hits.Load(); n != 0 {
			t.Errorf("loopback target contacted %d times", n)
		}
	})
	t.Run("to plain http", func(t *testing.T) {
		redirectTo = "http://" + hop.Listener.Addr().String() + "/a.jpg"
		s := newRedirectStore(t, hopHost)
		_, err := s.Fetch(context.Background(), hop.URL+"/a.jpg")
		if !errors.Is(err, ErrBadURL) {
			t.Errorf("err = %v, want ErrBadURL", err)
		}
	})
	t.Run("allowed redirect is followed", func(t *testing.T) {
		redirectTo = target.URL + "/a.jpg"
		s := newRedirectStore(t, hopHost+","+targetHost)
		s.dial.trusted[addrOf(t, target.Server)] = true
		if _, err := s.Fetch(context.Background(), hop.URL+"/a.jpg"); err != nil {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("too many redirects", func(t *testing.T) {
		redirectTo = hop.URL + "/again"
		s := newRedirectStore(t, hopHost)
		before := hop.hits.Load()
		_, err := s.Fetch(context.Background(), hop.URL+"/a.jpg")
		if !errors.Is(err, ErrUpstream) {
			t.Errorf("err = %v, want ErrUpstream", err)
		}
		if n := hop.hits.Load() - before; n != maxRedirects+1 {
			t.Errorf("%d requests, want %d", n, maxRedirects+1)
		}
	})
}

func TestFetchSizeLimits(t *testing.T) {
	big := jpegBytes(t, 400, 400)
	limit := int64(len(big) - 1)
	tests := []struct {
		name string
		h    http.HandlerFunc
	}{
		{"announced by Content-Length", serveBytes(big)},
		{"streamed without a length", func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < len(big); i += 512 {
				w.Write(big[i:min(i+512, len(big))])
				w.(http.Flusher).Flush()
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newSource(t, false, tt.h)
			s := newStore(t, Options{Hosts: []HostPattern{hostOf(t, src.Server)}, AllowPrivate: true, MaxBytes: limit})
			_, err := s.Fetch(context.Background(), src.URL+"/a.jpg")
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("err = %v, want ErrTooLarge", err)
			}
			if files := listFiles(t, localDir(s)); len(files) != 0 {
				t.Errorf("files written: %v", files)
			}
		})
	}
	t.Run("exactly at the limit", func(t *testing.T) {
		src := newSource(t, false, serveBytes(big))
		s := newStore(t, Options{Hosts: []HostPattern{hostOf(t, src.Server)}, AllowPrivate: true, MaxBytes: int64(len(big))})
		if _, err := s.Fetch(context.Background(), src.URL+"/a.jpg"); err != nil {
			t.Errorf("err = %v", err)
		}
	})
}

func TestFetchUpstreamErrors(t *testing.T) {
	src := newSource(t, false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/expired.jpg":
			http.Error(w, "URL signature expired", http.StatusForbidden)
		case "/html.jpg":
			io.WriteString(w, "<!doctype html><p>hello</p>")
		default:
			http.NotFound(w, r)
		}
	})
	s := newStore(t, Options{Hosts: []HostPattern{hostOf(t, src.Server)}, AllowPrivate: true})
	_, err := s.Fetch(context.Background(), src.URL+"/expired.jpg"+signed)
	var ue *UpstreamError
	if !errors.Is(err, ErrUpstream) || !errors.As(err, &ue) || ue.Status != 403 {
		t.Errorf("err = %v, want UpstreamError 403", err)
	}
	if err == nil || strings.Contains(err.Error(), "SIGNATURE_SECRET") || !strings.Contains(err.Error(), "/expired.jpg") {
		t.Errorf("error %v should name the path, not the query", err)
	}
	if _, err := s.Fetch(context.Background(), src.URL+"/html.jpg"); !errors.Is(err, ErrBadImage) {
		t.Errorf("html body: err = %v, want ErrBadImage", err)
	}
}

func TestFetchTimesOut(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	src := newSource(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5000")
		w.Write([]byte("\xff\xd8\xff"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	s := newStore(t, Options{Hosts: []HostPattern{hostOf(t, src.Server)}, AllowPrivate: true, Timeout: 50 * time.Millisecond})
	_, err := s.Fetch(context.Background(), src.URL+"/slow.jpg")
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("err = %v, want ErrTimeout", err)
	}

	// A caller's cancellation is not a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Fetch(ctx, src.URL+"/slow.jpg"); !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Errorf("cancelled: err = %v, want context.Canceled", err)
	}
}

func TestFetchIsContentAddressed(t *testing.T) {
	data := jpegBytes(t, 700, 500)
	src := newSource(t, false, serveBytes(data))
	s := newStore(t, Options{Hosts: []HostPattern{hostOf(t, src.Server)}, AllowPrivate: true})
	first, err := s.Fetch(context.Background(), src.URL+"/a.jpg")
	if err != nil {
		t.Fatal(err)
	}
	stored := s.BytesStored()
	old := time.Now().Add(-2 * DefaultSweepGrace).Truncate(time.Second)
	before := map[string]os.FileInfo{}
	for _, v := range first.Variants {
		p := filepath.Join(localDir(s), v.File)
		os.Chtimes(p, old, old)
		before[v.File], _ = os.Stat(p)
	}
	// Same bytes under another URL: same files, not written again, but
	// renewed, so that a sweep's grace period covers the new reference.
	second, err := s.Fetch(context.Background(), src.URL+"/b.jpg?other=1")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(first) != fmt.Sprint(second) {
		t.Errorf("second fetch %+v differs from first %+v", second, first)
	}
	for _, v := range second.Variants {
		fi, _ := os.Stat(filepath.Join(localDir(s), v.File))
		if !os.SameFile(fi, before[v.File]) {
			t.Errorf("%s rewritten", v.File)
		}
		if !fi.ModTime().After(old) {
			t.Errorf("%s not renewed: modified %v", v.File, fi.ModTime())
		}
	}
	if s.BytesStored() != stored {
		t.Errorf("BytesStored = %d after a duplicate, want %d", s.BytesStored(), stored)
	}
	if n := len(listFiles(t, localDir(s))); n != len(first.Variants) {
		t.Errorf("%d files on disk, want %d", n, len(first.Variants))
	}
	// A fresh store in another directory names the same bytes the same way.
	s2 := newStore(t, Options{Hosts: []HostPattern{hostOf(t, src.Server)}, AllowPrivate: true})
	third, err := s2.Fetch(context.Background(), src.URL+"/a.jpg")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(first.Variants) != fmt.Sprint(third.Variants) {
		t.Errorf("names differ between stores: %v vs %v", first.Variants, third.Variants)
	}
}

func TestFetchLeavesNoPartialFiles(t *testing.T) {
	src := newSource(t, false, serveBytes(jpegBytes(t, 700, 500)))
	s := newStore(t, Options{Hosts: []HostPattern{hostOf(t, src.Server)}, AllowPrivate: true})
	calls := 0
	s.backend.(*Local).rename = func(old, new string) error {
		calls++
		if calls == 2 {
			return errors.New("disk full")
		}
		return os.Rename(old, new)
	}
	if _, err := s.Fetch(context.Background(), src.URL+"/a.jpg"); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v, want the write error", err)
	}
	files := listFiles(t, localDir(s))
	if hasTemp(files) {
		t.Errorf("temp file left behind: %v", files)
	}
	for _, f := range files {
		if !validName(f) {
			t.Errorf("unexpected file %s", f)
		}
		decodeFile(t, localDir(s), f) // every visible file is complete
	}
}

func TestNewValidatesOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no dir":      {},
		"zero width":  {Dir: t.TempDir(), Widths: []int{0, 320}},
		"huge width":  {Dir: t.TempDir(), Widths: []int{20000}},
		"bad quality": {Dir: t.TempDir(), Quality: 101},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
}

func TestConcurrentFetchesOfOneImageCountBytesOnce(t *testing.T) {
	src := newSource(t, false, serveBytes(jpegBytes(t, 700, 500)))
	s := newStore(t, Options{Hosts: []HostPattern{hostOf(t, src.Server)}, AllowPrivate: true})
	const n = 6
	imgs := make([]model.Media, n)
	errs := make([]error, n)
	done := make(chan int)
	for i := range n {
		go func() {
			imgs[i], errs[i] = s.Fetch(context.Background(), fmt.Sprintf("%s/%d.jpg", src.URL, i))
			done <- i
		}()
	}
	for range n {
		<-done
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		if fmt.Sprint(imgs[i]) != fmt.Sprint(imgs[0]) {
			t.Errorf("fetch %d stored %+v, fetch 0 %+v", i, imgs[i], imgs[0])
		}
	}
	files := listFiles(t, localDir(s))
	if len(files) != len(imgs[0].Variants) || hasTemp(files) {
		t.Errorf("files = %v", files)
	}
	if s.BytesStored() != imgs[0].Bytes {
		t.Errorf("BytesStored = %d, want %d", s.BytesStored(), imgs[0].Bytes)
	}
}
