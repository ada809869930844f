package graph

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/sandbox"
)

const sbRedirect = "http://127.0.0.1:8080/setup/instagram/callback"

// sbEnv is the client wired to a sandbox mounted under /sandbox, sharing one fake clock.
type sbEnv struct {
	sb    *sandbox.Sandbox
	c     *Client
	clock *fakeClock
	sl    *sleeper
	logs  *syncBuffer
	srv   *httptest.Server
}

func newSandboxEnv(t *testing.T, opts sandbox.Options) *sbEnv {
	t.Helper()
	e := &sbEnv{clock: &fakeClock{T: epoch}, logs: &syncBuffer{}}
	e.sl = &sleeper{clock: e.clock}
	opts.Now = e.clock.Now
	opts.RedirectURIs = append(opts.RedirectURIs, sbRedirect)
	e.sb = sandbox.New(opts)
	mux := http.NewServeMux()
	mux.Handle("/sandbox/", e.sb)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	if err := e.sb.SetBaseURL(e.srv.URL + "/sandbox"); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{
		AppID: e.sb.AppID(), AppSecret: e.sb.AppSecret(), RedirectURI: sbRedirect,
		AuthorizeURL: e.sb.AuthorizeURL(), TokenURL: e.sb.TokenURL(), GraphURL: e.sb.GraphURL(),
		HTTPClient: e.srv.Client(), Now: e.clock.Now, Sleep: e.sl.Sleep,
		Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	return e
}

// connect runs the owner's side of the ladder up to a long-lived token.
func (e *sbEnv) connect(t *testing.T, acct string) (ShortLived, Token) {
	t.Helper()
	ctx := context.Background()
	redirect, err := e.sb.Approve(acct, sbRedirect, "st")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(redirect)
	if err != nil {
		t.Fatal(err)
	}
	// Hand over the code the way a careless callback might: fragment attached.
	short, err := e.c.ExchangeCode(ctx, u.Query().Get("code")+"#"+u.Fragment)
	if err != nil {
		t.Fatalf("exchange code: %v", err)
	}
	long, err := e.c.ExchangeLongLived(ctx, short.AccessToken)
	if err != nil {
		t.Fatalf("long-lived: %v", err)
	}
	return short, long
}

func (e *sbEnv) calls() int { return len(e.sb.Calls()) }

func TestSandboxTokenLadderAndReading(t *testing.T) {
	for _, shape := range []sandbox.TokenShape{sandbox.TokenShapeFlat, sandbox.TokenShapeData} {
		t.Run([]string{"", "flat", "data"}[shape], func(t *testing.T) {
			e := newSandboxEnv(t, sandbox.Options{TokenShape: shape})
			ctx := context.Background()
			acct, err := e.sb.Account(sandbox.AccountBusiness)
			if err != nil {
				t.Fatal(err)
			}

			// The authorize URL is accepted by the consent page, with and
			// without the request for Instagram's login screen.
			for _, force := range []bool{false, true} {
				resp, err := e.srv.Client().Get(e.c.AuthorizeURL("st", force))
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("authorize page (force_reauth %v): %d %s", force, resp.StatusCode, body)
				}
			}

			short, long := e.connect(t, sandbox.AccountBusiness)
			if short.UserID != acct.ID {
				t.Errorf("user id = %s, want %s exactly", short.UserID, acct.ID)
			}
			if len(short.Permissions) != 1 || short.Permissions[0] != Scope {
				t.Errorf("permissions = %q", short.Permissions)
			}
			if !long.ExpiresAt.Equal(epoch.Add(long.ExpiresIn)) || long.ExpiresIn > sandbox.LongTokenTTL || long.ExpiresIn < sandbox.LongTokenTTL-48*time.Hour {
				t.Errorf("expires in %v at %v, want about %v from now", long.ExpiresIn, long.ExpiresAt, sandbox.LongTokenTTL)
			}

			p, err := e.c.Me(ctx, "", long.AccessToken)
			if err != nil {
				t.Fatal(err)
			}
			if p.ID != acct.ID || p.UserID != acct.UserID || p.Username != acct.Username || p.AccountType != acct.AccountType ||
				p.MediaCount == nil || *p.MediaCount != int64(acct.MediaCount) || p.ProfilePictureURL == "" {
				t.Errorf("profile = %+v, account = %+v", p, acct)
			}

			want, _ := e.sb.Posts(sandbox.AccountBusiness)
			got, err := e.c.Media(ctx, p.UserID, long.AccessToken, len(want)+10)
			if err != nil {
				t.Fatal(err)
			}
			comparePosts(t, got, want)

			// Refresh: refused under 24 h (not a dead token), fine after.
			if _, err := e.c.Refresh(ctx, p.UserID, long.AccessToken); !errors.Is(err, ErrTokenTooYoung) || NeedsReauth(err) {
				t.Fatalf("young refresh: %v", err)
			}
			e.clock.Advance(25 * time.Hour)
			fresh, err := e.c.Refresh(ctx, p.UserID, long.AccessToken)
			if err != nil {
				t.Fatal(err)
			}
			if fresh.AccessToken == long.AccessToken || !fresh.ExpiresAt.After(long.ExpiresAt) {
				t.Errorf("refresh gave %+v", fresh)
			}
			// The old string dies with the refresh; the new one works.
			if _, err := e.c.Me(ctx, p.UserID, long.AccessToken); !errors.Is(err, ErrTokenInvalid) {
				t.Errorf("old token after refresh: %v", err)
			}
			if _, err := e.c.Me(ctx, p.UserID, fresh.AccessToken); err != nil {
				t.Errorf("new token: %v", err)
			}
			assertNoSecrets(t, "log", e.logs.String(), short.AccessToken, long.AccessToken, fresh.AccessToken, e.sb.AppSecret())
		})
	}
}

func comparePosts(t *testing.T, got []Media, want []sandbox.Post) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d posts, sandbox has %d", len(got), len(want))
	}
	reels := 0
	for i, w := range want {
		g := got[i]
		if g.ID != w.ID || g.MediaType != w.MediaType || !g.Timestamp.Equal(w.Timestamp.Truncate(time.Second)) {
			t.Errorf("post %d: got %s %s %v, want %s %s %v", i, g.ID, g.MediaType, g.Timestamp, w.ID, w.MediaType, w.Timestamp)
		}
		if (g.Caption == nil) != (w.Caption == "") || (g.Caption != nil && *g.Caption != w.Caption) {
			t.Errorf("post %d caption = %v, want %q", i, g.Caption, w.Caption)
		}
		if (g.LikeCount == nil) != w.HideLikes {
			t.Errorf("post %d like_count = %v, hidden = %v", i, g.LikeCount, w.HideLikes)
		}
		if g.IsReel() != w.Reel {
			t.Errorf("post %d IsReel = %v, want %v (%s)", i, g.IsReel(), w.Reel, g.Permalink)
		}
		if w.Reel {
			reels++
		}
		if len(g.Children) != len(w.Children) {
			t.Errorf("post %d: %d children, want %d", i, len(g.Children), len(w.Children))
		}
		if (g.MediaURL == "") == w.HasMediaURL {
			t.Errorf("post %d media_url = %q, has = %v", i, g.MediaURL, w.HasMediaURL)
		}
		if g.CoverURL() == "" {
			t.Errorf("post %d (%s) has no cover", i, g.MediaType)
		}
	}
	if reels == 0 {
		t.Errorf("the seed has no reels; the IsReel check proved nothing")
	}
}

func TestSandboxFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("revoked token needs reauth", func(t *testing.T) {
		e := newSandboxEnv(t, sandbox.Options{})
		_, long := e.connect(t, sandbox.AccountCreator)
		if err := e.sb.RevokeTokens(sandbox.AccountCreator); err != nil {
			t.Fatal(err)
		}
		_, err := e.c.Media(ctx, "", long.AccessToken, 5)
		if !errors.Is(err, ErrTokenInvalid) || !NeedsReauth(err) {
			t.Fatalf("err = %v", err)
		}
		assertNoSecrets(t, "error", err.Error(), long.AccessToken)
	})
	t.Run("expired token cannot be refreshed", func(t *testing.T) {
		e := newSandboxEnv(t, sandbox.Options{})
		tok := e.sb.MintLongLivedToken(sandbox.AccountCreator, epoch.Add(-48*time.Hour))
		if err := e.sb.ExpireTokens(sandbox.AccountCreator); err != nil {
			t.Fatal(err)
		}
		_, err := e.c.Refresh(ctx, "", tok)
		if !errors.Is(err, ErrTokenInvalid) || errors.Is(err, ErrTokenTooYoung) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("code works once", func(t *testing.T) {
		e := newSandboxEnv(t, sandbox.Options{})
		code, err := e.sb.IssueCode(sandbox.AccountBusiness, sbRedirect)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.ExchangeCode(ctx, code); err != nil {
			t.Fatal(err)
		}
		_, err = e.c.ExchangeCode(ctx, code)
		if !errors.Is(err, ErrCodeInvalid) {
			t.Fatalf("reused code: %v", err)
		}
		assertNoSecrets(t, "error", err.Error(), code)
	})
	t.Run("code expires after an hour", func(t *testing.T) {
		e := newSandboxEnv(t, sandbox.Options{})
		code, _ := e.sb.IssueCode(sandbox.AccountBusiness, sbRedirect)
		e.clock.Advance(sandbox.CodeTTL + time.Minute)
		if _, err := e.c.ExchangeCode(ctx, code); !errors.Is(err, ErrCodeInvalid) {
			t.Fatalf("expired code: %v", err)
		}
	})
	t.Run("redirect mismatch", func(t *testing.T) {
		e := newSandboxEnv(t, sandbox.Options{RedirectURIs: []string{sbRedirect + "/"}})
		code, _ := e.sb.IssueCode(sandbox.AccountBusiness, sbRedirect+"/")
		if _, err := e.c.ExchangeCode(ctx, code); !errors.Is(err, ErrRedirectMismatch) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("wrong app id and secret", func(t *testing.T) {
		e := newSandboxEnv(t, sandbox.Options{})
		client := func(appID, secret string) *Client {
			c, err := New(Config{AppID: appID, AppSecret: secret, RedirectURI: sbRedirect,
				TokenURL: e.sb.TokenURL(), GraphURL: e.sb.GraphURL(), HTTPClient: e.srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		for name, c := range map[string]*Client{
			"wrong app id": client("111", e.sb.AppSecret()),
			"wrong secret": client(e.sb.AppID(), "wrong-secret-value"),
		} {
			code, _ := e.sb.IssueCode(sandbox.AccountBusiness, sbRedirect)
			_, err := c.ExchangeCode(ctx, code)
			if !errors.Is(err, ErrInvalidApp) {
				t.Errorf("%s: code exchange: %v", name, err)
			}
		}
		code, _ := e.sb.IssueCode(sandbox.AccountBusiness, sbRedirect)
		short, err := e.c.ExchangeCode(ctx, code)
		if err != nil {
			t.Fatal(err)
		}
		_, err = client(e.sb.AppID(), "wrong-secret-value").ExchangeLongLived(ctx, short.AccessToken)
		if !errors.Is(err, ErrInvalidApp) {
			t.Fatalf("long-lived exchange with a wrong secret: %v", err)
		}
		assertNoSecrets(t, "error", err.Error(), "wrong-secret-value", short.AccessToken)
	})
	t.Run("account throttle stops calls until regain", func(t *testing.T) {
		e := newSandboxEnv(t, sandbox.Options{})
		_, long := e.connect(t, sandbox.AccountBusiness)
		acct, _ := e.sb.Account(sandbox.AccountBusiness)
		if err := e.sb.Throttle(sandbox.AccountBusiness, 30*time.Minute); err != nil {
			t.Fatal(err)
		}
		before := e.calls()
		_, err := e.c.Media(ctx, acct.UserID, long.AccessToken, 5)
		if !errors.Is(err, ErrThrottled) || RetryAfter(err) < 29*time.Minute || RetryAfter(err) > 31*time.Minute {
			t.Fatalf("err = %v (retry after %v), want about 30 min", err, RetryAfter(err))
		}
		if got := e.calls() - before; got != 1 {
			t.Fatalf("%d calls for one throttled poll, want 1", got)
		}
		for range 5 {
			if _, err := e.c.Me(ctx, acct.UserID, long.AccessToken); !errors.Is(err, ErrThrottled) {
				t.Errorf("blocked: %v", err)
			}
		}
		if got := e.calls() - before; got != 1 {
			t.Errorf("blocked calls reached the sandbox: %d", got)
		}
		e.clock.Advance(31 * time.Minute)
		if _, err := e.c.Media(ctx, acct.UserID, long.AccessToken, 5); err != nil {
			t.Errorf("after regain: %v", err)
		}
	})
	t.Run("app throttle blocks everyone", func(t *testing.T) {
		e := newSandboxEnv(t, sandbox.Options{})
		_, long := e.connect(t, sandbox.AccountBusiness)
		e.sb.ThrottleApp(10 * time.Minute)
		before := e.calls()
		if _, err := e.c.Me(ctx, "a", long.AccessToken); !errors.Is(err, ErrThrottled) {
			t.Fatalf("err = %v", err)
		}
		if _, err := e.c.Me(ctx, "b", long.AccessToken); !errors.Is(err, ErrThrottled) || e.calls()-before != 1 {
			t.Errorf("second account: err=%v calls=%d", err, e.calls()-before)
		}
	})
	t.Run("outage is retried within budget", func(t *testing.T) {
		e := newSandboxEnv(t, sandbox.Options{})
		_, long := e.connect(t, sandbox.AccountBusiness)
		e.sb.SetOutage(true)
		before := e.calls()
		_, err := e.c.Media(ctx, "", long.AccessToken, 5)
		if !errors.Is(err, ErrTransient) {
			t.Fatalf("err = %v", err)
		}
		n := e.calls() - before
		if n < 2 || n > maxAttempts || n != len(e.sl.durations())+1 {
			t.Errorf("%d calls, %d sleeps", n, len(e.sl.durations()))
		}
		e.sb.SetOutage(false)
		if _, err := e.c.Media(ctx, "", long.AccessToken, 5); err != nil {
			t.Errorf("after the outage: %v", err)
		}
	})
	t.Run("dropped connection on code exchange is not retried", func(t *testing.T) {
		e := newSandboxEnv(t, sandbox.Options{})
		code, _ := e.sb.IssueCode(sandbox.AccountBusiness, sbRedirect)
		e.sb.SetOutageMode(sandbox.OutageDropConnection)
		e.sb.SetOutage(true)
		before := e.calls()
		if _, err := e.c.ExchangeCode(ctx, code); !errors.Is(err, ErrTransient) {
			t.Fatalf("err = %v", err)
		}
		if got := e.calls() - before; got != 1 {
			t.Errorf("%d exchange attempts, want 1", got)
		}
	})
	t.Run("deleted posts leave short pages, the walk goes on", func(t *testing.T) {
		e := newSandboxEnv(t, sandbox.Options{})
		_, long := e.connect(t, sandbox.AccountBusiness)
		posts, _ := e.sb.Posts(sandbox.AccountBusiness)
		for _, p := range posts[:3] {
			if err := e.sb.DeletePost(sandbox.AccountBusiness, p.ID); err != nil {
				t.Fatal(err)
			}
		}
		got, err := e.c.Media(ctx, "", long.AccessToken, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 10 || got[0].ID != posts[3].ID {
			t.Errorf("got %d posts starting at %s, want 10 starting at %s", len(got), got[0].ID, posts[3].ID)
		}
	})
	t.Run("slow answers end with the context", func(t *testing.T) {
		e := newSandboxEnv(t, sandbox.Options{})
		_, long := e.connect(t, sandbox.AccountBusiness)
		e.sb.SetLatency(time.Minute)
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if _, err := e.c.Me(cctx, "", long.AccessToken); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v", err)
		}
		e.sb.SetLatency(0)
	})
	t.Run("personal accounts are reported as such", func(t *testing.T) {
		e := newSandboxEnv(t, sandbox.Options{})
		_, long := e.connect(t, sandbox.AccountPersonal)
		p, err := e.c.Me(ctx, "", long.AccessToken)
		if err != nil {
			t.Skipf("the sandbox refuses /me for personal accounts: %v", err)
		}
		if !strings.EqualFold(p.AccountType, "PERSONAL") {
			t.Errorf("account type = %q", p.AccountType)
		}
	})
}
