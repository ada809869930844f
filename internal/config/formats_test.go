package config

import (
	"slices"
	"strings"
	"testing"
)

func TestMediaFormats(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  []string
	}{
		{"", []string{"avif", "webp"}},
		{"webp", []string{"webp"}},
		{" WebP , avif,webp", []string{"avif", "webp"}},
		{"none", []string{}},
	} {
		c, _, err := Load(env(map[string]string{"FEEDD_MEDIA_FORMATS": tt.value}))
		if err != nil {
			t.Fatalf("%q: %v", tt.value, err)
		}
		if !slices.Equal(c.MediaFormats, tt.want) || c.MediaFormats == nil {
			t.Errorf("%q: MediaFormats = %q, want %q", tt.value, c.MediaFormats, tt.want)
		}
	}
	for _, bad := range []string{"jpeg", "avif,,webp", "avif webp", "none,webp"} {
		_, _, err := Load(env(map[string]string{"FEEDD_MEDIA_FORMATS": bad}))
		if err == nil || !strings.HasPrefix(err.Error(), "FEEDD_MEDIA_FORMATS: ") {
			t.Errorf("%q: error %v, want one naming FEEDD_MEDIA_FORMATS", bad, err)
		}
	}
}
