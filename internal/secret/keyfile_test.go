package secret

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	k1, created, err := LoadOrCreateKey(dir, logger)
	if err != nil || !created || len(k1) != KeySize {
		t.Fatalf("first call: %d bytes, created=%v, %v", len(k1), created, err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %04o, want 0600", perm)
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("no warning logged: %s", logs.String())
	}
	if strings.Contains(logs.String(), base64.StdEncoding.EncodeToString(k1)) {
		t.Error("the key was logged")
	}
	logs.Reset()

	k2, created, err := LoadOrCreateKey(dir, logger)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Fatalf("second call: created=%v, same=%v, %v", created, bytes.Equal(k1, k2), err)
	}
	if logs.Len() != 0 {
		t.Errorf("second call logged: %s", logs.String())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only the key file", len(entries))
	}
}

func TestLoadOrCreateKeyRefuses(t *testing.T) {
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string
	}{
		{"readable by others", base64.StdEncoding.EncodeToString(testKey(1)), 0o644, "chmod 600"},
		{"wrong length", base64.StdEncoding.EncodeToString(make([]byte, 16)), 0o600, "does not hold a base64 32-byte key"},
		{"not base64", "!!!", 0o600, "does not hold a base64 32-byte key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, KeyFileName)
			if err := os.WriteFile(p, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, _, err := LoadOrCreateKey(dir, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			b, _ := os.ReadFile(p)
			if string(b) != tt.content {
				t.Error("a refused key file was overwritten")
			}
		})
	}
}
