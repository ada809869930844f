package render

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/feedd/feedd/internal/feed"
	"github.com/feedd/feedd/internal/web"
)

// Option limits and defaults. The defaults make a 3×4 grid: full rows on
// the first page at the common column counts.
const (
	DefaultLimit   = 12
	DefaultColumns = 3
	MaxColumns     = 8
	MaxGap         = 64
)

// Options are the display options of a rendered feed, named like the
// snippet's data- attributes and the fragment's query parameters.
type Options struct {
	Limit int      // posts per page, 1..feed.MaxLimit
	After string   // cursor of the page ("" = first page)
	Types []string // type filter, passed to the feed as is

	Columns  int    // 1..MaxColumns
	Gap      int    // pixels between tiles, 0..MaxGap; -1 = the stylesheet's default
	Layout   string // "grid" or "carousel"
	Captions string // "none", "hover" or "below"
	Theme    string // "light", "dark" or "auto"
	Header   bool   // avatar, name and follow link above the tiles
	Lightbox bool   // open posts in a dialog instead of following the link
	LoadMore bool   // a "load more" link when there is a next page
	Counts   bool   // the account's followers and posts in the header

	Lang  string            // one of Languages; "" for the host page's, else DefaultLang
	Texts map[string]string // the owner's texts in place of feedd's, by key (i18n-<key>)
}

// DefaultOptions are the options of a fragment requested with no query.
var DefaultOptions = Options{
	Limit: DefaultLimit, Columns: DefaultColumns, Gap: -1,
	Layout: "grid", Captions: "none", Theme: "auto",
	Header: true, Lightbox: true, LoadMore: true,
}

// ParseOptions reads options from a query string. Unknown parameters are
// ignored; a bad value is a 400 *web.Error naming the parameter.
func ParseOptions(v url.Values) (Options, error) {
	o := DefaultOptions
	var err error
	if o.Limit, err = intParam(v, "limit", o.Limit, 1, feed.MaxLimit); err != nil {
		return o, err
	}
	if o.Columns, err = intParam(v, "columns", o.Columns, 1, MaxColumns); err != nil {
		return o, err
	}
	if o.Gap, err = intParam(v, "gap", o.Gap, 0, MaxGap); err != nil {
		return o, err
	}
	if o.Layout, err = enumParam(v, "layout", o.Layout, "grid", "carousel"); err != nil {
		return o, err
	}
	if o.Captions, err = enumParam(v, "captions", o.Captions, "none", "hover", "below"); err != nil {
		return o, err
	}
	if o.Theme, err = enumParam(v, "theme", o.Theme, "light", "dark", "auto"); err != nil {
		return o, err
	}
	for _, b := range []struct {
		name string
		dst  *bool
	}{{"header", &o.Header}, {"lightbox", &o.Lightbox}, {"load-more", &o.LoadMore}, {"counts", &o.Counts}} {
		if *b.dst, err = boolParam(v, b.name, *b.dst); err != nil {
			return o, err
		}
	}
	if s := v.Get("lang"); s != "" {
		l, ok := parseLang(s)
		if !ok {
			return o, web.BadRequest("invalid_parameter", "lang must be one of %s", strings.Join(langCodes, ", "))
		}
		o.Lang = l
	}
	for name, vals := range v {
		key, ok := strings.CutPrefix(name, "i18n-")
		if !ok {
			continue
		}
		if err := checkText(key, vals[0]); err != nil {
			return o, web.BadRequest("invalid_parameter", "%s", err.Error())
		}
		if o.Texts == nil {
			o.Texts = map[string]string{}
		}
		o.Texts[key] = vals[0]
	}
	o.After = v.Get("after")
	o.Types = v["type"]
	if _, err := feed.NewQuery(o.Limit, o.After, o.Types); err != nil {
		return o, err
	}
	return o, nil
}

// query is the canonical query string of o for the page after `after`:
// only the options that differ from the defaults, in a fixed order.
func (o Options) query(after string) string {
	v := o.Params()
	if after != "" {
		v.Set("after", after)
	}
	return v.Encode()
}

// Params are o's display options that differ from the defaults, by their
// query parameter names, which are also the snippet's data- attribute
// names (the type filter, language and texts included, the cursor not).
func (o Options) Params() url.Values {
	v := url.Values{}
	d := DefaultOptions
	if o.Limit != d.Limit {
		v.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Columns != d.Columns {
		v.Set("columns", strconv.Itoa(o.Columns))
	}
	if o.Gap != d.Gap {
		v.Set("gap", strconv.Itoa(o.Gap))
	}
	for _, p := range []struct{ name, val, def string }{
		{"layout", o.Layout, d.Layout}, {"captions", o.Captions, d.Captions}, {"theme", o.Theme, d.Theme},
		{"header", strconv.FormatBool(o.Header), "true"}, {"lightbox", strconv.FormatBool(o.Lightbox), "true"},
		{"load-more", strconv.FormatBool(o.LoadMore), "true"}, {"counts", strconv.FormatBool(o.Counts), "false"},
	} {
		if p.val != p.def {
			v.Set(p.name, p.val)
		}
	}
	if len(o.Types) > 0 {
		v["type"] = o.Types
	}
	if o.Lang != d.Lang {
		v.Set("lang", o.Lang)
	}
	for k, t := range o.Texts {
		v.Set("i18n-"+k, t)
	}
	return v
}

func intParam(v url.Values, name string, def, lo, hi int) (int, error) {
	s := v.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, web.BadRequest("invalid_parameter", "%s must be an integer from %d to %d", name, lo, hi)
	}
	return n, nil
}

func enumParam(v url.Values, name, def string, allowed ...string) (string, error) {
	s := v.Get(name)
	if s == "" {
		return def, nil
	}
	for _, a := range allowed {
		if s == a {
			return s, nil
		}
	}
	return "", web.BadRequest("invalid_parameter", "%s must be one of %s", name, strings.Join(allowed, ", "))
}

func boolParam(v url.Values, name string, def bool) (bool, error) {
	switch v.Get(name) {
	case "":
		return def, nil
	case "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off":
		return false, nil
	}
	return false, web.BadRequest("invalid_parameter", "%s must be true or false", name)
}
