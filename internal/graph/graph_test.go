package graph

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"relative graph URL", Config{GraphURL: "graph.instagram.com"}, "GraphURL"},
		{"graph URL with query", Config{GraphURL: "https://g.example/?access_token=IGAAx"}, "GraphURL"},
		{"bad version", Config{APIVersion: "25"}, "APIVersion"},
		{"meta-style app id", Config{AppID: "abc"}, "AppID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: err = %v, want one naming %s", err, tt.want)
			}
			assertNoSecrets(t, "config error", err.Error(), "IGAAx")
		})
	}
	if _, err := New(Config{}); err != nil {
		t.Fatalf("New with defaults: %v", err)
	}
}

func TestAuthorizeURL(t *testing.T) {
	e := newEnv(t, nil)
	for _, force := range []bool{false, true} {
		u, err := url.Parse(e.c.AuthorizeURL("st4te/+&", force))
		if err != nil {
			t.Fatal(err)
		}
		if u.Path != mount+"/www/oauth/authorize" {
			t.Errorf("path = %s", u.Path)
		}
		want := url.Values{"client_id": {testAppID}, "redirect_uri": {testRedirect}, "response_type": {"code"},
			"scope": {"instagram_business_basic"}, "state": {"st4te/+&"}}
		// Only a request for another account asks Instagram for its login
		// screen: otherwise a logged-in owner approves in one click.
		if force {
			want.Set("force_reauth", "true")
		}
		if got := u.Query(); got.Encode() != want.Encode() {
			t.Errorf("force %v: query = %v, want %v", force, got, want)
		}
	}
}

func TestExchangeCodeDecodesEveryShape(t *testing.T) {
	tests := []struct {
		fixture string
		perms   []string
	}{
		{"token_flat.json", []string{"instagram_business_basic"}},
		{"token_data_wrapped.json", []string{"instagram_business_basic", "instagram_business_manage_messages"}},
		{"token_flat_string_id.json", []string{"instagram_business_basic"}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			e := newEnv(t, serveFile(t, 200, tt.fixture))
			got, err := e.c.ExchangeCode(context.Background(), testCode+"#_")
			if err != nil {
				t.Fatal(err)
			}
			// 27640875392278831 > 2^53: a float64 would turn it into ...832.
			if got.UserID != "27640875392278831" || got.AccessToken != "IGAAshortTOKENflat123" {
				t.Errorf("got %+v", got)
			}
			if strings.Join(got.Permissions, " ") != strings.Join(tt.perms, " ") {
				t.Errorf("permissions = %q, want %q", got.Permissions, tt.perms)
			}
			calls := e.f.calls()
			if len(calls) != 1 {
				t.Fatalf("%d calls, want 1", len(calls))
			}
			c := calls[0]
			if c.Method != http.MethodPost || c.Path != mount+"/api/oauth/access_token" {
				t.Errorf("sent %s %s", c.Method, c.Path)
			}
			want := url.Values{"client_id": {testAppID}, "client_secret": {testSecret}, "grant_type": {"authorization_code"},
				"redirect_uri": {testRedirect}, "code": {testCode}}
			if c.Form.Encode() != want.Encode() {
				t.Errorf("form = %v, want %v (the #_ suffix must be stripped)", c.Form, want)
			}
			if len(c.Query) != 0 {
				t.Errorf("secrets must travel in the body, query = %v", c.Query)
			}
		})
	}
}

func TestExchangeCodeErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		file   string
		want   error
	}{
		{"code used", 400, "error_token_code_used.json", ErrCodeInvalid},
		{"code expired", 400, "error_token_code_expired.json", ErrCodeInvalid},
		{"redirect mismatch", 400, "error_token_redirect.json", ErrRedirectMismatch},
		{"wrong app id", 400, "error_token_invalid_app.json", ErrInvalidApp},
		{"graph envelope on the token host", 400, "error_graph_bad_param.json", ErrBadRequest},
		{"server error is not retried: the code may be spent", 500, "error_graph_transient.json", ErrTransient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, serveFile(t, tt.status, tt.file))
			_, err := e.c.ExchangeCode(context.Background(), testCode)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if e.f.count() != 1 {
				t.Errorf("%d calls, want exactly 1 (the code works once)", e.f.count())
			}
			if NeedsReauth(err) {
				t.Errorf("a failed code exchange is not a dead feed token")
			}
			assertNoSecrets(t, "error", err.Error())
		})
	}
}

func TestExchangeLongLived(t *testing.T) {
	e := newEnv(t, serveFile(t, 200, "long_lived.json"))
	tok, err := e.c.ExchangeLongLived(context.Background(), "IGAAshortTOKENflat123")
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "IGAAlongTOKEN456" || tok.ExpiresIn != 5183944*time.Second || !tok.ExpiresAt.Equal(epoch.Add(5183944*time.Second)) {
		t.Errorf("token = %+v", tok)
	}
	c := e.f.calls()[0]
	want := url.Values{"grant_type": {"ig_exchange_token"}, "client_secret": {testSecret}, "access_token": {"IGAAshortTOKENflat123"}}
	if c.Method != http.MethodGet || c.Path != mount+"/graph/access_token" || c.Query.Encode() != want.Encode() {
		t.Errorf("sent %s %s %v", c.Method, c.Path, c.Query)
	}
}

func TestExchangeLongLivedBadSecret(t *testing.T) {
	e := newEnv(t, serveFile(t, 400, "error_exchange_bad_secret.json"))
	_, err := e.c.ExchangeLongLived(context.Background(), "IGAAshortTOKENflat123")
	if !errors.Is(err, ErrInvalidApp) {
		t.Fatalf("err = %v, want ErrInvalidApp", err)
	}
}

func TestRefresh(t *testing.T) {
	t.Run("success stores what comes back", func(t *testing.T) {
		e := newEnv(t, serveFile(t, 200, "refreshed.json"))
		tok, err := e.c.Refresh(context.Background(), testAcct, testToken)
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken != "IGAArefreshedTOKEN789" || !tok.ExpiresAt.Equal(epoch.Add(5183999*time.Second)) {
			t.Errorf("token = %+v", tok)
		}
		c := e.f.calls()[0]
		want := url.Values{"grant_type": {"ig_refresh_token"}, "access_token": {testToken}}
		if c.Method != http.MethodGet || c.Path != mount+"/graph/refresh_access_token" || c.Query.Encode() != want.Encode() {
			t.Errorf("sent %s %s %v (refresh carries no secret)", c.Method, c.Path, c.Query)
		}
	})
	tests := []struct {
		name   string
		file   string
		want   error
		reauth bool
	}{
		{"too young is not yet, never a dead token", "error_refresh_too_young.json", ErrTokenTooYoung, false},
		{"expired token needs the owner", "error_graph_token_expired.json", ErrTokenInvalid, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, serveFile(t, 400, tt.file))
			_, err := e.c.Refresh(context.Background(), testAcct, testToken)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if NeedsReauth(err) != tt.reauth {
				t.Errorf("NeedsReauth = %v, want %v", !tt.reauth, tt.reauth)
			}
			if errors.Is(err, ErrTokenInvalid) != (tt.want == ErrTokenInvalid) {
				t.Errorf("errors.Is(err, ErrTokenInvalid) wrong for %v", err)
			}
			if e.f.count() != 1 {
				t.Errorf("%d calls, want 1", e.f.count())
			}
		})
	}
}

func int64p(v int64) *int64 { return &v }

func TestMe(t *testing.T) {
	tests := []struct {
		file string
		want Profile
	}{
		{"me.json", Profile{ID: "27640875392278831", UserID: "17841400123456789", Username: "lakeside.bakery",
			Name: "Lakeside Bakery ☕", AccountType: "BUSINESS",
			ProfilePictureURL: "https://scontent-ams2-1.cdninstagram.com/v/t51.2885-19/p.jpg?stp=dst-jpg&_nc_ht=x&oh=00_AfSIGNATURE&oe=6720F1A2",
			FollowersCount:    int64p(1523), FollowsCount: int64p(87), MediaCount: int64p(342)}},
		{"me_minimal.json", Profile{ID: "27640875392278831", UserID: "17841400123456789", Username: "quiet.creator", AccountType: "MEDIA_CREATOR"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			e := newEnv(t, serveFile(t, 200, tt.file))
			got, err := e.c.Me(context.Background(), "", testToken)
			if err != nil {
				t.Fatal(err)
			}
			if fmtProfile(got) != fmtProfile(tt.want) {
				t.Errorf("got  %s\nwant %s", fmtProfile(got), fmtProfile(tt.want))
			}
			c := e.f.calls()[0]
			if c.Path != mount+"/graph/v25.0/me" || c.Query.Get("fields") != ProfileFields || c.Query.Get("access_token") != testToken {
				t.Errorf("sent %s %v", c.Path, c.Query)
			}
		})
	}
}

func fmtProfile(p Profile) string {
	n := func(v *int64) string {
		if v == nil {
			return "absent"
		}
		return time.Duration(*v).String()
	}
	return strings.Join([]string{p.ID, p.UserID, p.Username, p.Name, p.AccountType, p.ProfilePictureURL,
		n(p.FollowersCount), n(p.FollowsCount), n(p.MediaCount)}, "|")
}
