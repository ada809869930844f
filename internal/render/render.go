// Package render turns a feed document into the markup visitors see: the
// HTML fragment at /feeds/{id}.html, the iframe page at /feeds/{id}/embed
// (both from one template set, which is also what the widget inserts), and
// the widget's script and stylesheet.
package render

import (
	"cmp"
	"embed"
	"fmt"
	"html/template"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/feedd/feedd/internal/feed"
)

//go:embed templates/*.html
var templateFS embed.FS

var templates = template.Must(template.New("").ParseFS(templateFS, "templates/*.html"))

// Renderer writes feed documents as HTML. It is safe for concurrent use.
type Renderer struct {
	base string // public URL without a trailing slash
}

// NewRenderer returns a renderer whose links point at publicURL (feedd's
// FEEDD_PUBLIC_URL), so a fragment placed on another site still links home.
func NewRenderer(publicURL string) (*Renderer, error) {
	u, err := url.Parse(publicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("render: public URL %q is not an absolute http(s) URL", publicURL)
	}
	return &Renderer{base: strings.TrimRight(publicURL, "/")}, nil
}

// Fragment writes the feed fragment: a stylesheet link and the feed's root
// element, which the widget enhances in place.
func (r *Renderer) Fragment(w io.Writer, doc *feed.Doc, o Options) error {
	return templates.ExecuteTemplate(w, "fragment", r.view(doc, o))
}

// Page writes a complete HTML page around the fragment, for iframes.
func (r *Renderer) Page(w io.Writer, doc *feed.Doc, o Options) error {
	return templates.ExecuteTemplate(w, "embed", r.view(doc, o))
}

type view struct {
	ID      string
	Class   string
	Opts    Options
	Account *feed.Account
	Tiles   []tile
	CSSURL  string
	JSURL   string
	MoreURL string // the next page as an embed page: works with JavaScript off
	NextURL string // the next page as a fragment, for the widget

	Lang, Dir string
	LangURL   string // the language's texts for the widget; empty for the default
	Echo      []text // the owner's texts for the widget's own strings
	T         viewTexts
}

// viewTexts are the fragment's own texts, in the feed's language.
type viewTexts struct {
	Follow, FollowSR, PostsBy, LoadMore, Title string
	// Counts is the account's followers and posts for the header, when
	// the counts option is on and Instagram gave them.
	Counts string
}

type text struct{ Key, Val string }

type tile struct {
	Post    *feed.Post
	Img     *img
	Sources []source // the image in AVIF, WebP; empty until stored
	Sizes   string
	Alt     string
	Lazy    bool
	Color   string
	Mark    string // accessible name of the carousel/video marker
	Caption string
	// User is the post's account when the feed shows several and it is not
	// the header's: the lightbox names it.
	User string
	Kids []kid
}

type kid struct {
	Type  string
	Alt   string
	Color string
	Img   *img
}

type img struct {
	Src    string
	Srcset string
	W, H   int
}

// source is a <source> of a tile's <picture>: one format's srcset.
type source struct {
	Type   string
	Srcset string
}

func (r *Renderer) view(doc *feed.Doc, o Options) *view {
	t := textsFor(o)
	v := &view{
		Lang:    t.l.code,
		Dir:     t.l.dir,
		ID:      doc.ID,
		Opts:    o,
		Account: doc.Account,
		CSSURL:  r.base + "/widget.css",
		JSURL:   r.base + "/widget.js",
		Class:   "feedd feedd-" + o.Layout + " feedd-c" + strconv.Itoa(o.Columns) + " feedd-cap-" + o.Captions + " feedd-t-" + o.Theme,
		Tiles:   make([]tile, 0, len(doc.Posts)),
	}
	if t.l.code != DefaultLang {
		v.LangURL = r.base + t.l.path
	}
	for _, k := range widgetKeys {
		if s, ok := o.Texts[k]; ok {
			v.Echo = append(v.Echo, text{k, s})
		}
	}
	user := ""
	v.T.Title = t.get("feed")
	if doc.Account != nil {
		user = doc.Account.Username
		v.T.Title = "@" + user
		v.T.FollowSR = t.f("follow-sr", "user", user)
		v.T.PostsBy = t.f("posts-by", "user", user)
		if o.Counts {
			v.T.Counts = t.counts(doc.Account)
		}
	}
	v.T.Follow, v.T.LoadMore = t.get("follow"), t.get("load-more")
	for i := range doc.Posts {
		p := &doc.Posts[i]
		// A feed of several accounts: each post is described as by its own.
		header := user
		user := cmp.Or(p.Username, user)
		tl := tile{
			Post:  p,
			Img:   pick(p.Images),
			Alt:   t.altOf(p.Alt, p, user),
			Color: hexColor(p.Color),
			// The first row shows at once; the browser defers the rest, and
			// every tile of a later page.
			Lazy: o.After != "" || i >= o.Columns,
		}
		if tl.Img != nil {
			tl.Sizes = sizes(tl.Img, o.Columns)
			for _, so := range p.Sources {
				if k := pick(so.Images); k != nil {
					tl.Sources = append(tl.Sources, source{Type: so.Type, Srcset: k.Srcset})
				}
			}
		}
		if p.Caption != nil {
			tl.Caption = *p.Caption
		}
		if user != header {
			tl.User = user
		}
		switch p.Type {
		case feed.TypeVideo:
			tl.Mark = t.get("video")
		case feed.TypeCarousel:
			tl.Mark = t.f("carousel", "n", strconv.Itoa(len(p.Children)))
			for j := range p.Children {
				c := &p.Children[j]
				if k := pick(c.Images); k != nil {
					tl.Kids = append(tl.Kids, kid{Type: c.Type, Alt: t.kidAlt(c.Alt, p, user, tl.Alt), Color: hexColor(c.Color), Img: k})
				}
			}
		}
		v.Tiles = append(v.Tiles, tl)
	}
	if o.LoadMore && doc.Next != nil {
		q := o.query(*doc.Next)
		id := url.PathEscape(doc.ID)
		v.MoreURL = r.base + "/feeds/" + id + "/embed?" + q
		v.NextURL = r.base + "/feeds/" + id + ".html?" + q
	}
	return v
}

// pick describes a post's stored sizes (smallest first): src is the
// smallest at least 480 px wide (for browsers without srcset), width and
// height the largest's, which carry the aspect ratio.
func pick(images []feed.Image) *img {
	if len(images) == 0 {
		return nil
	}
	var b strings.Builder
	src := ""
	for i, im := range images {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(im.URL)
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(im.Width))
		b.WriteByte('w')
		if src == "" && im.Width >= 480 {
			src = im.URL
		}
	}
	last := images[len(images)-1]
	if src == "" {
		src = last.URL
	}
	return &img{Src: src, Srcset: b.String(), W: last.Width, H: last.Height}
}

// sizes estimates the tile's rendered width from the viewport: a tile is
// about 1/columns of it, and a landscape image cropped to the square tile
// needs proportionally more width. The widget replaces this with the
// measured width when it runs.
func sizes(im *img, columns int) string {
	f := 1.0
	if im.H > 0 && im.W > im.H {
		f = float64(im.W) / float64(im.H)
	}
	return strconv.Itoa(int(100*f/float64(columns)+0.999)) + "vw"
}

// hexColor passes only #rrggbb: the value ends up in CSSOM, so anything else
// is dropped rather than escaped.
func hexColor(c string) string {
	if len(c) != 7 || c[0] != '#' {
		return ""
	}
	for i := 1; i < 7; i++ {
		ch := c[i] | 0x20
		if !(ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f') {
			return ""
		}
	}
	return c
}
