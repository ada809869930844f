package store

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
)

func videoPost(id string) model.Post {
	p := post(id, "post:"+id)
	p.MediaType = model.MediaVideo
	return p
}

func videoFile(file string, n int64) model.Media {
	return model.Media{Bytes: n, Variants: []model.Variant{{File: file, Bytes: n}}}
}

func TestVideoSettingsAreOffByDefaultAndStored(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		f := must[model.Feed](t)(e.s.CreateFeed(ctx, "a", nil))
		v := must[model.VideoSettings](t)(e.s.VideoSettings(ctx, f.ID))
		if v != model.DefaultVideoSettings() || v.Enabled {
			t.Fatalf("a new feed's video settings: %+v, want off with the default caps", v)
		}
		want := model.VideoSettings{Enabled: true, MaxFileBytes: 7 << 20, MaxFeedBytes: 70 << 20}
		got, files, err := e.s.SetVideoSettings(ctx, f.ID, want)
		if err != nil || len(files) != 0 {
			t.Fatal(files, err)
		}
		want.UpdatedAt = t0
		if got != want {
			t.Fatalf("SetVideoSettings returned %+v, want %+v", got, want)
		}
		if v := must[model.VideoSettings](t)(e.s.VideoSettings(ctx, f.ID)); v != want {
			t.Fatalf("read back %+v, want %+v", v, want)
		}
		if _, _, err := e.s.SetVideoSettings(ctx, "nosuchfeed", want); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("settings of an unknown feed: %v, want ErrNotFound", err)
		}
		must[[]string](t)(e.s.DeleteFeed(ctx, f.ID))
		var n int
		if err := e.s.r.QueryRowContext(ctx, `SELECT count(*) FROM video_settings WHERE feed_id = ?`, f.ID).Scan(&n); err != nil || n != 0 {
			t.Fatalf("settings rows left after the feed's deletion: %d, %v", n, err)
		}
	})
}

func TestStoredVideosFollowTheirPostsAndTheSetting(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		a := must[model.Feed](t)(e.s.CreateFeed(ctx, "a", nil))
		b := must[model.Feed](t)(e.s.CreateFeed(ctx, "b", nil))
		connect(t, e.s, a.ID, "1", "IGAAa")
		connect(t, e.s, b.ID, "1", "IGAAb")
		on := model.VideoSettings{Enabled: true, MaxFileBytes: 1 << 20, MaxFeedBytes: 1 << 30}
		for _, id := range []string{a.ID, b.ID} {
			if _, _, err := e.s.SetVideoSettings(ctx, id, on); err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range []model.Media{media("post:1", "aa/1-320.jpg"), media("post:2", "bb/2-320.jpg")} {
			m.Bytes = 1000
			if err := e.s.PutMedia(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		posts := []model.Post{videoPost("1"), videoPost("2")}
		must[[]string](t)(e.s.ReplacePosts(ctx, a.ID, e.gen(t, a.ID), nil, posts, t0))
		must[[]string](t)(e.s.ReplacePosts(ctx, b.ID, e.gen(t, b.ID), nil, posts, t0))

		attach := func(feedID, postID, file string, n int64) ([]string, error) {
			return e.s.AttachVideo(ctx, feedID, e.gen(t, feedID), postID, videoFile(file, n))
		}
		for _, c := range []struct{ feed, post, file string }{{a.ID, "1", "v1.mp4"}, {a.ID, "2", "v2.mp4"}, {b.ID, "1", "v1.mp4"}} {
			if files, err := attach(c.feed, c.post, c.file, 5000); err != nil || len(files) != 0 {
				t.Fatalf("attach %v: %v %v", c, files, err)
			}
		}
		use := must[model.MediaUse](t)(e.s.MediaUse(ctx, a.ID))
		if use != (model.MediaUse{Images: 2000, Videos: 10000}) {
			t.Fatalf("feed a's media use %+v, want 2000 B of images and 10000 B of videos", use)
		}
		all := must[map[string]model.MediaUse](t)(e.s.MediaUseByFeed(ctx))
		if all[a.ID] != use || all[b.ID] != (model.MediaUse{Images: 2000, Videos: 5000}) {
			t.Fatalf("MediaUseByFeed = %+v", all)
		}

		// Refused: an older connection, an unknown post, a feed that does
		// not store videos. Nothing stays; the file goes unless another
		// row names it.
		files, err := e.s.AttachVideo(ctx, a.ID, e.gen(t, a.ID)-1, "2", videoFile("v9.mp4", 10))
		if !errors.Is(err, model.ErrConnectionChanged) || !slices.Equal(files, []string{"v9.mp4"}) {
			t.Fatalf("attach on an older connection: %v %v", files, err)
		}
		if files, err := attach(a.ID, "7", "v7.mp4", 10); !errors.Is(err, model.ErrNotFound) || !slices.Equal(files, []string{"v7.mp4"}) {
			t.Fatalf("attach to a post not shown: %v %v", files, err)
		}
		if files, err := attach(a.ID, "7", "v1.mp4", 10); err == nil || len(files) != 0 {
			t.Fatalf("a refused attach of a file another row names returned %v (%v)", files, err)
		}

		// A post gone from the snapshot takes its video with it.
		orphans := must[[]string](t)(e.s.ReplacePosts(ctx, a.ID, e.gen(t, a.ID), nil, posts[:1], t0.Add(time.Minute)))
		if !slices.Contains(orphans, "v2.mp4") {
			t.Fatalf("orphans after post 2 left: %v, want v2.mp4 among them", orphans)
		}
		ms := must[map[string]model.Media](t)(e.s.MediaByKeys(ctx, []string{model.VideoKey(a.ID, "1"), model.VideoKey(a.ID, "2")}))
		if _, ok := ms[model.VideoKey(a.ID, "1")]; !ok || len(ms) != 1 {
			t.Fatalf("videos of feed a after post 2 left: %v", ms)
		}

		// Over the cap: dropped on request.
		files = must[[]string](t)(e.s.DropVideos(ctx, b.ID, []string{model.VideoKey(b.ID, "1")}))
		if len(files) != 0 {
			t.Fatalf("dropping b's video removed %v, a file feed a's video still names", files)
		}
		if _, err := e.s.DropVideos(ctx, b.ID, []string{"post:1"}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("DropVideos of an image key: %v, want ErrInvalid", err)
		}

		// Off: the feed's videos go at once and no later snapshot brings
		// them back.
		_, files, err = e.s.SetVideoSettings(ctx, a.ID, model.VideoSettings{MaxFileBytes: 1 << 20, MaxFeedBytes: 1 << 30})
		if err != nil || !slices.Equal(files, []string{"v1.mp4"}) {
			t.Fatalf("turning videos off: %v %v, want v1.mp4 to delete", files, err)
		}
		must[[]string](t)(e.s.ReplacePosts(ctx, a.ID, e.gen(t, a.ID), nil, posts, t0.Add(2*time.Minute)))
		if u := must[model.MediaUse](t)(e.s.MediaUse(ctx, a.ID)); u.Videos != 0 {
			t.Fatalf("videos counted after turning off: %+v", u)
		}
		if files, err := attach(a.ID, "1", "v1.mp4", 5000); !errors.Is(err, ErrVideosOff) || !slices.Equal(files, []string{"v1.mp4"}) {
			t.Fatalf("attach while off: %v %v", files, err)
		}
	})
}

func TestDisconnectAndDeleteDropStoredVideos(t *testing.T) {
	for _, end := range []struct {
		name string
		do   func(s *Store, id string) ([]string, error)
	}{
		{"disconnect", func(s *Store, id string) ([]string, error) {
			_, files, err := s.Disconnect(context.Background(), id)
			return files, err
		}},
		{"delete", func(s *Store, id string) ([]string, error) { return s.DeleteFeed(context.Background(), id) }},
	} {
		t.Run(end.name, func(t *testing.T) {
			engines(t, func(t *testing.T, open opener) {
				ctx := context.Background()
				e := open(t)
				a := must[model.Feed](t)(e.s.CreateFeed(ctx, "a", nil))
				connect(t, e.s, a.ID, "1", "IGAAa")
				if _, _, err := e.s.SetVideoSettings(ctx, a.ID, model.VideoSettings{Enabled: true, MaxFileBytes: 1 << 20, MaxFeedBytes: 1 << 20}); err != nil {
					t.Fatal(err)
				}
				must[[]string](t)(e.s.ReplacePosts(ctx, a.ID, e.gen(t, a.ID), nil, []model.Post{videoPost("1")}, t0))
				if _, err := e.s.AttachVideo(ctx, a.ID, e.gen(t, a.ID), "1", videoFile("v1.mp4", 10)); err != nil {
					t.Fatal(err)
				}
				files := must[[]string](t)(end.do(e.s, a.ID))
				if !slices.Contains(files, "v1.mp4") {
					t.Fatalf("%s left the feed's video: files %v", end.name, files)
				}
				if ms := must[map[string]model.Media](t)(e.s.MediaByKeys(ctx, []string{model.VideoKey(a.ID, "1")})); len(ms) != 0 {
					t.Fatalf("%s left the video's row", end.name)
				}
			})
		})
	}
}
