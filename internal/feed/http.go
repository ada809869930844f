package feed

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"unsafe"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/cache"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/web"
)

// Source gives the handler ready-to-send feed entries; *Service is one.
// Entry returns an error satisfying errors.Is(err, model.ErrNotFound) for an
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

// Router is what the feed routes register on: *echo.Group and the server's
// public group both fit.
type Router interface {
	GET(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) echo.RouteInfo
	HEAD(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) echo.RouteInfo
	OPTIONS(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) echo.RouteInfo
}

// Register mounts the feed routes on g (the server's public group).
func (h *Handler) Register(g Router) {
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
	if v := corsOrigin(e, r.Header["Origin"]); v != nil {
		web.SetOrigin(hdr, v)
	}
	hdr["Vary"] = hdrVary
	hdr["Cache-Control"] = hdrCacheControl
	hdr["Etag"] = e.ETagHeader()
	if inm := r.Header["If-None-Match"]; len(inm) > 0 && web.ETagMatch(inm, e.ETag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	gz := web.AcceptsGzip(r.Header["Accept-Encoding"])
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

// entry finds the requested feed entry.
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
	v := corsOrigin(e, r.Header["Origin"])
	if v != nil {
		web.SetOrigin(hdr, v)
	}
	web.SetPreflight(hdr, v)
	c.Response().WriteHeader(http.StatusNoContent)
	return nil
}

func mapErr(err error) error {
	if errors.Is(err, model.ErrNotFound) {
		return web.NotFound("feed")
	}
	return err
}

// entryMeta is the feed's CORS decision, precomputed per entry.
type entryMeta struct {
	allowed []string
	// origin → header value, for the allowed origins as configured.
	headers map[string][]string
}

// Size is about the memory the meta keeps alive, for the cache's bound.
func (m *entryMeta) Size() int {
	n := int(unsafe.Sizeof(*m))
	for _, o := range m.allowed {
		n += 2*len(o) + 64 // the list and the header map
	}
	return n
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

// corsOrigin is the Access-Control-Allow-Origin value for the request's
// origin, or nil when the feed does not allow it. The entry's precomputed
// values spare the allocation for its configured origins.
func corsOrigin(e *cache.Entry, origin []string) []string {
	m, _ := e.Meta.(*entryMeta)
	if m == nil || len(m.allowed) == 0 {
		return web.OriginHeader("*")
	}
	if len(origin) == 0 {
		return nil
	}
	if v, ok := m.headers[origin[0]]; ok {
		return v
	}
	v, ok := web.AllowOrigin(m.allowed, origin[0])
	if !ok {
		return nil
	}
	return web.OriginHeader(v)
}
