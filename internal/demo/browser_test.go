package demo

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// browser starts a headless Chromium, or skips when there is none (unless
// FEEDD_BROWSER_TESTS=1, as in CI, makes that a failure).
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	var exe string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			exe = p
			break
		}
	}
	if exe == "" {
		if os.Getenv("FEEDD_BROWSER_TESTS") == "1" {
			t.Fatal("FEEDD_BROWSER_TESTS=1 but no chromium on PATH")
		}
		t.Skip("browser test skipped: no chromium on PATH")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1100, 900),
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
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(c, chromedp.Evaluate[any](js)); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
}

// The demo as a newcomer sees it: the widget renders the demo feed on the
// front page from feedd alone, the setup page is one click away, and a
// second sandbox account connects through the sandbox's consent page.
func TestBrowserDemoFrontPageAndSecondAccount(t *testing.T) {
	ctx, requests := browser(t)
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
