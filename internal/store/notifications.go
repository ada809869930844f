package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/feedd/feedd/internal/model"
)

// KeptDeliveries is how many finished notifications of a feed the delivery
// log keeps; older ones are dropped as new ones arrive.
const KeptDeliveries = 50

// droppedError is the delivery log's reason for a notification given up
// because too many were waiting.
const droppedError = "dropped: too many notifications waiting"

// AddNotifications queues ns (pending, tried first at their NextAt) in one
// transaction. At most maxPending stay pending in all: beyond that, the
// oldest are given up. Finished notifications of the feeds beyond the
// newest KeptDeliveries are deleted. It returns how many were given up.
func (s *Store) AddNotifications(ctx context.Context, ns []model.Notification, maxPending int) (dropped int, err error) {
	now := unix(s.now())
	err = s.write(ctx, func(tx *sql.Tx) error {
		feeds := map[string]bool{}
		for _, n := range ns {
			if !model.ValidFeedID(n.FeedID) {
				return model.ErrNotFound
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO notifications (feed_id, channel, event, body, state, created_at, next_at)
				VALUES (?, ?, ?, ?, 'pending', ?, ?)`, n.FeedID, string(n.Channel), n.Event, string(n.Body), now, unix(n.NextAt)); err != nil {
				return err
			}
			feeds[n.FeedID] = true
		}
		res, err := tx.ExecContext(ctx, `UPDATE notifications SET state = 'failed', finished_at = ?, claimed_until = NULL, last_error = ?
			WHERE state = 'pending' AND id NOT IN
				(SELECT id FROM notifications WHERE state = 'pending' ORDER BY id DESC LIMIT ?)`, now, droppedError, maxPending)
		if err != nil {
			return err
		}
		d, err := res.RowsAffected()
		if err != nil {
			return err
		}
		dropped = int(d)
		for id := range feeds {
			if _, err := tx.ExecContext(ctx, `DELETE FROM notifications WHERE feed_id = ? AND state <> 'pending' AND id NOT IN
				(SELECT id FROM notifications WHERE feed_id = ? AND state <> 'pending' ORDER BY id DESC LIMIT ?)`, id, id, KeptDeliveries); err != nil {
				return err
			}
		}
		return nil
	})
	return dropped, wrap("add notifications", err)
}

const notificationColumns = `id, feed_id, channel, event, body, state, attempts, created_at, next_at, finished_at, last_status, last_error`

func scanNotification(row interface{ Scan(...any) error }) (model.Notification, error) {
	var n model.Notification
	var channel, state, body string
	var created, next int64
	var finished sql.NullInt64
	err := row.Scan(&n.ID, &n.FeedID, &channel, &n.Event, &body, &state, &n.Attempts, &created, &next, &finished, &n.LastStatus, &n.LastError)
	n.Channel, n.State, n.Body = model.Channel(channel), model.DeliveryState(state), []byte(body)
	n.CreatedAt, n.NextAt, n.FinishedAt = fromUnix(created), fromUnix(next), fromNullUnix(finished)
	return n, err
}

// ClaimNotification takes the pending notification due first at now that
// no other instance holds, counts the attempt and holds it until until. A
// notification waits while an older one of the same feed and channel is
// pending, so a feed's events arrive in order. The claim is one
// conditional UPDATE: of instances claiming at once, exactly one gets a
// given notification. model.ErrNotFound: none is due.
func (s *Store) ClaimNotification(ctx context.Context, now, until time.Time) (model.Notification, error) {
	var n model.Notification
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = scanNotification(tx.QueryRowContext(ctx, `UPDATE notifications SET attempts = attempts + 1, claimed_until = ?
			WHERE id = (SELECT n.id FROM notifications n
				WHERE n.state = 'pending' AND n.next_at <= ? AND (n.claimed_until IS NULL OR n.claimed_until <= ?)
				AND NOT EXISTS (SELECT 1 FROM notifications o
					WHERE o.feed_id = n.feed_id AND o.channel = n.channel AND o.state = 'pending' AND o.id < n.id)
				ORDER BY n.next_at, n.id LIMIT 1)
			AND state = 'pending' AND (claimed_until IS NULL OR claimed_until <= ?)
			RETURNING `+notificationColumns, unix(until), unix(now), unix(now), unix(now)))
		if errors.Is(err, sql.ErrNoRows) {
			return model.ErrNotFound
		}
		return err
	})
	return n, wrap("claim notification", err)
}

// FinishNotification records the outcome of the attempt claimed as n:
// n.State pending (with n.NextAt) to try again, delivered or failed; and
// n.LastStatus and n.LastError. The claim is released.
func (s *Store) FinishNotification(ctx context.Context, n model.Notification) error {
	var finished any
	if n.State != model.DeliveryPending {
		finished = unix(s.now())
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		return rowsAffected(tx.ExecContext(ctx, `UPDATE notifications SET state = ?, next_at = ?, finished_at = ?,
			claimed_until = NULL, last_status = ?, last_error = ? WHERE id = ? AND state = 'pending'`,
			string(n.State), unix(n.NextAt), finished, n.LastStatus, n.LastError, n.ID))
	})
	return wrap("finish notification", err)
}

// Notifications lists the feed's notifications, newest first, at most limit.
func (s *Store) Notifications(ctx context.Context, feedID string, limit int) ([]model.Notification, error) {
	if !model.ValidFeedID(feedID) {
		return nil, model.ErrNotFound
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+notificationColumns+` FROM notifications WHERE feed_id = ? ORDER BY id DESC LIMIT ?`, feedID, limit)
	if err != nil {
		return nil, fmt.Errorf("store: list notifications: %w", err)
	}
	defer rows.Close()
	var out []model.Notification
	for rows.Next() {
		n, err := scanNotification(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list notifications: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list notifications: %w", err)
	}
	return out, nil
}
