// Command formats measures what a 12-post grid costs a browser in image
// bytes with AVIF and WebP stored beside the JPEGs, against the JPEGs
// alone, for the same posts in the same run:
//
//	go run ./scripts/formats -feedd bin/feedd -photos DIR
//
// It serves the Instagram sandbox with its pictures replaced by crops of
// real photographs (every *.jpg and *.png of DIR at least 1080 px on its
// shorter side; the sandbox draws flat gradients, which flatter every
// codec), runs two `feedd serve` processes of the given binary on it, one
// with FEEDD_MEDIA_FORMATS=none and one with the default formats, connects
// one feed to each, waits until the second has encoded the first 12 posts,
// and opens each feed's embed page (12 posts) in headless Chromium at
// 1280×800 (device pixel ratio 1) and at 375×812 (ratio 2, a phone), each
// in a fresh profile, scrolled to the end so that every lazy image loads.
// It prints the bytes of /media/ responses on the wire per case and the
// ratio formats/JPEG, and exits 1 when a ratio is above -max.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"image"
	"image/draw"
	"image/jpeg"
	_ "image/png"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	xdraw "golang.org/x/image/draw"

	"github.com/feedd/feedd/internal/sandbox"
)

const (
	callbackPath = "/auth/instagram/callback"
	adminToken   = "formats-measurement-admin-token-0123456789"
	gridPosts    = 12
)

func main() {
	bin := flag.String("feedd", "", "the feedd binary to run")
	photos := flag.String("photos", "", "directory of photographs (jpg, png)")
	maxRatio := flag.Float64("max", 0.60, "fail when formats/JPEG is above this")
	flag.Parse()
	log.SetFlags(0)
	if *bin == "" || *photos == "" {
		log.Fatal("formats: -feedd and -photos are required")
	}
	crops, err := loadCrops(*photos)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("%d photo crops of 1080×1080 from %s", len(crops), *photos)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	ok, err := run(ctx, *bin, crops, *maxRatio)
	if err != nil {
		log.Fatal(err)
	}
	if !ok {
		os.Exit(1)
	}
}

// loadCrops cuts 1080×1080 crops out of every photo at least that large,
// stepping 540 px over it: real photographic content at Instagram's size.
func loadCrops(dir string) ([]*image.RGBA, error) {
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	slices.Sort(names)
	var out []*image.RGBA
	for _, n := range names {
		ext := strings.ToLower(filepath.Ext(n))
		if ext != ".jpg" && ext != ".jpeg" && ext != ".png" {
			continue
		}
		f, err := os.Open(n)
		if err != nil {
			return nil, err
		}
		img, _, err := image.Decode(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		b := img.Bounds()
		if b.Dx() < 1080 || b.Dy() < 1080 {
			log.Printf("%s: %dx%d, smaller than 1080 px: skipped", n, b.Dx(), b.Dy())
			continue
		}
		for y := b.Min.Y; y+1080 <= b.Max.Y; y += 540 {
			for x := b.Min.X; x+1080 <= b.Max.X; x += 540 {
				c := image.NewRGBA(image.Rect(0, 0, 1080, 1080))
				draw.Draw(c, c.Bounds(), img, image.Pt(x, y), draw.Src)
				out = append(out, c)
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("formats: no photo of at least 1080×1080")
	}
	return out, nil
}

// photoCDN replaces the sandbox's JPEGs with crops of real photos, scaled
// and cut to the size the sandbox would have served, as JPEG quality 90.
type photoCDN struct {
	next  http.Handler
	crops []*image.RGBA
	mu    sync.Mutex
	done  map[string][]byte
}

func (p *photoCDN) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	p.next.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	if rec.Code == http.StatusOK && rec.Header().Get("Content-Type") == "image/jpeg" {
		body = p.photo(r.URL.Path, body)
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.Code)
	w.Write(body)
}

func (p *photoCDN) photo(path string, orig []byte) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b, ok := p.done[path]; ok {
		return b
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(orig))
	if err != nil {
		return orig
	}
	h := fnv.New32a()
	io.WriteString(h, path)
	src := p.crops[int(h.Sum32()%uint32(len(p.crops)))]
	// Cover: the crop scaled to fill the size, centred.
	s := max(float64(cfg.Width)/1080, float64(cfg.Height)/1080)
	sw, sh := int(1080*s+0.5), int(1080*s+0.5)
	scaled := image.NewRGBA(image.Rect(0, 0, sw, sh))
	xdraw.CatmullRom.Scale(scaled, scaled.Bounds(), src, src.Bounds(), xdraw.Src, nil)
	dst := image.NewRGBA(image.Rect(0, 0, cfg.Width, cfg.Height))
	draw.Draw(dst, dst.Bounds(), scaled, image.Pt((sw-cfg.Width)/2, (sh-cfg.Height)/2), draw.Src)
	var b bytes.Buffer
	jpeg.Encode(&b, dst, &jpeg.Options{Quality: 90})
	p.done[path] = b.Bytes()
	return b.Bytes()
}

type instance struct {
	name, base, id string
	cmd            *exec.Cmd
}

func run(ctx context.Context, bin string, crops []*image.RGBA, maxRatio float64) (bool, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return false, err
	}
	ports := make([]string, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return false, err
		}
		ports[i] = l.Addr().String()
		l.Close()
	}
	var redirects []string
	for _, p := range ports {
		redirects = append(redirects, "http://"+p+callbackPath)
	}
	sb := sandbox.New(sandbox.Options{
		RedirectURIs: redirects,
		BaseURL:      "http://" + ln.Addr().String(),
		Seed:         1,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	srv := &http.Server{Handler: &photoCDN{next: sb, crops: crops, done: map[string][]byte{}}, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	tmp, err := os.MkdirTemp("", "feedd-formats-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(tmp)
	var insts []*instance
	defer func() {
		for _, in := range insts {
			in.cmd.Process.Kill()
			in.cmd.Wait()
		}
	}()
	for i, formats := range []string{"none", "avif,webp"} {
		in := &instance{name: map[bool]string{true: "JPEG only", false: "AVIF+WebP"}[formats == "none"], base: "http://" + ports[i]}
		dir := filepath.Join(tmp, fmt.Sprint(i))
		in.cmd = exec.Command(bin, "serve")
		in.cmd.Env = append(os.Environ(),
			"FEEDD_ADDR="+ports[i], "FEEDD_PUBLIC_URL="+in.base, "FEEDD_DATA_DIR="+dir,
			"FEEDD_ADMIN_TOKEN="+adminToken, "FEEDD_MEDIA_FORMATS="+formats,
			"FEEDD_INSTAGRAM_APP_ID="+sb.AppID(), "FEEDD_INSTAGRAM_APP_SECRET="+sb.AppSecret(),
			"FEEDD_INSTAGRAM_AUTHORIZE_URL="+sb.AuthorizeURL(), "FEEDD_INSTAGRAM_TOKEN_URL="+sb.TokenURL(),
			"FEEDD_INSTAGRAM_GRAPH_URL="+sb.GraphURL(), "FEEDD_MEDIA_HOSTS="+ln.Addr().String(),
			"FEEDD_MEDIA_ALLOW_PRIVATE=true", "FEEDD_RATE_LIMIT=100000", "FEEDD_LOG_LEVEL=warn",
		)
		lf, err := os.Create(filepath.Join(tmp, fmt.Sprintf("feedd-%d.log", i)))
		if err != nil {
			return false, err
		}
		in.cmd.Stdout, in.cmd.Stderr = lf, lf
		if err := in.cmd.Start(); err != nil {
			return false, err
		}
		insts = append(insts, in)
		if in.id, err = connect(ctx, sb, in.base, in.base+callbackPath); err != nil {
			return false, fmt.Errorf("%s: %w", in.name, err)
		}
		log.Printf("%s: feedd on %s, feed %s polled", in.name, in.base, in.id)
	}
	start := time.Now()
	if err := waitSources(ctx, insts[1]); err != nil {
		return false, err
	}
	log.Printf("AVIF+WebP: the first %d posts encoded %s after their poll", gridPosts, time.Since(start).Round(time.Second))

	exe, err := chromium()
	if err != nil {
		return false, err
	}
	ok := true
	fmt.Printf("%-10s %-10s %8s %14s %s\n", "viewport", "feedd", "images", "bytes", "types")
	for _, vp := range []struct {
		name string
		w, h int64
		dpr  float64
		mob  bool
	}{{"1280", 1280, 800, 1, false}, {"375", 375, 812, 2, true}} {
		var sums [2]float64
		for i, in := range insts {
			n, b, types, err := measure(ctx, exe, in.base+"/feeds/"+in.id+"/embed?limit="+fmt.Sprint(gridPosts), vp.w, vp.h, vp.dpr, vp.mob)
			if err != nil {
				return false, fmt.Errorf("%s at %s: %w", in.name, vp.name, err)
			}
			sums[i] = b
			fmt.Printf("%-10s %-10s %8d %14.0f %s\n", vp.name+" px", in.name, n, b, types)
		}
		r := sums[1] / sums[0]
		fmt.Printf("%-10s ratio AVIF+WebP / JPEG only: %.2f\n", vp.name+" px", r)
		if r > maxRatio {
			ok = false
		}
	}
	// What the encoder cost the process that ran it, beside the one that
	// did not: peak memory and CPU time, and the encoder's own metrics.
	for _, in := range insts {
		hwm, cpu := procStats(in.cmd.Process.Pid)
		fmt.Printf("%-10s peak RSS %d MiB, CPU %.1f s\n", in.name, hwm>>20, cpu.Seconds())
	}
	fmt.Println(metrics(insts[1].base, "feedd_media_encode"))
	return ok, nil
}

// procStats reads a process's peak resident memory (VmHWM) and its CPU
// time so far (utime + stime, in clock ticks of 10 ms).
func procStats(pid int) (int64, time.Duration) {
	var hwm int64
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmHWM:") {
				fmt.Sscanf(strings.TrimPrefix(line, "VmHWM:"), "%d", &hwm)
				hwm <<= 10
			}
		}
	}
	var cpu time.Duration
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command's closing parenthesis: utime is the
		// 12th, stime the 13th.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 12 {
			var u, s int64
			fmt.Sscan(f[11], &u)
			fmt.Sscan(f[12], &s)
			cpu = time.Duration(u+s) * 10 * time.Millisecond
		}
	}
	return hwm, cpu
}

// metrics returns the lines of base's /metrics that start with prefix.
func metrics(base, prefix string) string {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, prefix) && !strings.Contains(line, "_bucket") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// connect creates a feed, connects it to the sandbox's business account the
// way an owner does (admin API, consent, callback) and polls it once.
func connect(ctx context.Context, sb *sandbox.Sandbox, base, redirect string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	call := func(method, path string, body any, into any) error {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s %s: %d %.300s", method, path, resp.StatusCode, b)
		}
		if into != nil {
			return json.Unmarshal(b, into)
		}
		return nil
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		resp, err := client.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return "", errors.New("feedd did not start")
		}
	}
	var st struct {
		ID        string `json:"id"`
		PostCount int    `json:"post_count"`
	}
	if err := call(http.MethodPost, "/api/admin/feeds", map[string]any{"name": "Formats"}, &st); err != nil {
		return "", err
	}
	var c struct {
		AuthorizeURL string `json:"authorize_url"`
	}
	if err := call(http.MethodPost, "/api/admin/feeds/"+st.ID+"/connect", nil, &c); err != nil {
		return "", err
	}
	au, err := url.Parse(c.AuthorizeURL)
	if err != nil {
		return "", err
	}
	cb, err := sb.Approve(sandbox.AccountBusiness, redirect, au.Query().Get("state"))
	if err != nil {
		return "", err
	}
	resp, err := client.Get(cb)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	id := st.ID
	if err := call(http.MethodPost, "/api/admin/feeds/"+id+"/refresh", nil, &st); err != nil {
		return "", err
	}
	if st.PostCount < gridPosts {
		return "", fmt.Errorf("feed %s has %d posts after its first poll", id, st.PostCount)
	}
	return id, nil
}

// waitSources waits until the first posts of the feed list their AVIF and
// WebP images.
func waitSources(ctx context.Context, in *instance) error {
	for {
		var doc struct {
			Posts []struct {
				Sources []struct {
					Type string `json:"type"`
				} `json:"sources"`
			} `json:"posts"`
		}
		resp, err := http.Get(in.base + "/api/v1/feeds/" + in.id + "?limit=" + fmt.Sprint(gridPosts))
		if err != nil {
			return err
		}
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if err != nil {
			return err
		}
		done := 0
		for _, p := range doc.Posts {
			if len(p.Sources) == 2 {
				done++
			}
		}
		if done == len(doc.Posts) && done > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d posts encoded: %w", done, len(doc.Posts), ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

func chromium() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("formats: no chromium on PATH")
}

// measure opens u in a fresh browser and returns the number and the bytes
// on the wire of its /media/ responses, and the image types received.
func measure(ctx context.Context, exe, u string, w, h int64, dpr float64, mobile bool) (int, float64, string, error) {
	dir, err := os.MkdirTemp("", "feedd-formats-chromium-")
	if err != nil {
		return 0, 0, "", err
	}
	defer os.RemoveAll(dir)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.UserDataDir(dir))
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelA()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	var mu sync.Mutex
	urls := map[network.RequestID]string{}
	types := map[network.RequestID]string{}
	got := map[network.RequestID]float64{}
	err = chromedp.Listen(bctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventResponseReceived:
			urls[e.RequestID] = e.Response.URL
			types[e.RequestID] = e.Response.MimeType
		case *network.EventLoadingFinished:
			got[e.RequestID] = e.EncodedDataLength
		}
	})
	if err != nil {
		return 0, 0, "", err
	}
	tctx, cancelT := context.WithTimeout(bctx, 2*time.Minute)
	defer cancelT()
	if _, err := chromedp.Call(tctx, network.Enable, network.EnableParams{}); err != nil {
		return 0, 0, "", err
	}
	vopts := []chromedp.EmulateViewportOption{chromedp.EmulateScale(dpr)}
	if mobile {
		vopts = append(vopts, chromedp.EmulateMobile)
	}
	err = chromedp.Do(tctx,
		chromedp.EmulateViewport(w, h, vopts...),
		chromedp.Navigate(u),
		poll(tileImages+`.length >= `+fmt.Sprint(gridPosts)),
		chromedp.Evaluate[chromedp.Void](`scrollTo(0, document.body.scrollHeight)`),
		poll(tileImages+`.every(i => i.complete && i.naturalWidth > 0)`),
		chromedp.Sleep(500*time.Millisecond),
	)
	if err != nil {
		return 0, 0, "", err
	}
	mu.Lock()
	defer mu.Unlock()
	n := 0
	var sum float64
	seen := map[string]int{}
	for id, b := range got {
		if strings.Contains(urls[id], "/media/") {
			n++
			sum += b
			seen[types[id]]++
		}
	}
	var ts []string
	for t, c := range seen {
		ts = append(ts, fmt.Sprintf("%s×%d", t, c))
	}
	slices.Sort(ts)
	return n, sum, strings.Join(ts, " "), nil
}

// tileImages is the grid's images, in the document or, once the widget
// has moved the fragment there, in a shadow root.
const tileImages = `[...document.querySelectorAll('.feedd-tile img'), ...[...document.querySelectorAll('*')].flatMap(e => e.shadowRoot ? [...e.shadowRoot.querySelectorAll('.feedd-tile img')] : [])]`

// poll waits until the JS predicate holds.
func poll(pred string) chromedp.Action[chromedp.Void] {
	p := chromedp.Poll[bool]("!!("+pred+")", chromedp.WithPollingInterval(50*time.Millisecond))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := p(ctx, t)
		return chromedp.Void{}, err
	}
}
