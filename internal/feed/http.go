package feed

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/cache"
	"github.com/feedd/feedd/internal/httperr"
)

// Source gives the handler ready-to-send feed entries; *Service is one.
// Entry returns an error satisfying errors.Is(err, ErrNotFound) for an
// unknown feed; the entry's Meta is built by NewEntry.
type Source interface {
	Entry(ctx context.Context, id string, q Query) (*cache.Entry, error)
}

// Handler serves GET /api/v1/feeds/:id from cached bytes.
type Handler struct {
	src Source
}

// NewHandler returns the feed JSON handler over src.
func NewHandler(src Source) *Handler { return &Handler{src: src} }

// Register mounts the feed routes on g (the server's public group).
func (h *Handler) Register(g *echo.Group) {
	g.GET("/api/v1/feeds/:id", h.Get)
	g.HEAD("/api/v1/feeds/:id", h.Get)
	g.OPTIONS("/api/v1/feeds/:id", h.Preflight)
}

// Header values shared by every response: assigned into the header map as
// is, so a warm request allocates none. Nobody may modify them (len == cap,
// so an append by a later middleware copies rather than writes through).
var (
	hdrJSON         = []string{"application/json"}
	hdrGzip         = []string{"gzip"}
	hdrVary         = []string{"Origin, Accept-Encoding"}
	hdrCacheControl = []string{"public, max-age=60, stale-while-revalidate=600, stale-if-error=86400"}
	hdrAny          = []string{"*"}
	hdrExpose       = []string{"ETag"}
	hdrMethods      = []string{"GET, HEAD, OPTIONS"}
	hdrAllowHeaders = []string{"If-None-Match"}
	hdrMaxAge       = []string{"86400"}
	hdrPreflightVar = []string{"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"}
)

// CacheControl is the Cache-Control of feed responses (product.md).
const CacheControl = "public, max-age=60, stale-while-revalidate=600, stale-if-error=86400"

// Get answers a feed request: 200 with the cached (gzip when accepted)
// bytes, or 304 when If-None-Match names the current ETag.
func (h *Handler) Get(c *echo.Context) error {
	e, err := h.entry(c)
	if err != nil {
		return err
	}
	r := c.Request()
	w := c.Response()
	hdr := w.Header()
	setCORS(hdr, e, r.Header["Origin"])
	hdr["Vary"] = hdrVary
	hdr["Cache-Control"] = hdrCacheControl
	hdr["Etag"] = e.ETagHeader()
	if inm := r.Header["If-None-Match"]; len(inm) > 0 && ETagMatch(inm, e.ETag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	gz := AcceptsGzip(r.Header["Accept-Encoding"])
	body := e.JSON
	if gz {
		hdr["Content-Encoding"] = hdrGzip
		body = e.Gzip
	}
	hdr["Content-Type"] = hdrJSON
	hdr["Content-Length"] = e.LengthHeader(gz)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, err = w.Write(body)
	}
	return err
}

// entry finds the requested feed entry. It is a function of its own so that
// its frame (query parsing, the cache lookup) is off the stack before Get
// writes: a shallow stack down to the socket write keeps connection
// goroutines from growing their stacks again after every GC.
//
//go:noinline
func (h *Handler) entry(c *echo.Context) (*cache.Entry, error) {
	r := c.Request()
	q := DefaultQuery
	if r.URL.RawQuery != "" {
		var err error
		if q, err = ParseQuery(r.URL.Query()); err != nil {
			return nil, err
		}
	}
	e, err := h.src.Entry(r.Context(), c.Param("id"), q)
	if err != nil {
		return nil, mapErr(err)
	}
	return e, nil
}

// Preflight answers a CORS preflight for the feed route.
func (h *Handler) Preflight(c *echo.Context) error {
	r := c.Request()
	e, err := h.src.Entry(r.Context(), c.Param("id"), DefaultQuery)
	if err != nil {
		return mapErr(err)
	}
	hdr := c.Response().Header()
	hdr["Vary"] = hdrPreflightVar
	if setCORS(hdr, e, r.Header["Origin"]) {
		hdr["Access-Control-Allow-Methods"] = hdrMethods
		hdr["Access-Control-Allow-Headers"] = hdrAllowHeaders
		hdr["Access-Control-Max-Age"] = hdrMaxAge
	}
	c.Response().WriteHeader(http.StatusNoContent)
	return nil
}

func mapErr(err error) error {
	if errors.Is(err, ErrNotFound) {
		return httperr.NotFound("feed")
	}
	return err
}

// entryMeta is the feed's CORS decision, precomputed per entry.
type entryMeta struct {
	allowed []string
	// origin → header value, for the allowed origins as configured.
	headers map[string][]string
	// doc is the document the body encodes (nil for entries built by NewEntry).
	doc *Doc
}

func newEntryMeta(allowed []string) *entryMeta {
	m := &entryMeta{allowed: allowed, headers: make(map[string][]string, len(allowed))}
	for _, o := range allowed {
		o = strings.TrimRight(o, "/")
		m.headers[o] = []string{o}
	}
	return m
}

// NewEntry builds a cache entry for a feed body with its allowed origins, in
// the shape Handler expects.
func NewEntry(body []byte, allowedOrigins []string) (*cache.Entry, error) {
	return cache.NewEntry(body, newEntryMeta(allowedOrigins))
}

// setCORS sets Access-Control-Allow-Origin for the request's origin and
// reports whether the origin is allowed.
func setCORS(hdr http.Header, e *cache.Entry, origin []string) bool {
	m, _ := e.Meta.(*entryMeta)
	if m == nil || len(m.allowed) == 0 {
		hdr["Access-Control-Allow-Origin"] = hdrAny
		hdr["Access-Control-Expose-Headers"] = hdrExpose
		return true
	}
	if len(origin) == 0 {
		return false
	}
	if v, ok := m.headers[origin[0]]; ok {
		hdr["Access-Control-Allow-Origin"] = v
		hdr["Access-Control-Expose-Headers"] = hdrExpose
		return true
	}
	v, ok := AllowOrigin(m.allowed, origin[0])
	if !ok {
		return false
	}
	if v == "*" {
		hdr["Access-Control-Allow-Origin"] = hdrAny
	} else {
		hdr["Access-Control-Allow-Origin"] = []string{v}
	}
	hdr["Access-Control-Expose-Headers"] = hdrExpose
	return true
}

// AllowOrigin is the CORS decision shared by the JSON and HTML feed routes:
// with no allowed origins every site may read the feed ("*"); otherwise the
// request's Origin is echoed when it is in the list (compared without case
// and without a trailing slash; "*" in the list allows all).
func AllowOrigin(allowed []string, origin string) (string, bool) {
	if len(allowed) == 0 {
		return "*", true
	}
	for _, a := range allowed {
		if a == "*" {
			return "*", true
		}
	}
	if origin == "" || origin == "null" {
		return "", false
	}
	for _, a := range allowed {
		if strings.EqualFold(strings.TrimRight(a, "/"), origin) {
			return origin, true
		}
	}
	return "", false
}

// ETagMatch reports whether an If-None-Match header (all its lines) names
// etag, using the weak comparison RFC 9110 prescribes for If-None-Match:
// W/"x" matches "x"; "*" matches any current representation.
func ETagMatch(ifNoneMatch []string, etag string) bool {
	for _, line := range ifNoneMatch {
		for line != "" {
			line = strings.TrimLeft(line, " \t,")
			if line == "" {
				break
			}
			if line[0] == '*' {
				return true
			}
			if strings.HasPrefix(line, "W/") {
				line = line[2:]
			}
			if line == "" || line[0] != '"' {
				// Not a valid entity tag: skip to the next element.
				i := strings.IndexByte(line, ',')
				if i < 0 {
					break
				}
				line = line[i:]
				continue
			}
			end := strings.IndexByte(line[1:], '"')
			if end < 0 {
				break
			}
			if line[:end+2] == etag {
				return true
			}
			line = line[end+2:]
		}
	}
	return false
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
