package render

// The feed on a page that is not feedd's: a small bakery site on its own
// origin with the snippet between its paragraphs. What its owner must never
// see is the page moving when the feed arrives.

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// bakeryCSS is the host page's own stylesheet, from its own origin.
const bakeryCSS = `body { margin: 0; font: 16px/1.5 Georgia, serif; color: #222; background: #fffaf3 }
body > header { background: #7a4b2a; color: #fff8ef; padding: 16px 24px }
body > header p { margin: 0; font-size: 28px }
main { max-width: 960px; margin: 0 auto; padding: 16px }
footer { padding: 24px; background: #eee2d0 }
footer p { margin: 0 }`

// hostCSP is a strict policy of a host page: its own stylesheet, and
// feedd's origin for everything the feed needs.
const hostCSP = "default-src 'none'; script-src {{F}}; style-src 'self' {{F}}; img-src {{F}}; connect-src {{F}}"

// bakery registers the host page around a snippet at path: a header, a
// paragraph, the snippet, opening hours and a footer, in landmarks.
func (s *site) bakery(path, snippet string) string {
	return s.bakeryIn("en", path, snippet)
}

// bakeryIn is bakery with the page in another language.
func (s *site) bakeryIn(lang, path, snippet string) string {
	s.pages["/bakery.css"] = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css")
		io.WriteString(w, bakeryCSS)
	}
	return s.pageIn(lang, path, hostCSP, `<body><link rel="stylesheet" href="/bakery.css">
<header><p>Crumb &amp; Co. Bakery</p></header>
<main>
<h1>Fresh bread, every morning</h1>
<p>Sourdough, rye and brioche baked before sunrise in our wood-fired oven. Here is what came out of it this week:</p>
`+snippet+`
<h2>Opening hours</h2>
<p id="hours">Tuesday to Saturday 7:00 to 18:00, Sunday 8:00 to 13:00.</p>
</main>
<footer id="foot"><p>12 Mill Lane · 01234 567890</p></footer>
</body>`)
}

// snippet is what the setup page generates: the stylesheet, the element,
// the script.
func snippet(attrs string) string {
	return `<link rel="stylesheet" href="{{F}}/widget.css">
<div id="feed" data-feedd="demo"` + attrs + `></div>
<script src="{{F}}/widget.js" async></script>`
}

// The host page does not move when the feed arrives after the page was
// painted: for a grid and a carousel, with and without the header, on a
// phone and a desktop, with the pictures arriving later still.
func TestBrowserHostPageDoesNotShift(t *testing.T) {
	for _, layout := range []string{"grid", "carousel"} {
		// The header with the account's counts on its second line keeps
		// the header's height.
		for _, header := range []string{"true", "false", "counts"} {
			for _, width := range []int64{375, 1280} {
				name := fmt.Sprintf("%s/header=%v/%d", layout, header, width)
				t.Run(name, func(t *testing.T) {
					attrs := fmt.Sprintf(` data-columns="4" data-limit="8" data-layout="%s" data-header="%v"`, layout, header != "false")
					if header == "counts" {
						attrs += ` data-counts="true"`
					}
					s := newSite(t)
					u := s.bakery("/", snippet(attrs))
					tb := newTab(t, width, 900)
					releaseFeed := s.holdFeeds()
					releaseImages := s.holdImages()
					tb.open(u)
					// The page is painted, the script is running and its
					// fragment request waits.
					tb.wait("the painted page", `performance.getEntriesByType('paint').length > 0 && window.feedd && document.querySelector('#foot')`)
					before := eval[float64](tb, `document.querySelector('#feed').getBoundingClientRect().height`)
					releaseFeed()
					tb.wait("8 tiles", sr("#feed")+`?.querySelectorAll('.feedd-item').length == 8`)
					releaseImages()
					tb.do(chromedp.Evaluate[chromedp.Void](`scrollTo(0, document.body.scrollHeight)`))
					n := 8
					if layout == "carousel" {
						n = 3 // those in view at 375 px; at 1280, 4
					}
					tb.wait("the pictures in view", fmt.Sprintf(`[...%s.querySelectorAll('.feedd-tile img')].filter(i => i.complete && i.naturalWidth > 0).length >= %d`, sr("#feed"), n))
					got := eval[struct{ Host, Feed float64 }](tb, `({host: document.querySelector('#feed').getBoundingClientRect().height,
						feed: `+sr("#feed")+`.querySelector('.feedd').getBoundingClientRect().height})`)
					if header == "counts" {
						if name := eval[string](tb, sr("#feed")+`.querySelector('.feedd-name').textContent`); !strings.Contains(name, "12,840") {
							t.Errorf("the header shows %q, without the followers count", name)
						}
					}
					t.Logf("reserved %.1f px; the feed is %.1f px", before, got.Feed)
					if got.Host != before {
						t.Errorf("the element was %.1f px high before the feed and %.1f px after", before, got.Host)
					}
					// The space fits the feed: not a collapse, not a gap.
					if d := before - got.Feed; d < 0 || d > 2 {
						t.Errorf("reserved %.1f px for a feed of %.1f px", before, got.Feed)
					}
					tb.noProblems(0)
					tb.onlyFeedd(s, u)
				})
			}
		}
	}
}

// When the feed cannot be shown, the element keeps its space and its
// fallback content, and the placeholder is only on an empty element.
func TestBrowserHostPageKeepsSpaceWhenFeedFails(t *testing.T) {
	s := newSite(t)
	u := s.bakery("/", `<link rel="stylesheet" href="{{F}}/widget.css">
<div id="feed" data-feedd="nope" data-columns="4" data-limit="8"><p>Follow us on Instagram!</p></div>
<div id="empty" data-feedd="nope"></div>
<script src="{{F}}/widget.js" async></script>`)
	tb := newTab(t, 1280, 900)
	tb.open(u)
	tb.wait("the warnings", `__t.warns.length == 2`)
	got := eval[struct {
		Feed, Empty     float64
		FeedBg, EmptyBg string
		Text            string
	}](tb, `(() => { const f = document.querySelector('#feed'), e = document.querySelector('#empty');
		return {feed: f.getBoundingClientRect().height, empty: e.getBoundingClientRect().height, text: f.innerText,
		        feedBg: getComputedStyle(f, '::before').backgroundColor, emptyBg: getComputedStyle(e, '::before').backgroundColor} })()`)
	// 4 columns of 8 posts in 960 px: header, 2 rows, Load more.
	if got.Feed < 500 || got.Empty < 500 || got.Text != "Follow us on Instagram!" {
		t.Errorf("after a failure: %+v", got)
	}
	if got.FeedBg != "rgba(0, 0, 0, 0)" || got.EmptyBg == "rgba(0, 0, 0, 0)" {
		t.Errorf("placeholder: %q behind fallback content, %q on the empty element", got.FeedBg, got.EmptyBg)
	}
	tb.noProblems(2)
}

// The reserved space follows the options: more columns, fewer rows.
func TestBrowserHostPageSpaceFollowsOptions(t *testing.T) {
	s := newSite(t)
	var els strings.Builder
	cases := []string{
		` data-columns="4" data-limit="8"`,
		` data-columns="2" data-limit="8"`,
		` data-columns="4" data-limit="8" data-captions="below"`,
		` data-columns="4" data-limit="8" data-gap="24"`,
		` data-columns="4" data-limit="8" data-load-more="false"`,
	}
	for i, a := range cases {
		fmt.Fprintf(&els, `<div id="f%d" data-feedd="demo"%s></div>`+"\n", i, a)
	}
	u := s.bakery("/", `<link rel="stylesheet" href="{{F}}/widget.css">`+"\n"+els.String())
	tb := newTab(t, 1280, 900)
	tb.open(u)
	tb.wait("the page and its stylesheets", `document.readyState == 'complete'`)
	h := eval[[]float64](tb, `[...document.querySelectorAll('[data-feedd]')].map(e => e.getBoundingClientRect().height)`)
	// 960 px wide: a 4-column tile is (960-3×8)/4 = 234 px, a 2-column one
	// 476, with 24 px gaps 222; a line of 14px/1.4 is 19.6 px. Header 40 and
	// a gap, rows and gaps, Load more (a gap, 14 px and a line), 1 px.
	foot := 8 + 14 + 19.6
	want := []float64{
		48 + 2*234 + 8 + foot + 1,
		48 + 4*476 + 3*8 + foot + 1,
		48 + 2*(234+6+3*19.6) + 8 + foot + 1,
		64 + 2*222 + 24 + (24 + 14 + 19.6) + 1,
		48 + 2*234 + 8 + 1,
	}
	for i, w := range want {
		if math.Abs(h[i]-w) > 1 {
			t.Errorf("%s: %.1f px reserved, want %.1f", cases[i], h[i], w)
		}
	}
}

// The feed speaks the page's language, or the one data-lang names, right
// to left where that language is written so; owners' texts replace feedd's.
func TestBrowserLanguages(t *testing.T) {
	t.Run("page lang, right to left", func(t *testing.T) {
		s := newSite(t)
		u := s.bakeryIn("he-IL", "/", snippet(` data-columns="4" data-limit="8"`))
		for _, width := range []int64{375, 1280} {
			tb := newTab(t, width, 900)
			tb.open(u)
			tb.wait("the shadow root", `document.querySelector('#feed')?.shadowRoot`)
			tb.wait("the feed", allLoaded("#feed")+` && `+sr("#feed")+`.querySelectorAll('.feedd-item').length == 8`)
			got := eval[struct{ Dir, Follow, More, Mark string }](tb, `(() => { const r = `+sr("#feed")+`.querySelector('.feedd');
				return {dir: getComputedStyle(r).direction, follow: r.querySelector('.feedd-follow').textContent,
				        more: r.querySelector('.feedd-more').textContent, mark: r.querySelector('.feedd-m-carousel').textContent} })()`)
			if got.Dir != "rtl" || got.Follow != "מעקב אחרי @acme באינסטגרם" || got.More != "טעינת עוד" || got.Mark != "קרוסלה (3)" {
				t.Errorf("%d px: %+v", width, got)
			}
			// The first tile is on the right.
			if x := eval[float64](tb, sr("#feed")+`.querySelector('.feedd-tile').getBoundingClientRect().left`); x < float64(width)/2 {
				t.Errorf("%d px: first tile at x=%.0f, want it on the right", width, x)
			}
			tb.noProblems(0)
			tb.onlyFeedd(s, u)
			tb.shot(fmt.Sprintf("bakery-he-%d", width))
			if width == 1280 {
				tb.do(chromedp.Evaluate[chromedp.Void](sr("#feed") + `.querySelector('.feedd-tile').focus()`))
				tb.do(chromedp.KeyEvent(kb.Enter))
				tb.wait("the dialog in Hebrew", sr("#feed")+`.querySelector('dialog')?.open && `+sr("#feed")+`.querySelector('.feedd-close').ariaLabel == 'סגירה'`)
				// Right to left, the left arrow goes to the next post.
				tb.do(chromedp.KeyEvent(kb.ArrowLeft))
				st := eval[struct{ Alt, Label, Go string }](tb, `(() => { const d = `+sr("#feed")+`.querySelector('dialog');
					return {alt: d.querySelector('img').alt, label: d.ariaLabel, go: d.querySelector('.feedd-go').textContent} })()`)
				if st.Alt != "Photo 1 of the studio" || st.Label != "פוסט" || st.Go != "צפייה באינסטגרם" {
					t.Errorf("lightbox after ←: %+v", st)
				}
				tb.shot("lightbox-he-1280")
			}
		}
	})
	t.Run("data-lang and owner texts", func(t *testing.T) {
		s := newSite(t)
		u := s.bakeryIn("fr", "/", snippet(` data-lang="de" data-i18n-load-more="Noch mehr Brot" data-i18n-next="Nächstes Brot"`))
		tb := newTab(t, 1280, 900)
		tb.open(u)
		tb.wait("the feed", `document.querySelector('#feed')?.shadowRoot?.querySelector('.feedd-more')`)
		got := eval[struct{ Lang, Follow, More string }](tb, `(() => { const r = `+sr("#feed")+`.querySelector('.feedd');
			return {lang: r.lang, follow: r.querySelector('.feedd-follow').firstChild.textContent, more: r.querySelector('.feedd-more').textContent} })()`)
		if got.Lang != "de" || got.Follow != "Folgen" || got.More != "Noch mehr Brot" {
			t.Errorf("%+v", got)
		}
		tb.do(chromedp.Evaluate[chromedp.Void](sr("#feed") + `.querySelector('.feedd-tile').click()`))
		tb.wait("the dialog", sr("#feed")+`.querySelector('dialog')?.open`)
		label := tb.until(sr("#feed")+`.querySelector('.feedd-close').ariaLabel == 'Schließen'`, `[...`+sr("#feed")+`.querySelectorAll('dialog button')].map(b => b.ariaLabel).join('|')`)
		if label != "Schließen|Zurück|Nächstes Brot" {
			t.Errorf("lightbox buttons %q", label)
		}
		tb.noProblems(0)
	})
}
