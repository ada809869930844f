package graph

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// pagedServer serves media_page1.json then, for an "after" cursor, media_page2.json.
func pagedServer(t *testing.T, base *string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != mount+"/graph/v25.0/me/media" {
			t.Errorf("path = %s", r.URL.Path)
		}
		if got := r.URL.Query().Get("access_token"); got != testToken {
			t.Errorf("access_token = %q, want the caller's token on every page", got)
		}
		if r.URL.Query().Get("after") == "" {
			reply(w, 200, fixture(t, "media_page1.json", *base))
			return
		}
		reply(w, 200, fixture(t, "media_page2.json", *base))
	}
}

func TestMediaFollowsPagingAndDecodesQuirks(t *testing.T) {
	var base string
	e := newEnv(t, pagedServer(t, &base))
	base = e.f.graphURL()

	items, err := e.c.Media(context.Background(), testAcct, testToken, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 4 {
		t.Fatalf("%d items, want 4 (3 + 1, then no next)", len(items))
	}
	calls := e.f.calls()
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2", len(calls))
	}
	if q := calls[0].Query; q.Get("fields") != MediaFields || q.Get("limit") != "10" {
		t.Errorf("first page query = %v", q)
	}

	img, car, reel, vid := items[0], items[1], items[2], items[3]
	if img.Caption == nil || !strings.Contains(*img.Caption, "\nout of the oven <script>") {
		t.Errorf("caption not kept verbatim: %v", img.Caption)
	}
	if want := time.Date(2021, 8, 13, 8, 25, 28, 0, time.UTC); !img.Timestamp.Equal(want) {
		t.Errorf("+0000 timestamp = %v, want %v", img.Timestamp, want)
	}
	if want := time.Date(2021, 8, 12, 17, 0, 0, 0, time.UTC); !car.Timestamp.Equal(want) {
		t.Errorf("+0200 timestamp = %v, want %v", car.Timestamp, want)
	}
	if want := time.Date(2021, 8, 10, 6, 0, 0, 0, time.UTC); !vid.Timestamp.Equal(want) {
		t.Errorf("RFC 3339 timestamp = %v, want %v", vid.Timestamp, want)
	}
	if img.LikeCount == nil || *img.LikeCount != 42 || img.AltText == nil || *img.AltText != "A loaf of bread on a wooden board" {
		t.Errorf("image counts/alt = %v %v", img.LikeCount, img.AltText)
	}
	if car.LikeCount == nil || *car.LikeCount != 0 {
		t.Errorf("a zero like_count must stay present as 0, got %v", car.LikeCount)
	}
	if len(car.Children) != 2 || car.Children[0].MediaType != "VIDEO" || car.Children[1].AltText == nil {
		t.Fatalf("children = %+v", car.Children)
	}
	if got := car.CoverURL(); !strings.Contains(got, "child2.jpg") {
		t.Errorf("carousel cover = %s, want the first image child (not its video media_url)", got)
	}
	if reel.Caption != nil || reel.LikeCount != nil || reel.MediaURL != "" || reel.AltText != nil {
		t.Errorf("absent fields must stay absent: %+v", reel)
	}
	if reel.CommentsCount == nil || *reel.CommentsCount != 12 {
		t.Errorf("comments_count = %v", reel.CommentsCount)
	}
	if !reel.IsReel() || img.IsReel() || vid.IsReel() {
		t.Errorf("IsReel: reel=%v image=%v video=%v", reel.IsReel(), img.IsReel(), vid.IsReel())
	}
	if got := reel.CoverURL(); !strings.Contains(got, "reel-cover.jpg") {
		t.Errorf("reel without media_url: cover = %s", got)
	}
	if got := vid.CoverURL(); !strings.Contains(got, "clip-cover.jpg") {
		t.Errorf("video cover = %s, want its thumbnail", got)
	}
	if got := img.CoverURL(); !strings.Contains(got, "img1.jpg") {
		t.Errorf("image cover = %s", got)
	}
	if vid.Caption == nil || *vid.Caption != "" {
		t.Errorf("an empty caption is present and empty, got %v", vid.Caption)
	}
}

func TestMediaStopsAtCount(t *testing.T) {
	var base string
	e := newEnv(t, pagedServer(t, &base))
	base = e.f.graphURL()
	items, err := e.c.Media(context.Background(), testAcct, testToken, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || e.f.count() != 1 {
		t.Errorf("got %d items in %d calls, want 2 in 1", len(items), e.f.count())
	}
	if got := e.f.calls()[0].Query.Get("limit"); got != "2" {
		t.Errorf("limit = %s", got)
	}
}

func TestMediaLimitCappedAt100(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, []byte(`{"data":[]}`))
	})
	items, err := e.c.Media(context.Background(), testAcct, testToken, 500)
	if err != nil || len(items) != 0 {
		t.Fatalf("items=%v err=%v", items, err)
	}
	if got := e.f.calls()[0].Query.Get("limit"); got != "100" {
		t.Errorf("limit = %s, want 100", got)
	}
}

func TestMediaRefusesForeignNextURL(t *testing.T) {
	var foreign atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		foreign.Add(1)
	}))
	defer other.Close()
	for name, next := range map[string]string{
		"other host":        other.URL + "/mnt/graph/v25.0/me/media?after=x&access_token=IGAAtokenFROMnext",
		"outside the mount": "{{SELF}}/elsewhere/me/media?after=x&access_token=IGAAtokenFROMnext",
		"not a URL":         "::%zz&access_token=IGAAtokenFROMnext",
	} {
		t.Run(name, func(t *testing.T) {
			var self string
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				n := strings.ReplaceAll(next, "{{SELF}}", self)
				reply(w, 200, []byte(`{"data":[{"id":"1","media_type":"IMAGE"}],"paging":{"next":"`+n+`"}}`))
			})
			self = e.f.srv.URL
			_, err := e.c.Media(context.Background(), testAcct, testToken, 5)
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("err = %v, want ErrBadRequest", err)
			}
			assertNoSecrets(t, "error", err.Error())
			if e.f.count() != 1 {
				t.Errorf("%d calls to the Graph fake, want 1", e.f.count())
			}
		})
	}
	if foreign.Load() != 0 {
		t.Errorf("the client followed paging.next to another host %d times", foreign.Load())
	}
}

func TestMediaRejectsBadCount(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := e.c.Media(context.Background(), testAcct, testToken, 0); !errors.Is(err, ErrBadRequest) {
		t.Errorf("n=0: err = %v", err)
	}
	if e.f.count() != 0 {
		t.Errorf("a bad argument reached the network")
	}
}

func TestMediaWalksPastEmptyPages(t *testing.T) {
	var self string
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("after") {
		case "":
			reply(w, 200, []byte(`{"data":[],"paging":{"next":"`+self+`/v25.0/me/media?after=p2"}}`))
		default:
			reply(w, 200, []byte(`{"data":[{"id":"7","media_type":"IMAGE"}]}`))
		}
	})
	self = e.f.graphURL()
	items, err := e.c.Media(context.Background(), testAcct, testToken, 5)
	if err != nil || len(items) != 1 || e.f.count() != 2 {
		t.Fatalf("items=%d err=%v calls=%d; a page emptied by deletions must not end the walk", len(items), err, e.f.count())
	}
}

func TestMediaPagingLoopsEnd(t *testing.T) {
	var self string
	var n atomic.Int32
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		// Every page is empty and names a fresh next page: a walk without end.
		reply(w, 200, []byte(`{"data":[],"paging":{"next":"`+self+`/v25.0/me/media?after=`+strconv.Itoa(int(n.Add(1)))+`"}}`))
	})
	self = e.f.graphURL()
	_, err := e.c.Media(context.Background(), testAcct, testToken, 5)
	if err == nil || e.f.count() > 10 {
		t.Fatalf("err=%v calls=%d; want an error after a bounded number of pages", err, e.f.count())
	}

	// A next link back to the same page ends the walk at once.
	e2 := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, []byte(`{"data":[{"id":"1","media_type":"IMAGE"}],"paging":{"next":"`+self+`/v25.0/me/media?after=same"}}`))
	})
	self = e2.f.graphURL()
	items, err := e2.c.Media(context.Background(), testAcct, testToken, 5)
	if err != nil || e2.f.count() != 2 || len(items) != 1 {
		t.Fatalf("items=%d err=%v calls=%d", len(items), err, e2.f.count())
	}
}

// mediaPageJSON builds a page of n carousels with two children each.
func mediaPageJSON(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"data":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		id := strconv.Itoa(18030000000000000 + i)
		b.WriteString(`{"id":"` + id + `","caption":"Post ` + id + ` with emoji 🍞 and a\nline break #bread","media_type":"CAROUSEL_ALBUM",` +
			`"media_url":"https://scontent.cdninstagram.com/v/t51.29350-15/` + id + `_n.jpg?stp=dst-jpg_e35&_nc_cat=1&oh=00_AfAbCdEf&oe=6720F1A2",` +
			`"permalink":"https://www.instagram.com/p/C` + id + `/","timestamp":"2026-08-13T08:25:28+0000","username":"lakeside.bakery",` +
			`"like_count":` + strconv.Itoa(i*3) + `,"comments_count":` + strconv.Itoa(i) + `,"alt_text":"Photo by Lakeside Bakery",` +
			`"children":{"data":[` +
			`{"id":"` + id + `1","media_type":"IMAGE","media_url":"https://scontent.cdninstagram.com/v/c1.jpg?oh=00_X&oe=6720F1A2"},` +
			`{"id":"` + id + `2","media_type":"VIDEO","media_url":"https://video.cdninstagram.com/v/c2.mp4?oh=00_Y&oe=6720F1A2",` +
			`"thumbnail_url":"https://scontent.cdninstagram.com/v/c2.jpg?oh=00_Z&oe=6720F1A2"}]}}`)
	}
	b.WriteString(`],"paging":{"cursors":{"before":"QVFI","after":"QVFJ"},"next":"https://graph.instagram.com/v25.0/me/media?after=QVFJ&access_token=IGAAx"}}`)
	return []byte(b.String())
}
