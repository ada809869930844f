package render

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/feedd/feedd/internal/feed"
	"github.com/feedd/feedd/widget"
)

// DefaultLang is the language of a feed shown with no lang option.
const DefaultLang = "en"

// MaxTextLen is the longest text an owner may put in place of one of
// feedd's (i18n-* options), in bytes.
const MaxTextLen = 200

// widgetKeys are the texts the widget shows itself (the lightbox); the
// fragment carries the owner's versions of them for the widget to use.
var widgetKeys = []string{"post", "close", "previous", "next", "view", "watch", "count"}

// rtl lists the languages written right to left.
var rtl = map[string]bool{"ar": true, "he": true}

// language is one file of widget/i18n.
type language struct {
	code, dir string
	texts     map[string]string
	file      []byte // the JSON as the widget gets it
	path      string // its immutable URL path, /widget/i18n/<code>.<hash>.json
}

var languages, langCodes = loadLanguages()

// loadLanguages reads widget/i18n. The files are part of the binary and
// checked by the tests, so a bad one stops the program at start.
func loadLanguages() (map[string]*language, []string) {
	files, err := fs.Glob(widget.I18n, "i18n/*.json")
	if err != nil {
		panic(err)
	}
	out := map[string]*language{}
	for _, f := range files {
		b, err := fs.ReadFile(widget.I18n, f)
		if err != nil {
			panic(err)
		}
		l := &language{code: strings.TrimSuffix(path.Base(f), ".json"), dir: "ltr", file: b}
		if err := json.Unmarshal(b, &l.texts); err != nil {
			panic(fmt.Sprintf("render: %s: %v", f, err))
		}
		if rtl[l.code] {
			l.dir = "rtl"
		}
		sum := sha256.Sum256(b)
		l.path = "/widget/i18n/" + l.code + "." + hex.EncodeToString(sum[:6]) + ".json"
		out[l.code] = l
	}
	if out[DefaultLang] == nil {
		panic("render: no " + DefaultLang + ".json in widget/i18n")
	}
	codes := make([]string, 0, len(out))
	for c := range out {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	return out, codes
}

// Languages are the codes of the languages feeds can be shown in.
func Languages() []string { return slices.Clone(langCodes) }

// parseLang reads a lang option: a language tag whose primary subtag
// (pt of pt-BR) is one of Languages.
func parseLang(s string) (string, bool) {
	p, _, _ := strings.Cut(strings.ToLower(s), "-")
	p, _, _ = strings.Cut(p, "_")
	_, ok := languages[p]
	return p, ok
}

// checkText validates an owner's text for key: a text feedd shows, short,
// on one line; month names come as twelve, separated by |.
func checkText(key, val string) error {
	name := "i18n-" + key
	if _, ok := languages[DefaultLang].texts[key]; !ok {
		return fmt.Errorf("%s is not one of feedd's texts", name)
	}
	if len(val) > MaxTextLen || strings.ContainsFunc(val, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("%s must be one line of at most %d bytes", name, MaxTextLen)
	}
	if key == "months" && strings.Count(val, "|") != 11 {
		return fmt.Errorf("%s must be twelve month names separated by |", name)
	}
	return nil
}

// texts are the strings of one rendering: a language and the owner's
// replacements.
type texts struct {
	l    *language
	over map[string]string
}

func textsFor(o Options) texts {
	l := languages[o.Lang]
	if l == nil {
		l = languages[DefaultLang]
	}
	return texts{l: l, over: o.Texts}
}

func (t texts) get(key string) string {
	if v, ok := t.over[key]; ok {
		return v
	}
	return t.l.texts[key]
}

// f is the text of key with its {placeholders} replaced, given as
// name, value pairs.
func (t texts) f(key string, pairs ...string) string {
	s := t.get(key)
	for i := 0; i+1 < len(pairs); i += 2 {
		s = strings.ReplaceAll(s, "{"+pairs[i]+"}", pairs[i+1])
	}
	return s
}

func (t texts) date(ts time.Time) string {
	ts = ts.UTC()
	month := ""
	if ms := strings.Split(t.get("months"), "|"); len(ms) == 12 {
		month = ms[ts.Month()-1]
	}
	return t.f("date", "d", strconv.Itoa(ts.Day()), "m", strconv.Itoa(int(ts.Month())), "month", month, "y", strconv.Itoa(ts.Year()))
}

// englishFallback is the alt text the feed makes for a post with neither
// alt text nor caption (feed.AltText), which render makes again in the
// feed's language and with the post's date.
func englishFallback(user string) string {
	return feed.AltText(nil, nil, user)
}

// altOf is the alt text of a post's picture: the feed's own (the author's
// or one the feed derived from the caption), else one derived here from
// the caption, else who posted it and when. Never empty, never "image 0".
func (t texts) altOf(alt string, p *feed.Post, user string) string {
	fallback := englishFallback(user)
	if a := strings.TrimSpace(alt); a != "" && a != fallback {
		return a
	}
	if s := feed.AltText(nil, p.Caption, user); s != fallback {
		return s // from the caption
	}
	switch {
	case user != "" && !p.Timestamp.IsZero():
		return t.f("post-by-on", "user", user, "date", t.date(p.Timestamp))
	case user != "":
		return t.f("post-by", "user", user)
	case !p.Timestamp.IsZero():
		return t.f("post-on", "date", t.date(p.Timestamp))
	}
	return t.get("post")
}

// kidAlt is the alt text of the i-th of n pictures of a carousel whose
// cover has postAlt. The feed names a picture without alt text after its
// post, "<post alt> (i of n)" in English: that is made again here.
func (t texts) kidAlt(alt string, p *feed.Post, user, postAlt string) string {
	if rest, ok := strings.CutPrefix(alt, p.Alt+" ("); ok && strings.HasSuffix(rest, ")") {
		i, n, ok := strings.Cut(strings.TrimSuffix(rest, ")"), " of ")
		if _, err := strconv.Atoi(i); ok && err == nil {
			if _, err := strconv.Atoi(n); err == nil {
				return t.f("slide", "alt", postAlt, "i", i, "n", n)
			}
		}
	}
	return t.altOf(alt, p, user)
}
