package model

import (
	"errors"
	"time"
)

// ErrCurationChanged: the feed's curation is no longer the one the caller
// read (another change won the race); read it again and redo the change.
var ErrCurationChanged = errors.New("model: curation changed since it was read")

// Curation is what the owner chose a feed to show of its stored posts.
// The zero value shows every post, newest first.
type Curation struct {
	// Hidden posts are never shown.
	Hidden []string
	// Pinned posts come first, in this order.
	Pinned []string
	// Include: when not empty, only posts whose caption matches one of
	// these words, phrases or #hashtags are shown (pinned posts always are).
	Include []string
	// Exclude: posts whose caption matches any of these are not shown
	// (pinned posts always are).
	Exclude []string
	// Types shown: image, video, carousel, reel; empty means all.
	Types []string
	// MaxPosts caps the posts shown; 0 means no cap.
	MaxPosts  int
	UpdatedAt time.Time // zero: never set
}
