// Package widget holds feedd's embed script and its stylesheet, built from
// src/ by `go generate` (esbuild's Go API, no Node) and embedded in the
// binary. The built files are committed; a test checks they are current.
package widget

import "embed"

//go:generate go run ./internal/build/gen

// JS is the minified widget.js, its CSS included.
//
//go:embed dist/widget.js
var JS []byte

// CSS is widget.css for host pages: the space a snippet's element holds
// before the script runs (host.css), then the feed's styles for
// server-rendered fragments.
//
//go:embed dist/widget.css
var CSS []byte

// I18n holds the texts of the widget and the fragment, one JSON object per
// language (i18n/en.json, ...): render uses them and serves them to the
// widget, whose build bakes in the English ones.
//
//go:embed i18n/*.json
var I18n embed.FS
