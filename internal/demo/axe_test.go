package demo

// Accessibility and layout checks of the demo's pages and the setup pages
// they lead to, in a real browser, with axe-core (vendored in
// internal/render/testdata/axe).

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// layoutShifts is installed before any page script: the page's cumulative
// layout shift, input-driven shifts excluded.
const layoutShifts = `window.__cls = 0;
new PerformanceObserver(l => { for (const e of l.getEntries()) if (!e.hadRecentInput) __cls += e.value })
  .observe({type: 'layout-shift', buffered: true});`

// axe runs axe-core's default rules on the current page and fails on every
// violation.
func axe(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	src, err := os.ReadFile("../render/testdata/axe/axe.min.js")
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := chromedp.Run(c, chromedp.Evaluate[chromedp.Void](string(src))); err != nil {
		t.Fatalf("loading axe-core on %s: %v", what, err)
	}
	type violation struct {
		ID, Impact, Help string
		Nodes            []struct{ Target []any }
	}
	got, err := chromedp.Run(c, chromedp.Evaluate[struct {
		Violations []violation
		Passes     int
	}](`axe.run(document, {resultTypes: ['violations']}).then(r => ({violations: r.violations, passes: r.passes.length}))`,
		func(p *runtime.EvaluateParams) { yes := true; p.AwaitPromise = &yes }))
	if err != nil {
		t.Fatalf("axe.run on %s: %v", what, err)
	}
	t.Logf("axe-core on %s: %d rules passed, %d violated", what, got.Passes, len(got.Violations))
	for _, v := range got.Violations {
		var ts []string
		for _, n := range v.Nodes {
			ts = append(ts, fmt.Sprint(n.Target))
		}
		t.Errorf("%s: %s (%s): %s on %s", what, v.ID, v.Impact, v.Help, strings.Join(ts, ", "))
	}
}

// The demo's front page does not move while its feed arrives, and it and
// every setup page pass axe-core.
func TestBrowserDemoPagesAccessibleAndStill(t *testing.T) {
	ctx, _ := browser(t, 1280, 900)
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: layoutShifts}); err != nil {
		t.Fatal(err)
	}
	base, stop := startDemo(t, "")
	defer stop()

	navigate(t, ctx, base+"/")
	const tiles = `[...(document.querySelector('[data-feedd]').shadowRoot || document).querySelectorAll('.feedd-item img')]`
	waitFor(t, ctx, "the widget's pictures", tiles+`.length == 12 && `+tiles+`.slice(0, 3).every(i => i.complete && i.naturalWidth)`, tiles+`.length`)
	cls, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`__cls`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("demo front page: cumulative layout shift %v", cls)
	if cls != 0 {
		t.Errorf("the demo's front page moved while the feed arrived: cumulative layout shift %v", cls)
	}
	axe(t, ctx, "the demo's front page")

	run(t, ctx, `document.querySelector('#setup-link').click()`)
	waitFor(t, ctx, "the setup page", `location.pathname == '/setup' && document.querySelector('#new-name')`, `location.href`)
	axe(t, ctx, "the setup index")
	feedURL, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('a[href^="/setup/feeds/"]').href`))
	if err != nil {
		t.Fatal(err)
	}
	navigate(t, ctx, feedURL+"?columns=4&limit=8&lang=de")
	waitFor(t, ctx, "the connected feed's page", `document.querySelector('#snippet') && document.readyState == 'complete'`, `location.href`)
	axe(t, ctx, "a connected feed's setup page")
	navigate(t, ctx, feedURL+"?columns=99")
	waitFor(t, ctx, "the options error", `document.querySelector('[role=alert]') && document.readyState == 'complete'`, `document.body.innerText.slice(0, 300)`)
	axe(t, ctx, "a setup page with an options error")

	navigate(t, ctx, base+"/setup")
	waitFor(t, ctx, "the setup page", `document.querySelector('#new-name')`, `location.href`)
	run(t, ctx, `document.querySelector('#new-name').value = 'Studio'; document.querySelector('#new-name').form.submit()`)
	waitFor(t, ctx, "the new feed's page", `/^\/setup\/feeds\/[a-z0-9]+$/.test(location.pathname) && document.readyState == 'complete'`, `location.href`)
	axe(t, ctx, "a new feed's setup page")

	navigate(t, ctx, base+"/auth/instagram/callback?state=nope&code=x")
	waitFor(t, ctx, "the connect error page", `document.querySelector('h1') && document.readyState == 'complete'`, `location.href`)
	axe(t, ctx, "the connect error page")
	navigate(t, ctx, base+"/auth/instagram/deletion?code=nope")
	waitFor(t, ctx, "the deletion status page", `document.querySelector('h1') && document.readyState == 'complete'`, `location.href`)
	axe(t, ctx, "the deletion status page")
}
