package owner

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/web"
)

// VideoStore is what the video settings need from the database;
// *store.Store implements it.
type VideoStore interface {
	VideoSettings(ctx context.Context, feedID string) (model.VideoSettings, error)
	SetVideoSettings(ctx context.Context, feedID string, v model.VideoSettings) (model.VideoSettings, []string, error)
	MediaUse(ctx context.Context, feedID string) (model.MediaUse, error)
}

// Bounds of the video caps an owner may set, in bytes.
const (
	minVideoCap   = 1 << 20
	codeBadVideos = "invalid_video"
)

// VideoView is a feed's video settings as the admin API shows them.
type VideoView struct {
	Store        bool  `json:"store"`          // store the video files of videos and reels
	MaxFileBytes int64 `json:"max_file_bytes"` // larger videos play on Instagram
	MaxFeedBytes int64 `json:"max_feed_bytes"` // the newest videos are stored up to this sum
}

// VideoPatch is a partial change of the video settings; nil fields stay.
type VideoPatch struct {
	Store        *bool  `json:"store"`
	MaxFileBytes *int64 `json:"max_file_bytes"`
	MaxFeedBytes *int64 `json:"max_feed_bytes"`
}

// MediaBytes is the disk a feed's stored media take, in bytes.
type MediaBytes struct {
	Images int64 `json:"images"`
	Videos int64 `json:"videos"`
}

// withMedia adds the feed's video settings and disk use to its status.
func (s *Service) withMedia(ctx context.Context, st *Status) error {
	v, err := s.store.VideoSettings(ctx, st.ID)
	if err != nil {
		return err
	}
	u, err := s.store.MediaUse(ctx, st.ID)
	if err != nil {
		return err
	}
	st.Video = &VideoView{Store: v.Enabled, MaxFileBytes: v.MaxFileBytes, MaxFeedBytes: v.MaxFeedBytes}
	st.MediaBytes = &MediaBytes{Images: u.Images, Videos: u.Videos}
	return nil
}

// nextVideos is the feed's video settings with p applied, checked.
func (s *Service) nextVideos(ctx context.Context, id string, p VideoPatch) (model.VideoSettings, error) {
	v, err := s.store.VideoSettings(ctx, id)
	if err != nil {
		return model.VideoSettings{}, err
	}
	if p.Store != nil {
		v.Enabled = *p.Store
	}
	if p.MaxFileBytes != nil {
		v.MaxFileBytes = *p.MaxFileBytes
	}
	if p.MaxFeedBytes != nil {
		v.MaxFeedBytes = *p.MaxFeedBytes
	}
	return v, checkVideoCaps(v)
}

// setVideos stores the feed's video settings. Turning videos off deletes
// the stored files at once; the next poll stores what the new settings
// allow.
func (s *Service) setVideos(ctx context.Context, id string, v model.VideoSettings) error {
	_, files, err := s.store.SetVideoSettings(ctx, id, v)
	if err != nil {
		return clientErr(err)
	}
	s.removeFiles(files)
	s.invalidate(id)
	s.log.Info("video settings changed", slog.String("feed", id), slog.Bool("store", v.Enabled),
		slog.Int64("max_file_bytes", v.MaxFileBytes), slog.Int64("max_feed_bytes", v.MaxFeedBytes), slog.Int("files_removed", len(files)))
	return nil
}

// checkVideoCaps refuses caps outside what feedd allows, naming the field.
func checkVideoCaps(v model.VideoSettings) error {
	for _, c := range []struct {
		field string
		n     int64
		max   int64
	}{
		{"video.max_file_bytes", v.MaxFileBytes, model.VideoMaxFileCeiling},
		{"video.max_feed_bytes", v.MaxFeedBytes, model.VideoMaxFeedCeiling},
	} {
		if c.n < minVideoCap || c.n > c.max {
			return web.BadRequest(codeBadVideos, "%s: must be from %d (1 MiB) to %d (%s)", c.field, int64(minVideoCap), c.max, mib(c.max))
		}
	}
	return nil
}

// mib spells a byte count in whole MiB or GiB.
func mib(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// FileMB and FeedMB are the caps in whole MiB, for the setup form.
func (v *VideoView) FileMB() int64 { return v.MaxFileBytes >> 20 }

// FeedMB is MaxFeedBytes in whole MiB.
func (v *VideoView) FeedMB() int64 { return v.MaxFeedBytes >> 20 }

// Text is the disk use in words, for the status page.
func (m *MediaBytes) Text() string {
	return size(m.Images+m.Videos) + " (images " + size(m.Images) + ", videos " + size(m.Videos) + ")"
}

// size spells a byte count for people.
func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// setupVideos is the video settings form of the feed page.
func (h *Handler) setupVideos(c *echo.Context) error {
	store := c.FormValue("store") == "on"
	p := VideoPatch{Store: &store}
	for _, f := range []struct {
		name, field string
		dst         **int64
	}{{"max_file_mb", "Largest video", &p.MaxFileBytes}, {"max_feed_mb", "All videos of this feed", &p.MaxFeedBytes}} {
		mb, err := strconv.ParseInt(strings.TrimSpace(c.FormValue(f.name)), 10, 64)
		if err != nil || mb < 1 || mb > model.VideoMaxFeedCeiling>>20 {
			return h.back(c, feedPage(c), web.BadRequest(codeBadVideos, "%s: a whole number of MB, at least 1", f.field), "")
		}
		n := mb << 20
		*f.dst = &n
	}
	_, err := h.svc.UpdateFeed(c.Request().Context(), c.Param("id"), Patch{Video: &p})
	if err != nil {
		if he, ok := web.As(err); ok && he.Code == codeBadVideos {
			// The API's message names JSON fields; the page names its own.
			err = web.BadRequest(codeBadVideos, "%s", formVideoMessage(he.Message))
		}
	}
	msg := "Videos are not stored; the files are deleted."
	if store {
		msg = "Video settings saved. The next fetch stores the videos that fit."
	}
	return h.back(c, feedPage(c), err, msg)
}

// formVideoMessage renames the API's fields in a message as the form
// labels them.
func formVideoMessage(msg string) string {
	return strings.NewReplacer("video.max_file_bytes", "Largest video", "video.max_feed_bytes", "All videos of this feed").Replace(msg)
}
