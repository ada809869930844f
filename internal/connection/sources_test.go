package connection

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/cluster"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/testenv"
	"github.com/feedd/feedd/internal/web"
)

// addSource adds acct to the feed through the connect flow of a further
// account, as the setup page does, and waits for what the service started.
func (e *env) addSource(id, acct string) error {
	e.t.Helper()
	err := e.addSourceNoWait(id, acct)
	e.settle()
	return err
}

// addSourceNoWait is addSource without the wait: a retry in the background
// may be held by the test.
func (e *env) addSourceNoWait(id, acct string) error {
	e.t.Helper()
	ctx := context.Background()
	authz, err := e.svc.ConnectSource(ctx, id, nil)
	if err != nil {
		return err
	}
	u, _ := url.Parse(authz)
	if u.Query().Get("force_reauth") != "true" {
		e.t.Errorf("the connect of a further account does not ask Instagram for its login screen: %s", authz)
	}
	redirect, err := e.Sandbox.Approve(acct, e.svc.RedirectURI(), u.Query().Get("state"))
	if err != nil {
		e.t.Fatal(err)
	}
	cb, _ := url.Parse(redirect)
	q := cb.Query()
	e.AddSecret(q.Get("code"))
	_, err = e.svc.Callback(ctx, CallbackParams{State: q.Get("state"), Code: q.Get("code")}, nil)
	return err
}

func (e *env) sources(id string) []model.Source {
	e.t.Helper()
	srcs, err := e.Store.Sources(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return srcs
}

// A further account has its own lifecycle: its token refused moves it, not
// the feed, to needs_reauth, announced once and naming the account; an
// older token's refusal changes nothing; reconnecting it keeps its id.
func TestSourceLifecycleNamesTheAccount(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.connect("Shop", sandbox.AccountBusiness)
	if err := e.addSource(id, sandbox.AccountCreator); err != nil {
		t.Fatal(err)
	}
	srcs := e.sources(id)
	if len(srcs) != 2 || srcs[1].Account.Username != sandbox.AccountCreator || srcs[1].Status != model.StatusActive {
		t.Fatalf("sources after the add: %+v", srcs)
	}
	src := srcs[1]
	f := e.feed(id)
	tok, err := e.svc.SourceAccessToken(ctx, id, src.ID)
	if err != nil || tok == "" {
		t.Fatalf("source token: %v", err)
	}
	main, _ := e.svc.AccessToken(ctx, id)
	if tok == main {
		t.Fatal("the source holds the main account's token")
	}

	// A refusal of an older token or connection changes nothing.
	if err := e.svc.SourceTokenRejected(ctx, id, src.ID, f.Generation, src.Generation, "IGAAnotitstoken", "refused"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SourceTokenRejected(ctx, id, src.ID, f.Generation-1, src.Generation, tok, "refused"); err != nil {
		t.Fatal(err)
	}
	if s := e.sources(id)[1]; s.Status != model.StatusActive {
		t.Fatalf("a stale refusal moved the source to %s", s.Status)
	}
	for range 2 {
		if err := e.svc.SourceTokenRejected(ctx, id, src.ID, f.Generation, src.Generation, tok, "Instagram refused the token: reconnect"); err != nil {
			t.Fatal(err)
		}
	}
	srcs = e.sources(id)
	if srcs[0].Status != model.StatusActive || srcs[1].Status != model.StatusNeedsReauth {
		t.Fatalf("after the refusal: main %s, source %s", srcs[0].Status, srcs[1].Status)
	}
	if w, _ := model.Worst(srcs); w.ID != src.ID || w.Account.Username != sandbox.AccountCreator {
		t.Fatalf("worst source %s @%s", w.ID, w.Account.Username)
	}
	var reauth []Event
	for _, ev := range e.webhookEvents() {
		if ev.Event == EventNeedsReauth {
			reauth = append(reauth, ev)
		}
	}
	if len(reauth) != 1 || reauth[0].Source != src.ID || reauth[0].Username != sandbox.AccountCreator ||
		!strings.Contains(reauth[0].Message, "@"+sandbox.AccountCreator) {
		t.Fatalf("needs_reauth events %+v, want one naming @%s", reauth, sandbox.AccountCreator)
	}
	if !strings.Contains(e.Logs.String(), `msg="source needs reauth" feed=`+id) {
		t.Error("no warning log for the source")
	}

	// Reconnected: same source, new generation, active.
	if err := e.addSource(id, sandbox.AccountCreator); err != nil {
		t.Fatal(err)
	}
	re := e.sources(id)[1]
	if re.ID != src.ID || re.Status != model.StatusActive || re.Generation == src.Generation {
		t.Fatalf("reconnected source %+v", re)
	}

	// Removed: its event names it; the feed stays connected.
	if err := e.svc.RemoveSource(ctx, id, src.ID); err != nil {
		t.Fatal(err)
	}
	if n := len(e.sources(id)); n != 1 || e.feed(id).Status != model.StatusActive {
		t.Fatalf("after removal: %d sources, feed %s", n, e.feed(id).Status)
	}
	want := []string{EventConnected, EventConnected, EventNeedsReauth, EventReconnected, EventDisconnected}
	if got := e.eventNames(id); !slices.Equal(got, want) {
		t.Fatalf("webhook events %v, want %v", got, want)
	}
}

func TestSourceRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	bare := e.createFeed("bare")
	if _, err := e.svc.ConnectSource(ctx, bare, nil); !isBadSource(err) {
		t.Fatalf("a further account for a feed not connected: %v, want 400 invalid_source", err)
	}
	id := e.connect("Shop", sandbox.AccountBusiness)
	other := e.connect("Other", sandbox.AccountCreator)
	// The feed's own account again.
	var fe *FlowError
	if err := e.addSource(id, sandbox.AccountBusiness); !errors.As(err, &fe) || fe.Code != "invalid_source" || fe.Status != http.StatusBadRequest {
		t.Fatalf("the main account as a source: %v", err)
	}
	if err := e.addSource(id, sandbox.AccountCreator); err != nil {
		t.Fatal(err)
	}
	if err := e.addSource(id, sandbox.AccountCreator); !errors.As(err, &fe) || fe.Code != "invalid_source" {
		t.Fatalf("an account added twice: %v", err)
	}
	src := e.sources(id)[1]
	// Another feed's source, the main source, an unknown one.
	for _, c := range []struct{ feed, source string }{{other, src.ID}, {id, model.MainSource}, {id, "nosuchsrc0"}} {
		if err := e.svc.RemoveSource(ctx, c.feed, c.source); !isBadSource(err) {
			t.Errorf("remove %s of %s: %v, want 400 invalid_source", c.source, c.feed, err)
		}
	}
	if n := len(e.sources(id)); n != 2 {
		t.Fatalf("%d sources left, want 2", n)
	}
}

// An account approved on Instagram whose save fails is kept and its add
// retried: the owner is told it is being saved, and the account joins the
// feed without a second sign-in.
func TestAddedAccountIsKeptWhenTheStoreFails(t *testing.T) {
	gate := testenv.NewRetryGate()
	e := newEnv(t, func(o *Options) { o.Sleep = gate.Sleep })
	id := e.connect("Shop", sandbox.AccountBusiness)
	e.Store.Fail(testenv.OpAddSource, 2)
	var fe *FlowError
	if err := e.addSourceNoWait(id, sandbox.AccountCreator); !errors.As(err, &fe) || fe.Code != "store_retrying" {
		t.Fatalf("add with the store failing: %v, want store_retrying", err)
	}
	if n := len(e.sources(id)); n != 1 {
		t.Fatalf("%d sources before the retry, want the main one", n)
	}
	gate.Next(t)
	gate.Release() // the first retry fails too
	gate.Next(t)
	gate.Release()
	e.settle()
	srcs := e.sources(id)
	if len(srcs) != 2 || srcs[1].Account.Username != "sandbox_studio" || srcs[1].Status != model.StatusActive {
		t.Fatalf("after the retries: %+v", srcs)
	}
	if n := e.metric("feedd_token_store_failures_total"); n != 2 {
		t.Errorf("feedd_token_store_failures_total = %v, want 2", n)
	}
}

// A kept account whose feed is reconnected before its save lands is not
// added to the new connection: the retry stops.
func TestKeptAccountLosesToAReconnect(t *testing.T) {
	gate := testenv.NewRetryGate()
	e := newEnv(t, func(o *Options) { o.Sleep = gate.Sleep })
	id := e.connect("Shop", sandbox.AccountBusiness)
	e.Store.Fail(testenv.OpAddSource, 1)
	if err := e.addSourceNoWait(id, sandbox.AccountCreator); err == nil {
		t.Fatal("the add reported success before anything was stored")
	}
	e.reconnect(id, sandbox.AccountBusiness)
	gate.Next(t)
	gate.Release()
	e.settle()
	if srcs := e.sources(id); len(srcs) != 1 {
		t.Fatalf("after the reconnect and the retry: %+v, want the main account only", srcs)
	}
	if !strings.Contains(e.Logs.String(), "kept token not stored") {
		t.Error("the dropped retry is not logged")
	}
}

func isBadSource(err error) bool {
	var we *web.Error
	return errors.As(err, &we) && we.Status == http.StatusBadRequest && we.Code == "invalid_source" &&
		strings.HasPrefix(we.Message, "source:")
}

// A further account's token is refreshed on its own, claimed once by one
// of two instances, and a dead one moves that account (not the feed) to
// needs_reauth.
func TestSourceTokenRefreshedOnceAndItsDeathNamed(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		c, err := cluster.NewClaims(cluster.ClaimsOptions{Store: o.Store.(*testenv.FaultStore).Store, Instance: "a", Now: o.Now})
		if err != nil {
			t.Fatal(err)
		}
		o.Claims = c
	})
	id := e.connect("Shop", sandbox.AccountBusiness)
	if err := e.addSource(id, sandbox.AccountCreator); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before, _ := e.svc.SourceAccessToken(ctx, id, e.sources(id)[1].ID)
	// A second instance on the same database, its own claims.
	claimsB, err := cluster.NewClaims(cluster.ClaimsOptions{Store: e.Store.Store, Instance: "b", Now: e.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	other, err := New(Options{Store: e.Store, Graph: e.Graph, Files: e.Files, PublicURL: testPublicURL,
		AppID: e.Sandbox.AppID(), AppSecret: e.Sandbox.AppSecret(), CheckInterval: time.Hour, RefreshWindow: 720 * time.Hour,
		Now: e.Clock.Now, Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
		Logger: e.Logger(), Registerer: prometheus.NewRegistry(), Claims: claimsB})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)

	e.Clock.Add(31 * 24 * time.Hour) // inside the refresh window
	refreshes := func() int {
		n := 0
		for _, c := range e.Sandbox.Calls() {
			if c.Endpoint == sandbox.EndpointRefresh && c.Account == sandbox.AccountCreator {
				n++
			}
		}
		return n
	}
	var wg sync.WaitGroup
	for _, svc := range []*Service{e.svc, other} {
		wg.Add(1)
		go func() { defer wg.Done(); svc.CheckTokens(ctx) }()
	}
	wg.Wait()
	after, _ := e.svc.SourceAccessToken(ctx, id, e.sources(id)[1].ID)
	if n := refreshes(); n != 1 || after == before {
		t.Fatalf("%d refreshes of the source's token by two instances (token changed: %v), want 1", n, after != before)
	}
	e.AddSecret(after)

	e.Sandbox.RevokeTokens(sandbox.AccountCreator)
	e.Clock.Add(31 * 24 * time.Hour)
	if err := e.svc.CheckTokens(ctx); err != nil {
		t.Fatal(err)
	}
	srcs := e.sources(id)
	if srcs[0].Status != model.StatusActive || srcs[1].Status != model.StatusNeedsReauth {
		t.Fatalf("after the revoked refresh: main %s, source %s", srcs[0].Status, srcs[1].Status)
	}
	var named bool
	for _, ev := range e.webhookEvents() {
		named = named || ev.Event == EventNeedsReauth && ev.Source == srcs[1].ID && ev.Username == sandbox.AccountCreator
	}
	if !named {
		t.Fatal("no needs_reauth event naming the account")
	}
}

// Meta's data deletion for an account that is a further source of a feed
// removes that source with its token, posts and images; the feed and its
// main account stay.
func TestMetaDeletionRemovesTheUsersSources(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.connect("Shop", sandbox.AccountBusiness)
	if err := e.addSource(id, sandbox.AccountCreator); err != nil {
		t.Fatal(err)
	}
	acct, _ := e.Sandbox.Account(sandbox.AccountCreator)
	payload := map[string]any{"algorithm": "HMAC-SHA256", "user_id": acct.UserID, "issued_at": e.Clock.Now().Unix()}
	req, err := e.svc.MetaCallback(ctx, model.KindDelete, signed(e.Sandbox.AppSecret(), payload))
	if err != nil {
		t.Fatal(err)
	}
	srcs := e.sources(id)
	if len(srcs) != 1 || srcs[0].Account.Username != sandbox.AccountBusiness || e.feed(id).Status != model.StatusActive {
		t.Fatalf("after Meta's deletion of the source's user: %+v", srcs)
	}
	if req.FeedsAffected != 1 {
		t.Fatalf("feeds affected %d, want 1", req.FeedsAffected)
	}
	var removed bool
	for _, ev := range e.webhookEvents() {
		removed = removed || ev.Event == EventDisconnected && ev.Username == sandbox.AccountCreator && strings.Contains(ev.Message, "delete")
	}
	if !removed {
		t.Fatal("no event naming the removed account")
	}
}
