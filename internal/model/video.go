package model

import "time"

// Caps of stored videos: the defaults of a feed whose owner set none, and
// the ceilings no feed may exceed.
const (
	DefaultVideoMaxFileBytes = 50 << 20
	DefaultVideoMaxFeedBytes = 500 << 20
	VideoMaxFileCeiling      = 1 << 30
	VideoMaxFeedCeiling      = 20 << 30
)

// VideoSettings say whether a feed stores the video files of its videos
// and reels, and within which caps. Off by default.
type VideoSettings struct {
	Enabled      bool
	MaxFileBytes int64 // a longer file is not stored: the post plays on Instagram
	MaxFeedBytes int64 // the newest videos are stored until their sum reaches this
	UpdatedAt    time.Time
}

// DefaultVideoSettings are a feed's settings until its owner changes them.
func DefaultVideoSettings() VideoSettings {
	return VideoSettings{MaxFileBytes: DefaultVideoMaxFileBytes, MaxFeedBytes: DefaultVideoMaxFeedBytes}
}

// VideoKey is the media key of a feed's stored video file of a post. It
// names the feed: each feed's videos count against its own cap.
func VideoKey(feedID, postID string) string { return "video:" + feedID + ":" + postID }

// MediaUse is the disk a feed's stored media take: the images and the
// videos its posts and avatar reference.
type MediaUse struct {
	Images int64
	Videos int64
}
