// Package model holds feedd's domain types: a feed, the Instagram account
// it is connected to, its token's metadata, its posts and their stored
// images, and the records of the owner's and Meta's interactions. Every
// layer (store, poller, connection lifecycle, owner surface, renderers)
// uses these types directly; none keeps a copy of its own.
package model

import (
	"crypto/rand"
	"errors"
	"time"
)

// Domain errors, shared by the store and the services above it.
var (
	// ErrNotFound: the feed (or the thing asked for) does not exist.
	ErrNotFound = errors.New("model: not found")
	// ErrNotConnected: the feed has no account or token.
	ErrNotConnected = errors.New("model: feed not connected")
	// ErrTokenChanged: the stored token is no longer the one the caller read
	// (a refresh or a reconnect won the race).
	ErrTokenChanged = errors.New("model: token changed since it was read")
	// ErrConnectionChanged: the feed was connected, disconnected or had its
	// data deleted since the caller read it; writes of the older connection
	// are refused.
	ErrConnectionChanged = errors.New("model: connection changed since it was read")
	// ErrStateNotFound, ErrStateUsed and ErrStateExpired describe an OAuth
	// state that cannot be used.
	ErrStateNotFound = errors.New("model: unknown oauth state")
	ErrStateUsed     = errors.New("model: oauth state already used")
	ErrStateExpired  = errors.New("model: oauth state expired")
)

// Status is a feed's connection status, as stored and shown to the owner.
type Status string

// Feed statuses.
const (
	StatusNotConnected Status = "not_connected"
	StatusActive       Status = "active"
	StatusNeedsReauth  Status = "needs_reauth"
	StatusError        Status = "error"
)

// Valid reports whether s is one of the feed statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusNotConnected, StatusActive, StatusNeedsReauth, StatusError:
		return true
	}
	return false
}

// FeedIDLen is the length of a feed id.
const FeedIDLen = 10

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// NewFeedID returns FeedIDLen random characters of [a-z0-9] (~51 bits).
func NewFeedID() string {
	var b [FeedIDLen]byte
	out := make([]byte, FeedIDLen)
	for i := 0; i < len(out); {
		rand.Read(b[:]) // never fails on supported platforms
		for _, c := range b {
			// 252 = 7*36: reject the tail to keep the alphabet uniform.
			if c < 252 && i < len(out) {
				out[i] = idAlphabet[int(c)%36]
				i++
			}
		}
	}
	return string(out)
}

// ValidFeedID reports whether id has the shape of a feed id. It is the one
// feed-id rule: hostile ids are refused before any cache or query sees them.
func ValidFeedID(id string) bool {
	if len(id) != FeedIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Feed is one embeddable feed: the owner's settings, its connection and the
// state of its polling.
type Feed struct {
	ID             string
	Name           string
	AllowedOrigins []string // never nil
	Status         Status
	StatusReason   string // owner-facing
	CreatedAt      time.Time
	UpdatedAt      time.Time
	// Generation identifies the connection: it changes on every connect,
	// disconnect and data deletion, so a poll or refresh that started under
	// an older connection cannot write into the new one.
	Generation     int64
	LastViewedAt   time.Time // zero: never
	LastFetchAt    time.Time // zero: never polled
	LastFetchOK    bool
	LastFetchError string    // owner-facing, never a token
	FetchedAt      time.Time // time of the last good snapshot; zero: none
	NextFetchAt    time.Time // zero: not scheduled
	FetchFailures  int
	Account        *Account   // nil when not connected
	Token          *TokenInfo // nil when not connected
	PostCount      int
	// HeaderSource is the id of the source whose account the header
	// shows (MainSource unless the owner chose another).
	HeaderSource string
}

// Account is the Instagram professional account a feed is connected to.
type Account struct {
	AppUserID   string // app-scoped id: the code exchange's user_id, /me id
	IGUserID    string // professional account id (/me user_id); the Graph throttle key
	Username    string
	Name        string
	AccountType string    // BUSINESS or MEDIA_CREATOR, as Instagram spells it
	AvatarKey   string    // media key of the stored profile picture; "" when none
	ConnectedAt time.Time // when this account was connected
	// Counts from the last profile read (nil when unknown).
	FollowersCount, FollowsCount, MediaCount *int64
}

// TokenInfo is what may be known and shown about a token: never the token.
type TokenInfo struct {
	ObtainedAt       time.Time // when this token string was issued (the 24 h rule counts from here)
	ExpiresAt        time.Time
	ExpiryAssumed    bool      // a pasted token whose expiry is a guess
	RefreshedAt      time.Time // zero: never refreshed
	NextRefreshAt    time.Time // zero: decided by age and expiry alone
	RefreshFailures  int
	LastRefreshError string
}

// Token is a feed's access token with its metadata. It lives in memory
// only: the store seals it, and it never reaches a log or a response.
type Token struct {
	FeedID      string
	SourceID    string // "" or MainSource: the feed's main token
	AccessToken string
	TokenInfo
}

// Media types as Instagram names them.
const (
	MediaImage    = "IMAGE"
	MediaVideo    = "VIDEO"
	MediaCarousel = "CAROUSEL_ALBUM"
)

// Post is one stored Instagram post. Optional fields that Instagram omits
// are nil, never invented.
type Post struct {
	ID            string
	MediaType     string // MediaImage, MediaVideo or MediaCarousel
	IsReel        bool
	Permalink     string
	Timestamp     time.Time
	Caption       *string
	AltText       *string
	LikeCount     *int64
	CommentsCount *int64
	MediaKey      string // the cover image; "" when none; may have no media row yet
	Children      []Child
	SourceID      string // the source it came from; "" is read as MainSource
}

// Child is one item of a carousel, stored as JSON with its post.
type Child struct {
	ID        string  `json:"id"`
	MediaType string  `json:"media_type"`
	AltText   *string `json:"alt_text,omitempty"`
	MediaKey  string  `json:"media_key,omitempty"`
}

// Media is a stored image with all its sizes, under a media key that
// posts, children and avatars refer to.
type Media struct {
	Key       string
	Width     int
	Height    int
	Color     string // dominant colour, e.g. "#a0b1c2"
	Variants  []Variant
	Bytes     int64
	CreatedAt time.Time
}

// Variant is one stored size of an image in one format. In Media.Variants
// the JPEGs come first, smallest first, then the other formats' files in
// the same order of sizes.
type Variant struct {
	Width  int    `json:"width"`
	Height int    `json:"height"`
	File   string `json:"file"` // relative to the media dir, served under /media/
	Bytes  int64  `json:"bytes"`
	// Format is "" for JPEG (every image has JPEGs) or FormatAVIF or
	// FormatWebP, encoded later beside them.
	Format string `json:"format,omitempty"`
}

// Image formats stored beside the JPEGs, as Variant.Format names them.
const (
	FormatAVIF = "avif"
	FormatWebP = "webp"
)

// FormatType is the Content-Type of a Variant.Format.
func FormatType(format string) string {
	switch format {
	case FormatAVIF:
		return "image/avif"
	case FormatWebP:
		return "image/webp"
	}
	return "image/jpeg"
}

// FetchResult is the outcome of one poll of a feed.
type FetchResult struct {
	At          time.Time
	OK          bool
	Err         string // owner-facing, never a token
	NextFetchAt time.Time
	Failures    int // consecutive failed polls
}

// StatusChange asks for a feed's status to become To. It applies only while
// the feed is still on connection Generation and, when IfToken is set, while
// that is still the feed's token.
type StatusChange struct {
	FeedID     string
	Generation int64
	To         Status
	Reason     string // owner-facing
	IfToken    string // "" : whatever the token
}

// OAuthState is a pending connect, stored by hash only.
type OAuthState struct {
	Hash        []byte // SHA-256 of the state string
	FeedID      string
	SessionHash []byte // nil: issued by the admin API, bound to the feed only
	CreatedAt   time.Time
	ExpiresAt   time.Time
	UsedAt      time.Time // zero: unused
	AddSource   bool      // the connect adds a further source to the feed
}

// Session is an admin session of the setup pages.
type Session struct {
	IDHash    []byte
	CSRF      string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Deletion request kinds.
const (
	KindDeauthorize = "deauthorize"
	KindDelete      = "delete"
)

// DeletionRequest is one of Meta's deauthorize or data-deletion callbacks
// and its outcome.
type DeletionRequest struct {
	Code          string // confirmation code, unguessable
	Kind          string // KindDeauthorize or KindDelete
	UserID        string
	RequestedAt   time.Time
	CompletedAt   time.Time // zero: pending
	FeedsAffected int
}
