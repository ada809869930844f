package feed

import (
	"context"
	"time"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/model"
)

// The service codes against these small interfaces, in the domain types of
// internal/model; *store.Store, *graph.Client and *media.Store implement
// them as they are.

// Store is what the service needs from the database.
type Store interface {
	// Feed returns the feed (model.ErrNotFound when unknown).
	Feed(ctx context.Context, id string) (model.Feed, error)
	// Posts returns the feed's snapshot, its sources merged newest first.
	Posts(ctx context.Context, feedID string) ([]model.Post, error)
	// Sources returns the feed's Instagram accounts, the main one first.
	Sources(ctx context.Context, feedID string) ([]model.Source, error)
	// ReplaceSourcePosts replaces one further source's posts (and profile
	// when acct is not nil) while the feed is on feedGen and the source on
	// srcGen (model.ErrConnectionChanged otherwise), leaving the other
	// sources' posts; it returns the files to delete after commit.
	ReplaceSourcePosts(ctx context.Context, feedID, sourceID string, feedGen, srcGen int64, acct *model.Account, posts []model.Post, at time.Time) ([]string, error)
	// Curation returns what the owner chose the feed to show (the zero
	// value when nothing).
	Curation(ctx context.Context, feedID string) (model.Curation, error)
	// MediaByKeys returns the stored images among keys.
	MediaByKeys(ctx context.Context, keys []string) (map[string]model.Media, error)
	// PutMedia stores an image under its key.
	PutMedia(ctx context.Context, m model.Media) error
	// ReplacePosts replaces the main source's posts (and the account
	// profile when acct is not nil) if the feed is still on connection gen
	// (model.ErrConnectionChanged otherwise), and returns the files no media
	// row names any more, to delete after commit.
	ReplacePosts(ctx context.Context, feedID string, gen int64, acct *model.Account, posts []model.Post, at time.Time) ([]string, error)
	// DropUnreferenced deletes the media rows among keys that no feed
	// references and returns their files.
	DropUnreferenced(ctx context.Context, keys []string) ([]string, error)
	// VideoSettings returns whether the feed stores videos, and its caps.
	VideoSettings(ctx context.Context, feedID string) (model.VideoSettings, error)
	// AttachVideo records a stored video file as the feed's video of a
	// post, if the feed is still on connection gen, stores videos and shows
	// the post; when refused it returns the files to delete.
	AttachVideo(ctx context.Context, feedID string, gen int64, postID string, m model.Media) ([]string, error)
	// DropVideos drops the feed's stored videos among keys and returns the
	// files to delete.
	DropVideos(ctx context.Context, feedID string, keys []string) ([]string, error)
	// MediaUseByFeed returns the disk use of every feed's stored media.
	MediaUseByFeed(ctx context.Context) (map[string]model.MediaUse, error)
	// DueFeeds lists active feeds due for a poll and viewed since viewedSince.
	DueFeeds(ctx context.Context, now, viewedSince time.Time) ([]model.Feed, error)
	// MarkViewed records that the feed was requested.
	MarkViewed(ctx context.Context, id string, at time.Time) error
	// RecordFetch records a poll's outcome and the next poll time if the
	// feed is still on connection gen (model.ErrConnectionChanged otherwise).
	RecordFetch(ctx context.Context, id string, gen int64, r model.FetchResult) error
}

// Graph is what the poller needs from Instagram. Its errors are
// internal/graph's typed errors (graph.ErrThrottled, graph.NeedsReauth...).
type Graph interface {
	Media(ctx context.Context, acct, token string, n int) ([]graph.Media, error)
	Me(ctx context.Context, acct, token string) (graph.Profile, error)
}

// Media downloads, resizes and stores images, and deletes their files.
type Media interface {
	// Fetch stores the image at url; the result has no Key yet.
	Fetch(ctx context.Context, url string) (model.Media, error)
	// FetchVideo stores the MP4 file at url, refused beyond maxBytes; the
	// result has no Key yet.
	FetchVideo(ctx context.Context, url string, maxBytes int64) (model.Media, error)
	// Remove deletes stored files (missing ones are not an error).
	Remove(files []string) error
}

// Connections is what the poller needs from the Instagram connection
// lifecycle.
type Connections interface {
	// AccessToken returns the feed's current access token
	// (model.ErrNotConnected when it has none).
	AccessToken(ctx context.Context, feedID string) (string, error)
	// TokenRejected reports that Instagram refused token (code 190, or a
	// missing permission) during a poll of feedID on connection gen; reason
	// is owner-facing. It moves the feed to needs_reauth — logged, counted
	// and notified exactly once — unless the token or the connection
	// changed meanwhile (model.ErrTokenChanged, model.ErrConnectionChanged).
	TokenRejected(ctx context.Context, feedID string, gen int64, token, reason string) error
	// SourceAccessToken returns the current access token of a further
	// source of the feed.
	SourceAccessToken(ctx context.Context, feedID, sourceID string) (string, error)
	// SourceTokenRejected is TokenRejected for a further source polled on
	// the feed's connection feedGen and the source's srcGen: the source,
	// not the feed, moves to needs_reauth.
	SourceTokenRejected(ctx context.Context, feedID, sourceID string, feedGen, srcGen int64, token, reason string) error
}
