package owner

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/connection"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
)

func TestPasteOldTokenGetsRealExpiry(t *testing.T) {
	e := newEnv(t)
	id := e.createFeed("Paste").ID
	tok := e.Sandbox.MintLongLivedToken(sandbox.AccountBusiness, e.Clock.Now().Add(-10*24*time.Hour))
	e.AddSecret(tok)
	var st Status
	if code := e.api("POST", "/api/admin/feeds/"+id+"/token", `{"access_token":"`+tok+`"}`, &st); code != 200 {
		t.Fatalf("paste: %d", code)
	}
	if st.Status != model.StatusActive || st.Token == nil || st.Token.ExpiryAssumed || st.Token.RefreshedAt == nil {
		t.Fatalf("status: %+v %+v", st, st.Token)
	}
	if left := st.Token.ExpiresAt.Sub(e.Clock.Now()); left < 59*24*time.Hour {
		t.Fatalf("expires in %v: the refresh should have given a fresh 60 days", left)
	}
	stored, _ := e.Store.Token(context.Background(), id)
	if stored.AccessToken == tok {
		t.Fatal("the refreshed token was not stored (the old one may already be dead)")
	}
}

func TestPasteYoungTokenIsActiveWithAssumedExpiryAndRetriesAfter24h(t *testing.T) {
	e := newEnv(t)
	id := e.createFeed("Young").ID
	tok := e.Sandbox.MintLongLivedToken(sandbox.AccountCreator, e.Clock.Now())
	e.AddSecret(tok)
	// Through the setup page this time.
	resp, _ := e.post("/setup/feeds/"+id+"/token", url.Values{"access_token": {" " + tok + "\n"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("paste: %d", resp.StatusCode)
	}
	_, page := e.get(e.srv.URL + "/setup/feeds/" + id)
	if !strings.Contains(page, "Token accepted") || !strings.Contains(page, "(estimated)") {
		t.Fatalf("page:\n%s", page)
	}
	st := e.status(id)
	if st.Status != model.StatusActive || !st.Token.ExpiryAssumed {
		t.Fatalf("status: %+v %+v", st, st.Token)
	}
	if got := st.Token.ExpiresAt.Sub(e.Clock.Now()); got != connection.AssumedLifetime {
		t.Fatalf("assumed expiry in %v", got)
	}
	ctx := context.Background()
	e.Sandbox.ResetCalls()
	e.Clock.Advance(12 * time.Hour)
	e.Fetched(id, e.Clock.Now(), true)
	_ = e.conn.CheckTokens(ctx)
	if n := e.GraphCalls(sandbox.EndpointRefresh); n != 0 {
		t.Fatalf("%d refresh calls before 24h", n)
	}
	e.Clock.Advance(13 * time.Hour)
	e.Fetched(id, e.Clock.Now(), true)
	_ = e.conn.CheckTokens(ctx)
	if n := e.GraphCalls(sandbox.EndpointRefresh); n != 1 {
		t.Fatalf("%d refresh calls after 24h, want 1", n)
	}
	if st := e.status(id); st.Token.ExpiryAssumed || st.Token.RefreshedAt == nil {
		t.Fatalf("after the retry: %+v", st.Token)
	}
}

func TestPasteRejectsBadTokens(t *testing.T) {
	e := newEnv(t)
	id := e.createFeed("Bad").ID
	revoked := e.Sandbox.MintLongLivedToken(sandbox.AccountBusiness, e.Clock.Now().Add(-48*time.Hour))
	personal := e.Sandbox.MintLongLivedToken(sandbox.AccountPersonal, e.Clock.Now().Add(-48*time.Hour))
	e.AddSecret(revoked)
	e.AddSecret(personal)
	if err := e.Sandbox.RevokeTokens(sandbox.AccountBusiness); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, body, code string
		status           int
	}{
		{"revoked", `{"access_token":"` + revoked + `"}`, "token_invalid", 400},
		{"made up", `{"access_token":"IGAAnotarealtoken"}`, "token_invalid", 400},
		{"personal", `{"access_token":"` + personal + `"}`, "personal_account", 400},
		{"empty", `{"access_token":""}`, "invalid_access_token", 400},
		{"missing", `{}`, "invalid_access_token", 400},
		{"spaces inside", `{"access_token":"IGAA abc"}`, "invalid_access_token", 400},
		{"unknown field", `{"access_token":"x","token":"y"}`, "unknown_field", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ae apiError
			if code := e.api("POST", "/api/admin/feeds/"+id+"/token", tt.body, &ae); code != tt.status || ae.Error.Code != tt.code {
				t.Fatalf("%d %+v", code, ae)
			}
			if !strings.Contains(ae.Error.Message, "access_token") && !strings.Contains(ae.Error.Message, "token:") {
				t.Fatalf("message does not name the field: %q", ae.Error.Message)
			}
		})
	}
	if st := e.status(id); st.Status != model.StatusNotConnected {
		t.Fatalf("a rejected token changed the feed: %+v", st)
	}
	var ae apiError
	if code := e.api("POST", "/api/admin/feeds/nosuchfeed/token", `{"access_token":"abc"}`, &ae); code != 404 {
		t.Fatalf("unknown feed: %d", code)
	}
}
