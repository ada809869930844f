package connection

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/store"
	"github.com/feedd/feedd/internal/testenv"
)

// A refreshed token that the store fails to take is kept in memory and
// used, its write retried with growing waits until it lands; each failure
// is logged at error level and counted.
func TestRefreshedTokenIsKeptWhenTheStoreFails(t *testing.T) {
	gate := testenv.NewRetryGate()
	e := newEnv(t, func(o *Options) { o.Sleep = gate.Sleep })
	ctx := context.Background()
	id := e.connect("Flaky", sandbox.AccountBusiness)
	old := e.token(id).AccessToken
	e.Clock.Advance(31 * 24 * time.Hour)
	e.Store.Fail(testenv.OpReplaceToken, 2)

	_ = e.svc.RefreshToken(ctx, id)
	if e.token(id).AccessToken != old {
		t.Fatal("setup: the store took the token despite the failure")
	}
	mem, err := e.svc.AccessToken(ctx, id)
	if err != nil || mem == old {
		t.Fatalf("AccessToken = %v, %v: the refreshed token was lost", mem == old, err)
	}
	if _, err := e.Graph.Me(ctx, "", mem); err != nil {
		t.Fatalf("the kept token does not work: %v", err)
	}
	if !strings.Contains(e.Logs.String(), "level=ERROR") {
		t.Error("the failed write is not logged at error level")
	}
	if n := e.metric("feedd_token_store_failures_total"); n != 1 {
		t.Errorf("feedd_token_store_failures_total = %v, want 1", n)
	}
	// A refresh meanwhile starts from the kept token, not the stored one.
	e.Sandbox.ResetCalls()
	if err := e.svc.RefreshToken(ctx, id); err != nil {
		t.Fatal(err)
	}
	first := gate.Next(t)
	gate.Release() // retry 1 fails
	second := gate.Next(t)
	if first <= 0 || second <= first {
		t.Errorf("waits %v then %v: want a growing backoff", first, second)
	}
	if n := e.metric("feedd_token_store_failures_total"); n != 2 {
		t.Errorf("feedd_token_store_failures_total = %v after a failed retry, want 2", n)
	}
	gate.Release() // retry 2 lands
	e.settle()
	if got := e.token(id).AccessToken; got != mem {
		t.Fatal("the retried write did not store the kept token")
	}
	if got, _ := e.svc.AccessToken(ctx, id); got != mem {
		t.Fatal("AccessToken after the write")
	}
	if n := e.GraphCalls(sandbox.EndpointRefresh); n != 0 {
		t.Errorf("%d refresh calls while the new token was kept", n)
	}
}

// A reconnect while a kept token waits for its write wins: the retry
// never overwrites the newer connection's token.
func TestKeptTokenLosesToAReconnect(t *testing.T) {
	for _, tc := range []struct {
		name string
		// reconnect replaces the feed's connection, through the service
		// or directly in the store (another instance).
		reconnect func(e *env, id string)
	}{
		{"through the service", func(e *env, id string) { e.reconnect(id, sandbox.AccountCreator) }},
		{"in the store", func(e *env, id string) {
			now := e.Clock.Now()
			if _, _, err := e.Store.Store.Connect(context.Background(), id, store.AnyGeneration, model.Account{IGUserID: "other", Username: "other"},
				model.Token{AccessToken: "IGAA-other-instance", TokenInfo: model.TokenInfo{ObtainedAt: now, ExpiresAt: now.Add(AssumedLifetime)}}); err != nil {
				e.t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gate := testenv.NewRetryGate()
			e := newEnv(t, func(o *Options) { o.Sleep = gate.Sleep })
			ctx := context.Background()
			id := e.connect("Raced", sandbox.AccountBusiness)
			e.Clock.Advance(31 * 24 * time.Hour)
			e.Store.Fail(testenv.OpReplaceToken, 1)
			_ = e.svc.RefreshToken(ctx, id)
			kept, _ := e.svc.AccessToken(ctx, id)
			tc.reconnect(e, id)
			now := e.token(id).AccessToken
			if now == kept {
				t.Fatal("setup: the reconnect did not change the token")
			}
			gate.Next(t)
			gate.Release()
			e.settle()
			if got := e.token(id).AccessToken; got != now {
				t.Fatal("the retry overwrote the newer connection's token")
			}
			if got, _ := e.svc.AccessToken(ctx, id); got != now {
				t.Fatal("AccessToken still hands out the superseded token")
			}
		})
	}
}

// A token exchanged at connect (or pasted and refreshed) that the store
// fails to take is kept and its connect retried: the feed ends connected
// with it, and the owner is told it is being saved.
func TestConnectTokenIsKeptWhenTheStoreFails(t *testing.T) {
	gate := testenv.NewRetryGate()
	e := newEnv(t, func(o *Options) { o.Sleep = gate.Sleep })
	ctx := context.Background()
	id := e.createFeed("Paste")
	pasted := e.Sandbox.MintLongLivedToken(sandbox.AccountBusiness, e.Clock.Now().Add(-10*24*time.Hour))
	e.AddSecret(pasted)
	e.Store.Fail(testenv.OpConnect, 1)
	if err := e.svc.PasteToken(ctx, id, pasted); err == nil {
		t.Fatal("the paste reported success before anything was stored")
	}
	if n := e.metric("feedd_token_store_failures_total"); n != 1 {
		t.Errorf("feedd_token_store_failures_total = %v, want 1", n)
	}
	gate.Next(t)
	gate.Release()
	e.settle()
	f := e.feed(id)
	if f.Status != model.StatusActive || f.Token == nil || f.Token.ExpiryAssumed {
		t.Fatalf("after the retry: %+v", f)
	}
	tok := e.token(id).AccessToken
	if tok == pasted {
		t.Fatal("the pasted token was stored instead of the refreshed one")
	}
	if _, err := e.Graph.Me(ctx, "", tok); err != nil {
		t.Fatalf("the stored token does not work: %v", err)
	}
}

// An error of the periodic token check (here: the store refuses to record
// a failed refresh) is logged with its feed, and the check goes on with
// the other feeds.
func TestTokenCheckErrorsAreLogged(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.connect("A", sandbox.AccountBusiness)
	b := e.connect("B", sandbox.AccountCreator)
	e.Clock.Advance(31 * 24 * time.Hour)
	e.Fetched(a, e.Clock.Now(), true)
	e.Fetched(b, e.Clock.Now(), true)
	e.Sandbox.SetOutage(true)
	e.Store.Fail(testenv.OpRecordRefreshFailure, 1)
	if err := e.svc.CheckTokens(ctx); err != nil {
		t.Fatal(err)
	}
	var logged bool
	for _, line := range strings.Split(e.Logs.String(), "\n") {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, testenv.ErrInjected.Error()) && strings.Contains(line, "feed=") {
			logged = true
		}
	}
	if !logged {
		t.Error("the token check's store error is not logged at error level with its feed")
	}
	if n := e.token(a).RefreshFailures + e.token(b).RefreshFailures; n != 1 {
		t.Errorf("%d refresh failures recorded, want the other feed's 1", n)
	}
}
