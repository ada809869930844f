package connection

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/retry"
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
	Event    string `json:"event"`
	FeedID   string `json:"feed_id"`
	FeedName string `json:"feed_name,omitempty"`
	Username string `json:"username,omitempty"`
	// Source is set when the event is about one further account of the
	// feed (its source id); Username is then that account's.
	Source    string    `json:"source,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Message   string    `json:"message"`
	SetupURL  string    `json:"setup_url"`
	At        time.Time `json:"at"`
}

// Headers of a webhook delivery. The signature is HMAC-SHA256, keyed with
// FEEDD_NOTIFY_WEBHOOK_SECRET, over the timestamp, a dot and the body.
const (
	HeaderTimestamp = "X-Feedd-Timestamp" // unix seconds of this attempt
	HeaderSignature = "X-Feedd-Signature" // "sha256=" and the lower-case hex HMAC
	HeaderEvent     = "X-Feedd-Event"     // the event name, as in the body
	HeaderDelivery  = "X-Feedd-Delivery"  // the same on every attempt of one event: receivers drop repeats by it
)

// Mailer sends one e-mail to the owner's alert recipients; *mail.Mailer
// implements it.
type Mailer interface {
	Mail(ctx context.Context, subject, body string) error
}

// The delivery rules.
const (
	// MaxAttempts bounds the tries of one notification: 6 over about 31
	// minutes with the back-off below.
	MaxAttempts  = 6
	retryBase    = time.Minute
	retryMax     = 16 * time.Minute
	maxRetryWait = time.Hour // the longest Retry-After honoured
	// maxPending bounds the notifications waiting (a dead receiver must
	// not grow the database without end); beyond it the oldest are given up.
	maxPending    = 1000
	notifyTimeout = 10 * time.Second
	// claimHold is how long an attempt holds its notification: longer
	// than an attempt takes, so an instance that stops mid-way hands it on.
	claimHold = 2 * time.Minute
	// NotifyInterval is how often RunNotifications looks for retries due.
	NotifyInterval = 15 * time.Second
)

// mailedEvents are the events also sent by e-mail: the ones the owner must act on.
var mailedEvents = map[string]bool{EventNeedsReauth: true, EventTokenExpiring: true}

// Sign returns the X-Feedd-Signature value of body sent at timestamp ts.
func Sign(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10) + "."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// notify queues ev for the webhook and, for the events the owner must act
// on, the e-mail. The notifications are stored before anything is sent,
// so a restart resumes them; a feed's notifications are delivered in the
// order they happened, in the background.
func (s *Service) notify(ev Event) {
	if s.webhook == "" && s.mailer == nil {
		return
	}
	now := s.now().UTC()
	ev.At = now
	ev.SetupURL = s.publicURL + "/setup/feeds/" + ev.FeedID
	body, err := json.Marshal(ev)
	if err != nil {
		return
	}
	var ns []model.Notification
	if s.webhook != "" {
		ns = append(ns, model.Notification{FeedID: ev.FeedID, Channel: model.ChannelWebhook, Event: ev.Event, Body: body, NextAt: now})
	}
	if s.mailer != nil && mailedEvents[ev.Event] {
		ns = append(ns, model.Notification{FeedID: ev.FeedID, Channel: model.ChannelEmail, Event: ev.Event, Body: body, NextAt: now})
	}
	if len(ns) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
	defer cancel()
	dropped, err := s.store.AddNotifications(ctx, ns, maxPending)
	if err != nil {
		s.log.Error("notification not queued", slog.String("event", ev.Event), feedAttr(ev.FeedID), errAttr(err))
		return
	}
	if dropped > 0 {
		s.log.Warn("notifications given up: too many waiting", slog.Int("dropped", dropped))
	}
	s.kickDelivery()
}

// kickDelivery starts a delivery round in the background unless one is
// running; a running one goes round again, so nothing queued meanwhile waits
// for the next tick.
func (s *Service) kickDelivery() {
	s.mu.Lock()
	s.again = true
	start := !s.sending
	s.sending = true
	s.mu.Unlock()
	if start {
		s.goBG("notify", s.deliverRounds)
	}
}

func (s *Service) deliverRounds() {
	done := false
	defer func() {
		if !done { // a panic: let the next kick start a new round
			s.mu.Lock()
			s.sending = false
			s.mu.Unlock()
		}
	}()
	for {
		s.mu.Lock()
		if !s.again || s.bg.Err() != nil {
			s.sending, done = false, true
			s.mu.Unlock()
			return
		}
		s.again = false
		s.mu.Unlock()
		s.deliverDue(s.bg)
	}
}

// RunNotifications delivers, every NotifyInterval until ctx ends, the
// notifications whose retry is due and those a restart or a stopped
// instance left.
func (s *Service) RunNotifications(ctx context.Context) error {
	t := time.NewTicker(NotifyInterval)
	defer t.Stop()
	for {
		s.kickDelivery()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// deliverDue attempts every notification due now, one claim at a time,
// until none is left or ctx ends.
func (s *Service) deliverDue(ctx context.Context) {
	for ctx.Err() == nil {
		now := s.now()
		n, err := s.store.ClaimNotification(ctx, now, now.Add(claimHold))
		if errors.Is(err, model.ErrNotFound) {
			return
		}
		if err != nil {
			s.log.Warn("reading notifications due", errAttr(err))
			return
		}
		n = s.attempt(n)
		// The outcome is written even while the service closes: the attempt happened.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
		err = s.store.FinishNotification(wctx, n)
		cancel()
		if err != nil {
			s.log.Warn("recording a notification's delivery", feedAttr(n.FeedID), errAttr(err))
		}
	}
}

// errGiveUp marks a failure that no retry can mend.
var errGiveUp = errors.New("connection: not retried")

// attempt sends n once and returns it with the outcome: delivered, failed,
// or pending with the time of its next try.
func (s *Service) attempt(n model.Notification) model.Notification {
	var wait time.Duration
	var err error
	switch {
	case n.Channel == model.ChannelWebhook && s.webhook != "":
		n.LastStatus, wait, err = s.post(n)
	case n.Channel == model.ChannelEmail && s.mailer != nil:
		err = s.mail(n)
	default:
		err = fmt.Errorf("%w: %s notifications are no longer configured", errGiveUp, n.Channel)
	}
	attrs := []any{slog.String("event", n.Event), feedAttr(n.FeedID), slog.String("channel", string(n.Channel)), intAttr("attempt", n.Attempts)}
	if err == nil {
		n.State, n.LastError = model.DeliveryDelivered, ""
		s.log.Debug("notification delivered", attrs...)
		return n
	}
	n.LastError = strings.TrimPrefix(err.Error(), errGiveUp.Error()+": ")
	attrs = append(attrs, slog.String("error", n.LastError))
	if errors.Is(err, errGiveUp) || n.Attempts >= MaxAttempts {
		n.State = model.DeliveryFailed
		s.log.Error("notification given up", attrs...)
		return n
	}
	backoff := retry.Backoff(retryBase, retryMax, n.Attempts)
	backoff += rand.N(backoff/5 + 1) // jitter: receivers that failed together are not retried together
	n.State, n.NextAt = model.DeliveryPending, s.now().Add(max(backoff, min(wait, maxRetryWait)))
	s.log.Warn("notification not delivered; will retry", append(attrs, slog.Time("next_at", n.NextAt))...)
	return n
}

// post sends a webhook notification once. It returns the receiver's HTTP
// status (0 when none came), the wait its Retry-After asks for, and an
// error unless the receiver took it; errGiveUp for answers a retry cannot
// change.
func (s *Service) post(n model.Notification) (status int, wait time.Duration, err error) {
	// A delivery under way finishes even while the service closes.
	ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.webhook, strings.NewReader(string(n.Body)))
	if err != nil {
		return 0, 0, fmt.Errorf("%w: the webhook URL is not usable", errGiveUp)
	}
	ts := s.now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "feedd")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderEvent, n.Event)
	req.Header.Set(HeaderDelivery, strconv.FormatInt(n.ID, 10))
	if s.notifySecret != "" {
		req.Header.Set(HeaderSignature, Sign(s.notifySecret, ts, n.Body))
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		// The URL is operator-configured and may embed a secret path or
		// query: only the underlying cause is kept.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, 0, errors.New("the receiver did not answer within 10s")
		}
		return 0, 0, fmt.Errorf("the receiver could not be reached: %v", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return resp.StatusCode, 0, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return resp.StatusCode, retryAfter(resp.Header.Get("Retry-After"), s.now()), fmt.Errorf("the receiver answered %d", resp.StatusCode)
	}
	return resp.StatusCode, 0, fmt.Errorf("%w: the receiver answered %d", errGiveUp, resp.StatusCode)
}

// retryAfter reads a Retry-After header: seconds or an HTTP date; 0 when
// absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
		return time.Duration(min(secs, int(maxRetryWait/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// mail sends an e-mail notification once.
func (s *Service) mail(n model.Notification) error {
	var ev Event
	if err := json.Unmarshal(n.Body, &ev); err != nil {
		return fmt.Errorf("%w: the stored event is not readable", errGiveUp)
	}
	subject, body := mailText(ev)
	ctx, cancel := context.WithTimeout(context.Background(), 3*notifyTimeout)
	defer cancel()
	return s.mailer.Mail(ctx, subject, body)
}

// mailText is the subject and body of the e-mail for ev: what happened,
// to which feed, and the page that fixes it.
func mailText(ev Event) (subject, body string) {
	name := ev.FeedName
	if name == "" {
		name = ev.FeedID
	}
	var b strings.Builder
	switch ev.Event {
	case EventTokenExpiring:
		subject = fmt.Sprintf("feedd: the Instagram connection of %q expires on %s", name, ev.ExpiresAt.UTC().Format("2 January 2006"))
		fmt.Fprintf(&b, "The Instagram connection of the feed %q could not be renewed and expires on %s.\n", name, ev.ExpiresAt.UTC().Format("2 January 2006 at 15:04 UTC"))
		b.WriteString("Reconnect the feed before then, or it stops showing new posts.\n")
	default:
		subject = fmt.Sprintf("feedd: reconnect %q to Instagram", name)
		fmt.Fprintf(&b, "The feed %q lost its Instagram connection and shows no new posts until it is reconnected.\n", name)
	}
	if ev.Message != "" {
		fmt.Fprintf(&b, "\nWhat Instagram or feedd said: %s\n", ev.Message)
	}
	fmt.Fprintf(&b, "\nFeed: %s (%s)\n", name, ev.FeedID)
	if ev.Username != "" {
		fmt.Fprintf(&b, "Instagram account: @%s\n", ev.Username)
	}
	fmt.Fprintf(&b, "When: %s\n", ev.At.UTC().Format(time.RFC1123))
	fmt.Fprintf(&b, "\nReconnect it on the feed's setup page:\n%s\n", ev.SetupURL)
	return subject, b.String()
}

// NotifyChannels lists the channels owner notifications go out on: the
// webhook when FEEDD_NOTIFY_WEBHOOK is set, e-mail when a mailer is.
func (s *Service) NotifyChannels() []model.Channel {
	var out []model.Channel
	if s.webhook != "" {
		out = append(out, model.ChannelWebhook)
	}
	if s.mailer != nil {
		out = append(out, model.ChannelEmail)
	}
	return out
}
