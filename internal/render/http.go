package render

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/feed"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/web"
	"github.com/feedd/feedd/widget"
)

// Source gives the renderer feed documents; *feed.Service is one. Doc
// returns the feed's allowed origins with it, and an error satisfying
// errors.Is(err, model.ErrNotFound) for an unknown feed. The document is
// shared and must not be modified.
type Source interface {
	Doc(ctx context.Context, id string, limit int, after string, types []string) (*feed.Doc, []string, error)
}

// Config configures the handlers.
type Config struct {
	Source    Source
	PublicURL string       // FEEDD_PUBLIC_URL
	Logger    *slog.Logger // nil: slog.Default()
}

// AssetCacheControl is the Cache-Control of /widget.js and /widget.css: the
// URLs are not versioned, so caches revalidate after five minutes and may
// serve the old file meanwhile.
const AssetCacheControl = "public, max-age=300, stale-while-revalidate=86400"

// LangCacheControl is the Cache-Control of the widget's language files:
// their URLs change with their content.
const LangCacheControl = "public, max-age=31536000, immutable"

// Handlers serve the fragment, the embed page and the widget's files.
type Handlers struct {
	src   Source
	r     *Renderer
	log   *slog.Logger
	js    *asset
	css   *asset
	langs map[string]*asset // by file name, <code>.<hash>.json
}

// NewHandlers returns the handlers; the widget's files are compressed once here.
func NewHandlers(cfg Config) (*Handlers, error) {
	if cfg.Source == nil {
		return nil, errors.New("render: Config.Source is nil")
	}
	r, err := NewRenderer(cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	h := &Handlers{
		src: cfg.Source, r: r, log: log,
		js:    newAsset(widget.JS, "text/javascript; charset=utf-8", AssetCacheControl),
		css:   newAsset(widget.CSS, "text/css; charset=utf-8", AssetCacheControl),
		langs: map[string]*asset{},
	}
	for _, l := range languages {
		h.langs[path.Base(l.path)] = newAsset(l.file, "application/json", LangCacheControl)
	}
	return h, nil
}

// Router is what the routes register on: *echo.Group and the server's
// public group both fit.
type Router interface {
	GET(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) echo.RouteInfo
	HEAD(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) echo.RouteInfo
	OPTIONS(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) echo.RouteInfo
}

// Register mounts the routes on g (the server's public group).
func (h *Handlers) Register(g Router) {
	g.GET("/feeds/:id", h.Fragment)
	g.HEAD("/feeds/:id", h.Fragment)
	g.OPTIONS("/feeds/:id", h.Preflight)
	g.GET("/feeds/:id/embed", h.Embed)
	g.HEAD("/feeds/:id/embed", h.Embed)
	g.GET("/widget.js", h.js.serve)
	g.HEAD("/widget.js", h.js.serve)
	g.GET("/widget.css", h.css.serve)
	g.HEAD("/widget.css", h.css.serve)
	g.GET("/widget/i18n/:file", h.Lang)
	g.HEAD("/widget/i18n/:file", h.Lang)
}

// Lang answers GET /widget/i18n/{code}.{hash}.json: a language's texts for
// the widget, at the URL the fragment names.
func (h *Handlers) Lang(c *echo.Context) error {
	a, ok := h.langs[c.Param("file")]
	if !ok {
		return web.NotFound("language file")
	}
	return a.serve(c)
}

// FeedCacheControl matches the feed JSON: the fragment is the same data.
const FeedCacheControl = feed.CacheControl

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Fragment answers GET /feeds/{id}.html.
func (h *Handlers) Fragment(c *echo.Context) error {
	id, ok := strings.CutSuffix(c.Param("id"), ".html")
	if !ok {
		return web.NotFound("page")
	}
	o, doc, allowed, err := h.load(c, id)
	if err != nil {
		return err
	}
	hdr := c.Response().Header()
	hdr.Set("Vary", "Origin")
	if v, ok := web.AllowOrigin(allowed, c.Request().Header.Get("Origin")); ok {
		web.SetOrigin(hdr, []string{v})
	}
	return h.write(c, func(b *bytes.Buffer) error { return h.r.Fragment(b, doc, o) })
}

// Embed answers GET /feeds/{id}/embed: a page for an iframe. Framing is
// limited to the feed's allowed origins when it has any.
func (h *Handlers) Embed(c *echo.Context) error {
	o, doc, allowed, err := h.load(c, c.Param("id"))
	if err != nil {
		return err
	}
	ancestors := "*"
	if len(allowed) > 0 && !containsStar(allowed) {
		ancestors = "'self' " + strings.Join(cleanOrigins(allowed), " ")
	}
	hdr := c.Response().Header()
	hdr.Set("Content-Security-Policy", "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors "+ancestors)
	hdr.Del("X-Frame-Options")
	return h.write(c, func(b *bytes.Buffer) error { return h.r.Page(b, doc, o) })
}

// Preflight answers a CORS preflight for the fragment.
func (h *Handlers) Preflight(c *echo.Context) error {
	id, ok := strings.CutSuffix(c.Param("id"), ".html")
	if !ok {
		return web.NotFound("page")
	}
	_, allowed, err := h.src.Doc(c.Request().Context(), id, 0, "", nil)
	if err != nil {
		return mapErr(err)
	}
	hdr := c.Response().Header()
	var grant []string
	if v, ok := web.AllowOrigin(allowed, c.Request().Header.Get("Origin")); ok {
		grant = []string{v}
	}
	web.SetPreflight(hdr, grant)
	return c.NoContent(http.StatusNoContent)
}

func (h *Handlers) load(c *echo.Context, id string) (Options, *feed.Doc, []string, error) {
	o, err := ParseOptions(c.Request().URL.Query())
	if err != nil {
		return o, nil, nil, err
	}
	doc, allowed, err := h.src.Doc(c.Request().Context(), id, o.Limit, o.After, o.Types)
	if err != nil {
		return o, nil, nil, mapErr(err)
	}
	return o, doc, allowed, nil
}

// write renders into a pooled buffer, then answers 304 or the HTML with a
// strong ETag of the bytes.
func (h *Handlers) write(c *echo.Context, render func(*bytes.Buffer) error) error {
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	defer bufPool.Put(b)
	if err := render(b); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	etag := web.StrongETag(b.Bytes())
	hdr := c.Response().Header()
	hdr.Set("ETag", etag)
	hdr.Set("Cache-Control", FeedCacheControl)
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("X-Content-Type-Options", "nosniff")
	r := c.Request()
	if inm := r.Header["If-None-Match"]; len(inm) > 0 && web.ETagMatch(inm, etag) {
		return c.NoContent(http.StatusNotModified)
	}
	hdr.Set("Content-Length", fmt.Sprint(b.Len()))
	c.Response().WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := c.Response().Write(b.Bytes())
	return err
}

func mapErr(err error) error {
	if errors.Is(err, model.ErrNotFound) {
		return web.NotFound("feed")
	}
	return err
}

func containsStar(list []string) bool {
	for _, s := range list {
		if s == "*" {
			return true
		}
	}
	return false
}

// cleanOrigins keeps the origins that are safe to put in a CSP header.
func cleanOrigins(list []string) []string {
	out := make([]string, 0, len(list))
	for _, o := range list {
		o = strings.TrimRight(o, "/")
		if o != "" && !strings.ContainsAny(o, " ;,'\"\r\n\t") {
			out = append(out, o)
		}
	}
	return out
}

// asset is one embedded file with its precomputed headers and gzip bytes.
type asset struct {
	raw, gz         []byte
	ctype, etag, cc string
	rawLen          string
	gzLen           string
}

func newAsset(raw []byte, ctype, cacheControl string) *asset {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	zw.Write(raw)
	zw.Close()
	return &asset{
		raw: raw, gz: b.Bytes(), ctype: ctype, cc: cacheControl,
		etag:   web.StrongETag(raw),
		rawLen: fmt.Sprint(len(raw)), gzLen: fmt.Sprint(b.Len()),
	}
}

func (a *asset) serve(c *echo.Context) error {
	r := c.Request()
	hdr := c.Response().Header()
	hdr.Set("Content-Type", a.ctype)
	hdr.Set("Cache-Control", a.cc)
	hdr.Set("ETag", a.etag)
	hdr.Set("Vary", "Accept-Encoding")
	hdr.Set("X-Content-Type-Options", "nosniff")
	// Any site may load the script; CORS lets a page use crossorigin or SRI.
	hdr.Set("Access-Control-Allow-Origin", "*")
	if inm := r.Header["If-None-Match"]; len(inm) > 0 && web.ETagMatch(inm, a.etag) {
		return c.NoContent(http.StatusNotModified)
	}
	body, n := a.raw, a.rawLen
	if web.AcceptsGzip(r.Header["Accept-Encoding"]) {
		body, n = a.gz, a.gzLen
		hdr.Set("Content-Encoding", "gzip")
	}
	hdr.Set("Content-Length", n)
	c.Response().WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := c.Response().Write(body)
	return err
}
