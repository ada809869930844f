package connection

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/testenv"
)

const testPublicURL = "https://feedd.test"

// env is the service over the real store and the sandbox (testenv.Env),
// with a webhook receiver on loopback and its own metrics registry.
type env struct {
	*testenv.Env
	t    *testing.T
	reg  *prometheus.Registry
	hook *testenv.Webhook[Event]
	svc  *Service
	opts Options
}

func newEnv(t *testing.T, mod ...func(*Options)) *env {
	t.Helper()
	e := &env{Env: testenv.New(t, testPublicURL+"/auth/instagram/callback"), t: t, reg: prometheus.NewRegistry()}
	e.hook = testenv.NewWebhook[Event](t, e.Logs)
	o := Options{
		Store: e.Store, Graph: e.Graph, Files: e.Files,
		PublicURL: testPublicURL, AppID: e.Sandbox.AppID(), AppSecret: e.Sandbox.AppSecret(),
		CheckInterval: time.Hour, RefreshWindow: 720 * time.Hour, NotifyWebhook: e.hook.URL,
		Now: e.Clock.Now, Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
		Logger: e.Logger(), Registerer: e.reg,
	}
	if len(mod) > 0 {
		mod[0](&o)
	}
	svc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	svc.SetFeeds(e.Feeds)
	e.svc, e.opts = svc, o
	t.Cleanup(e.svc.Close)
	return e
}

// another is a second service on the same store, as another instance (or
// the same one after a restart) would run.
func (e *env) another() *Service {
	e.t.Helper()
	o := e.opts
	o.Registerer = prometheus.NewRegistry()
	svc, err := New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	svc.SetFeeds(e.Feeds)
	e.t.Cleanup(svc.Close)
	return svc
}

// settle waits for the fetches and deliveries the service started.
func (e *env) settle() { e.svc.Wait() }

func (e *env) createFeed(name string) string {
	e.t.Helper()
	f, err := e.Store.CreateFeed(context.Background(), name, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return f.ID
}

// connect creates a feed and connects it to acct the way an owner does:
// a state, Allow on the sandbox's consent, and the callback.
func (e *env) connect(name, acct string) string {
	e.t.Helper()
	id := e.createFeed(name)
	e.reconnect(id, acct)
	e.settle()
	return id
}

func (e *env) reconnect(id, acct string) {
	e.t.Helper()
	ctx := context.Background()
	authz, err := e.svc.Connect(ctx, id, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	u, _ := url.Parse(authz)
	redirect, err := e.Sandbox.Approve(acct, e.svc.RedirectURI(), u.Query().Get("state"))
	if err != nil {
		e.t.Fatal(err)
	}
	cb, _ := url.Parse(redirect)
	q := cb.Query()
	e.AddSecret(q.Get("code"))
	if _, err := e.svc.Callback(ctx, CallbackParams{State: q.Get("state"), Code: q.Get("code")}, nil); err != nil {
		e.t.Fatalf("connect %s: %v", acct, err)
	}
}

func (e *env) feed(id string) model.Feed {
	e.t.Helper()
	e.settle()
	f, err := e.Store.Feed(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

func (e *env) token(id string) model.Token {
	e.t.Helper()
	t, err := e.Store.Store.Token(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return t
}

func (e *env) webhookEvents() []Event {
	e.settle()
	return e.hook.Events()
}

// eventNames lists the webhook events sent for a feed, in order.
func (e *env) eventNames(id string) []string {
	var names []string
	for _, ev := range e.webhookEvents() {
		if ev.FeedID == id {
			names = append(names, ev.Event)
		}
	}
	return names
}

// metric reads a counter or gauge from the service's registry (0 when absent).
func (e *env) metric(name string, labels ...string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}
