package app

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/connection"
	"github.com/feedd/feedd/internal/model"
)

// A notification a stopped process left is delivered by the next start,
// signed with FEEDD_NOTIFY_WEBHOOK_SECRET.
func TestNotificationsLeftByAStopAreDeliveredSigned(t *testing.T) {
	type delivery struct {
		ts, sig string
		body    []byte
	}
	got := make(chan delivery, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case got <- delivery{r.Header.Get(connection.HeaderTimestamp), r.Header.Get(connection.HeaderSignature), b}:
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	cfg := testConfig(t, t.TempDir())
	cfg.NotifyWebhook, cfg.NotifyWebhookSecret = hook.URL+"/hook", "app-test-webhook-secret"
	ctx := context.Background()
	m, err := New(ctx, cfg, Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	f, err := m.Store.CreateFeed(ctx, "Shop", nil)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"event":"needs_reauth","feed_id":"` + f.ID + `"}`)
	if _, err := m.Store.AddNotifications(ctx, []model.Notification{{FeedID: f.ID, Channel: model.ChannelWebhook,
		Event: connection.EventNeedsReauth, Body: body, NextAt: time.Now()}}, 10); err != nil {
		t.Fatal(err)
	}
	stop := running(t, m)
	var d delivery
	select {
	case d = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting notification was not delivered")
	}
	ts, err := strconv.ParseInt(d.ts, 10, 64)
	if err != nil || string(d.body) != string(body) || d.sig != connection.Sign(cfg.NotifyWebhookSecret, ts, body) {
		t.Fatalf("delivery: timestamp %q, signature %q, body %s", d.ts, d.sig, d.body)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
