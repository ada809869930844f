package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// mp4Body is n bytes shaped like an MP4 file: an ftyp box of the given
// brand, then an mdat box of counting bytes. Nothing here decodes it.
func mp4Body(n int, brand string) []byte {
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint32(b, 16)
	b = append(b, "ftyp"+brand+"\x00\x00\x02\x00"...)
	b = binary.BigEndian.AppendUint32(b, uint32(n-len(b)))
	b = append(b, "mdat"...)
	for i := len(b); i < n; i++ {
		b = append(b, byte(i*7))
	}
	return b
}

func serveVideo(data []byte, ctype string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		}
		w.Write(data)
	}
}

// videoFiles lists the stored videos and leftover temp files under dir.
func videoFiles(t testing.TB, dir string) []string {
	var out []string
	for _, f := range listFiles(t, dir) {
		if strings.HasSuffix(f, ".mp4") || strings.HasPrefix(filepath.Base(f), tempPrefix) {
			out = append(out, f)
		}
	}
	return out
}

func TestFetchVideoStoresTheFileAndServesRanges(t *testing.T) {
	body := mp4Body(300_000, "isom")
	src := newSource(t, false, serveVideo(body, "video/mp4"))
	dir := t.TempDir()
	s := newStore(t, Options{Dir: dir, Hosts: []HostPattern{hostOf(t, src.Server)}, AllowPrivate: true})

	m, err := s.FetchVideo(context.Background(), src.URL+"/o1/v/t16/clip.mp4"+signed, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Variants) != 1 || m.Bytes != int64(len(body)) || m.Variants[0].Bytes != m.Bytes {
		t.Fatalf("media = %+v, want one variant of %d bytes", m, len(body))
	}
	name := m.Variants[0].File
	if !validName(name) || !strings.HasSuffix(name, ".mp4") {
		t.Fatalf("file %q is not a content-addressed video name", name)
	}
	got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("stored file differs from the source (%v)", err)
	}
	if s.BytesStored() != int64(len(body)) {
		t.Errorf("BytesStored = %d, want %d", s.BytesStored(), len(body))
	}
	if files := videoFiles(t, dir); len(files) != 1 {
		t.Errorf("files left: %v", files)
	}

	srv := httptest.NewServer(http.StripPrefix("/media/", s.Handler()))
	defer srv.Close()
	get := func(rng string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/media/"+name, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	full := get("")
	if full.StatusCode != 200 || full.Header.Get("Content-Type") != "video/mp4" ||
		full.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" || full.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("full answer: %d %v", full.StatusCode, full.Header)
	}

	part := get("bytes=1000-1999")
	b, _ := io.ReadAll(part.Body)
	if part.StatusCode != http.StatusPartialContent || !bytes.Equal(b, body[1000:2000]) ||
		part.Header.Get("Content-Range") != "bytes 1000-1999/"+strconv.Itoa(len(body)) || part.Header.Get("Content-Type") != "video/mp4" {
		t.Fatalf("range answer: %d %v, %d bytes", part.StatusCode, part.Header, len(b))
	}

	tail := get("bytes=-100")
	b, _ = io.ReadAll(tail.Body)
	if tail.StatusCode != http.StatusPartialContent || !bytes.Equal(b, body[len(body)-100:]) {
		t.Fatalf("suffix range: %d, %d bytes", tail.StatusCode, len(b))
	}

	multi := get("bytes=0-3,10-13")
	mt, params, _ := mime.ParseMediaType(multi.Header.Get("Content-Type"))
	if multi.StatusCode != http.StatusPartialContent || mt != "multipart/byteranges" {
		t.Fatalf("multiple ranges: %d %q", multi.StatusCode, mt)
	}
	mr := multipart.NewReader(multi.Body, params["boundary"])
	for _, want := range [][]byte{body[0:4], body[10:14]} {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(p)
		if !bytes.Equal(got, want) || p.Header.Get("Content-Type") != "video/mp4" {
			t.Errorf("part %q (%s), want %q", got, p.Header.Get("Content-Type"), want)
		}
	}

	if bad := get("bytes=400000-"); bad.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("range past the end: %d, want 416", bad.StatusCode)
	}

	if err := s.Remove([]string{name}); err != nil {
		t.Fatal(err)
	}
	if files := videoFiles(t, dir); len(files) != 0 || s.BytesStored() != 0 {
		t.Errorf("after Remove: files %v, %d bytes counted", files, s.BytesStored())
	}
}

func TestFetchVideoRefusesWhatIsNotASmallEnoughMP4(t *testing.T) {
	small := mp4Body(4000, "isom")
	chunked := func(data []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "video/mp4")
			for len(data) > 0 {
				n := min(len(data), 1000)
				w.Write(data[:n])
				w.(http.Flusher).Flush() // no Content-Length: the cap must count
				data = data[n:]
			}
		}
	}
	tests := []struct {
		name string
		h    http.HandlerFunc
		max  int64
		want error
	}{
		{"announced larger than the cap", serveVideo(small, "video/mp4"), 3999, ErrTooLarge},
		{"larger than the cap, length unannounced", chunked(small), 3999, ErrTooLarge},
		{"a web page", serveVideo([]byte("<!doctype html><p>hello</p>"), "text/html"), 1 << 20, ErrNotVideo},
		{"octet-stream that is no MP4", serveVideo(bytes.Repeat([]byte{0xff, 0xd8}, 500), "application/octet-stream"), 1 << 20, ErrNotVideo},
		{"a HEIC picture", serveVideo(mp4Body(4000, "heic"), ""), 1 << 20, ErrNotVideo},
		{"MP4 bytes announced as an image", serveVideo(small, "image/jpeg"), 1 << 20, ErrNotVideo},
		{"too short to tell", serveVideo([]byte("\x00\x00"), "video/mp4"), 1 << 20, ErrNotVideo},
		{"expired signed URL", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "URL signature expired", 403) }, 1 << 20, ErrUpstream},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newSource(t, false, tt.h)
			dir := t.TempDir()
			s := newStore(t, Options{Dir: dir, Hosts: []HostPattern{hostOf(t, src.Server)}, AllowPrivate: true})
			_, err := s.FetchVideo(context.Background(), src.URL+"/v.mp4"+signed, tt.max)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), "SIGNATURE_SECRET") {
				t.Errorf("error shows the signed query: %v", err)
			}
			if files := videoFiles(t, dir); len(files) != 0 || s.BytesStored() != 0 {
				t.Errorf("left behind: %v, %d bytes counted", files, s.BytesStored())
			}
			if n := testutil.ToFloat64(s.downloads.WithLabelValues(outcome(tt.want))); n != 1 {
				t.Errorf("feedd_media_downloads_total{outcome=%q} = %v, want 1", outcome(tt.want), n)
			}
		})
	}
}

func TestFetchVideoRefusesPrivateAddressesAndOtherHosts(t *testing.T) {
	src := newSource(t, true, serveVideo(mp4Body(4000, "isom"), "video/mp4"))
	port := strconv.Itoa(int(addrOf(t, src.Server).Port()))
	for _, tt := range []struct {
		hosts, url string
		want       error
	}{
		{"127.0.0.1:" + port, "https://127.0.0.1:" + port + "/v.mp4", ErrPrivateAddress},
		{"169.254.169.254:" + port, "https://169.254.169.254:" + port + "/latest/meta-data", ErrPrivateAddress},
		{"*.cdninstagram.com", "https://127.0.0.1:" + port + "/v.mp4", ErrHostNotAllowed},
		{"*.cdninstagram.com", "http://video.cdninstagram.com/v.mp4", ErrBadURL},
	} {
		t.Run(tt.url, func(t *testing.T) {
			dir := t.TempDir()
			s := newStore(t, Options{Dir: dir, Hosts: mustHosts(t, tt.hosts), Resolver: inetAton, Timeout: 5 * time.Second})
			trustTLS(s, src.Server)
			before := src.hits.Load()
			_, err := s.FetchVideo(context.Background(), tt.url+signed, 1<<20)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if n := src.hits.Load() - before; n != 0 {
				t.Errorf("source contacted %d times", n)
			}
			if files := videoFiles(t, dir); len(files) != 0 {
				t.Errorf("files written: %v", files)
			}
		})
	}
}

func TestFetchVideoStreamsInsteadOfHolding(t *testing.T) {
	const size = 24 << 20
	src := newSource(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "video/mp4")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		head := mp4Body(64<<10, "mp42")
		w.Write(head)
		chunk := make([]byte, 64<<10)
		for n := len(head); n < size; n += len(chunk) {
			w.Write(chunk)
		}
	})
	dir := t.TempDir()
	s := newStore(t, Options{Dir: dir, Hosts: []HostPattern{hostOf(t, src.Server)}, AllowPrivate: true})
	var before, after runtimeMem
	before.read()
	start := time.Now()
	m, err := s.FetchVideo(context.Background(), src.URL+"/big.mp4", size)
	took := time.Since(start)
	after.read()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a %d MiB video stored in %v, %d KiB allocated by the whole process meanwhile", size>>20, took.Round(time.Millisecond), (after.total-before.total)>>10)
	if m.Bytes != size {
		t.Fatalf("stored %d bytes, want %d", m.Bytes, size)
	}
	// Allocations of the whole process (the test server's included): a
	// download held in memory would allocate at least its size.
	if d := after.total - before.total; d > size/4 {
		t.Errorf("allocated %d bytes storing a %d-byte video", d, size)
	}
}
