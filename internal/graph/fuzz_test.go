package graph

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeResponses feeds arbitrary bytes to every response decoder:
// none may panic, and whatever they accept must keep their promises
// (ids are exact digits, error messages are bounded and secret-free).
func FuzzDecodeResponses(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(mediaPageJSON(3))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := decodeShortLived(bytes.NewReader(b)); err == nil {
			if !isDigits([]byte(s.UserID)) || s.AccessToken == "" {
				t.Errorf("accepted short-lived token with user id %q", s.UserID)
			}
		}
		if tok, err := decodeToken(bytes.NewReader(b), epoch); err == nil {
			if tok.AccessToken == "" || tok.ExpiresIn < 0 || (tok.ExpiresIn > 0 && !tok.ExpiresAt.Equal(epoch.Add(tok.ExpiresIn))) {
				t.Errorf("accepted token %+v", tok)
			}
		}
		if p, err := decodeProfile(bytes.NewReader(b)); err == nil {
			if !isDigits([]byte(p.ID)) || (p.UserID != "" && !isDigits([]byte(p.UserID))) {
				t.Errorf("accepted profile ids %q %q", p.ID, p.UserID)
			}
		}
		if page, err := decodeMediaPage(bytes.NewReader(b)); err == nil {
			for _, m := range page.Items {
				if m.ID == "" {
					t.Errorf("accepted media without id")
				}
				_ = m.CoverURL()
				_ = m.IsReel()
			}
		} else if strings.Contains(err.Error(), testToken) {
			t.Errorf("decode error quotes input: %v", err)
		}
		for _, status := range []int{400, 500} {
			e := decodeError(endpointCode, status, b, testToken)
			if len(e.Message) > maxMessage+len("…") || strings.Contains(e.Error(), testToken) {
				t.Errorf("error message unbounded or leaking: %q", e.Message)
			}
		}
		_ = Redact(string(b))
		_, _ = time.Parse(TimestampLayout, string(b))
	})
}
