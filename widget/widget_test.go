package widget

import (
	"bytes"
	"compress/gzip"
	"testing"

	"github.com/feedd/feedd/widget/internal/build"
)

// budget is the gzipped size limit of widget.js, CSS and lightbox included.
const budget = 5120

func TestDistIsCurrent(t *testing.T) {
	out, err := build.Bundle("src")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.JS, JS) {
		t.Error("dist/widget.js is not built from src: run `go generate ./widget` and commit dist/")
	}
	if !bytes.Equal(out.CSS, CSS) {
		t.Error("dist/widget.css is not built from src: run `go generate ./widget` and commit dist/")
	}
}

func TestGzipSizeWithinBudget(t *testing.T) {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	zw.Write(JS)
	zw.Close()
	t.Logf("widget.js: %d bytes, %d gzipped (budget %d)", len(JS), b.Len(), budget)
	if b.Len() > budget {
		t.Errorf("widget.js is %d bytes gzipped, over the %d byte budget", b.Len(), budget)
	}
}

func TestScriptHasNoEvalOrInlineHandlers(t *testing.T) {
	for _, bad := range []string{"eval(", "new Function", "innerHTML", "outerHTML", "document.write", "setAttribute(\"on", "insertAdjacentHTML"} {
		if bytes.Contains(JS, []byte(bad)) {
			t.Errorf("widget.js contains %q", bad)
		}
	}
}
