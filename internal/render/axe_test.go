package render

// Accessibility checks with axe-core (testdata/axe, vendored from npm) on
// what visitors get: the widget on a host page, its lightbox, a
// server-rendered fragment and the embed page.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

const axeVersion = "4.14.1"

// violation is one failed axe rule with the nodes it failed on.
type violation struct {
	ID, Impact, Help string
	Nodes            []struct{ Target []any }
}

func (v violation) String() string {
	var ts []string
	for _, n := range v.Nodes {
		ts = append(ts, fmt.Sprint(n.Target))
	}
	return fmt.Sprintf("%s (%s): %s on %s", v.ID, v.Impact, v.Help, strings.Join(ts, ", "))
}

// axe runs axe-core's default rules on the page (shadow roots included)
// and fails the test on every violation. DevTools evaluation is not bound
// by the page's Content-Security-Policy, so the page needs no exception.
func (tb *tab) axe(what string) {
	tb.t.Helper()
	src, err := os.ReadFile("testdata/axe/axe.min.js")
	if err != nil {
		tb.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](string(src))); err != nil {
		tb.t.Fatalf("loading axe-core: %v", err)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[struct {
		Version    string
		Violations []violation
		Passes     int
	}](`axe.run(document, {resultTypes: ['violations']}).then(r => ({version: r.testEngine.version, violations: r.violations, passes: r.passes.length}))`,
		func(p *runtime.EvaluateParams) { yes := true; p.AwaitPromise = &yes }))
	if err != nil {
		tb.t.Fatalf("axe.run: %v", err)
	}
	if got.Version != axeVersion {
		tb.t.Errorf("axe-core %s, want %s", got.Version, axeVersion)
	}
	tb.t.Logf("axe-core %s on %s: %d rules passed, %d violated", got.Version, what, got.Passes, len(got.Violations))
	for _, v := range got.Violations {
		tb.t.Errorf("%s: %s", what, v)
	}
}

func TestBrowserAxeWidget(t *testing.T) {
	for _, c := range []struct{ name, lang, attrs string }{
		{"grid", "en", ` data-columns="4" data-limit="8" data-captions="below"`},
		{"carousel dark", "en", ` data-layout="carousel" data-theme="dark" data-captions="hover" data-limit="8"`},
		{"hebrew", "he", ` data-columns="3" data-limit="6"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSite(t)
			u := s.bakeryIn(c.lang, "/", snippet(c.attrs))
			tb := newTab(t, 1280, 900)
			tb.open(u)
			tb.wait("the feed", `document.querySelector('#feed')?.shadowRoot?.querySelector('.feedd-more')`)
			tb.do(chromedp.Evaluate[chromedp.Void](`scrollTo(0, document.body.scrollHeight)`))
			tb.wait("the pictures", `[...`+sr("#feed")+`.querySelectorAll('.feedd-tile img')].slice(0, 3).every(i => i.complete && i.naturalWidth)`)
			tb.axe("the host page with the widget")
			tb.do(chromedp.Evaluate[chromedp.Void](sr("#feed") + `.querySelectorAll('.feedd-tile')[3].focus()`))
			tb.do(chromedp.KeyEvent(kb.Enter))
			// Open, its picture in, its fade-in over (contrast is measured
			// on what is painted).
			tb.wait("the lightbox", sr("#feed")+`.querySelector('dialog')?.open && `+sr("#feed")+`.querySelector('dialog img').complete && `+
				sr("#feed")+`.querySelector('dialog').getAnimations({subtree: true}).length == 0`)
			tb.axe("the lightbox")
		})
	}
}

func TestBrowserAxeFragmentAndEmbedPage(t *testing.T) {
	s := newSite(t)
	res, err := http.Get(s.feedd.URL + "/feeds/demo.html?limit=9&captions=below&lang=ar")
	if err != nil {
		t.Fatal(err)
	}
	frag, _ := io.ReadAll(res.Body)
	res.Body.Close()
	// The fragment as a server puts it in its page, without the script.
	u := s.bakery("/ssr", string(frag))
	tb := newTab(t, 1280, 900)
	tb.open(u)
	tb.wait("the page", `document.readyState == 'complete'`)
	tb.axe("a server-rendered fragment")

	for _, q := range []string{"", "?layout=carousel&theme=dark&header=false", "?lang=ja&captions=hover"} {
		tb := newTab(t, 1280, 900)
		tb.open(s.feedd.URL + "/feeds/demo/embed" + q)
		tb.wait("the embed page", `document.querySelector('div')?.shadowRoot?.querySelector('.feedd')`)
		tb.axe("the embed page" + q)
	}
}
