package render

import (
	"html"
	"maps"
	"slices"
	"strings"
)

// Snippet is what a site pastes to show feed id with options o from the
// feedd at publicURL: the stylesheet that holds the feed's space before the
// script runs, the element with the options as data- attributes, and the
// script. No inline script or style, so a strict Content-Security-Policy
// only needs feedd's origin.
func Snippet(publicURL, id string, o Options) string {
	base := strings.TrimRight(publicURL, "/")
	params := o.Params()
	var b strings.Builder
	b.WriteString(`<link rel="stylesheet" href="` + html.EscapeString(base) + `/widget.css">` + "\n")
	b.WriteString(`<div data-feedd="` + html.EscapeString(id) + `"`)
	for _, k := range slices.Sorted(maps.Keys(params)) {
		b.WriteString(` data-` + k + `="` + html.EscapeString(strings.Join(params[k], ",")) + `"`)
	}
	b.WriteString("></div>\n")
	b.WriteString(`<script src="` + html.EscapeString(base) + `/widget.js" async></script>`)
	return b.String()
}
