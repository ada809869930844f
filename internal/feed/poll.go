package feed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/retry"
)

// Backoff for transient failures: base doubling per consecutive failure,
// capped, with jitter (the client already retried quickly within the poll).
const (
	backoffBase = time.Minute
	backoffMax  = time.Hour
	// minThrottleWait applies when a throttle error carries no retry time.
	minThrottleWait = 5 * time.Minute
)

// Run polls due feeds until ctx is done: every PollEvery it asks the store
// for active feeds viewed within ViewedWindow whose next poll time has come
// and queues them (see pollRound). Polls run PollWorkers at a time, at most
// PollsPerAccount of one Instagram account, so that an account whose
// Instagram answers slowly or not at all never delays the others.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.PollEvery)
	defer t.Stop()
	for {
		// A panic in one round is logged and counted; the next round runs.
		s.guard.Run("feed_poller", func() { s.pollRound(ctx) })
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// pollQueue is the poller's state between rounds: the due feeds waiting
// for a poll, by account, and the polls running.
type pollQueue struct {
	mu      sync.Mutex
	ctx     context.Context     // of the Run that queued them
	waiting map[string][]string // account → feed ids, in due order
	accts   []string            // accounts with waiting feeds, taken in turn
	running map[string]int      // account → polls running
	total   int                 // polls running
	member  map[string]bool     // feed ids waiting or running
	// planned is when each late feed's poll may start (see pollRound).
	planned map[string]time.Time
}

// pollRound lists the due feeds and queues those not queued yet. When more
// feeds missed their poll time by over a quarter of the interval (and two
// rounds) than the workers can start at once (the server was stopped, the poller fell
// behind), each of them starts at a random moment within as long as it is
// late, at most half the interval: after a long stop the feeds are polled
// spread out as they came due, not all at once.
func (s *Service) pollRound(ctx context.Context) {
	now := s.now()
	feeds, err := s.store.DueFeeds(ctx, now, now.Add(-s.opts.ViewedWindow))
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("list due feeds", slog.Any("error", err))
		}
		return
	}
	q := &s.queue
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ctx = ctx
	// Late is beyond what the rounds themselves delay a poll by.
	lateAfter := max(s.opts.FetchInterval/4, 2*s.opts.PollEvery)
	late := func(f *model.Feed) bool {
		return f.NextFetchAt.IsZero() || now.Sub(f.NextFetchAt) > lateAfter
	}
	herd := len(q.planned) > 0
	if n := 0; !herd {
		for i := range feeds {
			if !q.member[feeds[i].ID] && late(&feeds[i]) {
				n++
			}
		}
		herd = n > s.opts.PollWorkers
	}
	due := make(map[string]bool, len(feeds))
	for i := range feeds {
		f := &feeds[i]
		due[f.ID] = true
		if q.member[f.ID] {
			continue
		}
		if herd && late(f) {
			at, ok := q.planned[f.ID]
			if !ok {
				window := s.opts.FetchInterval / 2
				if !f.NextFetchAt.IsZero() {
					window = min(now.Sub(f.NextFetchAt), window)
				}
				at = now.Add(time.Duration(s.opts.Jitter() * float64(window)))
				q.planned[f.ID] = at
			}
			if at.After(now) {
				continue
			}
		}
		delete(q.planned, f.ID)
		acct := f.ID
		if f.Account != nil {
			acct = f.Account.IGUserID
		}
		if len(q.waiting[acct]) == 0 {
			q.accts = append(q.accts, acct)
		}
		q.waiting[acct] = append(q.waiting[acct], f.ID)
		q.member[f.ID] = true
	}
	// Plans of feeds no longer due (polled on a view, disconnected) go.
	for id := range q.planned {
		if !due[id] {
			delete(q.planned, id)
		}
	}
	s.dispatchLocked()
}

// dispatchLocked starts waiting polls while workers are free, taking the
// accounts in turn and skipping those at their limit. q.mu is held.
func (s *Service) dispatchLocked() {
	q := &s.queue
	if q.ctx == nil || q.ctx.Err() != nil {
		return
	}
	for q.total < s.opts.PollWorkers {
		started := false
		for range len(q.accts) {
			acct := q.accts[0]
			q.accts = q.accts[1:]
			if q.running[acct] >= s.opts.PollsPerAccount {
				q.accts = append(q.accts, acct)
				continue
			}
			id := q.waiting[acct][0]
			if rest := q.waiting[acct][1:]; len(rest) > 0 {
				q.waiting[acct] = rest
				q.accts = append(q.accts, acct)
			} else {
				delete(q.waiting, acct)
			}
			q.running[acct]++
			q.total++
			s.polling.Add(1)
			ctx := q.ctx
			go s.pollQueued(ctx, acct, id)
			started = true
			break
		}
		if !started {
			return
		}
	}
}

// pollQueued polls one queued feed, then starts the next waiting polls.
func (s *Service) pollQueued(ctx context.Context, acct, id string) {
	defer s.polling.Done()
	s.guard.Run("feed_poller", func() {
		if err := s.fetchShared(ctx, id, false); err != nil && ctx.Err() == nil {
			s.log.Info("poll failed", slog.String("feed", id), slog.Any("error", err))
		}
	})
	q := &s.queue
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.member, id)
	if q.running[acct]--; q.running[acct] == 0 {
		delete(q.running, acct)
	}
	q.total--
	s.dispatchLocked()
}

// FetchNow fetches a feed now, media included, and waits for it: the
// owner's "refresh now". It joins a fetch already running for the feed. It
// ignores the backoff after transient failures but not a known rate-limit
// block: then the Graph client refuses at once and that failure is recorded.
// A failed fetch returns its error after recording it in the feed's last
// fetch; the last good snapshot keeps being served.
func (s *Service) FetchNow(ctx context.Context, id string) error {
	if !model.ValidFeedID(id) {
		return model.ErrNotFound
	}
	return s.fetchShared(ctx, id, true)
}

// fetchShared runs at most one fetch per feed at a time; callers arriving
// while one runs wait for it. The fetch itself is detached from any single
// caller (bounded by FetchTimeout and the service's lifetime). Unless force
// is set, a feed whose next poll time has not come is left alone: the
// poller's list and a visitor's read may be older than the poll that just
// ended.
func (s *Service) fetchShared(ctx context.Context, id string, force bool) error {
	// A forced caller that joined an unforced fetch which found nothing to
	// do starts its own.
	for range 2 {
		ch := s.fetches.DoChan(id, func() (any, error) {
			if !s.track() {
				return nil, errClosed
			}
			defer s.bg.Done()
			// A panic must not leave the flight: singleflight would
			// re-raise it where nothing can recover it.
			var err error
			if s.guard.Run("feed_poll", func() { err = s.fetchCurrent(id, force) }) {
				err = s.recordPanic(id)
			}
			return nil, err
		})
		var err error
		select {
		case r := <-ch:
			err = r.Err
		case <-ctx.Done():
			return ctx.Err()
		}
		if !errors.Is(err, errNotDue) {
			return err
		}
		if !force {
			return nil
		}
	}
	return nil
}

// errNotDue: an unforced fetch found the feed's next poll time in the future.
var errNotDue = errors.New("feed: not due")

// fetchCurrent polls the feed and, when its connection changed while the
// poll ran, once more: whoever joined the fetch wants the posts of the
// connection the feed has now.
func (s *Service) fetchCurrent(id string, force bool) error {
	err := s.fetchOnce(id, force)
	if errors.Is(err, model.ErrConnectionChanged) {
		s.log.Info("connection changed during a poll; polling again", slog.String("feed", id))
		err = s.fetchOnce(id, force)
	}
	return err
}

func (s *Service) fetchOnce(id string, force bool) error {
	ctx, cancel := context.WithTimeout(s.bgCtx, s.opts.FetchTimeout)
	defer cancel()
	return s.fetch(ctx, id, force)
}

// poll is one fetch of a feed: the feed as it was read when the fetch
// started (its Generation names the connection every write applies to) and
// the media keys the fetch stored.
type poll struct {
	f     model.Feed
	mu    sync.Mutex
	added []string
	local error // the first image that could not be stored on feedd's side
}

func (p *poll) stored(key string) {
	p.mu.Lock()
	p.added = append(p.added, key)
	p.mu.Unlock()
}

func (p *poll) localFailure(err error) {
	p.mu.Lock()
	if p.local == nil {
		p.local = err
	}
	p.mu.Unlock()
}

// fetch polls one feed: one Graph media call, downloads of images not yet
// stored, the whole-list replacement, orphan removal, cache invalidation.
// Writes apply only to the connection the feed had when the fetch read it:
// after a reconnect, a disconnect or a data deletion the fetch writes
// nothing, removes what it stored and returns model.ErrConnectionChanged.
// A failure after Instagram answered (an image feedd cannot store, a
// snapshot it cannot save, the time running out) is recorded like a failed
// Graph call, with backoff.
func (s *Service) fetch(ctx context.Context, id string, force bool) error {
	if s.graph == nil || s.media == nil || s.conns == nil {
		return errors.New("feed: polling is not configured")
	}
	f, err := s.store.Feed(ctx, id)
	if err != nil {
		return err
	}
	if f.Account == nil {
		return model.ErrNotConnected
	}
	srcs, err := s.store.Sources(ctx, id)
	if err != nil {
		return err
	}
	// The further accounts that can be polled; one that needs
	// reconnecting keeps its last posts.
	var further []model.Source
	for _, src := range srcs {
		if src.ID != model.MainSource && src.Status == model.StatusActive {
			further = append(further, src)
		}
	}
	mainActive := f.Status == model.StatusActive
	if !mainActive && len(further) == 0 {
		return model.ErrNotConnected
	}
	if !force && f.NextFetchAt.After(s.now()) {
		return errNotDue
	}
	// One claim covers every source of the feed: each slot's Graph calls
	// are made by one instance.
	ctx, release, err := s.claim(ctx, f, force)
	if errors.Is(err, errJoinedElsewhere) {
		return nil
	}
	if err != nil {
		return err
	}
	defer release() // after the poll's last write
	var mainErr error
	// The videos and reels of every account polled, for storeVideos.
	var videos []graph.Media
	if mainActive {
		var items []graph.Media
		items, mainErr = s.fetchMain(ctx, f)
		if s.connectionGone(mainErr) || errors.Is(ctx.Err(), context.Canceled) {
			return mainErr
		}
		videos = append(videos, items...)
	}
	polled := map[string]int64{}
	// A few rounds at most: an account reconnected again and again must
	// not hold the poll.
	for range 3 {
		for _, src := range further {
			polled[src.ID] = src.Generation
			items, err := s.fetchSource(ctx, f, src)
			if err != nil {
				if errors.Is(err, errFeedGone) {
					return model.ErrConnectionChanged
				}
				s.log.Info("poll of a source failed", slog.String("feed", id), slog.String("source", src.ID), slog.Any("error", err))
			}
			videos = append(videos, items...)
		}
		// An account added or reconnected while this poll ran is polled
		// now: whoever joined the poll (the add's first fetch) wants it.
		further = further[:0]
		srcs, err := s.store.Sources(ctx, id)
		if err != nil {
			break
		}
		for _, src := range srcs {
			if gen, ok := polled[src.ID]; src.ID != model.MainSource && src.Status == model.StatusActive && (!ok || gen != src.Generation) {
				further = append(further, src)
			}
		}
		if len(further) == 0 {
			break
		}
	}
	if !mainActive {
		// The main account needs reconnecting; the others' poll schedules
		// the next.
		now := s.now()
		wctx, cancel := s.writeContext()
		defer cancel()
		err := s.store.RecordFetch(wctx, id, f.Generation, model.FetchResult{At: now, OK: true, NextFetchAt: now.Add(s.jittered(s.opts.FetchInterval))})
		if s.connectionGone(err) {
			return err
		}
		if err != nil {
			s.log.Warn("record fetch", slog.String("feed", id), slog.Any("error", err))
		}
		s.metrics.polls("ok")
	}
	// Videos last, newest first whatever their account, while the poll's
	// signed URLs are fresh: the posts they belong to are saved already.
	slices.SortStableFunc(videos, func(a, b graph.Media) int { return b.Timestamp.Compare(a.Timestamp) })
	changed, err := s.storeVideos(ctx, f, videos)
	if changed || len(polled) > 0 {
		s.Invalidate(id)
	}
	if err != nil {
		return err
	}
	return mainErr
}

// fetchMain polls the feed's main account: one Graph media call, downloads
// of images not yet stored, the replacement of its posts, orphan removal,
// the poll's outcome and cache invalidation. It returns the items read, for
// their videos.
func (s *Service) fetchMain(ctx context.Context, f model.Feed) ([]graph.Media, error) {
	id := f.ID
	token, err := s.conns.AccessToken(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("feed: read token: %w", err)
	}
	items, err := s.graph.Media(ctx, f.Account.IGUserID, token, s.opts.KeepPosts)
	if err != nil {
		return nil, s.recordFailure(ctx, f, token, err)
	}
	profile := s.readProfile(ctx, f.ID, f.Generation, *f.Account, token)
	p := &poll{f: f}

	posts, sources := convert(items)
	var avatar []source
	if profile != nil && profile.ProfilePictureURL != "" {
		avatar = []source{{key: avatarKey(profile.ProfilePictureURL), url: profile.ProfilePictureURL}}
	}
	if f.FetchedAt.IsZero() && len(posts) > FirstPublish {
		// A feed's first poll publishes as soon as the covers of its first
		// page are stored, so a newly connected feed shows posts within a
		// second or two instead of after every image of 50 posts.
		early := append(coverSources(posts[:FirstPublish], sources), avatar...)
		stored, err := s.download(ctx, p, early)
		if err != nil {
			return nil, s.failAfterGraph(ctx, p, err)
		}
		if err := s.save(ctx, p, s.account(*f.Account, f.ID, profile, stored, false), posts, s.now()); err != nil {
			return nil, s.failAfterGraph(ctx, p, err)
		}
		s.Invalidate(id)
	}
	stored, err := s.download(ctx, p, append(sources, avatar...))
	if err != nil {
		return nil, s.failAfterGraph(ctx, p, err)
	}
	acctRec := s.account(*f.Account, f.ID, profile, stored, true)
	now := s.now()
	if err := s.save(ctx, p, acctRec, posts, now); err != nil {
		return nil, s.failAfterGraph(ctx, p, err)
	}
	next := now.Add(s.jittered(s.opts.FetchInterval))
	wctx, cancel := s.writeContext()
	defer cancel()
	if err := s.store.RecordFetch(wctx, id, f.Generation, model.FetchResult{At: now, OK: true, NextFetchAt: next}); err != nil {
		if s.connectionGone(err) {
			s.abandon(p)
			return nil, err
		}
		s.log.Warn("record fetch", slog.String("feed", id), slog.Any("error", err))
	}
	s.setAge(id, now)
	s.Invalidate(id)
	s.metrics.polls("ok")
	s.log.Debug("feed polled", slog.String("feed", id), slog.Int("posts", len(posts)))
	return items, nil
}

// errFeedGone: the feed's connection changed while one of its further
// sources was polled; the whole poll ends.
var errFeedGone = errors.New("feed: connection changed during a source's poll")

// fetchSource polls one further account of the feed under its own rate
// budget and replaces only that account's posts. Its failures are its own:
// the other accounts' posts stay served, the token's refusal moves this
// source (not the feed) to needs_reauth, and what a failed poll stored is
// dropped again. It returns the items read, for their videos.
func (s *Service) fetchSource(ctx context.Context, f model.Feed, src model.Source) ([]graph.Media, error) {
	token, err := s.conns.SourceAccessToken(ctx, f.ID, src.ID)
	if err != nil {
		return nil, fmt.Errorf("feed: read source token: %w", err)
	}
	items, err := s.graph.Media(ctx, src.Account.IGUserID, token, s.opts.KeepPosts)
	if err != nil {
		if graph.NeedsReauth(err) {
			reason := "Instagram no longer accepts the access token: reconnect the account."
			if errors.Is(err, graph.ErrPermission) {
				reason = "The access token lacks the instagram_business_basic permission: reconnect the account."
			}
			wctx, cancel := s.writeContext()
			defer cancel()
			if rerr := s.conns.SourceTokenRejected(wctx, f.ID, src.ID, f.Generation, src.Generation, token, reason); rerr != nil {
				s.log.Error("report rejected token", slog.String("feed", f.ID), slog.String("source", src.ID), slog.Any("error", rerr))
			}
			s.metrics.polls("needs_reauth")
		} else {
			s.metrics.polls("error")
		}
		return nil, err
	}
	key := f.ID + "/" + src.ID
	profile := s.readProfile(ctx, key, src.Generation, src.Account, token)
	p := &poll{f: f}
	posts, sources := convert(items)
	if profile != nil && profile.ProfilePictureURL != "" {
		sources = append(sources, source{key: avatarKey(profile.ProfilePictureURL), url: profile.ProfilePictureURL})
	}
	stored, err := s.download(ctx, p, sources)
	if err != nil {
		s.abandon(p)
		s.metrics.polls("error")
		return nil, err
	}
	wctx, cancel := s.writeContext()
	defer cancel()
	orphans, err := s.store.ReplaceSourcePosts(wctx, f.ID, src.ID, f.Generation, src.Generation,
		s.account(src.Account, key, profile, stored, true), posts, s.now())
	if err != nil {
		s.abandon(p)
		if s.connectionGone(err) {
			// Either the source was removed or reconnected (its own
			// affair) or the feed's connection changed (the whole poll's).
			if cur, ferr := s.store.Feed(wctx, f.ID); ferr != nil || cur.Generation != f.Generation {
				return nil, errFeedGone
			}
		}
		s.metrics.polls("error")
		return nil, err
	}
	s.removeOrphans(f.ID, orphans)
	s.metrics.polls("ok")
	return items, nil
}

// save replaces the snapshot on the poll's connection and deletes the
// files nothing names any more. When the connection is gone it undoes
// what the poll stored instead.
func (s *Service) save(ctx context.Context, p *poll, acct *model.Account, posts []model.Post, at time.Time) error {
	orphans, err := s.store.ReplacePosts(ctx, p.f.ID, p.f.Generation, acct, posts, at)
	if err != nil {
		if s.connectionGone(err) {
			s.abandon(p)
			return err
		}
		return fmt.Errorf("save the posts: %w", err)
	}
	s.removeOrphans(p.f.ID, orphans)
	return nil
}

// Claims decides which of several instances sharing the database polls a
// feed; *cluster.Claims implements it.
type Claims interface {
	// Poll claims the poll of feedID for slot, its next poll time as read
	// (any slot when force). ok is false when another instance holds the
	// poll or already polled that slot. The context ends if the claim is
	// lost; release ends the claim.
	Poll(ctx context.Context, feedID string, slot time.Time, force bool) (_ context.Context, release func(), ok bool, err error)
}

// errPolledElsewhere: another instance polls the feed or polled this slot.
var errPolledElsewhere = fmt.Errorf("%w: another instance polls it", errNotDue)

// errJoinedElsewhere: a forced fetch waited for another instance's poll of
// the feed, which is the fetch its caller asked for.
var errJoinedElsewhere = errors.New("feed: polled by another instance")

// claimRetry is how often a forced fetch asks again for a poll that
// another instance holds.
const claimRetry = 200 * time.Millisecond

// claim makes this instance the one that polls f for its slot, so that of
// several instances exactly one polls each slot (without Claims, one
// instance, it always is). A forced fetch (the owner's "fetch now", the
// first poll after a connect) waits for another instance's poll of the
// feed and joins it: once that poll ended, errJoinedElsewhere.
func (s *Service) claim(ctx context.Context, f model.Feed, force bool) (context.Context, func(), error) {
	if s.opts.Claims == nil {
		return ctx, func() {}, nil
	}
	var t *time.Ticker
	for {
		cctx, release, ok, err := s.opts.Claims.Poll(ctx, f.ID, f.NextFetchAt, force)
		if err != nil {
			return nil, nil, fmt.Errorf("feed: %w", err)
		}
		if ok && t != nil {
			t.Stop()
			if cur, err := s.store.Feed(ctx, f.ID); err == nil && !cur.LastFetchAt.Equal(f.LastFetchAt) {
				release()
				return nil, nil, errJoinedElsewhere
			}
		}
		if ok {
			return cctx, release, nil
		}
		if !force {
			return nil, nil, errPolledElsewhere
		}
		if t == nil {
			t = time.NewTicker(claimRetry)
			defer t.Stop()
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-t.C:
		}
	}
}

// connectionGone reports a write refused because the feed was reconnected,
// disconnected, had its data deleted or was deleted since the poll read it.
func (s *Service) connectionGone(err error) bool {
	return errors.Is(err, model.ErrConnectionChanged) || errors.Is(err, model.ErrNotFound)
}

// abandon removes what a poll stored for a connection that is gone: the
// media rows it added that no feed references, with their files. The
// store already dropped the rows the old connection's snapshot named.
func (s *Service) abandon(p *poll) {
	ctx, cancel := s.writeContext()
	defer cancel()
	p.mu.Lock()
	keys := slices.Clone(p.added)
	p.mu.Unlock()
	files, err := s.store.DropUnreferenced(ctx, keys)
	if err != nil {
		s.log.Warn("drop media of a changed connection", slog.String("feed", p.f.ID), slog.Any("error", err))
	}
	s.removeOrphans(p.f.ID, files)
	s.Invalidate(p.f.ID)
}

// writeTimeout bounds a write made after a poll's own context ended.
const writeTimeout = 10 * time.Second

// writeContext is for the writes that conclude a poll (its outcome, undoing
// its downloads): they must happen even when the poll's own context is what
// ended it.
func (s *Service) writeContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(s.bgCtx), writeTimeout)
}

// failAfterGraph records a poll that failed after Instagram answered, with
// backoff, so that neither the scheduler nor visitors start it again at
// once; the last good snapshot keeps being served, stale. A write refused
// because the connection is gone is returned as it is.
func (s *Service) failAfterGraph(ctx context.Context, p *poll, err error) error {
	if s.connectionGone(err) {
		return err
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return err // shutting down
	}
	msg := "could not store what Instagram sent: " + err.Error()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		msg = "the poll took longer than " + s.opts.FetchTimeout.String() + " and was stopped"
	}
	now := s.now()
	res := model.FetchResult{At: now, Err: truncate(msg), Failures: p.f.FetchFailures + 1}
	res.NextFetchAt = now.Add(s.backoff(res.Failures))
	if rerr := s.recordFailed(p.f, res, "error"); rerr != nil {
		if s.connectionGone(rerr) {
			s.abandon(p)
		}
		return rerr
	}
	return fmt.Errorf("feed: poll %s: %w", p.f.ID, err)
}

// errPollPanicked is returned to the callers of a poll that panicked.
var errPollPanicked = errors.New("feed: internal error during the poll")

// recordPanic records a poll that panicked (the guard logged it with its
// stack and counted it) as a failed poll with backoff, so that it is not
// started again at once.
func (s *Service) recordPanic(id string) error {
	ctx, cancel := s.writeContext()
	defer cancel()
	f, err := s.store.Feed(ctx, id)
	if err != nil {
		s.log.Error("read feed after a panicked poll", slog.String("feed", id), slog.Any("error", err))
		return errPollPanicked
	}
	now := s.now()
	res := model.FetchResult{At: now, Err: "internal error during the poll; see the server log", Failures: f.FetchFailures + 1}
	res.NextFetchAt = now.Add(s.backoff(res.Failures))
	if err := s.recordFailed(f, res, "error"); err != nil {
		s.log.Error("record panicked poll", slog.String("feed", id), slog.Any("error", err))
	}
	return errPollPanicked
}

// recordFailed records a failed poll's outcome on its connection, so that its
// backoff holds and it shows in last_fetch, and counts it.
func (s *Service) recordFailed(f model.Feed, res model.FetchResult, outcome string) error {
	ctx, cancel := s.writeContext()
	defer cancel()
	err := s.store.RecordFetch(ctx, f.ID, f.Generation, res)
	s.Invalidate(f.ID) // stale: true from now on
	if s.connectionGone(err) {
		return err
	}
	if err != nil {
		s.log.Error("record fetch", slog.String("feed", f.ID), slog.Any("error", err))
	}
	s.metrics.polls(outcome)
	return nil
}

func (s *Service) removeOrphans(id string, files []string) {
	if len(files) == 0 {
		return
	}
	if err := s.media.Remove(files); err != nil {
		s.log.Warn("remove orphaned media", slog.String("feed", id), slog.Any("error", err))
	}
}

// FirstPublish is how many of a feed's newest posts the first poll stores
// images for before publishing the snapshot (then it stores the rest).
const FirstPublish = 12

// account is the account record a poll saves: base (the stored one)
// updated from a fresh profile read, with the avatar only once its image is
// stored. Only the final call of a poll schedules the retry of a failed
// avatar. key names the account's profile reads (see readProfile).
func (s *Service) account(base model.Account, key string, profile *graph.Profile, stored map[string]bool, final bool) *model.Account {
	if profile == nil {
		return nil
	}
	a := base
	if profile.Username != "" {
		a.Username = profile.Username
	}
	if profile.Name != "" {
		a.Name = profile.Name
	}
	if profile.AccountType != "" {
		a.AccountType = profile.AccountType
	}
	a.FollowersCount, a.FollowsCount, a.MediaCount = profile.FollowersCount, profile.FollowsCount, profile.MediaCount
	if k := avatarKey(profile.ProfilePictureURL); profile.ProfilePictureURL != "" && stored[k] {
		a.AvatarKey = k
	} else if profile.ProfilePictureURL != "" && final {
		s.profileFailed(key) // keep the old avatar; try again soon
	}
	return &a
}

// coverSources picks, from sources, the cover images of posts.
func coverSources(posts []model.Post, sources []source) []source {
	want := make(map[string]bool, len(posts))
	for _, p := range posts {
		if p.MediaKey != "" {
			want[p.MediaKey] = true
		}
	}
	var out []source
	for _, src := range sources {
		if want[src.key] {
			out = append(out, src)
			delete(want, src.key)
		}
	}
	return out
}

// profileRetry is the wait after a failed profile read.
const profileRetry = time.Hour

// profileState is the last profile read of a feed in this process, on
// connection gen: another connection's read says nothing about this one.
type profileState struct {
	gen int64
	at  time.Time
	ok  bool
}

// readProfile re-reads an account's profile (an extra Graph call) when its
// avatar is not stored yet or the last read is older than ProfileEvery.
// key names the account's reads (the feed id for its main account, feed
// id/source id for a further one), gen its connection. Failures are logged
// and do not fail the poll: the posts are what matters.
func (s *Service) readProfile(ctx context.Context, key string, gen int64, acct model.Account, token string) *graph.Profile {
	now := s.now()
	s.mu.Lock()
	st, ok := s.profileRead[key]
	ok = ok && st.gen == gen
	if !ok && acct.AvatarKey != "" {
		// After a restart, read it on a later poll rather than alongside
		// this one: one Graph call per poll in the common case.
		st = profileState{gen: gen, at: now.Add(-s.opts.ProfileEvery / 2), ok: true}
		s.profileRead[key] = st
		ok = true
	}
	s.mu.Unlock()
	if ok {
		wait := s.opts.ProfileEvery
		if !st.ok {
			wait = min(profileRetry, wait)
		}
		if now.Sub(st.at) < wait {
			return nil
		}
	}
	p, err := s.graph.Me(ctx, acct.IGUserID, token)
	s.mu.Lock()
	s.profileRead[key] = profileState{gen: gen, at: now, ok: err == nil}
	s.mu.Unlock()
	if err != nil {
		s.log.Info("read profile", slog.String("feed", key), slog.Any("error", err))
		return nil
	}
	return &p
}

func (s *Service) profileFailed(id string) {
	s.mu.Lock()
	st := s.profileRead[id]
	st.ok = false
	s.profileRead[id] = st
	s.mu.Unlock()
}

// source is an image to store under key, downloaded from url.
type source struct {
	key string
	url string
}

// mediaKey is the media key of a post or carousel child: Instagram media
// ids are global and their images never change.
func mediaKey(id string) string { return "post:" + id }

// avatarKey names a profile picture by its CDN path (without the signed
// query): a new picture gets a new path, a re-signed URL keeps the key.
func avatarKey(rawURL string) string {
	p := rawURL
	if u, err := url.Parse(rawURL); err == nil {
		p = u.Path
	}
	sum := sha256.Sum256([]byte(p))
	return "avatar:" + hex.EncodeToString(sum[:12])
}

// convert maps Graph media to stored posts and lists each image source.
func convert(items []graph.Media) ([]model.Post, []source) {
	posts := make([]model.Post, 0, len(items))
	var sources []source
	for i := range items {
		m := &items[i]
		p := model.Post{
			ID:            m.ID,
			MediaType:     m.MediaType,
			IsReel:        m.IsReel(),
			Permalink:     m.Permalink,
			Timestamp:     m.Timestamp,
			Caption:       m.Caption,
			AltText:       m.AltText,
			LikeCount:     m.LikeCount,
			CommentsCount: m.CommentsCount,
		}
		switch m.MediaType {
		case model.MediaCarousel:
			for j := range m.Children {
				c := &m.Children[j]
				child := model.Child{ID: c.ID, MediaType: c.MediaType, AltText: c.AltText}
				if u := c.CoverURL(); u != "" {
					child.MediaKey = mediaKey(c.ID)
					sources = append(sources, source{key: child.MediaKey, url: u})
					if p.MediaKey == "" {
						// The cover is the first child with an image: same
						// file, no second download.
						p.MediaKey = child.MediaKey
					}
				}
				p.Children = append(p.Children, child)
			}
			if p.MediaKey == "" && m.ThumbnailURL != "" {
				p.MediaKey = mediaKey(m.ID)
				sources = append(sources, source{key: p.MediaKey, url: m.ThumbnailURL})
			}
		default:
			// An image's media_url, a video's thumbnail_url (a reel with
			// copyrighted audio has no media_url, and a video's media_url
			// is a video anyway).
			if u := m.CoverURL(); u != "" {
				p.MediaKey = mediaKey(m.ID)
				sources = append(sources, source{key: p.MediaKey, url: u})
			}
		}
		posts = append(posts, p)
	}
	return posts, sources
}

// download stores every source whose key has no media row yet and returns
// the keys that are stored afterwards. An image the source would not give
// is logged; its post stays in the snapshot without an image (left out of
// the JSON) and the download is retried on the next poll, with a fresh URL.
// An image feedd could not store on its side (disk, database) or a poll
// out of time fails the whole download: saving then would drop posts that
// have their images from an earlier poll.
func (s *Service) download(ctx context.Context, p *poll, sources []source) (map[string]bool, error) {
	stored := make(map[string]bool, len(sources))
	if len(sources) == 0 {
		return stored, nil
	}
	keys := make([]string, 0, len(sources))
	seen := make(map[string]bool, len(sources))
	var todo []source
	for _, src := range sources {
		if !seen[src.key] {
			seen[src.key] = true
			keys = append(keys, src.key)
			todo = append(todo, src)
		}
	}
	have, err := s.store.MediaByKeys(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read media rows: %w", err)
	}
	for k := range have {
		stored[k] = true
	}
	var mu sync.Mutex
	work := make(chan source)
	var wg sync.WaitGroup
	for range min(s.opts.MediaWorkers, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for src := range work {
				// A panicking image costs that image: its post is left
				// out and tried again on the next poll.
				s.guard.Run("feed_media_download", func() {
					if s.storeImage(ctx, p, src) {
						mu.Lock()
						stored[src.key] = true
						mu.Unlock()
					}
				})
			}
		}()
	}
	for _, src := range todo {
		if _, ok := have[src.key]; ok {
			continue
		}
		select {
		case work <- src:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.local != nil {
		return nil, p.local
	}
	return stored, nil
}

// storeImage downloads and stores one image and reports whether it is stored.
func (s *Service) storeImage(ctx context.Context, p *poll, src source) bool {
	img, err := s.media.Fetch(ctx, src.url)
	if err != nil {
		// The media store's errors name host and path only, never the
		// signed query.
		s.log.Info("download media", slog.String("key", src.key), slog.Any("error", err))
		if localError(err) {
			p.localFailure(err)
		}
		return false
	}
	img.Key = src.key
	if err := s.store.PutMedia(ctx, img); err != nil {
		s.log.Warn("save media row", slog.String("key", src.key), slog.Any("error", err))
		p.localFailure(fmt.Errorf("save media row: %w", err))
		return false
	}
	p.stored(src.key)
	return true
}

// localError reports an image that failed on feedd's side (writing its
// files), not at its source.
func localError(err error) bool {
	var pe *fs.PathError
	var le *os.LinkError
	return errors.As(err, &pe) || errors.As(err, &le)
}

// recordFailure records a failed Graph call by its kind and returns err.
// The last good snapshot stays; the feed is served stale.
func (s *Service) recordFailure(ctx context.Context, f model.Feed, token string, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	now := s.now()
	res := model.FetchResult{At: now, Err: ownerMessage(err), Failures: f.FetchFailures + 1}
	outcome := "error"
	switch {
	case errors.Is(err, graph.ErrThrottled):
		// Every extra call extends the penalty: wait for the block's end.
		// The feeds a block stopped come back spread over up to half the
		// interval after it, not all at its end.
		wait := max(graph.RetryAfter(err), minThrottleWait)
		spread := time.Duration(s.opts.Jitter() * float64(min(wait, s.opts.FetchInterval)/2))
		res.NextFetchAt = now.Add(wait + spread)
		outcome = "throttled"
	case graph.NeedsReauth(err):
		reason := "Instagram no longer accepts the access token: reconnect the account."
		if errors.Is(err, graph.ErrPermission) {
			reason = "The access token lacks the instagram_business_basic permission: reconnect the account."
		}
		wctx, cancel := s.writeContext()
		rerr := s.conns.TokenRejected(wctx, f.ID, f.Generation, token, reason)
		cancel()
		if s.connectionGone(rerr) {
			return rerr
		}
		if errors.Is(rerr, model.ErrTokenChanged) {
			// A poll racing a token refresh held the old string: poll
			// again with the new one.
			res.NextFetchAt = now
			res.Failures = f.FetchFailures
			outcome = "token_changed"
			break
		}
		if rerr != nil {
			s.log.Error("report rejected token", slog.String("feed", f.ID), slog.Any("error", rerr))
		}
		outcome = "needs_reauth"
		res.NextFetchAt = now.Add(s.opts.FetchInterval)
	default:
		res.NextFetchAt = now.Add(s.backoff(res.Failures))
	}
	if rerr := s.recordFailed(f, res, outcome); rerr != nil {
		return rerr
	}
	return fmt.Errorf("feed: poll %s: %w", f.ID, err)
}

// ownerMessage is the owner-facing text of a failed poll. The Graph
// client's errors are sanitised (no token, no signed URL).
func ownerMessage(err error) string {
	prefix := ""
	var ge *graph.Error
	switch {
	case errors.Is(err, graph.ErrThrottled):
		prefix = "rate limited by Instagram: "
	case errors.Is(err, graph.ErrTokenInvalid):
		prefix = "token rejected: "
	case errors.Is(err, graph.ErrPermission):
		prefix = "permission missing: "
	case errors.Is(err, graph.ErrTransient), !errors.As(err, &ge):
		prefix = "Instagram unreachable or failing: "
	}
	return truncate(prefix + err.Error())
}

// truncate bounds an owner-facing message.
func truncate(msg string) string {
	if len(msg) > 300 {
		msg = msg[:300]
	}
	return msg
}

// backoff is the wait after the n-th consecutive transient failure.
func (s *Service) backoff(n int) time.Duration {
	return s.jittered(retry.Backoff(backoffBase, backoffMax, n))
}

// jittered spreads d by ±10% so feeds do not poll in lockstep.
func (s *Service) jittered(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.9 + 0.2*s.opts.Jitter()))
}
