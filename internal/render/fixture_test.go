package render

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/feedd/feedd/internal/feed"
	"github.com/feedd/feedd/internal/model"
)

// hostile is a caption written to break out of the markup.
const hostile = `"><img src=x onerror="window.pwned=1"><script>window.pwned=2</script></p></li></ul><b>&amp; ' " <3`

// fakeSource serves documents built by testPosts, paged like the feed
// service (cursor = base64url("ts:id")), and counts calls.
type fakeSource struct {
	mu      sync.Mutex
	base    string // media URL base
	feeds   map[string][]feed.Post
	account *feed.Account
	allowed []string
	calls   int
	err     error // returned by every call when set
}

func newFakeSource(base string) *fakeSource {
	return &fakeSource{
		base:    base,
		feeds:   map[string][]feed.Post{"demo": testPosts(base, 30), "other": testPosts(base, 5)},
		account: testAccount(base),
	}
}

func (f *fakeSource) Doc(ctx context.Context, id string, limit int, after string, types []string) (*feed.Doc, []string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, nil, f.err
	}
	if _, err := feed.NewQuery(limit, after, types); err != nil {
		return nil, nil, err
	}
	if id == "broken" {
		return nil, nil, errors.New("fake: store unavailable")
	}
	posts, ok := f.feeds[id]
	if !ok {
		return nil, nil, fmt.Errorf("fake: %q: %w", id, model.ErrNotFound)
	}
	if limit == 0 {
		limit = feed.DefaultLimit
	}
	start := 0
	if after != "" {
		raw, _ := base64.RawURLEncoding.DecodeString(after)
		_, pid, _ := strings.Cut(string(raw), ":")
		for i := range posts {
			if posts[i].ID == pid {
				start = i + 1
			}
		}
	}
	end := min(start+limit, len(posts))
	doc := &feed.Doc{Version: 1, ID: id, Account: f.account, Posts: posts[start:end]}
	if end < len(posts) {
		p := posts[end-1]
		next := base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(p.Timestamp.Unix(), 10) + ":" + p.ID))
		doc.Next = &next
	}
	return doc, f.allowed, nil
}

func testAccount(base string) *feed.Account {
	return &feed.Account{
		Username: "acme", Name: "Acme <Studio>", ProfileURL: "https://www.instagram.com/acme/",
		Avatar:         &feed.Image{URL: base + "/media/avatar-150.png", Width: 150, Height: 150},
		FollowersCount: ptr(int64(12840)), MediaCount: ptr(int64(60)),
	}
}

func ptr[T any](v T) *T { return &v }

// ratios cycles through the shapes Instagram allows: square, portrait 4:5,
// landscape 1.91:1.
var ratios = [][2]int{{1, 1}, {4, 5}, {191, 100}}

// testImages lists the stored sizes (320, 640, 1080 wide) of a picture.
func testImages(base, key string, r [2]int) []feed.Image {
	var out []feed.Image
	for _, w := range []int{320, 640, 1080} {
		h := w * r[1] / r[0]
		out = append(out, feed.Image{URL: fmt.Sprintf("%s/media/%s-%d-%dx%d.png", base, key, w, r[0], r[1]), Width: w, Height: h})
	}
	return out
}

var palette = []string{"#c0392b", "#2980b9", "#27ae60", "#8e44ad", "#f39c12", "#16a085"}

// testPosts makes n posts, newest first: post 1 has a hostile caption,
// post 5 has no alt text, every 4th is a carousel of three, every 5th a video.
func testPosts(base string, n int) []feed.Post {
	t0 := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	posts := make([]feed.Post, n)
	for i := range posts {
		id := fmt.Sprintf("p%02d", i)
		caption := fmt.Sprintf("Post number %d from the studio. #acme", i)
		if i == 1 {
			caption = hostile
		}
		p := feed.Post{
			ID: id, Type: feed.TypeImage, Permalink: "https://www.instagram.com/p/" + id + "/",
			Timestamp: t0.Add(-time.Duration(i) * time.Hour), Caption: &caption,
			Alt: fmt.Sprintf("Photo %d of the studio", i), Color: palette[i%len(palette)],
			Images: testImages(base, id, ratios[i%len(ratios)]),
		}
		if i == 5 {
			p.Alt = "" // no alt from the feed: the caption stands in
		}
		// The feed shows two accounts: post 4 is the second's.
		p.Username = "acme"
		if i == 4 {
			p.Username = "acme_two"
		}
		switch {
		case i%4 == 3:
			p.Type = feed.TypeCarousel
			for j := range 3 {
				cid := fmt.Sprintf("%s-c%d", id, j)
				p.Children = append(p.Children, feed.Child{ID: cid, Type: feed.TypeImage, Alt: fmt.Sprintf("Slide %d of post %d", j+1, i),
					Color: palette[(i+j)%len(palette)], Images: testImages(base, cid, ratios[j%len(ratios)])})
			}
			p.Images = p.Children[0].Images
		case i%5 == 4:
			p.Type = feed.TypeVideo
			p.IsReel = true
		}
		posts[i] = p
	}
	return posts
}
