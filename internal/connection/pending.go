package connection

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/retry"
)

// pending is a token Instagram issued that the store has not taken yet.
// Instagram may already have retired the token it replaces, so it is kept
// in memory, used, and its write retried until it lands or a newer
// connection makes it moot.
type pending struct {
	tok model.Token
	// sameAccount: the token is for the account the feed is connected to,
	// so AccessToken hands it out (a refresh, or a reconnect of the same
	// account); a pending connect to another account is not a connection yet.
	sameAccount bool
	// write stores tok: a compare-and-swap on the stored token (refresh)
	// or on the connection generation (connect).
	write func(ctx context.Context) error
	// refused reports a write error that ends the retries; nil: moot.
	refused func(error) bool
}

// Waits between attempts to store a kept token.
const (
	storeRetryBase = time.Second
	storeRetryMax  = time.Minute
)

func storeRetryWait(attempt int) time.Duration {
	return retry.Backoff(storeRetryBase, storeRetryMax, attempt)
}

// moot reports a write error that means a newer connection or token won:
// the kept token must not be written any more.
func moot(err error) bool {
	return errors.Is(err, model.ErrTokenChanged) || errors.Is(err, model.ErrConnectionChanged) ||
		errors.Is(err, model.ErrNotFound) || errors.Is(err, model.ErrNotConnected)
}

// keep holds p for the feed after its first write failed with cause, and
// retries the write in the background.
func (s *Service) keep(feedID string, p *pending, cause error) {
	s.metrics.storeFailures.Inc()
	s.log.Error("storing a new token failed; keeping it in memory and retrying", feedAttr(feedID), errAttr(cause))
	s.mu.Lock()
	s.pending[feedID] = p
	s.mu.Unlock()
	s.goBG("token_write", func() { s.retryWrite(feedID, p) })
}

func (s *Service) retryWrite(feedID string, p *pending) {
	for attempt := 1; ; attempt++ {
		if err := s.sleep(s.bg, storeRetryWait(attempt)); err != nil {
			if s.isPending(feedID, p) {
				s.log.Error("stopping with a new token not stored; the feed may need reconnecting", feedAttr(feedID))
			}
			return
		}
		if !s.isPending(feedID, p) {
			return // a connect or disconnect through this service superseded it
		}
		err := p.write(s.bg)
		switch {
		case err == nil:
			s.dropPendingIf(feedID, p)
			s.log.Info("new token stored after retrying", feedAttr(feedID), slog.Int("attempts", attempt+1))
			return
		case p.refused == nil && moot(err), p.refused != nil && p.refused(err):
			s.dropPendingIf(feedID, p)
			s.log.Info("kept token not stored: the feed's connection changed meanwhile", feedAttr(feedID), errAttr(err))
			return
		}
		s.metrics.storeFailures.Inc()
		s.log.Error("storing a new token failed again", feedAttr(feedID), slog.Int("attempts", attempt+1), errAttr(err))
	}
}

func (s *Service) pendingFor(feedID string) *pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending[feedID]
}

func (s *Service) isPending(feedID string, p *pending) bool { return s.pendingFor(feedID) == p }

// dropPending forgets the feed's kept token (its connection was replaced).
func (s *Service) dropPending(feedID string) {
	s.mu.Lock()
	delete(s.pending, feedID)
	s.mu.Unlock()
}

func (s *Service) dropPendingIf(feedID string, p *pending) {
	s.mu.Lock()
	if s.pending[feedID] == p {
		delete(s.pending, feedID)
	}
	s.mu.Unlock()
}

// usableToken is the feed's newest token for its current account: a kept
// one, or the stored one. stored is the token the store holds (what a
// compare-and-swap must name).
func (s *Service) usableToken(ctx context.Context, feedID string) (tok model.Token, stored string, err error) {
	cur, err := s.store.Token(ctx, feedID)
	if err != nil {
		return model.Token{}, "", err
	}
	if p := s.pendingFor(feedID); p != nil && p.sameAccount {
		return p.tok, cur.AccessToken, nil
	}
	return cur, cur.AccessToken, nil
}

// AccessToken returns the feed's current access token (model.ErrNotConnected
// when it has none); a token Instagram issued whose write to the store is
// still being retried is returned from memory.
func (s *Service) AccessToken(ctx context.Context, feedID string) (string, error) {
	if p := s.pendingFor(feedID); p != nil && p.sameAccount {
		return p.tok.AccessToken, nil
	}
	t, err := s.store.Token(ctx, feedID)
	if err != nil {
		return "", err
	}
	return t.AccessToken, nil
}

// ifToken is the stored token a status change for a refusal of token must
// name: a kept token is newer than the stored one, so its refusal applies
// to the connection whatever the store holds.
func (s *Service) ifToken(feedID, token string) string {
	if p := s.pendingFor(feedID); p != nil && p.tok.AccessToken == token {
		return ""
	}
	return token
}
