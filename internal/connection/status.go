package connection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/feedd/feedd/internal/model"
)

// change is one change of a feed's connection status.
type change struct {
	feedID string
	to     model.Status
	reason string // owner-facing, for needs_reauth and error
	by     string // what made or noticed the change: owner, poll, token_check, refresh, meta_deauthorize...
	// persist stores the change in one conditioned transaction (store
	// ChangeStatus, Connect or Disconnect) and returns the feed as it was
	// just before and the media files no feed references any more.
	persist func(ctx context.Context) (model.Feed, []string, error)
	// reconnects is set when persist replaces the connection (connect or
	// disconnect): its data changed even when its status did not.
	reconnects bool
	username   string    // the account after the change, for the event
	expiresAt  time.Time // the token's expiry after the change, for the event
	// source is set for a change of one further source of the feed (its
	// id); persist then returns the feed with that source's status before.
	source string
}

// transition is the one way a feed's connection status changes. It stores
// the change and deletes the files it freed, then, when the status did
// change, logs it, counts it by its target status, updates the gauges and
// sends the webhook once; the feed's cached answers are dropped whenever
// anything was written.
func (s *Service) transition(ctx context.Context, c change) error {
	prev, files, err := c.persist(ctx)
	if err != nil {
		return err
	}
	s.removeFiles(files)
	s.invalidate(c.feedID)
	if c.reconnects {
		s.dropPending(c.feedID)
	}
	from := prev.Status
	if from == c.to && !c.reconnects {
		return nil
	}
	attrs := []any{feedAttr(c.feedID), slog.String("from", string(from)), slog.String("by", c.by)}
	if c.source != "" {
		attrs = append(attrs, slog.String("source", c.source))
	}
	if c.username != "" {
		attrs = append(attrs, slog.String("username", c.username))
	}
	if c.reason != "" {
		attrs = append(attrs, slog.String("reason", c.reason))
	}
	msg := statusMessage(c.to)
	if c.source != "" {
		msg = sourceStatusMessage(c.to)
	}
	switch c.to {
	case model.StatusNeedsReauth, model.StatusError:
		s.log.Warn(msg, attrs...)
	default:
		s.log.Info(msg, attrs...)
	}
	if from == c.to {
		return nil
	}
	s.metrics.changes.WithLabelValues(string(c.to)).Inc()
	s.refreshGauges(ctx)
	ev := Event{Event: eventName(from, c.to), FeedID: c.feedID, FeedName: prev.Name, Username: c.username,
		ExpiresAt: c.expiresAt, Message: eventMessage(c), Source: c.source}
	if ev.Username == "" && prev.Account != nil && c.source == "" {
		ev.Username = prev.Account.Username
	}
	s.notify(ev)
	return nil
}

func statusMessage(to model.Status) string {
	switch to {
	case model.StatusActive:
		return "feed connected"
	case model.StatusNotConnected:
		return "feed disconnected"
	case model.StatusNeedsReauth:
		return "feed needs reauth"
	}
	return "feed has a problem"
}

func eventName(from, to model.Status) string {
	switch to {
	case model.StatusActive:
		if from == model.StatusNotConnected {
			return EventConnected
		}
		return EventReconnected
	case model.StatusNotConnected:
		return EventDisconnected
	case model.StatusNeedsReauth:
		return EventNeedsReauth
	}
	return EventError
}

func eventMessage(c change) string {
	if c.source != "" {
		return sourceEventMessage(c)
	}
	switch c.to {
	case model.StatusActive:
		return "the feed is connected"
	case model.StatusNotConnected:
		switch c.by {
		case byMetaDeauthorize:
			return "the account removed feedd's access on Instagram: its token, posts and images are deleted"
		case byMetaDelete:
			return "Instagram asked feedd to delete this account's data: its token, posts and images are deleted"
		}
		return "the feed was disconnected: its token, posts and images are deleted"
	}
	return c.reason
}

// What made or noticed a change, for the log and the event message.
const (
	byOwner           = "owner"
	byPoll            = "poll"
	byTokenCheck      = "token_check"
	byRefresh         = "refresh"
	byMetaDeauthorize = "meta_deauthorize"
	byMetaDelete      = "meta_delete"
)

// connectFeed stores the feed's new account and token in one transaction
// (dropping the previous account's posts when the account changes) and
// announces the change. gen is the connection the caller read the feed
// on: a connect, disconnect or deletion since then wins.
func (s *Service) connectFeed(ctx context.Context, feedID string, gen int64, acct model.Account, tok model.Token, by string) error {
	tok.FeedID = feedID
	err := s.transition(ctx, change{
		feedID: feedID, to: model.StatusActive, by: by, reconnects: true,
		username: acct.Username, expiresAt: tok.ExpiresAt,
		persist: func(ctx context.Context) (model.Feed, []string, error) {
			return s.store.Connect(ctx, feedID, gen, acct, tok)
		},
	})
	if err != nil {
		return err
	}
	s.metrics.setExpiry(feedID, tok.ExpiresAt.Sub(s.now()))
	s.fetchSoon(feedID)
	return nil
}

// keepConnect keeps a token issued for a connect whose store write failed
// with cause, and retries the connect on the connection it was made for.
func (s *Service) keepConnect(prev model.Feed, acct model.Account, tok model.Token, by string, cause error) {
	s.keep(prev.ID, &pending{
		tok:         tok,
		sameAccount: prev.Account != nil && prev.Account.IGUserID == acct.IGUserID,
		write: func(ctx context.Context) error {
			return s.connectFeed(ctx, prev.ID, prev.Generation, acct, tok, by)
		},
	}, cause)
}

// disconnectFeed removes the feed's token, account, posts and media refs
// in one transaction (which moves the feed to a new connection, so a poll
// still running cannot write back), deletes the files no feed references
// any more and announces the change.
func (s *Service) disconnectFeed(ctx context.Context, feedID, by string) error {
	err := s.transition(ctx, change{
		feedID: feedID, to: model.StatusNotConnected, by: by, reconnects: true,
		persist: func(ctx context.Context) (model.Feed, []string, error) {
			return s.store.Disconnect(ctx, feedID)
		},
	})
	if err != nil {
		return err
	}
	s.metrics.forget(feedID)
	return nil
}

// needsReauth moves the feed to needs_reauth if it is still on connection
// gen and still holds token (the one Instagram refused): a reconnect, a
// disconnect or a refresh since then wins, and nothing changes.
func (s *Service) needsReauth(ctx context.Context, feedID string, gen int64, token, reason, by string) error {
	err := s.transition(ctx, change{
		feedID: feedID, to: model.StatusNeedsReauth, reason: reason, by: by,
		persist: func(ctx context.Context) (model.Feed, []string, error) {
			f, err := s.store.Feed(ctx, feedID)
			if err != nil {
				return model.Feed{}, nil, err
			}
			from, _, err := s.store.ChangeStatus(ctx, model.StatusChange{FeedID: feedID, Generation: gen,
				To: model.StatusNeedsReauth, Reason: reason, IfToken: s.ifToken(feedID, token)})
			if err != nil {
				return model.Feed{}, nil, err
			}
			f.Status = from
			return f, nil, nil
		},
	})
	if errors.Is(err, model.ErrConnectionChanged) || errors.Is(err, model.ErrTokenChanged) || errors.Is(err, model.ErrNotConnected) {
		s.log.Debug("refused token is no longer the feed's", feedAttr(feedID), slog.String("by", by))
		return nil
	}
	if err != nil {
		return fmt.Errorf("connection: mark needs reauth: %w", err)
	}
	return nil
}

// TokenRejected: Instagram refused token (190 or missing permission)
// during a poll of feedID on connection gen; reason is owner-facing. It
// moves the feed to needs_reauth through the one status-change function,
// unless the token or the connection changed meanwhile (then it does
// nothing and returns nil).
func (s *Service) TokenRejected(ctx context.Context, feedID string, gen int64, token, reason string) error {
	return s.needsReauth(ctx, feedID, gen, token, reason, byPoll)
}

// Disconnect removes the feed's token, account, posts and stored media;
// the feed stays, not_connected.
func (s *Service) Disconnect(ctx context.Context, feedID string) error {
	if !model.ValidFeedID(feedID) {
		return model.ErrNotFound
	}
	return s.disconnectFeed(ctx, feedID, byOwner)
}
