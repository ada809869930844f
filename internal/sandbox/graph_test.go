package sandbox

import (
	"bytes"
	"encoding/json"
	"image/jpeg"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const allMediaFields = "id,caption,media_type,media_url,permalink,thumbnail_url,timestamp,username,like_count,comments_count,alt_text,children{id,media_type,media_url,thumbnail_url,alt_text}"

type mediaItem struct {
	ID            string  `json:"id"`
	Caption       *string `json:"caption"`
	MediaType     string  `json:"media_type"`
	MediaURL      *string `json:"media_url"`
	Permalink     string  `json:"permalink"`
	ThumbnailURL  *string `json:"thumbnail_url"`
	Timestamp     string  `json:"timestamp"`
	Username      string  `json:"username"`
	LikeCount     *int    `json:"like_count"`
	CommentsCount *int    `json:"comments_count"`
	AltText       *string `json:"alt_text"`
	Children      *struct {
		Data []mediaItem `json:"data"`
	} `json:"children"`
}

type mediaPage struct {
	Data   []mediaItem `json:"data"`
	Paging *struct {
		Cursors struct {
			Before, After string
		} `json:"cursors"`
		Next     string `json:"next"`
		Previous string `json:"previous"`
	} `json:"paging"`
}

func decodePage(t *testing.T, r result) mediaPage {
	t.Helper()
	var p mediaPage
	if r.status != 200 {
		t.Fatalf("media: %d %s", r.status, r.body)
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("media page: %v", err)
	}
	return p
}

// allMedia walks /me/media through paging.next the way a client would.
func (e *env) allMedia(tok string, limit string) ([]mediaItem, int) {
	e.t.Helper()
	u := e.sb.GraphURL() + "/v25.0/me/media?" + url.Values{"fields": {allMediaFields}, "limit": {limit}, "access_token": {tok}}.Encode()
	var items []mediaItem
	pages := 0
	for u != "" {
		p := decodePage(e.t, e.get(u))
		pages++
		items = append(items, p.Data...)
		u = ""
		if p.Paging != nil {
			u = p.Paging.Next
		}
		if pages > 20 {
			e.t.Fatal("paging does not end")
		}
	}
	return items, pages
}

func TestMediaPagingWalksAllPosts(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.longToken(AccountBusiness)
	items, pages := e.allMedia(tok, "25")
	if len(items) != 60 || pages != 3 {
		t.Fatalf("got %d items in %d pages, want 60 in 3", len(items), pages)
	}
	seen := map[string]bool{}
	var prev time.Time
	for i, it := range items {
		if seen[it.ID] {
			t.Fatalf("duplicate %s", it.ID)
		}
		seen[it.ID] = true
		ts, err := time.Parse(TimestampLayout, it.Timestamp)
		if err != nil || !strings.HasSuffix(it.Timestamp, "+0000") {
			t.Fatalf("timestamp %q: %v", it.Timestamp, err)
		}
		if i > 0 && !ts.Before(prev) {
			t.Fatalf("not newest first at %d: %s after %s", i, ts, prev)
		}
		prev = ts
		if it.Username != AccountBusiness {
			t.Fatalf("username %q", it.Username)
		}
	}

	// First page: next embeds the token and the version path under the mount prefix.
	p := decodePage(t, e.graph("/v25.0/me/media", url.Values{"limit": {"25"}, "access_token": {tok}}))
	if p.Paging == nil || !strings.HasPrefix(p.Paging.Next, e.base+"/graph/v25.0/me/media?") ||
		!strings.Contains(p.Paging.Next, "access_token=") || p.Paging.Previous != "" || p.Paging.Cursors.After == "" {
		t.Fatalf("paging of first page: %+v", p.Paging)
	}
	// Default fields: only id.
	if raw := e.graph("/v25.0/me/media", url.Values{"limit": {"1"}, "access_token": {tok}}).body; strings.Contains(string(raw), "media_type") {
		t.Fatalf("default fields should be id only: %s", raw)
	}
	// Last page has no next; previous works.
	walk := decodePage(t, e.graph("/v25.0/me/media", url.Values{"limit": {"50"}, "access_token": {tok}}))
	last := decodePage(t, e.get(walk.Paging.Next))
	if len(last.Data) != 10 || last.Paging.Next != "" || last.Paging.Previous == "" {
		t.Fatalf("last page: %d items, paging %+v", len(last.Data), last.Paging)
	}
	back := decodePage(t, e.get(last.Paging.Previous))
	if len(back.Data) != 50 || back.Data[0].ID != walk.Data[0].ID {
		t.Fatalf("previous page: %d items", len(back.Data))
	}
	// Stepping back (limit 5) from the page of the second post yields only the first post.
	first := decodePage(t, e.graph("/v25.0/me/media", url.Values{"limit": {"1"}, "access_token": {tok}}))
	next := decodePage(t, e.get(first.Paging.Next))
	earlier := decodePage(t, e.graph("/v25.0/me/media", url.Values{"limit": {"5"}, "before": {next.Paging.Cursors.Before}, "access_token": {tok}}))
	if len(earlier.Data) != 1 || earlier.Data[0].ID != first.Data[0].ID || earlier.Paging.Previous != "" {
		t.Fatalf("before cursor from the first item: %+v", earlier)
	}
}

func TestMediaLimitAndCursorValidation(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.longToken(AccountBusiness)
	if p := decodePage(t, e.graph("/v25.0/me/media", url.Values{"limit": {"500"}, "access_token": {tok}})); len(p.Data) != 60 {
		t.Fatalf("limit 500 clamps to 100, so all 60 fit: got %d", len(p.Data))
	}
	if p := decodePage(t, e.graph("/v25.0/me/media", url.Values{"limit": {"100"}, "access_token": {tok}})); p.Paging.Next != "" {
		t.Fatalf("a page holding the last post has no next: %q", p.Paging.Next)
	}
	for name, v := range map[string]url.Values{
		"non-numeric limit": {"limit": {"ten"}, "access_token": {tok}},
		"garbage cursor":    {"after": {"!!!"}, "access_token": {tok}},
		"foreign cursor":    {"after": {encodeCursor("1")}, "access_token": {tok}},
		"unknown field":     {"fields": {"id,views"}, "access_token": {tok}},
		"bad nesting":       {"fields": {"id,children{id"}, "access_token": {tok}},
		"unknown child":     {"fields": {"children{id,views}"}, "access_token": {tok}},
		"nested twice":      {"fields": {"children{children{id}}"}, "access_token": {tok}},
	} {
		t.Run(name, func(t *testing.T) {
			if code, _, _, _ := graphErr(t, e.graph("/v25.0/me/media", v)); code != 100 {
				t.Fatalf("code %d, want 100", code)
			}
		})
	}
}

func TestMediaFieldsAndQuirks(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.longToken(AccountBusiness)
	r := e.graph("/v25.0/me/media", url.Values{"fields": {allMediaFields}, "limit": {"12"}, "access_token": {tok}})
	// Live traffic escapes "/" and non-ASCII; decoders must cope.
	if !bytes.Contains(r.body, []byte(`https:\/\/`)) && !bytes.Contains(r.body, []byte(`http:\/\/`)) || !bytes.Contains(r.body, []byte(`\ud83c\udf5e`)) {
		t.Fatalf("body lacks Graph-style escapes: %.300s", r.body)
	}
	if bytes.Contains(r.body, []byte("null")) {
		t.Fatal("optional fields must be absent, never null")
	}
	items := decodePage(t, r).Data
	posts, _ := e.sb.Posts(AccountBusiness)
	find := func(pred func(Post) bool) (Post, mediaItem) {
		t.Helper()
		for i, p := range posts[:12] {
			if pred(p) {
				return p, items[i]
			}
		}
		t.Fatal("seed lacks a post the test needs")
		return Post{}, mediaItem{}
	}

	if p, it := find(func(p Post) bool { return p.Caption == "" }); it.Caption != nil || p.MediaType != MediaImage {
		t.Errorf("post without caption has caption %v", it.Caption)
	}
	if _, it := find(func(p Post) bool { return p.HideLikes }); it.LikeCount != nil || it.CommentsCount == nil {
		t.Errorf("hidden likes: like_count %v, comments_count %v", it.LikeCount, it.CommentsCount)
	}
	if _, it := find(func(p Post) bool { return p.Reel && !p.HasMediaURL }); it.MediaURL != nil || it.ThumbnailURL == nil || !strings.Contains(it.Permalink, "/reel/") {
		t.Errorf("reel with licensed audio: media_url %v thumbnail %v permalink %s", it.MediaURL, it.ThumbnailURL, it.Permalink)
	}
	if _, it := find(func(p Post) bool { return p.Reel && p.HasMediaURL }); it.MediaType != MediaVideo || it.MediaURL == nil || it.ThumbnailURL == nil {
		t.Errorf("reel: %+v", it)
	}
	if _, it := find(func(p Post) bool { return p.MediaType == MediaVideo && !p.Reel }); !strings.Contains(it.Permalink, "/p/") {
		t.Errorf("plain video permalink %s", it.Permalink)
	}
	if _, it := find(func(p Post) bool { return p.MediaType == MediaImage && p.AltText != "" }); it.AltText == nil || it.ThumbnailURL != nil {
		t.Errorf("image with alt text: alt %v, thumbnail %v (images have none)", it.AltText, it.ThumbnailURL)
	}
	if _, it := find(func(p Post) bool { return strings.Contains(p.Caption, "<script>") }); it.Caption == nil || !strings.Contains(*it.Caption, "<script>alert(1)</script>") {
		t.Errorf("hostile caption must arrive verbatim: %v", it.Caption)
	}
	_, ten := find(func(p Post) bool { return len(p.Children) == 10 })
	if ten.Children == nil || len(ten.Children.Data) != 10 || ten.ThumbnailURL != nil {
		t.Fatalf("10-child carousel: %+v", ten)
	}
	first := ten.Children.Data[0]
	if first.MediaType != MediaVideo || ten.MediaURL == nil || first.MediaURL == nil || *ten.MediaURL != *first.MediaURL || first.ThumbnailURL == nil {
		t.Errorf("carousel media_url must be its first (video) child's: %v vs %v", ten.MediaURL, first.MediaURL)
	}
	types := map[string]bool{}
	for _, c := range ten.Children.Data {
		types[c.MediaType] = true
		if c.Caption != nil || c.LikeCount != nil || c.Children != nil {
			t.Errorf("child carries parent-only fields: %+v", c)
		}
	}
	if !types[MediaImage] || !types[MediaVideo] {
		t.Errorf("carousel children not mixed: %v", types)
	}

	// Only requested fields (plus id, which the Graph API always adds).
	r = e.graph("/v25.0/me/media", url.Values{"fields": {"caption"}, "limit": {"1"}, "access_token": {tok}})
	var only struct{ Data []map[string]any }
	_ = json.Unmarshal(r.body, &only)
	if keys := mapKeys(only.Data[0]); !slices.Equal(keys, []string{"caption", "id"}) {
		t.Errorf("fields=caption returned %v", keys)
	}
	// children without braces: ids only, still wrapped in data.
	r = e.graph("/v25.0/me/media", url.Values{"fields": {"children"}, "limit": {"3"}, "access_token": {tok}})
	if !bytes.Contains(r.body, []byte(`"children":{"data":[{"id":"`)) {
		t.Errorf("bare children: %s", r.body)
	}
}

func mapKeys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestMeFieldsAndAccounts(t *testing.T) {
	e := newEnv(t, Options{})
	if accts := e.sb.Accounts(); len(accts) != 3 {
		t.Fatalf("want 3 seeded accounts, got %d", len(accts))
	}
	types := map[string]string{AccountBusiness: "BUSINESS", AccountCreator: "MEDIA_CREATOR", AccountPersonal: "PERSONAL"}
	for name, typ := range types {
		tok := e.longToken(name)
		me := e.graph("/v25.0/me", url.Values{"fields": {"user_id,username,name,account_type,profile_picture_url,followers_count,follows_count,media_count"},
			"access_token": {tok}}).json(t)
		a := mustAccount(t, e.sb, name)
		if me["account_type"] != typ || me["id"] != a.ID || me["media_count"].(json.Number).String() != strconv.Itoa(a.MediaCount) {
			t.Errorf("%s: /me = %v", name, me)
		}
		pic := e.get(me["profile_picture_url"].(string))
		if cfg, err := jpeg.DecodeConfig(bytes.NewReader(pic.body)); err != nil || (!testing.Short() && (cfg.Width != 150 || cfg.Height != 150)) {
			t.Errorf("%s: profile picture %v %dx%d", name, err, cfg.Width, cfg.Height)
		}
	}
	biz := mustAccount(t, e.sb, AccountBusiness)
	if biz.MediaCount < 55 {
		t.Errorf("business account has %d posts; paging past 50 needs more", biz.MediaCount)
	}
	tok := e.longToken(AccountCreator)
	me := e.graph("/v25.0/me", url.Values{"access_token": {tok}}).json(t)
	if len(me) != 1 || me["id"] == nil {
		t.Errorf("/me without fields = %v, want id only", me)
	}
	if code, _, _, _ := graphErr(t, e.graph("/v25.0/me", url.Values{"fields": {"id,email"}, "access_token": {tok}})); code != 100 {
		t.Errorf("unknown /me field: code %d", code)
	}
	if code, _, _, _ := graphErr(t, e.graph("/v25.0/nothing/here", url.Values{"access_token": {tok}})); code != 2500 {
		t.Errorf("unknown path: code %d", code)
	}
}

func TestMediaNode(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.longToken(AccountBusiness)
	posts, _ := e.sb.Posts(AccountBusiness)
	var carousel Post
	for _, p := range posts {
		if p.MediaType == MediaCarousel {
			carousel = p
			break
		}
	}
	r := e.graph("/v25.0/"+carousel.ID+"/children", url.Values{"fields": {"id,media_type"}, "access_token": {tok}})
	var kids struct{ Data []mediaItem }
	if err := json.Unmarshal(r.body, &kids); err != nil || len(kids.Data) != len(carousel.Children) {
		t.Fatalf("children edge: %s", r.body)
	}
	other := e.longToken(AccountCreator)
	if code, _, _, _ := graphErr(t, e.graph("/v25.0/"+carousel.ID, url.Values{"access_token": {other}})); code != 100 {
		t.Fatalf("another account's media must not be readable: code %d", code)
	}
}

func TestSeedIsDeterministic(t *testing.T) {
	at := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	a, b, c := New(Options{Seed: 7, Now: at}), New(Options{Seed: 7, Now: at}), New(Options{Seed: 8, Now: at})
	pa, _ := a.Posts(AccountBusiness)
	pb, _ := b.Posts(AccountBusiness)
	pc, _ := c.Posts(AccountBusiness)
	if !slices.Equal(a.Accounts(), b.Accounts()) || pa[0].ID != pb[0].ID || pa[59].Timestamp != pb[59].Timestamp {
		t.Fatal("same seed and clock gave different accounts or posts")
	}
	if slices.Equal(a.Accounts(), c.Accounts()) || pa[0].ID == pc[0].ID {
		t.Fatal("another seed gave the same ids")
	}
}
