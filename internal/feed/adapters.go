package feed

import (
	"context"
	"errors"
	"time"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/media"
	"github.com/feedd/feedd/internal/store"
)

// NewGraphClient adapts the Instagram client to the poller's GraphClient.
func NewGraphClient(c *graph.Client) GraphClient { return graphAdapter{c} }

type graphAdapter struct{ c *graph.Client }

func (g graphAdapter) Media(ctx context.Context, acct, token string, n int) ([]GraphMedia, error) {
	items, err := g.c.Media(ctx, acct, token, n)
	if err != nil {
		return nil, err
	}
	out := make([]GraphMedia, len(items))
	for i := range items {
		out[i] = fromGraph(&items[i])
	}
	return out, nil
}

func fromGraph(m *graph.Media) GraphMedia {
	g := GraphMedia{
		ID: m.ID, MediaType: m.MediaType, Caption: m.Caption, MediaURL: m.MediaURL, ThumbnailURL: m.ThumbnailURL,
		Permalink: m.Permalink, Timestamp: m.Timestamp, Username: m.Username, LikeCount: m.LikeCount,
		CommentsCount: m.CommentsCount, AltText: m.AltText,
	}
	for i := range m.Children {
		g.Children = append(g.Children, fromGraph(&m.Children[i]))
	}
	return g
}

func (g graphAdapter) Me(ctx context.Context, acct, token string) (GraphProfile, error) {
	p, err := g.c.Me(ctx, acct, token)
	if err != nil {
		return GraphProfile{}, err
	}
	return GraphProfile{ID: p.ID, UserID: p.UserID, Username: p.Username, Name: p.Name, AccountType: p.AccountType,
		ProfilePictureURL: p.ProfilePictureURL, FollowersCount: p.FollowersCount, FollowsCount: p.FollowsCount,
		MediaCount: p.MediaCount}, nil
}

func (g graphAdapter) Classify(err error) (ErrorKind, time.Duration) {
	var e *graph.Error
	if !errors.As(err, &e) {
		return KindTransient, 0 // timeouts and the like
	}
	switch e.Kind {
	case graph.KindThrottled:
		return KindThrottled, e.RetryAfter
	case graph.KindTokenInvalid:
		return KindTokenInvalid, 0
	case graph.KindPermission:
		return KindPermission, 0
	case graph.KindTransient, graph.KindUnreachable:
		return KindTransient, e.RetryAfter
	}
	return KindOther, 0
}

// NewMediaFetcher adapts the media store to the poller's MediaFetcher.
func NewMediaFetcher(s *media.Store) MediaFetcher { return mediaAdapter{s} }

type mediaAdapter struct{ s *media.Store }

func (m mediaAdapter) Fetch(ctx context.Context, url string) (MediaRecord, error) {
	img, err := m.s.Fetch(ctx, url)
	if err != nil {
		return MediaRecord{}, err
	}
	r := MediaRecord{Width: img.Width, Height: img.Height, Color: img.Color, Bytes: img.Bytes}
	for _, v := range img.Variants {
		r.Variants = append(r.Variants, Variant{Width: v.Width, Height: v.Height, File: v.File, Bytes: v.Bytes})
	}
	return r, nil
}

func (m mediaAdapter) Remove(files []string) error { return m.s.Remove(files) }

// NewStore adapts the database to the service's FeedStore.
func NewStore(s *store.Store) FeedStore { return storeAdapter{s} }

type storeAdapter struct{ s *store.Store }

// storeErr maps the store's sentinels to the feed package's.
func storeErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return ErrNotFound
	case errors.Is(err, store.ErrNotConnected):
		return ErrNotConnected
	}
	return err
}

func fromStoreFeed(f store.Feed) FeedRecord {
	r := FeedRecord{
		ID: f.ID, AllowedOrigins: f.AllowedOrigins, Status: string(f.Status), LastViewedAt: f.LastViewedAt,
		LastFetchAt: f.LastFetchAt, LastFetchOK: f.LastFetchOK, FetchedAt: f.FetchedAt, NextFetchAt: f.NextFetchAt,
		FetchFailures: f.FetchFailures,
	}
	if a := f.Account; a != nil {
		r.Account = &AccountRecord{AppUserID: a.AppUserID, IGUserID: a.IGUserID, Username: a.Username, Name: a.Name,
			AccountType: a.AccountType, AvatarKey: a.AvatarKey, FollowersCount: a.FollowersCount,
			FollowsCount: a.FollowsCount, MediaCount: a.MediaCount}
	}
	return r
}

func (a storeAdapter) Feed(ctx context.Context, id string) (FeedRecord, error) {
	f, err := a.s.Feed(ctx, id)
	if err != nil {
		return FeedRecord{}, storeErr(err)
	}
	return fromStoreFeed(f), nil
}

func (a storeAdapter) Posts(ctx context.Context, id string) ([]PostRecord, error) {
	posts, err := a.s.Posts(ctx, id)
	if err != nil {
		return nil, storeErr(err)
	}
	out := make([]PostRecord, len(posts))
	for i, p := range posts {
		out[i] = PostRecord{ID: p.ID, MediaType: p.MediaType, IsReel: p.IsReel, Permalink: p.Permalink, Timestamp: p.Timestamp,
			Caption: p.Caption, AltText: p.AltText, LikeCount: p.LikeCount, CommentsCount: p.CommentsCount, MediaKey: p.MediaKey}
		for _, c := range p.Children {
			out[i].Children = append(out[i].Children, ChildRecord{ID: c.ID, MediaType: c.MediaType, AltText: c.AltText, MediaKey: c.MediaKey})
		}
	}
	return out, nil
}

func (a storeAdapter) MediaByKeys(ctx context.Context, keys []string) (map[string]MediaRecord, error) {
	rows, err := a.s.MediaByKeys(ctx, keys)
	if err != nil {
		return nil, storeErr(err)
	}
	out := make(map[string]MediaRecord, len(rows))
	for k, m := range rows {
		r := MediaRecord{Key: m.Key, Width: m.Width, Height: m.Height, Color: m.Color, Bytes: m.Bytes}
		for _, v := range m.Variants {
			r.Variants = append(r.Variants, Variant{Width: v.Width, Height: v.Height, File: v.File, Bytes: v.Bytes})
		}
		out[k] = r
	}
	return out, nil
}

func (a storeAdapter) PutMedia(ctx context.Context, m MediaRecord) error {
	row := store.Media{Key: m.Key, Width: m.Width, Height: m.Height, Color: m.Color, Bytes: m.Bytes}
	for _, v := range m.Variants {
		row.Variants = append(row.Variants, store.Variant{Width: v.Width, Height: v.Height, File: v.File, Bytes: v.Bytes})
	}
	return storeErr(a.s.PutMedia(ctx, row))
}

func (a storeAdapter) ReplacePosts(ctx context.Context, id string, acct *AccountRecord, posts []PostRecord, at time.Time) ([]string, error) {
	var sa *store.Account
	if acct != nil {
		sa = &store.Account{AppUserID: acct.AppUserID, IGUserID: acct.IGUserID, Username: acct.Username, Name: acct.Name,
			AccountType: acct.AccountType, AvatarKey: acct.AvatarKey, FollowersCount: acct.FollowersCount,
			FollowsCount: acct.FollowsCount, MediaCount: acct.MediaCount}
	}
	rows := make([]store.Post, len(posts))
	for i, p := range posts {
		rows[i] = store.Post{ID: p.ID, MediaType: p.MediaType, IsReel: p.IsReel, Permalink: p.Permalink, Timestamp: p.Timestamp,
			Caption: p.Caption, AltText: p.AltText, LikeCount: p.LikeCount, CommentsCount: p.CommentsCount, MediaKey: p.MediaKey}
		for _, c := range p.Children {
			rows[i].Children = append(rows[i].Children, store.Child{ID: c.ID, MediaType: c.MediaType, AltText: c.AltText, MediaKey: c.MediaKey})
		}
	}
	files, err := a.s.ReplacePostsCurrent(ctx, id, sa, rows, at)
	return files, storeErr(err)
}

func (a storeAdapter) DueFeeds(ctx context.Context, now, viewedSince time.Time) ([]FeedRecord, error) {
	feeds, err := a.s.DueFeeds(ctx, now, viewedSince)
	if err != nil {
		return nil, storeErr(err)
	}
	out := make([]FeedRecord, len(feeds))
	for i, f := range feeds {
		out[i] = fromStoreFeed(f)
	}
	return out, nil
}

func (a storeAdapter) MarkViewed(ctx context.Context, id string, at time.Time) error {
	return storeErr(a.s.MarkViewed(ctx, id, at))
}

func (a storeAdapter) RecordFetch(ctx context.Context, id string, r FetchResult) error {
	return storeErr(a.s.RecordFetchCurrent(ctx, id, store.FetchResult{At: r.At, OK: r.OK, Err: r.Err, NextFetchAt: r.NextFetchAt, Failures: r.Failures}))
}

func (a storeAdapter) SetStatus(ctx context.Context, id, status, reason string) error {
	return storeErr(a.s.SetStatus(ctx, id, status, reason))
}

func (a storeAdapter) AccessToken(ctx context.Context, id string) (string, error) {
	t, err := a.s.Token(ctx, id)
	if err != nil {
		return "", storeErr(err)
	}
	return t.AccessToken, nil
}
