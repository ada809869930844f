package connection

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"
)

// Webhook event names.
const (
	EventTokenExpiring = "token_expiring"
	EventNeedsReauth   = "needs_reauth"
	EventReconnected   = "reconnected"
	EventConnected     = "connected"
	EventDisconnected  = "disconnected"
	EventError         = "error"
)

// Event is the JSON body posted to FEEDD_NOTIFY_WEBHOOK. It carries no secrets.
type Event struct {
	Event     string    `json:"event"`
	FeedID    string    `json:"feed_id"`
	FeedName  string    `json:"feed_name,omitempty"`
	Username  string    `json:"username,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Message   string    `json:"message"`
	SetupURL  string    `json:"setup_url"`
	At        time.Time `json:"at"`
}

const notifyTimeout = 10 * time.Second

// notify posts ev to the webhook in the background; delivery failures are logged, not retried.
func (s *Service) notify(ev Event) {
	if s.webhook == "" {
		return
	}
	ev.At = s.now().UTC()
	ev.SetupURL = s.publicURL + "/setup/feeds/" + ev.FeedID
	body, err := json.Marshal(ev)
	if err != nil {
		return
	}
	s.goBG("webhook", func() {
		// A delivery under way finishes even while the service closes.
		ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.webhook, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "feedd")
		resp, err := s.hc.Do(req)
		if err != nil {
			// The URL is operator-configured and may embed a secret path: keep it out of the log.
			s.log.Warn("webhook delivery failed", slog.String("event", ev.Event), feedAttr(ev.FeedID))
			return
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			s.log.Warn("webhook refused the event", slog.String("event", ev.Event), feedAttr(ev.FeedID), slog.Int("status", resp.StatusCode))
		}
	})
}
