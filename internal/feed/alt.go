package feed

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// altMaxRunes bounds a caption-derived alt text: a screen reader reads the
// whole attribute, so keep it to about one sentence.
const altMaxRunes = 100

// AltText is the alt text of a post: the author's alt text when Instagram
// gives one, else the first sentence of the caption without hashtags and
// mentions, else "Post by @username". It never returns an empty string.
func AltText(altText, caption *string, username string) string {
	if altText != nil {
		if s := collapseSpace(*altText); s != "" {
			return s
		}
	}
	if caption != nil {
		if s := captionAlt(*caption); s != "" {
			return s
		}
	}
	if username != "" {
		return "Post by @" + username
	}
	return "Instagram post"
}

// captionAlt derives alt text from a caption: hashtags and mentions
// dropped, whitespace collapsed, cut at the end of the first sentence or
// at a word boundary near altMaxRunes.
func captionAlt(caption string) string {
	var words []string
	for w := range strings.FieldsSeq(caption) {
		if w[0] == '#' || w[0] == '@' {
			continue
		}
		words = append(words, w)
	}
	s := strings.Join(words, " ")
	// First sentence: a stop followed by a space (so "3.5" and URLs stay).
	// Line breaks in the caption were collapsed above, so also cut where
	// the original had its first line end.
	if line, _, ok := strings.Cut(strings.TrimSpace(caption), "\n"); ok {
		if l := captionAlt(line); l != "" && len(l) < len(s) {
			s = l
		}
	}
	for i, r := range s {
		if (r == '.' || r == '!' || r == '?' || r == '…') && i+utf8.RuneLen(r) < len(s) && s[i+utf8.RuneLen(r)] == ' ' {
			s = s[:i+utf8.RuneLen(r)]
			break
		}
	}
	s = strings.TrimFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == '-' || r == '|' || r == '·' })
	if utf8.RuneCountInString(s) > altMaxRunes {
		cut := 0
		n := 0
		for i := range s {
			if n == altMaxRunes {
				cut = i
				break
			}
			n++
		}
		t := s[:cut]
		if sp := strings.LastIndexByte(t, ' '); sp > altMaxRunes/2 {
			t = t[:sp]
		}
		s = strings.TrimRight(t, " ,;:") + "…"
	}
	if !hasLetterOrDigit(s) {
		return ""
	}
	return s
}

func hasLetterOrDigit(s string) bool {
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return true
		}
	}
	return false
}

func collapseSpace(s string) string { return strings.Join(strings.Fields(s), " ") }
