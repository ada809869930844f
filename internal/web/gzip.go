package web

import (
	"bufio"
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/labstack/echo/v5"
)

// gzipMinSize: smaller bodies are not worth the gzip header and CPU.
const gzipMinSize = 1024

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression)
	return w
}}

// Gzip compresses responses where it pays: compressible content types,
// bodies over 1 KiB, and only when the handler has not already set a
// Content-Encoding (precompressed bytes) — images and other compressed
// formats pass through untouched. The setup and admin groups use it;
// public handlers that benefit may add it to their routes.
func Gzip(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		r := c.Request()
		if r.Method == http.MethodHead || !AcceptsGzip(r.Header["Accept-Encoding"]) {
			return next(c)
		}
		orig := c.Response()
		gw := &gzipResponseWriter{ResponseWriter: orig}
		c.SetResponse(gw)
		defer func() {
			gw.finish()
			c.SetResponse(orig)
		}()
		return next(c)
	}
}

// AcceptsGzip reports whether Accept-Encoding allows gzip (gzip, x-gzip or
// "*", not refused with q=0).
func AcceptsGzip(acceptEncoding []string) bool {
	star, gzip := false, false
	for _, line := range acceptEncoding {
		for line != "" {
			var elem string
			if i := strings.IndexByte(line, ','); i >= 0 {
				elem, line = line[:i], line[i+1:]
			} else {
				elem, line = line, ""
			}
			name, params, _ := strings.Cut(elem, ";")
			name = strings.TrimSpace(name)
			ok := !qZero(params)
			switch {
			case strings.EqualFold(name, "gzip"), strings.EqualFold(name, "x-gzip"):
				if !ok {
					return false
				}
				gzip = true
			case name == "*":
				star = ok
			}
		}
	}
	return gzip || star
}

// qZero reports whether coding parameters carry q=0 (q=0, 0.0, 0.000 ...).
func qZero(params string) bool {
	for params != "" {
		var p string
		if i := strings.IndexByte(params, ';'); i >= 0 {
			p, params = params[:i], params[i+1:]
		} else {
			p, params = params, ""
		}
		p = strings.TrimSpace(p)
		if len(p) < 2 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=' {
			continue
		}
		v := strings.TrimSpace(p[2:])
		if v == "" || v[0] != '0' {
			return false
		}
		for _, ch := range v[1:] {
			if ch != '.' && ch != '0' {
				return false
			}
		}
		return true
	}
	return false
}

// compressible content types (by prefix).
func compressible(ct string) bool {
	ct = strings.ToLower(ct)
	for _, p := range []string{"text/", "application/json", "application/javascript", "application/xml",
		"image/svg+xml", "application/problem+json", "application/manifest+json"} {
		if strings.HasPrefix(ct, p) {
			return true
		}
	}
	return false
}

// gzipResponseWriter decides at the first write whether to compress.
type gzipResponseWriter struct {
	http.ResponseWriter
	status  int
	decided bool
	gz      *gzip.Writer
	buf     []byte // held until gzipMinSize is known to be reached
}

func (w *gzipResponseWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	h := w.Header()
	if code < 200 || code == http.StatusNoContent || code == http.StatusNotModified ||
		h.Get("Content-Encoding") != "" || !compressible(h.Get("Content-Type")) {
		w.passThrough()
		return
	}
	if cl := h.Get("Content-Length"); cl != "" && len(cl) < 4 { // < 1000 bytes
		w.passThrough()
		return
	}
}

func (w *gzipResponseWriter) passThrough() {
	if w.decided {
		return
	}
	w.decided = true
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.ResponseWriter.WriteHeader(w.status)
}

func (w *gzipResponseWriter) startGzip() {
	w.decided = true
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Encoding", "gzip")
	h.Add("Vary", "Accept-Encoding")
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.ResponseWriter.WriteHeader(w.status)
	w.gz = gzipWriters.Get().(*gzip.Writer)
	w.gz.Reset(w.ResponseWriter)
}

func (w *gzipResponseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", http.DetectContentType(b))
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.decided {
		if w.gz != nil {
			return w.gz.Write(b)
		}
		return w.ResponseWriter.Write(b)
	}
	w.buf = append(w.buf, b...)
	if len(w.buf) >= gzipMinSize {
		w.startGzip()
		buf := w.buf
		w.buf = nil
		if _, err := w.gz.Write(buf); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// finish flushes a short body uncompressed or closes the gzip stream.
func (w *gzipResponseWriter) finish() {
	if !w.decided {
		if w.status == 0 && len(w.buf) == 0 {
			return // nothing written: let the error handler answer
		}
		w.passThrough()
		if len(w.buf) > 0 {
			_, _ = w.ResponseWriter.Write(w.buf)
		}
		return
	}
	if w.gz != nil {
		_ = w.gz.Close()
		w.gz.Reset(io.Discard)
		gzipWriters.Put(w.gz)
		w.gz = nil
	}
}

func (w *gzipResponseWriter) Flush() {
	if !w.decided {
		w.startGzip()
		if len(w.buf) > 0 {
			_, _ = w.gz.Write(w.buf)
			w.buf = nil
		}
	}
	if w.gz != nil {
		_ = w.gz.Flush()
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *gzipResponseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *gzipResponseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
