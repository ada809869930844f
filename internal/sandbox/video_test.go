package sandbox

import (
	"bytes"
	"strings"
	"testing"
)

func TestCDNServesEachVideoAsADistinctPlayableMP4(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.longToken(AccountBusiness)
	items, _ := e.allMedia(tok, "100")
	seen := map[string]bool{}
	var first string
	for _, it := range items {
		if it.MediaURL == nil || !strings.Contains(*it.MediaURL, ".mp4") {
			continue
		}
		r := e.get(*it.MediaURL)
		if r.status != 200 || r.header.Get("Content-Type") != "video/mp4" {
			t.Fatalf("video: %d %v", r.status, r.header)
		}
		if !bytes.HasPrefix(r.body, sampleMP4) || string(r.body[4:8]) != "ftyp" {
			t.Fatal("a video is not the sample clip")
		}
		if seen[string(r.body)] {
			t.Fatal("two videos got identical files")
		}
		seen[string(r.body)] = true
		if first == "" {
			first = *it.MediaURL
		}
	}
	if len(seen) < 3 {
		t.Fatalf("%d videos served, want the seeded ones", len(seen))
	}

	e.sb.SetVideoFile([]byte("<html>not a video</html>"), "text/html")
	if r := e.get(first); r.header.Get("Content-Type") != "text/html" || string(r.body) != "<html>not a video</html>" {
		t.Fatalf("SetVideoFile: %q %q", r.header.Get("Content-Type"), r.body)
	}
	e.sb.SetVideoFile(nil, "")
	if r := e.get(first); !bytes.HasPrefix(r.body, sampleMP4) {
		t.Fatal("SetVideoFile(nil) did not restore the clip")
	}
}
