package render

import (
	"strings"
	"testing"

	"github.com/feedd/feedd/internal/feed"
)

func TestFragmentNamesStoredVideosOnly(t *testing.T) {
	src := newFakeSource(pub)
	// Post 4 is a reel: give it a stored file; post 9, also a reel, has none.
	src.feeds["demo"][4].Video = &feed.Video{URL: pub + "/media/ab/abababababababababababababababab.mp4", Bytes: 4096}
	e := newTestEcho(t, src, pub)
	w := do(e, "GET", "/feeds/demo.html?limit=12")
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	body := w.Body.String()
	if n := strings.Count(body, "data-video="); n != 1 {
		t.Fatalf("%d tiles name a video, want the one reel with a stored file", n)
	}
	if !strings.Contains(body, `<li class="feedd-item" data-type="video" data-color="#f39c12" data-video="`+pub+`/media/ab/abababababababababababababababab.mp4" data-user="acme_two">`) {
		t.Fatalf("the reel's tile does not carry its video:\n%s", body)
	}
}
