package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func meURL(e *env, tok string) string {
	return e.sb.GraphURL() + "/v25.0/me?" + url.Values{"fields": {"id"}, "access_token": {tok}}.Encode()
}

func TestOutage(t *testing.T) {
	e := newEnv(t, Options{DisableImageGenerator: true})
	tok := e.longToken(AccountBusiness)
	e.sb.SetOutage(true)
	r := e.get(meURL(e, tok))
	if code, _, _, transient := graphErr(t, r); r.status != 503 || code != 2 || !transient {
		t.Fatalf("outage: %d code %d transient %v", r.status, code, transient)
	}
	if r := e.postForm(e.sb.TokenURL(), url.Values{}); r.status != 503 {
		t.Fatalf("token host during outage: %d", r.status)
	}

	e.sb.SetOutageMode(OutageDropConnection)
	if _, err := e.hc.Get(meURL(e, tok)); err == nil {
		t.Fatal("dropped connection should fail the request")
	}
	e.sb.SetOutage(false)
	if r := e.get(meURL(e, tok)); r.status != 200 {
		t.Fatalf("after outage: %d", r.status)
	}
	calls := e.sb.Calls()
	if last := calls[len(calls)-2]; last.Status != 0 || last.Endpoint != EndpointMe {
		t.Fatalf("dropped call should be recorded with status 0: %+v", last)
	}
}

func TestLatencyHonoursClientTimeout(t *testing.T) {
	e := newEnv(t, Options{DisableImageGenerator: true})
	tok := e.longToken(AccountBusiness)
	e.sb.SetLatency(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, meURL(e, tok), nil)
	if _, err := e.hc.Do(req); err == nil {
		t.Fatal("slow sandbox answered inside the client's deadline")
	}
	e.sb.SetLatency(0)
	if r := e.get(meURL(e, tok)); r.status != 200 {
		t.Fatalf("latency off: %d", r.status)
	}
}

type buc map[string][]struct {
	Type      string `json:"type"`
	CallCount int    `json:"call_count"`
	Regain    int    `json:"estimated_time_to_regain_access"`
}

func usage(t *testing.T, r result) (app int, b buc) {
	t.Helper()
	var a struct {
		CallCount int `json:"call_count"`
	}
	if err := json.Unmarshal([]byte(r.header.Get("X-App-Usage")), &a); err != nil {
		t.Fatalf("X-App-Usage %q: %v", r.header.Get("X-App-Usage"), err)
	}
	if err := json.Unmarshal([]byte(r.header.Get("X-Business-Use-Case-Usage")), &b); err != nil {
		t.Fatalf("X-Business-Use-Case-Usage %q: %v", r.header.Get("X-Business-Use-Case-Usage"), err)
	}
	return a.CallCount, b
}

func TestThrottleAccount(t *testing.T) {
	e := newEnv(t, Options{DisableImageGenerator: true})
	biz := mustAccount(t, e.sb, AccountBusiness)
	tok := e.longToken(AccountBusiness)
	other := e.longToken(AccountCreator)
	if err := e.sb.Throttle(AccountBusiness, 90*time.Minute); err != nil {
		t.Fatal(err)
	}
	r := e.get(meURL(e, tok))
	code, _, _, transient := graphErr(t, r)
	_, b := usage(t, r)
	if code != 80002 || !transient || len(b[biz.UserID]) != 1 || b[biz.UserID][0].CallCount != 100 ||
		b[biz.UserID][0].Regain != 90 || b[biz.UserID][0].Type != "instagram" {
		t.Fatalf("throttled: code %d, usage %s", code, r.header.Get("X-Business-Use-Case-Usage"))
	}
	if r := e.get(meURL(e, other)); r.status != 200 {
		t.Fatalf("another account must not be throttled: %d", r.status)
	}
	e.clock.Add(89 * time.Minute)
	if _, b := usage(t, e.get(meURL(e, tok))); b[biz.UserID][0].Regain != 1 {
		t.Fatalf("regain estimate should shrink with the clock: %+v", b)
	}
	e.clock.Add(time.Minute)
	if r := e.get(meURL(e, tok)); r.status != 200 {
		t.Fatalf("after regain: %d %s", r.status, r.body)
	}
	if err := e.sb.Throttle("nobody", time.Minute); err == nil {
		t.Fatal("unknown account accepted")
	}
}

func TestThrottleApp(t *testing.T) {
	e := newEnv(t, Options{DisableImageGenerator: true})
	tok := e.longToken(AccountCreator)
	e.sb.ThrottleApp(10 * time.Minute)
	r := e.get(meURL(e, tok))
	code, _, _, _ := graphErr(t, r)
	if app, _ := usage(t, r); code != 4 || app != 100 {
		t.Fatalf("app throttle: code %d app usage %d", code, app)
	}
	e.clock.Add(10 * time.Minute)
	if r := e.get(meURL(e, tok)); r.status != 200 {
		t.Fatalf("after regain: %d", r.status)
	}
}

func TestUsageGrowsWithCalls(t *testing.T) {
	e := newEnv(t, Options{DisableImageGenerator: true, AccountCallBudget: 10, AppCallBudget: 20})
	tok := e.sb.MintLongLivedToken(AccountBusiness, e.clock.Now())
	biz := mustAccount(t, e.sb, AccountBusiness)
	var last int
	for i := 1; i <= 5; i++ {
		app, b := usage(t, e.get(meURL(e, tok)))
		if got := b[biz.UserID][0].CallCount; got != i*10 || app != i*5 {
			t.Fatalf("call %d: account usage %d%% app %d%%, want %d%% and %d%%", i, got, app, i*10, i*5)
		}
		last = app
	}
	// Calls older than the rolling windows stop counting.
	e.clock.Add(25 * time.Hour)
	app, b := usage(t, e.get(meURL(e, e.sb.MintLongLivedToken(AccountBusiness, e.clock.Now()))))
	if b[biz.UserID][0].CallCount != 10 || app >= last {
		t.Fatalf("old calls still count: account %d app %d", b[biz.UserID][0].CallCount, app)
	}
}

func TestRevokeAndExpireTokens(t *testing.T) {
	e := newEnv(t, Options{DisableImageGenerator: true})
	biz, cr := e.longToken(AccountBusiness), e.longToken(AccountCreator)
	if err := e.sb.RevokeTokens(AccountBusiness); err != nil {
		t.Fatal(err)
	}
	if code, sub, _, _ := graphErr(t, e.get(meURL(e, biz))); code != 190 || sub != 460 {
		t.Fatalf("revoked: %d/%d", code, sub)
	}
	if r := e.get(meURL(e, cr)); r.status != 200 {
		t.Fatal("revoking one account killed another's token")
	}
	if r := e.get(meURL(e, e.longToken(AccountBusiness))); r.status != 200 {
		t.Fatal("reconnecting after a revoke must work")
	}
	if err := e.sb.ExpireTokens(""); err != nil {
		t.Fatal(err)
	}
	if code, sub, msg, _ := graphErr(t, e.get(meURL(e, cr))); code != 190 || sub != 463 || !strings.Contains(msg, "expired") {
		t.Fatalf("expired: %d/%d %q", code, sub, msg)
	}
}

func TestDeleteEditAddPosts(t *testing.T) {
	e := newEnv(t, Options{DisableImageGenerator: true})
	tok := e.longToken(AccountCreator)
	list := func() []mediaItem {
		return decodePage(t, e.graph("/v25.0/me/media", url.Values{"fields": {"caption,media_type"}, "limit": {"3"}, "access_token": {tok}})).Data
	}
	before := list()
	if err := e.sb.DeletePost(AccountCreator, before[1].ID); err != nil {
		t.Fatal(err)
	}
	after := list()
	if len(after) != 2 || after[0].ID != before[0].ID || after[1].ID != before[2].ID {
		t.Fatalf("after delete the page keeps its slot and holds fewer items: %+v", after)
	}
	if code, _, _, _ := graphErr(t, e.graph("/v25.0/"+before[1].ID, url.Values{"access_token": {tok}})); code != 100 {
		t.Fatalf("deleted node: code %d", code)
	}
	if err := e.sb.DeletePost(AccountCreator, before[1].ID); err == nil {
		t.Fatal("deleting twice should fail")
	}
	if a := mustAccount(t, e.sb, AccountCreator); a.MediaCount != 5 {
		t.Fatalf("media_count after delete = %d", a.MediaCount)
	}

	if err := e.sb.EditCaption(AccountCreator, before[0].ID, "edited ✏️"); err != nil {
		t.Fatal(err)
	}
	if got := list()[0].Caption; got == nil || *got != "edited ✏️" {
		t.Fatalf("edited caption: %v", got)
	}
	if err := e.sb.EditCaption(AccountCreator, before[0].ID, ""); err != nil {
		t.Fatal(err)
	}
	if got := list()[0].Caption; got != nil {
		t.Fatalf("removed caption still there: %q", *got)
	}

	id, err := e.sb.AddPost(AccountCreator, PostSpec{MediaType: MediaCarousel, Caption: "new!",
		Children: []PostSpec{{}, {MediaType: MediaVideo}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := list()[0]; got.ID != id || got.MediaType != MediaCarousel {
		t.Fatalf("new post not first: %+v", got)
	}
	for name, sp := range map[string]PostSpec{
		"carousel of one":    {MediaType: MediaCarousel, Children: []PostSpec{{}}},
		"carousel of eleven": {MediaType: MediaCarousel, Children: make([]PostSpec, 11)},
		"nested carousel":    {MediaType: MediaCarousel, Children: []PostSpec{{}, {MediaType: MediaCarousel}}},
		"image reel":         {Reel: true},
		"unknown type":       {MediaType: "STORY"},
	} {
		if _, err := e.sb.AddPost(AccountCreator, sp); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestCallsRecordHoldsNoSecrets(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, Options{Logger: logger, DisableImageGenerator: true})
	code := e.codeFor(AccountBusiness)
	short := e.exchangeCode(code).json(t)["access_token"].(string)
	long := e.graph("/access_token", url.Values{"grant_type": {"ig_exchange_token"}, "client_secret": {e.sb.AppSecret()}, "access_token": {short}}).json(t)["access_token"].(string)
	page := decodePage(t, e.graph("/v25.0/me/media", url.Values{"fields": {"media_url"}, "access_token": {long}}))
	e.get(*page.Data[0].MediaURL)

	calls := e.sb.Calls()
	wantEndpoints := []string{EndpointToken, EndpointExchange, EndpointMedia, EndpointCDN}
	if len(calls) != len(wantEndpoints) {
		t.Fatalf("calls: %+v", calls)
	}
	for i, c := range calls {
		if c.Endpoint != wantEndpoints[i] || c.Time.IsZero() || c.Status != 200 {
			t.Errorf("call %d = %+v, want endpoint %s", i, c, wantEndpoints[i])
		}
		if i < 3 && c.Account != AccountBusiness {
			t.Errorf("call %d not attributed: %+v", i, c)
		}
		rec := fmt.Sprintf("%+v", c)
		for _, secret := range []string{code, short, long, e.sb.AppSecret(), "access_token=", "oh="} {
			if strings.Contains(rec, secret) {
				t.Errorf("call record leaks a secret: %s", rec)
			}
		}
	}
	for _, secret := range []string{code, short, long, e.sb.AppSecret(), "access_token="} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("log leaks a secret:\n%s", logs.String())
		}
	}
	e.sb.ResetCalls()
	if len(e.sb.Calls()) != 0 {
		t.Fatal("ResetCalls kept calls")
	}
}

func TestServesUnderStripPrefixAndAtRoot(t *testing.T) {
	sb := New(Options{RedirectURIs: []string{testRedirect}, DisableImageGenerator: true})
	mux := http.NewServeMux()
	mux.Handle("/x/", http.StripPrefix("/x", sb))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	if err := sb.SetBaseURL(srv.URL + "/x"); err != nil {
		t.Fatal(err)
	}
	tok := sb.MintLongLivedToken(AccountBusiness, time.Now())
	res, err := http.Get(sb.GraphURL() + "/v25.0/me/media?limit=1&fields=media_url&access_token=" + url.QueryEscape(tok))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("stripped mount: %v %v", err, res)
	}
	var p mediaPage
	_ = json.NewDecoder(res.Body).Decode(&p)
	res.Body.Close()
	if !strings.HasPrefix(p.Paging.Next, srv.URL+"/x/graph/") {
		t.Fatalf("next link ignores the mount: %s", p.Paging.Next)
	}
	if res, err := http.Get(*p.Data[0].MediaURL); err != nil || res.StatusCode != 200 {
		t.Fatalf("CDN under stripped mount: %v %v", err, res)
	}

	// No BaseURL at all: links follow the Host the request came to.
	root := New(Options{DisableImageGenerator: true})
	rs := httptest.NewServer(root)
	defer rs.Close()
	tok = root.MintLongLivedToken(AccountCreator, time.Now())
	res, err = http.Get(rs.URL + "/graph/v25.0/me?fields=profile_picture_url&access_token=" + url.QueryEscape(tok))
	if err != nil {
		t.Fatal(err)
	}
	var me map[string]string
	_ = json.NewDecoder(res.Body).Decode(&me)
	res.Body.Close()
	if !strings.HasPrefix(me["profile_picture_url"], rs.URL+"/cdn/") {
		t.Fatalf("derived base: %v", me)
	}
	if err := root.SetBaseURL("ftp://x"); err == nil {
		t.Fatal("SetBaseURL accepted a non-http URL")
	}
}

func TestConcurrentUseIsSafe(t *testing.T) {
	e := newEnv(t, Options{DisableImageGenerator: true})
	tok := e.sb.MintLongLivedToken(AccountBusiness, e.clock.Now())
	hc := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				u := e.sb.GraphURL() + "/v25.0/me/media?fields=" + url.QueryEscape(allMediaFields) + "&access_token=" + url.QueryEscape(tok)
				if res, err := hc.Get(u); err == nil {
					var p mediaPage
					_ = json.NewDecoder(res.Body).Decode(&p)
					res.Body.Close()
					if len(p.Data) > 0 && p.Data[0].MediaURL != nil {
						if res, err := hc.Get(*p.Data[0].MediaURL); err == nil {
							res.Body.Close()
						}
					}
				}
				switch (i + j) % 5 {
				case 0:
					_ = e.sb.Throttle(AccountCreator, time.Minute)
				case 1:
					e.sb.ExpireMediaURLs()
				case 2:
					_, _ = e.sb.AddPost(AccountCreator, PostSpec{Caption: "x"})
				case 3:
					_ = e.sb.Calls()
				case 4:
					_, _ = e.sb.Approve(AccountCreator, testRedirect, "s")
				}
			}
		}()
	}
	wg.Wait()
	if n := len(e.sb.Calls()); n < 80 {
		t.Fatalf("only %d calls recorded", n)
	}
}
