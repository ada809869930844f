package feed

import (
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/feedd/feedd/internal/web"
)

// Query limits.
const (
	// DefaultLimit is the page size when the request names none: enough for
	// a 4×5 grid without a second request, small enough to load instantly.
	DefaultLimit = 20
	// MaxLimit is the largest page a request may ask for.
	MaxLimit = 100
)

// TypeSet is a set of post kinds for the `type` filter. The zero value means
// "all posts".
type TypeSet uint8

// Kinds a `type` filter may name. FilterVideo matches every video, reels
// included; FilterReel matches reels only.
const (
	FilterImage TypeSet = 1 << iota
	FilterVideo
	FilterCarousel
	FilterReel
)

var typeNames = [...]struct {
	name string
	bit  TypeSet
}{{"image", FilterImage}, {"video", FilterVideo}, {"carousel", FilterCarousel}, {"reel", FilterReel}}

// ParseTypes parses a comma list of image, video, carousel, reel (case and
// spaces ignored, empty items skipped).
func ParseTypes(list []string) (TypeSet, error) {
	var set TypeSet
	for _, item := range list {
		for part := range strings.SplitSeq(item, ",") {
			part = strings.ToLower(strings.TrimSpace(part))
			if part == "" {
				continue
			}
			bit := TypeSet(0)
			for _, t := range typeNames {
				if t.name == part {
					bit = t.bit
				}
			}
			if bit == 0 {
				if len(part) > 20 {
					part = part[:20] + "…"
				}
				return 0, web.BadRequest("invalid_parameter", "type %q is not one of image, video, carousel, reel", part)
			}
			set |= bit
		}
	}
	return set, nil
}

// Match reports whether a post of this type (and reel flag) is in the set.
func (s TypeSet) Match(typ string, isReel bool) bool {
	if s == 0 {
		return true
	}
	switch typ {
	case TypeImage:
		return s&FilterImage != 0
	case TypeCarousel:
		return s&FilterCarousel != 0
	case TypeVideo:
		return s&FilterVideo != 0 || (isReel && s&FilterReel != 0)
	}
	return false
}

// String is the canonical comma list ("" for all).
func (s TypeSet) String() string {
	var b []string
	for _, t := range typeNames {
		if s&t.bit != 0 {
			b = append(b, t.name)
		}
	}
	return strings.Join(b, ",")
}

// Query is a validated feed request: page size, cursor and type filter.
type Query struct {
	Limit int
	// After is the cursor from a previous page's "next" ("" = first page).
	After string
	Types TypeSet

	after cursor
}

// DefaultQuery is the unfiltered first page, the hot one.
var DefaultQuery = Query{Limit: DefaultLimit}

// ParseQuery validates the query string of a feed request. Unknown
// parameters are ignored; a bad value is a 400 *web.Error naming it.
func ParseQuery(v url.Values) (Query, error) {
	limit := DefaultLimit
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return Query{}, errLimit()
		}
		limit = n
	}
	types, err := ParseTypes(v["type"])
	if err != nil {
		return Query{}, err
	}
	return newQuery(limit, v.Get("after"), types)
}

// NewQuery validates a query given as values (for the HTML renderer).
// limit 0 means DefaultLimit.
func NewQuery(limit int, after string, types []string) (Query, error) {
	if limit == 0 {
		limit = DefaultLimit
	}
	if limit < 1 || limit > MaxLimit {
		return Query{}, errLimit()
	}
	set, err := ParseTypes(types)
	if err != nil {
		return Query{}, err
	}
	return newQuery(limit, after, set)
}

func errLimit() error {
	return web.BadRequest("invalid_parameter", "limit must be an integer from 1 to %d", MaxLimit)
}

func newQuery(limit int, after string, types TypeSet) (Query, error) {
	q := Query{Limit: limit, Types: types}
	if after != "" {
		c, ok := decodeCursor(after)
		if !ok {
			return Query{}, web.BadRequest("invalid_parameter", "after must be the \"next\" value of a previous page")
		}
		q.After, q.after = after, c
	}
	return q, nil
}

// key is the normalised form of q, used in cache keys: equal queries give
// equal keys whatever order or spelling the request used.
func (q Query) key() string {
	if q.Limit == DefaultLimit && q.After == "" && q.Types == 0 {
		return ""
	}
	return "l=" + strconv.Itoa(q.Limit) + "&t=" + strconv.Itoa(int(q.Types)) + "&a=" + q.After
}

// queryFromKey is the inverse of key, for the cache loader.
func queryFromKey(k string) (Query, bool) {
	if k == "" {
		return DefaultQuery, true
	}
	v, err := url.ParseQuery(k)
	if err != nil {
		return Query{}, false
	}
	limit, err1 := strconv.Atoi(v.Get("l"))
	types, err2 := strconv.Atoi(v.Get("t"))
	if err1 != nil || err2 != nil {
		return Query{}, false
	}
	q, err := newQuery(limit, v.Get("a"), TypeSet(types))
	return q, err == nil
}

// cursor names the last post of a page: its id and its timestamp, so that a
// page can continue after a post that has since been deleted.
type cursor struct {
	ts int64
	id string
}

func encodeCursor(p *Post) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(p.Timestamp.Unix(), 10) + ":" + p.ID))
}

func decodeCursor(s string) (cursor, bool) {
	if len(s) > 200 {
		return cursor{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, false
	}
	ts, id, ok := strings.Cut(string(raw), ":")
	if !ok || id == "" || len(id) > 64 {
		return cursor{}, false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' || r == '-') {
			return cursor{}, false
		}
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return cursor{}, false
	}
	return cursor{ts: n, id: id}, true
}

// page applies q to posts (newest first): the type filter, the cursor and
// the limit. It returns the page, the cursor of the next one (nil on the
// last page) and the cursor of the post before the page ("" when the page
// starts at the newest post): q.After itself when that names a stored post.
//
// A cursor whose post is gone (deleted since, or pushed out of the kept
// window) continues at the first older post, so "load more" never fails.
func page(posts []Post, q Query) ([]Post, *string, string) {
	start := 0
	if q.After != "" {
		start = len(posts)
		found := false
		for i := range posts {
			if posts[i].ID == q.after.id {
				start, found = i+1, true
				break
			}
		}
		if !found {
			// Pinned posts come first whatever their date: the page
			// after a cursor continues among the others.
			for i := range posts {
				if !posts[i].Pinned && posts[i].Timestamp.Before(time.Unix(q.after.ts, 0)) {
					start = i
					break
				}
			}
		}
	}
	after := ""
	if start > 0 {
		after = encodeCursor(&posts[start-1])
	}
	out := make([]Post, 0, min(q.Limit, len(posts)-start))
	i := start
	for ; i < len(posts) && len(out) < q.Limit; i++ {
		if q.Types.Match(posts[i].Type, posts[i].IsReel) {
			out = append(out, posts[i])
		}
	}
	// Only promise a next page that has something in it.
	for ; i < len(posts); i++ {
		if q.Types.Match(posts[i].Type, posts[i].IsReel) {
			next := encodeCursor(&out[len(out)-1])
			return out, &next, after
		}
	}
	return out, nil, after
}
