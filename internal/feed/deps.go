package feed

import (
	"context"
	"errors"
	"time"
)

// The service codes against these small interfaces; adapters over
// internal/store, internal/graph and internal/media implement them.

// Feed status values (as stored and shown to the owner).
const (
	StatusNotConnected = "not_connected"
	StatusActive       = "active"
	StatusNeedsReauth  = "needs_reauth"
	StatusError        = "error"
)

// Sentinel errors.
var (
	// ErrNotFound is returned for an unknown feed id.
	ErrNotFound = errors.New("feed: not found")
	// ErrNotConnected is returned by FetchNow for a feed without a working token.
	ErrNotConnected = errors.New("feed: not connected")
)

// FeedRecord is the stored state of a feed the service needs.
type FeedRecord struct {
	ID             string
	AllowedOrigins []string
	Status         string
	Account        *AccountRecord // nil when not connected
	LastViewedAt   time.Time      // zero: never
	LastFetchAt    time.Time      // zero: never polled
	LastFetchOK    bool
	FetchedAt      time.Time // time of the last good snapshot; zero: none yet
	NextFetchAt    time.Time
	FetchFailures  int
}

// AccountRecord is the stored Instagram account of a feed.
type AccountRecord struct {
	AppUserID   string
	IGUserID    string // the professional account id; the Graph throttle key
	Username    string
	Name        string
	AccountType string
	AvatarKey   string // media key of the stored profile picture; "" when none
	// Counts from the last profile read (nil when unknown).
	FollowersCount, FollowsCount, MediaCount *int64
}

// PostRecord is a stored post, newest first in a snapshot.
type PostRecord struct {
	ID            string
	MediaType     string // IMAGE, VIDEO or CAROUSEL_ALBUM
	IsReel        bool
	Permalink     string
	Timestamp     time.Time
	Caption       *string
	AltText       *string
	LikeCount     *int64
	CommentsCount *int64
	MediaKey      string // the cover image's media key; may have no media row yet
	Children      []ChildRecord
}

// ChildRecord is a stored carousel item.
type ChildRecord struct {
	ID        string
	MediaType string
	AltText   *string
	MediaKey  string
}

// MediaRecord is a stored image (all its sizes) under a media key.
type MediaRecord struct {
	Key      string
	Width    int
	Height   int
	Color    string
	Bytes    int64
	Variants []Variant // smallest first
}

// Variant is one stored size of an image.
type Variant struct {
	Width  int
	Height int
	File   string // relative to the media dir, served under /media/
	Bytes  int64
}

// FetchResult records one poll on a feed.
type FetchResult struct {
	At          time.Time
	OK          bool
	Err         string // owner-facing, never a token
	NextFetchAt time.Time
	Failures    int // consecutive failed polls
}

// FeedStore is what the service needs from the database.
type FeedStore interface {
	// Feed returns the feed (ErrNotFound when unknown).
	Feed(ctx context.Context, id string) (FeedRecord, error)
	// Posts returns the feed's snapshot, newest first.
	Posts(ctx context.Context, id string) ([]PostRecord, error)
	// MediaByKeys returns the stored images among keys.
	MediaByKeys(ctx context.Context, keys []string) (map[string]MediaRecord, error)
	// PutMedia stores an image under its key.
	PutMedia(ctx context.Context, m MediaRecord) error
	// ReplacePosts replaces the feed's snapshot as a whole (and the account
	// profile when acct is not nil), sets fetched_at, and returns the files
	// no longer referenced by any media row, to delete after commit.
	ReplacePosts(ctx context.Context, id string, acct *AccountRecord, posts []PostRecord, at time.Time) ([]string, error)
	// DueFeeds lists active feeds due for a poll and viewed since viewedSince.
	DueFeeds(ctx context.Context, now, viewedSince time.Time) ([]FeedRecord, error)
	// MarkViewed records that the feed was requested.
	MarkViewed(ctx context.Context, id string, at time.Time) error
	// RecordFetch records a poll's outcome and the next poll time.
	RecordFetch(ctx context.Context, id string, r FetchResult) error
	// SetStatus sets the feed's status with an owner-facing reason.
	SetStatus(ctx context.Context, id, status, reason string) error
	// AccessToken returns the feed's current access token.
	AccessToken(ctx context.Context, id string) (string, error)
}

// GraphMedia is one media item as the Graph client returns it.
type GraphMedia struct {
	ID            string
	MediaType     string
	Caption       *string
	MediaURL      string
	ThumbnailURL  string
	Permalink     string
	Timestamp     time.Time
	Username      string
	LikeCount     *int64
	CommentsCount *int64
	AltText       *string
	Children      []GraphMedia
}

// GraphProfile is the account profile as the Graph client returns it.
type GraphProfile struct {
	ID                string
	UserID            string
	Username          string
	Name              string
	AccountType       string
	ProfilePictureURL string
	FollowersCount    *int64
	FollowsCount      *int64
	MediaCount        *int64
}

// ErrorKind is the Graph client's classification of a failed call.
type ErrorKind int

// Error kinds the poller acts on.
const (
	KindTransient    ErrorKind = iota // retry with backoff
	KindThrottled                     // wait until the block ends
	KindTokenInvalid                  // the owner must reconnect
	KindPermission                    // the owner must reconnect with the scope
	KindOther                         // bad request and the like: back off
)

// GraphClient is what the poller needs from the Graph client.
type GraphClient interface {
	Media(ctx context.Context, acct, token string, n int) ([]GraphMedia, error)
	Me(ctx context.Context, acct, token string) (GraphProfile, error)
	// Classify maps an error from Media or Me to a kind and, for
	// throttling, how long until calls are allowed again.
	Classify(err error) (ErrorKind, time.Duration)
}

// MediaFetcher downloads, resizes and stores images, and deletes files.
type MediaFetcher interface {
	// Fetch stores the image at url; the result has no Key yet.
	Fetch(ctx context.Context, url string) (MediaRecord, error)
	// Remove deletes stored files (missing ones are not an error).
	Remove(files []string) error
}
