package owner

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/cache"
	"github.com/feedd/feedd/internal/feed"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
)

// storePosts replaces the feed's stored posts by ids, newest first, each
// with an image, as a poll would.
func (e *env) storePosts(id string, captions map[string]string, ids ...string) {
	e.t.Helper()
	e.settle() // the fetch a connect starts would replace them
	ctx := context.Background()
	f, err := e.Store.Feed(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	var posts []model.Post
	for i, pid := range ids {
		key := "img:" + pid
		if err := e.Store.PutMedia(ctx, model.Media{Key: key, Width: 320, Height: 320,
			Variants: []model.Variant{{Width: 320, Height: 320, File: "m/" + pid + ".jpg", Bytes: 1}}}); err != nil {
			e.t.Fatal(err)
		}
		p := model.Post{ID: pid, MediaType: model.MediaImage, Permalink: "https://www.instagram.com/p/" + pid + "/",
			Timestamp: e.Clock.Now().Add(-time.Duration(i) * time.Hour), MediaKey: key}
		if c, ok := captions[pid]; ok {
			p.Caption = &c
		}
		posts = append(posts, p)
	}
	if _, err := e.Store.ReplacePosts(ctx, id, f.Generation, nil, posts, e.Clock.Now()); err != nil {
		e.t.Fatal(err)
	}
}

// shownIDs lists the admin API's posts: the shown ones in order, then
// "|" and the others with their reasons.
func (e *env) shownIDs(id string) string {
	e.t.Helper()
	var out struct{ Posts []PostView }
	if code := e.api("GET", "/api/admin/feeds/"+id+"/posts", "", &out); code != http.StatusOK {
		e.t.Fatalf("posts: %d", code)
	}
	var shown, left []string
	for _, p := range out.Posts {
		if p.Shown {
			shown = append(shown, p.ID)
		} else {
			left = append(left, p.ID+":"+p.Reason)
		}
	}
	return strings.Join(shown, ",") + "|" + strings.Join(left, ",")
}

func TestAdminAPICuration(t *testing.T) {
	e := newEnv(t)
	id := e.connectAPI("Bakery", sandbox.AccountBusiness)
	e.storePosts(id, map[string]string{"p1": "New #cake", "p4": "Closed for the sale"}, "p1", "p2", "p3", "p4", "p5")

	var v CurationView
	if code := e.api("GET", "/api/admin/feeds/"+id+"/curation", "", &v); code != 200 || v.UpdatedAt != nil ||
		v.Hidden == nil || len(v.Pinned)+len(v.Include)+len(v.Exclude)+len(v.Types) != 0 || v.MaxPosts != 0 {
		t.Fatalf("a new feed's curation: %d %+v", code, v)
	}
	inval := e.Feeds.Invalidations(id)
	if code := e.api("PATCH", "/api/admin/feeds/"+id+"/curation",
		`{"hidden":["p2"],"pinned":["p4","p3"],"exclude":["#cake"],"types":["image","carousel"],"max_posts":3}`, &v); code != 200 {
		t.Fatalf("patch: %d %+v", code, v)
	}
	if v.UpdatedAt == nil || strings.Join(v.Pinned, ",") != "p4,p3" || strings.Join(v.Types, ",") != "image,carousel" || v.MaxPosts != 3 {
		t.Fatalf("patched curation %+v", v)
	}
	if e.Feeds.Invalidations(id) != inval+1 {
		t.Fatal("the change did not invalidate the feed's cached answers")
	}
	if got := e.shownIDs(id); got != "p4,p3,p5|p1:exclude,p2:hidden" {
		t.Fatalf("posts after the change: %s", got)
	}
	// Fields left out keep their value.
	if code := e.api("PATCH", "/api/admin/feeds/"+id+"/curation", `{"max_posts":0,"exclude":[]}`, &v); code != 200 ||
		strings.Join(v.Hidden, ",") != "p2" || v.MaxPosts != 0 {
		t.Fatalf("second patch: %d %+v", code, v)
	}

	many := `"` + strings.Repeat(`w","`, feed.MaxRules) + `w"`
	bad := []struct{ name, body, code, field string }{
		{"empty rule", `{"include":["cake",""]}`, "invalid_include", "include[1]"},
		{"too many rules", `{"exclude":[` + many + `]}`, "invalid_rules", "include, exclude"},
		{"rule too long", `{"exclude":["` + strings.Repeat("x", 101) + `"]}`, "invalid_exclude", "exclude[0]"},
		{"pin of an unknown post", `{"pinned":["p1","nope"]}`, "invalid_pinned", "pinned[1]"},
		{"hide of an unknown post", `{"hidden":["nope"]}`, "invalid_hidden", "hidden[0]"},
		{"hostile id", `{"hidden":["<script>"]}`, "invalid_hidden", "hidden[0]"},
		{"unknown type", `{"types":["image","story"]}`, "invalid_types", "types[1]"},
		{"hidden and pinned", `{"hidden":["p1"],"pinned":["p1"]}`, "invalid_pinned", "pinned[0]"},
		{"negative cap", `{"max_posts":-1}`, "invalid_max_posts", "max_posts"},
		{"cap of another type", `{"max_posts":"ten"}`, "invalid_json", "max_posts: must be a whole number"},
		{"unknown field", `{"sources":[]}`, "unknown_field", "sources"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			var ae apiError
			if code := e.api("PATCH", "/api/admin/feeds/"+id+"/curation", tt.body, &ae); code != http.StatusBadRequest ||
				ae.Error.Code != tt.code || !strings.HasPrefix(ae.Error.Message, tt.field) {
				t.Fatalf("%d %+v: want 400 %s naming %q", code, ae.Error, tt.code, tt.field)
			}
		})
	}
	if got := e.shownIDs(id); got != "p4,p3,p1,p5|p2:hidden" {
		t.Fatalf("refused changes changed the feed: %s", got)
	}

	// A pinned post that is no longer stored is accepted and forgotten.
	e.storePosts(id, nil, "p1", "p2", "p4", "p5", "p6")
	if code := e.api("PATCH", "/api/admin/feeds/"+id+"/curation", `{"pinned":["p3","p6"],"types":[]}`, &v); code != 200 ||
		strings.Join(v.Pinned, ",") != "p6" || strings.Join(v.Hidden, ",") != "p2" {
		t.Fatalf("patch with a post no longer stored: %d %+v", code, v)
	}

	// A post none of whose images is stored yet is not shown, and the
	// cap counts only the others, as in the feed.
	ctx := context.Background()
	f, _ := e.Store.Feed(ctx, id)
	if _, err := e.Store.ReplacePosts(ctx, id, f.Generation, nil, []model.Post{
		{ID: "p0", MediaType: model.MediaImage, Timestamp: e.Clock.Now().Add(time.Hour), MediaKey: "not-stored"},
		{ID: "p1", MediaType: model.MediaImage, Timestamp: e.Clock.Now(), MediaKey: "img:p1"},
		{ID: "p2", MediaType: model.MediaImage, Timestamp: e.Clock.Now().Add(-time.Hour), MediaKey: "img:p2"},
	}, e.Clock.Now()); err != nil {
		t.Fatal(err)
	}
	e.api("PATCH", "/api/admin/feeds/"+id+"/curation", `{"pinned":[],"max_posts":1}`, &v)
	if got := e.shownIDs(id); got != "p1|p2:hidden,p0:no_image" {
		t.Fatalf("with a post whose image is not stored: %s", got)
	}

	for _, path := range []string{"/curation", "/posts"} {
		var ae apiError
		if code := e.api("GET", "/api/admin/feeds/zzzzzzzzzz"+path, "", &ae); code != http.StatusNotFound {
			t.Errorf("%s of an unknown feed: %d", path, code)
		}
		req, _ := http.NewRequest("GET", e.srv.URL+"/api/admin/feeds/"+id+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if e.answer(resp, err); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without the admin token: %d", path, resp.StatusCode)
		}
	}
}

// The owner's change reaches the served feed at once, with a new ETag,
// and without a call to Instagram.
func TestCurationChangeServesNewETagWithoutGraphCall(t *testing.T) {
	e := newEnv(t)
	id := e.connectAPI("Bakery", sandbox.AccountBusiness)
	e.storePosts(id, nil, "p1", "p2", "p3")
	fs, err := feed.New(feed.Options{Store: e.Store, Graph: e.Graph, PublicURL: e.srv.URL, Now: e.Clock.Now, Logger: e.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fs.Close)
	svc, err := New(Options{Store: e.Store, Connections: e.conn, Feeds: fs, PublicURL: e.srv.URL, Now: e.Clock.Now, Logger: e.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	read := func() (*cache.Entry, string) {
		t.Helper()
		en, err := fs.Entry(ctx, id, feed.DefaultQuery)
		if err != nil {
			t.Fatal(err)
		}
		var d feed.Doc
		if err := json.Unmarshal(en.JSON, &d); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, p := range d.Posts {
			ids = append(ids, p.ID)
		}
		return en, strings.Join(ids, ",")
	}
	before, ids := read()
	if ids != "p1,p2,p3" {
		t.Fatalf("before: %s", ids)
	}
	calls := len(e.Sandbox.Calls())
	if _, err := svc.Moderate(ctx, id, "p2", ActHide); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Moderate(ctx, id, "p3", ActPin); err != nil {
		t.Fatal(err)
	}
	after, ids := read()
	if after.ETag == before.ETag || ids != "p3,p1" {
		t.Fatalf("after hiding p2 and pinning p3: %s, ETag %s (was %s)", ids, after.ETag, before.ETag)
	}
	if n := len(e.Sandbox.Calls()); n != calls {
		t.Fatalf("the sandbox saw %d calls after the curation changed", n-calls)
	}
}

func TestModerationPageWorksWithoutJavaScript(t *testing.T) {
	e := newEnv(t)
	id := e.connectAPI("Bakery", sandbox.AccountBusiness)
	e.storePosts(id, map[string]string{"p2": "Fresh <b>bread</b>"}, "p1", "p2", "p3")
	page := "/setup/feeds/" + id + "/moderation"

	resp, body := e.get(e.srv.URL + "/setup/feeds/" + id)
	if resp.StatusCode != 200 || !strings.Contains(body, `href="/setup/feeds/`+id+`/moderation"`) {
		t.Fatalf("the feed page does not link to its moderation page: %d", resp.StatusCode)
	}
	resp, body = e.get(e.srv.URL + page)
	if resp.StatusCode != 200 || strings.Count(body, `<li class="tile`) != 3 || !strings.Contains(body, "Fresh &lt;b&gt;bread&lt;/b&gt;") ||
		!strings.Contains(body, `<iframe src="/feeds/`+id+`/embed"`) {
		t.Fatalf("moderation page: %d\n%s", resp.StatusCode, body)
	}

	post := func(action, pid string) string {
		t.Helper()
		resp, _ := e.post(page+"/posts", url.Values{"post": {pid}, "action": {action}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s %s: %d", action, pid, resp.StatusCode)
		}
		return resp.Header.Get("Location")
	}
	if loc := post("hide", "p1"); loc != page+"#post-p1" {
		t.Fatalf("after hiding: redirected to %q", loc)
	}
	post("pin", "p3")
	post("pin", "p2")
	post("up", "p2")
	if got := e.shownIDs(id); got != "p2,p3|p1:hidden" {
		t.Fatalf("after hide, pin, pin, up: %s", got)
	}
	_, body = e.get(e.srv.URL + page)
	for _, want := range []string{"Hidden", "Pinned, 1 of 2", "Pinned, 2 of 2", `?v=`, "Moved up.", `value="show"`, `value="down"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the page after the changes lacks %q", want)
		}
	}
	post("down", "p2")
	post("show", "p1")
	post("unpin", "p3")
	if got := e.shownIDs(id); got != "p2,p1,p3|" {
		t.Fatalf("after down, show, unpin: %s", got)
	}

	// Refused actions come back as an error on the page and change nothing.
	for _, tc := range []struct {
		path string
		form url.Values
		want string
	}{
		{page + "/posts", url.Values{"post": {"nope"}, "action": {"hide"}}, "post: no stored post"},
		{page + "/posts", url.Values{"post": {"p1"}, "action": {"delete"}}, "action: must be one of"},
		{page + "/posts", url.Values{"post": {"p1"}, "action": {"up"}}, "post: p1 is not pinned"},
		{page + "/rules", url.Values{"include": {"cake"}}, "types: tick at least one"},
		{page + "/rules", url.Values{"types": {"image"}, "max_posts": {"many"}}, "max_posts: must be a whole number"},
		{page + "/rules", url.Values{"types": {"image"}, "exclude": {"#two words"}}, "exclude[0]: a hashtag is"},
	} {
		resp, _ := e.post(tc.path, tc.form)
		_, body := e.get(e.srv.URL + page)
		if resp.StatusCode != http.StatusSeeOther || !strings.Contains(body, tc.want) {
			t.Errorf("%v: %d, the page does not say %q", tc.form, resp.StatusCode, tc.want)
		}
	}
	if got := e.shownIDs(id); got != "p2,p1,p3|" {
		t.Fatalf("refused actions changed the feed: %s", got)
	}
	// Without the CSRF token nothing changes.
	resp, _ = e.post(page+"/posts", url.Values{"post": {"p1"}, "action": {"hide"}, "_csrf": {"forged"}})
	if resp.StatusCode != http.StatusForbidden || e.shownIDs(id) != "p2,p1,p3|" {
		t.Fatalf("a forged form: %d, %s", resp.StatusCode, e.shownIDs(id))
	}

	resp, _ = e.post(page+"/rules", url.Values{"types": {"image", "reel"}, "include": {"bread\n\n#cake\n"}, "max_posts": {"5"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("rules: %d", resp.StatusCode)
	}
	var v CurationView
	e.api("GET", "/api/admin/feeds/"+id+"/curation", "", &v)
	if strings.Join(v.Include, "|") != "bread|#cake" || strings.Join(v.Types, ",") != "image,reel" || v.MaxPosts != 5 {
		t.Fatalf("rules saved as %+v", v)
	}
	if got := e.shownIDs(id); got != "p2|p1:include,p3:include" {
		t.Fatalf("after the rules: %s", got)
	}
	_, body = e.get(e.srv.URL + page)
	if !strings.Contains(body, "bread\n#cake</textarea>") || !strings.Contains(body, `value="reel" checked`) || strings.Contains(body, `value="video" checked`) {
		t.Fatalf("the rules form does not show the saved rules:\n%s", body)
	}

	resp, _ = e.get(e.srv.URL + "/setup/feeds/zzzzzzzzzz/moderation")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup" {
		t.Fatalf("moderation page of an unknown feed: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// Owners acting at once (two tabs, a script) each change the curation as
// they saw it: no change is lost.
func TestConcurrentModerationLosesNoChange(t *testing.T) {
	e := newEnv(t)
	id := e.connectAPI("Bakery", sandbox.AccountBusiness)
	ids := []string{"p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"}
	e.storePosts(id, nil, ids...)
	ctx := context.Background()
	errs := make(chan error, len(ids))
	for _, pid := range ids {
		go func() {
			_, err := e.svc.Moderate(ctx, id, pid, ActHide)
			errs <- err
		}()
	}
	for range ids {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	v, err := e.svc.Curation(ctx, id)
	if err != nil || len(v.Hidden) != len(ids) {
		t.Fatalf("after %d concurrent hides: %v hidden, %v", len(ids), v.Hidden, err)
	}
}
