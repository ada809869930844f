package server

import (
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/web"
)

// Gate decides who is the owner on the Admin and Setup groups;
// owner.Gate implements it.
type Gate interface {
	// Admit runs next when the request carries the admin credential, and
	// answers it otherwise; page marks a setup page (browsers are sent to
	// sign in) rather than the JSON API.
	Admit(c *echo.Context, page bool, next echo.HandlerFunc) error
	// CSRFToken is the CSRF token of the request's session ("" without
	// one), for the forms on error pages.
	CSRFToken(c *echo.Context) string
}

// SetGate installs the gate of the owner groups. Until it is set, they
// refuse every request (401).
func (s *Server) SetGate(g Gate) { s.gate.Store(&g) }

// ownerOnly hands the group's requests to the gate.
func (s *Server) ownerOnly(page bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			g := s.gate.Load()
			if g == nil {
				return web.Unauthorized()
			}
			return (*g).Admit(c, page, next)
		}
	}
}

// SignIn returns the /setup/login group: the owner pages that need no
// credential (signing in), with the setup pages' headers.
func (s *Server) SignIn() *echo.Group { return s.signIn }

// CredentialFailed answers a wrong admin credential: 401, or 429 once this
// client has failed too often. Only failures are throttled: the gate
// checks a credential first, so a right one is never refused.
func (s *Server) CredentialFailed(c *echo.Context) error {
	ip := s.clientAddr(c.Request())
	ok, wait := s.failures.allow(ip)
	s.log.Warn("admin credential rejected", slog.String("client_ip", ip.String()), slog.String("path", c.Request().URL.Path),
		slog.Bool("throttled", !ok))
	if !ok {
		return &web.Error{Status: http.StatusTooManyRequests, Code: "rate_limited",
			Message: "too many failed sign-in attempts; wait and try again", RetryAfter: retrySeconds(wait)}
	}
	return web.Unauthorized()
}
