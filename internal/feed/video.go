package feed

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/media"
	"github.com/feedd/feedd/internal/model"
)

// Video is a post's video file stored by feedd (feeds that store videos).
type Video struct {
	URL   string `json:"url"` // absolute, on FEEDD_PUBLIC_URL; an MP4 file
	Bytes int64  `json:"bytes"`
}

// videoRefusal is how a video was refused by its source on an earlier poll:
// within the room it had then (too large) or whatever the room (not an
// MP4). It is not downloaded again until its feed has more room for it.
type videoRefusal struct{ room int64 }

// storeVideos stores the video files of the feed's videos and reels (items
// of every account the poll read, newest first), when its owner turned that
// on: newest first while they fit the feed's cap, each within the per-file
// cap, while the poll's signed URLs are fresh. Stored videos that no longer
// fit (newer ones came) are dropped. A video that cannot be stored is
// logged and its post keeps its cover, played on Instagram; nothing here
// fails the poll, whose posts are already saved. It reports whether it
// stored or dropped one, and model.ErrConnectionChanged when the feed's
// connection changed meanwhile (nothing of the old one is kept; the caller
// polls again).
func (s *Service) storeVideos(ctx context.Context, f model.Feed, items []graph.Media) (bool, error) {
	changed := false
	id := f.ID
	set, err := s.store.VideoSettings(ctx, id)
	if err != nil {
		s.log.Warn("read video settings", slog.String("feed", id), slog.Any("error", err))
		return false, nil
	}
	if !set.Enabled {
		s.forgetRefusals(id)
		return false, nil
	}
	var keys []string
	for i := range items {
		if items[i].MediaType == model.MediaVideo {
			keys = append(keys, model.VideoKey(id, items[i].ID))
		}
	}
	have, err := s.store.MediaByKeys(ctx, keys)
	if err != nil {
		s.log.Warn("read stored videos", slog.String("feed", id), slog.Any("error", err))
		return false, nil
	}
	refused := s.refusals(id)
	kept := map[string]videoRefusal{}
	var used int64
	var drop []string
	for i := range items {
		m := &items[i]
		if m.MediaType != model.MediaVideo {
			continue
		}
		key := model.VideoKey(id, m.ID)
		if v, ok := have[key]; ok {
			if v.Bytes <= set.MaxFileBytes && used+v.Bytes <= set.MaxFeedBytes {
				used += v.Bytes
			} else {
				drop = append(drop, key)
			}
			continue
		}
		room := min(set.MaxFileBytes, set.MaxFeedBytes-used)
		// No media_url: a reel with copyrighted audio, played on Instagram.
		if m.MediaURL == "" || room <= 0 || ctx.Err() != nil {
			continue
		}
		if r, ok := refused[key]; ok && room <= r.room {
			kept[key] = r
			continue
		}
		v, err := s.media.FetchVideo(ctx, m.MediaURL, room)
		if err != nil {
			// Errors name the host and path, never the signed query.
			s.log.Info("download video", slog.String("feed", id), slog.String("post", m.ID), slog.Any("error", err))
			switch {
			case errors.Is(err, media.ErrTooLarge):
				kept[key] = videoRefusal{room: room}
			case errors.Is(err, media.ErrNotVideo):
				kept[key] = videoRefusal{room: math.MaxInt64}
			}
			continue
		}
		// Recorded even when the poll's time ran out meanwhile: the file
		// is there.
		wctx, cancel := s.writeContext()
		files, err := s.store.AttachVideo(wctx, id, f.Generation, m.ID, v)
		cancel()
		s.removeOrphans(id, files)
		if err != nil {
			if s.connectionGone(err) {
				return changed, model.ErrConnectionChanged
			}
			s.log.Info("keep video", slog.String("feed", id), slog.String("post", m.ID), slog.Any("error", err))
			continue
		}
		used += v.Bytes
		changed = true
	}
	s.keepRefusals(id, kept)
	if len(drop) > 0 {
		wctx, cancel := s.writeContext()
		defer cancel()
		files, err := s.store.DropVideos(wctx, id, drop)
		if err != nil {
			s.log.Warn("drop videos over the feed's cap", slog.String("feed", id), slog.Any("error", err))
			return changed, nil
		}
		s.removeOrphans(id, files)
		changed = true
	}
	return changed, nil
}

// refusals returns the videos of the feed refused on earlier polls.
func (s *Service) refusals(id string) map[string]videoRefusal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.videoRefused[id]
}

// keepRefusals replaces the feed's refused videos with this poll's: a post
// no longer shown is forgotten, so memory follows the stored posts.
func (s *Service) keepRefusals(id string, r map[string]videoRefusal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(r) == 0 {
		delete(s.videoRefused, id)
		return
	}
	if s.videoRefused == nil {
		s.videoRefused = make(map[string]map[string]videoRefusal)
	}
	s.videoRefused[id] = r
}

func (s *Service) forgetRefusals(id string) { s.keepRefusals(id, nil) }

// videoKeys lists the media keys of the feed's stored videos of posts.
func videoKeys(feedID string, posts []model.Post) []string {
	var keys []string
	for i := range posts {
		if posts[i].MediaType == model.MediaVideo {
			keys = append(keys, model.VideoKey(feedID, posts[i].ID))
		}
	}
	return keys
}

// attachVideo adds to a built post its stored video file, if any.
func (s *Service) attachVideo(p *Post, feedID string, media map[string]model.Media) {
	if p.Type != TypeVideo {
		return
	}
	if m, ok := media[model.VideoKey(feedID, p.ID)]; ok && len(m.Variants) == 1 {
		p.Video = &Video{URL: s.mediaURL(m.Variants[0].File), Bytes: m.Variants[0].Bytes}
	}
}

// mediaUseEvery is how often the disk-use metrics are computed again: one
// query over every feed's media, whatever the scrape interval.
const mediaUseEvery = time.Minute

// mediaUseBuckets are the bounds of feedd_feed_media_bytes: 1 MiB to 16 GiB.
var mediaUseBuckets = prometheus.ExponentialBuckets(1<<20, 4, 8)

// mediaUseCollector reports the disk use of the feeds' stored media as a
// histogram over feeds, not a series per feed: with thousands of feeds a
// label per feed would cost more than it tells. The feed's own figure is on
// its status page and in the admin API.
type mediaUseCollector struct {
	s          *Service
	hist, kind *prometheus.Desc

	mu      sync.Mutex
	at      time.Time
	buckets map[float64]uint64
	count   uint64
	sum     float64
	byKind  [2]float64 // images, videos
	ok      bool
}

func newMediaUseCollector(s *Service) *mediaUseCollector {
	return &mediaUseCollector{
		s: s,
		hist: prometheus.NewDesc("feedd_feed_media_bytes",
			"Disk use of each feed's stored media (images and videos it references), as a histogram over feeds.", nil, nil),
		kind: prometheus.NewDesc("feedd_media_referenced_bytes",
			"Bytes of stored media the feeds reference, by kind (a file two feeds share counts twice).", []string{"kind"}, nil),
	}
}

func (c *mediaUseCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.hist
	ch <- c.kind
}

func (c *mediaUseCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.s.now(); !c.ok || now.Sub(c.at) >= mediaUseEvery {
		c.refresh(now)
	}
	if !c.ok {
		return
	}
	ch <- prometheus.MustNewConstHistogram(c.hist, c.count, c.sum, c.buckets)
	ch <- prometheus.MustNewConstMetric(c.kind, prometheus.GaugeValue, c.byKind[0], "images")
	ch <- prometheus.MustNewConstMetric(c.kind, prometheus.GaugeValue, c.byKind[1], "videos")
}

// refresh reads every feed's disk use; on failure the last figures stay.
func (c *mediaUseCollector) refresh(now time.Time) {
	ctx, cancel := context.WithTimeout(c.s.bgCtx, 10*time.Second)
	defer cancel()
	use, err := c.s.store.MediaUseByFeed(ctx)
	if err != nil {
		c.s.log.Warn("read media use", slog.Any("error", err))
		return
	}
	c.buckets = make(map[float64]uint64, len(mediaUseBuckets))
	c.count, c.sum, c.byKind = 0, 0, [2]float64{}
	for _, u := range use {
		n := float64(u.Images + u.Videos)
		c.count++
		c.sum += n
		c.byKind[0] += float64(u.Images)
		c.byKind[1] += float64(u.Videos)
		for _, b := range mediaUseBuckets {
			if n <= b {
				c.buckets[b]++
			}
		}
	}
	c.at, c.ok = now, true
}
