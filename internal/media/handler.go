package media

import (
	"net/http"
	"strings"
	"time"
)

// Handler serves stored files for GET and HEAD; mount it with the "/media/"
// prefix stripped. Only names of the exact content-addressed shape are
// opened, through an os.Root, so nothing outside Dir, no directory and no
// temp file can be served. Responses are immutable: the name is the hash.
func (s *Store) Handler() http.Handler {
	return http.HandlerFunc(s.serve)
}

func (s *Store) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// The decoded path must be the name exactly: "..", "%2e%2e", "\\", NUL,
	// absolute paths and anything else fail the pattern.
	name := strings.TrimPrefix(r.URL.Path, "/")
	if !validName(name) {
		http.NotFound(w, r)
		return
	}
	f, err := s.root.Open(name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	h.Set("Content-Type", "image/jpeg")
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	h.Set("ETag", `"`+name[3:35]+`"`)
	// ServeContent answers If-None-Match with 304, Range with 206, HEAD
	// without a body, and sets Content-Length.
	http.ServeContent(w, r, "", time.Time{}, f)
}
