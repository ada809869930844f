package connection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/web"
)

// SourceStore is what the service needs from the database for a feed's
// further Instagram accounts; *store.Store implements it.
type SourceStore interface {
	Sources(ctx context.Context, feedID string) ([]model.Source, error)
	AddSource(ctx context.Context, feedID string, gen int64, newID string, acct model.Account, tok model.Token) (model.Source, error)
	RemoveSource(ctx context.Context, feedID, sourceID string) ([]string, error)
	ChangeSourceStatus(ctx context.Context, c model.SourceChange) (from model.Status, changed bool, err error)
	SourceToken(ctx context.Context, feedID, sourceID string) (model.Token, error)
	ReplaceSourceToken(ctx context.Context, feedID, sourceID, oldAccessToken string, nt model.Token) error
	RecordSourceRefreshFailure(ctx context.Context, feedID, sourceID, errText string, nextAt time.Time) error
	SourceTokensDue(ctx context.Context, now time.Time, window time.Duration) ([]model.Token, error)
	SourcesForInstagramUser(ctx context.Context, userID string) ([]model.Source, error)
}

// SourceRefreshClaims decides which of several instances refreshes a
// further source's token; *cluster.Claims implements it.
type SourceRefreshClaims interface {
	RefreshSource(ctx context.Context, feedID, sourceID string, t model.TokenInfo) (_ context.Context, release func(), ok bool, err error)
}

// errNoSources: the configured store keeps no further sources.
var errNoSources = errors.New("connection: the store keeps no further sources")

func (s *Service) sourceStore() (SourceStore, error) {
	ss, ok := s.store.(SourceStore)
	if !ok {
		return nil, errNoSources
	}
	return ss, nil
}

// findSource returns the feed's source with id, or of the Instagram
// account igUserID when id is "".
func findSource(srcs []model.Source, id, igUserID string) (model.Source, bool) {
	for _, src := range srcs {
		if (id != "" && src.ID == id) || (id == "" && src.Account.IGUserID == igUserID) {
			return src, true
		}
	}
	return model.Source{}, false
}

// addSource stores a further account of the feed, or reconnects the
// source of that account, through the one status-change function. gen is
// the feed's connection the caller read.
func (s *Service) addSource(ctx context.Context, feedID string, gen int64, acct model.Account, tok model.Token, by string) (model.Source, error) {
	ss, err := s.sourceStore()
	if err != nil {
		return model.Source{}, err
	}
	srcs, err := ss.Sources(ctx, feedID)
	if err != nil {
		return model.Source{}, err
	}
	id, from := model.NewSourceID(), model.StatusNotConnected
	if prev, ok := findSource(srcs, "", acct.IGUserID); ok && prev.ID != model.MainSource {
		id, from = prev.ID, prev.Status
	}
	tok.FeedID, tok.SourceID = feedID, id
	var added model.Source
	err = s.transition(ctx, change{
		feedID: feedID, to: model.StatusActive, by: by, username: acct.Username, expiresAt: tok.ExpiresAt, source: id,
		persist: func(ctx context.Context) (model.Feed, []string, error) {
			f, err := s.store.Feed(ctx, feedID)
			if err != nil {
				return model.Feed{}, nil, err
			}
			if added, err = ss.AddSource(ctx, feedID, gen, id, acct, tok); err != nil {
				return model.Feed{}, nil, err
			}
			f.Status = from
			return f, nil, nil
		},
	})
	if err != nil {
		return model.Source{}, err
	}
	s.fetchSoon(feedID)
	return added, nil
}

// PasteSourceToken adds a further account to a connected feed with a token
// made elsewhere. Unlike PasteToken it does not refresh the token at once:
// the pasted string stays the owner's until feedd's store holds it, and the
// token check refreshes it (learning its expiry) on its next round.
func (s *Service) PasteSourceToken(ctx context.Context, feedID, token string) (model.Source, error) {
	if !model.ValidFeedID(feedID) {
		return model.Source{}, model.ErrNotFound
	}
	token = strings.TrimSpace(token)
	if err := validTokenString(token); err != nil {
		return model.Source{}, err
	}
	f, err := s.store.Feed(ctx, feedID)
	if err != nil {
		return model.Source{}, err
	}
	if f.Account == nil {
		return model.Source{}, web.BadRequest("invalid_source", "source: the feed is not connected yet; connect its first account")
	}
	prof, err := s.graph.Me(ctx, "", token)
	if err != nil {
		return model.Source{}, pasteGraphErr(err)
	}
	if fe := professionalOnly(prof, feedID); fe != nil {
		return model.Source{}, web.BadRequest("personal_account", "access_token: %s %s", fe.Title, fe.Action)
	}
	now := s.now()
	tok := model.Token{AccessToken: token, TokenInfo: model.TokenInfo{ObtainedAt: now,
		ExpiresAt: now.Add(AssumedLifetime), ExpiryAssumed: true, NextRefreshAt: now.Add(MinTokenAge + time.Minute)}}
	src, err := s.addSource(ctx, feedID, f.Generation, accountOf(prof, "", now), tok, byOwner)
	return src, sourceAPIErr(err)
}

// sourceAPIErr maps the store's refusals of a source to the admin API's
// answers, naming the field.
func sourceAPIErr(err error) error {
	switch {
	case errors.Is(err, model.ErrSourceDuplicate):
		return &web.Error{Status: http.StatusBadRequest, Code: "invalid_source", Err: err,
			Message: "access_token: this Instagram account is already a source of the feed"}
	case errors.Is(err, model.ErrSourceNotFound):
		return &web.Error{Status: http.StatusBadRequest, Code: "invalid_source", Err: err,
			Message: "source: the feed has no source with this id"}
	case errors.Is(err, model.ErrMainSource):
		return &web.Error{Status: http.StatusBadRequest, Code: "invalid_source", Err: err,
			Message: "source: the feed's first account is removed by disconnecting the feed"}
	case errors.Is(err, model.ErrNotConnected):
		return &web.Error{Status: http.StatusBadRequest, Code: "invalid_source", Err: err,
			Message: "source: the feed is not connected yet; connect its first account"}
	case errors.Is(err, model.ErrConnectionChanged):
		return &web.Error{Status: http.StatusConflict, Code: "feed_changed", Err: err,
			Message: "the feed was connected or disconnected meanwhile; nothing was changed"}
	case errors.Is(err, model.ErrTooManySources):
		return &web.Error{Status: http.StatusBadRequest, Code: "invalid_source", Err: err,
			Message: fmt.Sprintf("source: a feed has at most %d accounts", model.MaxSources)}
	}
	return err
}

// sourceFlowErr is the connect page's answer to a refused source.
func sourceFlowErr(feedID string, err error) error {
	switch {
	case errors.Is(err, model.ErrTooManySources):
		return &FlowError{Status: http.StatusBadRequest, Code: "invalid_source", FeedID: feedID, Err: err,
			Title:  "The feed has as many Instagram accounts as it can hold.",
			Action: "Remove an account from the feed's page before adding another."}
	case errors.Is(err, model.ErrSourceDuplicate):
		return &FlowError{Status: http.StatusBadRequest, Code: "invalid_source", FeedID: feedID, Err: err,
			Title:  "This Instagram account is already in the feed.",
			Action: "To add another account, sign out of this one on Instagram (or use the login screen) and press Add another account again."}
	case errors.Is(err, model.ErrNotConnected), errors.Is(err, model.ErrConnectionChanged):
		return &FlowError{Status: http.StatusConflict, Code: "feed_changed", FeedID: feedID, Err: err,
			Title:  "The feed was connected or disconnected while you signed in; this sign-in changed nothing.",
			Action: "Open the feed's page to see its state, and add the account again if needed."}
	case errors.Is(err, model.ErrNotFound):
		return flowErr(http.StatusNotFound, "feed_gone", "The feed this sign-in was for has been deleted.", "Create a feed on the setup page and connect it.")
	}
	return &FlowError{Status: http.StatusInternalServerError, Code: "store_failed", FeedID: feedID, Err: err,
		Title:  "Instagram approved the account, but feedd could not save it.",
		Action: "Check the server's disk and logs, then press Add another account again."}
}

// sourceRefused reports an error of addSource that retrying cannot change:
// the feed or its connection is gone, or the store refused the account.
func sourceRefused(err error) bool {
	return moot(err) || errors.Is(err, model.ErrSourceDuplicate) || errors.Is(err, model.ErrTooManySources) ||
		errors.Is(err, model.ErrSourceNotFound) || errors.Is(err, errNoSources)
}

// keepSource keeps a token issued for an added account whose store write
// failed with cause, and retries adding the account on the connection it
// was made for; a refusal (the account added meanwhile, the feed
// reconnected or deleted) ends the retries.
func (s *Service) keepSource(prev model.Feed, acct model.Account, tok model.Token, by string, cause error) {
	s.keep(prev.ID+"/"+acct.IGUserID, &pending{
		tok: tok,
		write: func(ctx context.Context) error {
			_, err := s.addSource(ctx, prev.ID, prev.Generation, acct, tok, by)
			return err
		},
		refused: sourceRefused,
	}, cause)
}

// RemoveSource removes a further account from the feed with its token,
// posts and the images only they used, through the one status-change
// function; the feed's other accounts stay.
func (s *Service) RemoveSource(ctx context.Context, feedID, sourceID string) error {
	if !model.ValidFeedID(feedID) {
		return model.ErrNotFound
	}
	return sourceAPIErr(s.removeSource(ctx, feedID, sourceID, byOwner))
}

func (s *Service) removeSource(ctx context.Context, feedID, sourceID, by string) error {
	ss, err := s.sourceStore()
	if err != nil {
		return err
	}
	// The event names the account; persist checks again in its write.
	var username string
	if srcs, err := ss.Sources(ctx, feedID); err == nil {
		if src, ok := findSource(srcs, sourceID, ""); ok {
			username = src.Account.Username
		}
	}
	return s.transition(ctx, change{
		feedID: feedID, to: model.StatusNotConnected, by: by, source: sourceID, username: username,
		persist: func(ctx context.Context) (model.Feed, []string, error) {
			f, err := s.store.Feed(ctx, feedID)
			if err != nil {
				return model.Feed{}, nil, err
			}
			srcs, err := ss.Sources(ctx, feedID)
			if err != nil {
				return model.Feed{}, nil, err
			}
			src, ok := findSource(srcs, sourceID, "")
			if sourceID == model.MainSource {
				return model.Feed{}, nil, model.ErrMainSource
			}
			if !ok {
				return model.Feed{}, nil, model.ErrSourceNotFound
			}
			files, err := ss.RemoveSource(ctx, feedID, sourceID)
			if err != nil {
				return model.Feed{}, nil, err
			}
			f.Status = src.Status
			return f, files, nil
		},
	})
}

// SourceAccessToken returns the current access token of one of the feed's
// sources (the main one's is AccessToken's).
func (s *Service) SourceAccessToken(ctx context.Context, feedID, sourceID string) (string, error) {
	if sourceID == model.MainSource || sourceID == "" {
		return s.AccessToken(ctx, feedID)
	}
	ss, err := s.sourceStore()
	if err != nil {
		return "", err
	}
	t, err := ss.SourceToken(ctx, feedID, sourceID)
	if err != nil {
		return "", err
	}
	return t.AccessToken, nil
}

// SourceTokenRejected: Instagram refused token during a poll of a further
// source on the feed's connection feedGen and the source's srcGen. The
// source moves to needs_reauth through the one status-change function
// (logged, counted and notified once, naming the account) and the feed's
// other accounts go on being polled; a token or connection that changed
// meanwhile changes nothing.
func (s *Service) SourceTokenRejected(ctx context.Context, feedID, sourceID string, feedGen, srcGen int64, token, reason string) error {
	return s.sourceNeedsReauth(ctx, feedID, sourceID, feedGen, srcGen, token, reason, byPoll)
}

func (s *Service) sourceNeedsReauth(ctx context.Context, feedID, sourceID string, feedGen, srcGen int64, token, reason, by string) error {
	if sourceID == model.MainSource {
		return s.needsReauth(ctx, feedID, feedGen, token, reason, by)
	}
	ss, err := s.sourceStore()
	if err != nil {
		return err
	}
	var username string
	if srcs, err := ss.Sources(ctx, feedID); err == nil {
		if src, ok := findSource(srcs, sourceID, ""); ok {
			username = src.Account.Username
		}
	}
	err = s.transition(ctx, change{
		feedID: feedID, to: model.StatusNeedsReauth, reason: sourceReason(username, reason), by: by, source: sourceID,
		username: username,
		persist: func(ctx context.Context) (model.Feed, []string, error) {
			f, err := s.store.Feed(ctx, feedID)
			if err != nil {
				return model.Feed{}, nil, err
			}
			from, _, err := ss.ChangeSourceStatus(ctx, model.SourceChange{FeedID: feedID, SourceID: sourceID,
				FeedGeneration: feedGen, Generation: srcGen, To: model.StatusNeedsReauth, Reason: reason, IfToken: token})
			if err != nil {
				return model.Feed{}, nil, err
			}
			f.Status = from
			return f, nil, nil
		},
	})
	if moot(err) || errors.Is(err, model.ErrSourceNotFound) {
		s.log.Debug("refused token is no longer the source's", feedAttr(feedID), slog.String("source", sourceID), slog.String("by", by))
		return nil
	}
	return err
}

// sourceReason is an owner-facing reason that names the account.
func sourceReason(username, reason string) string {
	if username == "" {
		return reason
	}
	return "@" + username + ": " + reason
}

func sourceStatusMessage(to model.Status) string {
	switch to {
	case model.StatusActive:
		return "source connected"
	case model.StatusNotConnected:
		return "source removed"
	case model.StatusNeedsReauth:
		return "source needs reauth"
	}
	return "source has a problem"
}

func sourceEventMessage(c change) string {
	who := "an account of the feed"
	if c.username != "" {
		who = "@" + c.username
	}
	switch c.to {
	case model.StatusActive:
		return who + " is connected to the feed"
	case model.StatusNotConnected:
		switch c.by {
		case byMetaDeauthorize:
			return who + " removed feedd's access on Instagram: its token, posts and images are deleted from the feed"
		case byMetaDelete:
			return "Instagram asked feedd to delete " + who + "'s data: its token, posts and images are deleted from the feed"
		}
		return who + " was removed from the feed: its token, posts and images are deleted"
	}
	return c.reason
}

// refreshSources refreshes the further sources' due tokens: the rule of
// the main tokens, each under its account's rate budget. A dead token
// moves its source (not the feed) to needs_reauth.
func (s *Service) refreshSources(ctx context.Context, now time.Time) error {
	ss, err := s.sourceStore()
	if err != nil {
		return nil // nothing to refresh
	}
	due, err := ss.SourceTokensDue(ctx, now, s.window)
	if err != nil {
		return err
	}
	for _, t := range due {
		if err := s.sleep(ctx, s.randDuration(s.jitter)); err != nil {
			return err
		}
		if err := s.refreshSource(ctx, ss, t); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.log.Warn("source token refresh failed", feedAttr(t.FeedID), slog.String("source", t.SourceID), errAttr(err))
		}
	}
	return nil
}

func (s *Service) refreshSource(ctx context.Context, ss SourceStore, old model.Token) error {
	f, err := s.store.Feed(ctx, old.FeedID)
	if err != nil {
		return err
	}
	srcs, err := ss.Sources(ctx, old.FeedID)
	if err != nil {
		return err
	}
	src, ok := findSource(srcs, old.SourceID, "")
	if !ok {
		return nil // removed meanwhile
	}
	now := s.now()
	if !old.ExpiryAssumed && !now.Before(old.ExpiresAt) {
		s.metrics.refreshs.WithLabelValues("expired").Inc()
		return s.sourceNeedsReauth(ctx, f.ID, src.ID, f.Generation, src.Generation, old.AccessToken,
			"the token expired before it could be refreshed", byRefresh)
	}
	gctx := ctx
	if s.claims != nil {
		sc, ok := s.claims.(SourceRefreshClaims)
		if !ok {
			return errors.New("connection: the claims cannot claim a source's refresh")
		}
		lctx, release, ok, err := sc.RefreshSource(ctx, f.ID, src.ID, old.TokenInfo)
		if err != nil {
			return fmt.Errorf("connection: %w", err)
		}
		if !ok {
			return nil // another instance refreshes this token, or already did
		}
		defer release() // after the new token's write
		gctx = lctx
	}
	fresh, err := s.graph.Refresh(gctx, src.Account.IGUserID, old.AccessToken)
	now = s.now()
	switch {
	case err == nil:
		tok := model.Token{FeedID: f.ID, SourceID: src.ID, AccessToken: fresh.AccessToken,
			TokenInfo: model.TokenInfo{ObtainedAt: now, ExpiresAt: fresh.ExpiresAt, RefreshedAt: now}}
		if tok.ExpiresAt.IsZero() {
			tok.ExpiresAt, tok.ExpiryAssumed = now.Add(AssumedLifetime), true
		}
		s.metrics.refreshs.WithLabelValues("ok").Inc()
		if err := ss.ReplaceSourceToken(ctx, f.ID, src.ID, old.AccessToken, tok); err != nil && !moot(err) {
			return err
		}
		s.invalidate(f.ID)
		s.log.Info("source token refreshed", feedAttr(f.ID), slog.String("source", src.ID), slog.Time("expires_at", tok.ExpiresAt))
		return nil
	case errors.Is(err, graph.ErrTokenTooYoung):
		s.metrics.refreshs.WithLabelValues("too_young").Inc()
		next := old.ObtainedAt.Add(MinTokenAge + time.Minute)
		if !next.After(now) {
			next = now.Add(MinTokenAge)
		}
		return ss.RecordSourceRefreshFailure(ctx, f.ID, src.ID, "Instagram says the token is less than 24 hours old; trying again later", next)
	case graph.NeedsReauth(err):
		s.metrics.refreshs.WithLabelValues("invalid").Inc()
		return s.sourceNeedsReauth(ctx, f.ID, src.ID, f.Generation, src.Generation, old.AccessToken, reauthReason, byRefresh)
	default:
		s.metrics.refreshs.WithLabelValues("failed").Inc()
		d := backoff(old.RefreshFailures + 1)
		if ra := graph.RetryAfter(err); ra > d {
			d = ra
		}
		return ss.RecordSourceRefreshFailure(ctx, f.ID, src.ID, ownerMessage(err), now.Add(d))
	}
}
