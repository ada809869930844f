package demo

// The setup pages in a real browser: axe-core in light and dark mode at
// desktop and phone width, nothing wider than a phone's screen, the live
// preview, and the same page with JavaScript off.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

var screenshots = flag.String("screenshots", "", "write screenshots of the feed page to this directory (docs/images)")

// emulate sets the colour scheme and, for phone widths, a mobile viewport.
func emulate(t *testing.T, ctx context.Context, scheme string, width int) {
	t.Helper()
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
	}); err != nil {
		t.Fatal(err)
	}
	if width < 600 {
		if _, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
			Width: int64(width), Height: 812, DeviceScaleFactor: 1, Mobile: true,
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// fitsWidth fails when the page scrolls sideways: at 375 px every setup
// page must be readable without it.
func fitsWidth(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, document.documentElement.clientWidth]`))
	if err != nil {
		t.Fatal(err)
	}
	if got[0] > got[1] {
		t.Errorf("%s is %d px wide in a %d px viewport", what, got[0], got[1])
	}
}

func shoot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if *screenshots == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(*screenshots, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", p, len(png))
}

// signIn follows the demo's one-time setup link and returns the demo
// feed's page.
func signIn(t *testing.T, ctx context.Context, base string) string {
	t.Helper()
	navigate(t, ctx, base+"/demo/setup")
	waitFor(t, ctx, "the setup page", `location.pathname == '/setup' && document.querySelector('#new-name')`, `location.href`)
	feedURL, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('a[href^="/setup/feeds/"]').href`))
	if err != nil {
		t.Fatal(err)
	}
	return feedURL
}

// previewRoot is the preview's feed: the embed page's widget renders it
// in a shadow root.
const previewRoot = `(() => { const f = document.querySelector('[data-preview-frame]'); const d = f && f.contentDocument;
	if (!d || d.readyState != 'complete') return null; const h = [...d.querySelectorAll('*')].find(e => e.shadowRoot); return h ? h.shadowRoot : d })()`

const previewReady = `(` + previewRoot + ` || document.createElement('p')).querySelectorAll('.feedd-item img').length > 0`

// previewFitted: the script sized the preview frame to its whole feed.
const previewFitted = previewReady + ` && (() => { const f = document.querySelector('[data-preview-frame]');
	return Math.abs(f.clientHeight - f.contentDocument.documentElement.scrollHeight) <= 1 })()`

func TestBrowserSetupPagesAccessibleLightAndDark(t *testing.T) {
	base, stop := startDemo(t, "")
	defer stop()
	for _, scheme := range []string{"light", "dark"} {
		for _, width := range []int{1280, 375} {
			t.Run(fmt.Sprintf("%s %d px", scheme, width), func(t *testing.T) {
				ctx, _ := browser(t, width, 900)
				emulate(t, ctx, scheme, width)
				check := func(what string) {
					t.Helper()
					axe(t, ctx, what)
					fitsWidth(t, ctx, what)
				}
				navigate(t, ctx, base+"/setup/login")
				waitFor(t, ctx, "the sign-in page", `document.querySelector('#token') && document.readyState == 'complete'`, `location.href`)
				check("the sign-in page")
				shoot(t, ctx, fmt.Sprintf("setup-signin-%d-%s.png", width, scheme))

				feedURL := signIn(t, ctx, base)
				check("the setup index")
				shoot(t, ctx, fmt.Sprintf("setup-index-%d-%s.png", width, scheme))

				navigate(t, ctx, feedURL)
				waitFor(t, ctx, "the connected feed's page with its whole preview", previewFitted,
					`document.querySelector('[data-preview-frame]').clientHeight + ' ' + document.querySelector('[data-preview-frame]').contentDocument.documentElement.scrollHeight`)
				check("a connected feed's page")
				if whole, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(s => s.scrollHeight <= s.clientHeight)(document.querySelector('#snippet'))`)); err != nil || !whole {
					t.Errorf("the snippet does not show whole (%v)", err)
				}
				shoot(t, ctx, fmt.Sprintf("setup-feed-%d-%s.png", width, scheme))

				navigate(t, ctx, feedURL+"?columns=99")
				waitFor(t, ctx, "the options error", `document.querySelector('#options-error:not([hidden])') && document.readyState == 'complete'`, `document.body.innerText.slice(0, 300)`)
				check("a feed page with an options error")
				for _, action := range []string{"disconnect", "delete"} {
					navigate(t, ctx, feedURL+"/"+action)
					waitFor(t, ctx, "the confirmation page", `document.querySelector('input[name=confirm]') && document.readyState == 'complete'`, `location.href`)
					check("the " + action + " confirmation page")
				}
				navigate(t, ctx, base+"/setup")
				waitFor(t, ctx, "the setup page", `document.querySelector('#new-name')`, `location.href`)
				run(t, ctx, `document.querySelector('#new-name').value = 'Studio'; document.querySelector('#new-name').form.submit()`)
				waitFor(t, ctx, "the new feed's page", `/^\/setup\/feeds\/[a-z0-9]+$/.test(location.pathname) && document.readyState == 'complete'`, `location.href`)
				check("a new feed's page")
				shoot(t, ctx, fmt.Sprintf("setup-feed-new-%d-%s.png", width, scheme))
			})
		}
	}
}

// Changing an option updates the snippet and the preview in place; with
// JavaScript off, the same form submits and the page's forms post.
func TestBrowserSetupLivePreviewAndWithoutJavaScript(t *testing.T) {
	base, stop := startDemo(t, "")
	defer stop()
	ctx, _ := browser(t, 1280, 900)
	feedURL := signIn(t, ctx, base)
	navigate(t, ctx, feedURL)
	waitFor(t, ctx, "the preview", previewReady, `location.href`)
	run(t, ctx, `window.__samePage = true`)
	if hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('[data-nojs]').hidden`)); err != nil || !hidden {
		t.Errorf("the update button shows with JavaScript on (hidden %v, %v)", hidden, err)
	}

	run(t, ctx, `{ const c = document.querySelector('#o-columns'); c.value = '5'; c.dispatchEvent(new Event('input', {bubbles: true}));
		const l = document.querySelector('#o-layout'); l.value = 'carousel'; l.dispatchEvent(new Event('change', {bubbles: true})) }`)
	waitFor(t, ctx, "the snippet, the preview and the address to follow the options without a page load",
		`window.__samePage && document.querySelector('#snippet').value.includes('data-columns="5" data-layout="carousel"') &&
		 `+previewRoot+`.querySelector('.feedd.feedd-carousel.feedd-c5') &&
		 location.search == '?columns=5&layout=carousel'`,
		`[window.__samePage, document.querySelector('#snippet').value, document.querySelector('[data-preview-frame]').src, location.search].join(' | ')`)

	run(t, ctx, `{ const c = document.querySelector('#o-columns'); c.value = '99'; c.dispatchEvent(new Event('input', {bubbles: true})) }`)
	waitFor(t, ctx, "the bad value named, the last good snippet kept",
		`!document.querySelector('#options-error').hidden && document.querySelector('#options-error').textContent.includes('columns must be') &&
		 document.querySelector('#snippet').value.includes('data-columns="5"') && window.__samePage`,
		`document.querySelector('#options-error').outerHTML`)

	// JavaScript off: a fresh page without the script's help.
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	navigate(t, ctx, feedURL)
	waitFor(t, ctx, "the page without JavaScript", `document.readyState == 'complete' && document.querySelector('#snippet')`, `location.href`)
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('.copy-button').length + (document.querySelector('[data-nojs]').hidden ? 1 : 0)`)); err != nil || n != 0 {
		t.Fatalf("the script ran with JavaScript off (%d, %v)", n, err)
	}
	run(t, ctx, `document.querySelector('#o-columns').value = '4'; document.querySelector('[data-nojs]').click()`)
	waitFor(t, ctx, "the options submitted as a page load", `location.search.includes('columns=4') && document.readyState == 'complete' &&
		document.querySelector('#snippet').value.includes('data-columns="4"') && document.querySelector('[data-preview-frame]').src.includes('columns=4')`,
		`location.href + ' ' + document.querySelector('#snippet').value`)
	run(t, ctx, `document.querySelector('#name').value = 'Bakery, renamed'; document.querySelector('#name').form.querySelector('button').click()`)
	waitFor(t, ctx, "the rename posted and redirected back", `document.readyState == 'complete' && document.querySelector('h1').textContent == 'Bakery, renamed' &&
		document.body.innerText.includes('Name saved.')`, `location.href + ' ' + document.body.innerText.slice(0, 300)`)
	run(t, ctx, `document.querySelector('a[href$="/delete"]').click()`)
	waitFor(t, ctx, "the delete confirmation page", `location.pathname.endsWith('/delete') && document.readyState == 'complete'`, `location.href`)
	run(t, ctx, `document.querySelector('button.danger.solid').click()`)
	waitFor(t, ctx, "the feed deleted", `location.pathname == '/setup' && document.readyState == 'complete' && document.body.innerText.includes('Feed deleted') &&
		!document.body.innerText.includes('Bakery, renamed')`, `location.href + ' ' + document.body.innerText.slice(0, 300)`)
}
