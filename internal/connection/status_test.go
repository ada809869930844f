package connection

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
)

// Every change of a feed's connection status, whoever makes it, is
// counted by its target status, logged and sent to the webhook once; the
// gauge of feeds needing reauth follows, and the feed's cache is dropped.
func TestEveryStatusChangeIsCountedLoggedAndNotifiedOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.connect("Shop", sandbox.AccountBusiness)
	if n := e.metric("feedd_status_changes_total", "to", "active"); n != 1 {
		t.Errorf("connect counted %v times, want 1", n)
	}

	// A poll on the current connection sees the token refused, twice.
	f := e.feed(id)
	tok, err := e.svc.AccessToken(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	before := e.Feeds.Invalidations(id)
	for range 2 {
		if err := e.svc.TokenRejected(ctx, id, f.Generation, tok, "Instagram refused the token: reconnect"); err != nil {
			t.Fatal(err)
		}
	}
	if s := e.feed(id); s.Status != model.StatusNeedsReauth || s.StatusReason != "Instagram refused the token: reconnect" {
		t.Fatalf("after the poll: %s %q", s.Status, s.StatusReason)
	}
	if e.Feeds.Invalidations(id) == before {
		t.Error("the status change did not drop the feed's cached answers")
	}
	if n := e.metric("feedd_status_changes_total", "to", "needs_reauth"); n != 1 {
		t.Errorf("needs_reauth counted %v times, want 1", n)
	}
	if g := e.metric("feedd_feeds_needing_reauth"); g != 1 {
		t.Errorf("feedd_feeds_needing_reauth = %v", g)
	}
	if !strings.Contains(e.Logs.String(), `level=WARN msg="feed needs reauth" feed=`+id) {
		t.Error("no warning log")
	}

	e.reconnect(id, sandbox.AccountBusiness)
	if g := e.metric("feedd_feeds_needing_reauth"); g != 0 {
		t.Errorf("feedd_feeds_needing_reauth after reconnect = %v", g)
	}
	if err := e.svc.Disconnect(ctx, id); err != nil {
		t.Fatal(err)
	}
	if n := e.metric("feedd_status_changes_total", "to", "not_connected"); n != 1 {
		t.Errorf("disconnect counted %v times, want 1", n)
	}
	want := []string{EventConnected, EventNeedsReauth, EventReconnected, EventDisconnected}
	if got := e.eventNames(id); !slices.Equal(got, want) {
		t.Fatalf("webhook events %v, want %v", got, want)
	}
}

// A poll that started on a connection that was replaced, or with a token
// that was replaced, changes nothing when its token is refused.
func TestTokenRejectedForAnOlderConnectionOrTokenChangesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	// The owner pastes the same young token again: same string, new connection.
	id := e.createFeed("Repasted")
	young := e.Sandbox.MintLongLivedToken(sandbox.AccountCreator, e.Clock.Now())
	e.AddSecret(young)
	if err := e.svc.PasteToken(ctx, id, young); err != nil {
		t.Fatal(err)
	}
	gen := e.feed(id).Generation
	if err := e.svc.PasteToken(ctx, id, young); err != nil {
		t.Fatal(err)
	}
	if e.token(id).AccessToken != young {
		t.Fatal("setup: the young token was not kept as is")
	}
	if err := e.svc.TokenRejected(ctx, id, gen, young, "refused"); err != nil {
		t.Fatal(err)
	}
	if s := e.feed(id); s.Status != model.StatusActive {
		t.Errorf("a poll of the previous connection flipped the new one to %s", s.Status)
	}

	// Disconnected while the poll ran.
	gone := e.connect("Gone", sandbox.AccountBusiness)
	f := e.feed(gone)
	tok := e.token(gone).AccessToken
	if err := e.svc.Disconnect(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.TokenRejected(ctx, gone, f.Generation, tok, "refused"); err != nil {
		t.Fatal(err)
	}
	if s := e.feed(gone); s.Status != model.StatusNotConnected {
		t.Errorf("disconnected feed is %s", s.Status)
	}

	// Refreshed while the poll ran: the poll holds the old string.
	live := e.connect("Refreshed", sandbox.AccountBusiness)
	f = e.feed(live)
	old := e.token(live).AccessToken
	e.Clock.Advance(31 * 24 * time.Hour)
	if err := e.svc.RefreshToken(ctx, live); err != nil {
		t.Fatal(err)
	}
	if e.token(live).AccessToken == old {
		t.Fatal("setup: not refreshed")
	}
	if err := e.svc.TokenRejected(ctx, live, f.Generation, old, "refused"); err != nil {
		t.Fatal(err)
	}
	if s := e.feed(live); s.Status != model.StatusActive {
		t.Errorf("a refused old token flipped the refreshed feed to %s", s.Status)
	}

	for _, id := range []string{id, gone, live} {
		for _, ev := range e.eventNames(id) {
			if ev == EventNeedsReauth {
				t.Errorf("feed %s: needs_reauth sent", id)
			}
		}
	}
	if n := e.metric("feedd_status_changes_total", "to", "needs_reauth"); n != 0 {
		t.Errorf("needs_reauth counted %v times", n)
	}
}

// Meta's deauthorize and data deletion are status changes like any other:
// each affected feed is counted, logged and announced once.
func TestMetaCallbacksAnnounceTheDisconnect(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.connect("A", sandbox.AccountBusiness)
	b := e.connect("B", sandbox.AccountBusiness)
	other := e.connect("Other", sandbox.AccountCreator)
	acct, _ := e.Sandbox.Account(sandbox.AccountBusiness)
	if _, err := e.svc.MetaCallback(ctx, model.KindDeauthorize, e.Sandbox.SignedRequest(acct.UserID)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a, b} {
		if got := e.eventNames(id); !slices.Equal(got, []string{EventConnected, EventDisconnected}) {
			t.Errorf("feed %s: events %v", id, got)
		}
		if e.Feeds.Invalidations(id) == 0 {
			t.Errorf("feed %s: cache not dropped", id)
		}
	}
	if got := e.eventNames(other); !slices.Equal(got, []string{EventConnected}) {
		t.Errorf("untouched feed: events %v", got)
	}
	if n := e.metric("feedd_status_changes_total", "to", "not_connected"); n != 2 {
		t.Errorf("disconnects counted %v times, want 2", n)
	}
}

// Two disconnects at once (the owner's button and Meta's deauthorize): the
// feed is disconnected once, so the owner is told once.
func TestConcurrentDisconnectsAnnounceOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.connect("Shop", sandbox.AccountBusiness)
	errs := make(chan error, 4)
	for range cap(errs) {
		go func() { errs <- e.svc.Disconnect(ctx, id) }()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := e.metric("feedd_status_changes_total", "to", "not_connected"); n != 1 {
		t.Errorf("disconnect counted %v times, want 1", n)
	}
	if got := e.eventNames(id); !slices.Equal(got, []string{EventConnected, EventDisconnected}) {
		t.Errorf("webhook events %v, want one disconnect", got)
	}
}
