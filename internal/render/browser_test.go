package render

// Real-browser tests: headless Chromium driven over the DevTools protocol.
// An "owner's site" and feedd run on two loopback origins; feedd serves the
// real handlers over a fake Source and pictures drawn in code.

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/feedd/feedd/internal/testutil"
)

// site is the pair of servers a browser test talks to.
type site struct {
	feedd, owner *httptest.Server
	src          *fakeSource

	mu    sync.Mutex
	gate  chan struct{} // image responses wait until it is closed
	fgate chan struct{} // fragment responses wait until it is closed
	pages map[string]func(w http.ResponseWriter, r *http.Request)
	pics  sync.Map // path → PNG bytes
}

func newSite(t *testing.T) *site {
	s := &site{pages: map[string]func(http.ResponseWriter, *http.Request){}}
	open := make(chan struct{})
	close(open)
	s.gate, s.fgate = open, open

	mux := http.NewServeMux()
	s.feedd = httptest.NewServer(mux)
	t.Cleanup(s.feedd.Close)
	s.src = newFakeSource(s.feedd.URL)
	mux.Handle("/media/", http.HandlerFunc(s.media))
	e := newTestEcho(t, s.src, s.feedd.URL)
	mux.Handle("/feeds/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		g := s.fgate
		s.mu.Unlock()
		select {
		case <-g:
		case <-r.Context().Done():
			return
		}
		e.ServeHTTP(w, r)
	}))
	mux.Handle("/", e)

	s.owner = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := s.pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	}))
	t.Cleanup(s.owner.Close)
	return s
}

// holdImages makes image responses wait until the returned func is called,
// so a test can look at the layout before any picture has arrived.
func (s *site) holdImages() (release func()) {
	g := make(chan struct{})
	s.mu.Lock()
	s.gate = g
	s.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(g) }) }
}

// holdFeeds makes fragment responses wait until the returned func is
// called, so a test can let the host page paint before the feed arrives.
func (s *site) holdFeeds() (release func()) {
	g := make(chan struct{})
	s.mu.Lock()
	s.fgate = g
	s.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(g) }) }
}

var picPath = regexp.MustCompile(`^/media/([a-z0-9-]+)-(\d+)(?:-(\d+)x(\d+))?\.png$`)

// media draws the requested picture: a diagonal gradient in the post's
// colour with a band marking the width, so screenshots show which file loaded.
func (s *site) media(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	g := s.gate
	s.mu.Unlock()
	select {
	case <-g:
	case <-r.Context().Done():
		return
	}
	m := picPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		http.NotFound(w, r)
		return
	}
	b, ok := s.pics.Load(r.URL.Path)
	if !ok {
		wd, _ := strconv.Atoi(m[2])
		ht := wd
		if m[3] != "" {
			a, _ := strconv.Atoi(m[3])
			c, _ := strconv.Atoi(m[4])
			ht = wd * c / a
		}
		b = drawPic(m[1], wd, ht)
		s.pics.Store(r.URL.Path, b)
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Write(b.([]byte))
}

func drawPic(key string, w, h int) []byte {
	var sum int
	for _, c := range key {
		sum = sum*31 + int(c)
	}
	base := palette[(sum%len(palette)+len(palette))%len(palette)]
	r0, _ := strconv.ParseUint(base[1:3], 16, 8)
	g0, _ := strconv.ParseUint(base[3:5], 16, 8)
	b0, _ := strconv.ParseUint(base[5:7], 16, 8)
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			f := float64(x+y) / float64(w+h)
			i := img.PixOffset(x, y)
			img.Pix[i] = uint8(min(255, float64(r0)*(1.1-f*0.6)))
			img.Pix[i+1] = uint8(min(255, float64(g0)*(1.1-f*0.6)))
			img.Pix[i+2] = uint8(min(255, float64(b0)*(1.1-f*0.6)))
			img.Pix[i+3] = 255
		}
	}
	band := color.NRGBA{255, 255, 255, 200}
	for y := h/2 - h/40; y < h/2+h/40; y++ {
		for x := w / 10; x < w/10+w*8/10*w/1080; x++ {
			img.SetNRGBA(x, y, band)
		}
	}
	var b bytes.Buffer
	(&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&b, img)
	return b.Bytes()
}

// page registers an owner's page; {{F}} in body becomes feedd's origin.
func (s *site) page(path, csp, body string) string {
	return s.pageIn("en", path, csp, body)
}

// pageIn is page in another language than English.
func (s *site) pageIn(lang, path, csp, body string) string {
	body = strings.ReplaceAll(body, "{{F}}", s.feedd.URL)
	s.pages[path] = func(w http.ResponseWriter, r *http.Request) {
		if csp != "" {
			w.Header().Set("Content-Security-Policy", strings.ReplaceAll(csp, "{{F}}", s.feedd.URL))
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!doctype html><html lang="+lang+"><head><meta charset=utf-8><meta name=viewport content='width=device-width,initial-scale=1'><title>Shop</title></head>"+body)
	}
	return s.owner.URL + path
}

// probe is installed before any page script: it records layout shifts, CSP
// violations, console warnings and uncaught errors in window.__t.
const probe = `
window.__t = {cls: 0, shifts: [], csp: [], warns: [], errors: []};
new PerformanceObserver(l => { for (const e of l.getEntries()) if (!e.hadRecentInput) { __t.cls += e.value; __t.shifts.push(e.value) } })
  .observe({type: 'layout-shift', buffered: true});
document.addEventListener('securitypolicyviolation', e => __t.csp.push(e.violatedDirective + ' ' + e.blockedURI));
const __warn = console.warn;
console.warn = (...a) => { __t.warns.push(a.join(' ')); __warn.apply(console, a) };
addEventListener('error', e => __t.errors.push(String(e.message)));
addEventListener('unhandledrejection', e => __t.errors.push(String(e.reason)));
`

// tab is one browser tab with every request it made.
type tab struct {
	t   *testing.T
	ctx context.Context
	mu  sync.Mutex
	req []string
	ids map[network.RequestID]string // request → URL
	got map[string]float64           // URL → bytes on the wire, once finished
}

// newTab starts a fresh browser (own profile, so no cache is shared between
// tests) at the given viewport.
func newTab(t *testing.T, width, height int64) *tab {
	exe := testutil.Chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	tb := &tab{t: t, ctx: ctx, ids: map[network.RequestID]string{}, got: map[string]float64{}}
	err := chromedp.Listen(ctx, func(ev any) {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			tb.req = append(tb.req, e.Request.URL)
			tb.ids[e.RequestID] = e.Request.URL
		case *network.EventLoadingFinished:
			tb.got[tb.ids[e.RequestID]] += e.EncodedDataLength
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	// Headless tabs are not focused: without this, keys typed into the page
	// do not activate links and :focus-visible never matches.
	if _, err := chromedp.Call(ctx, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: probe}); err != nil {
		t.Fatal(err)
	}
	tb.do(chromedp.EmulateViewport(width, height))
	return tb
}

// open starts loading u and returns once the new document exists; it does
// not wait for the load event, which held images would delay. Tests wait
// on the DOM conditions they need instead.
func (tb *tab) open(u string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, page.Navigate, page.NavigateParams{URL: u}); err != nil {
		tb.t.Fatalf("navigate to %s: %v", u, err)
	}
	tb.wait("the page", "location.href == "+strconv.Quote(u)+" && window.__t")
}

func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.t.Fatal(err)
	}
}

// eval runs JS and decodes its value into T.
func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		tb.t.Fatalf("%s: %v", js, err)
	}
	return v
}

// wait polls a JS predicate until it holds.
func (tb *tab) wait(what, pred string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+pred+")", chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		tb.t.Fatalf("waiting for %s: %v", what, err)
	}
}

// until waits (with a deadline) for pred, then returns the value of show,
// so a failure can say what the page holds instead.
func (tb *tab) until(pred, show string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	chromedp.Run(ctx, chromedp.Poll[bool]("!!("+pred+")", chromedp.WithPollingInterval(20*time.Millisecond)))
	return eval[string](tb, "String("+show+")")
}

func (tb *tab) requests() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.req...)
}

// onlyFeedd fails when any request but the page itself (its stylesheet,
// and the browser's own favicon request for it) left for another origin
// than feedd's.
func (tb *tab) onlyFeedd(s *site, pageURL string) {
	tb.t.Helper()
	for _, u := range tb.requests() {
		if u != pageURL && u != s.owner.URL+"/favicon.ico" && u != s.owner.URL+"/bakery.css" && !strings.HasPrefix(u, s.feedd.URL+"/") {
			tb.t.Errorf("request to %s: not feedd's origin", u)
		}
	}
}

// noProblems fails on CSP violations, uncaught errors, layout shift and
// console warnings other than the allowed count.
func (tb *tab) noProblems(warns int) {
	tb.t.Helper()
	p := eval[struct {
		CLS    float64
		Shifts []float64
		CSP    []string
		Warns  []string
		Errors []string
	}](tb, `({cls: __t.cls, shifts: __t.shifts, csp: __t.csp, warns: __t.warns, errors: __t.errors})`)
	tb.t.Logf("cumulative layout shift: %v", p.CLS)
	if p.CLS != 0 {
		tb.t.Errorf("cumulative layout shift %v (shifts %v), want 0", p.CLS, p.Shifts)
	}
	if len(p.CSP) > 0 {
		tb.t.Errorf("CSP violations: %v", p.CSP)
	}
	if len(p.Errors) > 0 {
		tb.t.Errorf("uncaught errors: %v", p.Errors)
	}
	if len(p.Warns) != warns {
		tb.t.Errorf("console warnings %q, want %d", p.Warns, warns)
	}
}

// altText fails unless every image in the feed (tiles, carousel children
// waiting in templates, the avatar) has an alt attribute, and every picture
// of a post a real description: the avatar alone is decorative (the name
// stands beside it).
func (tb *tab) altText(sel string) {
	tb.t.Helper()
	imgs := eval[[]struct {
		Class, Alt string
		Has        bool
	}](tb, `(() => { const r = `+sr(sel)+`;
		const all = [...r.querySelectorAll('img'), ...[...r.querySelectorAll('template')].flatMap(t => [...t.content.querySelectorAll('img')])];
		return all.map(i => ({class: i.className, alt: i.alt, has: i.hasAttribute('alt')})) })()`)
	if len(imgs) == 0 {
		tb.t.Fatal("no images in the feed")
	}
	bad := regexp.MustCompile(`(?i)^\s*$|^(image|photo|img)\s*\d*$|\.(jpe?g|png|webp)$`)
	for i, im := range imgs {
		switch {
		case !im.Has:
			tb.t.Errorf("image %d (%q) has no alt attribute", i, im.Class)
		case im.Class == "feedd-avatar":
		case bad.MatchString(im.Alt):
			tb.t.Errorf("image %d has alt %q: not a description", i, im.Alt)
		}
	}
}

// shot saves a screenshot under $TMPDIR/feedd-shots for a human to look at.
func (tb *tab) shot(name string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	// Quality 100 makes it a PNG.
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Fatal(err)
	}
	dir := filepath.Join(os.TempDir(), "feedd-shots")
	os.MkdirAll(dir, 0o755)
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("screenshot: %s", p)
}

const strictCSP = "default-src 'none'; script-src {{F}}; style-src {{F}}; img-src {{F}}; connect-src {{F}}"

// sr is the JS for the shadow root of the feed element with this id.
func sr(sel string) string { return `document.querySelector('` + sel + `').shadowRoot` }

// allLoaded: every tile image of the shadow root has its file.
func allLoaded(sel string) string {
	return `[...` + sr(sel) + `.querySelectorAll('.feedd-tile img')].every(i => i.complete && i.naturalWidth > 0)`
}

func TestBrowserStrictCSPGrid(t *testing.T) {
	s := newSite(t)
	u := s.page("/csp", strictCSP, `<body><h1>Our shop</h1>
<div id="feed" data-feedd="demo" data-columns="3" data-limit="12" data-captions="below"></div>
<script src="{{F}}/widget.js" async></script></body>`)
	tb := newTab(t, 1280, 900)
	release := s.holdImages()
	tb.open(u)
	// The grid is laid out before any picture arrives.
	tb.wait("12 tiles", sr("#feed")+`?.querySelectorAll('.feedd-item').length == 12`)
	boxes := eval[[]float64](tb, `[...`+sr("#feed")+`.querySelectorAll('.feedd-tile')].map(a => a.getBoundingClientRect().height)`)
	for i, h := range boxes {
		if h < 300 {
			t.Fatalf("tile %d is %vpx high before its image loaded: space not reserved", i, h)
		}
	}
	release()
	tb.do(chromedp.Evaluate[chromedp.Void](`scrollTo(0, document.body.scrollHeight)`))
	tb.wait("every image", allLoaded("#feed"))
	tb.noProblems(0)
	tb.onlyFeedd(s, u)
	tb.altText("#feed")
	if alt := eval[string](tb, sr("#feed")+`.querySelectorAll('.feedd-tile img')[5].alt`); !strings.Contains(alt, "Post number 5") {
		t.Errorf("post without alt text: alt %q, want one from its caption", alt)
	}

	// Placeholders come from CSSOM, not style attributes.
	if bg := eval[string](tb, sr("#feed")+`.querySelector('.feedd-tile img').style.backgroundColor`); bg != "rgb(192, 57, 43)" {
		t.Errorf("dominant colour placeholder = %q", bg)
	}

	// The hostile caption is shown as text and ran nothing.
	got := eval[struct {
		Pwned    bool
		Text     string
		Children int
		Items    int
	}](tb, `(() => { const c = `+sr("#feed")+`.querySelectorAll('.feedd-cap')[1];
		return {pwned: 'pwned' in window, text: c.textContent, children: c.children.length,
		        items: `+sr("#feed")+`.querySelectorAll('li').length} })()`)
	if got.Pwned || got.Children != 0 || got.Text != hostile || got.Items != 12 {
		t.Errorf("hostile caption: %+v", got)
	}

	// Keyboard-only lightbox.
	tb.do(chromedp.Evaluate[chromedp.Void](sr("#feed") + `.querySelector('.feedd-tile').focus()`))
	tb.do(chromedp.KeyEvent(kb.Enter))
	tb.wait("the dialog", sr("#feed")+`.querySelector('dialog')?.open`)
	state := func() (s struct{ Alt, Count, Go, Cap, Focus string }) {
		return eval[struct{ Alt, Count, Go, Cap, Focus string }](tb, `(() => { const d = `+sr("#feed")+`.querySelector('dialog');
			const f = `+sr("#feed")+`.activeElement;
			return {alt: d.querySelector('img').alt, count: d.querySelector('.feedd-n').textContent,
			        go: d.querySelector('.feedd-go').textContent, cap: d.querySelector('p').textContent,
			        focus: f ? (d.contains(f) ? 'dialog' : f.className) : 'none'} })()`)
	}
	if st := state(); st.Alt != "Photo 0 of the studio" || st.Go != "View on Instagram" || st.Focus != "dialog" {
		t.Errorf("opened on %+v", st)
	}
	tb.shot("lightbox-1280")
	tb.do(chromedp.KeyEvent(kb.ArrowRight))
	if st := state(); st.Alt != "Photo 1 of the studio" || st.Cap != hostile {
		t.Errorf("after →: %+v", st)
	}
	tb.do(chromedp.KeyEvent(kb.ArrowRight), chromedp.KeyEvent(kb.ArrowRight))
	if st := state(); st.Alt != "Slide 1 of post 3" || st.Count != "1 / 3" {
		t.Errorf("carousel: %+v", st)
	}
	tb.do(chromedp.KeyEvent(kb.ArrowRight))
	if st := state(); st.Alt != "Slide 2 of post 3" || st.Count != "2 / 3" {
		t.Errorf("carousel child 2: %+v", st)
	}
	tb.do(chromedp.KeyEvent(kb.ArrowLeft))
	if st := state(); st.Alt != "Slide 1 of post 3" {
		t.Errorf("← in the carousel: %+v", st)
	}
	tb.do(chromedp.KeyEvent(kb.ArrowRight), chromedp.KeyEvent(kb.ArrowRight), chromedp.KeyEvent(kb.ArrowRight))
	// Post 4 is the second account's: the lightbox says whose it is.
	if st := state(); st.Alt != "Photo 4 of the studio" || st.Go != "Watch on Instagram" || st.Cap != "@acme_two: Post number 4 from the studio. #acme" {
		t.Errorf("video post: %+v", st)
	}
	for i := range 6 {
		tb.do(chromedp.KeyEvent(kb.Tab))
		if st := state(); st.Focus != "dialog" {
			t.Fatalf("Tab %d left the dialog: focus on %q", i+1, st.Focus)
		}
	}
	tb.do(chromedp.KeyEvent(kb.Escape))
	tb.wait("the dialog to close", `!`+sr("#feed")+`.querySelector('dialog').open`)
	// The dialog's close event, which returns focus, is a task of its own.
	focusOn := sr("#feed") + `.activeElement?.querySelector('img')?.alt`
	if focus := tb.until(focusOn+` == "Photo 4 of the studio"`, focusOn); focus != "Photo 4 of the studio" {
		t.Errorf("focus after Esc on %q, want the tile of the post shown", focus)
	}

	// Load more appends the next page and moves focus to its first tile.
	tb.do(chromedp.Evaluate[chromedp.Void](sr("#feed") + `.querySelector('.feedd-more').click()`))
	tb.wait("24 tiles", sr("#feed")+`.querySelectorAll('.feedd-item').length == 24`)
	if focus := tb.until(focusOn+` == "Photo 12 of the studio"`, focusOn); focus != "Photo 12 of the studio" {
		t.Errorf("focus after load more on %q", focus)
	}
	tb.do(chromedp.Evaluate[chromedp.Void](sr("#feed") + `.querySelector('.feedd-more').click()`))
	tb.wait("30 tiles and no more link", sr("#feed")+`.querySelectorAll('.feedd-item').length == 30 && !`+sr("#feed")+`.querySelector('.feedd-more')`)
	tb.noProblems(0)
	tb.onlyFeedd(s, u)
}

func TestBrowserTwoFeedsScriptBeforeAndAfter(t *testing.T) {
	for _, where := range []string{"head", "end"} {
		t.Run(where, func(t *testing.T) {
			s := newSite(t)
			script := `<script src="{{F}}/widget.js" async></script>`
			head, end := "", ""
			if where == "head" {
				head = script
			} else {
				end = script + script // twice: the second copy must do nothing
			}
			u := s.page("/two", "", head+`<body>
<div id="a" data-feedd="demo" data-limit="6"></div>
<div id="b" data-feedd="other" data-layout="carousel" data-columns="2" data-theme="dark" data-header="false"></div>
`+end+`</body>`)
			tb := newTab(t, 1280, 900)
			tb.open(u)
			tb.wait("both feeds", sr("#a")+`?.querySelectorAll('li').length == 6 && `+sr("#b")+`?.querySelectorAll('li').length == 5`)
			// A feed element added later is found too.
			tb.do(chromedp.Evaluate[chromedp.Void](`document.body.insertAdjacentHTML('beforeend', '<div id="c" data-feedd="other" data-limit="2"></div>')`))
			tb.wait("the late feed", sr("#c")+`?.querySelectorAll('li').length == 2`)
			// The carousel loads what is in view; the rest follows when it
			// is scrolled.
			tb.wait("images", allLoaded("#a")+` && [...`+sr("#b")+`.querySelectorAll('.feedd-tile img')].slice(0, 2).every(i => i.complete && i.naturalWidth)`)
			if n := eval[int](tb, `[...`+sr("#b")+`.querySelectorAll('.feedd-tile img')].filter(i => i.complete && i.naturalWidth).length`); n == 5 {
				t.Error("the carousel loaded every image before any was scrolled into view")
			}
			tb.do(chromedp.Evaluate[chromedp.Void](`(l => l.scrollLeft = l.scrollWidth)(` + sr("#b") + `.querySelector('.feedd-list'))`))
			tb.wait("the carousel's other images", allLoaded("#b"))
			var frags []string
			for _, r := range tb.requests() {
				if strings.Contains(r, "/feeds/") {
					frags = append(frags, strings.TrimPrefix(r, s.feedd.URL))
				}
			}
			if len(frags) != 3 {
				t.Errorf("fragment requests %q, want one per feed element", frags)
			}
			if c := eval[string](tb, sr("#b")+`.querySelector('.feedd').className`); c != "feedd feedd-carousel feedd-c2 feedd-cap-none feedd-t-dark" {
				t.Errorf("second feed's options: %q", c)
			}
			if h := eval[bool](tb, sr("#b")+`.querySelector('.feedd-head') != null`); h {
				t.Error("data-header=false still shows the header")
			}
			tb.noProblems(0)
			tb.onlyFeedd(s, u)
		})
	}
}

func TestBrowserEnhancesServerRenderedFragment(t *testing.T) {
	s := newSite(t)
	res, err := http.Get(s.feedd.URL + "/feeds/demo.html?limit=9&captions=hover")
	if err != nil {
		t.Fatal(err)
	}
	frag, _ := io.ReadAll(res.Body)
	res.Body.Close()
	u := s.page("/ssr", "", `<body><h1>Our shop</h1>`+string(frag)+`
<p id="below">Opening hours: 9 to 5.</p>
<script>document.querySelector('.feedd img').__mark = 'kept'; window.__before = document.querySelector('.feedd').getBoundingClientRect().height</script>
<script src="{{F}}/widget.js" async></script></body>`)
	tb := newTab(t, 1280, 900)
	release := s.holdImages()
	tb.open(u)
	tb.wait("enhancement", `document.querySelector('h1 ~ div')?.shadowRoot?.querySelector('.feedd')`)
	got := eval[struct {
		Mark   string
		Light  bool
		Before float64
		After  float64
	}](tb, `(() => { const r = document.querySelector('h1 ~ div').shadowRoot;
		return {mark: r.querySelector('.feedd img').__mark, light: !!document.querySelector('.feedd'),
		        before: __before, after: r.querySelector('.feedd').getBoundingClientRect().height} })()`)
	if got.Mark != "kept" {
		t.Error("the server-rendered <img> nodes were replaced, not enhanced")
	}
	if got.Light || got.Before != got.After || got.Before < 300 {
		t.Errorf("enhancement changed the layout: %+v", got)
	}
	release()
	tb.do(chromedp.Evaluate[chromedp.Void](`scrollTo(0, document.body.scrollHeight)`))
	tb.wait("every image", allLoaded("h1 ~ div"))
	for _, r := range tb.requests() {
		if strings.Contains(r, "/feeds/") {
			t.Errorf("the widget fetched %s although the fragment was there", r)
		}
	}
	tb.noProblems(0)
	tb.onlyFeedd(s, u)
	tb.altText("h1 ~ div")

	// The layout-shift probe can fail: a block pushed in above the feed
	// is a shift it reports.
	tb.do(chromedp.Evaluate[chromedp.Void](`scrollTo(0, 0); (d => { d.style.height = '200px'; document.body.prepend(d) })(document.createElement('div'))`))
	if cls := tb.until(`__t.cls > 0`, `__t.cls`); cls == "0" {
		t.Error("the layout-shift probe saw no shift when the feed was pushed down")
	}
}

func TestBrowserFailingFeedLeavesPageAlone(t *testing.T) {
	for _, id := range []string{"nope", "broken"} {
		t.Run(id, func(t *testing.T) {
			s := newSite(t)
			u := s.page("/x", strictCSP, `<body><div id="f" data-feedd="`+id+`"><p>Follow us on the feed!</p></div>
<script src="{{F}}/widget.js" async></script></body>`)
			tb := newTab(t, 1280, 900)
			tb.open(u)
			tb.wait("the warning", `__t.warns.length > 0`)
			html := eval[string](tb, `document.querySelector('#f').innerHTML + (document.querySelector('#f').shadowRoot ? ' +shadow' : '')`)
			if html != "<p>Follow us on the feed!</p>" {
				t.Errorf("page changed: %q", html)
			}
			// Only the script's own warning; the failed fetch logs one more
			// line of the browser's (not a console.warn call).
			tb.noProblems(1)
			tb.onlyFeedd(s, u)
		})
	}
}

// TestBrowserSmallestAdequateImages checks that each tile fetched the
// smallest stored width that covers its box at phone and desktop widths.
func TestBrowserSmallestAdequateImages(t *testing.T) {
	for _, vw := range []int64{375, 1280} {
		t.Run(strconv.Itoa(int(vw)), func(t *testing.T) {
			s := newSite(t)
			u := s.page("/demo", "", `<body style="margin:0;font:16px system-ui"><main style="max-width:1200px;margin:auto;padding:16px">
<h1>Our shop</h1><div data-feedd="demo" data-columns="3" data-limit="12" data-captions="hover"></div></main>
<script src="{{F}}/widget.js" async></script></body>`)
			tb := newTab(t, vw, 900)
			tb.open(u)
			tb.wait("tiles", sr("[data-feedd]")+`?.querySelectorAll('li').length == 12`)
			tb.do(chromedp.Evaluate[chromedp.Void](`scrollTo(0, document.body.scrollHeight)`))
			tb.wait("every image", allLoaded("[data-feedd]"))
			// The file's width is its srcset descriptor: naturalWidth of a
			// srcset image is scaled to the chosen density, not the file's.
			tiles := eval[[]struct {
				Need float64
				Got  int
				Src  string
			}](tb, `[...`+sr("[data-feedd]")+`.querySelectorAll('.feedd-tile img')].map(i => {
				const b = i.getBoundingClientRect(), w = +i.getAttribute('width'), h = +i.getAttribute('height');
				const c = i.srcset.split(',').map(s => s.trim().split(/\s+/)).find(([u]) => new URL(u, location).href == i.currentSrc);
				return {need: Math.max(b.width, b.height * w / h) * devicePixelRatio, got: c ? parseInt(c[1]) : -1, src: i.currentSrc} })`)
			widths := []int{320, 640, 1080}
			for i, tl := range tiles {
				smallest := widths[len(widths)-1]
				for _, w := range widths {
					if float64(w) >= tl.Need {
						smallest = w
						break
					}
				}
				if tl.Got != smallest {
					t.Errorf("tile %d needs %.0f px: loaded %d px (%s), smallest adequate is %d", i, tl.Need, tl.Got, tl.Src, smallest)
				}
			}
			tb.noProblems(0)
			tb.onlyFeedd(s, u)
			// Figures for the issue note: what the grid cost on the wire
			// (headers included) and when the first picture arrived.
			var script, frag, imgs, n float64
			tb.mu.Lock()
			for u, b := range tb.got {
				switch {
				case strings.HasSuffix(u, "/widget.js"):
					script += b
				case strings.Contains(u, "/feeds/"):
					frag += b
				case strings.Contains(u, "/media/p"):
					imgs += b
					n++
				}
			}
			tb.mu.Unlock()
			// The same posts' largest files stand in for the originals.
			var orig float64
			for _, u := range eval[[]string](tb, `[...`+sr("[data-feedd]")+`.querySelectorAll('.feedd-tile img')].map(i => i.srcset.split(',').pop().trim().split(' ')[0])`) {
				m := picPath.FindStringSubmatch(strings.TrimPrefix(u, s.feedd.URL))
				if m == nil {
					t.Fatalf("unexpected image URL %q", u)
				}
				w, _ := strconv.Atoi(m[2])
				a, _ := strconv.Atoi(m[3])
				c, _ := strconv.Atoi(m[4])
				orig += float64(len(drawPic(m[1], w, w*c/a)))
			}
			first := eval[float64](tb, `Math.min(...performance.getEntriesByType('resource').filter(e => e.name.includes('/media/p')).map(e => e.responseEnd))`)
			t.Logf("%d px: widget.js %.0f B, fragment %.0f B, %.0f tile images %.0f B (largest files of the same posts: %.0f B, %.0f%%); first tile image received %.0f ms after navigation",
				vw, script, frag, n, imgs, orig, 100*imgs/orig, first)
			tb.do(chromedp.Evaluate[chromedp.Void](`scrollTo(0, 0)`))
			tb.shot(fmt.Sprintf("demo-%d", vw))
		})
	}
}
