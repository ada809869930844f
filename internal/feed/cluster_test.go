package feed

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/cluster"
	"github.com/feedd/feedd/internal/sandbox"
)

// instance is another feedd instance on the env's database: a service that
// claims its polls as instance name.
func (e *env) instance(t *testing.T, name string) *Service {
	t.Helper()
	o := e.options()
	c, err := cluster.NewClaims(cluster.ClaimsOptions{Store: e.st, Instance: name, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	o.Claims = c
	svc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc
}

// Two instances find the same feed due: one polls it; the other's poller
// leaves it alone, and the owner's "fetch now" on the other waits for that
// poll and answers with its outcome instead of polling again.
func TestTwoInstancesPollOneSlotOnce(t *testing.T) {
	e := newEnv(t, envOptions{})
	a, b := e.instance(t, "a"), e.instance(t, "b")
	ctx := context.Background()
	gate := make(chan struct{})
	e.conns.mu.Lock()
	e.conns.gate = gate // a's poll holds its claim while it waits here
	e.conns.mu.Unlock()
	aDone := make(chan error, 1)
	go func() { aDone <- a.fetchShared(ctx, e.id, false) }()
	deadline := time.Now().Add(5 * time.Second)
	for e.conns.entered.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a's poll did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}

	bPoll := make(chan error, 1)
	go func() { bPoll <- b.fetchShared(ctx, e.id, false) }()
	select {
	case err := <-bPoll:
		if err != nil {
			t.Fatalf("b's poller: %v", err)
		}
	case <-time.After(2 * time.Second):
		close(gate)
		t.Fatal("b's poller polled the feed a is polling")
	}
	bDone := make(chan error, 1)
	go func() { bDone <- b.FetchNow(ctx, e.id) }()
	select {
	case err := <-bDone:
		t.Fatalf("b's fetch now ended while a's poll ran: %v", err)
	case <-time.After(3 * claimRetry):
	}
	close(gate)
	for name, ch := range map[string]chan error{"a's poll": aDone, "b's fetch now": bDone} {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not end", name)
		}
	}
	if n := e.calls(sandbox.EndpointMedia); n != 1 {
		t.Errorf("the feed's media listed %d times for one slot, want 1", n)
	}
	if n := e.conns.entered.Load(); n != 1 {
		t.Errorf("%d polls read the token, want 1", n)
	}
	if f := e.feed(); !f.LastFetchOK || f.PostCount == 0 {
		t.Errorf("after the poll: ok %v, %d posts", f.LastFetchOK, f.PostCount)
	}
}

// published records the feed changes a service sends to other instances.
type published struct {
	mu  sync.Mutex
	ids []string
}

func (p *published) Publish(id string) {
	p.mu.Lock()
	p.ids = append(p.ids, id)
	p.mu.Unlock()
}

func (p *published) count(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, x := range p.ids {
		if x == id {
			n++
		}
	}
	return n
}

// A finished poll and an owner's change (Invalidate) reach the other
// instances; dropping entries because of another instance's change sends
// nothing back.
func TestChangesAreSentToOtherInstances(t *testing.T) {
	pub := &published{}
	e := newEnv(t, envOptions{options: func(o *Options) { o.Events = pub }})
	if err := e.fetchNow(); err != nil {
		t.Fatal(err)
	}
	if pub.count(e.id) == 0 {
		t.Fatal("a finished poll was not sent to the other instances")
	}
	before := e.doc(t, "")
	n := pub.count(e.id)
	e.svc.DropCached(e.id)
	e.svc.DropAllCached()
	if pub.count(e.id) != n {
		t.Error("dropping entries for another instance's change was sent again")
	}
	if after := e.doc(t, ""); len(after.Posts) != len(before.Posts) {
		t.Errorf("after dropping the cache: %d posts, want %d", len(after.Posts), len(before.Posts))
	}
	e.svc.Invalidate(e.id)
	if pub.count(e.id) != n+1 {
		t.Error("the owner's change was not sent to the other instances")
	}
}
