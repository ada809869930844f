package connection

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/cluster"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
)

func claimsFor(t *testing.T, o *Options, instance string) *cluster.Claims {
	t.Helper()
	c, err := cluster.NewClaims(cluster.ClaimsOptions{Store: o.Store.(cluster.Store), Instance: instance, Now: o.Now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Two instances' token checks find the same token due at the same time:
// Instagram is asked to refresh it once. (The sandbox, like Instagram,
// retires the old token on a refresh: a second refresh with it would
// mark the feed needs_reauth.)
func TestTwoInstancesRefreshATokenOnce(t *testing.T) {
	var second Options
	e := newEnv(t, func(o *Options) {
		o.Claims = claimsFor(t, o, "a")
		second = *o
	})
	second.Claims, second.Registerer = claimsFor(t, &second, "b"), nil
	b, err := New(second)
	if err != nil {
		t.Fatal(err)
	}
	b.SetFeeds(e.Feeds)
	t.Cleanup(b.Close)

	id := e.connect("shop", sandbox.AccountBusiness)
	e.Clock.Advance(40 * 24 * time.Hour) // 20 days left: inside the refresh window
	before := e.token(id)
	e.Sandbox.SetLatency(100 * time.Millisecond) // both checks list the token before either refresh ends
	var wg sync.WaitGroup
	for _, svc := range []*Service{e.svc, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := svc.CheckTokens(context.Background()); err != nil {
				t.Errorf("check tokens: %v", err)
			}
		}()
	}
	wg.Wait()
	e.Sandbox.SetLatency(0)
	if n := e.GraphCalls(sandbox.EndpointRefresh); n != 1 {
		t.Errorf("Instagram asked to refresh one due token %d times, want 1", n)
	}
	f := e.feed(id)
	if f.Status != model.StatusActive {
		t.Errorf("status %s (%s), want active", f.Status, f.StatusReason)
	}
	if after := e.token(id); after.AccessToken == before.AccessToken {
		t.Error("the token was not refreshed")
	}
}
