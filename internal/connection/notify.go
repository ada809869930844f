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

const (
	notifyTimeout = 10 * time.Second
	// maxOutbox bounds the events waiting for delivery (a slow or dead
	// receiver must not grow memory); beyond it the oldest are dropped.
	maxOutbox = 1000
)

// outgoing is an event waiting for delivery.
type outgoing struct {
	ev   Event
	body []byte
}

// notify queues ev for the webhook. Events are delivered one at a time in
// the order they happened, in the background; a failed delivery is
// logged, not retried.
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
	s.mu.Lock()
	if len(s.outbox) >= maxOutbox {
		s.log.Warn("webhook events dropped: too many waiting", slog.String("event", s.outbox[0].ev.Event), feedAttr(s.outbox[0].ev.FeedID))
		s.outbox = s.outbox[1:]
	}
	s.outbox = append(s.outbox, outgoing{ev, body})
	start := !s.sending
	s.sending = true
	s.mu.Unlock()
	if start {
		s.goBG("webhook", s.deliverAll)
	}
}

// deliverAll sends queued events until none is left.
func (s *Service) deliverAll() {
	done := false
	defer func() {
		if !done { // a panic: let the next notify start a new sender
			s.mu.Lock()
			s.sending = false
			s.mu.Unlock()
		}
	}()
	for {
		s.mu.Lock()
		if len(s.outbox) == 0 {
			s.sending, done = false, true
			s.mu.Unlock()
			return
		}
		o := s.outbox[0]
		s.outbox = s.outbox[1:]
		s.mu.Unlock()
		s.deliver(o)
	}
}

func (s *Service) deliver(o outgoing) {
	// A delivery under way finishes even while the service closes.
	ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.webhook, bytes.NewReader(o.body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "feedd")
	resp, err := s.hc.Do(req)
	if err != nil {
		// The URL is operator-configured and may embed a secret path: keep it out of the log.
		s.log.Warn("webhook delivery failed", slog.String("event", o.ev.Event), feedAttr(o.ev.FeedID))
		return
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		s.log.Warn("webhook refused the event", slog.String("event", o.ev.Event), feedAttr(o.ev.FeedID), slog.Int("status", resp.StatusCode))
	}
}
