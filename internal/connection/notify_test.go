package connection

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/mail"
	"github.com/feedd/feedd/internal/mail/mailtest"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
)

const hookSecret = "whsec-test-3f9a1c"

// receiver is a webhook endpoint answering from a script: each request
// takes the next answer, the last one repeats.
type receiver struct {
	URL     string
	mu      sync.Mutex
	answers []answer
	got     []received
}

type answer struct {
	status     int
	retryAfter string
}

type received struct {
	header http.Header
	body   []byte
	event  Event
}

func newReceiver(t *testing.T, answers ...answer) *receiver {
	r := &receiver{answers: answers}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var ev Event
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Errorf("webhook body is not an event: %v", err)
		}
		r.mu.Lock()
		r.got = append(r.got, received{req.Header.Clone(), b, ev})
		a := answer{status: http.StatusNoContent}
		if len(r.answers) > 0 {
			a = r.answers[0]
			if len(r.answers) > 1 {
				r.answers = r.answers[1:]
			}
		}
		r.mu.Unlock()
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		w.WriteHeader(a.status)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL + "/hooks/feedd?key=url-secret-77"
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *receiver) events(feedID string) []string {
	var out []string
	for _, g := range r.requests() {
		if g.event.FeedID == feedID {
			out = append(out, g.event.Event)
		}
	}
	return out
}

// envWith builds the service with the webhook at r (signed with
// hookSecret) and, when given, a mailer.
func envWith(t *testing.T, r *receiver, m Mailer) *env {
	return newEnv(t, func(o *Options) {
		o.NotifyWebhook, o.NotifySecret, o.Mailer = "", hookSecret, m
		if r != nil {
			o.NotifyWebhook = r.URL
		}
	})
}

// secretsOf registers what no log line may hold.
func (e *env) secretsOf(more ...string) {
	for _, s := range append([]string{hookSecret, "url-secret-77"}, more...) {
		e.AddSecret(s)
	}
}

// deliveries is the feed's delivery log, oldest first.
func (e *env) deliveries(id string) []model.Notification {
	e.t.Helper()
	e.settle()
	ns, err := e.Store.Notifications(context.Background(), id, 100)
	if err != nil {
		e.t.Fatal(err)
	}
	slices.Reverse(ns)
	return ns
}

// retryRound advances the clock by d and runs the delivery of what is due.
func (e *env) retryRound(d time.Duration) {
	e.Clock.Advance(d)
	e.svc.kickDelivery()
	e.settle()
}

func TestWebhookIsSignedOverTheTimestampAndTheBody(t *testing.T) {
	r := newReceiver(t)
	e := envWith(t, r, nil)
	e.secretsOf()
	id := e.connect("Bakery", sandbox.AccountBusiness)
	got := r.requests()
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1", len(got))
	}
	h := got[0].header
	ts := h.Get(HeaderTimestamp)
	if ts != strconv.FormatInt(e.Clock.Now().Unix(), 10) {
		t.Errorf("%s = %q, want the attempt's unix time %d", HeaderTimestamp, ts, e.Clock.Now().Unix())
	}
	// The receiver's side, written from the documentation.
	mac := hmac.New(sha256.New, []byte(hookSecret))
	mac.Write([]byte(ts + "." + string(got[0].body)))
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if sig := h.Get(HeaderSignature); !hmac.Equal([]byte(sig), []byte(want)) {
		t.Errorf("%s = %q, want %q", HeaderSignature, sig, want)
	}
	if h.Get(HeaderEvent) != EventConnected || h.Get(HeaderDelivery) == "" || got[0].event.FeedID != id {
		t.Errorf("event header %q, delivery %q, body %+v", h.Get(HeaderEvent), h.Get(HeaderDelivery), got[0].event)
	}
	log := e.deliveries(id)
	if len(log) != 1 || log[0].State != model.DeliveryDelivered || log[0].LastStatus != http.StatusNoContent || log[0].Attempts != 1 {
		t.Fatalf("delivery log %+v, want one delivered on attempt 1 with 204", log)
	}
}

func TestWebhookWithoutASecretIsSentUnsigned(t *testing.T) {
	r := newReceiver(t)
	e := newEnv(t, func(o *Options) { o.NotifyWebhook = r.URL })
	e.connect("Bakery", sandbox.AccountBusiness)
	if got := r.requests(); len(got) != 1 || got[0].header.Get(HeaderSignature) != "" || got[0].header.Get(HeaderTimestamp) == "" {
		t.Fatalf("deliveries %d; want one with a timestamp and no signature", len(got))
	}
}

// 5xx and 429 are tried again after a back-off, or after Retry-After when
// that is longer; the receiver sees the same body and delivery id, with a
// fresh timestamp and signature.
func TestWebhookIsRetriedOn5xxAnd429HonouringRetryAfter(t *testing.T) {
	r := newReceiver(t, answer{status: 503}, answer{status: 429, retryAfter: "600"}, answer{status: 200})
	e := envWith(t, r, nil)
	e.secretsOf()
	id := e.connect("Bakery", sandbox.AccountBusiness)
	start := e.Clock.Now()
	log := e.deliveries(id)
	if len(log) != 1 || log[0].State != model.DeliveryPending || log[0].LastStatus != 503 || log[0].LastError != "the receiver answered 503" {
		t.Fatalf("after a 503: %+v", log)
	}
	if wait := log[0].NextAt.Sub(start); wait < time.Minute || wait > time.Minute+12*time.Second {
		t.Fatalf("first retry after %v, want 1m plus at most a fifth of jitter", wait)
	}
	e.retryRound(30 * time.Second)
	if n := len(r.requests()); n != 1 {
		t.Fatalf("%d requests before the retry was due, want 1", n)
	}
	e.retryRound(50 * time.Second)
	log = e.deliveries(id)
	if len(r.requests()) != 2 || log[0].LastStatus != 429 {
		t.Fatalf("after the second attempt: %d requests, log %+v", len(r.requests()), log)
	}
	if wait := log[0].NextAt.Sub(e.Clock.Now()); wait != 600*time.Second {
		t.Fatalf("retry after a 429 with Retry-After: 600 in %v, want 10m", wait)
	}
	e.retryRound(5 * time.Minute)
	if n := len(r.requests()); n != 2 {
		t.Fatalf("%d requests before Retry-After passed, want 2", n)
	}
	e.retryRound(5 * time.Minute)
	got := r.requests()
	log = e.deliveries(id)
	if len(got) != 3 || log[0].State != model.DeliveryDelivered || log[0].Attempts != 3 || log[0].LastStatus != 200 || log[0].LastError != "" {
		t.Fatalf("after Retry-After: %d requests, log %+v", len(got), log)
	}
	if !slices.Equal(got[0].body, got[2].body) || got[0].header.Get(HeaderDelivery) != got[2].header.Get(HeaderDelivery) ||
		got[0].header.Get(HeaderTimestamp) == got[2].header.Get(HeaderTimestamp) || got[0].header.Get(HeaderSignature) == got[2].header.Get(HeaderSignature) {
		t.Error("a retry must carry the same body and delivery id, with its own timestamp and signature")
	}
}

func TestWebhookIsNotRetriedOnOther4xx(t *testing.T) {
	r := newReceiver(t, answer{status: 404})
	e := envWith(t, r, nil)
	id := e.connect("Bakery", sandbox.AccountBusiness)
	e.retryRound(time.Hour)
	log := e.deliveries(id)
	if len(r.requests()) != 1 || len(log) != 1 || log[0].State != model.DeliveryFailed || log[0].LastStatus != 404 ||
		log[0].LastError != "the receiver answered 404" {
		t.Fatalf("%d requests, log %+v; want one, failed with 404", len(r.requests()), log)
	}
}

func TestWebhookGivesUpAfterMaxAttempts(t *testing.T) {
	r := newReceiver(t, answer{status: 500})
	e := envWith(t, r, nil)
	id := e.connect("Bakery", sandbox.AccountBusiness)
	start := e.Clock.Now()
	for range 20 {
		e.retryRound(5 * time.Minute)
	}
	log := e.deliveries(id)
	if len(r.requests()) != MaxAttempts || log[0].State != model.DeliveryFailed || log[0].Attempts != MaxAttempts {
		t.Fatalf("%d requests, log %+v; want %d then given up", len(r.requests()), log, MaxAttempts)
	}
	if took := log[0].FinishedAt.Sub(start); took < 31*time.Minute || took > 45*time.Minute {
		t.Errorf("gave up after %v, want about 31 minutes", took)
	}
	if !strings.Contains(e.Logs.String(), `level=ERROR msg="notification given up"`) {
		t.Error("giving up was not logged as an error")
	}
}

// A feed's events arrive in the order they happened: a later one waits
// while an earlier one is being retried.
func TestLaterEventsWaitBehindARetry(t *testing.T) {
	r := newReceiver(t, answer{status: 502}, answer{status: 200})
	e := envWith(t, r, nil)
	id := e.connect("Bakery", sandbox.AccountBusiness)
	if err := e.svc.Disconnect(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	e.settle()
	if got := r.events(id); !slices.Equal(got, []string{EventConnected}) {
		t.Fatalf("events while connected is retried: %v, want only the failed connected", got)
	}
	e.retryRound(2 * time.Minute)
	if got := r.events(id); !slices.Equal(got, []string{EventConnected, EventConnected, EventDisconnected}) {
		t.Fatalf("events %v, want connected (failed), connected, disconnected", got)
	}
}

// Notifications are stored before they are sent: a restart resumes the
// ones not delivered.
func TestPendingNotificationsAreDeliveredAfterARestart(t *testing.T) {
	r := newReceiver(t, answer{status: 500}, answer{status: 200})
	e := envWith(t, r, nil)
	id := e.connect("Bakery", sandbox.AccountBusiness)
	e.svc.Close()

	o := Options{Store: e.Store, Graph: e.Graph, PublicURL: testPublicURL, NotifyWebhook: r.URL, NotifySecret: hookSecret,
		Now: e.Clock.Now, Logger: e.Logger()}
	again, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(again.Close)
	e.Clock.Advance(2 * time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- again.RunNotifications(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(r.events(id)) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // waits for the loop's goroutine, not for time to pass
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	again.Wait()
	if got := r.events(id); !slices.Equal(got, []string{EventConnected, EventConnected}) {
		t.Fatalf("events %v, want the failed one and its delivery after the restart", got)
	}
}

// The webhook URL may embed a secret: an unreachable receiver is logged
// and recorded without it.
func TestUnreachableReceiverIsRecordedWithoutTheURL(t *testing.T) {
	r := newReceiver(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	r.URL = dead.URL + "/hooks?key=url-secret-77"
	e := envWith(t, r, nil)
	e.secretsOf()
	id := e.connect("Bakery", sandbox.AccountBusiness)
	log := e.deliveries(id)
	if len(log) != 1 || log[0].State != model.DeliveryPending || !strings.HasPrefix(log[0].LastError, "the receiver could not be reached") {
		t.Fatalf("log %+v", log)
	}
	if strings.Contains(log[0].LastError, "url-secret-77") || strings.Contains(log[0].LastError, "/hooks") {
		t.Errorf("delivery log holds the URL: %q", log[0].LastError)
	}
}

func mailerFor(t *testing.T, srv *mailtest.Server, password string) *mail.Mailer {
	t.Helper()
	m, err := mail.New(mail.Config{Addr: srv.Addr, Username: "feedd", Password: password, From: "feedd@bakery.test",
		To: []string{"owner@bakery.test"}, RootCAs: srv.RootCAs, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const smtpPassword = "smtp-pass-9d2e"

func TestNeedsReauthIsMailedWithTheSetupLink(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{Username: "feedd", Password: smtpPassword})
	r := newReceiver(t)
	e := envWith(t, r, mailerFor(t, srv, smtpPassword))
	e.secretsOf(smtpPassword)
	ctx := context.Background()
	id := e.connect("Corner Bakery", sandbox.AccountBusiness)
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("%d e-mails for a connect, want none", n)
	}
	f := e.feed(id)
	tok, err := e.svc.AccessToken(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.TokenRejected(ctx, id, f.Generation, tok, "Instagram refused the token: reconnect"); err != nil {
		t.Fatal(err)
	}
	e.settle()
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d e-mails, want 1", len(msgs))
	}
	m := msgs[0]
	data := string(m.Data)
	if !m.TLS || !slices.Equal(m.To, []string{"owner@bakery.test"}) {
		t.Errorf("e-mail over TLS %v to %v", m.TLS, m.To)
	}
	for _, want := range []string{`Subject: feedd: reconnect "Corner Bakery" to Instagram`, "Instagram refused the token: reconnect",
		testPublicURL + "/setup/feeds/" + id, "@" + f.Account.Username} {
		if !strings.Contains(data, want) {
			t.Errorf("e-mail lacks %q:\n%s", want, data)
		}
	}
	var channels []string
	for _, n := range e.deliveries(id) {
		channels = append(channels, string(n.Channel)+":"+n.Event+":"+string(n.State))
	}
	want := []string{"webhook:connected:delivered", "webhook:needs_reauth:delivered", "email:needs_reauth:delivered"}
	if !slices.Equal(channels, want) {
		t.Fatalf("delivery log %v, want %v", channels, want)
	}
}

func TestTokenExpiringIsMailed(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{Username: "feedd", Password: smtpPassword})
	e := envWith(t, nil, mailerFor(t, srv, smtpPassword))
	id := e.connect("Corner Bakery", sandbox.AccountBusiness)
	f := e.feed(id)
	f.Token.ExpiresAt = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	f.Token.LastRefreshError = "Instagram could not be reached"
	e.svc.warnExpiring(context.Background(), f, 19*24*time.Hour)
	e.settle()
	msgs := srv.Messages()
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].Data), `Subject: feedd: the Instagram connection of "Corner Bakery" expires on 20 November 2026`) ||
		!strings.Contains(string(msgs[0].Data), testPublicURL+"/setup/feeds/"+id) {
		t.Fatalf("e-mails %d: %+v", len(msgs), msgs)
	}
}

func TestWrongSMTPPasswordIsInTheDeliveryLogWithoutThePassword(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{Username: "feedd", Password: smtpPassword})
	wrong := "wrong-" + smtpPassword
	e := envWith(t, nil, mailerFor(t, srv, wrong))
	e.secretsOf(wrong, smtpPassword)
	id := e.connect("Bakery", sandbox.AccountBusiness)
	e.svc.warnExpiring(context.Background(), e.feed(id), time.Hour)
	log := e.deliveries(id)
	if len(log) != 1 || log[0].Channel != model.ChannelEmail || log[0].State != model.DeliveryPending ||
		!strings.Contains(log[0].LastError, "refused the username or password") {
		t.Fatalf("delivery log %+v, want the e-mail pending with the refusal", log)
	}
	if strings.Contains(log[0].LastError, smtpPassword) {
		t.Errorf("delivery log holds the password: %q", log[0].LastError)
	}
}

func TestSMTPServerWithoutSTARTTLSIsRefusedAndLogged(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{NoTLS: true, Username: "feedd", Password: smtpPassword})
	e := envWith(t, nil, mailerFor(t, srv, smtpPassword))
	e.secretsOf(smtpPassword)
	id := e.connect("Bakery", sandbox.AccountBusiness)
	e.svc.warnExpiring(context.Background(), e.feed(id), time.Hour)
	log := e.deliveries(id)
	if len(log) != 1 || !strings.Contains(log[0].LastError, "does not offer STARTTLS") {
		t.Fatalf("delivery log %+v", log)
	}
	if !strings.Contains(e.Logs.String(), "does not offer STARTTLS") {
		t.Error("the refusal was not logged")
	}
	if srv.AuthAttempts() != 0 || strings.Contains(string(srv.Received()), "AUTH") {
		t.Error("credentials were sent to a server without TLS")
	}
}
