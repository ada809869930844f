package demo

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/testutil"
)

// browser starts a headless Chromium (see testutil.Chromium).
func browser(t *testing.T, width, height int) (context.Context, func() []string) {
	t.Helper()
	exe := testutil.Chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(width, height),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	var mu sync.Mutex
	var reqs []string
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			reqs = append(reqs, e.Request.URL)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), reqs...)
	}
}

func navigate(t *testing.T, ctx context.Context, u string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Call(c, page.Navigate, page.NavigateParams{URL: u}); err != nil {
		t.Fatalf("navigate to %s: %v", u, err)
	}
}

// waitFor polls a JS predicate; on timeout it fails showing what show
// evaluates to.
func waitFor(t *testing.T, ctx context.Context, what, pred, show string) {
	t.Helper()
	// Evaluate again and again rather than one Poll: a navigation in
	// between destroys the context a Poll runs in.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok, err := chromedp.Run(c, chromedp.Evaluate[bool]("!!("+pred+")"))
		cancel()
		if err == nil && ok {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	got, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("String("+show+")"))
	t.Fatalf("waiting for %s; page shows: %s", what, got)
}

func run(t *testing.T, ctx context.Context, js string) {
	t.Helper()
	eval[any](t, ctx, js)
}

// eval evaluates js on the page and returns its value.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// The demo as a newcomer sees it: the widget renders the demo feed on the
// front page from feedd alone, the setup page is one click away, and a
// second sandbox account connects through the sandbox's consent page.
func TestBrowserDemoFrontPageAndSecondAccount(t *testing.T) {
	ctx, requests := browser(t, 1100, 900)
	base, stop := startDemo(t, "")
	defer stop()

	navigate(t, ctx, base+"/")
	const tiles = `(document.querySelector('[data-feedd]').shadowRoot || document).querySelectorAll('.feedd-item img')`
	waitFor(t, ctx, "the widget's first 12 pictures",
		`[...`+tiles+`].filter(i => i.complete && i.naturalWidth > 0).length >= 12`,
		tiles+`.length + ' tiles; ' + document.body.innerText.slice(0, 300)`)
	alts, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...`+tiles+`].map(i => i.alt)`))
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range alts {
		if strings.TrimSpace(a) == "" {
			t.Errorf("tile %d has no alt text", i)
		}
	}
	for _, u := range requests() {
		if !strings.HasPrefix(u, base+"/") && !strings.HasPrefix(u, "data:") {
			t.Errorf("the front page made the browser contact %s", u)
		}
	}

	// To the setup page, signed in by the demo's one-time link.
	run(t, ctx, `document.querySelector('#setup-link').click()`)
	waitFor(t, ctx, "the setup page", `location.pathname == '/setup' && document.querySelector('#new-name')`, `location.href`)
	run(t, ctx, `document.querySelector('#new-name').value = 'Studio'; document.querySelector('#new-name').form.submit()`)
	waitFor(t, ctx, "the new feed's page", `/^\/setup\/feeds\/[a-z0-9]+$/.test(location.pathname)`, `location.href + ' ' + document.body.innerText.slice(0, 300)`)
	run(t, ctx, `document.querySelector('form[action$="/connect"]').submit()`)

	// The sandbox's consent page: choose the second account, Allow.
	waitFor(t, ctx, "the sandbox consent page", `location.pathname.startsWith('`+SandboxPath+`/') && document.querySelector('input[value="sandbox_studio"]')`, `location.href`)
	run(t, ctx, `document.querySelector('input[value="sandbox_studio"]').checked = true; document.querySelector('button[value="allow"]').click()`)
	waitFor(t, ctx, "the connected feed's page",
		`/^\/setup\/feeds\/[a-z0-9]+$/.test(location.pathname) && document.body.innerText.includes('@sandbox_studio')`,
		`location.href + ' ' + document.body.innerText.slice(0, 400)`)
	// Its first fetch starts at once: the preview appears after a reload.
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!document.querySelector('iframe[src$="/embed"]')`))
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no preview on the feed page 30s after connecting")
		}
		run(t, ctx, `location.reload()`)
		waitFor(t, ctx, "the reloaded page", `document.readyState == 'complete'`, `location.href`)
	}
	t.Logf("demo front page and second account checked at %s (%s)", base, strconv.Itoa(len(requests()))+" requests")
}

// What a 12-post grid costs a visitor at 1280 px, against the sandbox's
// original pictures of the same posts, and how soon the first picture
// arrives. Logged for the record; asserted only loosely (the widget must
// fetch less than the originals).
func TestBrowserDemoGridBytes(t *testing.T) {
	ctx, _ := browser(t, 1280, 1000)
	base, sb, stop := startDemoSandbox(t, "")
	defer stop()

	navigate(t, ctx, base+"/")
	const tiles = `[...(document.querySelector('[data-feedd]').shadowRoot || document).querySelectorAll('.feedd-item img')].slice(0, 12)`
	waitFor(t, ctx, "12 pictures", tiles+`.filter(i => i.complete && i.naturalWidth > 0).length == 12`, tiles+`.length`)
	type stat struct {
		Bytes   float64 `json:"bytes"`
		FirstMS float64 `json:"first_ms"`
		N       int     `json:"n"`
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[stat](`(() => {
		const want = new Set(`+tiles+`.map(i => i.currentSrc))
		const es = performance.getEntriesByType('resource').filter(e => want.has(e.name))
		return {bytes: es.reduce((a, e) => a + e.encodedBodySize, 0), first_ms: Math.min(...es.map(e => e.responseEnd)), n: es.length}
	})()`))
	if err != nil {
		t.Fatal(err)
	}

	// The originals: the cover picture of the same 12 posts at the sandbox.
	tok := sb.MintLongLivedToken(sandbox.AccountBusiness, time.Now())
	q := url.Values{"fields": {"media_type,media_url,thumbnail_url,children{media_type,media_url,thumbnail_url}"}, "limit": {"12"}, "access_token": {tok}}
	resp, err := http.Get(sb.GraphURL() + "/v25.0/me/media?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Data []struct {
			MediaType    string `json:"media_type"`
			MediaURL     string `json:"media_url"`
			ThumbnailURL string `json:"thumbnail_url"`
			Children     struct {
				Data []struct {
					MediaURL     string `json:"media_url"`
					ThumbnailURL string `json:"thumbnail_url"`
				} `json:"data"`
			} `json:"children"`
		} `json:"data"`
	}
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	original := 0
	for _, m := range page.Data {
		u := m.MediaURL
		if m.MediaType == "VIDEO" || u == "" {
			u = m.ThumbnailURL
		}
		if m.MediaType == "CAROUSEL_ALBUM" && len(m.Children.Data) > 0 {
			if u = m.Children.Data[0].MediaURL; u == "" {
				u = m.Children.Data[0].ThumbnailURL
			}
		}
		_, body := get(t, http.DefaultClient, u)
		original += len(body)
	}
	t.Logf("12-post grid at 1280 px: %d pictures, %.0f bytes from feedd vs %d bytes of the sandbox's originals (%.0f%%); first picture received %.0f ms after navigation",
		got.N, got.Bytes, original, 100*got.Bytes/float64(original), got.FirstMS)
	if got.N != 12 || got.Bytes <= 0 || got.Bytes >= float64(original) {
		t.Fatalf("grid fetched %d pictures, %.0f bytes; originals %d bytes", got.N, got.Bytes, original)
	}
}
