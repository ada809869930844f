package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/ui"
	"github.com/feedd/feedd/internal/web"
)

// codes for the framework's own HTTP errors (404 route, 405, 413...).
var statusCodes = map[int]struct{ code, message string }{
	http.StatusBadRequest:            {"bad_request", "the request is malformed"},
	http.StatusUnauthorized:          {"unauthorized", "missing or invalid admin credential"},
	http.StatusForbidden:             {"forbidden", "forbidden"},
	http.StatusNotFound:              {"not_found", "no such route"},
	http.StatusMethodNotAllowed:      {"method_not_allowed", "method not allowed on this route"},
	http.StatusRequestEntityTooLarge: {"body_too_large", "request body too large"},
	http.StatusUnsupportedMediaType:  {"unsupported_media_type", "unsupported content type"},
	http.StatusTooManyRequests:       {"rate_limited", "too many requests; slow down"},
	http.StatusServiceUnavailable:    {"unavailable", "service unavailable; try again later"},
}

// handleError is the one error handler: *web.Error keeps its status and
// message; the framework's HTTP errors get the same envelope; anything else
// is a 500 "internal" whose details only reach the log, with the request id.
func (s *Server) handleError(c *echo.Context, err error) {
	e := s.toClientError(c, err)
	if resp, uerr := echo.UnwrapResponse(c.Response()); uerr == nil && resp.Committed {
		s.log.Warn("error after response started", slog.Any("error", err), slog.String("request_id", RequestID(c)))
		return
	}
	h := c.Response().Header()
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if e.Status >= 400 {
		// Error answers are per request; never let a cache keep one.
		h["Cache-Control"] = hdrNoStore
	}
	if s.wantsHTML(c) {
		s.renderErrorPage(c, e)
		return
	}
	body, _ := json.Marshal(struct {
		Error *web.Error `json:"error"`
	}{e})
	h["Content-Type"] = hdrJSON
	h.Del("Content-Encoding") // a handler may have announced precompressed bytes
	h.Del("Content-Length")
	c.Response().WriteHeader(e.Status)
	if c.Request().Method != http.MethodHead {
		_, _ = c.Response().Write(body)
	}
}

func (s *Server) toClientError(c *echo.Context, err error) *web.Error {
	if e, ok := web.As(err); ok {
		if e.Status >= 500 {
			s.log.Error("request failed", slog.Any("error", err), slog.String("request_id", RequestID(c)),
				slog.String("route", c.Path()))
		}
		return e
	}
	if isBodyTooLarge(err) {
		return errBodyTooLarge
	}
	var pe *panicError
	if errors.As(err, &pe) {
		s.log.Error("panic serving request", slog.Any("panic", pe.value), slog.String("stack", string(pe.stack)),
			slog.String("request_id", RequestID(c)), slog.String("route", c.Path()))
		return internalError(c)
	}
	var sc echo.HTTPStatusCoder
	if errors.As(err, &sc) {
		status := sc.StatusCode()
		if status >= 400 && status < 500 {
			m, ok := statusCodes[status]
			if !ok {
				m.code, m.message = "error", strings.ToLower(http.StatusText(status))
			}
			return &web.Error{Status: status, Code: m.code, Message: m.message}
		}
		if status == http.StatusServiceUnavailable {
			m := statusCodes[status]
			return &web.Error{Status: status, Code: m.code, Message: m.message}
		}
	}
	s.log.Error("request failed", slog.Any("error", err), slog.String("request_id", RequestID(c)),
		slog.String("route", c.Path()))
	return internalError(c)
}

func internalError(c *echo.Context) *web.Error {
	return &web.Error{Status: http.StatusInternalServerError, Code: "internal",
		Message: "internal error (request id " + RequestID(c) + ")"}
}

// wantsHTML: owner pages and the OAuth pages a browser opens answer errors
// as a page, unless the client asked for JSON only. A POST under /auth/ is
// a server-to-server callback (Meta's deauthorize and deletion): JSON.
func (s *Server) wantsHTML(c *echo.Context) bool {
	r := c.Request()
	p := r.URL.Path
	browserAuth := strings.HasPrefix(p, s.prefix+"/auth/") && (r.Method == http.MethodGet || r.Method == http.MethodHead)
	if !strings.HasPrefix(p, s.prefix+"/setup") && !browserAuth {
		return false
	}
	accept := r.Header.Get("Accept")
	return accept == "" || strings.Contains(accept, "text/html") || !strings.Contains(accept, "json")
}

func (s *Server) renderErrorPage(c *echo.Context, e *web.Error) {
	m := ui.Message{Title: errorTitle(e.Status), Paragraphs: []string{sentence(e.Message)}, Detail: "Request id " + RequestID(c)}
	switch e.Status {
	case http.StatusUnauthorized:
		m.Link, m.LinkText = s.prefix+"/setup/login", "Sign in"
	case http.StatusForbidden:
		m.Paragraphs = append(m.Paragraphs, "Go back, reload the page and try again.")
	case http.StatusNotFound:
		m.Link, m.LinkText = s.prefix+"/setup", "Go to the setup page"
	}
	h := c.Response().Header()
	h["Content-Security-Policy"] = s.setupCSP
	h.Del("Content-Encoding")
	h.Del("Content-Length")
	p := ui.Page{Prefix: s.prefix}
	if g := s.gate.Load(); g != nil {
		p.CSRF = (*g).CSRFToken(c)
	}
	if err := ui.RenderMessage(c.Response(), e.Status, p, m); err != nil {
		s.log.Error("render error page", slog.Any("error", err))
	}
}

func errorTitle(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "Sign in required"
	case http.StatusForbidden:
		return "Request refused"
	case http.StatusNotFound:
		return "Page not found"
	case http.StatusTooManyRequests:
		return "Too many attempts"
	}
	if status >= 500 {
		return "Something went wrong"
	}
	return http.StatusText(status)
}

func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}
