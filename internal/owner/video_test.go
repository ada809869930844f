package owner

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
)

// storeVideo gives feed id a stored video of a new post, as a poll would.
func (e *env) storeVideo(id, postID, file string, n int64) {
	e.t.Helper()
	ctx := context.Background()
	f, err := e.Store.Feed(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	posts := []model.Post{{ID: postID, MediaType: model.MediaVideo, Permalink: "https://www.instagram.com/reel/x/", Timestamp: e.Clock.Now()}}
	if _, err := e.Store.ReplacePosts(ctx, id, f.Generation, nil, posts, e.Clock.Now()); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.Store.AttachVideo(ctx, id, f.Generation, postID, model.Media{Bytes: n, Variants: []model.Variant{{File: file, Bytes: n}}}); err != nil {
		e.t.Fatal(err)
	}
}

func TestAdminAPIVideoSettings(t *testing.T) {
	e := newEnv(t)
	id := e.connectAPI("Reels", sandbox.AccountCreator)

	st := e.status(id)
	if st.Video == nil || st.Video.Store || st.Video.MaxFileBytes != model.DefaultVideoMaxFileBytes || st.Video.MaxFeedBytes != model.DefaultVideoMaxFeedBytes {
		t.Fatalf("a new feed's video settings: %+v, want off with the default caps", st.Video)
	}
	if st.MediaBytes == nil || st.MediaBytes.Videos != 0 {
		t.Fatalf("media_bytes: %+v", st.MediaBytes)
	}

	for _, tt := range []struct{ name, body, field string }{
		{"file cap too small", `{"video":{"max_file_bytes":1000}}`, "video.max_file_bytes"},
		{"file cap over the ceiling", `{"video":{"max_file_bytes":2147483648}}`, "video.max_file_bytes"},
		{"feed cap negative", `{"video":{"store":true,"max_feed_bytes":-1}}`, "video.max_feed_bytes"},
		{"store not a boolean", `{"video":{"store":"yes"}}`, "video.store"},
		{"cap not a number", `{"video":{"max_feed_bytes":"500MB"}}`, "video.max_feed_bytes"},
		{"unknown field", `{"video":{"autoplay":true}}`, "autoplay"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var ae apiError
			if code := e.api("PATCH", "/api/admin/feeds/"+id, tt.body, &ae); code != http.StatusBadRequest || !strings.HasPrefix(ae.Error.Message, tt.field) {
				t.Fatalf("%d %+v: want 400 naming %q", code, ae.Error, tt.field)
			}
		})
	}
	// A refused change changes nothing, not even the fields beside it.
	var ae apiError
	if code := e.api("PATCH", "/api/admin/feeds/"+id, `{"name":"Renamed","video":{"store":true,"max_file_bytes":1}}`, &ae); code != 400 {
		t.Fatalf("bad caps beside a good name: %d", code)
	}
	if got := e.status(id); got.Name != "Reels" || got.Video.Store {
		t.Fatalf("a refused PATCH changed the feed: %+v %+v", got.Name, got.Video)
	}

	before := e.Feeds.Invalidations(id)
	if code := e.api("PATCH", "/api/admin/feeds/"+id, `{"video":{"store":true,"max_file_bytes":10485760}}`, &st); code != 200 ||
		!st.Video.Store || st.Video.MaxFileBytes != 10<<20 || st.Video.MaxFeedBytes != model.DefaultVideoMaxFeedBytes {
		t.Fatalf("turning videos on: %d %+v", code, st.Video)
	}
	if e.Feeds.Invalidations(id) == before {
		t.Error("changing the video settings did not invalidate the feed's cached answers")
	}

	e.storeVideo(id, "17800000000000001", "ab/abababababababababababababababab.mp4", 3<<20)
	if st = e.status(id); st.MediaBytes.Videos != 3<<20 {
		t.Fatalf("media_bytes after a stored video: %+v", st.MediaBytes)
	}
	var list struct{ Feeds []map[string]any }
	e.api("GET", "/api/admin/feeds", "", &list)
	if _, ok := list.Feeds[0]["video"]; ok {
		t.Error("the feed list carries the per-feed video fields")
	}

	if code := e.api("PATCH", "/api/admin/feeds/"+id, `{"video":{"store":false}}`, &st); code != 200 || st.Video.Store || st.MediaBytes.Videos != 0 {
		t.Fatalf("turning videos off: %d %+v %+v", code, st.Video, st.MediaBytes)
	}
	if !slices.Contains(e.Files.Removed(), "ab/abababababababababababababababab.mp4") {
		t.Fatalf("turning videos off removed %v, not the stored video", e.Files.Removed())
	}
}

func TestSetupPageVideoForm(t *testing.T) {
	e := newEnv(t)
	id := e.connectAPI("Reels", sandbox.AccountCreator)
	_, page := e.get(e.srv.URL + "/setup/feeds/" + id)
	for _, want := range []string{`action="/setup/feeds/` + id + `/videos"`, `name="store" value="on" aria-describedby`, `name="max_file_mb" type="number" inputmode="numeric" min="1" max="1024" value="50"`, `value="500"`, "<dt>Disk used</dt>"} {
		if !strings.Contains(page, want) {
			t.Fatalf("the feed page lacks %q", want)
		}
	}
	if strings.Contains(page, `name="store" value="on" checked`) {
		t.Fatal("videos shown as stored by default")
	}

	resp, _ := e.post("/setup/feeds/"+id+"/videos", url.Values{"store": {"on"}, "max_file_mb": {"20"}, "max_feed_mb": {"200"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("saving: %d", resp.StatusCode)
	}
	if v := e.status(id).Video; !v.Store || v.MaxFileBytes != 20<<20 || v.MaxFeedBytes != 200<<20 {
		t.Fatalf("after the form: %+v", v)
	}
	_, page = e.get(e.srv.URL + "/setup/feeds/" + id)
	if !strings.Contains(page, `name="store" value="on" checked`) || !strings.Contains(page, `value="20"`) || !strings.Contains(page, "Video settings saved") {
		t.Fatal("the page does not show the saved settings and the confirmation")
	}

	for _, bad := range []url.Values{
		{"store": {"on"}, "max_file_mb": {"0"}, "max_feed_mb": {"200"}},
		{"store": {"on"}, "max_file_mb": {"5000"}, "max_feed_mb": {"200"}},
		{"store": {"on"}, "max_file_mb": {"ten"}, "max_feed_mb": {"200"}},
		{"store": {"on"}, "max_file_mb": {"20"}, "max_feed_mb": {"99999999"}},
	} {
		e.post("/setup/feeds/"+id+"/videos", bad)
		_, page = e.get(e.srv.URL + "/setup/feeds/" + id)
		if !strings.Contains(page, "Largest video:") && !strings.Contains(page, "All videos of this feed:") {
			t.Errorf("%v: no error naming the field on the page", bad)
		}
		if v := e.status(id).Video; v.MaxFileBytes != 20<<20 || v.MaxFeedBytes != 200<<20 {
			t.Errorf("%v changed the settings: %+v", bad, v)
		}
	}

	// Unchecked box: off.
	e.post("/setup/feeds/"+id+"/videos", url.Values{"max_file_mb": {"20"}, "max_feed_mb": {"200"}})
	if v := e.status(id).Video; v.Store {
		t.Fatal("an unchecked box left videos on")
	}
}
