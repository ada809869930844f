package feed

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
)

// videoEnv is an env whose feed is on the creator account: a reel (its
// newest post) and an older plain video, both with media_url.
func videoEnv(t *testing.T, o envOptions) (*env, []string) {
	t.Helper()
	e := newEnv(t, o)
	posts, err := e.sb.Posts(e.acct)
	if err != nil {
		t.Fatal(err)
	}
	var videos []string
	for _, p := range posts {
		if p.MediaType == sandbox.MediaVideo {
			videos = append(videos, p.ID)
		}
	}
	if len(videos) != 2 || videos[0] != posts[0].ID {
		t.Fatalf("the creator's videos: %v, want the newest post and one more", videos)
	}
	return e, videos
}

func (e *env) setVideos(v model.VideoSettings) {
	e.t.Helper()
	_, files, err := e.st.SetVideoSettings(context.Background(), e.id, v)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.media.Remove(files); err != nil {
		e.t.Fatal(err)
	}
	e.svc.Invalidate(e.id)
}

// videoDownloads counts the sandbox's video file downloads.
func (e *env) videoDownloads() int {
	n := 0
	for p, c := range e.cdnPaths() {
		if strings.HasSuffix(p, ".mp4") {
			n += c
		}
	}
	return n
}

// videosOf maps the posts of d that carry a video to its URL.
func videosOf(d Doc) map[string]string {
	out := map[string]string{}
	for _, p := range d.Posts {
		if p.Video != nil {
			out[p.ID] = p.Video.URL
		}
	}
	return out
}

func (e *env) storedVideoFiles() []string {
	var out []string
	for _, f := range e.mediaFiles() {
		if strings.HasSuffix(f, ".mp4") {
			out = append(out, f)
		}
	}
	return out
}

func TestVideosAreNotStoredByDefault(t *testing.T) {
	e, _ := videoEnv(t, envOptions{})
	if err := e.fetchNow(); err != nil {
		t.Fatal(err)
	}
	if n := e.videoDownloads(); n != 0 {
		t.Errorf("%d video files downloaded by a feed that never turned videos on", n)
	}
	if bytes.Contains(e.fetchJSON(t, e.id, ""), []byte(`"video":`)) {
		t.Error("the JSON names a video")
	}
	if f := e.storedVideoFiles(); len(f) != 0 {
		t.Errorf("video files stored: %v", f)
	}
}

func TestVideosAreStoredNewestFirstWithinTheCaps(t *testing.T) {
	e, videos := videoEnv(t, envOptions{})
	e.setVideos(model.VideoSettings{Enabled: true, MaxFileBytes: 1 << 20, MaxFeedBytes: 1 << 20})
	if err := e.fetchNow(); err != nil {
		t.Fatal(err)
	}
	d := e.doc(t, "")
	got := videosOf(d)
	if len(got) != 2 || got[videos[0]] == "" || got[videos[1]] == "" {
		t.Fatalf("videos in the JSON: %v, want both", got)
	}
	var sizes []int64
	for _, p := range d.Posts {
		if p.Video == nil {
			continue
		}
		if p.Type != TypeVideo || len(p.Images) == 0 {
			t.Errorf("post %s: type %s with %d cover images", p.ID, p.Type, len(p.Images))
		}
		b, err := os.ReadFile(e.localFile(t, p.Video.URL))
		if err != nil || !bytes.HasPrefix(b[4:], []byte("ftyp")) || int64(len(b)) != p.Video.Bytes {
			t.Fatalf("stored file of %s: %d bytes (%v), JSON says %d", p.ID, len(b), err, p.Video.Bytes)
		}
		sizes = append(sizes, p.Video.Bytes)
	}
	if n := e.videoDownloads(); n != 2 {
		t.Errorf("%d video downloads, want 2", n)
	}

	// A feed cap with room for one: the newest stays, the older one goes
	// with its file on the next poll.
	e.setVideos(model.VideoSettings{Enabled: true, MaxFileBytes: 1 << 20, MaxFeedBytes: sizes[0] + 10})
	e.clock.Advance(16 * 60e9)
	if err := e.fetchNow(); err != nil {
		t.Fatal(err)
	}
	got2 := videosOf(e.doc(t, ""))
	if len(got2) != 1 || got2[videos[0]] != got[videos[0]] {
		t.Fatalf("videos with room for one: %v, want the newest (%s) only", got2, videos[0])
	}
	if e.fileExists(t, got[videos[1]]) {
		t.Error("the older video's file is still on disk")
	}
	if n := e.videoDownloads(); n != 2 {
		t.Errorf("%d video downloads, want no new ones", n)
	}
	use, err := e.st.MediaUse(context.Background(), e.id)
	if err != nil || use.Videos != sizes[0] || use.Images == 0 {
		t.Errorf("media use %+v (%v), want %d bytes of videos and the images", use, err, sizes[0])
	}

	// The metrics: one feed in the histogram, its bytes as the sum.
	reg := prometheus.NewRegistry()
	o := e.options()
	o.Registerer = reg
	svc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var hist *dto.Histogram
	kinds := map[string]float64{}
	for _, f := range fams {
		switch f.GetName() {
		case "feedd_feed_media_bytes":
			hist = f.GetMetric()[0].GetHistogram()
		case "feedd_media_referenced_bytes":
			for _, m := range f.GetMetric() {
				kinds[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	if hist == nil || hist.GetSampleCount() != 1 || hist.GetSampleSum() != float64(use.Images+use.Videos) {
		t.Errorf("feedd_feed_media_bytes = %v, want one feed of %d bytes", hist, use.Images+use.Videos)
	}
	if kinds["videos"] != float64(use.Videos) || kinds["images"] != float64(use.Images) {
		t.Errorf("feedd_media_referenced_bytes = %v, want %+v", kinds, use)
	}
}

func TestVideosOverThePerFileCapPlayOnInstagram(t *testing.T) {
	e, _ := videoEnv(t, envOptions{})
	e.setVideos(model.VideoSettings{Enabled: true, MaxFileBytes: 1000, MaxFeedBytes: 1 << 20})
	if err := e.fetchNow(); err != nil {
		t.Fatal(err)
	}
	d := e.doc(t, "")
	if v := videosOf(d); len(v) != 0 {
		t.Fatalf("videos larger than the per-file cap stored: %v", v)
	}
	if f := e.storedVideoFiles(); len(f) != 0 {
		t.Fatalf("files left: %v", f)
	}
	if got := e.ids(d); len(d.Posts) != 6 {
		t.Fatalf("posts %s: the videos' posts must stay, with their covers", got)
	}
	// Refused once for this room: not downloaded again on every poll.
	before := e.videoDownloads()
	e.clock.Advance(16 * 60e9)
	if err := e.fetchNow(); err != nil {
		t.Fatal(err)
	}
	if n := e.videoDownloads() - before; n != 0 {
		t.Errorf("%d downloads of videos already refused as too large", n)
	}
}

func TestHostileVideosAreRefusedAndThePostKeepsItsCover(t *testing.T) {
	big := append([]byte("\x00\x00\x00\x10ftypisom\x00\x00\x02\x00"), bytes.Repeat([]byte{0}, 2<<20)...)
	for _, tt := range []struct {
		name  string
		setup func(e *env)
		opts  envOptions
	}{
		{"a web page instead of a video", func(e *env) { e.sb.SetVideoFile([]byte("<!doctype html><title>x</title>"), "text/html") }, envOptions{}},
		{"bytes that are no MP4", func(e *env) { e.sb.SetVideoFile(bytes.Repeat([]byte("GIF89a"), 100), "video/mp4") }, envOptions{}},
		{"a file over the cap", func(e *env) { e.sb.SetVideoFile(big, "video/mp4") }, envOptions{}},
		{"a host not allowed", func(e *env) {}, envOptions{graph: func(g Graph) Graph {
			return rewriteVideos{g, "https://169.254.169.254/latest/meta-data/iam"}
		}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := videoEnv(t, tt.opts)
			tt.setup(e)
			e.setVideos(model.VideoSettings{Enabled: true, MaxFileBytes: 1 << 20, MaxFeedBytes: 1 << 20})
			if err := e.fetchNow(); err != nil {
				t.Fatalf("a refused video failed the poll: %v", err)
			}
			d := e.doc(t, "")
			if v := videosOf(d); len(v) != 0 {
				t.Fatalf("videos stored: %v", v)
			}
			covers := 0
			for _, p := range d.Posts {
				if p.Type == TypeVideo && len(p.Images) > 0 && e.fileExists(t, p.Images[0].URL) {
					covers++
				}
			}
			if covers != 2 {
				t.Errorf("%d video posts shown with their stored cover, want 2", covers)
			}
			if f := e.storedVideoFiles(); len(f) != 0 {
				t.Errorf("files left: %v", f)
			}
		})
	}
}

// rewriteVideos points every video's media_url somewhere else, as a
// tampered or hostile answer would.
type rewriteVideos struct {
	Graph
	to string
}

func (g rewriteVideos) Media(ctx context.Context, acct, token string, n int) ([]graph.Media, error) {
	items, err := g.Graph.Media(ctx, acct, token, n)
	for i := range items {
		if items[i].MediaType == model.MediaVideo && items[i].MediaURL != "" {
			items[i].MediaURL = g.to
		}
	}
	return items, err
}

func TestTurningVideosOffOrRemovingThePostRemovesTheFiles(t *testing.T) {
	e, videos := videoEnv(t, envOptions{})
	on := model.VideoSettings{Enabled: true, MaxFileBytes: 1 << 20, MaxFeedBytes: 1 << 20}
	e.setVideos(on)
	if err := e.fetchNow(); err != nil {
		t.Fatal(err)
	}
	if f := e.storedVideoFiles(); len(f) != 2 {
		t.Fatalf("stored videos: %v, want 2", f)
	}

	// Instagram no longer has the reel: its file goes with its post.
	if err := e.sb.DeletePost(e.acct, videos[0]); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(16 * 60e9)
	if err := e.fetchNow(); err != nil {
		t.Fatal(err)
	}
	v := videosOf(e.doc(t, ""))
	if f := e.storedVideoFiles(); len(f) != 1 || len(v) != 1 || v[videos[1]] == "" {
		t.Fatalf("after the reel was deleted: files %v, JSON videos %v", f, v)
	}

	// Off: every file goes at once, the JSON names none, and polls
	// download none.
	off := on
	off.Enabled = false
	e.setVideos(off)
	if f := e.storedVideoFiles(); len(f) != 0 {
		t.Fatalf("files left after turning videos off: %v", f)
	}
	if v := videosOf(e.doc(t, "")); len(v) != 0 {
		t.Fatalf("JSON videos after turning off: %v", v)
	}
	before := e.videoDownloads()
	e.clock.Advance(16 * 60e9)
	if err := e.fetchNow(); err != nil {
		t.Fatal(err)
	}
	if n := e.videoDownloads() - before; n != 0 || len(e.storedVideoFiles()) != 0 {
		t.Errorf("a poll after turning off downloaded %d videos", n)
	}
	var raw struct {
		Posts []map[string]json.RawMessage `json:"posts"`
	}
	json.Unmarshal(e.fetchJSON(t, e.id, ""), &raw)
	for _, p := range raw.Posts {
		if _, ok := p["video"]; ok {
			t.Error("a post names a video while videos are off")
		}
	}
}

// gatedVideos holds the first video download until release is closed.
type gatedVideos struct {
	Media
	once             sync.Once
	reached, release chan struct{}
}

func (m *gatedVideos) FetchVideo(ctx context.Context, rawURL string, maxBytes int64) (model.Media, error) {
	m.once.Do(func() {
		close(m.reached)
		<-m.release
	})
	return m.Media.FetchVideo(ctx, rawURL, maxBytes)
}

func TestAVideoOfAnOlderConnectionIsNotKept(t *testing.T) {
	gv := &gatedVideos{reached: make(chan struct{}), release: make(chan struct{})}
	e, old := videoEnv(t, envOptions{media: func(m Media) Media { gv.Media = m; return gv }})
	e.setVideos(model.VideoSettings{Enabled: true, MaxFileBytes: 1 << 20, MaxFeedBytes: 1 << 20})
	done := make(chan error, 1)
	go func() { done <- e.fetchNow() }()
	<-gv.reached
	// The owner connects another account while the first video downloads.
	e.connect(e.id, sandbox.AccountBusiness)
	close(gv.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	d := e.doc(t, "limit=100")
	var want []string
	for _, p := range d.Posts {
		for _, o := range old {
			if p.ID == o {
				t.Fatalf("post %s of the previous account is served", o)
			}
		}
		if p.Video != nil {
			name, _ := strings.CutPrefix(p.Video.URL, "https://feeds.example.com/media/")
			want = append(want, name)
		}
	}
	downloaded := false
	for p := range e.cdnPaths() {
		downloaded = downloaded || strings.HasSuffix(p, ".mp4") && strings.Contains(p, "/"+old[0]+"_")
	}
	if !downloaded {
		t.Fatal("the previous account's reel was never downloaded: the test did not race the reconnect")
	}
	got := e.storedVideoFiles()
	slices.Sort(got)
	slices.Sort(want)
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Fatalf("video files on disk %v, want exactly the new account's served videos %v", got, want)
	}
}

// A further account's videos and reels are stored like the first
// account's: a feed on the business account with the creator added plays
// the creator's videos in place.
func TestVideosOfAFurtherAccountAreStored(t *testing.T) {
	e := newEnv(t, envOptions{account: sandbox.AccountBusiness})
	e.setVideos(model.VideoSettings{Enabled: true, MaxFileBytes: 1 << 20, MaxFeedBytes: 1 << 20})
	e.addSource(sandbox.AccountCreator)
	creator, err := e.sb.Posts(sandbox.AccountCreator)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range creator {
		if p.MediaType == sandbox.MediaVideo {
			want = append(want, p.ID)
		}
	}
	if err := e.fetchNow(); err != nil {
		t.Fatal(err)
	}
	d := e.doc(t, "limit=100")
	got := videosOf(d)
	for _, id := range want {
		if got[id] == "" {
			t.Errorf("the further account's video %s has no stored file: videos %v", id, got)
		}
	}
	if len(want) != 2 || len(e.storedVideoFiles()) < len(want) {
		t.Fatalf("%d creator videos, %d files stored", len(want), len(e.storedVideoFiles()))
	}
}
