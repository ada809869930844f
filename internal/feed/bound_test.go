package feed

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/store"
)

// Parameters the feed route does not know (trackers, cache busters, typos)
// never make a cache entry of their own: the answer is the one of the same
// request without them.
func TestUnknownParametersShareTheCacheEntry(t *testing.T) {
	fx := sampleEnv(t, envOptions{})
	if err := fx.fetchNow(); err != nil {
		t.Fatal(err)
	}
	e := newEcho(t, fx.svc)
	get := func(rawQuery string) string {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, "/api/v1/feeds/"+fx.id+"?"+rawQuery, nil)
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("?%s: %d %s", rawQuery, w.Code, w.Body)
		}
		return w.Header().Get("ETag")
	}
	for _, c := range []struct{ base, junk []string }{
		{[]string{""}, []string{"utm_source=x&fbclid=" + strconv.Itoa(1), "v=2", "_=1733330000000", "limits=5", "after_=x", "LIMIT=3", "callback=f"}},
		{[]string{"limit=2"}, []string{"limit=02&x=1", "limit=2&limit=9&junk=", "junk=1&limit=2"}},
		{[]string{"type=reel,image"}, []string{"type=image&type=reel&z=9", "type=IMAGE,+reel,,&q=1"}},
	} {
		get(c.base[0]) // a page is kept from its second request on
		want := get(c.base[0])
		before := fx.svc.cache.Len()
		for i, j := range c.junk {
			for n := range 50 {
				if got := get(j + "&n" + strconv.Itoa(i) + "=" + strconv.Itoa(n)); got != want {
					t.Fatalf("?%s answered ETag %s, ?%s %s", j, got, c.base[0], want)
				}
			}
		}
		if n := fx.svc.cache.Len(); n != before {
			t.Errorf("%d cache entries after junk parameters on ?%s, want %d", n, c.base[0], before)
		}
	}
}

// However many distinct queries visitors send, the hot cache holds at most
// FEEDD_CACHE_MEMORY, and what it counts is what the process holds: the Go
// heap grows by no more than the bound (plus a little) while the cache is
// filled and refilled with pages of a 50-post feed.
func TestCacheMemoryBoundsTheHeap(t *testing.T) {
	const bound = 2 << 20
	fx := newEnv(t, envOptions{account: sandbox.AccountBusiness, options: func(o *Options) { o.CacheMemory = bound }})
	if err := fx.fetchNow(); err != nil {
		t.Fatal(err)
	}
	var queries []string
	for limit := 1; limit <= MaxLimit; limit++ {
		for _, types := range []string{"", "&type=image", "&type=carousel,video", "&type=image,reel"} {
			queries = append(queries, "limit="+strconv.Itoa(limit)+types)
		}
	}
	d := fx.doc(t, "limit=1")
	for d.Next != nil {
		queries = append(queries, "limit=100&after="+url.QueryEscape(*d.Next))
		d = fx.doc(t, "limit=1&after="+url.QueryEscape(*d.Next))
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := heap()
	var asked int64
	for _, q := range queries {
		// Twice: a page asked for once is not kept.
		for range 2 {
			b := fx.fetchJSON(t, fx.id, q)
			asked += int64(len(b))
		}
		if n := fx.svc.cache.Bytes(); n > bound {
			t.Fatalf("the cache counts %d bytes, bound %d", n, bound)
		}
	}
	if asked < 6*bound {
		t.Fatalf("only %d bytes of JSON asked for; the test needs more than the bound", asked)
	}
	grown := int64(heap()) - int64(base)
	t.Logf("%d queries, %d bytes of JSON; cache %d entries, %d bytes counted; heap grew %d bytes",
		len(queries), asked, fx.svc.cache.Len(), fx.svc.cache.Bytes(), grown)
	if limit := int64(bound)*5/4 + 1<<20; grown > limit {
		t.Errorf("heap grew by %d bytes with the cache bound at %d, want at most %d", grown, bound, limit)
	}
}

// Pages other than the first one (other limits, types, cursors, made-up
// cursors) are cut from the feed's snapshot read once, not from a database
// read each; a new poll's posts show on them at once.
func TestOtherPagesReadTheSnapshotOnce(t *testing.T) {
	cs := &countingStore{}
	fx := newEnv(t, envOptions{account: sandbox.AccountBusiness, store: func(st *store.Store) Store { cs.Store = st; return cs }})
	if err := fx.fetchNow(); err != nil {
		t.Fatal(err)
	}
	fx.doc(t, "")
	var queries []string
	for limit := 1; limit <= 30; limit++ {
		queries = append(queries, "limit="+strconv.Itoa(limit), "limit="+strconv.Itoa(limit)+"&type=image")
	}
	d := fx.doc(t, "limit=7")
	queries = append(queries, "after="+url.QueryEscape(*d.Next))
	for i := range 30 {
		c := encodeCursor(&Post{ID: "9" + strconv.Itoa(i), Timestamp: d.Posts[i%7].Timestamp.Add(-time.Second)})
		queries = append(queries, "limit=3&after="+url.QueryEscape(c))
	}
	before := cs.posts.Load()
	for _, q := range queries {
		if d := fx.doc(t, q); len(d.Posts) == 0 {
			t.Fatalf("?%s: no posts", q)
		}
	}
	if n := cs.posts.Load() - before; n > 1 {
		t.Errorf("%d snapshot reads from the database for %d distinct pages, want at most 1", n, len(queries))
	}
	id := fx.addPost("new", sandbox.PostSpec{Caption: "just posted"})
	fx.clock.Add(16 * time.Minute)
	if err := fx.fetchNow(); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"limit=2", "limit=2&type=image"} {
		if d := fx.doc(t, q); d.Posts[0].ID != id {
			t.Errorf("?%s after a poll: newest %s, want the new post %s", q, d.Posts[0].ID, id)
		}
	}
}

// Queries asked for once, like a flood's made-up limits, filters and
// cursors, are answered without filling the cache; a page visitors come
// back to is cached from its second request on.
func TestQueriesAskedOnceFillNoCache(t *testing.T) {
	fx := newEnv(t, envOptions{account: sandbox.AccountBusiness})
	if err := fx.fetchNow(); err != nil {
		t.Fatal(err)
	}
	fx.doc(t, "")
	fx.doc(t, "limit=1")
	before := fx.svc.cache.Len() // the default page and the snapshot
	for limit := 2; limit <= MaxLimit; limit++ {
		for _, types := range []string{"", "&type=image", "&type=carousel,video"} {
			fx.doc(t, "limit="+strconv.Itoa(limit)+types)
		}
	}
	if n := fx.svc.cache.Len(); n != before {
		t.Errorf("%d cache entries after %d queries asked once, want %d", n, 3*(MaxLimit-1), before)
	}
	fx.doc(t, "limit=9")
	if n := fx.svc.cache.Len(); n != before+1 {
		t.Errorf("a page asked for twice: %d entries, want %d", n, before+1)
	}
}

// A cached answer holds its bytes and little else: the document the HTML
// renderer needs is cut from the feed's snapshot when asked for, not kept
// beside every answer (many small objects that fragment the heap as
// entries come and go).
func TestCachedAnswersHoldTheirBytesOnly(t *testing.T) {
	fx := newEnv(t, envOptions{account: sandbox.AccountBusiness})
	if err := fx.fetchNow(); err != nil {
		t.Fatal(err)
	}
	e, err := fx.svc.Entry(context.Background(), fx.id, DefaultQuery)
	if err != nil {
		t.Fatal(err)
	}
	if got, bytes := fx.svc.cache.Bytes(), int64(len(e.JSON)+len(e.Gzip)); got > bytes+2048 {
		t.Errorf("the default page costs %d bytes in the cache, its bodies %d", got, bytes)
	}
	// The renderer still gets the document, for any page.
	for _, c := range []struct {
		limit int
		types []string
	}{{0, nil}, {3, []string{"image"}}} {
		d, _, err := fx.svc.Doc(context.Background(), fx.id, c.limit, "", c.types)
		if err != nil || len(d.Posts) == 0 || d.Account == nil {
			t.Fatalf("Doc(%d, %v) = %+v, %v", c.limit, c.types, d, err)
		}
	}
}
