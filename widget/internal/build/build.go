// Package build bundles and minifies the widget sources with esbuild's Go
// API, so producing widget/dist needs no Node. `go generate ./widget` runs it;
// the widget's tests run it again to check the committed files are current.
package build

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/evanw/esbuild/pkg/api"
)

// Output is the built widget.
type Output struct {
	JS  []byte // widget.js: the script with the minified widget.css inlined as a string
	CSS []byte // widget.css: host.css with its generated rules, then the same minified CSS
}

// The option ranges host.css maps to custom properties, as render checks
// them: data-columns 1..MaxColumns (narrow containers show at most
// NarrowColumns, as in widget.css), data-limit 1..MaxLimit, data-gap
// 0..MaxGap pixels.
const (
	MaxColumns    = 8
	NarrowColumns = 3
	NarrowWidth   = 480
	MaxLimit      = 100
	MaxGap        = 64
)

// hostRules are the rules of host.css that list every option value.
func hostRules() string {
	var b strings.Builder
	for c := 1; c <= MaxColumns; c++ {
		fmt.Fprintf(&b, "[data-feedd][data-columns=\"%d\"]:not(.feedd){--_c:%d}\n", c, c)
	}
	fmt.Fprintf(&b, "@container (max-width: %dpx) {\n", NarrowWidth)
	for c := NarrowColumns + 1; c <= MaxColumns; c++ {
		fmt.Fprintf(&b, "[data-feedd][data-columns=\"%d\"]:not(.feedd)::before{--_c:%d}\n", c, NarrowColumns)
	}
	b.WriteString("}\n")
	for n := 1; n <= MaxLimit; n++ {
		fmt.Fprintf(&b, "[data-feedd][data-limit=\"%d\"]:not(.feedd){--_n:%d}\n", n, n)
	}
	// The fragment's root carries data-gap too: a server-rendered fragment
	// gets its gap without the script.
	for g := 0; g <= MaxGap; g++ {
		fmt.Fprintf(&b, "[data-feedd][data-gap=\"%d\"]{--feedd-gap:%dpx}\n", g, g)
	}
	return b.String()
}

// target is the oldest syntax the widget must run on: every browser with
// constructable stylesheets, <dialog> and container queries reads ES2020.
const target = api.ES2020

// Bundle builds srcDir/widget.js (which imports ./widget.css) and
// widget.css from srcDir/host.css and srcDir/widget.css. The result depends
// only on the sources.
func Bundle(srcDir string) (Output, error) {
	minCSS, err := minifyCSS(filepath.Join(srcDir, "widget.css"), "")
	if err != nil {
		return Output{}, err
	}
	hostCSS, err := minifyCSS(filepath.Join(srcDir, "host.css"), hostRules())
	if err != nil {
		return Output{}, err
	}

	// The stylesheet import resolves to the minified CSS as a text module.
	inline := api.Plugin{Name: "feedd-css", Setup: func(b api.PluginBuild) {
		b.OnResolve(api.OnResolveOptions{Filter: `\.css$`}, func(a api.OnResolveArgs) (api.OnResolveResult, error) {
			return api.OnResolveResult{Path: "widget.css", Namespace: "feedd-css"}, nil
		})
		b.OnLoad(api.OnLoadOptions{Filter: `.*`, Namespace: "feedd-css"}, func(api.OnLoadArgs) (api.OnLoadResult, error) {
			return api.OnLoadResult{Contents: &minCSS, Loader: api.LoaderText}, nil
		})
	}}
	langs, err := languages(filepath.Join(srcDir, "..", "i18n"))
	if err != nil {
		return Output{}, err
	}
	js := api.Build(api.BuildOptions{
		EntryPoints:       []string{filepath.Join(srcDir, "widget.js")},
		Bundle:            true,
		Write:             false,
		Format:            api.FormatIIFE,
		Target:            target,
		MinifyWhitespace:  true,
		MinifySyntax:      true,
		MinifyIdentifiers: true,
		LegalComments:     api.LegalCommentsNone,
		Charset:           api.CharsetUTF8,
		Plugins:           []api.Plugin{inline},
		Define:            map[string]string{"LANGS": langs},
		LogLevel:          api.LogLevelSilent,
	})
	if err := messages("widget.js", js.Errors); err != nil {
		return Output{}, err
	}
	if len(js.OutputFiles) != 1 {
		return Output{}, fmt.Errorf("build: widget.js: %d output files, want 1", len(js.OutputFiles))
	}
	return Output{JS: js.OutputFiles[0].Contents, CSS: []byte(hostCSS + "\n" + minCSS + "\n")}, nil
}

// languages is the JSON array of the language codes in dir (its *.json
// files), sorted.
func languages(dir string) (string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return "", fmt.Errorf("build: no languages in %s", dir)
	}
	codes := make([]string, len(files))
	for i, f := range files {
		codes[i] = strings.TrimSuffix(filepath.Base(f), ".json")
	}
	b, err := json.Marshal(codes)
	return string(b), err
}

// minifyCSS minifies the file with extra appended.
func minifyCSS(path, extra string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	css := api.Transform(string(raw)+extra, api.TransformOptions{
		Loader:            api.LoaderCSS,
		MinifyWhitespace:  true,
		MinifySyntax:      true,
		MinifyIdentifiers: true,
		LegalComments:     api.LegalCommentsNone,
		Charset:           api.CharsetUTF8,
		Engines:           []api.Engine{{Name: api.EngineChrome, Version: "105"}, {Name: api.EngineFirefox, Version: "110"}, {Name: api.EngineSafari, Version: "16.4"}},
	})
	name := filepath.Base(path)
	if err := messages(name, css.Errors); err != nil {
		return "", err
	}
	return strings.TrimSpace(string(css.Code)), nil
}

func messages(file string, ms []api.Message) error {
	var errs []error
	for _, m := range ms {
		loc := ""
		if m.Location != nil {
			loc = fmt.Sprintf(":%d:%d", m.Location.Line, m.Location.Column)
		}
		errs = append(errs, fmt.Errorf("build: %s%s: %s", file, loc, m.Text))
	}
	return errors.Join(errs...)
}
