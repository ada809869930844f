package config

import (
	"strings"
	"testing"
)

// TestErrorsNeverShowURLPasswords: a URL value refused for any reason is
// shown without its credentials, whichever check refused it.
func TestErrorsNeverShowURLPasswords(t *testing.T) {
	for _, tt := range []struct{ name, value string }{
		{"FEEDD_PUBLIC_URL", "ftp://user:hunter2@example.com/"},
		{"FEEDD_PUBLIC_URL", "https://user:hunter2@example.com/%zz"},
		{"FEEDD_PUBLIC_URL", "https://user:hunter2@/"},
		{"FEEDD_INSTAGRAM_GRAPH_URL", "https://user:hunter2@graph.example.com/%zz"},
		{"FEEDD_INSTAGRAM_TOKEN_URL", "ftp://user:hunter2@api.example.com/"},
		{"FEEDD_INSTAGRAM_AUTHORIZE_URL", "https://user:hunter2@www.example.com/?x=1"},
	} {
		_, _, err := Load(func(name string) (string, bool) {
			if name == tt.name {
				return tt.value, true
			}
			return "", false
		})
		if err == nil || !strings.HasPrefix(err.Error(), tt.name+":") {
			t.Errorf("%s=%s: err = %v, want one naming %s", tt.name, tt.value, err, tt.name)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s=%s: error shows the password: %v", tt.name, tt.value, err)
		}
	}
}
