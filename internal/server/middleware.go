package server

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/web"
)

// Header values assigned into header maps as they are, so the hot path
// allocates none. Never modified (len == cap: an append copies).
var (
	hdrNosniff      = []string{"nosniff"}
	hdrReferrer     = []string{"strict-origin-when-cross-origin"}
	hdrFrameDeny    = []string{"DENY"}
	hdrCSPNoFrame   = []string{"frame-ancestors 'none'"}
	hdrNoStore      = []string{"no-store"}
	hdrJSON         = []string{"application/json"}
	hdrXSSDisabled  = []string{"0"}
	hdrCOOPSameOrig = []string{"same-origin"}
)

const headerRequestID = "X-Request-Id"

// requestIDs makes request ids: a random per-process prefix and a counter,
// unique without a random read per request.
type requestIDs struct {
	prefix [8]byte
	n      atomic.Uint64
}

var ids = newRequestIDs()

func newRequestIDs() *requestIDs {
	var r requestIDs
	var b [5]byte
	_, _ = rand.Read(b[:])
	base32.StdEncoding.WithPadding(base32.NoPadding).Encode(r.prefix[:], b[:])
	return &r
}

// idHeader is a request id and the one-element header value holding it,
// made in one allocation: 8 prefix bytes, '-', at most 13 base-36 digits.
type idHeader struct {
	value [1]string
	buf   [24]byte
}

// next returns a new id as a header value (len == cap: an append copies).
func (r *requestIDs) next() []string {
	h := new(idHeader)
	b := append(h.buf[:0], r.prefix[:]...)
	b = append(b, '-')
	b = strconv.AppendUint(b, r.n.Add(1), 36)
	// b is h.buf (22 bytes at most fit in 24), written once and never again.
	h.value[0] = unsafe.String(&b[0], len(b))
	return h.value[:]
}

// validRequestID accepts a caller's id only when it is short and plain, so
// it can go into logs and headers as is.
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// RequestID returns the request's id (also sent as X-Request-Id).
func RequestID(c *echo.Context) string {
	if v := c.Response().Header()[headerRequestID]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// core is the one global middleware: request id, security headers, body
// limit, per-IP visitor rate limit, panic recovery, error rendering,
// metrics and the request log.
func (s *Server) core(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		var ri requestInfo
		err := s.begin(c, &ri)
		if err == nil {
			err = s.serveRecovered(next, c)
		}
		s.end(c, &ri, err)
		return nil
	}
}

// requestInfo is what core's begin hands to its end.
type requestInfo struct {
	start  time.Time
	id     string
	route  *route
	client netip.Addr
}

// begin stamps the request (id, security headers), classifies its route,
// and applies the visitor rate limit and the body limit.
func (s *Server) begin(c *echo.Context, ri *requestInfo) error {
	ri.start = s.now()
	r := c.Request()
	h := c.Response().Header()
	if v := r.Header[headerRequestID]; len(v) == 1 && validRequestID(v[0]) {
		ri.id = v[0]
		h[headerRequestID] = v
	} else {
		v := ids.next()
		ri.id = v[0]
		h[headerRequestID] = v
	}
	h["X-Content-Type-Options"] = hdrNosniff
	h["Referrer-Policy"] = hdrReferrer
	ri.route = s.route(c)
	ri.client = s.clientAddr(r)
	if ri.route.public {
		// The visitor rate limit lives here rather than in the public
		// group's middleware so it shares this request's clock read.
		if s.visitors != nil {
			if ok, wait := s.visitors.allowAt(ri.client, ri.start); !ok {
				return rateLimited(wait)
			}
		}
	} else {
		// Owner pages, API and errors must not be framed by other
		// sites; public feed routes and the embed page must be.
		h["X-Frame-Options"] = hdrFrameDeny
		h["Content-Security-Policy"] = hdrCSPNoFrame
	}
	if r.ContentLength > s.bodyLimit {
		return errBodyTooLarge
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(c.Response(), r.Body, s.bodyLimit)
	}
	return nil
}

// end answers an error, then counts and logs the request.
func (s *Server) end(c *echo.Context, ri *requestInfo, err error) {
	if err != nil {
		s.handleError(c, err)
	}
	status, size := http.StatusOK, int64(0)
	if resp, _ := c.Response().(*echo.Response); resp != nil {
		status, size = resp.Status, resp.Size
	}
	r := c.Request()
	elapsed := s.since(ri.start)
	ri.route.observe(s.metrics, r.Method, status, elapsed)

	// Successful visitor requests are counted in metrics and logged at
	// debug only: a log line per feed view would cost more than serving
	// it. Everything else is logged at info.
	level := slog.LevelInfo
	if ri.route.public && status < 400 {
		level = slog.LevelDebug
	}
	if status >= 500 {
		level = slog.LevelError
	}
	if s.log.Enabled(r.Context(), level) {
		s.log.LogAttrs(r.Context(), level, "http request",
			slog.String("method", r.Method),
			slog.String("route", ri.route.label),
			slog.String("path", r.URL.Path), // never the query: it may carry a secret
			slog.Int("status", status),
			slog.Duration("duration", elapsed),
			slog.Int64("bytes", size),
			slog.String("request_id", ri.id),
			slog.String("client_ip", ri.client.String()),
		)
	}
}

func rateLimited(wait time.Duration) error {
	return &web.Error{
		Status:     http.StatusTooManyRequests,
		Code:       "rate_limited",
		Message:    "too many requests; slow down",
		RetryAfter: retrySeconds(wait),
	}
}

func isNotFoundRoute(c *echo.Context) bool {
	return c.RouteInfo().Name == echo.NotFoundRouteName
}

var errBodyTooLarge = &web.Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Message: "request body too large"}

// panicError carries a recovered panic to the error handler (logged with
// its stack, answered as a plain 500).
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("server: panic: %v", p.value) }

func (s *Server) serveRecovered(next echo.HandlerFunc, c *echo.Context) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			buf := make([]byte, 8<<10)
			buf = buf[:runtime.Stack(buf, false)]
			err = &panicError{value: v, stack: buf}
		}
	}()
	return next(c)
}

// setupHeaders gives owner pages a strict Content-Security-Policy: no
// scripts, styles from feedd only, no framing, forms only to feedd (and
// the Instagram authorize URL the connect button redirects to).
func (s *Server) setupHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		h := c.Response().Header()
		h["Content-Security-Policy"] = s.setupCSP
		h["Cross-Origin-Opener-Policy"] = hdrCOOPSameOrig
		h["X-Xss-Protection"] = hdrXSSDisabled
		return next(c)
	}
}

func setupCSP(formOrigins []string) string {
	form := "'self'"
	for _, o := range formOrigins {
		if o = strings.TrimSpace(o); o != "" && !strings.ContainsAny(o, " ;'\"") {
			form += " " + o
		}
	}
	return "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; connect-src 'self'; " +
		"frame-src 'self'; form-action " + form + "; frame-ancestors 'none'; base-uri 'none'"
}

func retrySeconds(d time.Duration) int {
	n := int((d + time.Second - 1) / time.Second)
	if n < 1 {
		n = 1
	}
	return n
}

// isBodyTooLarge reports a body cut off by the body limit.
func isBodyTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}
