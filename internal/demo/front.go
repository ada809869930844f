package demo

import (
	"bytes"
	_ "embed"
	"html/template"
	"net"
	"net/http"
	"sync"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/app"
	"github.com/feedd/feedd/internal/render"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/web"
)

//go:embed front.html
var frontHTML string

var frontTmpl = template.Must(template.New("front").Parse(frontHTML))

// frontPage is the demo's page at /.
type frontPage struct {
	m    *app.Main
	base string

	mu     sync.RWMutex
	feedID string
}

func newFrontPage(m *app.Main, base string) *frontPage {
	return &frontPage{m: m, base: base}
}

func (f *frontPage) setFeed(id string) {
	f.mu.Lock()
	f.feedID = id
	f.mu.Unlock()
}

type frontData struct {
	Base, FeedID  string
	Snippet       template.HTML // render.Snippet escapes what it puts in
	SecondAccount string
	SandboxPath   string
}

func (f *frontPage) serve(c *echo.Context) error {
	f.mu.RLock()
	id := f.feedID
	f.mu.RUnlock()
	d := frontData{Base: f.base, FeedID: id, SecondAccount: sandbox.AccountCreator, SandboxPath: SandboxPath}
	if id != "" {
		d.Snippet = template.HTML(render.Snippet(f.base, id, render.DefaultOptions))
	}
	var buf bytes.Buffer
	if err := frontTmpl.Execute(&buf, d); err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if id == "" {
		// Still connecting: the page reloads itself in a moment.
		h.Set("Refresh", "1")
	}
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}

// setupLink signs a visitor of the demo into the setup pages with a fresh
// one-time link. Only browsers on this machine get one: the demo listens on
// loopback, and a demo bound to another interface must not hand the admin
// session to its network.
func (f *frontPage) setupLink(c *echo.Context) error {
	host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return &web.Error{Status: http.StatusForbidden, Code: "forbidden",
			Message: "setup links are handed out to this machine's browsers only; use the admin token printed at start"}
	}
	link, err := f.m.Gate.IssueSetupLink(c.Request().Context())
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Redirect(http.StatusSeeOther, link)
}
