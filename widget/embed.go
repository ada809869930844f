// Package widget holds feedd's embed script and its stylesheet, built from
// src/ by `go generate` (esbuild's Go API, no Node) and embedded in the
// binary. The built files are committed; a test checks they are current.
package widget

import _ "embed"

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
