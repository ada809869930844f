package owner

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
)

type sourceList struct {
	Sources []SourceStatus `json:"sources"`
}

// addSourceAPI adds acct to the feed through the API's connect flow.
func (e *env) addSourceAPI(id, acct string) {
	e.t.Helper()
	var out struct {
		AuthorizeURL string `json:"authorize_url"`
	}
	if code := e.api("POST", "/api/admin/feeds/"+id+"/sources", `{}`, &out); code != http.StatusOK || out.AuthorizeURL == "" {
		e.t.Fatalf("start adding a source: %d %+v", code, out)
	}
	if resp, body := e.get(e.authorize(out.AuthorizeURL, acct)); resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("add source %s: %d %s", acct, resp.StatusCode, body)
	}
}

func TestAdminAPISources(t *testing.T) {
	e := newEnv(t)
	id := e.connectAPI("Shop", sandbox.AccountBusiness)
	other := e.connectAPI("Other", sandbox.AccountCreator)
	e.addSourceAPI(id, sandbox.AccountCreator)

	var list sourceList
	if code := e.api("GET", "/api/admin/feeds/"+id+"/sources", "", &list); code != 200 || len(list.Sources) != 2 {
		t.Fatalf("sources: %d %+v", code, list)
	}
	main, src := list.Sources[0], list.Sources[1]
	if main.ID != model.MainSource || main.Username != sandbox.AccountBusiness || !main.Header ||
		src.Username != sandbox.AccountCreator || src.Header || src.Status != model.StatusActive || src.Token == nil {
		t.Fatalf("sources: %+v", list.Sources)
	}
	var otherList sourceList
	e.api("GET", "/api/admin/feeds/"+other+"/sources", "", &otherList)

	bad := []struct{ name, method, path, body, field string }{
		{"account added twice", "POST", "/api/admin/feeds/" + id + "/sources",
			`{"access_token":"` + e.Sandbox.MintLongLivedToken(sandbox.AccountCreator, e.Clock.Now()) + `"}`, "access_token"},
		{"the main account as a source", "POST", "/api/admin/feeds/" + id + "/sources",
			`{"access_token":"` + e.Sandbox.MintLongLivedToken(sandbox.AccountBusiness, e.Clock.Now()) + `"}`, "access_token"},
		{"empty token", "POST", "/api/admin/feeds/" + id + "/sources", `{"access_token":""}`, "access_token"},
		{"another feed's source removed", "DELETE", "/api/admin/feeds/" + other + "/sources/" + src.ID, "", "source"},
		{"another feed's source in the header", "PATCH", "/api/admin/feeds/" + other + "/sources/" + src.ID, `{"header":true}`, "source"},
		{"the main source removed", "DELETE", "/api/admin/feeds/" + id + "/sources/main", "", "source"},
		{"a hostile source id", "DELETE", "/api/admin/feeds/" + id + "/sources/" + url.PathEscape("<b>x"), "", "source"},
		{"header false", "PATCH", "/api/admin/feeds/" + id + "/sources/" + src.ID, `{"header":false}`, "header"},
		{"unknown field", "PATCH", "/api/admin/feeds/" + id + "/sources/" + src.ID, `{"headline":true}`, "headline"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			var ae apiError
			if code := e.api(tt.method, tt.path, tt.body, &ae); code != http.StatusBadRequest || !strings.HasPrefix(ae.Error.Message, tt.field) {
				t.Fatalf("%d %+v: want 400 naming %q", code, ae.Error, tt.field)
			}
		})
	}
	if code := e.api("GET", "/api/admin/feeds/"+id+"/sources", "", &list); code != 200 || len(list.Sources) != 2 {
		t.Fatalf("refusals changed the sources: %+v", list)
	}
	if code := e.api("GET", "/api/admin/feeds/"+other+"/sources", "", &list); code != 200 || len(list.Sources) != len(otherList.Sources) {
		t.Fatalf("refusals changed the other feed's sources: %+v", list)
	}
	if code := e.api("GET", "/api/admin/feeds/zzzzzzzzzz/sources", "", nil); code != http.StatusNotFound {
		t.Fatalf("sources of an unknown feed: %d", code)
	}

	before := e.Feeds.Invalidations(id)
	if code := e.api("PATCH", "/api/admin/feeds/"+id+"/sources/"+src.ID, `{"header":true}`, &list); code != 200 ||
		list.Sources[0].Header || !list.Sources[1].Header {
		t.Fatalf("header choice: %d %+v", code, list)
	}
	if e.Feeds.Invalidations(id) == before {
		t.Error("the header choice did not drop the feed's cached answers")
	}

	// The source's token refused: the feed's status names it, the main
	// account stays active.
	f, _ := e.Store.Feed(context.Background(), id)
	srcs, _ := e.Store.Sources(context.Background(), id)
	tok, _ := e.conn.SourceAccessToken(context.Background(), id, src.ID)
	if err := e.conn.SourceTokenRejected(context.Background(), id, src.ID, f.Generation, srcs[1].Generation, tok, "token revoked"); err != nil {
		t.Fatal(err)
	}
	st := e.status(id)
	if st.Status != model.StatusNeedsReauth || !strings.Contains(st.StatusReason, "@"+sandbox.AccountCreator) ||
		st.Sources[0].Status != model.StatusActive || st.Sources[1].Status != model.StatusNeedsReauth {
		t.Fatalf("status after the source's token was refused: %s %q %+v", st.Status, st.StatusReason, st.Sources)
	}
	var all struct{ Feeds []Status }
	e.api("GET", "/api/admin/feeds", "", &all)
	for _, f := range all.Feeds {
		if f.ID == id && (f.Status != model.StatusNeedsReauth || f.StatusReason != st.StatusReason || len(f.Sources) != 2) {
			t.Fatalf("the list shows %s %q with %d sources, the feed's status %s %q", f.Status, f.StatusReason, len(f.Sources), st.Status, st.StatusReason)
		}
	}

	if code := e.api("DELETE", "/api/admin/feeds/"+id+"/sources/"+src.ID, "", nil); code != http.StatusNoContent {
		t.Fatalf("remove: %d", code)
	}
	st = e.status(id)
	if st.Status != model.StatusActive || len(st.Sources) != 1 || !st.Sources[0].Header {
		t.Fatalf("after the removal: %s %+v", st.Status, st.Sources)
	}
}

// The feed page lists the accounts and adds, heads and removes them with
// plain forms (no JavaScript).
func TestSetupPageSources(t *testing.T) {
	e := newEnv(t)
	id := e.connectAPI("Shop", sandbox.AccountBusiness)
	_, page := e.get(e.srv.URL + "/setup/feeds/" + id)
	if !strings.Contains(page, `id="sources"`) || !strings.Contains(page, "Add another account") || !strings.Contains(page, "@"+sandbox.AccountBusiness) {
		t.Fatal("the feed page has no accounts section with an Add another account action")
	}
	resp, _ := e.post("/setup/feeds/"+id+"/sources", nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("add another account: %d", resp.StatusCode)
	}
	authz := resp.Header.Get("Location")
	if u, _ := url.Parse(authz); u.Query().Get("force_reauth") != "true" {
		t.Errorf("the add flow does not show Instagram's login screen: %s", authz)
	}
	if resp, _ := e.get(e.authorize(authz, sandbox.AccountCreator)); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback: %d", resp.StatusCode)
	}
	srcs, err := e.Store.Sources(context.Background(), id)
	if err != nil || len(srcs) != 2 {
		t.Fatalf("sources after the add: %d, %v", len(srcs), err)
	}
	sid := srcs[1].ID
	_, page = e.get(e.srv.URL + "/setup/feeds/" + id)
	if !strings.Contains(page, `data-source="`+sid+`"`) || !strings.Contains(page, "@"+sandbox.AccountCreator) {
		t.Fatal("the added account is not listed")
	}
	if resp, _ := e.post("/setup/feeds/"+id+"/sources/"+sid+"/header", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("header: %d", resp.StatusCode)
	}
	if f, _ := e.Store.Feed(context.Background(), id); f.HeaderSource != sid {
		t.Fatalf("header source %q", f.HeaderSource)
	}
	// Removal asks first; without the confirmation nothing goes.
	resp, page = e.get(e.srv.URL + "/setup/feeds/" + id + "/sources/" + sid + "/remove")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Remove @"+sandbox.AccountCreator) {
		t.Fatalf("confirmation page: %d", resp.StatusCode)
	}
	e.post("/setup/feeds/"+id+"/sources/"+sid+"/remove", nil)
	if srcs, _ := e.Store.Sources(context.Background(), id); len(srcs) != 2 {
		t.Fatal("removed without confirmation")
	}
	e.post("/setup/feeds/"+id+"/sources/"+sid+"/remove", url.Values{"confirm": {"yes"}})
	if srcs, _ := e.Store.Sources(context.Background(), id); len(srcs) != 1 {
		t.Fatalf("%d sources after the confirmed removal", len(srcs))
	}
}
