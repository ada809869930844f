package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/guard"
	"github.com/feedd/feedd/internal/model"
)

// ErrLeaseLost ends the context of work whose claim another instance took
// over (this instance could not renew it in time).
var ErrLeaseLost = errors.New("cluster: another instance took over the work")

// Store is what Claims needs from the database; *store.Store implements it.
type Store interface {
	ClaimPoll(ctx context.Context, feedID, holder string, slot time.Time, force bool, until time.Time) (bool, error)
	ClaimRefresh(ctx context.Context, feedID, holder string, t model.TokenInfo, until time.Time) (bool, error)
	ClaimSourceRefresh(ctx context.Context, feedID, sourceID, holder string, t model.TokenInfo, until time.Time) (bool, error)
	RenewLease(ctx context.Context, kind model.LeaseKind, feedID, holder string, until time.Time) (bool, error)
	ReleaseLease(ctx context.Context, kind model.LeaseKind, feedID, holder string) error
}

// DefaultTTL is how long a claim holds without renewal when
// ClaimsOptions.TTL is not set.
const DefaultTTL = 30 * time.Second

// ClaimsOptions configure Claims. Store and Instance are required.
type ClaimsOptions struct {
	Store    Store
	Instance string // this instance's id (NewInstanceID)
	// TTL is how long a claim holds without renewal: the longest another
	// instance waits to take over the work of one that died.
	TTL time.Duration
	// RenewEvery is how often running work renews its claim (default TTL/3).
	RenewEvery time.Duration
	Now        func() time.Time // default time.Now
	Logger     *slog.Logger     // default: discard
	Registerer prometheus.Registerer
	Guard      *guard.Guard
}

// Claims claims polls and token refreshes for this instance.
type Claims struct {
	store    Store
	instance string
	ttl      time.Duration
	renew    time.Duration
	now      func() time.Time
	log      *slog.Logger
	guard    *guard.Guard
	count    *prometheus.CounterVec
}

// NewClaims returns Claims.
func NewClaims(opts ClaimsOptions) (*Claims, error) {
	if opts.Store == nil || opts.Instance == "" {
		return nil, errors.New("cluster: ClaimsOptions.Store and Instance are required")
	}
	c := &Claims{store: opts.Store, instance: opts.Instance, ttl: opts.TTL, renew: opts.RenewEvery,
		now: opts.Now, log: opts.Logger, guard: opts.Guard}
	if c.ttl <= 0 {
		c.ttl = DefaultTTL
	}
	if c.renew <= 0 || c.renew >= c.ttl {
		c.renew = c.ttl / 3
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.count = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feedd_leases_total",
		Help: "Claims of a poll or a token refresh, by kind and outcome (claimed; refused: another instance holds or did it; lost: taken over while running; error).",
	}, []string{"kind", "outcome"})
	if err := register(opts.Registerer, c.count); err != nil {
		return nil, err
	}
	return c, nil
}

// Instance is this instance's id, as claims name it.
func (c *Claims) Instance() string { return c.instance }

// Poll claims the poll of feedID for slot, the feed's next poll time as
// read (any slot when force: the owner's "fetch now"). ok is false when
// another instance holds the poll or the slot was polled already. The
// returned context ends (with ErrLeaseLost as its cause) if the claim is
// lost; release ends the claim and must be called once the poll's writes
// are done.
func (c *Claims) Poll(ctx context.Context, feedID string, slot time.Time, force bool) (_ context.Context, release func(), ok bool, err error) {
	return c.claim(ctx, model.LeasePoll, feedID, func(until time.Time) (bool, error) {
		return c.store.ClaimPoll(ctx, feedID, c.instance, slot, force, until)
	})
}

// Refresh claims the refresh of feedID's token as read (t), like Poll.
func (c *Claims) Refresh(ctx context.Context, feedID string, t model.TokenInfo) (_ context.Context, release func(), ok bool, err error) {
	return c.claim(ctx, model.LeaseRefresh, feedID, func(until time.Time) (bool, error) {
		return c.store.ClaimRefresh(ctx, feedID, c.instance, t, until)
	})
}

// RefreshSource claims the refresh of a further source's token as read
// (t), like Refresh.
func (c *Claims) RefreshSource(ctx context.Context, feedID, sourceID string, t model.TokenInfo) (_ context.Context, release func(), ok bool, err error) {
	return c.claim(ctx, model.LeaseSourceRefresh, feedID+"/"+sourceID, func(until time.Time) (bool, error) {
		return c.store.ClaimSourceRefresh(ctx, feedID, sourceID, c.instance, t, until)
	})
}

func (c *Claims) claim(ctx context.Context, kind model.LeaseKind, feedID string, try func(until time.Time) (bool, error)) (context.Context, func(), bool, error) {
	until := c.now().Add(c.ttl)
	ok, err := try(until)
	switch {
	case err != nil:
		c.count.WithLabelValues(string(kind), "error").Inc()
		return nil, nil, false, fmt.Errorf("cluster: claim %s: %w", kind, err)
	case !ok:
		c.count.WithLabelValues(string(kind), "refused").Inc()
		return nil, nil, false, nil
	}
	c.count.WithLabelValues(string(kind), "claimed").Inc()
	lctx, cancel := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	done := make(chan struct{})
	c.guard.Go("lease_renewal", func() {
		defer close(done)
		c.keep(lctx, cancel, stop, kind, feedID, until)
	})
	release := sync.OnceFunc(func() {
		close(stop)
		<-done
		cancel(nil)
		// The release must land even when the work's own context ended.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer rcancel()
		if err := c.store.ReleaseLease(rctx, kind, feedID, c.instance); err != nil {
			// The claim lapses on its own at its until time.
			c.log.Warn("release lease", slog.String("kind", string(kind)), slog.String("feed", feedID), slog.Any("error", err))
		}
	})
	return lctx, release, true, nil
}

// keep renews a claim until stop closes or the work's context ends. A
// renewal the store refuses, or failures until the claim would have lapsed,
// mean another instance may be doing the work now: the work is cancelled.
func (c *Claims) keep(ctx context.Context, cancel context.CancelCauseFunc, stop <-chan struct{}, kind model.LeaseKind, feedID string, until time.Time) {
	t := time.NewTicker(c.renew)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next := c.now().Add(c.ttl)
		ok, err := c.store.RenewLease(ctx, kind, feedID, c.instance, next)
		switch {
		case err == nil && ok:
			until = next
			continue
		case err != nil && c.now().Before(until):
			c.log.Warn("renew lease", slog.String("kind", string(kind)), slog.String("feed", feedID), slog.Any("error", err))
			continue
		}
		c.count.WithLabelValues(string(kind), "lost").Inc()
		c.log.Warn("lease lost; stopping the work", slog.String("kind", string(kind)), slog.String("feed", feedID))
		cancel(ErrLeaseLost)
		return
	}
}
