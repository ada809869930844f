package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
)

// leaseEnv is a store with one connected feed, for the lease tests.
func leaseEnv(t *testing.T, open opener) (*env, model.Feed) {
	t.Helper()
	e := open(t)
	f := must[model.Feed](t)(e.s.CreateFeed(context.Background(), "f", nil))
	connect(t, e.s, f.ID, "1", "IGAAfirst")
	return e, must[model.Feed](t)(e.s.Feed(context.Background(), f.ID))
}

// race runs claim n times at once (as n instances) and counts the wins.
func race(t *testing.T, n int, claim func(i int) (bool, error)) int {
	t.Helper()
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := claim(i)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(wins.Load())
}

// A poll slot is claimed once: not by a second instance while the first
// holds it, and not by an instance that read the slot before the first
// finished it, even once the first let go.
func TestPollSlotIsClaimedOnce(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e, f := leaseEnv(t, open)
		slot, until := f.NextFetchAt, t0.Add(time.Minute)
		if slot.IsZero() {
			t.Fatal("a connected feed has a next poll time")
		}
		if ok := must[bool](t)(e.s.ClaimPoll(ctx, f.ID, "a", slot, false, until)); !ok {
			t.Fatal("first claim refused")
		}
		if ok := must[bool](t)(e.s.ClaimPoll(ctx, f.ID, "b", slot, false, until)); ok {
			t.Fatal("second instance claimed a held slot")
		}
		if ok := must[bool](t)(e.s.ClaimPoll(ctx, f.ID, "b", slot, true, until)); ok {
			t.Fatal("a forced claim took a held poll")
		}
		next := t0.Add(15 * time.Minute)
		if err := e.s.RecordFetch(ctx, f.ID, f.Generation, model.FetchResult{At: t0, OK: true, NextFetchAt: next}); err != nil {
			t.Fatal(err)
		}
		if err := e.s.ReleaseLease(ctx, model.LeasePoll, f.ID, "a"); err != nil {
			t.Fatal(err)
		}
		if ok := must[bool](t)(e.s.ClaimPoll(ctx, f.ID, "b", slot, false, until)); ok {
			t.Fatal("an instance that read the finished slot claimed it")
		}
		if ok := must[bool](t)(e.s.ClaimPoll(ctx, f.ID, "b", next, false, until)); !ok {
			t.Fatal("the next slot could not be claimed")
		}
		if err := e.s.ReleaseLease(ctx, model.LeasePoll, f.ID, "b"); err != nil {
			t.Fatal(err)
		}
		if ok := must[bool](t)(e.s.ClaimPoll(ctx, f.ID, "a", time.Time{}, true, until)); !ok {
			t.Fatal("the owner's forced claim of a free poll was refused")
		}
	})
}

// A claim lapses when its holder stops renewing it (the instance died):
// another instance takes the same slot over, and the first one's renewal
// and release then leave the new holder alone.
func TestLapsedClaimIsTakenOver(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e, f := leaseEnv(t, open)
		slot := f.NextFetchAt
		if !must[bool](t)(e.s.ClaimPoll(ctx, f.ID, "a", slot, false, t0.Add(30*time.Second))) {
			t.Fatal("claim refused")
		}
		if !must[bool](t)(e.s.RenewLease(ctx, model.LeasePoll, f.ID, "a", t0.Add(60*time.Second))) {
			t.Fatal("holder could not renew")
		}
		e.clk.Advance(59 * time.Second)
		if must[bool](t)(e.s.ClaimPoll(ctx, f.ID, "b", slot, false, e.clk.Now().Add(30*time.Second))) {
			t.Fatal("a renewed claim was taken before it lapsed")
		}
		e.clk.Advance(time.Second)
		if !must[bool](t)(e.s.ClaimPoll(ctx, f.ID, "b", slot, false, e.clk.Now().Add(30*time.Second))) {
			t.Fatal("a lapsed claim was not taken over")
		}
		if must[bool](t)(e.s.RenewLease(ctx, model.LeasePoll, f.ID, "a", e.clk.Now().Add(time.Minute))) {
			t.Fatal("the old holder renewed a claim it lost")
		}
		if err := e.s.ReleaseLease(ctx, model.LeasePoll, f.ID, "a"); err != nil {
			t.Fatal(err)
		}
		if must[bool](t)(e.s.ClaimPoll(ctx, f.ID, "c", slot, false, e.clk.Now().Add(30*time.Second))) {
			t.Fatal("the old holder's release freed the new holder's claim")
		}
	})
}

// A token refresh is claimed for the token as read: after another
// instance replaced the token, the old reading claims nothing.
func TestRefreshClaimNamesTheTokenAsRead(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e, f := leaseEnv(t, open)
		read := *f.Token
		until := t0.Add(time.Minute)
		if !must[bool](t)(e.s.ClaimRefresh(ctx, f.ID, "a", read, until)) {
			t.Fatal("first claim refused")
		}
		if must[bool](t)(e.s.ClaimRefresh(ctx, f.ID, "b", read, until)) {
			t.Fatal("second instance claimed a held refresh")
		}
		e.clk.Advance(time.Hour)
		fresh := model.Token{AccessToken: "IGAAsecond", TokenInfo: model.TokenInfo{ObtainedAt: e.clk.Now(), ExpiresAt: e.clk.Now().AddDate(0, 2, 0), RefreshedAt: e.clk.Now()}}
		if err := e.s.ReplaceToken(ctx, f.ID, "IGAAfirst", fresh); err != nil {
			t.Fatal(err)
		}
		if err := e.s.ReleaseLease(ctx, model.LeaseRefresh, f.ID, "a"); err != nil {
			t.Fatal(err)
		}
		if must[bool](t)(e.s.ClaimRefresh(ctx, f.ID, "b", read, e.clk.Now().Add(time.Minute))) {
			t.Fatal("an instance that read the replaced token claimed its refresh")
		}
		now := *must[model.Feed](t)(e.s.Feed(ctx, f.ID)).Token
		if !must[bool](t)(e.s.ClaimRefresh(ctx, f.ID, "b", now, e.clk.Now().Add(time.Minute))) {
			t.Fatal("the current token's refresh could not be claimed")
		}
		// A failed refresh schedules the next attempt: a new slot.
		if err := e.s.RecordRefreshFailure(ctx, f.ID, "unreachable", e.clk.Now().Add(5*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := e.s.ReleaseLease(ctx, model.LeaseRefresh, f.ID, "b"); err != nil {
			t.Fatal(err)
		}
		if must[bool](t)(e.s.ClaimRefresh(ctx, f.ID, "c", now, e.clk.Now().Add(time.Minute))) {
			t.Fatal("the slot of a failed attempt was claimed again")
		}
	})
}

// Instances racing for one slot: exactly one wins.
func TestRacingClaimsHaveOneWinner(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e, f := leaseEnv(t, open)
		wins := race(t, 8, func(i int) (bool, error) {
			return e.s.ClaimPoll(ctx, f.ID, fmt.Sprintf("i%d", i), f.NextFetchAt, false, t0.Add(time.Minute))
		})
		if wins != 1 {
			t.Errorf("%d instances claimed one slot, want 1", wins)
		}
	})
}

func TestUnknownLeaseKind(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		e, f := leaseEnv(t, open)
		if _, err := e.s.RenewLease(context.Background(), "sweep", f.ID, "a", t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("RenewLease of an unknown kind: %v, want ErrInvalid", err)
		}
	})
}

// A process that serves the database alone ends the claims an earlier
// process left: its polls and refreshes need not wait for them to lapse.
func TestClearLeasesFreesEveryClaim(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e, f := leaseEnv(t, open)
		until := t0.Add(time.Hour)
		if !must[bool](t)(e.s.ClaimPoll(ctx, f.ID, "crashed", f.NextFetchAt, false, until)) ||
			!must[bool](t)(e.s.ClaimRefresh(ctx, f.ID, "crashed", *f.Token, until)) {
			t.Fatal("claims refused")
		}
		if err := e.s.ClearLeases(ctx); err != nil {
			t.Fatal(err)
		}
		if !must[bool](t)(e.s.ClaimPoll(ctx, f.ID, "next", f.NextFetchAt, false, until)) {
			t.Error("the poll is still held after ClearLeases")
		}
		if !must[bool](t)(e.s.ClaimRefresh(ctx, f.ID, "next", *f.Token, until)) {
			t.Error("the refresh is still held after ClearLeases")
		}
	})
}

// The token_expiring reminder is claimed once a day between instances,
// racing or one after another, and again at once after a reconnect.
func TestExpiryWarningIsClaimedOnceADay(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e, f := leaseEnv(t, open)
		day := 24 * time.Hour
		wins := race(t, 8, func(int) (bool, error) {
			return e.s.ClaimTokenTask(ctx, f.ID, model.TaskExpiryWarning, e.clk.Now(), day)
		})
		if wins != 1 {
			t.Fatalf("%d instances claimed one reminder, want 1", wins)
		}
		e.clk.Advance(23 * time.Hour)
		if must[bool](t)(e.s.ClaimTokenTask(ctx, f.ID, model.TaskExpiryWarning, e.clk.Now(), day)) {
			t.Fatal("a second reminder within the day")
		}
		e.clk.Advance(time.Hour)
		if !must[bool](t)(e.s.ClaimTokenTask(ctx, f.ID, model.TaskExpiryWarning, e.clk.Now(), day)) {
			t.Fatal("no reminder a day after the last")
		}
		connect(t, e.s, f.ID, "1", "IGAAreconnected")
		if !must[bool](t)(e.s.ClaimTokenTask(ctx, f.ID, model.TaskExpiryWarning, e.clk.Now(), day)) {
			t.Fatal("a reconnected token's reminder waits for the old one's day")
		}
		if must[bool](t)(e.s.ClaimTokenTask(ctx, "no-such-feed", model.TaskExpiryWarning, e.clk.Now(), day)) {
			t.Fatal("claimed a reminder of a feed without a token")
		}
	})
}

// The idle-token probe is claimed per period like the reminder, apart from
// it; an unknown task is refused.
func TestTokenTasksAreClaimedApart(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e, f := leaseEnv(t, open)
		if !must[bool](t)(e.s.ClaimTokenTask(ctx, f.ID, model.TaskProbe, e.clk.Now(), time.Hour)) {
			t.Fatal("first probe refused")
		}
		if !must[bool](t)(e.s.ClaimTokenTask(ctx, f.ID, model.TaskExpiryWarning, e.clk.Now(), time.Hour)) {
			t.Fatal("the reminder waits for the probe")
		}
		if must[bool](t)(e.s.ClaimTokenTask(ctx, f.ID, model.TaskProbe, e.clk.Now().Add(59*time.Minute), time.Hour)) {
			t.Fatal("a second probe within the hour")
		}
		if _, err := e.s.ClaimTokenTask(ctx, f.ID, "sweep", e.clk.Now(), time.Hour); !errors.Is(err, ErrInvalid) {
			t.Errorf("unknown task: %v, want ErrInvalid", err)
		}
	})
}
