package owner

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
)

func signed(secret string, payload map[string]any) string {
	b, _ := json.Marshal(payload)
	return sandbox.SignRequest(secret, b)
}

func (e *env) postCallback(path string, body string) (int, string) {
	e.t.Helper()
	resp, err := http.Post(e.srv.URL+path, "application/x-www-form-urlencoded", strings.NewReader(body))
	answer := e.answer(resp, err)
	return resp.StatusCode, answer
}

func TestMetaDeletionCallback(t *testing.T) {
	e := newEnv(t)
	bakery := e.connectAPI("Bakery", sandbox.AccountBusiness)
	bakery2 := e.connectAPI("Bakery again", sandbox.AccountBusiness)
	studio := e.connectAPI("Studio", sandbox.AccountCreator)
	e.settle()
	for _, id := range []string{bakery, bakery2, studio} {
		e.Fetched(id, e.Clock.Now(), true)
	}
	acct, _ := e.Sandbox.Account(sandbox.AccountBusiness)
	snapshot := func() []Status {
		fs, _ := e.svc.Feeds(t.Context())
		return fs
	}
	before := snapshot()

	// Refused requests change nothing.
	forged := signed("not-the-secret", map[string]any{"algorithm": "HMAC-SHA256", "user_id": acct.UserID})
	badAlg := signed(e.Sandbox.AppSecret(), map[string]any{"algorithm": "HMAC-SHA1", "user_id": acct.UserID})
	refused := []struct {
		name, body string
		status     int
	}{
		{"forged", "signed_request=" + url.QueryEscape(forged), 403},
		{"wrong algorithm", "signed_request=" + url.QueryEscape(badAlg), 400},
		{"malformed", "signed_request=abc", 400},
		{"missing", "other=1", 400},
		{"oversized", "signed_request=" + strings.Repeat("a", 9<<10), 413},
	}
	for _, path := range []string{"/auth/instagram/delete", "/auth/instagram/deauthorize"} {
		for _, r := range refused {
			if code, body := e.postCallback(path, r.body); code != r.status || !strings.Contains(body, `"error"`) {
				t.Errorf("%s %s: %d %s", path, r.name, code, body)
			}
		}
	}
	if after := snapshot(); !slices.EqualFunc(before, after, func(a, b Status) bool { return a.Status == b.Status && a.PostCount == b.PostCount }) {
		t.Fatal("a refused callback changed feeds")
	}

	// A valid deletion request naming the professional id.
	code, body := e.postCallback("/auth/instagram/delete", "signed_request="+url.QueryEscape(e.Sandbox.SignedRequest(acct.UserID)))
	if code != 200 {
		t.Fatalf("delete: %d %s", code, body)
	}
	var out struct {
		URL              string `json:"url"`
		ConfirmationCode string `json:"confirmation_code"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9]{24}$`).MatchString(out.ConfirmationCode) ||
		out.URL != e.srv.URL+"/auth/instagram/deletion?code="+out.ConfirmationCode {
		t.Fatalf("answer %+v", out)
	}
	for _, id := range []string{bakery, bakery2} {
		st := e.status(id)
		if st.Status != model.StatusNotConnected || st.Account != nil || st.Token != nil || st.PostCount != 0 || st.Name == "" {
			t.Fatalf("feed %s after deletion: %+v", id, st)
		}
	}
	if st := e.status(studio); st.Status != model.StatusActive || st.PostCount != before[2].PostCount || st.PostCount == 0 {
		t.Fatalf("another account's feed was touched: %+v", st)
	}
	removed := e.Files.Removed()
	if !slices.Contains(removed, "media/"+bakery+"-a.jpg") || slices.Contains(removed, "media/"+studio+"-a.jpg") {
		t.Fatalf("removed files %v", removed)
	}
	resp, page := e.get(out.URL)
	if resp.StatusCode != 200 || !strings.Contains(page, "Completed") || !strings.Contains(page, "of 2 feeds") || strings.Contains(page, acct.UserID) {
		t.Fatalf("status page %d:\n%s", resp.StatusCode, page)
	}

	// Deauthorize naming the app-scoped id.
	studioAcct, _ := e.Sandbox.Account(sandbox.AccountCreator)
	if code, body := e.postCallback("/auth/instagram/deauthorize", "signed_request="+url.QueryEscape(e.Sandbox.SignedRequest(studioAcct.ID))); code != 200 {
		t.Fatalf("deauthorize: %d %s", code, body)
	}
	if st := e.status(studio); st.Status != model.StatusNotConnected || st.Token != nil {
		t.Fatalf("studio after deauthorize: %+v", st)
	}

	// An unknown user gets a valid answer; nothing is deleted.
	code, body = e.postCallback("/auth/instagram/delete", "signed_request="+url.QueryEscape(e.Sandbox.SignedRequest("17840000000000999")))
	if code != 200 || !strings.Contains(body, "confirmation_code") {
		t.Fatalf("unknown user: %d %s", code, body)
	}
	json.Unmarshal([]byte(body), &out)
	if _, page := e.get(out.URL); !strings.Contains(page, "none were stored") {
		t.Fatalf("unknown user's status page:\n%s", page)
	}
	for _, c := range []string{"nosuchcode", strings.Repeat("A", 24), "<script>"} {
		if resp, page := e.get(e.srv.URL + "/auth/instagram/deletion?code=" + url.QueryEscape(c)); resp.StatusCode != 404 || strings.Contains(page, "<script>") {
			t.Fatalf("unknown code %q: %d", c, resp.StatusCode)
		}
	}
}

// A signed_request issued more than a day ago is refused with 400 and
// deletes nothing.
func TestOldSignedRequestAnswers400(t *testing.T) {
	e := newEnv(t)
	id := e.connectAPI("Shop", sandbox.AccountCreator)
	acct, _ := e.Sandbox.Account(sandbox.AccountCreator)
	old := signed(e.Sandbox.AppSecret(), map[string]any{"algorithm": "HMAC-SHA256", "user_id": acct.UserID,
		"issued_at": e.Clock.Now().Add(-25 * time.Hour).Unix()})
	for _, path := range []string{"/auth/instagram/delete", "/auth/instagram/deauthorize"} {
		if code, body := e.postCallback(path, "signed_request="+url.QueryEscape(old)); code != http.StatusBadRequest || !strings.Contains(body, "issued_at") {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
	if st := e.status(id); st.Status != model.StatusActive || st.PostCount == 0 {
		t.Errorf("feed changed by a refused callback: %+v", st)
	}
}
