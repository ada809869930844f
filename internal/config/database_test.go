package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDatabaseURL(t *testing.T) {
	const pw = "s3cr3t-pw-9f"
	for _, tc := range []struct {
		name, value, want, err string
	}{
		{"unset keeps SQLite", "", "", ""},
		{"postgres", "postgres://feedd:" + pw + "@db:5432/feedd", "postgres://feedd:" + pw + "@db:5432/feedd", ""},
		{"postgresql", "postgresql://db/feedd?sslmode=require", "postgresql://db/feedd?sslmode=require", ""},
		{"another engine", "mysql://feedd:" + pw + "@db/feedd", "", "FEEDD_DATABASE_URL: is not a PostgreSQL URL"},
		{"a path", "/var/lib/feedd/feedd.db", "", "FEEDD_DATABASE_URL: is not a PostgreSQL URL"},
		{"no host", "postgres:///feedd?password=" + pw, "", "FEEDD_DATABASE_URL: is not a PostgreSQL URL"},
		{"key-value form", "host=db password=" + pw, "", "FEEDD_DATABASE_URL: is not a PostgreSQL URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := Load(env(map[string]string{"FEEDD_DATABASE_URL": tc.value}))
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), pw) {
					t.Errorf("error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.DatabaseURL != tc.want {
				t.Errorf("DatabaseURL = %q, want %q", c.DatabaseURL, tc.want)
			}
		})
	}
}

func TestDatabaseURLFromFileNeverLogged(t *testing.T) {
	const v = "postgres://feedd:pw-from-file-77@db:5432/feedd"
	p := filepath.Join(t.TempDir(), "db_url")
	if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, err := Load(env(map[string]string{"FEEDD_DATABASE_URL_FILE": p}))
	if err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL != v {
		t.Fatalf("DatabaseURL = %q", c.DatabaseURL)
	}
	logged := c.LogValue().String()
	if strings.Contains(logged, "pw-from-file-77") || !strings.Contains(logged, "db:5432/feedd") {
		t.Errorf("start-up log shows %q", logged)
	}
	if _, _, err := Load(env(map[string]string{"FEEDD_DATABASE_URL": v, "FEEDD_DATABASE_URL_FILE": p})); err == nil {
		t.Error("both FEEDD_DATABASE_URL and its _FILE accepted")
	}
}
