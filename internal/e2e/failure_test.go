package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/sandbox"
)

// A token revoked at Instagram and noticed first by a poll (not by the
// hourly token check) turns the feed needs_reauth and tells the owner once.
func TestRevokedTokenSeenByAPollNotifiesOnce(t *testing.T) {
	e := start(t, envOptions{})
	id := e.createFeed("shop")
	e.paste(id, sandbox.AccountCreator)
	if st := e.refresh(id); st.Status != "active" || st.PostCount == 0 {
		t.Fatalf("after connect: %+v", st)
	}
	if err := e.sb.RevokeTokens(sandbox.AccountCreator); err != nil {
		t.Fatal(err)
	}
	if st := e.refresh(id); st.Status != "needs_reauth" {
		t.Fatalf("after a poll with a revoked token: status %q", st.Status)
	}
	eventually(t, 5*time.Second, "needs_reauth webhook", func() bool { return e.hooks.count(id, "needs_reauth") > 0 })
	e.refresh(id)
	time.Sleep(300 * time.Millisecond) // give a wrong second delivery the time to arrive
	if n := e.hooks.count(id, "needs_reauth"); n != 1 {
		t.Errorf("needs_reauth sent %d times, want once: %s", n, e.hooks)
	}
	if code, d := e.feedJSON(id, ""); code != http.StatusOK || len(d.Posts) == 0 {
		t.Errorf("last good feed not served: %d, %d posts", code, len(d.Posts))
	}
}

// Connecting another account while a poll of the first one downloads its
// images never shows the first account's posts or profile afterwards.
func TestReconnectDuringAPollShowsOnlyTheNewAccount(t *testing.T) {
	e := start(t, envOptions{})
	id := e.createFeed("shop")
	e.sb.SetLatency(40 * time.Millisecond) // the first account's ~60 images take seconds
	e.paste(id, sandbox.AccountBusiness)
	eventually(t, 20*time.Second, "first page of the first account", func() bool {
		_, d := e.feedJSON(id, "")
		return len(d.Posts) > 0
	})
	e.paste(id, sandbox.AccountCreator) // the first account's poll is still downloading
	e.quiet(500 * time.Millisecond)
	e.sb.SetLatency(0)
	e.refresh(id)

	want, old := e.postIDs(sandbox.AccountCreator), e.postIDs(sandbox.AccountBusiness)
	for _, q := range []string{"", "?limit=100"} {
		code, d := e.feedJSON(id, q)
		if code != http.StatusOK || d.Account == nil {
			t.Fatalf("feed%s: %d %+v", q, code, d)
		}
		if d.Account.Username != e.username(sandbox.AccountCreator) {
			t.Errorf("feed%s shows username %q, want %q", q, d.Account.Username, e.username(sandbox.AccountCreator))
		}
		for _, p := range d.Posts {
			if old[p.ID] || !want[p.ID] {
				t.Errorf("feed%s shows post %s of the previous account", q, p.ID)
			}
		}
	}
	if st := e.feedStatus(id); st.Account == nil || st.Account.Username != e.username(sandbox.AccountCreator) {
		t.Errorf("admin status account %+v", st.Account)
	}
}

// After a delete every public URL of the feed answers 404 at once, and after
// a disconnect the feed is empty at once: no cache serves what was removed.
func TestDeleteAndDisconnectShowAtOnce(t *testing.T) {
	e := start(t, envOptions{})
	urls := func(id string) []string {
		return []string{"/api/v1/feeds/" + id, "/api/v1/feeds/" + id + "?limit=3", "/feeds/" + id + ".html", "/feeds/" + id + "/embed"}
	}
	gone, kept := e.createFeed("gone"), e.createFeed("kept")
	for _, id := range []string{gone, kept} {
		e.paste(id, sandbox.AccountCreator)
		e.refresh(id)
		for _, u := range urls(id) {
			if code, _ := e.do(http.MethodGet, u, nil); code != http.StatusOK {
				t.Fatalf("%s before: %d", u, code)
			}
		}
	}
	if code, b := e.do(http.MethodDelete, "/api/admin/feeds/"+gone, nil); code != http.StatusNoContent && code != http.StatusOK {
		t.Fatalf("delete: %d %s", code, b)
	}
	for _, u := range urls(gone) {
		if code, _ := e.do(http.MethodGet, u, nil); code != http.StatusNotFound {
			t.Errorf("%s after delete: %d, want 404", u, code)
		}
	}
	if code, b := e.do(http.MethodDelete, "/api/admin/feeds/"+kept+"/token", nil); code != http.StatusOK && code != http.StatusNoContent {
		t.Fatalf("disconnect: %d %s", code, b)
	}
	for _, q := range []string{"", "?limit=3"} {
		code, d := e.feedJSON(kept, q)
		if code != http.StatusOK || d.Account != nil || len(d.Posts) != 0 {
			t.Errorf("feed%s after disconnect: %d account %+v, %d posts", q, code, d.Account, len(d.Posts))
		}
	}
	if code, b := e.do(http.MethodGet, "/feeds/"+kept+".html", nil); code != http.StatusOK || strings.Contains(string(b), "<img") {
		t.Errorf("fragment after disconnect: %d, has images: %v", code, strings.Contains(string(b), "<img"))
	}
}

// Meta's data deletion during a poll: the poll's late writes do not bring
// anything back, and no stored image of the account is left on disk.
func TestDataDeletionDuringAPollLeavesNothing(t *testing.T) {
	e := start(t, envOptions{})
	id := e.createFeed("shop")
	e.sb.SetLatency(40 * time.Millisecond)
	e.paste(id, sandbox.AccountBusiness)
	eventually(t, 20*time.Second, "first page", func() bool {
		_, d := e.feedJSON(id, "")
		return len(d.Posts) > 0
	})
	acct, err := e.sb.Account(sandbox.AccountBusiness)
	if err != nil {
		t.Fatal(err)
	}
	code, b := e.postForm("/auth/instagram/delete", url.Values{"signed_request": {e.sb.SignedRequest(acct.UserID)}})
	if code != http.StatusOK {
		t.Fatalf("data deletion: %d %s", code, b)
	}
	var ans struct {
		URL  string `json:"url"`
		Code string `json:"confirmation_code"`
	}
	if err := json.Unmarshal(b, &ans); err != nil || ans.Code == "" {
		t.Fatalf("data deletion answer %s", b)
	}
	// "Refresh now" joins the poll still in flight and waits for its end
	// (for a feed that is no longer connected it answers an error).
	e.do(http.MethodPost, "/api/admin/feeds/"+id+"/refresh", nil)
	e.sb.SetLatency(0)

	st := e.feedStatus(id)
	if st.Status != "not_connected" || st.Account != nil || st.PostCount != 0 {
		t.Errorf("after deletion and the poll's end: %+v", st)
	}
	if code, d := e.feedJSON(id, ""); code != http.StatusOK || d.Account != nil || len(d.Posts) != 0 {
		t.Errorf("public feed after deletion: %d %+v", code, d)
	}
	// Files go after their rows; give a loaded machine time, not forever.
	deadline := time.Now().Add(20 * time.Second)
	for files := e.mediaFiles(); len(files) != 0; files = e.mediaFiles() {
		if time.Now().After(deadline) {
			t.Errorf("%d stored images left after the deletion, e.g. %s", len(files), files[0])
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A signed_request issued more than a day ago is refused and deletes nothing.
func TestOldSignedRequestIsRefused(t *testing.T) {
	e := start(t, envOptions{})
	id := e.createFeed("shop")
	e.paste(id, sandbox.AccountCreator)
	e.refresh(id)
	acct, _ := e.sb.Account(sandbox.AccountCreator)
	payload, _ := json.Marshal(map[string]any{"algorithm": "HMAC-SHA256", "issued_at": time.Now().Add(-25 * time.Hour).Unix(), "user_id": acct.UserID})
	for _, path := range []string{"/auth/instagram/delete", "/auth/instagram/deauthorize"} {
		code, b := e.postForm(path, url.Values{"signed_request": {sandbox.SignRequest(e.sb.AppSecret(), payload)}})
		if code != http.StatusBadRequest {
			t.Errorf("%s with a day-old signed_request: %d %s, want 400", path, code, b)
		}
	}
	if st := e.feedStatus(id); st.Status != "active" || st.PostCount == 0 {
		t.Errorf("feed changed by a refused callback: %+v", st)
	}
}

// A feed nobody viewed for 30 days is not polled; viewed again, it is polled
// at once and says stale until that poll ends.
func TestFeedViewedAgainAfterAMonthIsPolledAtOnce(t *testing.T) {
	e := start(t, envOptions{})
	id := e.createFeed("shop")
	e.paste(id, sandbox.AccountCreator)
	e.refresh(id)
	if _, d := e.feedJSON(id, ""); d.Stale || len(d.Posts) == 0 {
		t.Fatalf("fresh feed: stale %v, %d posts", d.Stale, len(d.Posts))
	}
	e.clock.Advance(31 * 24 * time.Hour)
	e.sb.SetLatency(300 * time.Millisecond) // keep the poll in flight while we look
	before := mediaCalls(e.sb)
	code, d := e.feedJSON(id, "")
	if code != http.StatusOK || !d.Stale || len(d.Posts) == 0 {
		t.Errorf("first view after a month: %d stale %v, %d posts; want stale with the old posts", code, d.Stale, len(d.Posts))
	}
	eventually(t, 10*time.Second, "a poll after the view", func() bool { return mediaCalls(e.sb) > before })
	e.sb.SetLatency(0)
	e.quiet(300 * time.Millisecond)
	if _, d := e.feedJSON(id, ""); d.Stale {
		t.Errorf("still stale after the poll ended")
	}
}

func mediaCalls(sb *sandbox.Sandbox) int {
	n := 0
	for _, c := range sb.Calls() {
		if c.Endpoint == sandbox.EndpointMedia {
			n++
		}
	}
	return n
}

func (e *env) postForm(path string, v url.Values) (int, []byte) {
	e.t.Helper()
	resp, err := http.PostForm(e.m.URL()+path, v)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b := make([]byte, 4096)
	n, _ := resp.Body.Read(b)
	return resp.StatusCode, b[:n]
}
