package feed

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/feedd/feedd/internal/media"
	"github.com/feedd/feedd/internal/model"
)

// The feed lists an image's AVIF and WebP as "sources" once the background
// encoder stored them, and drops its cached documents then; before, the
// JSON is what version 1 always was.
func TestFeedListsOtherFormatsOnceStored(t *testing.T) {
	e := newEnv(t, envOptions{})
	if err := e.fetchNow(); err != nil {
		t.Fatal(err)
	}
	before := e.fetchJSON(t, e.id, "limit=3")
	if bytes.Contains(before, []byte(`"sources"`)) {
		t.Fatalf("sources listed before any were stored: %s", before)
	}
	w, err := e.media.NewFormatWorker(e.st, media.FormatOptions{
		Formats: []string{model.FormatAVIF, model.FormatWebP},
		Stored: func(ids []string) {
			for _, id := range ids {
				e.svc.Invalidate(id)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	d := e.doc(t, "limit=3")
	if len(d.Posts) != 3 {
		t.Fatalf("%d posts", len(d.Posts))
	}
	for _, p := range d.Posts {
		var types []string
		for _, s := range p.Sources {
			types = append(types, s.Type)
			if len(s.Images) != len(p.Images) {
				t.Errorf("post %s: %s has %d sizes, the JPEGs %d", e.name(p.ID), s.Type, len(s.Images), len(p.Images))
			}
			for i, im := range s.Images {
				ext := "." + strings.TrimPrefix(s.Type, "image/")
				if im.Width != p.Images[i].Width || im.Height != p.Images[i].Height || !strings.HasSuffix(im.URL, ext) ||
					!strings.HasPrefix(im.URL, "https://feeds.example.com/media/") {
					t.Errorf("post %s: %s size %d is %+v beside the JPEG %+v", e.name(p.ID), s.Type, i, im, p.Images[i])
				}
			}
		}
		// AVIF first: a browser takes the first type it supports.
		if !slices.Equal(types, []string{"image/avif", "image/webp"}) {
			t.Errorf("post %s: sources %v", e.name(p.ID), types)
		}
	}
	// The version 1 fields are unchanged: the same images, in the same place.
	after := e.fetchJSON(t, e.id, "limit=3")
	if i := bytes.Index(after, []byte(`,"sources":`)); i < 0 || !bytes.HasPrefix(before, after[:bytes.Index(after, []byte(`"images":`))]) {
		t.Errorf("the document changed before its images:\n%s\n%s", before, after)
	}
}
