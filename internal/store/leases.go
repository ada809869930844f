package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/feedd/feedd/internal/model"
)

// Leases: when several instances share one database, each poll of a feed
// and each refresh of a token is claimed by one of them first. A claim is
// a conditional UPDATE of the feed's (or token's) own row that names the
// slot as the claimer read it: the feed's next poll time, the token's
// obtained and next refresh times. Finishing the work moves the slot
// (RecordFetch, ReplaceToken, RecordRefreshFailure), so an instance that
// read the old slot cannot claim it after another instance did the work;
// and because the condition is re-checked on the row itself inside the
// UPDATE, two instances racing for one slot cannot both win. A claim lapses
// at its until time unless its holder renews it, so the work of an instance
// that died is taken over. On SQLite, with one instance, claims succeed.

// ClaimPoll makes holder the instance that polls feedID until until. It
// reports false when another holder's claim has not lapsed or, unless
// force (the owner's "fetch now"), when the feed's next poll time is no
// longer slot (the zero time for a feed never scheduled).
func (s *Store) ClaimPoll(ctx context.Context, feedID, holder string, slot time.Time, force bool, until time.Time) (bool, error) {
	return s.claim(ctx, "claim poll", `UPDATE feeds SET poll_holder = ?, poll_until = ?
		WHERE id = ? AND (poll_until IS NULL OR poll_until <= ? OR poll_holder = ?)
		AND (? = 1 OR coalesce(next_fetch_at, 0) = ?)`,
		holder, unix(until), feedID, unix(s.now()), holder, boolInt(force), slotUnix(slot))
}

// ClaimRefresh makes holder the instance that refreshes feedID's token
// until until, if the stored token is still the one t describes (its
// obtained and next refresh times) and no other holder's claim holds.
func (s *Store) ClaimRefresh(ctx context.Context, feedID, holder string, t model.TokenInfo, until time.Time) (bool, error) {
	return s.claim(ctx, "claim refresh", `UPDATE tokens SET refresh_holder = ?, refresh_until = ?
		WHERE feed_id = ? AND (refresh_until IS NULL OR refresh_until <= ? OR refresh_holder = ?)
		AND obtained_at = ? AND coalesce(next_refresh_at, 0) = ?`,
		holder, unix(until), feedID, unix(s.now()), holder, unix(t.ObtainedAt), slotUnix(t.NextRefreshAt))
}

// ClaimSourceRefresh is ClaimRefresh for a further source's token.
func (s *Store) ClaimSourceRefresh(ctx context.Context, feedID, sourceID, holder string, t model.TokenInfo, until time.Time) (bool, error) {
	return s.claim(ctx, "claim source refresh", `UPDATE sources SET refresh_holder = ?, refresh_until = ?
		WHERE feed_id = ? AND id = ? AND (refresh_until IS NULL OR refresh_until <= ? OR refresh_holder = ?)
		AND obtained_at = ? AND coalesce(next_refresh_at, 0) = ?`,
		holder, unix(until), feedID, sourceID, unix(s.now()), holder, unix(t.ObtainedAt), slotUnix(t.NextRefreshAt))
}

// ClaimTokenTask reports whether the caller is the one to do task for
// feedID's token now: it records now as the task's last run unless one was
// recorded less than every ago, so several instances, or one restarted,
// do it once per period between them. A reconnect (Connect) clears the
// records.
func (s *Store) ClaimTokenTask(ctx context.Context, feedID string, task model.TokenTask, now time.Time, every time.Duration) (bool, error) {
	var col string
	switch task {
	case model.TaskExpiryWarning:
		col = "expiry_warned_at"
	case model.TaskProbe:
		col = "probed_at"
	default:
		return false, fmt.Errorf("%w: token task %q", ErrInvalid, task)
	}
	return s.claim(ctx, "claim token task", `UPDATE tokens SET `+col+` = ?
		WHERE feed_id = ? AND (`+col+` IS NULL OR `+col+` <= ?)`,
		unix(now), feedID, unix(now.Add(-every)))
}

// sourceLease splits a LeaseSourceRefresh lease's name.
func sourceLease(name string) (feedID, sourceID string, err error) {
	feedID, sourceID, ok := strings.Cut(name, "/")
	if !ok {
		return "", "", fmt.Errorf("%w: source lease %q", ErrInvalid, name)
	}
	return feedID, sourceID, nil
}

// RenewLease moves holder's claim of kind on feedID on to until. It
// reports false when the claim is no longer holder's.
func (s *Store) RenewLease(ctx context.Context, kind model.LeaseKind, feedID, holder string, until time.Time) (bool, error) {
	if kind == model.LeaseSourceRefresh {
		f, src, err := sourceLease(feedID)
		if err != nil {
			return false, err
		}
		return s.claim(ctx, "renew lease", `UPDATE sources SET refresh_until = ? WHERE feed_id = ? AND id = ? AND refresh_holder = ?`,
			unix(until), f, src, holder)
	}
	q, err := leaseQuery(kind, `UPDATE feeds SET poll_until = ? WHERE id = ? AND poll_holder = ?`,
		`UPDATE tokens SET refresh_until = ? WHERE feed_id = ? AND refresh_holder = ?`)
	if err != nil {
		return false, err
	}
	return s.claim(ctx, "renew lease", q, unix(until), feedID, holder)
}

// ReleaseLease ends holder's claim of kind on feedID (another holder's is
// left alone).
func (s *Store) ReleaseLease(ctx context.Context, kind model.LeaseKind, feedID, holder string) error {
	if kind == model.LeaseSourceRefresh {
		f, src, err := sourceLease(feedID)
		if err != nil {
			return err
		}
		_, err = s.claim(ctx, "release lease", `UPDATE sources SET refresh_holder = NULL, refresh_until = NULL
			WHERE feed_id = ? AND id = ? AND refresh_holder = ?`, f, src, holder)
		return err
	}
	q, err := leaseQuery(kind, `UPDATE feeds SET poll_holder = NULL, poll_until = NULL WHERE id = ? AND poll_holder = ?`,
		`UPDATE tokens SET refresh_holder = NULL, refresh_until = NULL WHERE feed_id = ? AND refresh_holder = ?`)
	if err != nil {
		return err
	}
	_, err = s.claim(ctx, "release lease", q, feedID, holder)
	return err
}

// ClearLeases ends every claim. Only for a database one process serves
// alone (SQLite under its instance lock): claims left by an earlier process
// that stopped or crashed would otherwise hold its polls until they lapse.
func (s *Store) ClearLeases(ctx context.Context) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE feeds SET poll_holder = NULL, poll_until = NULL WHERE poll_holder IS NOT NULL`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE tokens SET refresh_holder = NULL, refresh_until = NULL WHERE refresh_holder IS NOT NULL`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sources SET refresh_holder = NULL, refresh_until = NULL WHERE refresh_holder IS NOT NULL`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE media SET format_holder = NULL, format_until = NULL WHERE format_holder IS NOT NULL`)
		return err
	})
	return wrap("clear leases", err)
}

func leaseQuery(kind model.LeaseKind, poll, refresh string) (string, error) {
	switch kind {
	case model.LeasePoll:
		return poll, nil
	case model.LeaseRefresh:
		return refresh, nil
	}
	return "", fmt.Errorf("%w: lease kind %q", ErrInvalid, kind)
}

// claim runs one conditional UPDATE and reports whether it changed a row.
func (s *Store) claim(ctx context.Context, op, q string, args ...any) (bool, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, wrap(op, err)
	}
	return n == 1, nil
}

// slotUnix is a slot time as stored, 0 for none (NULL in the row).
func slotUnix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
