package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/guard"
	"github.com/feedd/feedd/internal/model"
)

// Channel is the PostgreSQL notification channel of feed change events.
const Channel = "feedd_feed_changed"

// An event's payload is the sending instance's id, a space, and the ids of
// the feeds that changed separated by commas, or allFeeds.
const allFeeds = "*"

// Bounds of what is waiting to be sent: PostgreSQL refuses payloads of
// 8000 bytes or more, and past maxPending feeds one "everything changed"
// event replaces them.
const (
	maxPayload = 7000
	maxPending = 10000
)

// EventsOptions configure Events. DatabaseURL and Instance are required.
type EventsOptions struct {
	DatabaseURL string // FEEDD_DATABASE_URL, postgres://…
	Instance    string // this instance's id (NewInstanceID)
	// Retry is the wait before connecting again after a connection was
	// lost or refused (default 1s).
	Retry time.Duration
	// KeepAlive is how long the listener waits for an event before it
	// checks that its connection still answers (default 30s).
	KeepAlive  time.Duration
	Logger     *slog.Logger // default: discard
	Registerer prometheus.Registerer
	Guard      *guard.Guard
}

// Events sends this instance's feed changes to the other instances and
// drops the cached answers the others' changes make outdated. Publish
// never blocks; Run does the sending and listening.
type Events struct {
	cfg      *pgx.ConnConfig
	instance string
	retry    time.Duration
	alive    time.Duration
	log      *slog.Logger
	guard    *guard.Guard

	counts     *prometheus.CounterVec
	reconnects prometheus.Counter

	mu      sync.Mutex
	drop    func(feedID string)
	dropAll func()
	pending map[string]bool // feeds changed here, not sent yet
	all     bool            // too many waited: send "everything changed"
	wake    chan struct{}
}

// NewEvents returns Events for the PostgreSQL database at opts.DatabaseURL.
func NewEvents(opts EventsOptions) (*Events, error) {
	if opts.Instance == "" || strings.ContainsAny(opts.Instance, " ,") {
		return nil, errors.New("cluster: EventsOptions.Instance is required, without spaces or commas")
	}
	cfg, err := pgx.ParseConfig(opts.DatabaseURL)
	if err != nil {
		// pgx's message may quote the URL, password included.
		return nil, errors.New("cluster: the database URL cannot be parsed")
	}
	// The listener's connection is found by this name (pg_stat_activity).
	cfg.RuntimeParams["application_name"] = trimTo("feedd "+opts.Instance, 63)
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	e := &Events{cfg: cfg, instance: opts.Instance, retry: opts.Retry, alive: opts.KeepAlive,
		log: opts.Logger, guard: opts.Guard, pending: map[string]bool{}, wake: make(chan struct{}, 1),
		drop: func(string) {}, dropAll: func() {}}
	if e.retry <= 0 {
		e.retry = time.Second
	}
	if e.alive <= 0 {
		e.alive = 30 * time.Second
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.counts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feedd_cluster_events_total",
		Help: "Feed change events exchanged with the other instances, by direction (sent, received); one per feed.",
	}, []string{"direction"})
	e.reconnects = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "feedd_cluster_listener_reconnects_total",
		Help: "Times the listener for the other instances' events connected again after losing its connection; each drops the whole hot cache.",
	})
	if err := register(opts.Registerer, e.counts, e.reconnects); err != nil {
		return nil, err
	}
	return e, nil
}

// Handle sets what an event from another instance does: drop the cached
// answers of one feed, or of every feed when events may have been missed
// (the listener's connection was lost). Call it before Run.
func (e *Events) Handle(drop func(feedID string), dropAll func()) {
	e.mu.Lock()
	e.drop, e.dropAll = drop, dropAll
	e.mu.Unlock()
}

// Publish tells the other instances that feedID changed: call it after the
// change is committed. It never blocks; changes waiting to be sent are
// merged per feed.
func (e *Events) Publish(feedID string) {
	if !model.ValidFeedID(feedID) {
		return
	}
	e.mu.Lock()
	if !e.all {
		e.pending[feedID] = true
		if len(e.pending) > maxPending {
			e.all, e.pending = true, map[string]bool{}
		}
	}
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Run listens for the other instances' events and sends this instance's
// until ctx ends. Lost connections are opened again; after that the whole
// cache is dropped, since events may have been sent meanwhile.
func (e *Events) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	e.guard.Go("cluster_send", func() { defer wg.Done(); e.sendLoop(ctx) })
	e.guard.Go("cluster_listen", func() { defer wg.Done(); e.listenLoop(ctx) })
	wg.Wait()
	return nil
}

func (e *Events) listenLoop(ctx context.Context) {
	for connected := false; ; {
		err := e.listen(ctx, &connected)
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("listener for other instances' changes lost its connection; reconnecting", slog.Any("error", err))
		if !sleep(ctx, e.retry) {
			return
		}
	}
}

// listen opens a connection, listens on Channel and handles events until
// the connection fails. connected says whether a listen ever worked.
func (e *Events) listen(ctx context.Context, connected *bool) error {
	conn, err := pgx.ConnectConfig(ctx, e.cfg)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return err
	}
	if *connected {
		e.reconnects.Inc()
		e.log.Info("listening for other instances' changes again; dropping the hot cache")
	}
	*connected = true
	// Whatever changed while nobody listened is unknown: drop it all.
	e.handler(allFeeds)
	for {
		wctx, cancel := context.WithTimeout(ctx, e.alive)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			e.receive(n.Payload)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			// No event for a while: check that the connection answers (a
			// vanished peer would leave the wait blocked forever).
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}

// receive handles one event: events of this instance are skipped (it
// dropped its own entries when it sent them).
func (e *Events) receive(payload string) {
	from, feeds, ok := strings.Cut(payload, " ")
	if !ok || from == e.instance {
		return
	}
	for id := range strings.SplitSeq(feeds, ",") {
		if id == allFeeds || model.ValidFeedID(id) {
			e.counts.WithLabelValues("received").Inc()
			e.handler(id)
		}
	}
}

func (e *Events) handler(id string) {
	e.mu.Lock()
	drop, dropAll := e.drop, e.dropAll
	e.mu.Unlock()
	if id == allFeeds {
		dropAll()
		return
	}
	drop(id)
}

// take returns the waiting changes as payloads and forgets them.
func (e *Events) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	prefix := e.instance + " "
	if e.all {
		e.all = false
		return []string{prefix + allFeeds}
	}
	var out []string
	var b strings.Builder
	for id := range e.pending {
		if b.Len() > 0 && b.Len()+1+len(id) > maxPayload {
			out = append(out, b.String())
			b.Reset()
		}
		if b.Len() == 0 {
			b.WriteString(prefix)
		} else {
			b.WriteByte(',')
		}
		b.WriteString(id)
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	clear(e.pending)
	return out
}

// sendLoop sends waiting changes over a connection of its own, opened
// when needed; a payload that could not be sent is tried again.
func (e *Events) sendLoop(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
	}()
	var batch []string
	for {
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-e.wake:
			}
			batch = e.take()
		}
		for len(batch) > 0 {
			err := e.send(ctx, &conn, batch[0])
			if err == nil {
				e.counts.WithLabelValues("sent").Add(float64(strings.Count(batch[0], ",") + 1))
				batch = batch[1:]
				continue
			}
			if ctx.Err() != nil {
				return
			}
			e.log.Warn("sending a change to other instances failed; retrying", slog.Any("error", err))
			if !sleep(ctx, e.retry) {
				return
			}
		}
	}
}

func (e *Events) send(ctx context.Context, conn **pgx.Conn, payload string) error {
	if *conn == nil {
		c, err := pgx.ConnectConfig(ctx, e.cfg)
		if err != nil {
			return err
		}
		*conn = c
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := (*conn).Exec(sctx, "SELECT pg_notify($1, $2)", Channel, payload); err != nil {
		closeConn(*conn)
		*conn = nil
		return fmt.Errorf("cluster: notify: %w", err)
	}
	return nil
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// sleep waits d or until ctx ends; it reports whether ctx is still going.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func trimTo(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
