package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/feedd/feedd/internal/store/storetest"
	tu "github.com/feedd/feedd/internal/testutil"
)

// testDatabase is an empty PostgreSQL database of the test's own (see
// storetest.PostgresURL: skipped without a server, failing under CI).
func testDatabase(t *testing.T) string { return storetest.PostgresURL(t) }

// recorder is an instance's cache as the events see it.
type recorder struct {
	mu      sync.Mutex
	dropped map[string]int
	all     int
}

func (r *recorder) drop(id string) {
	r.mu.Lock()
	r.dropped[id]++
	r.mu.Unlock()
}

func (r *recorder) dropAll() {
	r.mu.Lock()
	r.all++
	r.mu.Unlock()
}

func (r *recorder) counts(id string) (one, all int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped[id], r.all
}

type instance struct {
	ev  *Events
	rec *recorder
	reg *prometheus.Registry
}

func startInstance(t *testing.T, dbURL, id string) *instance {
	t.Helper()
	in := &instance{rec: &recorder{dropped: map[string]int{}}, reg: prometheus.NewRegistry()}
	var err error
	in.ev, err = NewEvents(EventsOptions{DatabaseURL: dbURL, Instance: id, Retry: 50 * time.Millisecond, Registerer: in.reg})
	if err != nil {
		t.Fatal(err)
	}
	in.ev.Handle(in.rec.drop, in.rec.dropAll)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.ev.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Events.Run did not stop after its context ended")
		}
	})
	// Listening begins with dropping everything (nothing was heard before).
	waitFor(t, 10*time.Second, id+" listening", func() bool { _, all := in.rec.counts(""); return all >= 1 })
	return in
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// terminate ends the database connections of an instance, as a failover
// or a restarted PostgreSQL would.
func terminate(t *testing.T, dbURL, instanceID string) {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	err = c.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1`, "feedd "+instanceID).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("no connection of %s to terminate", instanceID)
	}
}

// A change published on one instance drops that feed's entries on the
// others within a second; the sender does not drop its own twice.
func TestChangeReachesOtherInstances(t *testing.T) {
	db := testDatabase(t)
	one, two, three := startInstance(t, db, "one"), startInstance(t, db, "two"), startInstance(t, db, "three")
	start := time.Now()
	one.ev.Publish("k3v9x2m4q8")
	for _, in := range []*instance{two, three} {
		waitFor(t, time.Second, "event on another instance", func() bool { n, _ := in.rec.counts("k3v9x2m4q8"); return n == 1 })
	}
	t.Logf("event seen by both others after %s", time.Since(start).Round(time.Millisecond))
	time.Sleep(100 * time.Millisecond) // a wrong echo to the sender would arrive by now
	if n, _ := one.rec.counts("k3v9x2m4q8"); n != 0 {
		t.Errorf("the sender handled its own event %d times", n)
	}
	if got := testutil.ToFloat64(two.ev.counts.WithLabelValues("received")); got != 1 {
		t.Errorf("received events counted %v, want 1", got)
	}
	// Ids that no feed can have are not sent.
	one.ev.Publish("../../etc")
	one.ev.Publish("a b,c")
	if got := testutil.ToFloat64(one.ev.counts.WithLabelValues("sent")); got != 1 {
		t.Errorf("sent events counted %v, want 1", got)
	}
}

// Many changes at once are sent in payloads PostgreSQL accepts, and all arrive.
func TestManyChangesArrive(t *testing.T) {
	db := testDatabase(t)
	one, two := startInstance(t, db, "one"), startInstance(t, db, "two")
	ids := make([]string, 2000)
	for i := range ids {
		ids[i] = fmt.Sprintf("f%09d", i)
		one.ev.Publish(ids[i])
	}
	waitFor(t, 5*time.Second, "all 2000 changes", func() bool {
		for _, id := range ids {
			if n, _ := two.rec.counts(id); n == 0 {
				return false
			}
		}
		return true
	})
}

// When the listener's connection is terminated, it connects again, drops
// the whole cache (events sent meanwhile are lost) and hears later events;
// a sender whose connection was terminated sends on a new one.
func TestListenerReconnectsAndDropsEverything(t *testing.T) {
	db := testDatabase(t)
	one, two := startInstance(t, db, "one"), startInstance(t, db, "two")
	one.ev.Publish("aaaaaaaaaa") // opens the sender's connection
	waitFor(t, time.Second, "first event", func() bool { n, _ := two.rec.counts("aaaaaaaaaa"); return n == 1 })

	terminate(t, db, "two")
	waitFor(t, 5*time.Second, "cache dropped after the reconnect", func() bool { _, all := two.rec.counts(""); return all == 2 })
	if got := testutil.ToFloat64(two.ev.reconnects); got != 1 {
		t.Errorf("reconnects counted %v, want 1", got)
	}
	terminate(t, db, "one") // the sender's connection, and the listener's
	one.ev.Publish("bbbbbbbbbb")
	waitFor(t, 5*time.Second, "event after both reconnected", func() bool { n, _ := two.rec.counts("bbbbbbbbbb"); return n == 1 })
}

// The database password never reaches a log line or an error, whether the
// URL cannot be parsed or the server cannot be reached.
func TestEventsNeverShowThePassword(t *testing.T) {
	if _, err := NewEvents(EventsOptions{DatabaseURL: "postgres://feedd:hunter2@127.0.0.1:notaport/x", Instance: "one"}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad URL: %v", err)
	}
	logs := &tu.SyncBuffer{}
	ev, err := NewEvents(EventsOptions{DatabaseURL: "postgres://feedd:hunter2@127.0.0.1:1/x", Instance: "one",
		Retry: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ev.Publish("aaaaaaaaaa")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	ev.Run(ctx)
	out := logs.String()
	if !strings.Contains(out, "reconnecting") || !strings.Contains(out, "sending a change") {
		t.Fatalf("the failures were not logged:\n%s", out)
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("the password is in the log:\n%s", out)
	}
}
