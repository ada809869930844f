package media

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/feedd/feedd/internal/model"
)

// stored fetches a generated image into a fresh store.
func stored(t *testing.T, o Options, w, h int) (*Store, model.Media) {
	t.Helper()
	src := newSource(t, false, serveBytes(jpegBytes(t, w, h)))
	o.Hosts = []HostPattern{hostOf(t, src.Server)}
	o.AllowPrivate = true
	s := newStore(t, o)
	img, err := s.Fetch(context.Background(), src.URL+"/a.jpg")
	if err != nil {
		t.Fatal(err)
	}
	return s, img
}

func TestRemove(t *testing.T) {
	s, img := stored(t, Options{}, 700, 400)
	outside := filepath.Join(filepath.Dir(localDir(s)), "victim.jpg")
	os.WriteFile(outside, []byte("x"), 0o644)

	err := s.Remove([]string{img.Variants[0].File, img.Variants[0].File, "00/00000000000000000000000000000000-320.jpg", "../victim.jpg", "/etc/passwd"})
	if !errors.Is(err, ErrBadPath) || !strings.Contains(err.Error(), "../victim.jpg") {
		t.Errorf("err = %v, want ErrBadPath naming ../victim.jpg", err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("file outside the dir touched: %v", err)
	}
	files := listFiles(t, localDir(s))
	if slices.Contains(files, img.Variants[0].File) || len(files) != len(img.Variants)-1 {
		t.Errorf("files after Remove = %v", files)
	}
	if want := img.Bytes - img.Variants[0].Bytes; s.BytesStored() != want {
		t.Errorf("BytesStored = %d, want %d", s.BytesStored(), want)
	}
	// Missing files are fine.
	if err := s.Remove([]string{img.Variants[0].File}); err != nil {
		t.Errorf("removing a missing file: %v", err)
	}
}

func TestSweepRemovesOldOrphansAndLocalLeftovers(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	s, img := stored(t, Options{Now: clock, SweepGrace: DefaultSweepGrace}, 700, 400)
	dir := localDir(s)
	write := func(rel string, age time.Duration) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, now.Add(-age), now.Add(-age))
	}
	old := DefaultSweepGrace + time.Minute
	write("ab/.tmp-old", old)
	write("ab/.tmp-fresh", time.Second) // a write may be in progress
	write("README", old)                // not ours: left alone
	write("cd/cd000000000000000000000000000000-320.jpg", old)
	write("ef/ef000000000000000000000000000000-320.jpg", DefaultSweepGrace-time.Minute) // another instance's, not recorded yet
	for _, v := range img.Variants {
		p := filepath.Join(dir, filepath.FromSlash(v.File))
		os.Chtimes(p, now.Add(-old), now.Add(-old))
	}

	keep := img.Variants[1].File
	removed, freed, err := s.Sweep(context.Background(), func(f string) bool { return f == keep })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"README", "ab/.tmp-fresh", "ef/ef000000000000000000000000000000-320.jpg", keep}
	got := listFiles(t, dir)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("after Sweep: %v, want %v", got, want)
	}
	if removed != len(img.Variants)-1+2 {
		t.Errorf("removed = %d, want %d", removed, len(img.Variants)+1)
	}
	if wantFreed := img.Bytes - img.Variants[1].Bytes + 2*int64(len("partial")); freed != wantFreed {
		t.Errorf("freed = %d, want %d", freed, wantFreed)
	}
	wantStored := img.Variants[1].Bytes + int64(len("partial"))
	if s.BytesStored() != wantStored {
		t.Errorf("BytesStored = %d, want %d", s.BytesStored(), wantStored)
	}
	if _, err := os.Stat(filepath.Join(dir, "cd")); !os.IsNotExist(err) {
		t.Errorf("empty shard directory kept: %v", err)
	}
	// A new store counts what is on disk.
	s2 := newStore(t, Options{Dir: dir})
	if s2.BytesStored() != wantStored {
		t.Errorf("reopened BytesStored = %d, want %d", s2.BytesStored(), wantStored)
	}
}

// listCounter is a backend that counts its full listings.
type listCounter struct {
	Backend
	lists int
}

func (l *listCounter) List(ctx context.Context, fn func(ObjectInfo) error) error {
	l.lists++
	return l.Backend.List(ctx, fn)
}

// A store that its caller sweeps at start lists the storage once, in the
// sweep, which counts the stored bytes; otherwise New counts them.
func TestSweptAtStartListsOnce(t *testing.T) {
	s, img := stored(t, Options{}, 300, 200)
	dir := localDir(s)
	for _, swept := range []bool{false, true} {
		local, err := NewLocal(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		lc := &listCounter{Backend: local}
		s2 := newStore(t, Options{Backend: lc, SweptAtStart: swept})
		if _, _, err := s2.Sweep(context.Background(), func(string) bool { return true }); err != nil {
			t.Fatal(err)
		}
		want := 2
		if swept {
			want = 1
		}
		if lc.lists != want || s2.BytesStored() != img.Bytes {
			t.Errorf("SweptAtStart %v: %d listings, %d bytes counted; want %d and %d", swept, lc.lists, s2.BytesStored(), want, img.Bytes)
		}
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, img := stored(t, Options{Registerer: reg}, 500, 500)
	if _, err := s.Fetch(context.Background(), "https://nope.example.test/a.jpg"); err == nil {
		t.Fatal("want an error")
	}
	if got := testutil.ToFloat64(s.downloads.WithLabelValues("ok")); got != 1 {
		t.Errorf("ok downloads = %v, want 1", got)
	}
	if got := testutil.ToFloat64(s.downloads.WithLabelValues("host_not_allowed")); got != 1 {
		t.Errorf("host_not_allowed downloads = %v, want 1", got)
	}
	expect := "# HELP feedd_media_bytes_stored Bytes of stored media files.\n# TYPE feedd_media_bytes_stored gauge\nfeedd_media_bytes_stored " + strconv.FormatInt(img.Bytes, 10) + "\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expect), "feedd_media_bytes_stored"); err != nil {
		t.Error(err)
	}
	s.Remove([]string{img.Variants[0].File})
	expect = strings.Replace(expect, strconv.FormatInt(img.Bytes, 10), strconv.FormatInt(img.Bytes-img.Variants[0].Bytes, 10), 1)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expect), "feedd_media_bytes_stored"); err != nil {
		t.Error(err)
	}
}

func TestHandlerServesStoredFiles(t *testing.T) {
	s, img := stored(t, Options{}, 700, 400)
	v := img.Variants[0]
	srv := httptest.NewServer(http.StripPrefix("/media", s.Handler()))
	t.Cleanup(srv.Close)
	body, _ := os.ReadFile(filepath.Join(localDir(s), v.File))
	hash := v.File[3:35]

	resp, err := http.Get(srv.URL + "/media/" + v.File)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != string(body) {
		t.Fatalf("GET = %d, %d bytes; want 200 with the file", resp.StatusCode, len(got))
	}
	for k, want := range map[string]string{
		"Content-Type":                 "image/jpeg",
		"Content-Length":               strconv.Itoa(len(body)),
		"Cache-Control":                "public, max-age=31536000, immutable",
		"ETag":                         `"` + hash + `"`,
		"X-Content-Type-Options":       "nosniff",
		"Cross-Origin-Resource-Policy": "cross-origin",
		"Accept-Ranges":                "bytes",
	} {
		if h := resp.Header.Get(k); h != want {
			t.Errorf("%s = %q, want %q", k, h, want)
		}
	}

	do := func(method string, hdr map[string]string) (*http.Response, []byte) {
		req, _ := http.NewRequest(method, srv.URL+"/media/"+v.File, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	if resp, b := do("GET", map[string]string{"If-None-Match": `"` + hash + `"`}); resp.StatusCode != 304 || len(b) != 0 {
		t.Errorf("If-None-Match: %d with %d bytes, want 304 empty", resp.StatusCode, len(b))
	}
	if resp, _ := do("GET", map[string]string{"If-None-Match": `"other"`}); resp.StatusCode != 200 {
		t.Errorf("other ETag: %d, want 200", resp.StatusCode)
	}
	if resp, b := do("GET", map[string]string{"Range": "bytes=10-19"}); resp.StatusCode != 206 || string(b) != string(body[10:20]) ||
		resp.Header.Get("Content-Range") != "bytes 10-19/"+strconv.Itoa(len(body)) {
		t.Errorf("Range: %d %q, want 206 with bytes 10-19", resp.StatusCode, resp.Header.Get("Content-Range"))
	}
	if resp, b := do("HEAD", nil); resp.StatusCode != 200 || len(b) != 0 || resp.ContentLength != int64(len(body)) {
		t.Errorf("HEAD: %d, %d bytes, length %d", resp.StatusCode, len(b), resp.ContentLength)
	}
	if resp, _ := do("POST", nil); resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d, Allow %q; want 405", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestHandlerRefusesEverythingElse(t *testing.T) {
	s, img := stored(t, Options{}, 700, 400)
	v := img.Variants[0].File
	// Plant things a traversal would like to reach.
	os.WriteFile(filepath.Join(filepath.Dir(localDir(s)), "secret.jpg"), []byte("secret"), 0o644)
	os.WriteFile(filepath.Join(localDir(s), v[:3]+".tmp-123"), []byte("partial"), 0o644)
	os.WriteFile(filepath.Join(localDir(s), ".hidden"), []byte("x"), 0o644)
	os.Symlink("/etc/passwd", filepath.Join(localDir(s), v[:3]+"0"+v[4:]))

	h := s.Handler()
	for _, path := range []string{
		"", "/", v[:2], v[:3], "/" + v[:2] + "/",
		"../secret.jpg", "/../secret.jpg", "%2e%2e/secret.jpg", "..%2fsecret.jpg", "%2e%2e%2fsecret.jpg",
		"/etc/passwd", "//etc/passwd", v[:2] + `\` + v[3:], v + "%00", v + "\x00", v + "/", v + ".",
		"./" + v, v[:3] + "./" + v[3:], v[:3] + ".tmp-123", ".hidden", strings.ToUpper(v),
		"00/" + v[3:],       // wrong shard for the hash
		v[:3] + "0" + v[4:], // symlink planted under a valid-looking name
		v + "?x=1",
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.URL.Path = path
		if p, err := urlUnescape(path); err == nil {
			req.URL.Path = p
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 404 {
			t.Errorf("GET %q = %d, want 404", path, rec.Code)
		}
		if strings.Contains(rec.Body.String(), "secret") || strings.Contains(rec.Body.String(), "root:") {
			t.Errorf("GET %q leaked content", path)
		}
	}
	// The same attempts over a real connection, raw on the wire.
	srv := httptest.NewServer(http.StripPrefix("/media", h))
	t.Cleanup(srv.Close)
	for _, raw := range []string{"/media/../secret.jpg", "/media/%2e%2e/secret.jpg", "/media/..%2fsecret.jpg", "/media/" + v[:2] + "%5c" + v[3:], "/media/" + v[:2] + "/"} {
		resp, err := http.Get(srv.URL + raw)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || strings.Contains(string(b), "secret") {
			t.Errorf("GET %s = %d %q, want 404", raw, resp.StatusCode, b)
		}
	}
}
