package owner

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/ui"
)

// Disconnect and delete take two deliberate steps, with or without
// JavaScript: a post without the confirmation lands on a page that asks,
// and only that page's form acts.
func TestDestructiveActionsAskFirst(t *testing.T) {
	e := newEnv(t)
	id := e.connectAPI("Bakery", sandbox.AccountBusiness)

	for _, action := range []string{"disconnect", "delete"} {
		resp, _ := e.post("/setup/feeds/"+id+"/"+action, nil)
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/setup/feeds/"+id+"/"+action {
			t.Fatalf("%s without confirmation: %d, Location %q", action, resp.StatusCode, loc)
		}
		if st := e.status(id); st.Status != model.StatusActive {
			t.Fatalf("%s without confirmation changed the feed: %s", action, st.Status)
		}
		resp, page := e.get(e.srv.URL + "/setup/feeds/" + id + "/" + action)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s confirmation page: %d", action, resp.StatusCode)
		}
		for _, want := range []string{`action="/setup/feeds/` + id + `/` + action + `"`, `name="confirm" value="yes"`,
			`class="danger solid"`, `href="/setup/feeds/` + id + `">Cancel`, "cannot be undone"} {
			if !strings.Contains(page, want) {
				t.Errorf("%s confirmation page lacks %q:\n%s", action, want, page)
			}
		}
	}

	resp, _ := e.post("/setup/feeds/"+id+"/disconnect", url.Values{"confirm": {"yes"}})
	if resp.StatusCode != http.StatusSeeOther || e.status(id).Status != model.StatusNotConnected {
		t.Fatalf("confirmed disconnect: %d, status %s", resp.StatusCode, e.status(id).Status)
	}
	resp, _ = e.post("/setup/feeds/"+id+"/delete", url.Values{"confirm": {"yes"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup" {
		t.Fatalf("confirmed delete: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if code := e.api("GET", "/api/admin/feeds/"+id, "", nil); code != http.StatusNotFound {
		t.Fatalf("feed after a confirmed delete: %d", code)
	}
	// The confirmation page of a feed that is gone leads home.
	resp, _ = e.get(e.srv.URL + "/setup/feeds/" + id + "/delete")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup" {
		t.Fatalf("confirmation page of a deleted feed: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// The feed page's script gets the snippet and the preview URL from the
// server, the same as the page shows for the same options.
func TestPreviewAnswersTheSnippetOfThePage(t *testing.T) {
	e := newEnv(t)
	id := e.connectAPI("Bakery", sandbox.AccountBusiness)
	q := "?columns=4&layout=carousel&lang=de"

	resp, body := e.get(e.srv.URL + "/setup/feeds/" + id + "/preview" + q)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("preview: %d %q %s", resp.StatusCode, resp.Header.Get("Cache-Control"), body)
	}
	var got struct{ Snippet, Preview string }
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Preview != "/feeds/"+id+"/embed?columns=4&lang=de&layout=carousel" {
		t.Errorf("preview URL = %q", got.Preview)
	}
	_, page := e.get(e.srv.URL + "/setup/feeds/" + id + q)
	if !strings.Contains(page, strings.NewReplacer(`"`, "&#34;", "<", "&lt;", ">", "&gt;").Replace(got.Snippet)) {
		t.Errorf("the page shows another snippet than the preview answer %q", got.Snippet)
	}

	// Errors come as the JSON envelope the script reads, naming the option.
	asScript := func(c *http.Client, u string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Accept", "application/json")
		resp, err := c.Do(req)
		return resp, e.answer(resp, err)
	}
	var ae apiError
	resp, body = asScript(e.browser, e.srv.URL+"/setup/feeds/"+id+"/preview?columns=99")
	if err := json.Unmarshal([]byte(body), &ae); err != nil || resp.StatusCode != http.StatusBadRequest || !strings.Contains(ae.Error.Message, "columns") {
		t.Errorf("bad option: %d %s", resp.StatusCode, body)
	}
	if resp, _ := asScript(e.browser, e.srv.URL+"/setup/feeds/zzzzzzzzzz/preview"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown feed: %d", resp.StatusCode)
	}
	// Signed out, it tells nothing.
	resp, body = asScript(&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		e.srv.URL+"/setup/feeds/"+id+"/preview")
	if resp.StatusCode == http.StatusOK || strings.Contains(body, "data-feedd") {
		t.Errorf("signed out: %d %s", resp.StatusCode, body)
	}
}

// "Connect a different account" asks Instagram for its login screen; the
// plain connect does not.
func TestConnectDifferentAccountForcesInstagramLogin(t *testing.T) {
	e := newEnv(t)
	id := e.createFeed("Bakery").ID
	_, page := e.get(e.srv.URL + "/setup/feeds/" + id)
	for _, want := range []string{"logged in on Instagram in this browser", `name="account" value="other"`, "Connect a different account"} {
		if !strings.Contains(page, want) {
			t.Errorf("feed page lacks %q", want)
		}
	}
	resp, _ := e.post("/setup/feeds/"+id+"/connect", nil)
	if u, err := url.Parse(resp.Header.Get("Location")); err != nil || u.Query().Has("force_reauth") {
		t.Errorf("plain connect: Location %q", resp.Header.Get("Location"))
	}
	resp, _ = e.post("/setup/feeds/"+id+"/connect", url.Values{"account": {"other"}})
	loc := resp.Header.Get("Location")
	if u, err := url.Parse(loc); err != nil || u.Query().Get("force_reauth") != "true" {
		t.Fatalf("connect a different account: %d, Location %q", resp.StatusCode, loc)
	}
	// The sandbox takes it like Instagram does, and the connect completes.
	if resp, _ := e.get(e.authorize(loc, sandbox.AccountCreator)); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback: %d", resp.StatusCode)
	}
	if st := e.status(id); st.Status != model.StatusActive || st.Account == nil || st.Account.Username == "" {
		t.Fatalf("after connecting a different account: %+v", st)
	}
}

// The setup pages show the three URLs Meta's dashboard needs, together,
// with the public URL's path, and the note about the trailing slash and
// blocked callbacks.
func TestSetupPagesShowMetaURLs(t *testing.T) {
	e := newEnv(t)
	id := e.createFeed("Bakery").ID
	for _, page := range []string{"/setup", "/setup/feeds/" + id} {
		_, body := e.get(e.srv.URL + page)
		for _, want := range []string{
			`<code class="copy">` + e.srv.URL + `/auth/instagram/callback</code>`,
			`<code class="copy">` + e.srv.URL + `/auth/instagram/deauthorize</code>`,
			`<code class="copy">` + e.srv.URL + `/auth/instagram/delete</code>`,
			"trailing slash", "bot blocking",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s lacks %q", page, want)
			}
		}
	}
}

// Signed-in pages load the one script, served from feedd with the
// stylesheet's caching; the sign-in page loads none.
func TestSetupScriptIsServedToSignedInPages(t *testing.T) {
	e := newEnv(t)
	_, page := e.get(e.srv.URL + "/setup")
	if !strings.Contains(page, `<script src="`+ui.ScriptPath+`" defer></script>`) {
		t.Fatalf("setup page does not load the script:\n%s", page)
	}
	resp, body := e.get(e.srv.URL + ui.ScriptPath)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "immutable") || !strings.Contains(body, "data-preview") {
		t.Fatalf("script: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
	}
	resp, err := http.Get(e.srv.URL + "/setup/login")
	if body := e.answer(resp, err); strings.Contains(body, "<script") {
		t.Errorf("the sign-in page loads a script:\n%s", body)
	}
}
