package ui

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestRenderPageThroughLayout(t *testing.T) {
	tmpl := Must(Parse(os.DirFS("testdata"), "page.html"))
	w := httptest.NewRecorder()
	err := Render(w, http.StatusTeapot, tmpl, Page{Title: "Feeds", Flash: "Saved.", CSRF: "tok123", Data: "<script>x</script>"})
	if err != nil {
		t.Fatal(err)
	}
	body := w.Body.String()
	if w.Code != http.StatusTeapot {
		t.Errorf("status = %d", w.Code)
	}
	for _, want := range []string{
		"<title>Feeds · feedd</title>",
		`<h1>Feeds</h1>`,
		`&lt;script&gt;x&lt;/script&gt;`,
		`role="status">Saved.`,
		`name="_csrf" value="tok123"`,
		`href="` + CSSPath,
		`name="viewport"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("page data was not escaped")
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q", got)
	}
}

func TestSignOutOnlyWithSession(t *testing.T) {
	w := httptest.NewRecorder()
	if err := RenderMessage(w, 404, Page{}, Message{Title: "Not found", Paragraphs: []string{"No such page."}, Code: "https://x/cb"}); err != nil {
		t.Fatal(err)
	}
	body := w.Body.String()
	if strings.Contains(body, "Sign out") {
		t.Error("sign-out shown without a session")
	}
	for _, want := range []string{"<h1>Not found</h1>", "<p>No such page.</p>", "<pre><code>https://x/cb</code></pre>"} {
		if !strings.Contains(body, want) {
			t.Errorf("message page lacks %q:\n%s", want, body)
		}
	}
}

func TestPrefixedLinks(t *testing.T) {
	w := httptest.NewRecorder()
	if err := RenderMessage(w, 200, Page{Prefix: "/feedd", CSRF: "c"}, Message{Title: "Hi"}); err != nil {
		t.Fatal(err)
	}
	body := w.Body.String()
	for _, want := range []string{`href="/feedd/setup"`, `action="/feedd/setup/logout"`, `href="/feedd/setup/assets/ui.css?v=`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestServeCSS(t *testing.T) {
	w := httptest.NewRecorder()
	ServeCSS(w, httptest.NewRequest("GET", CSSPath, nil))
	if w.Code != 200 || !strings.Contains(w.Body.String(), "prefers-color-scheme: dark") {
		t.Fatalf("css: %d", w.Code)
	}
	if !strings.Contains(w.Header().Get("Cache-Control"), "immutable") {
		t.Error("css not cacheable")
	}
}

// Signed-in pages load the script from feedd (the setup pages'
// Content-Security-Policy allows no inline script); other pages load none.
func TestScriptOnlyOnSignedInPages(t *testing.T) {
	w := httptest.NewRecorder()
	if err := RenderMessage(w, 200, Page{Prefix: "/feedd", CSRF: "c"}, Message{Title: "Hi"}); err != nil {
		t.Fatal(err)
	}
	if want := `<script src="/feedd` + ScriptPath + `" defer></script>`; !strings.Contains(w.Body.String(), want) {
		t.Errorf("signed-in page lacks %q", want)
	}
	w = httptest.NewRecorder()
	if err := RenderMessage(w, 200, Page{}, Message{Title: "Hi"}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(w.Body.String(), "<script") {
		t.Error("a page without a session loads the script")
	}
	w = httptest.NewRecorder()
	ServeScript(w, httptest.NewRequest("GET", ScriptPath, nil))
	if w.Code != 200 || w.Header().Get("Content-Type") != "text/javascript; charset=utf-8" || !strings.Contains(w.Header().Get("Cache-Control"), "immutable") {
		t.Fatalf("script: %d %v", w.Code, w.Header())
	}
}
