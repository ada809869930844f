package feed

import (
	"context"
	"errors"
	"time"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/media"
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
		ProfilePictureURL: p.ProfilePictureURL}, nil
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
