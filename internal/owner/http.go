package owner

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/connection"
	"github.com/feedd/feedd/internal/doctor"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/ui"
	"github.com/feedd/feedd/internal/web"
)

// Router is what routes register on: *echo.Echo and *echo.Group both fit.
type Router interface {
	GET(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) echo.RouteInfo
	POST(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) echo.RouteInfo
	PATCH(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) echo.RouteInfo
	DELETE(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) echo.RouteInfo
}

// HTTPOptions configures the handlers.
type HTTPOptions struct {
	// Checks, when set, runs the setup checks shown on the /setup page
	// (doctor.Checker); nil hides the section.
	Checks func(ctx context.Context) []doctor.Check
}

// Handler serves the owner's routes: setup pages, admin API and the
// public routes of the connect flow and Meta's callbacks.
type Handler struct {
	svc    *Service
	conn   *connection.Service
	checks func(ctx context.Context) []doctor.Check
}

//go:embed templates/*.html
var templateFS embed.FS

// pages are parsed each on the shared layout (each defines "content").
var pages = func() map[string]*template.Template {
	m := map[string]*template.Template{}
	for _, n := range []string{"setup_index", "setup_feed", "setup_confirm", "flow_error", "deletion"} {
		m[n] = ui.Must(ui.Parse(templateFS, "templates/partials.html", "templates/notifications.html", "templates/"+n+".html"))
	}
	return m
}()

// NewHandler returns the owner's routes over svc.
func NewHandler(svc *Service, opts HTTPOptions) *Handler {
	return &Handler{svc: svc, conn: svc.conn, checks: opts.Checks}
}

// Paths of Meta's server-to-server callbacks, registered in the Instagram
// app's settings (the setup pages show them with the public URL).
const (
	deauthorizePath = doctor.DeauthorizePath
	deletePath      = doctor.DataDeletionPath
)

// RegisterCallbacks mounts the /auth/instagram routes (on the root
// router); limit guards the OAuth callback, each request of which consumes
// a connect state (a write by an anonymous client).
func (h *Handler) RegisterCallbacks(r Router, limit echo.MiddlewareFunc) {
	r.GET("/auth/instagram/callback", h.callback, limit)
	r.POST(deauthorizePath, h.meta(model.KindDeauthorize))
	r.POST(deletePath, h.meta(model.KindDelete))
	r.GET("/auth/instagram/deletion", h.deletion)
}

// RegisterAdmin mounts the admin JSON API on the /api/admin group.
func (h *Handler) RegisterAdmin(g Router) {
	g.POST("/feeds", h.apiCreate)
	g.GET("/feeds", h.apiList)
	g.GET("/feeds/:id", h.apiGet)
	g.PATCH("/feeds/:id", h.apiPatch)
	g.DELETE("/feeds/:id", h.apiDelete)
	g.POST("/feeds/:id/connect", h.apiConnect)
	g.POST("/feeds/:id/token", h.apiToken)
	g.POST("/feeds/:id/refresh", h.apiRefresh)
	g.DELETE("/feeds/:id/token", h.apiDisconnect)
	g.GET("/feeds/:id/notifications", h.apiNotifications)
	h.registerCuration(g)
	h.registerSources(g)
}

// sessionBinding is the value connect states are bound to: a hash of the
// browser's session cookie (never the cookie itself). nil without a cookie.
func (h *Handler) sessionBinding(c *echo.Context) []byte {
	ck, err := c.Cookie(SessionCookie)
	if err != nil || ck.Value == "" {
		return nil
	}
	sum := sha256.Sum256([]byte("feedd/oauth-binding/" + ck.Value))
	return sum[:]
}

// render executes a page on the shared layout with status.
func (h *Handler) render(c *echo.Context, status int, name, title string, p ui.Page) error {
	p.Title, p.Prefix = title, h.svc.prefix
	return ui.Render(c.Response(), status, pages[name], p)
}

// --- OAuth callback and Meta's callbacks ---

func (h *Handler) callback(c *echo.Context) error {
	q := c.QueryParams()
	p := connection.CallbackParams{
		State: q.Get("state"), Code: q.Get("code"), Error: q.Get("error"),
		ErrorReason: q.Get("error_reason"), ErrorDescription: q.Get("error_description"),
	}
	id, err := h.conn.Callback(c.Request().Context(), p, h.sessionBinding(c))
	if err != nil {
		var fe *connection.FlowError
		if !errors.As(err, &fe) {
			return err
		}
		h.svc.log.Info("connect failed", slog.Any("error", fe))
		return h.render(c, fe.Status, "flow_error", "Connecting failed", ui.Page{Data: fe})
	}
	h.setFlash(c, flash{Kind: "ok", Msg: "Connected. feedd keeps the token alive from now on."})
	return c.Redirect(http.StatusSeeOther, h.svc.prefix+"/setup/feeds/"+id)
}

// maxCallbackBody bounds Meta's callback requests.
const maxCallbackBody = 8 << 10

func (h *Handler) meta(kind string) echo.HandlerFunc {
	return func(c *echo.Context) error {
		r := c.Request()
		if r.ContentLength > maxCallbackBody {
			return web.New(http.StatusRequestEntityTooLarge, "body_too_large", "request body too large")
		}
		r.Body = http.MaxBytesReader(c.Response(), r.Body, maxCallbackBody)
		if err := r.ParseForm(); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return web.New(http.StatusRequestEntityTooLarge, "body_too_large", "request body too large")
			}
			return web.BadRequest("invalid_form", "body: not a valid form")
		}
		sr := r.PostForm.Get("signed_request")
		if sr == "" {
			return web.BadRequest("invalid_signed_request", "signed_request: missing")
		}
		req, err := h.conn.MetaCallback(r.Context(), kind, sr)
		switch {
		case errors.Is(err, connection.ErrNoAppSecret):
			return &web.Error{Status: http.StatusServiceUnavailable, Code: "app_not_configured", Err: err,
				Message: "FEEDD_INSTAGRAM_APP_SECRET is not set, so the request cannot be verified"}
		case errors.Is(err, connection.ErrSignedRequestSignature):
			return &web.Error{Status: http.StatusForbidden, Code: "invalid_signature", Err: err,
				Message: "signed_request: signature does not match"}
		case errors.Is(err, connection.ErrSignedRequestAlgorithm):
			return &web.Error{Status: http.StatusBadRequest, Code: "invalid_signed_request", Err: err,
				Message: "signed_request: algorithm must be HMAC-SHA256"}
		case errors.Is(err, connection.ErrSignedRequestStale):
			return &web.Error{Status: http.StatusBadRequest, Code: "invalid_signed_request", Err: err,
				Message: "signed_request: issued_at is missing or not within the last day"}
		case errors.Is(err, connection.ErrSignedRequestMalformed):
			return &web.Error{Status: http.StatusBadRequest, Code: "invalid_signed_request", Err: err,
				Message: "signed_request: malformed"}
		case err != nil:
			return err
		}
		return c.JSON(http.StatusOK, map[string]string{
			"url": h.conn.DeletionStatusURL(req.Code), "confirmation_code": req.Code,
		})
	}
}

func (h *Handler) deletion(c *echo.Context) error {
	code := c.QueryParam("code")
	req, err := h.conn.Deletion(c.Request().Context(), code)
	if errors.Is(err, model.ErrNotFound) {
		return h.render(c, http.StatusNotFound, "deletion", "Deletion request", ui.Page{Data: deletionView{}})
	}
	if err != nil {
		return err
	}
	v := deletionView{Found: true, Code: req.Code, RequestedAt: fmtTime(req.RequestedAt), FeedsAffected: req.FeedsAffected}
	if !req.CompletedAt.IsZero() {
		v.Completed, v.CompletedAt = true, fmtTime(req.CompletedAt)
	}
	return h.render(c, http.StatusOK, "deletion", "Deletion request", ui.Page{Data: v})
}

type deletionView struct {
	Found, Completed         bool
	Code                     string
	RequestedAt, CompletedAt string
	FeedsAffected            int
}

func fmtTime(t time.Time) string { return t.UTC().Format("2 Jan 2006 15:04 UTC") }

// --- admin JSON API ---

const maxJSONBody = 64 << 10

// decodeJSON decodes exactly one JSON object, refusing unknown fields by name.
func decodeJSON(c *echo.Context, v any) error {
	r := c.Request()
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return web.New(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type: want application/json")
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(c.Response(), r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.More() {
			return web.BadRequest("invalid_json", "body: want exactly one JSON object")
		}
		return nil
	}
	var (
		mbe *http.MaxBytesError
		ute *json.UnmarshalTypeError
		se  *json.SyntaxError
	)
	switch {
	case errors.As(err, &mbe):
		return web.New(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body: larger than %d bytes", maxJSONBody))
	case errors.Is(err, io.EOF):
		return web.BadRequest("invalid_json", "body: empty; want a JSON object")
	case errors.As(err, &ute):
		if ute.Field == "" {
			return web.BadRequest("invalid_json", "body: want a JSON object")
		}
		return web.BadRequest("invalid_json", "%s: must be %s", ute.Field, jsonKind(ute.Type.Kind().String()))
	case errors.As(err, &se):
		return web.BadRequest("invalid_json", "body: invalid JSON at byte %d", se.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return web.BadRequest("unknown_field", "%s: unknown field", strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`))
	default:
		return web.BadRequest("invalid_json", "body: invalid JSON")
	}
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice":
		return "an array of strings"
	case "int", "int64":
		return "a whole number"
	case "bool":
		return "true or false"
	case "ptr":
		return "a string or null"
	}
	return "of another type"
}

func (h *Handler) apiCreate(c *echo.Context) error {
	var in struct {
		Name           *string  `json:"name"`
		AllowedOrigins []string `json:"allowed_origins"`
	}
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	if in.Name == nil {
		return web.BadRequest("invalid_name", "name: required")
	}
	st, err := h.svc.CreateFeed(c.Request().Context(), *in.Name, in.AllowedOrigins)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", h.svc.prefix+"/api/admin/feeds/"+st.ID)
	return c.JSON(http.StatusCreated, st)
}

func (h *Handler) apiList(c *echo.Context) error {
	fs, err := h.svc.Feeds(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"feeds": fs})
}

func (h *Handler) apiGet(c *echo.Context) error {
	st, err := h.svc.Feed(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

func (h *Handler) apiPatch(c *echo.Context) error {
	var p Patch
	if err := decodeJSON(c, &p); err != nil {
		return err
	}
	st, err := h.svc.UpdateFeed(c.Request().Context(), c.Param("id"), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

func (h *Handler) apiDelete(c *echo.Context) error {
	if err := h.svc.DeleteFeed(c.Request().Context(), c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (h *Handler) apiConnect(c *echo.Context) error {
	u, err := h.svc.Connect(c.Request().Context(), c.Param("id"), nil)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, map[string]string{"authorize_url": u})
}

func (h *Handler) apiToken(c *echo.Context) error {
	var in struct {
		AccessToken *string `json:"access_token"`
	}
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	if in.AccessToken == nil {
		return web.BadRequest("invalid_access_token", "access_token: required")
	}
	st, err := h.svc.PasteToken(c.Request().Context(), c.Param("id"), *in.AccessToken)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

func (h *Handler) apiRefresh(c *echo.Context) error {
	extendWriteDeadline(c)
	st, err := h.svc.FetchNow(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

func (h *Handler) apiDisconnect(c *echo.Context) error {
	st, err := h.svc.Disconnect(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// fetchWriteWindow is how long "fetch now" may take before its answer is
// written: a first fetch downloads and resizes the images of 50 posts,
// which can outlast the server's usual write timeout.
const fetchWriteWindow = 5 * time.Minute

// extendWriteDeadline lifts the server's write timeout for this response
// only, so a long fetch still gets its promised answer.
func extendWriteDeadline(c *echo.Context) {
	rc := http.NewResponseController(c.Response())
	_ = rc.SetWriteDeadline(time.Now().Add(fetchWriteWindow))
}
