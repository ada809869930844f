package server

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/httperr"
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

func (r *requestIDs) next() string {
	var buf [32]byte
	b := append(buf[:0], r.prefix[:]...)
	b = append(b, '-')
	b = strconv.AppendUint(b, r.n.Add(1), 36)
	return string(b)
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
// limit, panic recovery, error rendering, metrics and the request log. It
// is a single function to keep the per-request cost to a few assignments.
func (s *Server) core(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		start := s.now()
		r := c.Request()
		resp, _ := c.Response().(*echo.Response)
		h := c.Response().Header()

		id := ""
		if v := r.Header[headerRequestID]; len(v) == 1 && validRequestID(v[0]) {
			id = v[0]
			h[headerRequestID] = v
		} else {
			id = ids.next()
			h[headerRequestID] = []string{id}
		}
		h["X-Content-Type-Options"] = hdrNosniff
		h["Referrer-Policy"] = hdrReferrer
		route := c.Path()
		public := s.isPublic(route)
		client := s.clientAddr(r)
		var err error
		if public {
			// The visitor rate limit lives here rather than in the public
			// group's middleware so it shares this request's clock read.
			if s.visitors != nil {
				if ok, wait := s.visitors.allowAt(client, start); !ok {
					err = &httperr.Error{
						Status:     http.StatusTooManyRequests,
						Code:       "rate_limited",
						Message:    "too many requests; slow down",
						RetryAfter: retrySeconds(wait),
					}
				}
			}
		} else {
			// Owner pages, API and errors must not be framed by other
			// sites; public feed routes and the embed page must be.
			h["X-Frame-Options"] = hdrFrameDeny
			h["Content-Security-Policy"] = hdrCSPNoFrame
			if route == "" || isNotFoundRoute(c) {
				route = "unmatched"
			}
		}

		if err != nil {
			// rate limited
		} else if r.ContentLength > s.bodyLimit {
			err = errBodyTooLarge
		} else {
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = http.MaxBytesReader(c.Response(), r.Body, s.bodyLimit)
			}
			err = s.serveRecovered(next, c)
		}
		if err != nil {
			s.handleError(c, err)
		}

		status, size := http.StatusOK, int64(0)
		if resp != nil {
			status, size = resp.Status, resp.Size
		}
		elapsed := s.now().Sub(start)
		s.metrics.observe(route, r.Method, status, elapsed)

		// Successful visitor requests are counted in metrics and logged at
		// debug only: a log line per feed view would cost more than
		// serving it. Everything else is logged at info.
		level := slog.LevelInfo
		if public && status < 400 {
			level = slog.LevelDebug
		}
		if status >= 500 {
			level = slog.LevelError
		}
		if s.log.Enabled(r.Context(), level) {
			s.log.LogAttrs(r.Context(), level, "http request",
				slog.String("method", r.Method),
				slog.String("route", route),
				slog.String("path", r.URL.Path), // never the query: it may carry a secret
				slog.Int("status", status),
				slog.Duration("duration", elapsed),
				slog.Int64("bytes", size),
				slog.String("request_id", id),
				slog.String("client_ip", client.String()),
			)
		}
		return nil
	}
}

func isNotFoundRoute(c *echo.Context) bool {
	return c.RouteInfo().Name == echo.NotFoundRouteName
}

var errBodyTooLarge = &httperr.Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Message: "request body too large"}

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

// publicGroup marks the public group's routes (see onAddRoute); the
// visitor rate limit itself runs in core, which knows the route.
func (s *Server) publicGroup(next echo.HandlerFunc) echo.HandlerFunc { return next }

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
