package render

import (
	"net/http"
	"os"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/feedd/feedd/internal/feed"
)

var pictureTag = regexp.MustCompile(`<picture>.*?</picture>`)

// withSources gives every post but the first its images in AVIF and WebP,
// as the feed lists them once the background encoder has finished: the
// first post is one it has not reached yet. url names a format's file for
// a JPEG's URL and the format's extension.
func withSources(posts []feed.Post, url func(jpeg, ext string) string) []feed.Post {
	for i := range posts {
		if i == 0 {
			continue
		}
		p := &posts[i]
		for _, f := range []struct{ typ, ext string }{{"image/avif", "avif"}, {"image/webp", "webp"}} {
			src := feed.ImageSource{Type: f.typ}
			for _, im := range p.Images {
				im.URL = url(im.URL, f.ext)
				src.Images = append(src.Images, im)
			}
			p.Sources = append(p.Sources, src)
		}
	}
	return posts
}

func sameName(jpeg, ext string) string { return strings.TrimSuffix(jpeg, ".png") + "." + ext }

func TestFragmentOffersAVIFAndWebPBeforeTheJPEG(t *testing.T) {
	o := DefaultOptions
	o.Columns = 3
	doc := testDoc(4)
	doc.Posts = withSources(doc.Posts, sameName)
	html := templateTag.ReplaceAllString(render(t, doc, o), "")
	pictures := pictureTag.FindAllString(html, -1)
	if len(pictures) != 3 {
		t.Fatalf("got %d <picture>, want 3 (every tile but the first):\n%s", len(pictures), html)
	}
	for i, p := range pictures {
		avif := strings.Index(p, `<source type="image/avif" srcset="`+pub+`/media/`)
		webp := strings.Index(p, `<source type="image/webp" srcset="`+pub+`/media/`)
		img := strings.Index(p, `<img src="`+pub+`/media/`)
		// The browser takes the first type it supports: AVIF, then WebP,
		// and the JPEG <img> carries the size and the fallback.
		if avif < 0 || webp < avif || img < webp {
			t.Errorf("tile %d: sources out of order or missing: %s", i+1, p)
		}
		for _, want := range []string{`.avif 320w, `, `.avif 1080w"`, `.webp 640w, `, `width="1080"`, `height="`} {
			if !strings.Contains(p, want) {
				t.Errorf("tile %d lacks %s: %s", i+1, want, p)
			}
		}
		// Each <source> chooses by the same sizes as the <img>.
		sizes := regexp.MustCompile(`sizes="([^"]+)"`).FindAllStringSubmatch(p, -1)
		if len(sizes) != 3 || sizes[0][1] != sizes[2][1] || sizes[1][1] != sizes[2][1] {
			t.Errorf("tile %d: sizes %v, want the <img>'s on both sources", i+1, sizes)
		}
	}
}

func TestFragmentShowsTheJPEGAloneUntilOtherFormatsAreStored(t *testing.T) {
	html := templateTag.ReplaceAllString(render(t, testDoc(4), DefaultOptions), "")
	if strings.Contains(html, "<picture") || strings.Contains(html, "<source") {
		t.Fatalf("picture markup without stored formats:\n%s", html)
	}
	if n := len(imgTag.FindAllString(html, -1)); n != 1+4 {
		t.Fatalf("got %d <img>, want 5", n)
	}
}

// TestBrowserPicksAVIF: Chromium takes the AVIF of every tile that has one
// and the JPEG (here PNG) of the tile that has not, at the size the widget
// measured, and never fetches the WebP.
func TestBrowserPicksAVIF(t *testing.T) {
	s := newSite(t)
	files := map[string][]byte{}
	for _, ext := range []string{"avif", "webp"} {
		b, err := os.ReadFile("testdata/formats/tile-320." + ext)
		if err != nil {
			t.Fatal(err)
		}
		files[ext] = b
	}
	// The other formats' files live on another path: any of them stands
	// for every size, as only the choice is under test.
	s.src.feeds["demo"] = withSources(testPosts(s.feedd.URL, 12), func(jpeg, ext string) string {
		p := "/formats/" + path.Base(strings.TrimSuffix(jpeg, ".png")) + "." + ext
		s.pages[p] = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/"+ext)
			w.Write(files[ext])
		}
		return s.owner.URL + p
	})
	u := s.page("/demo", "", `<body style="margin:0"><div data-feedd="demo" data-columns="3" data-limit="12"></div>
<script src="{{F}}/widget.js" async></script></body>`)
	tb := newTab(t, 1280, 900)
	tb.open(u)
	tb.wait("tiles", sr("[data-feedd]")+`?.querySelectorAll('li').length == 12`)
	tb.do(chromedp.Evaluate[chromedp.Void](`scrollTo(0, document.body.scrollHeight)`))
	tb.wait("every image", allLoaded("[data-feedd]"))
	got := eval[[]string](tb, `[...`+sr("[data-feedd]")+`.querySelectorAll('.feedd-tile img')].map(i => i.currentSrc)`)
	if len(got) != 12 {
		t.Fatalf("%d tile images, want 12", len(got))
	}
	if !strings.HasSuffix(got[0], ".png") {
		t.Errorf("tile 0 has no other format: showed %s, want its JPEG", got[0])
	}
	for i, src := range got[1:] {
		if !strings.HasSuffix(src, ".avif") {
			t.Errorf("tile %d showed %s, want the AVIF", i+1, src)
		}
	}
	// The <source>s chose by the widget's measured size, as the <img> does.
	if sizes := eval[[]string](tb, `[...`+sr("[data-feedd]")+`.querySelectorAll('.feedd-tile source')].map(s => s.sizes)`); len(sizes) != 22 || !strings.HasSuffix(sizes[0], "px") {
		t.Errorf("source sizes %v, want 22 measured in px", sizes)
	}
	for _, r := range tb.requests() {
		if strings.HasSuffix(r, ".webp") {
			t.Errorf("fetched %s: the WebP is for browsers without AVIF", r)
		}
	}
	tb.noProblems(0)
}
