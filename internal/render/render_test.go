package render

import (
	"bytes"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/feedd/feedd/internal/feed"
	"github.com/feedd/feedd/internal/web"
	"github.com/feedd/feedd/widget"
)

const pub = "https://feeds.example.com"

func render(t *testing.T, doc *feed.Doc, o Options) string {
	t.Helper()
	r, err := NewRenderer(pub + "/")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := r.Fragment(&b, doc, o); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func testDoc(n int) *feed.Doc {
	src := newFakeSource(pub)
	src.feeds["demo"] = testPosts(pub, n)
	doc, _, err := src.Doc(nil, "demo", n, "", nil)
	if err != nil {
		panic(err)
	}
	return doc
}

var (
	imgTag      = regexp.MustCompile(`<img [^>]*>`)
	templateTag = regexp.MustCompile(`(?s)<template>.*?</template>`)
)

func TestFragmentEscapesHostileText(t *testing.T) {
	doc := testDoc(3)
	acct := *doc.Account
	acct.Username = `x"><script>alert(1)</script>`
	acct.Name = `<img src=x onerror=alert(1)>`
	acct.ProfileURL = "javascript:alert(1)"
	doc.Account = &acct
	doc.Posts[0].Permalink = "javascript:alert(2)"
	doc.Posts[0].Alt = `" onload="alert(3)`
	doc.Posts[0].Color = `red;background:url(//evil)`
	html := render(t, doc, DefaultOptions)

	for _, bad := range []string{"<script", "<img src=x", "javascript:", `" onload="`, "onerror=\"window", "evil", "</ul><b>"} {
		if strings.Contains(html, bad) {
			t.Errorf("fragment contains %q:\n%s", bad, html)
		}
	}
	// The hostile caption is there, as text.
	if !strings.Contains(html, "&lt;script&gt;window.pwned=2&lt;/script&gt;") {
		t.Errorf("hostile caption not rendered as escaped text:\n%s", html)
	}
	if strings.Count(html, "<li ") != 3 || strings.Count(html, "</li>") != 3 {
		t.Errorf("want exactly 3 list items, markup was broken:\n%s", html)
	}
}

func TestFragmentImages(t *testing.T) {
	o := DefaultOptions
	o.Columns = 3
	html := render(t, testDoc(7), o)
	if n := len(imgTag.FindAllString(html, -1)); n != 1+7+3 {
		t.Fatalf("got %d <img>, want 11 (avatar, 7 tiles, 3 carousel children):\n%s", n, html)
	}
	tiles := imgTag.FindAllString(templateTag.ReplaceAllString(html, ""), -1)[1:]
	if len(tiles) != 7 {
		t.Fatalf("got %d tiles, want 7", len(tiles))
	}
	for i, tag := range tiles {
		for _, want := range []string{`width="1080"`, `srcset="` + pub + `/media/`, ` 320w, `, ` 640w, `, ` 1080w"`, `decoding="async"`, `sizes="`} {
			if !strings.Contains(tag, want) {
				t.Errorf("tile %d: %s lacks %s", i, tag, want)
			}
		}
		if !regexp.MustCompile(`height="\d+"`).MatchString(tag) {
			t.Errorf("tile %d: no height: %s", i, tag)
		}
		// The first row loads at once, the rest lazily.
		if lazy := strings.Contains(tag, `loading="lazy"`); lazy != (i >= 3) {
			t.Errorf("tile %d: lazy=%v, want %v", i, lazy, i >= 3)
		}
		if !regexp.MustCompile(`src="` + pub + `/media/p0\d(-c0)?-640-`).MatchString(tag) {
			t.Errorf("tile %d: src is not the 640 px file: %s", i, tag)
		}
	}
	// Square tile: a square or portrait picture needs a third of the
	// viewport, a 1.91:1 landscape cropped to the square nearly twice that.
	if !strings.Contains(tiles[0], `sizes="34vw"`) || !strings.Contains(tiles[1], `sizes="34vw"`) || !strings.Contains(tiles[2], `sizes="64vw"`) {
		t.Errorf("sizes: %s | %s | %s", tiles[0], tiles[1], tiles[2])
	}
	if !strings.Contains(tiles[0], `height="1080"`) || !strings.Contains(tiles[1], `height="1350"`) {
		t.Errorf("width/height do not carry the aspect ratio: %s | %s", tiles[0], tiles[1])
	}
}

func TestFragmentLaterPageIsAllLazy(t *testing.T) {
	o := DefaultOptions
	o.After = "MTc5NDM4ODAwMDpwMDE" // any valid cursor
	html := render(t, testDoc(4), o)
	for i, tag := range imgTag.FindAllString(html, -1)[1:5] {
		if !strings.Contains(tag, `loading="lazy"`) {
			t.Errorf("tile %d of a later page is not lazy: %s", i, tag)
		}
	}
}

func TestFragmentAltFallback(t *testing.T) {
	doc := testDoc(4)
	doc.Posts[0].Alt = "  "
	doc.Posts[2].Alt = ""
	doc.Posts[2].Caption = nil
	doc.Posts[3].Children[1].Alt = ""
	html := render(t, doc, DefaultOptions)
	if !strings.Contains(html, `alt="Post number 0 from the studio."`) {
		t.Errorf("no caption-derived alt for a post without alt text:\n%s", html)
	}
	if !strings.Contains(html, `alt="Post by @acme on 20 November 2026"`) {
		t.Errorf("no fallback alt for a post without alt text or caption:\n%s", html)
	}
	if regexp.MustCompile(`alt="(|\s*|image \d+)"`).MatchString(strings.ReplaceAll(html, `class="feedd-avatar"`, "")) &&
		strings.Count(html, `alt=""`) != 1 { // the avatar is decorative
		t.Errorf("empty or meaningless alt:\n%s", html)
	}
}

func TestFragmentMarkersAndChildren(t *testing.T) {
	html := render(t, testDoc(5), DefaultOptions)
	if !strings.Contains(html, `<span class="feedd-mark feedd-m-carousel"><span class="feedd-sr">Carousel of 3</span></span>`) {
		t.Errorf("no carousel marker with accessible text:\n%s", html)
	}
	if !strings.Contains(html, `<span class="feedd-mark feedd-m-video"><span class="feedd-sr">Video</span></span>`) {
		t.Errorf("no video marker with accessible text:\n%s", html)
	}
	tpl := regexp.MustCompile(`(?s)<template>(.*?)</template>`).FindStringSubmatch(html)
	if tpl == nil || strings.Count(tpl[1], "<img ") != 3 || !strings.Contains(tpl[1], `alt="Slide 2 of post 3"`) || !strings.Contains(tpl[1], `data-color="#8e44ad"`) {
		t.Errorf("carousel children missing from the template: %v", tpl)
	}
	for _, want := range []string{`rel="noopener" target="_blank"`, `href="https://www.instagram.com/p/p00/"`, `data-color="#c0392b"`, `role="list"`} {
		if !strings.Contains(html, want) {
			t.Errorf("fragment lacks %s", want)
		}
	}
	if strings.Contains(html, "style=") {
		t.Error("fragment has a style attribute (blocked by a strict CSP)")
	}
}

func TestFragmentOptions(t *testing.T) {
	doc := testDoc(25)
	doc.Posts = doc.Posts[:12]
	next := "MTc5NDM4ODAwMDpwMTE"
	doc.Next = &next
	tests := []struct {
		name    string
		query   string
		want    []string
		notWant []string
	}{
		{"defaults", "", []string{`class="feedd feedd-grid feedd-c3 feedd-cap-none feedd-t-auto"`, `data-lightbox="true"`, `class="feedd-head"`,
			`href="https://feeds.example.com/feeds/demo/embed?after=` + next + `"`, `data-next="https://feeds.example.com/feeds/demo.html?after=` + next + `"`,
			`<link rel="stylesheet" href="https://feeds.example.com/widget.css">`, `Follow<span class="feedd-sr"> @acme on Instagram</span>`},
			[]string{"data-gap"}},
		{"every option", "columns=5&gap=12&layout=carousel&captions=below&theme=dark&header=false&lightbox=false&limit=12",
			[]string{`class="feedd feedd-carousel feedd-c5 feedd-cap-below feedd-t-dark"`, `data-lightbox="false"`, `data-gap="12"`,
				`/feeds/demo.html?after=` + next + `&amp;captions=below&amp;columns=5&amp;gap=12&amp;header=false&amp;layout=carousel&amp;lightbox=false&amp;theme=dark"`},
			[]string{`feedd-head`}},
		{"no load more", "load-more=0", nil, []string{"feedd-more"}},
		{"type filter kept", "type=image,video", []string{`type=image%2Cvideo`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := url.ParseQuery(tt.query)
			o, err := ParseOptions(v)
			if err != nil {
				t.Fatal(err)
			}
			html := render(t, doc, o)
			for _, w := range tt.want {
				if !strings.Contains(html, w) {
					t.Errorf("lacks %s\n%s", w, html[:min(len(html), 900)])
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(html, w) {
					t.Errorf("has %s", w)
				}
			}
		})
	}
}

func TestParseOptionsRejectsBadValues(t *testing.T) {
	for _, q := range []string{"columns=0", "columns=9", "columns=x", "gap=65", "gap=-1", "layout=masonry", "captions=always",
		"theme=blue", "header=maybe", "lightbox=2", "load-more=yes please", "limit=0", "limit=101", "after=!!", "type=story"} {
		v, _ := url.ParseQuery(q)
		_, err := ParseOptions(v)
		e, ok := web.As(err)
		name, _, _ := strings.Cut(q, "=")
		if !ok || e.Status != 400 || !strings.Contains(e.Message, name) {
			t.Errorf("%s: got %v, want a 400 naming %s", q, err, name)
		}
	}
}

func TestFragmentEmptyFeed(t *testing.T) {
	html := render(t, &feed.Doc{Version: 1, ID: "new", Posts: []feed.Post{}}, DefaultOptions)
	if !strings.Contains(html, `<ul class="feedd-list" role="list">`) || strings.Contains(html, "feedd-head") || strings.Contains(html, "<li ") {
		t.Errorf("empty feed: %s", html)
	}
}

func TestNewRendererRejectsRelativeURL(t *testing.T) {
	for _, u := range []string{"", "/feedd", "localhost:8080", "ftp://x"} {
		if _, err := NewRenderer(u); err == nil {
			t.Errorf("NewRenderer(%q) accepted", u)
		}
	}
}

func BenchmarkFragment(b *testing.B) {
	doc := testDoc(20)
	r, _ := NewRenderer(pub)
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		r.Fragment(&buf, doc, DefaultOptions)
	}
}

// The host page's stylesheet reserves space for every value the options
// accept, and for none beyond.
func TestHostCSSCoversEveryOption(t *testing.T) {
	css := string(widget.CSS)
	for _, r := range []struct {
		attr   string
		lo, hi int
	}{{"columns", 1, MaxColumns}, {"limit", 1, feed.MaxLimit}, {"gap", 0, MaxGap}} {
		for n := r.lo; n <= r.hi; n++ {
			if !strings.Contains(css, fmt.Sprintf(`[data-%s="%d"]`, r.attr, n)) {
				t.Errorf("widget.css has no rule for data-%s=%d", r.attr, n)
			}
		}
		if strings.Contains(css, fmt.Sprintf(`[data-%s="%d"]`, r.attr, r.hi+1)) {
			t.Errorf("widget.css has a rule for data-%s=%d, which render refuses", r.attr, r.hi+1)
		}
	}
}

func TestSnippet(t *testing.T) {
	v, _ := url.ParseQuery(`columns=4&limit=8&lang=de&i18n-load-more=Mehr+"Brot"&type=image&type=video`)
	o, err := ParseOptions(v)
	if err != nil {
		t.Fatal(err)
	}
	want := `<link rel="stylesheet" href="https://feeds.example.com/widget.css">
<div data-feedd="k3v9x2m4q8" data-columns="4" data-i18n-load-more="Mehr &#34;Brot&#34;" data-lang="de" data-limit="8" data-type="image,video"></div>
<script src="https://feeds.example.com/widget.js" async></script>`
	if got := Snippet(pub+"/", "k3v9x2m4q8", o); got != want {
		t.Errorf("snippet:\n%s\nwant:\n%s", got, want)
	}
	if got := Snippet(pub, "k3v9x2m4q8", DefaultOptions); !strings.Contains(got, `<div data-feedd="k3v9x2m4q8"></div>`) {
		t.Errorf("default options:\n%s", got)
	}
}
