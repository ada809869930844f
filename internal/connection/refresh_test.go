package connection

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/store"
)

func TestRefresherKeepsTokenAliveForAYear(t *testing.T) {
	e := newEnv(t)
	id := e.connect("Year", sandbox.AccountBusiness)
	ctx := context.Background()
	e.Sandbox.ResetCalls()
	var refreshTimes []time.Time
	lastObtained := e.token(id)
	for step := 0; step < 365*24; step++ {
		e.Clock.Advance(time.Hour)
		now := e.Clock.Now()
		// The feed is viewed and polled, as a live one is: the idle probe stays quiet.
		e.Fetched(id, now, true)
		if err := e.svc.CheckTokens(ctx); err != nil {
			t.Fatalf("check at hour %d: %v", step, err)
		}
		tok := e.token(id)
		if !tok.ExpiresAt.After(now.Add(time.Hour)) {
			t.Fatalf("token lapses at hour %d (expires %v)", step, tok.ExpiresAt)
		}
		if tok.AccessToken != lastObtained.AccessToken {
			if age := now.Sub(lastObtained.ObtainedAt); age < MinTokenAge {
				t.Fatalf("refreshed a token %v old", age)
			}
			refreshTimes = append(refreshTimes, now)
			lastObtained = tok
		}
	}
	if got := e.GraphCalls(sandbox.EndpointRefresh); got != len(refreshTimes) {
		t.Fatalf("%d refresh calls for %d refreshes", got, len(refreshTimes))
	}
	if got := e.GraphCalls(sandbox.EndpointMe); got != 0 {
		t.Fatalf("%d /me probes for a feed the poller keeps proving alive", got)
	}
	if n := len(refreshTimes); n < 11 || n > 14 {
		t.Fatalf("%d refreshes in a year, want about one per 30 days", n)
	}
	if s := e.feed(id); s.Status != model.StatusActive || s.Token.RefreshedAt.IsZero() {
		t.Fatalf("after a year: %+v", s)
	}
	// The current token still works on Instagram.
	if _, err := e.Graph.Me(ctx, "", e.token(id).AccessToken); err != nil {
		t.Fatalf("token after a year: %v", err)
	}
}

func TestNoRefreshBefore24Hours(t *testing.T) {
	// A window longer than the token's life makes it due at once; only the 24h rule holds it back.
	e := newEnv(t, func(o *Options) { o.RefreshWindow = 90 * 24 * time.Hour })
	id := e.connect("Young", sandbox.AccountBusiness)
	ctx := context.Background()
	e.Sandbox.ResetCalls()
	for h := 0; h < 23; h++ {
		e.Clock.Advance(time.Hour)
		e.Fetched(id, e.Clock.Now(), true)
		if err := e.svc.CheckTokens(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.GraphCalls(sandbox.EndpointRefresh); n != 0 {
		t.Fatalf("%d refresh calls within 24h of issue", n)
	}
	e.Clock.Advance(90 * time.Minute)
	if err := e.svc.CheckTokens(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.GraphCalls(sandbox.EndpointRefresh); n != 1 {
		t.Fatalf("%d refresh calls after 24h, want 1", n)
	}
	if s := e.feed(id); s.Status != model.StatusActive || s.Token.RefreshedAt.IsZero() {
		t.Fatalf("status: %+v", s)
	}
}

func TestRevokedTokenFlipsToNeedsReauthWithinOneCheck(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(o *Options) { o.Registerer = reg })
	id := e.connect("Revoked", sandbox.AccountBusiness)
	other := e.connect("Other", sandbox.AccountCreator)
	ctx := context.Background()
	if err := e.svc.CheckTokens(ctx); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(e.svc.metrics.expiry.WithLabelValues(id)); got < 59*86400 {
		t.Fatalf("expiry gauge %v", got)
	}
	if err := e.Sandbox.RevokeTokens(sandbox.AccountBusiness); err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance(time.Hour)
	if err := e.svc.CheckTokens(ctx); err != nil {
		t.Fatal(err)
	}
	s := e.feed(id)
	if s.Status != model.StatusNeedsReauth || !strings.Contains(s.StatusReason, "reconnect") {
		t.Fatalf("after one check: %+v", s)
	}
	if s := e.feed(other); s.Status != model.StatusActive {
		t.Fatalf("other feed: %+v", s)
	}
	if got := testutil.ToFloat64(e.svc.metrics.reauth); got != 1 {
		t.Fatalf("feedd_feeds_needing_reauth = %v", got)
	}
	if !strings.Contains(e.Logs.String(), `level=WARN msg="feed needs reauth" feed=`+id) {
		t.Fatal("no warning log")
	}
	// Reconnecting clears it and says so.
	e.reconnect(id, sandbox.AccountBusiness)
	if s := e.feed(id); s.Status != model.StatusActive {
		t.Fatalf("after reconnect: %+v", s)
	}
	evs := e.webhookEvents()
	var names []string
	for _, ev := range evs {
		if ev.FeedID == id {
			names = append(names, ev.Event)
		}
	}
	// The first connect is a status change too (not_connected → active), so it is announced.
	if strings.Join(names, ",") != EventConnected+","+EventNeedsReauth+","+EventReconnected {
		t.Fatalf("webhook events %v", names)
	}
	if got := testutil.ToFloat64(e.svc.metrics.reauth); got != 0 {
		t.Fatalf("feedd_feeds_needing_reauth after reconnect = %v", got)
	}
}

func TestConcurrentRefreshesMakeOneCall(t *testing.T) {
	e := newEnv(t)
	id := e.connect("Concurrent", sandbox.AccountBusiness)
	e.Clock.Advance(31 * 24 * time.Hour) // inside the 30-day window
	e.Sandbox.SetLatency(20 * time.Millisecond)
	e.Sandbox.ResetCalls()
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); _ = e.svc.RefreshToken(ctx, id) }()
		go func() { defer wg.Done(); _ = e.svc.CheckTokens(ctx) }()
	}
	wg.Wait()
	if n := e.GraphCalls(sandbox.EndpointRefresh); n != 1 {
		t.Fatalf("%d refresh calls, want exactly 1", n)
	}
	if _, err := e.Graph.Me(ctx, "", e.token(id).AccessToken); err != nil {
		t.Fatalf("stored token is not the live one: %v", err)
	}
}

func TestRefreshIsCompareAndSwap(t *testing.T) {
	e := newEnv(t)
	id := e.connect("CAS", sandbox.AccountBusiness)
	e.Clock.Advance(31 * 24 * time.Hour)
	ctx := context.Background()
	// Between our read and our write, the owner reconnects: the newer token must win.
	old := e.token(id)
	e.svc.graph = graphWithHook{Graph: e.Graph, beforeRefresh: func() {
		if _, _, err := e.Store.Store.Connect(ctx, id, store.AnyGeneration, model.Account{IGUserID: "re", Username: "re"}, model.Token{AccessToken: "reconnected-token",
			TokenInfo: model.TokenInfo{ObtainedAt: e.Clock.Now(), ExpiresAt: e.Clock.Now().Add(AssumedLifetime)}}); err != nil {
			t.Error(err)
		}
	}}
	if err := e.svc.RefreshToken(ctx, id); err != nil {
		t.Fatal(err)
	}
	tok := e.token(id)
	if tok.AccessToken != "reconnected-token" || tok.AccessToken == old.AccessToken {
		t.Fatal("refresh overwrote a newer token")
	}
}

func TestFailedRefreshBacksOffAndWarnsBeforeExpiry(t *testing.T) {
	e := newEnv(t)
	id := e.connect("Backoff", sandbox.AccountBusiness)
	ctx := context.Background()
	e.Clock.Advance(54 * 24 * time.Hour) // under 7 days left
	e.Sandbox.SetOutage(true)
	if err := e.svc.CheckTokens(ctx); err != nil {
		t.Fatal(err)
	}
	tok := e.token(id)
	if tok.RefreshFailures != 1 || tok.NextRefreshAt.Sub(e.Clock.Now()) < baseBackoff/2 {
		t.Fatalf("after a failed refresh: failures %d, next in %v", tok.RefreshFailures, tok.NextRefreshAt.Sub(e.Clock.Now()))
	}
	if s := e.feed(id); s.Status != model.StatusActive || s.Token.LastRefreshError == "" {
		t.Fatalf("a transient failure must not flip the feed: %+v", s)
	}
	e.Sandbox.SetOutage(false)
	e.Clock.Advance(time.Hour)
	if err := e.svc.CheckTokens(ctx); err != nil {
		t.Fatal(err)
	}
	if s := e.feed(id); s.Token.ExpiresAt.Sub(e.Clock.Now()) < 59*24*time.Hour {
		t.Fatalf("not refreshed after the outage: %+v", s.Token)
	}
	var expiring int
	for _, ev := range e.webhookEvents() {
		if ev.Event == EventTokenExpiring && ev.FeedID == id {
			expiring++
		}
	}
	if expiring != 1 {
		t.Fatalf("%d token_expiring events, want 1", expiring)
	}
}

// Two instances, and one restarted, send one token_expiring reminder a day
// between them, not one each.
func TestTokenExpiringIsSentOnceADayAcrossInstances(t *testing.T) {
	e := newEnv(t)
	id := e.connect("Reminders", sandbox.AccountBusiness)
	ctx := context.Background()
	e.Clock.Advance(54 * 24 * time.Hour)
	e.Sandbox.SetOutage(true)
	second := e.another()
	count := func() int {
		e.settle()
		second.Wait()
		n := 0
		for _, ev := range e.webhookEvents() {
			if ev.Event == EventTokenExpiring && ev.FeedID == id {
				n++
			}
		}
		return n
	}
	for _, svc := range []*Service{e.svc, second, e.another()} {
		if err := svc.CheckTokens(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 1 {
		t.Fatalf("%d token_expiring events from three instances, want 1", n)
	}
	e.Clock.Advance(25 * time.Hour)
	for _, svc := range []*Service{second, e.svc} {
		if err := svc.CheckTokens(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 2 {
		t.Fatalf("%d token_expiring events after a day, want 2", n)
	}
}

// An idle feed's token is probed once per check interval between all
// instances, not once by each.
func TestIdleProbeIsSharedByInstances(t *testing.T) {
	e := newEnv(t)
	id := e.connect("Idle", sandbox.AccountBusiness)
	ctx := context.Background()
	others := []*Service{e.another(), e.another()}
	e.Clock.Advance(2 * time.Hour)
	e.Sandbox.ResetCalls()
	for hour := range 5 {
		for _, svc := range append([]*Service{e.svc}, others...) {
			if err := svc.CheckTokens(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if got := e.GraphCalls(sandbox.EndpointMe); got != hour+1 {
			t.Fatalf("%d /me probes of an idle feed after %d hourly checks of three instances, want %d", got, hour+1, hour+1)
		}
		e.Clock.Advance(time.Hour)
	}
	if s := e.feed(id); s.Status != model.StatusActive {
		t.Fatalf("status %s", s.Status)
	}
}

func TestBackoffIsCappedExponential(t *testing.T) {
	want := []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute}
	for i, w := range want {
		if got := backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := backoff(50); got != maxBackoff {
		t.Errorf("backoff(50) = %v", got)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.svc.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}

type graphWithHook struct {
	Graph
	beforeRefresh func()
}

func (g graphWithHook) Refresh(ctx context.Context, acct, token string) (graph.Token, error) {
	g.beforeRefresh()
	return g.Graph.Refresh(ctx, acct, token)
}
