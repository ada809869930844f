// Package render turns a feed document into the markup visitors see: the
// HTML fragment at /feeds/{id}.html, the iframe page at /feeds/{id}/embed
// (both from one template set, which is also what the widget inserts), and
// the widget's script and stylesheet.
package render

import (
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
}

type tile struct {
	Post    *feed.Post
	Img     *img
	Sizes   string
	Alt     string
	Lazy    bool
	Color   string
	Mark    string // accessible name of the carousel/video marker
	Caption string
	Kids    []kid
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

func (r *Renderer) view(doc *feed.Doc, o Options) *view {
	v := &view{
		ID:      doc.ID,
		Opts:    o,
		Account: doc.Account,
		CSSURL:  r.base + "/widget.css",
		JSURL:   r.base + "/widget.js",
		Class:   "feedd feedd-" + o.Layout + " feedd-c" + strconv.Itoa(o.Columns) + " feedd-cap-" + o.Captions + " feedd-t-" + o.Theme,
		Tiles:   make([]tile, 0, len(doc.Posts)),
	}
	user := ""
	if doc.Account != nil {
		user = doc.Account.Username
	}
	for i := range doc.Posts {
		p := &doc.Posts[i]
		t := tile{
			Post:  p,
			Img:   pick(p.Images),
			Alt:   altOf(p.Alt, p, user),
			Color: hexColor(p.Color),
			// The first row shows at once; the browser defers the rest, and
			// every tile of a later page.
			Lazy: o.After != "" || i >= o.Columns,
		}
		if t.Img != nil {
			t.Sizes = sizes(t.Img, o.Columns)
		}
		if p.Caption != nil {
			t.Caption = *p.Caption
		}
		switch p.Type {
		case feed.TypeVideo:
			t.Mark = "Video"
		case feed.TypeCarousel:
			t.Mark = "Carousel of " + strconv.Itoa(len(p.Children))
		}
		if p.Type == feed.TypeCarousel {
			for j := range p.Children {
				c := &p.Children[j]
				if k := pick(c.Images); k != nil {
					t.Kids = append(t.Kids, kid{Type: c.Type, Alt: altOf(c.Alt, p, user), Color: hexColor(c.Color), Img: k})
				}
			}
		}
		v.Tiles = append(v.Tiles, t)
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

// altOf is the alt text of a post's picture: the feed's own (the author's
// or one the feed derived from the caption), else one derived here from
// the caption, else who posted it and when. Never empty, never "image 0".
func altOf(alt string, p *feed.Post, user string) string {
	if a := strings.TrimSpace(alt); a != "" {
		return a
	}
	s := feed.AltText(nil, p.Caption, user)
	if s != "Post by @"+user && s != "Instagram post" {
		return s // from the caption
	}
	if s == "Instagram post" {
		s = "Post"
	}
	if !p.Timestamp.IsZero() {
		s += " on " + p.Timestamp.UTC().Format("2 January 2006")
	}
	return s
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
