// Command load serves one warm feed for the load comparison in run.sh.
//
//	go run ./scripts/load -mode feedd -addr 127.0.0.1:18081
//	go run ./scripts/load -mode bare  -addr 127.0.0.1:18082
//	go run ./scripts/load -dump DIR   (writes feed.json, feed.json.gz, etag)
//
// Both modes build the same bytes from the same seeded snapshot: "feedd"
// serves them through the feed service, its hot cache and its Echo handler
// behind the public middleware stack; "bare" writes them from memory with a
// plain net/http handler and the same headers. No Instagram is involved.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/feedd/feedd/internal/cache"
	"github.com/feedd/feedd/internal/feed"
)

const feedID = "k3v9x2m4q8"

func main() {
	mode := flag.String("mode", "feedd", "feedd or bare")
	addr := flag.String("addr", "127.0.0.1:18081", "listen address")
	dump := flag.String("dump", "", "write the feed bytes into this directory and exit")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address (profiling a run)")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}

	svc, err := feed.New(feed.Options{
		Store:     newSeedStore(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)),
		PublicURL: "https://feeds.example.com",
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		// The snapshot never changes here: keep the entry fresh all run.
		CacheFresh: 24 * time.Hour,
	})
	if err != nil {
		log.Fatal(err)
	}
	entry, err := svc.Entry(context.Background(), feedID, feed.DefaultQuery)
	if err != nil {
		log.Fatal(err)
	}
	switch {
	case *dump != "":
		must(os.WriteFile(filepath.Join(*dump, "feed.json"), entry.JSON, 0o644))
		must(os.WriteFile(filepath.Join(*dump, "feed.json.gz"), entry.Gzip, 0o644))
		fmt.Printf("%d bytes json, %d bytes gzip, etag %s\n", len(entry.JSON), len(entry.Gzip), entry.ETag)
		return
	case *mode == "feedd":
		h, err := feeddHandler(svc)
		if err != nil {
			log.Fatal(err)
		}
		serve(*addr, h)
	case *mode == "bare":
		serve(*addr, bareHandler(entry))
	default:
		log.Fatalf("unknown mode %q", *mode)
	}
}

func serve(addr string, h http.Handler) {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// bareHandler is the floor: the same bytes, headers included (feedd's
// security headers and a per-request id), written from memory by a plain
// net/http handler with no framework and no middleware.
func bareHandler(e *cache.Entry) http.Handler {
	jsonLen, gzLen := []string{strconv.Itoa(len(e.JSON))}, []string{strconv.Itoa(len(e.Gzip))}
	var (
		acao    = []string{"*"}
		expose  = []string{"ETag"}
		vary    = []string{"Origin, Accept-Encoding"}
		cc      = []string{feed.CacheControl}
		etag    = []string{e.ETag}
		ctype   = []string{"application/json"}
		gz      = []string{"gzip"}
		nosniff = []string{"nosniff"}
		referer = []string{"strict-origin-when-cross-origin"}
		prefix  = "BARELOAD-"
		n       atomic.Uint64
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-Request-Id"] = []string{prefix + strconv.FormatUint(n.Add(1), 36)}
		h["X-Content-Type-Options"] = nosniff
		h["Referrer-Policy"] = referer
		h["Access-Control-Allow-Origin"] = acao
		h["Access-Control-Expose-Headers"] = expose
		h["Vary"] = vary
		h["Cache-Control"] = cc
		h["Etag"] = etag
		if inm := r.Header["If-None-Match"]; len(inm) == 1 && inm[0] == e.ETag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h["Content-Type"] = ctype
		body := e.JSON
		if feed.AcceptsGzip(r.Header["Accept-Encoding"]) {
			h["Content-Encoding"] = gz
			h["Content-Length"] = gzLen
			body = e.Gzip
		} else {
			h["Content-Length"] = jsonLen
		}
		w.Write(body)
	})
}

// seedStore is a read-only snapshot: one connected feed with 50 posts of
// every kind, each image stored in three sizes.
type seedStore struct {
	feed  feed.FeedRecord
	posts []feed.PostRecord
	media map[string]feed.MediaRecord
}

func newSeedStore(now time.Time) *seedStore {
	s := &seedStore{media: map[string]feed.MediaRecord{}}
	s.feed = feed.FeedRecord{
		ID: feedID, Status: feed.StatusActive,
		Account:     &feed.AccountRecord{IGUserID: "17841400000000001", Username: "harbour.bakery", Name: "Harbour Bakery", AvatarKey: "avatar:1"},
		LastFetchAt: now, LastFetchOK: true, FetchedAt: now, LastViewedAt: now, NextFetchAt: now.Add(time.Hour),
	}
	s.addMedia("avatar:1", 150, 150)
	for i := range 50 {
		id := strconv.Itoa(17918195224117851 + i)
		caption := fmt.Sprintf("Fresh from the oven, batch %d: sourdough, rye and a cardamom bun or two. See you at the market! #bakery #sourdough", i)
		likes, comments := int64(100+i), int64(i%7)
		p := feed.PostRecord{
			ID: id, MediaType: "IMAGE", Permalink: "https://www.instagram.com/p/C" + id + "/",
			Timestamp: now.Add(-time.Duration(i) * 26 * time.Hour).Truncate(time.Second),
			Caption:   &caption, LikeCount: &likes, CommentsCount: &comments, MediaKey: "post:" + id,
		}
		switch i % 5 {
		case 1:
			p.MediaType = "CAROUSEL_ALBUM"
			for c := range 3 {
				cid := id + strconv.Itoa(c)
				p.Children = append(p.Children, feed.ChildRecord{ID: cid, MediaType: "IMAGE", MediaKey: "post:" + cid})
				s.addMedia("post:"+cid, 1080, 1350)
			}
			p.MediaKey = p.Children[0].MediaKey
		case 3:
			p.MediaType, p.IsReel = "VIDEO", true
			p.Permalink = "https://www.instagram.com/reel/C" + id + "/"
			s.addMedia(p.MediaKey, 1080, 1920)
		default:
			s.addMedia(p.MediaKey, 1080, 1080)
		}
		s.posts = append(s.posts, p)
	}
	return s
}

func (s *seedStore) addMedia(key string, w, h int) {
	m := feed.MediaRecord{Key: key, Width: w, Height: h, Color: "#a0b1c2"}
	for _, vw := range []int{320, 640, 1080} {
		name := fmt.Sprintf("%x", []byte(key))
		m.Variants = append(m.Variants, feed.Variant{Width: vw, Height: h * vw / w, File: name[:2] + "/" + name + "-" + strconv.Itoa(vw) + ".jpg"})
	}
	s.media[key] = m
}

func (s *seedStore) Feed(ctx context.Context, id string) (feed.FeedRecord, error) {
	if id != feedID {
		return feed.FeedRecord{}, feed.ErrNotFound
	}
	return s.feed, nil
}

func (s *seedStore) Posts(ctx context.Context, id string) ([]feed.PostRecord, error) {
	return s.posts, nil
}

func (s *seedStore) MediaByKeys(ctx context.Context, keys []string) (map[string]feed.MediaRecord, error) {
	out := make(map[string]feed.MediaRecord, len(keys))
	for _, k := range keys {
		if m, ok := s.media[k]; ok {
			out[k] = m
		}
	}
	return out, nil
}

func (s *seedStore) PutMedia(ctx context.Context, m feed.MediaRecord) error { return nil }
func (s *seedStore) ReplacePosts(ctx context.Context, id string, acct *feed.AccountRecord, posts []feed.PostRecord, at time.Time) ([]string, error) {
	return nil, nil
}
func (s *seedStore) DueFeeds(ctx context.Context, now, viewedSince time.Time) ([]feed.FeedRecord, error) {
	return nil, nil
}
func (s *seedStore) MarkViewed(ctx context.Context, id string, at time.Time) error { return nil }
func (s *seedStore) RecordFetch(ctx context.Context, id string, r feed.FetchResult) error {
	return nil
}
func (s *seedStore) SetStatus(ctx context.Context, id, status, reason string) error { return nil }
func (s *seedStore) AccessToken(ctx context.Context, id string) (string, error) {
	return "", feed.ErrNotConnected
}
