package feed

import (
	"context"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/web"
)

// Curation limits: what one feed's curation may hold.
const (
	MaxRules      = 100  // include and exclude rules together
	MaxRuleLen    = 100  // characters of one rule
	MaxPins       = 50   // pinned posts
	MaxHidden     = 1000 // hidden posts
	MaxCuratedCap = 1000 // the largest max_posts
	maxPostIDLen  = 64
)

// NormalizeCuration checks a curation the owner sent and returns it in its
// stored form: rules trimmed, their spaces collapsed, NFC, duplicates
// (equal once case-folded) dropped; types lower-case, in their canonical
// order. Hidden and pinned ids are checked for shape only (the owner's
// service checks that they name stored posts). A bad value is a 400
// *web.Error naming the field.
func NormalizeCuration(c model.Curation) (model.Curation, error) {
	out := model.Curation{MaxPosts: c.MaxPosts, UpdatedAt: c.UpdatedAt}
	if len(c.Include)+len(c.Exclude) > MaxRules {
		return out, web.BadRequest("invalid_rules", "include, exclude: at most %d rules together", MaxRules)
	}
	var err error
	if out.Include, err = normalizeRules("include", c.Include); err != nil {
		return out, err
	}
	if out.Exclude, err = normalizeRules("exclude", c.Exclude); err != nil {
		return out, err
	}
	set := TypeSet(0)
	for i, t := range c.Types {
		bit := TypeSet(0)
		for _, n := range typeNames {
			if n.name == strings.ToLower(strings.TrimSpace(t)) {
				bit = n.bit
			}
		}
		if bit == 0 {
			return out, web.BadRequest("invalid_types", "types[%d]: %s is not one of image, video, carousel, reel", i, quoteShort(t))
		}
		set |= bit
	}
	out.Types = []string{}
	for _, n := range typeNames {
		if set&n.bit != 0 {
			out.Types = append(out.Types, n.name)
		}
	}
	if c.MaxPosts < 0 || c.MaxPosts > MaxCuratedCap {
		return out, web.BadRequest("invalid_max_posts", "max_posts: must be from 0 (no cap) to %d", MaxCuratedCap)
	}
	if out.Hidden, err = normalizeIDs("hidden", c.Hidden, MaxHidden); err != nil {
		return out, err
	}
	if out.Pinned, err = normalizeIDs("pinned", c.Pinned, MaxPins); err != nil {
		return out, err
	}
	hidden := make(map[string]bool, len(out.Hidden))
	for _, id := range out.Hidden {
		hidden[id] = true
	}
	for i, id := range out.Pinned {
		if hidden[id] {
			return out, web.BadRequest("invalid_pinned", "pinned[%d]: post %s is also hidden; a post is either hidden or pinned", i, id)
		}
	}
	return out, nil
}

func normalizeRules(field string, in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	seen := make(map[string]bool, len(in))
	for i, raw := range in {
		if !utf8.ValidString(raw) {
			return nil, web.BadRequest("invalid_"+field, "%s[%d]: must be valid UTF-8", field, i)
		}
		r := strings.Join(strings.Fields(norm.NFC.String(raw)), " ")
		switch n := utf8.RuneCountInString(r); {
		case n == 0:
			return nil, web.BadRequest("invalid_"+field, "%s[%d]: must not be empty", field, i)
		case n > MaxRuleLen:
			return nil, web.BadRequest("invalid_"+field, "%s[%d]: at most %d characters", field, i, MaxRuleLen)
		}
		for _, c := range r {
			if unicode.IsControl(c) {
				return nil, web.BadRequest("invalid_"+field, "%s[%d]: must not contain control characters", field, i)
			}
		}
		if tag, ok := strings.CutPrefix(r, "#"); ok {
			if tag == "" || !allWordRunes(tag) {
				return nil, web.BadRequest("invalid_"+field, "%s[%d]: a hashtag is # followed by letters, digits or _ (no spaces)", field, i)
			}
		} else if !strings.ContainsFunc(r, isWordRune) {
			return nil, web.BadRequest("invalid_"+field, "%s[%d]: must contain a letter or digit", field, i)
		}
		k := fold(r)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, r)
	}
	return out, nil
}

func normalizeIDs(field string, in []string, most int) ([]string, error) {
	if len(in) > most {
		return nil, web.BadRequest("invalid_"+field, "%s: at most %d posts", field, most)
	}
	out := make([]string, 0, len(in))
	seen := make(map[string]bool, len(in))
	for i, id := range in {
		if !validPostID(id) {
			return nil, web.BadRequest("invalid_"+field, "%s[%d]: %s is not a post id", field, i, quoteShort(id))
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// validPostID is the shape of an Instagram media id as feedd keeps it (the
// cursor's rule): letters, digits, _ and -, at most 64.
func validPostID(id string) bool {
	if id == "" || len(id) > maxPostIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func quoteShort(s string) string {
	if utf8.RuneCountInString(s) > 20 {
		s = string([]rune(s)[:20]) + "…"
	}
	return strconv.Quote(s)
}

// Why a curation leaves a post out.
const (
	ReasonHidden  = "hidden"  // the owner hid it
	ReasonType    = "type"    // its type is not among the types shown
	ReasonInclude = "include" // its caption matches no include rule
	ReasonExclude = "exclude" // its caption matches an exclude rule
	ReasonCap     = "cap"     // it comes after max_posts
)

// Curator applies one feed's curation: hidden posts and posts the caption
// rules or the types leave out are dropped, pinned posts come first in the
// owner's order (shown whatever the rules and types say: the owner chose
// each one), the rest follow newest first, and the cap cuts the end.
type Curator struct {
	hidden  map[string]bool
	pinned  map[string]int // position among the pins
	include []rule
	exclude []rule
	types   TypeSet // kinds shown; 0: all
	max     int
}

// NewCurator compiles a curation (in the form NormalizeCuration returns).
func NewCurator(c model.Curation) *Curator {
	cu := &Curator{hidden: make(map[string]bool, len(c.Hidden)), pinned: make(map[string]int, len(c.Pinned)), max: c.MaxPosts}
	for _, id := range c.Hidden {
		cu.hidden[id] = true
	}
	for i, id := range c.Pinned {
		if _, dup := cu.pinned[id]; !dup && !cu.hidden[id] {
			cu.pinned[id] = i
		}
	}
	for _, r := range c.Include {
		cu.include = append(cu.include, compileRule(r))
	}
	for _, r := range c.Exclude {
		cu.exclude = append(cu.exclude, compileRule(r))
	}
	for _, t := range c.Types {
		for _, n := range typeNames {
			if n.name == t {
				cu.types |= n.bit
			}
		}
	}
	return cu
}

// item is what the curation looks at in a post.
type item struct {
	id, typ string
	reel    bool
	caption *string
}

// Placement is where the curation puts one stored post.
type Placement struct {
	Index  int    // into the posts given to Explain
	Shown  bool   // in the served feed
	Pin    int    // 1-based position among the pins; 0: not pinned
	Reason string // why it is left out (a Reason... constant); "" when shown
	Rule   string // the rule behind ReasonInclude's absence or ReasonExclude
}

// Explain places every stored post (newest first, as the store returns
// them): the shown ones first in the served order, then the others in
// their stored order with the reason they are left out. The owner's
// moderation page shows this.
func (cu *Curator) Explain(posts []model.Post) []Placement {
	items := make([]item, len(posts))
	for i := range posts {
		p := &posts[i]
		items[i] = item{id: p.ID, typ: postType(p.MediaType), reel: p.IsReel, caption: p.Caption}
	}
	return cu.place(items)
}

// Apply returns the posts (newest first) the served feed shows, in order.
func (cu *Curator) Apply(posts []Post) []Post {
	items := make([]item, len(posts))
	for i := range posts {
		p := &posts[i]
		items[i] = item{id: p.ID, typ: p.Type, reel: p.IsReel, caption: p.Caption}
	}
	out := make([]Post, 0, len(posts))
	for _, pl := range cu.place(items) {
		if !pl.Shown {
			break
		}
		p := posts[pl.Index]
		p.Pinned = pl.Pin > 0
		out = append(out, p)
	}
	return out
}

func (cu *Curator) place(items []item) []Placement {
	out := make([]Placement, 0, len(items))
	var pins, rest, left []Placement
	for i := range items {
		it := &items[i]
		pl := Placement{Index: i, Shown: true}
		if n, ok := cu.pinned[it.id]; ok {
			pl.Pin = n + 1
			pins = append(pins, pl)
			continue
		}
		pl.Reason, pl.Rule = cu.leftOut(it)
		if pl.Reason != "" {
			pl.Shown = false
			left = append(left, pl)
			continue
		}
		rest = append(rest, pl)
	}
	// Pins in the owner's order; the positions have gaps where a pinned
	// post is no longer stored.
	for i := 1; i < len(pins); i++ {
		for j := i; j > 0 && pins[j].Pin < pins[j-1].Pin; j-- {
			pins[j], pins[j-1] = pins[j-1], pins[j]
		}
	}
	for i := range pins {
		pins[i].Pin = i + 1
	}
	out = append(append(out, pins...), rest...)
	if cu.max > 0 && len(out) > cu.max {
		capped := out[cu.max:]
		for i := range capped {
			capped[i].Shown, capped[i].Reason = false, ReasonCap
		}
		// Capped posts rejoin the others in their stored order.
		left = append(left, capped...)
		out = out[:cu.max]
		for i := 1; i < len(left); i++ {
			for j := i; j > 0 && left[j].Index < left[j-1].Index; j-- {
				left[j], left[j-1] = left[j-1], left[j]
			}
		}
	}
	return append(out, left...)
}

// leftOut says why an unpinned post is not shown ("" when it is).
func (cu *Curator) leftOut(it *item) (reason, rule string) {
	if cu.hidden[it.id] {
		return ReasonHidden, ""
	}
	if cu.types != 0 && cu.types&kindOf(it.typ, it.reel) == 0 {
		return ReasonType, ""
	}
	if len(cu.include) == 0 && len(cu.exclude) == 0 {
		return "", ""
	}
	text := ""
	if it.caption != nil {
		text = fold(*it.caption)
	}
	for _, r := range cu.exclude {
		if r.match(text) {
			return ReasonExclude, r.text
		}
	}
	if len(cu.include) == 0 {
		return "", ""
	}
	for _, r := range cu.include {
		if r.match(text) {
			return "", ""
		}
	}
	return ReasonInclude, ""
}

// kindOf is a post's one kind among the types a curation shows: unlike the
// query's type filter, where video includes reels, these four do not
// overlap, so an owner can show videos but not reels.
func kindOf(typ string, reel bool) TypeSet {
	switch {
	case typ == TypeImage:
		return FilterImage
	case typ == TypeCarousel:
		return FilterCarousel
	case typ == TypeVideo && reel:
		return FilterReel
	case typ == TypeVideo:
		return FilterVideo
	}
	return 0
}

// rule is one caption rule, case-folded.
type rule struct {
	text string // as the owner wrote it
	pat  string // folded; without the # for a hashtag
	tag  bool
	// Whether the pattern must start (end) at a word boundary: not when
	// its first (last) letter is of a script written without spaces
	// between words, where a word is found as a substring.
	edgeL, edgeR bool
}

func compileRule(s string) rule {
	r := rule{text: s}
	if tag, ok := strings.CutPrefix(s, "#"); ok {
		r.tag, r.pat = true, fold(tag)
		return r
	}
	r.pat = fold(s)
	first, _ := utf8.DecodeRuneInString(r.pat)
	last, _ := utf8.DecodeLastRuneInString(r.pat)
	r.edgeL, r.edgeR = !unspaced(first), !unspaced(last)
	return r
}

// match reports whether the folded caption text holds the rule: a
// hashtag rule a whole hashtag (#cake, not #cakes, not the word cake); a
// word or phrase rule the words at word boundaries (cake in "Cake!" and in
// "#cake", not in "cupcake"), or as a substring in scripts without spaces.
func (r *rule) match(text string) bool {
	if r.pat == "" {
		return false
	}
	if r.tag {
		for i := 0; i < len(text); {
			j := strings.IndexByte(text[i:], '#')
			if j < 0 {
				return false
			}
			start := i + j + 1
			end := start
			for end < len(text) {
				c, n := utf8.DecodeRuneInString(text[end:])
				if !isWordRune(c) {
					break
				}
				end += n
			}
			if text[start:end] == r.pat {
				return true
			}
			i = max(end, start)
		}
		return false
	}
	for i := 0; i <= len(text)-len(r.pat); {
		j := strings.Index(text[i:], r.pat)
		if j < 0 {
			return false
		}
		at := i + j
		end := at + len(r.pat)
		before, _ := utf8.DecodeLastRuneInString(text[:at])
		after, _ := utf8.DecodeRuneInString(text[end:])
		if (!r.edgeL || at == 0 || !isWordRune(before)) && (!r.edgeR || end == len(text) || !isWordRune(after)) {
			return true
		}
		_, n := utf8.DecodeRuneInString(text[at:])
		i = at + n
	}
	return false
}

// fold is the form rules and captions are compared in: NFC, full Unicode
// case folding (Straße matches STRASSE), spaces collapsed to one.
func fold(s string) string {
	// A Caser keeps state: one per call, never shared between goroutines.
	return strings.Join(strings.Fields(cases.Fold().String(norm.NFC.String(s))), " ")
}

func isWordRune(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)
}

func allWordRunes(s string) bool {
	for _, r := range s {
		if !isWordRune(r) {
			return false
		}
	}
	return true
}

// unspaced reports a letter of a script written without spaces between
// words (Chinese, Japanese, Thai, Lao, Khmer, Myanmar) or, for Korean,
// with particles joined to the word: there a rule matches as a substring.
func unspaced(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul,
		unicode.Thai, unicode.Lao, unicode.Khmer, unicode.Myanmar)
}

// TypeOf is the JSON type of a stored post's media type ("" when feedd
// does not know it).
func TypeOf(mediaType string) string { return postType(mediaType) }

// curate applies the feed's curation to its built posts.
func (s *Service) curate(ctx context.Context, feedID string, posts []Post) ([]Post, error) {
	c, err := s.store.Curation(ctx, feedID)
	if err != nil {
		return nil, err
	}
	if len(c.Hidden)+len(c.Pinned)+len(c.Include)+len(c.Exclude)+len(c.Types) == 0 && c.MaxPosts == 0 {
		return posts, nil
	}
	return NewCurator(c).Apply(posts), nil
}
