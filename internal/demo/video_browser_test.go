package demo

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The owner turns stored videos on in the setup page and fetches; on the
// front page the reel then plays in the lightbox from feedd (poster, controls,
// no autoplay, reachable by keyboard), and the reel Instagram gives no file
// for shows its cover and "Watch on Instagram".
func TestBrowserLightboxPlaysStoredVideos(t *testing.T) {
	ctx, requests := browser(t, 1100, 900)
	base, stop := startDemo(t, "")
	defer stop()

	const sr = `document.querySelector('[data-feedd]').shadowRoot`
	navigate(t, ctx, base+"/")
	waitFor(t, ctx, "the widget", sr+` && `+sr+`.querySelectorAll('.feedd-item').length >= 12`, `document.body.innerText.slice(0, 200)`)
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](sr+`.querySelectorAll('[data-video]').length`)); n != 0 {
		t.Fatalf("%d tiles carry a video before the owner turned videos on", n)
	}

	// The owner: setup page, the demo feed, the video form, fetch now.
	run(t, ctx, `document.querySelector('#setup-link').click()`)
	waitFor(t, ctx, "the setup page", `location.pathname == '/setup' && document.querySelector('a[href^="/setup/feeds/"]')`, `location.href`)
	run(t, ctx, `document.querySelector('a[href^="/setup/feeds/"]').click()`)
	waitFor(t, ctx, "the feed page's video form", `document.querySelector('form[action$="/videos"] input[name=store]')`, `location.href + ' ' + document.body.innerText.slice(0, 300)`)
	if on, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('form[action$="/videos"] input[name=store]').checked`)); on {
		t.Fatal("videos are on before the owner turned them on")
	}
	run(t, ctx, `const f = document.querySelector('form[action$="/videos"]'); f.querySelector('input[name=store]').checked = true; f.submit()`)
	waitFor(t, ctx, "the saved settings", `document.body.innerText.includes('Video settings saved')`, `document.body.innerText.slice(0, 400)`)
	run(t, ctx, `document.querySelector('form[action$="/refresh"]').submit()`)
	// The fetch joins the demo's first one, which may still be storing the
	// pictures of 50 posts on a busy machine: more than waitFor's 20 s.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ok, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`/videos [1-9][0-9.]* KiB/.test(document.body.innerText)`))
		if ok {
			break
		}
		if time.Now().After(deadline) {
			got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 600)`))
			t.Fatalf("no stored videos on the feed page 2 minutes after Fetch posts now; it shows: %s", got)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The visitor (whose browser may keep the fragment seen before for a
	// minute: a new visitor, then).
	if _, err := chromedp.Call(ctx, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: true}); err != nil {
		t.Fatal(err)
	}
	navigate(t, ctx, base+"/")
	waitFor(t, ctx, "tiles with videos", sr+` && `+sr+`.querySelector('.feedd-item[data-video]')`, `document.body.innerText.slice(0, 200)`)
	run(t, ctx, sr+`.querySelector('.feedd-item[data-video] a').click()`)
	const v = sr + `.querySelector('dialog video')`
	waitFor(t, ctx, "the video in the lightbox", sr+`.querySelector('dialog').open && `+v+` && `+v+`.readyState >= 1`, sr+`.querySelector('dialog')?.innerHTML`)
	type videoState struct {
		Src, Poster, Label, Go string
		Controls, Autoplay     bool
		Paused                 bool
	}
	st, err := chromedp.Run(ctx, chromedp.Evaluate[videoState](`(() => { const v = `+v+`; const d = `+sr+`.querySelector('dialog');
		return {Src: v.currentSrc, Poster: v.poster, Label: v.ariaLabel || '', Go: d.querySelector('.feedd-go').textContent,
			Controls: v.controls, Autoplay: v.autoplay, Paused: v.paused} })()`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(st.Src, base+"/media/") || !strings.HasSuffix(st.Src, ".mp4") {
		t.Errorf("video source %q is not feedd's stored file", st.Src)
	}
	if !strings.HasPrefix(st.Poster, base+"/media/") || !strings.HasSuffix(st.Poster, ".jpg") {
		t.Errorf("poster %q is not the stored cover", st.Poster)
	}
	if !st.Controls || st.Autoplay || !st.Paused || st.Label == "" {
		t.Errorf("video: %+v; want controls, a label, no autoplay, paused until played", st)
	}
	if st.Go != "View on Instagram" {
		t.Errorf("the lightbox link says %q", st.Go)
	}

	axe(t, ctx, "the lightbox with a video")

	// Keyboard: Tab from the dialog reaches the video first.
	if err := chromedp.Do(ctx, chromedp.KeyEvent(kb.Tab)); err != nil {
		t.Fatal(err)
	}
	if tag, _ := chromedp.Run(ctx, chromedp.Evaluate[string](sr+`.activeElement?.tagName`)); tag != "VIDEO" {
		t.Errorf("Tab in the lightbox focused %q, want the video", tag)
	}

	// Space on the focused video plays it and pauses it again.
	if err := chromedp.Do(ctx, chromedp.KeyEvent(" ")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the video playing after Space", `!`+v+`.paused`, v+`.paused`)
	if err := chromedp.Do(ctx, chromedp.KeyEvent(" ")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the video paused after Space", v+`.paused`, v+`.paused`)

	// Played muted, it plays: its time advances.
	run(t, ctx, `(() => { const v = `+v+`; v.muted = true; v.currentTime = 0; v.play() })()`)
	waitFor(t, ctx, "the video playing", v+`.currentTime > 0.5`, v+`.currentTime + ' paused=' + `+v+`.paused + ' error=' + (`+v+`.error && `+v+`.error.code)`)

	// Closing stops it.
	if err := chromedp.Do(ctx, chromedp.KeyEvent(kb.Escape)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the closed lightbox", `!`+sr+`.querySelector('dialog').open && `+v+`.paused`, v+`.paused`)

	// The reel without media_url: the cover and "Watch on Instagram".
	run(t, ctx, sr+`.querySelector('.feedd-item[data-type=video]:not([data-video]) a').click()`)
	waitFor(t, ctx, "the lightbox of the reel without a file", sr+`.querySelector('dialog').open && `+sr+`.querySelector('dialog img')?.complete`, sr+`.querySelector('dialog')?.innerHTML`)
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(() => { const d = `+sr+`.querySelector('dialog');
		return [String(!!d.querySelector('video')), d.querySelector('.feedd-go').textContent, d.querySelector('.feedd-go').href, d.querySelector('img').currentSrc] })()`))
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != "false" || got[1] != "Watch on Instagram" || !strings.Contains(got[2], "/reel/") || !strings.HasPrefix(got[3], base+"/media/") {
		t.Errorf("reel without a file: video %s, link %q → %s, picture %s", got[0], got[1], got[2], got[3])
	}

	// The program serves the file in ranges, as players ask.
	req, _ := http.NewRequest(http.MethodGet, st.Src, nil)
	req.Header.Set("Range", "bytes=4-11")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(b) != "ftypisom" || resp.Header.Get("Content-Type") != "video/mp4" ||
		resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Errorf("Range request: %d %q %v", resp.StatusCode, b, resp.Header)
	}

	// The metrics count the feed's disk use without a series per feed.
	_, metrics := get(t, http.DefaultClient, base+"/metrics")
	if !strings.Contains(metrics, "feedd_feed_media_bytes_count 1\n") || strings.Contains(metrics, `feedd_media_referenced_bytes{kind="videos"} 0`) ||
		!strings.Contains(metrics, `feedd_media_referenced_bytes{kind="videos"}`) {
		t.Errorf("disk-use metrics: %q", grepLines(metrics, "media"))
	}

	for _, u := range requests() {
		if strings.Contains(u, ".mp4") && !strings.HasPrefix(u, base+"/media/") {
			t.Errorf("the browser fetched a video from %s", u)
		}
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
