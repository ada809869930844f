package media_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/feedd/feedd/internal/media"
)

// A video goes into the backend and is served from it in ranges, on the
// local directory and on the S3-compatible server alike.
func TestStorageStoresAndServesVideos(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		body := make([]byte, 0, 200_000)
		body = binary.BigEndian.AppendUint32(body, 16)
		body = append(body, "ftypisom\x00\x00\x02\x00"...)
		rest := make([]byte, cap(body)-len(body))
		rand.Read(rest)
		body = append(body, rest...)
		src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "video/mp4")
			w.Write(body)
		}))
		t.Cleanup(src.Close)
		u, _ := url.Parse(src.URL)
		hosts, err := media.ParseHosts(u.Host)
		if err != nil {
			t.Fatal(err)
		}
		s, err := media.New(media.Options{Backend: open(t, "media"), Dir: t.TempDir(), Hosts: hosts, AllowPrivate: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })

		m, err := s.FetchVideo(context.Background(), src.URL+"/v.mp4", 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		name := m.Variants[0].File
		if !strings.HasSuffix(name, ".mp4") || m.Bytes != int64(len(body)) || s.BytesStored() != m.Bytes {
			t.Fatalf("stored %+v, %d bytes counted", m, s.BytesStored())
		}
		rec := get(t, s.Handler(), "GET", "/"+name, "Range", "bytes=100000-100099")
		b, _ := io.ReadAll(rec.Body)
		if rec.Code != http.StatusPartialContent || !bytes.Equal(b, body[100000:100100]) || rec.Header().Get("Content-Type") != "video/mp4" {
			t.Fatalf("range of the stored video: %d %v, %d bytes", rec.Code, rec.Header(), len(b))
		}
		if err := s.Remove([]string{name}); err != nil {
			t.Fatal(err)
		}
		if rec := get(t, s.Handler(), "GET", "/"+name); rec.Code != http.StatusNotFound || s.BytesStored() != 0 {
			t.Fatalf("after Remove: %d, %d bytes counted", rec.Code, s.BytesStored())
		}
	})
}
