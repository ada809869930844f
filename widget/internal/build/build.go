// Package build bundles and minifies the widget sources with esbuild's Go
// API, so producing widget/dist needs no Node. `go generate ./widget` runs it;
// the widget's tests run it again to check the committed files are current.
package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/evanw/esbuild/pkg/api"
)

// Output is the built widget.
type Output struct {
	JS  []byte // widget.js: the script with the minified CSS inlined as a string
	CSS []byte // widget.css: the same minified CSS, for server-rendered fragments
}

// target is the oldest syntax the widget must run on: every browser with
// constructable stylesheets, <dialog> and container queries reads ES2020.
const target = api.ES2020

// Bundle builds srcDir/widget.js (which imports ./widget.css) and
// srcDir/widget.css. The result depends only on the sources.
func Bundle(srcDir string) (Output, error) {
	rawCSS, err := os.ReadFile(filepath.Join(srcDir, "widget.css"))
	if err != nil {
		return Output{}, fmt.Errorf("build: %w", err)
	}
	css := api.Transform(string(rawCSS), api.TransformOptions{
		Loader:            api.LoaderCSS,
		MinifyWhitespace:  true,
		MinifySyntax:      true,
		MinifyIdentifiers: true,
		LegalComments:     api.LegalCommentsNone,
		Charset:           api.CharsetUTF8,
		Engines:           []api.Engine{{Name: api.EngineChrome, Version: "105"}, {Name: api.EngineFirefox, Version: "110"}, {Name: api.EngineSafari, Version: "16.4"}},
	})
	if err := messages("widget.css", css.Errors); err != nil {
		return Output{}, err
	}
	minCSS := strings.TrimSpace(string(css.Code))

	// The stylesheet import resolves to the minified CSS as a text module.
	inline := api.Plugin{Name: "feedd-css", Setup: func(b api.PluginBuild) {
		b.OnResolve(api.OnResolveOptions{Filter: `\.css$`}, func(a api.OnResolveArgs) (api.OnResolveResult, error) {
			return api.OnResolveResult{Path: "widget.css", Namespace: "feedd-css"}, nil
		})
		b.OnLoad(api.OnLoadOptions{Filter: `.*`, Namespace: "feedd-css"}, func(api.OnLoadArgs) (api.OnLoadResult, error) {
			return api.OnLoadResult{Contents: &minCSS, Loader: api.LoaderText}, nil
		})
	}}
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
		LogLevel:          api.LogLevelSilent,
	})
	if err := messages("widget.js", js.Errors); err != nil {
		return Output{}, err
	}
	if len(js.OutputFiles) != 1 {
		return Output{}, fmt.Errorf("build: widget.js: %d output files, want 1", len(js.OutputFiles))
	}
	return Output{JS: js.OutputFiles[0].Contents, CSS: []byte(minCSS + "\n")}, nil
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
