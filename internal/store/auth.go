package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/feedd/feedd/internal/model"
)

// CreateState stores a new OAuth state (ErrNotFound for an unknown feed,
// ErrConflict for a hash already stored).
func (s *Store) CreateState(ctx context.Context, st model.OAuthState) error {
	if len(st.Hash) == 0 {
		return fmt.Errorf("%w: empty state hash", ErrInvalid)
	}
	if st.CreatedAt.IsZero() {
		st.CreatedAt = s.now()
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		// Under the feed's lock: a deletion racing on another instance
		// waits, and this answers ErrNotFound, not a foreign-key error.
		if _, err := s.lockFeed(ctx, tx, st.FeedID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO oauth_states (state_hash, feed_id, session_hash, created_at, expires_at, add_source)
			VALUES (?, ?, ?, ?, ?, ?)`, st.Hash, st.FeedID, nullBytes(st.SessionHash), unix(st.CreatedAt), unix(st.ExpiresAt),
			boolInt(st.AddSource))
		if isConstraint(err) {
			return ErrConflict
		}
		return err
	})
	return wrap("create state", err)
}

// ConsumeState marks the state used and returns it. It fails with
// ErrStateNotFound (unknown, or its feed was deleted), ErrStateUsed or
// ErrStateExpired; only the first successful call for a state wins.
func (s *Store) ConsumeState(ctx context.Context, stateHash []byte, now time.Time) (model.OAuthState, error) {
	var st model.OAuthState
	err := s.write(ctx, func(tx *sql.Tx) error {
		var created, expires, addSource int64
		var used sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT state_hash, feed_id, session_hash, created_at, expires_at, used_at, add_source
			FROM oauth_states WHERE state_hash = ?`+s.d.forUpdate, stateHash).
			Scan(&st.Hash, &st.FeedID, &st.SessionHash, &created, &expires, &used, &addSource)
		st.AddSource = addSource != 0
		if errors.Is(err, sql.ErrNoRows) {
			return model.ErrStateNotFound
		}
		if err != nil {
			return err
		}
		st.CreatedAt, st.ExpiresAt, st.UsedAt = fromUnix(created), fromUnix(expires), fromNullUnix(used)
		if used.Valid {
			return model.ErrStateUsed
		}
		if !now.Before(st.ExpiresAt) {
			return model.ErrStateExpired
		}
		st.UsedAt = fromUnix(unix(now))
		_, err = tx.ExecContext(ctx, `UPDATE oauth_states SET used_at = ? WHERE state_hash = ?`, unix(now), stateHash)
		return err
	})
	if err != nil {
		if errors.Is(err, model.ErrStateNotFound) || errors.Is(err, model.ErrStateUsed) || errors.Is(err, model.ErrStateExpired) {
			return model.OAuthState{}, err
		}
		return model.OAuthState{}, fmt.Errorf("store: consume state: %w", err)
	}
	return st, nil
}

// PurgeExpired deletes OAuth states, admin sessions and setup links that
// expired before `before`. Keep a grace period (e.g. a day) so a late
// callback still learns its state expired rather than that it is unknown.
func (s *Store) PurgeExpired(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{
			`DELETE FROM oauth_states WHERE expires_at < ?`,
			`DELETE FROM admin_sessions WHERE expires_at < ?`,
			`DELETE FROM setup_links WHERE expires_at < ?`,
		} {
			res, err := tx.ExecContext(ctx, q, unix(before))
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			total += n
		}
		return nil
	})
	return total, wrap("purge expired", err)
}

// AdminTokenHash returns the stored admin token hash, or ErrNotFound.
func (s *Store) AdminTokenHash(ctx context.Context) ([]byte, error) {
	var h []byte
	err := s.r.QueryRowContext(ctx, `SELECT token_hash FROM admin WHERE id = 1`).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, model.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: read admin token: %w", err)
	}
	return h, nil
}

// SetAdminTokenHash stores a new admin token hash and, in the same
// transaction, ends every admin session and voids every setup link made for
// the old token.
func (s *Store) SetAdminTokenHash(ctx context.Context, h []byte) error {
	if len(h) == 0 {
		return fmt.Errorf("%w: empty admin token hash", ErrInvalid)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO admin (id, token_hash, updated_at) VALUES (1, ?, ?)
			ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash, updated_at = excluded.updated_at`,
			h, unix(s.now())); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM admin_sessions`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM setup_links`)
		return err
	})
	return wrap("set admin token", err)
}

// CreateSession stores a new admin session (ErrConflict for a known id).
func (s *Store) CreateSession(ctx context.Context, se model.Session) error {
	if len(se.IDHash) == 0 {
		return fmt.Errorf("%w: empty session id hash", ErrInvalid)
	}
	if se.CreatedAt.IsZero() {
		se.CreatedAt = s.now()
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO admin_sessions (id_hash, csrf, created_at, expires_at) VALUES (?, ?, ?, ?)`,
			se.IDHash, se.CSRF, unix(se.CreatedAt), unix(se.ExpiresAt))
		if isConstraint(err) {
			return ErrConflict
		}
		return err
	})
	return wrap("create session", err)
}

// Session returns the admin session with this id hash if it has not
// expired at now; ErrNotFound otherwise.
func (s *Store) Session(ctx context.Context, idHash []byte, now time.Time) (model.Session, error) {
	var se model.Session
	var created, expires int64
	err := s.r.QueryRowContext(ctx, `SELECT id_hash, csrf, created_at, expires_at FROM admin_sessions WHERE id_hash = ?`, idHash).
		Scan(&se.IDHash, &se.CSRF, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return model.Session{}, model.ErrNotFound
	}
	if err != nil {
		return model.Session{}, fmt.Errorf("store: read session: %w", err)
	}
	se.CreatedAt, se.ExpiresAt = fromUnix(created), fromUnix(expires)
	if !now.Before(se.ExpiresAt) {
		return model.Session{}, model.ErrNotFound
	}
	return se, nil
}

// DeleteSession ends an admin session (no error when it is unknown).
func (s *Store) DeleteSession(ctx context.Context, idHash []byte) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM admin_sessions WHERE id_hash = ?`, idHash)
		return err
	})
	return wrap("delete session", err)
}

// CreateSetupLink stores the hash of a one-time setup link.
func (s *Store) CreateSetupLink(ctx context.Context, tokenHash []byte, expires time.Time) error {
	if len(tokenHash) == 0 {
		return fmt.Errorf("%w: empty setup link hash", ErrInvalid)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO setup_links (token_hash, created_at, expires_at) VALUES (?, ?, ?)`,
			tokenHash, unix(s.now()), unix(expires))
		if isConstraint(err) {
			return ErrConflict
		}
		return err
	})
	return wrap("create setup link", err)
}

// ConsumeSetupLink marks a setup link used. It fails with ErrNotFound,
// ErrLinkUsed or ErrLinkExpired; only the first successful call wins.
func (s *Store) ConsumeSetupLink(ctx context.Context, tokenHash []byte, now time.Time) error {
	// A link nobody issued is answered from the read pool: a flood of
	// made-up links never queues at the one writer.
	var known int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM setup_links WHERE token_hash = ?`, tokenHash).Scan(&known); err != nil {
		return wrap("consume setup link", err)
	}
	if known == 0 {
		return model.ErrNotFound
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		var expires int64
		var used sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT expires_at, used_at FROM setup_links WHERE token_hash = ?`+s.d.forUpdate, tokenHash).Scan(&expires, &used)
		if errors.Is(err, sql.ErrNoRows) {
			return model.ErrNotFound
		}
		if err != nil {
			return err
		}
		if used.Valid {
			return ErrLinkUsed
		}
		if !now.Before(fromUnix(expires)) {
			return ErrLinkExpired
		}
		_, err = tx.ExecContext(ctx, `UPDATE setup_links SET used_at = ? WHERE token_hash = ?`, unix(now), tokenHash)
		return err
	})
	if errors.Is(err, ErrLinkUsed) || errors.Is(err, ErrLinkExpired) {
		return err
	}
	return wrap("consume setup link", err)
}

// CreateDeletionRequest records a deauthorize or deletion callback
// (ErrConflict for a code already used).
func (s *Store) CreateDeletionRequest(ctx context.Context, d model.DeletionRequest) error {
	if d.Code == "" || (d.Kind != "deauthorize" && d.Kind != "delete") {
		return fmt.Errorf("%w: deletion request needs a code and kind deauthorize or delete", ErrInvalid)
	}
	if d.RequestedAt.IsZero() {
		d.RequestedAt = s.now()
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO deletion_requests (code, kind, user_id, requested_at, completed_at, feeds_affected)
			VALUES (?, ?, ?, ?, ?, ?)`, d.Code, d.Kind, d.UserID, unix(d.RequestedAt), nullUnix(d.CompletedAt), d.FeedsAffected)
		if isConstraint(err) {
			return ErrConflict
		}
		return err
	})
	return wrap("create deletion request", err)
}

// DeletionRequest returns the request with this confirmation code, or ErrNotFound.
func (s *Store) DeletionRequest(ctx context.Context, code string) (model.DeletionRequest, error) {
	var d model.DeletionRequest
	var requested int64
	var completed sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT code, kind, user_id, requested_at, completed_at, feeds_affected
		FROM deletion_requests WHERE code = ?`, code).Scan(&d.Code, &d.Kind, &d.UserID, &requested, &completed, &d.FeedsAffected)
	if errors.Is(err, sql.ErrNoRows) {
		return model.DeletionRequest{}, model.ErrNotFound
	}
	if err != nil {
		return model.DeletionRequest{}, fmt.Errorf("store: read deletion request: %w", err)
	}
	d.RequestedAt, d.CompletedAt = fromUnix(requested), fromNullUnix(completed)
	return d, nil
}

// CompleteDeletionRequest records that the request was carried out.
func (s *Store) CompleteDeletionRequest(ctx context.Context, code string, at time.Time, feedsAffected int) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		return rowsAffected(tx.ExecContext(ctx, `UPDATE deletion_requests SET completed_at = ?, feeds_affected = ? WHERE code = ?`,
			unix(at), feedsAffected, code))
	})
	return wrap("complete deletion request", err)
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}
