package sandbox

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func oeOf(t *testing.T, raw string) time.Time {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	oe := u.Query().Get("oe")
	n, err := strconv.ParseUint(oe, 16, 32)
	if err != nil || len(oe) != 8 {
		t.Fatalf("oe %q is not 8 hex digits", oe)
	}
	return time.Unix(int64(n), 0)
}

func TestCDNServesGeneratedPicturesOfEachShape(t *testing.T) {
	if testing.Short() {
		t.Skip("draws full-size pictures")
	}
	e := newEnv(t, Options{})
	tok := e.longToken(AccountBusiness)
	items, _ := e.allMedia(tok, "100")
	want := map[[2]int]bool{{1080, 1080}: false, {1080, 1350}: false, {1080, 566}: false, {1080, 1920}: false}
	seen := map[string]bool{}
	for _, it := range items[:12] {
		for _, u := range []*string{it.MediaURL, it.ThumbnailURL} {
			if u == nil || strings.Contains(*u, ".mp4") {
				continue
			}
			r := e.get(*u)
			if r.status != 200 || r.header.Get("Content-Type") != "image/jpeg" || r.header.Get("Cross-Origin-Resource-Policy") != "same-origin" {
				t.Fatalf("%d %v", r.status, r.header)
			}
			img, err := jpeg.Decode(bytes.NewReader(r.body))
			if err != nil {
				t.Fatal(err)
			}
			b := img.Bounds()
			want[[2]int{b.Dx(), b.Dy()}] = true
			key := string(r.body)
			if seen[key] {
				t.Fatalf("two posts got identical pictures")
			}
			seen[key] = true
		}
	}
	for size, ok := range want {
		if !ok {
			t.Errorf("no picture of size %v among the first posts", size)
		}
	}
}

func TestCDNPictureVaries(t *testing.T) {
	a := renderJPEG(imageSpec{w: 200, h: 250, seed: 1, label: "7"})
	b := renderJPEG(imageSpec{w: 200, h: 250, seed: 2, label: "8"})
	ia, err := jpeg.Decode(bytes.NewReader(a))
	if err != nil || bytes.Equal(a, b) {
		t.Fatalf("pictures must decode and differ: %v", err)
	}
	if ia.Bounds() != image.Rect(0, 0, 200, 250) {
		t.Fatalf("size %v", ia.Bounds())
	}
	// The centre (digit) is brighter than a plain gradient would be: the label is drawn.
	r, g, bl, _ := ia.At(100, 125).RGBA()
	if r+g+bl == 0 {
		t.Fatal("centre is black")
	}
}

func TestCDNSignatureAndExpiry(t *testing.T) {
	e := newEnv(t, Options{DisableImageGenerator: true})
	tok := e.longToken(AccountBusiness)
	me := e.graph("/v25.0/me", url.Values{"fields": {"profile_picture_url"}, "access_token": {tok}}).json(t)
	pic := me["profile_picture_url"].(string)
	if !strings.HasPrefix(pic, e.base+"/cdn/v/t51.2885-19/") || !strings.Contains(pic, "oh=") {
		t.Fatalf("profile picture URL %s", pic)
	}
	if got := oeOf(t, pic); got.Sub(e.clock.Now()) < 48*time.Hour {
		t.Fatalf("default expiry should be days ahead, got %s", got.Sub(e.clock.Now()))
	}
	if r := e.get(pic); r.status != 200 {
		t.Fatalf("fresh URL: %d %s", r.status, r.body)
	}

	tamper := func(key, val string) string {
		u, _ := url.Parse(pic)
		q := u.Query()
		q.Set(key, val)
		u.RawQuery = q.Encode()
		return u.String()
	}
	for name, u := range map[string]string{
		"wrong oh":          tamper("oh", "00_AAAA"),
		"extended oe":       tamper("oe", "7fffffff"),
		"other path":        strings.Replace(pic, "_n.jpg", "_x.jpg", 1),
		"generation forged": tamper("_nc_ohc", "sbx9"),
	} {
		if r := e.get(u); r.status != 403 || string(r.body) != MsgBadURLHash {
			t.Errorf("%s: %d %q, want 403 %q", name, r.status, r.body, MsgBadURLHash)
		}
	}

	e.clock.Add(oeOf(t, pic).Sub(e.clock.Now()))
	if r := e.get(pic); r.status != 403 || string(r.body) != MsgURLExpired {
		t.Fatalf("at oe: %d %q, want 403 %q", r.status, r.body, MsgURLExpired)
	}
}

func TestCDNExpireAndShortLivedURLs(t *testing.T) {
	e := newEnv(t, Options{DisableImageGenerator: true})
	tok := e.longToken(AccountBusiness)
	page := func() []mediaItem {
		return decodePage(t, e.graph("/v25.0/me/media", url.Values{"fields": {"media_type,media_url,thumbnail_url"}, "limit": {"3"}, "access_token": {tok}})).Data
	}
	items := page()
	old := *items[0].MediaURL
	if r := e.get(old); r.status != 200 {
		t.Fatalf("fresh: %d", r.status)
	}
	// Video covers expire sooner than pictures.
	if reel := items[1]; reel.ThumbnailURL == nil || !oeOf(t, *reel.ThumbnailURL).Before(oeOf(t, old)) {
		t.Fatalf("video cover should expire before the image URL")
	}

	e.sb.ExpireMediaURLs()
	if r := e.get(old); r.status != 403 || string(r.body) != MsgURLExpired {
		t.Fatalf("after ExpireMediaURLs: %d %q", r.status, r.body)
	}
	fresh := *page()[0].MediaURL
	if fresh == old || e.get(fresh).status != 200 {
		t.Fatal("URLs minted after ExpireMediaURLs must work")
	}

	e.sb.SetMediaURLTTL(-time.Minute, -time.Minute)
	if r := e.get(*page()[0].MediaURL); r.status != 403 || string(r.body) != MsgURLExpired {
		t.Fatalf("already-expiring URL: %d %q", r.status, r.body)
	}
}

func TestPermalinkPageEscapesCaption(t *testing.T) {
	e := newEnv(t, Options{DisableImageGenerator: true})
	tok := e.longToken(AccountBusiness)
	for _, it := range decodePage(t, e.graph("/v25.0/me/media", url.Values{"fields": {"caption,permalink"}, "limit": {"12"}, "access_token": {tok}})).Data {
		if it.Caption == nil || !strings.Contains(*it.Caption, "<") {
			continue
		}
		r := e.get(it.Permalink)
		if r.status != 200 || bytes.Contains(r.body, []byte("<script>alert")) || bytes.Contains(r.body, []byte("<img src=x")) ||
			!bytes.Contains(r.body, []byte("feedd sandbox — not Instagram")) {
			t.Fatalf("permalink page %s: %d\n%s", it.Permalink, r.status, r.body)
		}
	}
	if r := e.get(e.base + "/www/p/nothing/"); r.status != 404 {
		t.Fatalf("unknown permalink: %d", r.status)
	}
}

func BenchmarkRenderPortrait(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		renderJPEG(imageSpec{w: 1080, h: 1350, seed: uint64(i), label: "42"})
	}
}

func BenchmarkRenderReelCover(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		renderJPEG(imageSpec{w: 1080, h: 1920, seed: uint64(i), label: "7", video: true})
	}
}

func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		New(Options{})
	}
}

func TestWarmFillsTheCache(t *testing.T) {
	sb := New(Options{DisableImageGenerator: true})
	sb.Warm(context.Background(), 2)
	sb.imgMu.Lock()
	n := len(sb.imgCache)
	sb.imgMu.Unlock()
	// 3 profile pictures + bakery's 2 newest (image, reel cover) + studio's (reel cover, image) + personal's 2.
	if n != 9 {
		t.Fatalf("warm drew %d pictures, want 9", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fresh := New(Options{DisableImageGenerator: true})
	fresh.Warm(ctx, 60)
	if len(fresh.imgCache) != 0 {
		t.Fatal("Warm ignored a cancelled context")
	}
}

func BenchmarkMediaPage(b *testing.B) {
	sb := New(Options{BaseURL: "http://127.0.0.1:8080/sandbox"})
	tok := sb.MintLongLivedToken(AccountBusiness, time.Now())
	target := "/sandbox/graph/v25.0/me/media?" + url.Values{"fields": {allMediaFields}, "limit": {"25"}, "access_token": {tok}}.Encode()
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		sb.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
		sb.ResetCalls()
	}
}
