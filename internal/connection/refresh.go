package connection

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/retry"
)

const (
	// ExpiringSoon is when a token that could not be refreshed is announced as expiring.
	ExpiringSoon = 7 * 24 * time.Hour
	// expiryWarningEvery spaces the token_expiring reminders of one feed.
	expiryWarningEvery = 24 * time.Hour
	maxBackoff         = 6 * time.Hour
	baseBackoff        = 5 * time.Minute
)

const reauthReason = "Instagram no longer accepts the token (password changed, access removed or expired): reconnect"

// ErrReauth reports that a feed's token is dead and the owner must reconnect.
var ErrReauth = errors.New("connection: token invalid; the owner must reconnect")

type metrics struct {
	expiry   *prometheus.GaugeVec
	reauth   prometheus.Gauge
	refreshs *prometheus.CounterVec
	changes  *prometheus.CounterVec
	// storeFailures counts failed writes of tokens Instagram issued.
	storeFailures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "feedd_token_expiry_seconds", Help: "Seconds until each feed's Instagram token expires.",
		}, []string{"feed"}),
		reauth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "feedd_feeds_needing_reauth", Help: "Feeds whose owner must reconnect Instagram.",
		}),
		refreshs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedd_token_refreshes_total", Help: "Token refresh attempts by outcome.",
		}, []string{"outcome"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedd_status_changes_total", Help: "Changes of a feed's connection status, by the status changed to.",
		}, []string{"to"}),
		storeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "feedd_token_store_failures_total", Help: "Failed writes of new tokens to the store (each is kept in memory and retried).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.expiry, m.reauth, m.refreshs, m.changes, m.storeFailures} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("connection: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) setExpiry(feed string, left time.Duration) {
	m.expiry.WithLabelValues(feed).Set(left.Seconds())
}

func (m *metrics) forget(feed string) { m.expiry.DeleteLabelValues(feed) }

// Run checks tokens at once and then every CheckInterval until ctx ends.
// A check that fails or panics is logged and the loop goes on.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	s.checkLogged(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.checkLogged(ctx)
		}
	}
}

func (s *Service) checkLogged(ctx context.Context) {
	s.guard.Run("token_check", func() {
		if err := s.CheckTokens(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("token check failed", errAttr(err))
		}
	})
}

// CheckTokens runs one check: refreshes every due token, marks dead ones,
// and updates the gauges and expiry warnings.
func (s *Service) CheckTokens(ctx context.Context) error {
	now := s.now()
	due, err := s.store.TokensDue(ctx, now, s.window)
	if err != nil {
		return fmt.Errorf("connection: tokens due: %w", err)
	}
	checked := make(map[string]bool, len(due))
	for _, t := range due {
		id := t.FeedID
		// Spread refreshes so a restart after downtime does not burst the Graph API.
		if err := s.sleep(ctx, s.randDuration(s.jitter)); err != nil {
			return err
		}
		if err := s.RefreshToken(ctx, id); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.logCheckError("token refresh failed", id, err)
		}
		checked[id] = true
	}
	if err := s.refreshSources(ctx, now); err != nil {
		return fmt.Errorf("connection: source tokens: %w", err)
	}
	if err := s.probeIdle(ctx, checked, now); err != nil {
		return err
	}
	return s.updateGauges(ctx)
}

// probeIdle asks /me with each active token that nothing has proven alive
// since the last check (no refresh now, no good poll within the interval),
// so a token killed early (password change, app removed) flips the feed to
// needs_reauth within one check even when nobody views it. That is at most
// one call per idle feed per check interval, however many instances run.
func (s *Service) probeIdle(ctx context.Context, skip map[string]bool, now time.Time) error {
	feeds, err := s.store.Feeds(ctx)
	if err != nil {
		return fmt.Errorf("connection: feeds: %w", err)
	}
	for _, f := range feeds {
		if f.Status != model.StatusActive || f.Token == nil || skip[f.ID] {
			continue
		}
		if f.LastFetchOK && now.Sub(f.LastFetchAt) < s.interval {
			continue
		}
		// One probe per interval between all instances (a tenth off, so
		// one instance's next check is never refused by its own last).
		if ok, err := s.store.ClaimTokenTask(ctx, f.ID, model.TaskProbe, now, s.interval*9/10); err != nil || !ok {
			if err != nil {
				s.logCheckError("claiming the token probe", f.ID, err)
			}
			continue
		}
		tok, err := s.AccessToken(ctx, f.ID)
		if err != nil {
			s.logCheckError("token probe failed", f.ID, err)
			continue
		}
		acct := ""
		if f.Account != nil {
			acct = f.Account.IGUserID
		}
		_, err = s.graph.Me(ctx, acct, tok)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case graph.NeedsReauth(err):
			s.metrics.refreshs.WithLabelValues("probe_invalid").Inc()
			if err := s.needsReauth(ctx, f.ID, f.Generation, tok, reauthReason, byTokenCheck); err != nil {
				s.logCheckError("marking a dead token failed", f.ID, err)
			}
		default:
			s.log.Warn("token probe failed", feedAttr(f.ID), errAttr(err))
		}
	}
	return nil
}

// logCheckError logs an error of the token check about one feed, unless
// it only says that the feed changed meanwhile (deleted, disconnected,
// already needing reauth).
func (s *Service) logCheckError(msg, feedID string, err error) {
	if errors.Is(err, ErrReauth) || errors.Is(err, model.ErrNotFound) || errors.Is(err, model.ErrNotConnected) {
		return
	}
	s.log.Error(msg, feedAttr(feedID), errAttr(err))
}

// updateGauges sets the expiry gauges and sends token_expiring events.
func (s *Service) updateGauges(ctx context.Context) error {
	feeds, err := s.store.Feeds(ctx)
	if err != nil {
		return fmt.Errorf("connection: feeds: %w", err)
	}
	now := s.now()
	s.metrics.expiry.Reset()
	reauth := 0
	for _, f := range feeds {
		if f.Status == model.StatusNeedsReauth {
			reauth++
		}
		if f.Token == nil {
			continue
		}
		left := f.Token.ExpiresAt.Sub(now)
		s.metrics.setExpiry(f.ID, left)
		// Refreshable tokens are handled by the refresher; warn only when it keeps failing or cannot run.
		if left < ExpiringSoon && f.Status != model.StatusNeedsReauth && (f.Token.RefreshFailures > 0 || left <= 0) {
			s.warnExpiring(ctx, f, left)
		}
	}
	s.metrics.reauth.Set(float64(reauth))
	return nil
}

func (s *Service) refreshGauges(ctx context.Context) {
	if err := s.updateGauges(ctx); err != nil {
		s.log.Warn("updating token gauges", errAttr(err))
	}
}

// warnExpiring sends the token_expiring event, at most once a day per feed
// whatever the number of instances and restarts (the store keeps when the
// last one went).
func (s *Service) warnExpiring(ctx context.Context, f model.Feed, left time.Duration) {
	ok, err := s.store.ClaimTokenTask(ctx, f.ID, model.TaskExpiryWarning, s.now(), expiryWarningEvery)
	if err != nil {
		s.logCheckError("claiming the token_expiring reminder", f.ID, err)
		return
	}
	if !ok {
		return
	}
	s.log.Warn("token expiring and not refreshable", feedAttr(f.ID), slog.Duration("left", left.Round(time.Minute)),
		slog.String("last_error", f.Token.LastRefreshError))
	s.notify(Event{Event: EventTokenExpiring, FeedID: f.ID, FeedName: f.Name, ExpiresAt: f.Token.ExpiresAt,
		Message: "the token expires soon and could not be refreshed: " + f.Token.LastRefreshError})
}

// RefreshToken refreshes one feed's token if it is due. Concurrent calls for
// the same feed share one Graph call; the result is stored by
// compare-and-swap so a racing reconnect is never overwritten.
func (s *Service) RefreshToken(ctx context.Context, feedID string) error {
	_, err, _ := s.refreshing.Do(feedID, func() (any, error) {
		return nil, s.refreshOnce(context.WithoutCancel(ctx), feedID)
	})
	return err
}

func (s *Service) refreshOnce(ctx context.Context, feedID string) error {
	f, err := s.store.Feed(ctx, feedID)
	if err != nil {
		return err
	}
	if f.Status == model.StatusNeedsReauth {
		return ErrReauth
	}
	// A kept token (not stored yet) is the newest: refresh from it, and
	// swap against what the store holds.
	old, stored, err := s.usableToken(ctx, feedID)
	if err != nil {
		return err
	}
	now := s.now()
	// Re-check under the flight: a refresh that just finished made the token young again.
	if !s.isDue(old.TokenInfo, now) {
		return nil
	}
	if !old.ExpiryAssumed && !old.ExpiresAt.IsZero() && !now.Before(old.ExpiresAt) {
		s.metrics.refreshs.WithLabelValues("expired").Inc()
		return s.reauth(ctx, f, old.AccessToken, "the token expired before it could be refreshed")
	}
	acct := ""
	if f.Account != nil {
		acct = f.Account.IGUserID
	}
	gctx := ctx
	if s.claims != nil {
		if f.Token == nil {
			return model.ErrNotConnected
		}
		lctx, release, ok, err := s.claims.Refresh(ctx, feedID, *f.Token)
		if err != nil {
			return fmt.Errorf("connection: %w", err)
		}
		if !ok {
			return nil // another instance refreshes this token, or already did
		}
		defer release() // after the new token's write
		gctx = lctx
	}
	fresh, err := s.graph.Refresh(gctx, acct, old.AccessToken)
	now = s.now()
	switch {
	case err == nil:
		tok := model.Token{FeedID: feedID, AccessToken: fresh.AccessToken, TokenInfo: model.TokenInfo{ObtainedAt: now, ExpiresAt: fresh.ExpiresAt, RefreshedAt: now}}
		if tok.ExpiresAt.IsZero() {
			tok.ExpiresAt, tok.ExpiryAssumed = now.Add(AssumedLifetime), true
		}
		s.metrics.refreshs.WithLabelValues("ok").Inc()
		write := func(ctx context.Context) error { return s.storeRefreshed(ctx, stored, tok) }
		if err := write(ctx); err != nil {
			if moot(err) {
				return nil // reconnected meanwhile: the newer token wins
			}
			s.keep(feedID, &pending{tok: tok, sameAccount: true, write: write}, err)
		}
		return nil
	case errors.Is(err, graph.ErrTokenTooYoung):
		s.metrics.refreshs.WithLabelValues("too_young").Inc()
		next := old.ObtainedAt.Add(MinTokenAge + time.Minute)
		if !next.After(now) {
			next = now.Add(MinTokenAge)
		}
		return s.recordFailure(ctx, feedID, "Instagram says the token is less than 24 hours old; trying again later", next)
	case graph.NeedsReauth(err):
		s.metrics.refreshs.WithLabelValues("invalid").Inc()
		return s.reauth(ctx, f, old.AccessToken, reauthReason)
	default:
		s.metrics.refreshs.WithLabelValues("failed").Inc()
		d := backoff(old.RefreshFailures + 1)
		if ra := graph.RetryAfter(err); ra > d {
			d = ra
		}
		msg := ownerMessage(err)
		s.log.Warn("token refresh failed", feedAttr(feedID), slog.Int("failures", old.RefreshFailures+1),
			slog.Duration("retry_in", d), errAttr(err))
		return s.recordFailure(ctx, feedID, msg, now.Add(d))
	}
}

// RefreshClaims decides which of several instances sharing the database
// refreshes a token; *cluster.Claims implements it.
type RefreshClaims interface {
	// Refresh claims the refresh of feedID's token as read (t). ok is
	// false when another instance holds it or the token changed since.
	// The context ends if the claim is lost; release ends the claim.
	Refresh(ctx context.Context, feedID string, t model.TokenInfo) (_ context.Context, release func(), ok bool, err error)
}

// storeRefreshed swaps in a refreshed token if the store still holds
// stored (a compare-and-swap: a reconnect meanwhile wins).
func (s *Service) storeRefreshed(ctx context.Context, stored string, tok model.Token) error {
	if err := s.store.ReplaceToken(ctx, tok.FeedID, stored, tok); err != nil {
		return err
	}
	s.metrics.setExpiry(tok.FeedID, tok.ExpiresAt.Sub(s.now()))
	s.invalidate(tok.FeedID)
	s.log.Info("token refreshed", feedAttr(tok.FeedID), slog.Time("expires_at", tok.ExpiresAt))
	return nil
}

// reauth moves a feed whose refresh found its token dead to needs_reauth
// and reports ErrReauth.
func (s *Service) reauth(ctx context.Context, f model.Feed, failed, reason string) error {
	if err := s.needsReauth(ctx, f.ID, f.Generation, failed, reason, byRefresh); err != nil {
		return err
	}
	return ErrReauth
}

func (s *Service) recordFailure(ctx context.Context, feedID, msg string, next time.Time) error {
	if err := s.store.RecordRefreshFailure(ctx, feedID, msg, next); err != nil {
		return fmt.Errorf("connection: record refresh failure: %w", err)
	}
	return nil
}

// isDue applies Instagram's rules: at least 24 hours old, and inside the
// refresh window or past a scheduled retry.
func (s *Service) isDue(t model.TokenInfo, now time.Time) bool {
	if !t.NextRefreshAt.IsZero() && !now.Before(t.NextRefreshAt) {
		return true
	}
	return now.Sub(t.ObtainedAt) >= MinTokenAge && t.ExpiresAt.Sub(now) < s.window
}

// backoff is the wait before refresh retry number n (1-based).
func backoff(n int) time.Duration { return retry.Backoff(baseBackoff, maxBackoff, n) }

// ownerMessage says what failed without internals or secrets.
func ownerMessage(err error) string {
	switch {
	case errors.Is(err, graph.ErrThrottled):
		return "Instagram's rate limit holds; will retry"
	case errors.Is(err, graph.ErrUnreachable), errors.Is(err, graph.ErrTransient):
		return "Instagram could not be reached; will retry"
	case errors.Is(err, graph.ErrPermission):
		return "a permission is missing; reconnect"
	default:
		return "Instagram refused the refresh; will retry"
	}
}

func (s *Service) randDuration(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	var b [8]byte
	if _, err := io.ReadFull(s.rand, b[:]); err != nil {
		return 0
	}
	return time.Duration(binary.LittleEndian.Uint64(b[:]) % uint64(max))
}

func feedAttr(id string) slog.Attr      { return slog.String("feed", id) }
func intAttr(k string, v int) slog.Attr { return slog.Int(k, v) }
func errAttr(err error) slog.Attr       { return slog.Any("error", err) }
