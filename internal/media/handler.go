package media

import (
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Handler serves stored files for GET and HEAD; mount it with the "/media/"
// prefix stripped. Only names of the exact content-addressed shape reach
// the backend, so nothing outside its directory or prefix, no directory and
// no temp file can be served. Responses are immutable: the name is the
// hash. With Options.PublicURL, the handler redirects instead.
func (s *Store) Handler() http.Handler {
	return http.HandlerFunc(s.serve)
}

// redirectMaxAge is how long a browser may reuse a redirect to the public
// URL: the image behind it is immutable, but where it is public may move.
const redirectMaxAge = "public, max-age=3600"

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
	if s.public != "" {
		// 302, not 301: a permanent redirect is kept by browsers and
		// caches for good, and would outlive a change of FEEDD_MEDIA_PUBLIC_URL.
		h.Set("Cache-Control", redirectMaxAge)
		http.Redirect(w, r, s.public+"/"+name, http.StatusFound)
		return
	}
	obj, err := s.backend.Open(r.Context(), name)
	if errors.Is(err, fs.ErrNotExist) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		// Not a 404: a cache in front would keep that for a file that exists.
		s.log.Warn("media unavailable", slog.String("file", name), slog.Any("error", err))
		h.Set("Cache-Control", "no-store")
		http.Error(w, "media storage unavailable", http.StatusServiceUnavailable)
		return
	}
	defer obj.Close()
	h.Set("Content-Type", contentType(name))
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	h.Set("ETag", `"`+name[3:35]+`"`)
	// ServeContent answers If-None-Match with 304, Range with 206, HEAD
	// without a body, and sets Content-Length; it streams, seeking to the
	// range it sends.
	http.ServeContent(w, r, "", time.Time{}, obj)
}
