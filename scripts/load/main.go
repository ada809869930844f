// Command load is the helper of run.sh, which compares the warm feed
// endpoint of the feedd binary with a bare net/http handler and nginx:
//
//	load -mode instagram -addr 127.0.0.1:18084 -feedd http://127.0.0.1:18081 \
//	     -admin-token-file F -env OUT.env -id OUT.id
//	load -mode capture -url http://127.0.0.1:18081/api/v1/feeds/ID -out DIR
//	load -mode bare -addr 127.0.0.1:18082 -from DIR
//
// "instagram" serves the Instagram sandbox as a process of its own, writes
// the FEEDD_* variables that point a `feedd serve` at it, then, once that
// feedd answers, connects one feed to the sandbox's business account the
// way an owner does (admin API, consent, callback, a first full poll) and
// writes the feed's id. It keeps serving the sandbox for feedd's polls.
//
// "capture" warms the feed and records feedd's answers: the body, the gzip
// body and the headers of a 200, a gzip 200 and a 304.
//
// "bare" serves those captured answers from memory with a plain net/http
// handler and no framework: the same headers and bytes as feedd, on an
// http.Server with feedd's timeouts.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/server"
	"github.com/feedd/feedd/internal/web"
)

// callbackPath is feedd's OAuth redirect path under FEEDD_PUBLIC_URL.
const callbackPath = "/auth/instagram/callback"

func main() {
	log.SetFlags(0)
	log.SetPrefix("load: ")
	mode := flag.String("mode", "", "instagram, capture or bare")
	addr := flag.String("addr", "", "listen address (instagram, bare)")
	feeddURL := flag.String("feedd", "", "base URL of the feedd to connect (instagram)")
	tokenFile := flag.String("admin-token-file", "", "file holding feedd's admin token (instagram)")
	envFile := flag.String("env", "", "write feedd's Instagram variables here (instagram)")
	idFile := flag.String("id", "", "write the connected feed's id here (instagram)")
	feedURL := flag.String("url", "", "the feed URL to capture (capture)")
	out := flag.String("out", "", "directory for the captured answers (capture)")
	from := flag.String("from", "", "directory of captured answers (bare)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *mode {
	case "instagram":
		err = runInstagram(ctx, *addr, *feeddURL, *tokenFile, *envFile, *idFile)
	case "capture":
		err = capture(ctx, *feedURL, *out)
	case "bare":
		err = runBare(ctx, *addr, *from)
	default:
		err = fmt.Errorf("unknown -mode %q (instagram, capture or bare)", *mode)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// runInstagram serves the sandbox until ctx ends, connecting one feed of
// the feedd at feeddURL to it on the way.
func runInstagram(ctx context.Context, addr, feeddURL, tokenFile, envFile, idFile string) error {
	if addr == "" || feeddURL == "" || tokenFile == "" || envFile == "" || idFile == "" {
		return errors.New("instagram: -addr, -feedd, -admin-token-file, -env and -id are required")
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		return err
	}
	token := strings.TrimSpace(string(tok))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	redirect := strings.TrimRight(feeddURL, "/") + callbackPath
	sb := sandbox.New(sandbox.Options{
		RedirectURIs: []string{redirect},
		BaseURL:      "http://" + ln.Addr().String(),
		Seed:         1,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	srv := &http.Server{Handler: sb, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	env := strings.Join([]string{
		"FEEDD_INSTAGRAM_APP_ID=" + sb.AppID(),
		"FEEDD_INSTAGRAM_APP_SECRET=" + sb.AppSecret(),
		"FEEDD_INSTAGRAM_AUTHORIZE_URL=" + sb.AuthorizeURL(),
		"FEEDD_INSTAGRAM_TOKEN_URL=" + sb.TokenURL(),
		"FEEDD_INSTAGRAM_GRAPH_URL=" + sb.GraphURL(),
		"FEEDD_MEDIA_HOSTS=" + ln.Addr().String(),
		"FEEDD_MEDIA_ALLOW_PRIVATE=true",
	}, "\n") + "\n"
	if err := writeFileAtomic(envFile, []byte(env)); err != nil {
		return err
	}

	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	id, err := connect(cctx, sb, feeddURL, token, redirect)
	cancel()
	if err != nil {
		srv.Close()
		return fmt.Errorf("connect a feed: %w", err)
	}
	if err := writeFileAtomic(idFile, []byte(id+"\n")); err != nil {
		srv.Close()
		return err
	}
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
		return srv.Close()
	}
}

// admin is a client of feedd's admin API.
type admin struct {
	base, token string
	client      *http.Client
}

func (a *admin) call(ctx context.Context, method, path string, body any, want int, into any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %.300s", method, path, resp.StatusCode, b)
	}
	if into != nil {
		return json.Unmarshal(b, into)
	}
	return nil
}

// connect waits for feedd, creates a feed, connects it to the sandbox's
// business account through the OAuth flow and polls it once, media
// included. It returns the feed's id.
func connect(ctx context.Context, sb *sandbox.Sandbox, base, token, redirect string) (string, error) {
	a := &admin{base: strings.TrimRight(base, "/"), token: token, client: &http.Client{
		Timeout:       2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	if err := waitHealthy(ctx, a.client, a.base+"/healthz"); err != nil {
		return "", err
	}
	var st struct {
		ID        string `json:"id"`
		Status    string `json:"status"`
		PostCount int    `json:"post_count"`
	}
	if err := a.call(ctx, http.MethodPost, "/api/admin/feeds", map[string]any{"name": "Load run"}, http.StatusCreated, &st); err != nil {
		return "", err
	}
	id := st.ID
	var c struct {
		AuthorizeURL string `json:"authorize_url"`
	}
	if err := a.call(ctx, http.MethodPost, "/api/admin/feeds/"+id+"/connect", nil, http.StatusOK, &c); err != nil {
		return "", err
	}
	au, err := url.Parse(c.AuthorizeURL)
	if err != nil {
		return "", err
	}
	// The owner clicks Allow as the business account on the consent page.
	cb, err := sb.Approve(sandbox.AccountBusiness, redirect, au.Query().Get("state"))
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cb, nil)
	if err != nil {
		return "", err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound {
		return "", fmt.Errorf("callback answered %d", resp.StatusCode)
	}
	// A full poll (every picture downloaded and resized) before anything
	// is measured, so no background work of the first poll overlaps a round.
	if err := a.call(ctx, http.MethodPost, "/api/admin/feeds/"+id+"/refresh", nil, http.StatusOK, &st); err != nil {
		return "", err
	}
	if st.Status != "active" || st.PostCount == 0 {
		return "", fmt.Errorf("feed %s is %s with %d posts after its first poll", id, st.Status, st.PostCount)
	}
	return id, nil
}

// waitHealthy waits until url answers 200, for as long as ctx allows.
func waitHealthy(ctx context.Context, client *http.Client, url string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer 200: %w", url, ctx.Err())
		case <-tick.C:
		}
	}
}

// answer is one captured response of feedd.
type answer struct {
	Status int         `json:"status"`
	Header http.Header `json:"header"`
}

// captured is what capture writes into answers.json beside feed.json and
// feed.json.gz.
type captured struct {
	ETag        string `json:"etag"`
	Plain       answer `json:"plain"`
	Gzip        answer `json:"gzip"`
	NotModified answer `json:"not_modified"`
}

// capture warms the feed (until its ETag holds for a second) and records
// feedd's three answers.
func capture(ctx context.Context, feedURL, out string) error {
	if feedURL == "" || out == "" {
		return errors.New("capture: -url and -out are required")
	}
	// No transparent gzip: the plain request must not ask for it.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	get := func(hdr ...string) (answer, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, feedURL, nil)
		if err != nil {
			return answer{}, nil, err
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			return answer{}, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		return answer{resp.StatusCode, resp.Header}, b, err
	}

	var etag string
	stable := 0
	for i := 0; stable < 5; i++ {
		if i == 100 {
			return fmt.Errorf("capture: %s did not settle (ETag still changing)", feedURL)
		}
		a, _, err := get()
		if err != nil {
			return err
		}
		if a.Status != http.StatusOK {
			return fmt.Errorf("capture: %s answered %d", feedURL, a.Status)
		}
		if e := a.Header.Get("Etag"); e == etag && e != "" {
			stable++
		} else {
			etag, stable = e, 0
		}
		time.Sleep(200 * time.Millisecond)
	}

	var c captured
	var plain, gz []byte
	var err error
	if c.Plain, plain, err = get(); err != nil {
		return err
	}
	if c.Gzip, gz, err = get("Accept-Encoding", "gzip"); err != nil {
		return err
	}
	c.ETag = c.Plain.Header.Get("Etag")
	if c.NotModified, _, err = get("If-None-Match", c.ETag); err != nil {
		return err
	}
	switch {
	case c.Plain.Status != http.StatusOK || c.Gzip.Status != http.StatusOK || c.NotModified.Status != http.StatusNotModified:
		return fmt.Errorf("capture: answers %d, %d (gzip), %d (If-None-Match)", c.Plain.Status, c.Gzip.Status, c.NotModified.Status)
	case c.Gzip.Header.Get("Content-Encoding") != "gzip":
		return errors.New("capture: the gzip answer is not gzip-encoded")
	case c.Gzip.Header.Get("Etag") != c.ETag || c.NotModified.Header.Get("Etag") != c.ETag:
		return errors.New("capture: the feed changed while it was captured")
	}
	js, err := json.MarshalIndent(c, "", "\t")
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"feed.json": plain, "feed.json.gz": gz, "answers.json": js} {
		if err := os.WriteFile(filepath.Join(out, name), b, 0o644); err != nil {
			return err
		}
	}
	var doc struct {
		Posts []json.RawMessage `json:"posts"`
	}
	if err := json.Unmarshal(plain, &doc); err != nil {
		return fmt.Errorf("capture: feed JSON: %w", err)
	}
	fmt.Printf("%d posts, %d bytes json, %d bytes gzip, etag %s\n", len(doc.Posts), len(plain), len(gz), c.ETag)
	return nil
}

// Headers that differ per answer on every server: net/http writes Date,
// and each server makes its own request ids.
var perRequest = map[string]bool{"Date": true, "X-Request-Id": true}

// reply is a captured answer ready to write: header values shared, never
// modified.
type reply struct {
	status int
	header []headerField
	body   []byte
}

type headerField struct {
	key   string
	value []string
}

func newReply(a answer, body []byte) reply {
	r := reply{status: a.Status, body: body}
	for k, v := range a.Header {
		if !perRequest[k] {
			r.header = append(r.header, headerField{k, v})
		}
	}
	return r
}

// runBare serves the captured answers with a plain net/http handler: the
// floor that feedd's framework, middleware and cache are compared with.
func runBare(ctx context.Context, addr, from string) error {
	if addr == "" || from == "" {
		return errors.New("bare: -addr and -from are required")
	}
	js, err := os.ReadFile(filepath.Join(from, "answers.json"))
	if err != nil {
		return err
	}
	var c captured
	if err := json.Unmarshal(js, &c); err != nil {
		return err
	}
	plain, err := os.ReadFile(filepath.Join(from, "feed.json"))
	if err != nil {
		return err
	}
	gz, err := os.ReadFile(filepath.Join(from, "feed.json.gz"))
	if err != nil {
		return err
	}
	h := bareHandler(c.ETag, newReply(c.Plain, plain), newReply(c.Gzip, gz), newReply(c.NotModified, nil))

	// The same limits as feedd's own http.Server (internal/server, Run).
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: server.ReadHeaderTimeout,
		ReadTimeout:       server.ReadTimeout,
		WriteTimeout:      server.WriteTimeout,
		IdleTimeout:       server.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// bareHandler answers like feedd (304 on the exact ETag, gzip when
// accepted, a per-request id of the same length as feedd's) with nothing
// else: no router, no middleware, no cache lookup.
func bareHandler(etag string, plain, gzip, notModified reply) http.Handler {
	var n atomic.Uint64
	const prefix = "BARELOAD-" // as long as feedd's random prefix and '-'
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := &plain
		switch {
		case len(r.Header["If-None-Match"]) == 1 && r.Header["If-None-Match"][0] == etag:
			rep = &notModified
		case web.AcceptsGzip(r.Header["Accept-Encoding"]):
			rep = &gzip
		}
		h := w.Header()
		h["X-Request-Id"] = []string{prefix + strconv.FormatUint(n.Add(1), 36)}
		for _, f := range rep.header {
			h[f.key] = f.value
		}
		w.WriteHeader(rep.status)
		if rep.body != nil && r.Method != http.MethodHead {
			w.Write(rep.body)
		}
	})
}

func writeFileAtomic(name string, b []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}
