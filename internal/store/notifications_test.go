package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
)

func (e *env) feedID(t testing.TB, name string) string {
	t.Helper()
	f, err := e.s.CreateFeed(context.Background(), name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f.ID
}

func (e *env) queue(t testing.TB, maxPending int, ns ...model.Notification) int {
	t.Helper()
	for i := range ns {
		if ns[i].Channel == "" {
			ns[i].Channel = model.ChannelWebhook
		}
		if ns[i].NextAt.IsZero() {
			ns[i].NextAt = e.clk.Now()
		}
		if ns[i].Body == nil {
			ns[i].Body = []byte(`{"event":"` + ns[i].Event + `"}`)
		}
	}
	dropped, err := e.s.AddNotifications(context.Background(), ns, maxPending)
	if err != nil {
		t.Fatal(err)
	}
	return dropped
}

// claim returns the event claimed at the clock's time, "" when none is due.
func (e *env) claim(t testing.TB) model.Notification {
	t.Helper()
	n, err := e.s.ClaimNotification(context.Background(), e.clk.Now(), e.clk.Now().Add(time.Minute))
	if errors.Is(err, model.ErrNotFound) {
		return model.Notification{}
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNotificationsOfAFeedAreDeliveredInOrderBehindARetry(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		e := open(t)
		ctx := context.Background()
		a, b := e.feedID(t, "a"), e.feedID(t, "b")
		e.queue(t, 100, model.Notification{FeedID: a, Event: "a1"}, model.Notification{FeedID: a, Event: "a2"}, model.Notification{FeedID: b, Event: "b1"})

		first := e.claim(t)
		if first.Event != "a1" || first.Attempts != 1 || string(first.Body) != `{"event":"a1"}` {
			t.Fatalf("first claim = %+v, want a1 on its first attempt with its body", first)
		}
		b1 := e.claim(t)
		if b1.Event != "b1" {
			t.Fatalf("second claim = %q, want b1 (a2 waits behind a1)", b1.Event)
		}
		b1.State = model.DeliveryDelivered
		if err := e.s.FinishNotification(ctx, b1); err != nil {
			t.Fatal(err)
		}
		if n := e.claim(t); n.Event != "" {
			t.Fatalf("third claim = %q, want none", n.Event)
		}
		first.State, first.NextAt, first.LastStatus, first.LastError = model.DeliveryPending, e.clk.Now().Add(2*time.Minute), 503, "receiver answered 503"
		if err := e.s.FinishNotification(ctx, first); err != nil {
			t.Fatal(err)
		}
		if n := e.claim(t); n.Event != "" {
			t.Fatalf("claim while a1 waits for its retry = %q, want none", n.Event)
		}
		e.clk.Advance(2 * time.Minute)
		again := e.claim(t)
		if again.Event != "a1" || again.Attempts != 2 {
			t.Fatalf("claim after the wait = %q attempt %d, want a1 attempt 2", again.Event, again.Attempts)
		}
		again.State, again.LastStatus, again.LastError = model.DeliveryDelivered, 200, ""
		if err := e.s.FinishNotification(ctx, again); err != nil {
			t.Fatal(err)
		}
		if n := e.claim(t); n.Event != "a2" {
			t.Fatalf("claim after a1 was delivered = %q, want a2", n.Event)
		}
		log, err := e.s.Notifications(ctx, a, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(log) != 2 || log[1].Event != "a1" || log[1].State != model.DeliveryDelivered || log[1].Attempts != 2 || log[1].LastStatus != 200 || log[1].FinishedAt.IsZero() {
			t.Fatalf("delivery log = %+v, want a2 then a1 delivered after 2 attempts with 200", log)
		}
	})
}

func TestAClaimOfAStoppedInstanceIsTakenOverWhenItExpires(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		e := open(t)
		a := e.feedID(t, "a")
		e.queue(t, 100, model.Notification{FeedID: a, Event: "a1"})
		if n := e.claim(t); n.Event != "a1" {
			t.Fatalf("claim = %q", n.Event)
		}
		e.clk.Advance(30 * time.Second)
		if n := e.claim(t); n.Event != "" {
			t.Fatalf("claim while another holds it = %q, want none", n.Event)
		}
		e.clk.Advance(31 * time.Second)
		if n := e.claim(t); n.Event != "a1" || n.Attempts != 2 {
			t.Fatalf("claim after the hold expired = %q attempt %d, want a1 attempt 2", n.Event, n.Attempts)
		}
	})
}

func TestConcurrentClaimsTakeEachNotificationOnce(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		e := open(t)
		const feeds = 12
		var ns []model.Notification
		for i := range feeds {
			ns = append(ns, model.Notification{FeedID: e.feedID(t, fmt.Sprint(i)), Event: fmt.Sprint("e", i)})
		}
		e.queue(t, 100, ns...)
		var mu sync.Mutex
		seen := map[int64]int{}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					n, err := e.s.ClaimNotification(context.Background(), e.clk.Now(), e.clk.Now().Add(time.Minute))
					if errors.Is(err, model.ErrNotFound) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					seen[n.ID]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(seen) != feeds {
			t.Fatalf("%d notifications claimed, want %d", len(seen), feeds)
		}
		for id, c := range seen {
			if c != 1 {
				t.Errorf("notification %d claimed %d times", id, c)
			}
		}
	})
}

func TestPendingNotificationsAndTheLogAreBounded(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		e := open(t)
		ctx := context.Background()
		a := e.feedID(t, "a")
		var ns []model.Notification
		for i := range 5 {
			ns = append(ns, model.Notification{FeedID: a, Event: fmt.Sprint("e", i)})
		}
		if dropped := e.queue(t, 3, ns...); dropped != 2 {
			t.Fatalf("dropped %d, want 2", dropped)
		}
		log, err := e.s.Notifications(ctx, a, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range log {
			wantFailed := n.Event == "e0" || n.Event == "e1"
			if got := n.State == model.DeliveryFailed && n.LastError == droppedError; got != wantFailed {
				t.Errorf("%s: state %s %q, dropped %v", n.Event, n.State, n.LastError, wantFailed)
			}
		}
		if n := e.claim(t); n.Event != "e2" {
			t.Fatalf("first claim after the drop = %q, want e2 (the oldest kept)", n.Event)
		}

		b := e.feedID(t, "b")
		for i := range KeptDeliveries + 10 {
			n := model.Notification{FeedID: b, Event: fmt.Sprint("b", i)}
			e.queue(t, 1000, n)
			c := e.claim(t)
			c.State = model.DeliveryDelivered
			if err := e.s.FinishNotification(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		e.queue(t, 1000, model.Notification{FeedID: b, Event: "last"})
		log, err = e.s.Notifications(ctx, b, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(log) != KeptDeliveries+1 || log[0].Event != "last" || log[len(log)-1].Event != "b10" {
			t.Fatalf("log of b holds %d (newest %q, oldest %q), want %d finished and the pending one", len(log), log[0].Event, log[len(log)-1].Event, KeptDeliveries)
		}
	})
}

func TestADeletedFeedsNotificationsGo(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		e := open(t)
		a := e.feedID(t, "a")
		e.queue(t, 100, model.Notification{FeedID: a, Event: "a1"})
		if _, err := e.s.DeleteFeed(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		if n := e.claim(t); n.Event != "" {
			t.Fatalf("claim after the feed was deleted = %q, want none", n.Event)
		}
	})
}
