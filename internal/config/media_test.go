package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// s3Env is a valid S3 configuration with the given overrides; an empty
// override value removes the variable.
func s3Env(over map[string]string) func(string) (string, bool) {
	m := map[string]string{
		"FEEDD_MEDIA_URL":       "s3://feedd-media/site/a?endpoint=http://127.0.0.1:8333&region=eu-central-1",
		"AWS_ACCESS_KEY_ID":     "AKIDEXAMPLE",
		"AWS_SECRET_ACCESS_KEY": "s3cr3t-Value/xyz",
	}
	for k, v := range over {
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return env(m)
}

func TestMediaURLParsesEveryPart(t *testing.T) {
	c, _, err := Load(s3Env(map[string]string{"AWS_SESSION_TOKEN": "tok"}))
	if err != nil {
		t.Fatal(err)
	}
	want := MediaStorage{Bucket: "feedd-media", Prefix: "site/a", Endpoint: "127.0.0.1:8333", Insecure: true,
		Region: "eu-central-1", AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "s3cr3t-Value/xyz", SessionToken: "tok"}
	if c.MediaStorage == nil || *c.MediaStorage != want {
		t.Fatalf("MediaStorage = %+v, want %+v", c.MediaStorage, want)
	}

	for raw, want := range map[string]MediaStorage{
		"s3://bucket":  {Bucket: "bucket", Endpoint: DefaultS3Endpoint},
		"s3://bucket/": {Bucket: "bucket", Endpoint: DefaultS3Endpoint},
		"s3://my.bucket/p/?endpoint=minio.lan:9000":  {Bucket: "my.bucket", Prefix: "p", Endpoint: "minio.lan:9000"},
		"s3://b12/x?endpoint=https://s3.example.com": {Bucket: "b12", Prefix: "x", Endpoint: "s3.example.com"},
	} {
		c, _, err := Load(s3Env(map[string]string{"FEEDD_MEDIA_URL": raw}))
		if err != nil {
			t.Errorf("%s: %v", raw, err)
			continue
		}
		got := *c.MediaStorage
		got.AccessKeyID, got.SecretAccessKey = "", ""
		if got != want {
			t.Errorf("%s: %+v, want %+v", raw, got, want)
		}
	}
}

func TestMediaURLErrorsNameThePartThatIsWrong(t *testing.T) {
	for raw, want := range map[string]string{
		"http://bucket/prefix":                          "must start with s3://",
		"s3://Bucket/prefix":                            `bucket "Bucket"`,
		"s3://ab":                                       `bucket "ab"`,
		"s3://-bucket":                                  `bucket "-bucket"`,
		"s3://bucket/a//b":                              `prefix "a//b"`,
		"s3://bucket/a/../b":                            `prefix "a/../b"`,
		"s3://bucket/a b":                               `prefix "a b"`,
		"s3://bucket?endpoint=ftp://host":               `endpoint "ftp://host"`,
		"s3://bucket?endpoint=http://host/path":         `endpoint "http://host/path"`,
		"s3://bucket?endpoint=host:99999":               `endpoint "host:99999"`,
		"s3://bucket?endpoint=":                         `endpoint ""`,
		"s3://bucket?region=EU_1":                       `region "EU_1"`,
		"s3://bucket?insecure=1":                        `unknown parameter "insecure"`,
		"s3://bucket?region=a&region=b":                 `parameter "region" more than once`,
		"s3://bucket#frag":                              "fragment",
		"s3://AKID:s3cr3t-Value@bucket/prefix":          "must not contain credentials",
		"s3://bucket?endpoint=host&secret=s3cr3t-Value": `unknown parameter "secret"`,
	} {
		_, _, err := Load(s3Env(map[string]string{"FEEDD_MEDIA_URL": raw}))
		if err == nil {
			t.Errorf("%s: accepted", raw)
			continue
		}
		if !strings.HasPrefix(err.Error(), "FEEDD_MEDIA_URL: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %q, want FEEDD_MEDIA_URL and %q", raw, err, want)
		}
		if strings.Contains(err.Error(), "s3cr3t-Value") {
			t.Errorf("%s: error %q shows the secret", raw, err)
		}
	}
}

func TestMediaURLNeedsBothHalvesOfTheKeyPair(t *testing.T) {
	for name, over := range map[string]map[string]string{
		"no key id":           {"AWS_ACCESS_KEY_ID": ""},
		"no secret":           {"AWS_SECRET_ACCESS_KEY": ""},
		"a token and no keys": {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "s3cr3t-tok"},
	} {
		_, _, err := Load(s3Env(over))
		if err == nil || !strings.Contains(err.Error(), "FEEDD_MEDIA_URL: needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	// Neither: anonymous requests.
	c, _, err := Load(s3Env(map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}))
	if err != nil || c.MediaStorage.AccessKeyID != "" {
		t.Errorf("anonymous: %+v, %v", c.MediaStorage, err)
	}
	// Without FEEDD_MEDIA_URL the AWS variables are not read at all, not
	// even a _FILE that cannot be read.
	c, _, err = Load(env(map[string]string{"AWS_SECRET_ACCESS_KEY_FILE": "/nonexistent"}))
	if err != nil || c.MediaStorage != nil {
		t.Errorf("local media: %+v, %v", c.MediaStorage, err)
	}
}

func TestMediaCredentialsFromFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, _, err := Load(s3Env(map[string]string{
		"AWS_ACCESS_KEY_ID":          "",
		"AWS_SECRET_ACCESS_KEY":      "",
		"AWS_ACCESS_KEY_ID_FILE":     write("id", "AKIDFILE"),
		"AWS_SECRET_ACCESS_KEY_FILE": write("secret", "file-s3cr3t"),
		"AWS_SESSION_TOKEN_FILE":     write("token", "file-token"),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if m := c.MediaStorage; m.AccessKeyID != "AKIDFILE" || m.SecretAccessKey != "file-s3cr3t" || m.SessionToken != "file-token" {
		t.Errorf("credentials from files = %q %q %q", m.AccessKeyID, m.SecretAccessKey, m.SessionToken)
	}
	_, _, err = Load(s3Env(map[string]string{"AWS_SECRET_ACCESS_KEY_FILE": write("s2", "other")}))
	if err == nil || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY: both") || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("both set: err = %v", err)
	}
}

func TestMediaPublicURL(t *testing.T) {
	c, _, err := Load(s3Env(map[string]string{"FEEDD_MEDIA_PUBLIC_URL": "https://cdn.example.com/media/"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.MediaPublicURL != "https://cdn.example.com/media" {
		t.Errorf("MediaPublicURL = %q", c.MediaPublicURL)
	}
	for over, want := range map[string]string{
		"ftp://cdn.example.com":        "is not an http(s) URL",
		"https://cdn.example.com/?a=1": "must not contain credentials, a query or a fragment",
	} {
		if _, _, err := Load(s3Env(map[string]string{"FEEDD_MEDIA_PUBLIC_URL": over})); err == nil || !strings.Contains(err.Error(), "FEEDD_MEDIA_PUBLIC_URL: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", over, err, want)
		}
	}
}

func TestMediaStorageNeverLogsCredentials(t *testing.T) {
	c, _, err := Load(s3Env(map[string]string{"AWS_SESSION_TOKEN": "tok-s3cr3t"}))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("config", slog.Any("config", c))
	out := b.String() + fmt.Sprint(c.MediaStorage)
	for _, s := range []string{"s3cr3t", "AKIDEXAMPLE"} {
		if strings.Contains(out, s) {
			t.Errorf("log shows %q: %s", s, out)
		}
	}
	if !strings.Contains(b.String(), `media_url="s3://feedd-media/site/a?endpoint=http://127.0.0.1:8333&region=eu-central-1"`) {
		t.Errorf("log lacks the media URL: %s", b.String())
	}
}

// FuzzMediaURL: whatever FEEDD_MEDIA_URL holds, Load never panics, an
// error names FEEDD_MEDIA_URL and never shows the URL's password or the
// secret key, and an accepted URL gives a valid bucket, a clean prefix and
// a bare host:port endpoint.
func FuzzMediaURL(f *testing.F) {
	for _, s := range []string{
		"s3://feedd-media/site/a?endpoint=http://127.0.0.1:8333&region=eu-central-1",
		"s3://bucket",
		"s3://user:hunter2@bucket/p",
		"s3://b.b-b/%2e%2e/x?endpoint=[::1]:9000",
		"s3://bucket?endpoint=https://s3.example.com:443&region=us-east-1&region=x",
		"s3://bucket/a//b?endpoint=http://u:hunter2@host",
		"S3://BUCKET/\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		const secret = "Fuzz-Secret-Key-4242"
		c, _, err := Load(env(map[string]string{
			"FEEDD_MEDIA_URL": raw, "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": secret,
		}))
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "FEEDD_MEDIA_URL: ") || strings.Contains(msg, "\n") {
				t.Fatalf("error %q does not name FEEDD_MEDIA_URL on one line", msg)
			}
			if strings.Contains(msg, secret) {
				t.Fatalf("error %q shows the secret key", msg)
			}
			if u, err := url.Parse(raw); err == nil && u.User != nil {
				// Shown only if the same value with another password says
				// it fewer times (the password may also be the host).
				if pw, _ := u.User.Password(); len(pw) >= 4 && strings.Contains(msg, pw) {
					u.User = url.UserPassword(u.User.Username(), unlike(pw))
					_, _, err := Load(env(map[string]string{
						"FEEDD_MEDIA_URL": u.String(), "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": secret,
					}))
					if err == nil || strings.Count(err.Error(), pw) < strings.Count(msg, pw) {
						t.Fatalf("error %q shows the URL's password", msg)
					}
				}
			}
			return
		}
		m := c.MediaStorage
		if strings.TrimSpace(raw) == "" {
			if m != nil {
				t.Fatalf("empty value gave %+v", m)
			}
			return
		}
		if m == nil || !validBucket(m.Bucket) || strings.HasPrefix(m.Prefix, "/") || strings.HasSuffix(m.Prefix, "/") ||
			strings.Contains(m.Prefix, "//") || dotSegment(m.Prefix) || strings.ContainsAny(m.Endpoint, "/?#@ ") || m.Endpoint == "" {
			t.Fatalf("%q accepted as %+v", raw, m)
		}
		if strings.Contains(m.String(), secret) {
			t.Fatalf("String shows the secret: %s", m)
		}
	})
}

// dotSegment reports whether prefix has a "." or ".." segment ("..0" is a
// name like any other).
func dotSegment(prefix string) bool {
	for _, seg := range strings.Split(prefix, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
