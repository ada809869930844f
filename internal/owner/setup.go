package owner

import (
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/connection"
	"github.com/feedd/feedd/internal/doctor"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/render"
	"github.com/feedd/feedd/internal/ui"
	"github.com/feedd/feedd/internal/web"
)

// RegisterSetup mounts the setup pages on the /setup group.
func (h *Handler) RegisterSetup(g Router) {
	g.GET("", h.setupIndex)
	g.GET("/", h.setupIndex)
	g.POST("/feeds", h.setupCreate)
	g.GET("/feeds/:id", h.setupFeed)
	g.POST("/feeds/:id/rename", h.setupRename)
	g.POST("/feeds/:id/origins", h.setupOrigins)
	g.POST("/feeds/:id/videos", h.setupVideos)
	g.GET("/feeds/:id/preview", h.setupPreview)
	g.POST("/feeds/:id/connect", h.setupConnect)
	g.GET("/feeds/:id/disconnect", h.confirmPage(disconnectConfirm))
	g.POST("/feeds/:id/disconnect", h.setupDisconnect)
	g.POST("/feeds/:id/token", h.setupToken)
	g.POST("/feeds/:id/refresh", h.setupRefresh)
	g.GET("/feeds/:id/delete", h.confirmPage(deleteConfirm))
	g.POST("/feeds/:id/delete", h.setupDelete)
	g.GET(strings.TrimPrefix(ui.ScriptRoute, "/setup"), func(c *echo.Context) error {
		ui.ServeScript(c.Response(), c.Request())
		return nil
	})
	h.registerModeration(g)
	h.registerSourcePages(g)
}

const flashCookie = "feedd_flash"

type flash struct {
	Kind string `json:"k"` // "ok" or "error"
	Msg  string `json:"m"`
}

func (h *Handler) setFlash(c *echo.Context, f flash) {
	b, _ := json.Marshal(f)
	c.SetCookie(&http.Cookie{
		Name: flashCookie, Value: base64.RawURLEncoding.EncodeToString(b), Path: h.svc.prefix + "/setup",
		MaxAge: 120, HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: strings.HasPrefix(h.svc.publicURL, "https://"),
	})
}

// takeFlash reads and clears the flash message (post-redirect-get).
func (h *Handler) takeFlash(c *echo.Context) *flash {
	ck, err := c.Cookie(flashCookie)
	if err != nil {
		return nil
	}
	c.SetCookie(&http.Cookie{Name: flashCookie, Value: "", Path: h.svc.prefix + "/setup", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	b, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || len(b) > 2048 {
		return nil
	}
	var f flash
	if json.Unmarshal(b, &f) != nil || f.Msg == "" {
		return nil
	}
	if f.Kind != "ok" {
		f.Kind = "error"
	}
	return &f
}

// back redirects (303) to the page after a form, with a flash message;
// client errors become error flashes, anything else is a real error.
func (h *Handler) back(c *echo.Context, to string, err error, okMsg string) error {
	if err != nil {
		he, ok := web.As(err)
		if !ok {
			return err
		}
		if he.Status == http.StatusNotFound && strings.HasPrefix(to, "/setup/feeds/") {
			to = "/setup"
		}
		if he.Status >= 500 {
			h.svc.log.Warn("setup action failed", slog.Any("error", he))
		}
		h.setFlash(c, flash{Kind: "error", Msg: he.Message})
	} else if okMsg != "" {
		h.setFlash(c, flash{Kind: "ok", Msg: okMsg})
	}
	return c.Redirect(http.StatusSeeOther, h.svc.prefix+to)
}

type pageData struct {
	// Languages are the feed languages the snippet options offer.
	Languages     []string
	AppConfigured bool
	MissingVars   []string
	RedirectURI   string
	PublicURL     string
	// MetaURLs are the URLs to register in Meta's App Dashboard.
	MetaURLs []metaURL
	Feeds    []feedView
	Feed     *feedView
	// Checks is the setup check (index page only); CheckProblems counts
	// its failures, which are announced at the top of the page.
	Checks        []checkView
	CheckProblems int
	// Confirm is the question of a confirmation page (with Feed).
	Confirm *confirmation
}

// metaURL is one URL the Instagram app's settings need, and where it goes.
type metaURL struct {
	Label, URL, Where string
}

// checkView is one setup check as the page shows it.
type checkView struct {
	doctor.Check
	State string // "ok", "fail" or "warn": the CSS class suffix
	Label string // the state in words, so it does not rest on colour
}

func checkViews(checks []doctor.Check) ([]checkView, int) {
	out := make([]checkView, len(checks))
	problems := 0
	for i, c := range checks {
		v := checkView{Check: c, State: c.Status()}
		switch v.State {
		case "ok":
			v.Label = "OK"
		case "warn":
			v.Label = "Warning"
		default:
			v.Label = "Problem"
			problems++
		}
		out[i] = v
	}
	return out, problems
}

type feedView struct {
	Status
	State string // the status value (Status.Status, which the embedded struct's name shadows)
	// StateLabel is the status in words for the page.
	StateLabel string
	Snippet    string
	// Opts are the display options chosen on the feed page (the snippet's
	// data- attributes); Preview is the embed page showing them.
	Opts        render.Options
	OptsError   string
	Preview     string
	OriginsText string
	ExpiresIn   string
	// Times preformatted for the page.
	ExpiresAtText, RefreshedAtText, LastFetchText string
	Banner                                        string // loud status line, empty when all is well
	// BannerSource: the banner is about a further account, reconnected
	// through the add-an-account flow.
	BannerSource bool
	// Accounts are the feed's sources with their status in words.
	Accounts      []sourceView
	Notifications *notificationsView
}

// page starts an owner page: the flash message and the CSRF token.
func (h *Handler) page(c *echo.Context, data pageData) ui.Page {
	p := ui.Page{CSRF: CSRFToken(c), Data: data}
	if f := h.takeFlash(c); f != nil {
		if f.Kind == "ok" {
			p.Flash = f.Msg
		} else {
			p.Error = f.Msg
		}
	}
	return p
}

func (h *Handler) basePage() pageData {
	d := pageData{
		Languages:     render.Languages(),
		AppConfigured: h.conn.AppConfigured(), RedirectURI: h.conn.RedirectURI(), PublicURL: h.svc.publicURL,
		MissingVars: h.conn.MissingAppVars(),
		MetaURLs: []metaURL{
			{"Redirect URI", h.conn.RedirectURI(), "Business login settings → OAuth redirect URIs"},
			{"Deauthorize callback URL", h.svc.publicURL + deauthorizePath, "Business login settings → Deauthorize callback URL"},
			{"Data deletion request URL", h.svc.publicURL + deletePath, "Business login settings → Data deletion request URL"},
		},
	}
	return d
}

// snippet is what to paste for a feed shown with opts (render.Snippet),
// and the embed page's URL with the same options for the preview.
func (h *Handler) snippet(id string, opts render.Options) (snippet, preview string) {
	preview = h.svc.prefix + "/feeds/" + url.PathEscape(id) + "/embed"
	if q := opts.Params().Encode(); q != "" {
		preview += "?" + q
	}
	return render.Snippet(h.svc.publicURL, id, opts), preview
}

func (h *Handler) view(st Status) feedView {
	// The page's connect controls are the main account's; a further
	// account's trouble has its own banner and actions.
	main := st.Status
	if len(st.Sources) > 0 {
		main = st.Sources[0].Status
	}
	v := feedView{
		Status:      st,
		State:       string(main),
		StateLabel:  stateLabel(st.Status),
		Opts:        render.DefaultOptions,
		OriginsText: strings.Join(st.AllowedOrigins, "\n"),
	}
	now := h.svc.now()
	if st.LastFetch != nil {
		v.LastFetchText = fmtTime(st.LastFetch.At) + ": ok"
		if !st.LastFetch.OK {
			v.LastFetchText = fmtTime(st.LastFetch.At) + ": failed"
			if st.LastFetch.Error != "" {
				v.LastFetchText += ": " + st.LastFetch.Error
			}
		}
	}
	if st.Token != nil {
		v.ExpiresAtText = fmtTime(st.Token.ExpiresAt)
		if st.Token.RefreshedAt != nil {
			v.RefreshedAtText = fmtTime(*st.Token.RefreshedAt)
		}
		left := st.Token.ExpiresAt.Sub(now)
		switch {
		case left <= 0:
			v.ExpiresIn = "expired"
		case left < 48*time.Hour:
			v.ExpiresIn = "in " + left.Round(time.Hour).String()
		default:
			v.ExpiresIn = "in " + itoa(int(left.Hours()/24)) + " days"
		}
		if st.Token.ExpiryAssumed {
			v.ExpiresIn += " (estimated)"
		}
	}
	for _, src := range st.Sources {
		v.Accounts = append(v.Accounts, sourceView{SourceStatus: src, Label: stateLabel(src.Status)})
	}
	if main != st.Status {
		v.Banner = "One of this feed's accounts needs you: " + st.StatusReason + ". Its last posts stay shown meanwhile; the other accounts' posts keep coming."
		v.BannerSource = true
		return v
	}
	switch st.Status {
	case model.StatusNeedsReauth:
		v.Banner = "Instagram no longer accepts this feed's token: reconnect to show new posts. Visitors see the last posts meanwhile."
		if st.StatusReason != "" {
			v.Banner += " (" + st.StatusReason + ")"
		}
	case model.StatusError:
		v.Banner = "This feed has a problem: " + st.StatusReason
	case model.StatusActive:
		if st.Token != nil && st.Token.ExpiresAt.Sub(now) < connection.ExpiringSoon {
			v.Banner = "The token expires " + v.ExpiresIn + " and could not be refreshed yet: reconnect to be safe."
		}
	}
	return v
}

// sourceView is one of a feed's accounts on its page.
type sourceView struct {
	SourceStatus
	Label string // the status in words
}

// stateLabel is a feed status in the owner's words.
func stateLabel(s model.Status) string {
	switch s {
	case model.StatusActive:
		return "Active"
	case model.StatusNeedsReauth:
		return "Needs reconnecting"
	case model.StatusNotConnected:
		return "Not connected"
	case model.StatusError:
		return "Problem"
	}
	return string(s)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

func (h *Handler) setupIndex(c *echo.Context) error {
	fs, err := h.svc.Feeds(c.Request().Context())
	if err != nil {
		return err
	}
	d := h.basePage()
	for _, f := range fs {
		d.Feeds = append(d.Feeds, h.view(f))
	}
	if h.checks != nil {
		d.Checks, d.CheckProblems = checkViews(h.checks(c.Request().Context()))
	}
	return h.render(c, http.StatusOK, "setup_index", "Feeds", h.page(c, d))
}

func (h *Handler) setupFeed(c *echo.Context) error {
	st, err := h.svc.Feed(c.Request().Context(), c.Param("id"))
	if err != nil {
		if he, ok := web.As(err); ok && he.Status == http.StatusNotFound {
			h.setFlash(c, flash{Kind: "error", Msg: "That feed does not exist (any more)."})
			return c.Redirect(http.StatusSeeOther, h.svc.prefix+"/setup")
		}
		return err
	}
	d := h.basePage()
	v := h.view(st)
	// The snippet options form submits here with GET: no script needed,
	// and the page's strict Content-Security-Policy stays as it is.
	opts, err := render.ParseOptions(c.QueryParams())
	if err != nil {
		opts = render.DefaultOptions
		if he, ok := web.As(err); ok {
			v.OptsError = he.Message
		}
	}
	v.Opts = opts
	v.Snippet, v.Preview = h.snippet(st.ID, opts)
	v.Notifications = h.notifications(c.Request().Context(), st.ID)
	d.Feed = &v
	return h.render(c, http.StatusOK, "setup_feed", st.Name, h.page(c, d))
}

// splitOrigins reads a textarea: one origin per line (commas and spaces also separate).
func splitOrigins(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' || r == ' ' || r == '\t' })
}

func (h *Handler) setupCreate(c *echo.Context) error {
	st, err := h.svc.CreateFeed(c.Request().Context(), c.FormValue("name"), splitOrigins(c.FormValue("allowed_origins")))
	if err != nil {
		return h.back(c, "/setup", err, "")
	}
	return h.back(c, "/setup/feeds/"+st.ID, nil, "Feed created. Connect an Instagram account next.")
}

func feedPage(c *echo.Context) string { return "/setup/feeds/" + c.Param("id") }

func (h *Handler) setupRename(c *echo.Context) error {
	name := c.FormValue("name")
	_, err := h.svc.UpdateFeed(c.Request().Context(), c.Param("id"), Patch{Name: &name})
	return h.back(c, feedPage(c), err, "Name saved.")
}

func (h *Handler) setupOrigins(c *echo.Context) error {
	o := splitOrigins(c.FormValue("allowed_origins"))
	_, err := h.svc.UpdateFeed(c.Request().Context(), c.Param("id"), Patch{AllowedOrigins: &o})
	return h.back(c, feedPage(c), err, "Allowed sites saved.")
}

func (h *Handler) setupConnect(c *echo.Context) error {
	var (
		u   string
		err error
	)
	if c.FormValue("account") == "other" {
		u, err = h.conn.ConnectOtherAccount(c.Request().Context(), c.Param("id"), h.sessionBinding(c))
		err = clientErr(err)
	} else {
		u, err = h.svc.Connect(c.Request().Context(), c.Param("id"), h.sessionBinding(c))
	}
	if err != nil {
		return h.back(c, feedPage(c), err, "")
	}
	return c.Redirect(http.StatusSeeOther, u)
}

func (h *Handler) setupDisconnect(c *echo.Context) error {
	if c.FormValue("confirm") != "yes" {
		return h.back(c, feedPage(c)+"/disconnect", nil, "")
	}
	_, err := h.svc.Disconnect(c.Request().Context(), c.Param("id"))
	return h.back(c, feedPage(c), err, "Disconnected: the token, posts and stored images are deleted.")
}

func (h *Handler) setupToken(c *echo.Context) error {
	_, err := h.svc.PasteToken(c.Request().Context(), c.Param("id"), c.FormValue("access_token"))
	return h.back(c, feedPage(c), err, "Token accepted. feedd keeps it alive from now on.")
}

func (h *Handler) setupRefresh(c *echo.Context) error {
	extendWriteDeadline(c)
	st, err := h.svc.FetchNow(c.Request().Context(), c.Param("id"))
	if err == nil && st.LastFetch != nil && !st.LastFetch.OK {
		return h.back(c, feedPage(c), &web.Error{Status: http.StatusBadGateway, Message: "Fetching failed: " + st.LastFetch.Error}, "")
	}
	return h.back(c, feedPage(c), err, "Fetched.")
}

func (h *Handler) setupDelete(c *echo.Context) error {
	if c.FormValue("confirm") != "yes" {
		return h.back(c, feedPage(c)+"/delete", nil, "")
	}
	err := h.svc.DeleteFeed(c.Request().Context(), c.Param("id"))
	return h.back(c, "/setup", err, "Feed deleted with its token, posts and images.")
}

// confirmation is what a confirmation page asks before a destructive
// action; its form posts to the feed's Action with confirm=yes.
type confirmation struct {
	Action, Title, Text, Button string
}

var (
	disconnectConfirm = confirmation{Action: "disconnect", Title: "Disconnect the Instagram account?",
		Text:   "feedd deletes this feed's token, posts and stored images. The feed and its snippet stay, and show nothing until you connect an account again.",
		Button: "Disconnect and delete the posts"}
	deleteConfirm = confirmation{Action: "delete", Title: "Delete this feed?",
		Text:   "feedd deletes the feed with its token, posts and stored images. Sites that embed it show nothing.",
		Button: "Delete the feed"}
)

// confirmPage asks before a destructive action, so that it needs two
// deliberate steps with or without JavaScript.
func (h *Handler) confirmPage(q confirmation) echo.HandlerFunc {
	return func(c *echo.Context) error {
		st, err := h.svc.Feed(c.Request().Context(), c.Param("id"))
		if err != nil {
			if he, ok := web.As(err); ok && he.Status == http.StatusNotFound {
				return h.back(c, "/setup", err, "")
			}
			return err
		}
		d := h.basePage()
		v := h.view(st)
		d.Feed, d.Confirm = &v, &q
		return h.render(c, http.StatusOK, "setup_confirm", q.Title, h.page(c, d))
	}
}

// setupPreview answers the feed page's script: the snippet and the
// preview's URL for the options in the query, built by the same code as
// the page, so the script holds no copy of the snippet's rules.
func (h *Handler) setupPreview(c *echo.Context) error {
	st, err := h.svc.Feed(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	opts, err := render.ParseOptions(c.QueryParams())
	if err != nil {
		return err
	}
	snippet, preview := h.snippet(st.ID, opts)
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, map[string]string{"snippet": snippet, "preview": preview})
}
