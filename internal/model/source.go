package model

import (
	"errors"
	"time"
)

// Source errors.
var (
	// ErrSourceNotFound: the feed has no source with that id.
	ErrSourceNotFound = errors.New("model: unknown source")
	// ErrSourceDuplicate: the Instagram account is already a source of
	// this feed.
	ErrSourceDuplicate = errors.New("model: account is already a source of this feed")
	// ErrMainSource: the feed's main source is not removed on its own; a
	// disconnect ends the feed's connection as a whole.
	ErrMainSource = errors.New("model: the main source is removed by disconnecting the feed")
	// ErrTooManySources: the feed has MaxSources already.
	ErrTooManySources = errors.New("model: too many sources")
)

// MainSource is the id of a feed's first source: the account the feed was
// connected to (Feed.Account, Feed.Token, Feed.Status). Further sources
// get ids from NewSourceID.
const MainSource = "main"

// MaxSources caps the sources of one feed, the main one included: each
// costs a Graph call per poll.
const MaxSources = 10

// NewSourceID returns a fresh id for a further source of a feed.
func NewSourceID() string { return NewFeedID() }

// ValidSourceID reports whether id has the shape of a source id.
func ValidSourceID(id string) bool { return id == MainSource || ValidFeedID(id) }

// Source is one Instagram account whose posts a feed shows, with its own
// token lifecycle and status.
type Source struct {
	ID           string
	FeedID       string
	Account      Account
	Token        TokenInfo
	Status       Status // StatusActive, StatusNeedsReauth or StatusError
	StatusReason string // owner-facing
	// Generation changes when this source is reconnected; the main
	// source's is the feed's. A further source's writes also name the
	// feed's generation, so a disconnect ends them too.
	Generation int64
	FetchedAt  time.Time // zero: never polled
}

// MainSourceOf is a connected feed's first account as a source.
func MainSourceOf(f Feed) Source {
	src := Source{ID: MainSource, FeedID: f.ID, Status: f.Status, StatusReason: f.StatusReason,
		Generation: f.Generation, FetchedAt: f.FetchedAt}
	if f.Account != nil {
		src.Account = *f.Account
	}
	if f.Token != nil {
		src.Token = *f.Token
	}
	return src
}

// SourceChange asks for a further source's status to become To, while the
// feed is on FeedGeneration, the source on Generation and, when IfToken is
// set, that is still the source's token.
type SourceChange struct {
	FeedID         string
	SourceID       string
	FeedGeneration int64
	Generation     int64
	To             Status
	Reason         string
	IfToken        string
}

// Worst returns the status of the source that most needs the owner, and
// that source: needs_reauth before error before active, the first in
// order among equals. ok is false when sources is empty.
func Worst(sources []Source) (s Source, ok bool) {
	rank := func(st Status) int {
		switch st {
		case StatusNeedsReauth:
			return 2
		case StatusError:
			return 1
		}
		return 0
	}
	for i, src := range sources {
		if i == 0 || rank(src.Status) > rank(s.Status) {
			s = src
		}
	}
	return s, len(sources) > 0
}
