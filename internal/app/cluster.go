package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/feedd/feedd/internal/cluster"
	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/feed"
)

// ErrSharedKeyRequired: several instances must seal tokens with one key,
// which a key file generated in one instance's data dir is not.
var ErrSharedKeyRequired = errors.New("app: FEEDD_SECRET_KEY is required with FEEDD_DATABASE_URL: every instance must encrypt tokens with the same key, and a key file generated in one instance's data dir is not shared; set FEEDD_SECRET_KEY (or FEEDD_SECRET_KEY_FILE) to a 32-byte base64 key, such as the output of 'openssl rand -base64 32' (moving from SQLite: the content of the old data dir's secret.key)")

// checkSharedKey refuses a shared database without a configured key.
func checkSharedKey(cfg config.Config) error {
	if cfg.DatabaseURL != "" && len(cfg.SecretKeys) == 0 {
		return ErrSharedKeyRequired
	}
	return nil
}

// leaseTTL is how long a claim of a poll or refresh holds without renewal:
// the fetch interval, within [5s, cluster.DefaultTTL], so that the work of
// an instance that died is taken over before the next interval has passed
// (and with short test intervals, within seconds).
func leaseTTL(cfg config.Config) time.Duration {
	return min(cluster.DefaultTTL, max(cfg.FetchInterval, 5*time.Second))
}

// newClaims makes the claims of this instance's polls and refreshes: on
// PostgreSQL they decide which instance does each; on SQLite, the only
// instance, they always succeed.
func (m *Main) newClaims(ctx context.Context, instance string) (*cluster.Claims, error) {
	if m.Config.DatabaseURL == "" {
		// The data dir's lock makes this process SQLite's only one: claims
		// left by a process that crashed are void.
		if err := m.Store.ClearLeases(ctx); err != nil {
			return nil, fmt.Errorf("app: %w", err)
		}
	}
	c, err := cluster.NewClaims(cluster.ClaimsOptions{
		Store: m.Store, Instance: instance, TTL: leaseTTL(m.Config),
		Now: m.Now, Logger: m.Logger, Registerer: m.Registry, Guard: m.Guard,
	})
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	// Leases in the database name this id: the log says which process it is.
	m.Logger.Info("claiming polls and token refreshes", slog.String("instance", instance), slog.Duration("lease", leaseTTL(m.Config)))
	return c, nil
}

// newEvents makes the channel of feed changes between instances: nil on
// SQLite (one instance, nothing to tell).
func (m *Main) newEvents(instance string) (*cluster.Events, error) {
	if m.Config.DatabaseURL == "" {
		return nil, nil
	}
	ev, err := cluster.NewEvents(cluster.EventsOptions{
		DatabaseURL: m.Config.DatabaseURL, Instance: instance,
		Logger: m.Logger, Registerer: m.Registry, Guard: m.Guard,
	})
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	return ev, nil
}

// listen makes the other instances' changes drop fs's cached answers, and
// runs the events as a worker.
func (m *Main) listen(ev *cluster.Events, fs *feed.Service) {
	if ev == nil {
		return
	}
	ev.Handle(fs.DropCached, fs.DropAllCached)
	m.AddWorker("cluster_events", ev)
}

// feedEvents is ev as the feed service takes it: no events at all (a nil
// interface) on SQLite.
func feedEvents(ev *cluster.Events) feed.Events {
	if ev == nil {
		return nil
	}
	return ev
}
