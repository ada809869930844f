// Package ui is the shared base layout of feedd's server-rendered owner
// pages: one html/template layout, one stylesheet, and one small script
// that only enhances pages which work without it (the live preview and
// copy buttons).
//
// A page package parses its own template files on top of the layout with
// Parse; each file defines "content" (and reads the Page it is given):
//
//	{{define "content"}}<h1>{{.Title}}</h1>{{with .Data}}...{{end}}{{end}}
//
// and renders it with Render. Message renders a simple titled page for
// errors and notices without a template of its own.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
)

//go:embed ui.css setup.js layout.html message.html
var files embed.FS

// css is the stylesheet served at CSSPath, script the script at ScriptPath.
var (
	css    = mustRead("ui.css")
	script = mustRead("setup.js")
)

// CSSRoute is the route that serves the stylesheet; it must be reachable
// without signing in (the sign-in page uses it).
const CSSRoute = "/setup/assets/ui.css"

// CSSPath is the stylesheet's URL path with a content version, so it can be
// cached as immutable and still change with a new release.
var CSSPath = CSSRoute + "?v=" + version(css)

// ScriptRoute is the route that serves the signed-in pages' script; the
// pages' Content-Security-Policy allows scripts from feedd's origin only.
const ScriptRoute = "/setup/assets/setup.js"

// ScriptPath is the script's URL path with a content version.
var ScriptPath = ScriptRoute + "?v=" + version(script)

var (
	base = template.Must(template.New("layout").Funcs(template.FuncMap{
		"cssPath": func() string { return CSSPath }, "scriptPath": func() string { return ScriptPath }}).ParseFS(files, "layout.html"))
	message = template.Must(template.Must(base.Clone()).ParseFS(files, "message.html"))
)

// Page is what the layout renders. Page packages put their own data in Data.
type Page struct {
	Title  string // the page title and, usually, its heading
	Flash  string // a confirmation shown above the content
	Error  string // an error shown above the content
	CSRF   string // the session's CSRF token; when set, the sign-out button is shown
	Prefix string // the public URL's path prefix ("" at the root) for links
	Data   any    // page-specific data
}

// Message is the data of a simple notice or error page.
type Message struct {
	Title      string
	Paragraphs []string
	Code       string // shown verbatim in a code block (e.g. a redirect URI to copy)
	Link       string // an optional next step
	LinkText   string
	Detail     string // small print, e.g. a request id
}

// Parse returns a template set made of the base layout plus the files
// matching patterns in fsys, which define "content". Each page gets its own
// set so pages can all define "content".
func Parse(fsys fs.FS, patterns ...string) (*template.Template, error) {
	t, err := base.Clone()
	if err != nil {
		return nil, fmt.Errorf("ui: clone layout: %w", err)
	}
	if _, err := t.ParseFS(fsys, patterns...); err != nil {
		return nil, fmt.Errorf("ui: parse page: %w", err)
	}
	return t, nil
}

// Must panics when Parse failed; for package-level page templates.
func Must(t *template.Template, err error) *template.Template {
	if err != nil {
		panic(err)
	}
	return t
}

// Render executes t's layout with p and writes it with status. The page is
// rendered into a buffer first so a template error becomes an error, not
// half a page.
func Render(w http.ResponseWriter, status int, t *template.Template, p Page) error {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		return fmt.Errorf("ui: render %q: %w", p.Title, err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	// Owner pages carry CSRF tokens and account details: never cache them.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// RenderMessage renders a notice or error page.
func RenderMessage(w http.ResponseWriter, status int, p Page, m Message) error {
	if p.Title == "" {
		p.Title = m.Title
	}
	p.Data = m
	return Render(w, status, message, p)
}

// CSS returns the stylesheet's bytes.
func CSS() []byte { return css }

// ServeCSS serves the stylesheet with a long cache lifetime: its URL
// (CSSPath) changes whenever its content does.
func ServeCSS(w http.ResponseWriter, r *http.Request) {
	serveAsset(w, r, "text/css; charset=utf-8", css)
}

// ServeScript serves the script like ServeCSS serves the stylesheet.
func ServeScript(w http.ResponseWriter, r *http.Request) {
	serveAsset(w, r, "text/javascript; charset=utf-8", script)
}

func serveAsset(w http.ResponseWriter, r *http.Request, contentType string, b []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

func version(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

func mustRead(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}
