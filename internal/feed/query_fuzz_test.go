package feed

import (
	"errors"
	"net/url"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/feedd/feedd/internal/web"
)

// FuzzParseQuery feeds arbitrary query strings to the feed query parser: it
// never panics, every refusal is a 400 *web.Error with a bounded
// message, and every accepted query is in range and survives the cache-key
// round trip unchanged.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"", "limit=20", "limit=100", "limit=0", "limit=101", "limit=-1", "limit=1e2", "limit=%20", "limit=9999999999999999999999",
		"type=image,video", "type=REEL&type=carousel", "type=,,", "type=gif", "type=" + string(make([]byte, 300)),
		"after=" + encodeCursor(&Post{ID: "17890000000000001", Timestamp: time.Unix(1700000000, 0)}),
		"after=bm90LWEtY3Vyc29y", "after=%00", "after=MTIz%0ANDU6MTc4", "limit=5&type=image&after=MTcwMDAwMDAwMDoxMjM",
		"after=LTE6YQ", "limit=1&limit=2", "a=%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return // the HTTP layer refuses these before the feed sees them
		}
		q, err := ParseQuery(v)
		if err != nil {
			var he *web.Error
			if !errors.As(err, &he) || he.Status != 400 || he.Code != "invalid_parameter" {
				t.Fatalf("error %v is not a 400 invalid_parameter", err)
			}
			if len(he.Message) > 200 || !utf8.ValidString(he.Message) && utf8.ValidString(raw) {
				t.Fatalf("message %q is unbounded or mangled", he.Message)
			}
			return
		}
		if q.Limit < 1 || q.Limit > MaxLimit {
			t.Fatalf("accepted limit %d", q.Limit)
		}
		if q.Types&^(FilterImage|FilterVideo|FilterCarousel|FilterReel) != 0 {
			t.Fatalf("accepted types %b", q.Types)
		}
		back, ok := queryFromKey(q.key())
		if !ok || back != q {
			t.Fatalf("key %q round trip: %+v, %v; want %+v", q.key(), back, ok, q)
		}
		if q.After != "" {
			// The position a cursor names is the one a cursor for that post
			// names: re-encoding it parses back to the same place.
			again := encodeCursor(&Post{ID: q.after.id, Timestamp: time.Unix(q.after.ts, 0)})
			c, ok := decodeCursor(again)
			if !ok || c != q.after {
				t.Fatalf("cursor %+v re-encoded as %q parses to %+v, %v", q.after, again, c, ok)
			}
		}
	})
}

// FuzzCursor pages through a list of posts with fuzzed ids and timestamps:
// every "next" the service hands out parses back, and continuing from it
// yields exactly the posts after the page's last one, so paging visits
// every post once, in order.
func FuzzCursor(f *testing.F) {
	f.Add("17890000000000001", int64(1700000000), uint8(3), uint8(2))
	f.Add("a", int64(-62135596800), uint8(1), uint8(1))
	f.Add("x_y-Z9", int64(253402300799), uint8(10), uint8(3))
	f.Add("99999999999999999999999999999999999999999999999999999999999999", int64(0), uint8(50), uint8(7))
	f.Fuzz(func(t *testing.T, idBase string, ts int64, n, limit uint8) {
		if !plausibleID(idBase) {
			return // Graph ids are digits; decodeCursor documents the accepted shape
		}
		// Keep timestamps inside what time.Unix round-trips through Unix().
		ts %= 1 << 40
		count := int(n%60) + 1
		lim := int(limit%MaxLimit) + 1
		posts := make([]Post, count)
		for i := range posts {
			id := idBase
			if i > 0 {
				id = strconv.Itoa(i) + "_" + idBase
			}
			if len(id) > 64 {
				id = id[len(id)-64:]
			}
			// Newest first, with ties: equal timestamps must not lose posts.
			posts[i] = Post{ID: id, Type: TypeImage, Timestamp: time.Unix(ts-int64(i/2), 0)}
		}
		seen := 0
		q, err := NewQuery(lim, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		for range count + 1 {
			pg, next, after := page(posts, q)
			if after != q.After {
				t.Fatalf("the page after %q is cached under %q: a cursor the service hands out must be its page's own", q.After, after)
			}
			for _, p := range pg {
				if p.ID != posts[seen].ID {
					t.Fatalf("post %d is %q, want %q", seen, p.ID, posts[seen].ID)
				}
				seen++
			}
			if next == nil {
				break
			}
			q, err = ParseQuery(url.Values{"limit": {strconv.Itoa(lim)}, "after": {*next}})
			if err != nil {
				t.Fatalf("cursor %q handed out by the service refused: %v", *next, err)
			}
			if q.after.id != pg[len(pg)-1].ID || q.after.ts != pg[len(pg)-1].Timestamp.Unix() {
				t.Fatalf("cursor %q names %+v, want the page's last post %+v", *next, q.after, pg[len(pg)-1])
			}
		}
		if seen != count {
			t.Fatalf("paging visited %d of %d posts", seen, count)
		}
	})
}

// plausibleID is the id shape feedd stores: Graph ids are digits; the
// cursor also allows letters, '_' and '-'.
func plausibleID(id string) bool {
	if id == "" || len(id) > 60 {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
