package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/media"
	"github.com/feedd/feedd/internal/media/mediatest"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/testutil"
)

const s3AdminToken = "s3-admin-token-0123456789abcdef"

// s3Config is a configuration with the sandbox as Instagram and the media
// in the bucket prefix st.
func s3Config(t *testing.T, sb *sandbox.Sandbox, sbURL, dataDir string, ln net.Listener, st *config.MediaStorage) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Addr = ln.Addr().String()
	cfg.DataDir = dataDir
	cfg.PublicURL, _ = url.Parse("http://" + ln.Addr().String())
	cfg.AdminToken = s3AdminToken
	cfg.SecretKeys = [][]byte{bytes.Repeat([]byte{9}, config.KeySize)}
	cfg.InstagramAppID, cfg.InstagramAppSecret = sb.AppID(), sb.AppSecret()
	cfg.AuthorizeURL, cfg.TokenURL, cfg.GraphURL = sb.AuthorizeURL(), sb.TokenURL(), sb.GraphURL()
	u, _ := url.Parse(sbURL)
	cfg.MediaHosts = []string{u.Host}
	cfg.MediaAllowPrivate = true
	cfg.GraphRate, cfg.GraphBurst = 1000, 1000
	cfg.RateLimit = 10000
	cfg.MediaStorage = st
	return cfg
}

// startS3App runs the program on cfg until stop or the end of the test.
func startS3App(t *testing.T, cfg config.Config, ln net.Listener, now func() time.Time, logs io.Writer) (*Main, func()) {
	t.Helper()
	m, err := New(context.Background(), cfg, Options{
		Stdout: io.Discard, Logger: slog.New(slog.NewTextHandler(logs, nil)), Now: now, Listener: ln,
	})
	if err != nil {
		t.Fatal(err)
	}
	run := running(t, m)
	stop := func() {
		if err := run(); err != nil {
			t.Errorf("run: %v", err)
		}
	}
	t.Cleanup(stop)
	return m, stop
}

func adminDo(t *testing.T, m *Main, method, path string, body any) []byte {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, m.URL()+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s3AdminToken)
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return b
}

// imageURLs lists every image URL of the feed's JSON.
func imageURLs(t *testing.T, m *Main, id string) []string {
	t.Helper()
	resp, err := http.Get(m.URL() + "/api/v1/feeds/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Account struct {
			Avatar *struct{ URL string } `json:"avatar"`
		} `json:"account"`
		Posts []struct {
			Images []struct{ URL string } `json:"images"`
		} `json:"posts"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	if doc.Account.Avatar != nil {
		out = append(out, doc.Account.Avatar.URL)
	}
	for _, p := range doc.Posts {
		for _, im := range p.Images {
			out = append(out, im.URL)
		}
	}
	return out
}

// TestFeedImagesServedFromS3 polls a feed through the sandbox with the
// media in a bucket, serves its images from there through /media/, then
// restarts the program two hours later with FEEDD_MEDIA_PUBLIC_URL: the
// start-up sweep removes only the bucket's orphans and /media/ redirects.
func TestFeedImagesServedFromS3(t *testing.T) {
	st := mediatest.Storage(t)
	sb := sandbox.New(sandbox.Options{Seed: 5})
	sbSrv := httptest.NewServer(sb)
	t.Cleanup(sbSrv.Close)
	if err := sb.SetBaseURL(sbSrv.URL); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	cfg := s3Config(t, sb, sbSrv.URL, dataDir, ln, st)
	sb.AddRedirectURI(cfg.RedirectURI())
	clock := testutil.NewClock(time.Now().UTC().Truncate(time.Second))
	logs := &testutil.SyncBuffer{}
	m, stop := startS3App(t, cfg, ln, clock.Now, logs)

	var created struct{ ID string }
	json.Unmarshal(adminDo(t, m, "POST", "/api/admin/feeds", map[string]any{"name": "bakery"}), &created)
	tok := sb.MintLongLivedToken(sandbox.AccountCreator, time.Now().Add(-48*time.Hour))
	adminDo(t, m, "POST", "/api/admin/feeds/"+created.ID+"/token", map[string]any{"access_token": tok})
	adminDo(t, m, "POST", "/api/admin/feeds/"+created.ID+"/refresh", nil)

	urls := imageURLs(t, m, created.ID)
	if len(urls) < 3 {
		t.Fatalf("feed lists %d images", len(urls))
	}
	bucket, err := media.OpenS3(context.Background(), mediatest.Options(st))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bucket.Close() })
	for _, u := range urls {
		name, ok := strings.CutPrefix(u, m.URL()+"/media/")
		if !ok {
			t.Fatalf("image URL %s is not feedd's /media/", u)
		}
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" {
			t.Fatalf("GET %s = %d %s", u, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		obj, err := bucket.Open(context.Background(), name)
		if err != nil {
			t.Fatalf("%s is not in the bucket: %v", name, err)
		}
		want, _ := io.ReadAll(obj)
		obj.Close()
		if !bytes.Equal(got, want) {
			t.Errorf("GET %s: %d bytes differ from the bucket's %d", u, len(got), len(want))
		}
	}
	// Nothing but temp space on the local disk.
	filepath.WalkDir(filepath.Join(dataDir, MediaDir), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("image stored on the local disk: %s", p)
		}
		return nil
	})

	// An orphan (a poll of another instance that stopped before it could
	// record it) and an object that is not feedd's.
	orphan := "0f/0f" + strings.Repeat("e", 30) + "-320.jpg"
	for _, n := range []string{orphan, "backup/notes.txt"} {
		if _, err := bucket.Put(context.Background(), n, strings.NewReader("x"), 1, "text/plain"); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2 && !t.Failed(); i++ {
		// Half an hour later the orphan is within the grace period and
		// stays; two hours later it goes, and only it.
		clock.Advance([]time.Duration{30 * time.Minute, 2 * time.Hour}[i])
		stop()
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg = s3Config(t, sb, sbSrv.URL, dataDir, ln, st)
		cfg.MediaPublicURL = "https://cdn.example.com/feeds"
		m, stop = startS3App(t, cfg, ln, clock.Now, logs)
		_, err := bucket.Open(context.Background(), orphan)
		if gone := err != nil; gone != (i == 1) {
			t.Errorf("start %d: orphan gone = %v (%v)", i+2, gone, err)
		}
	}
	if _, err := bucket.Open(context.Background(), "backup/notes.txt"); err != nil {
		t.Errorf("the sweep removed an object that is not feedd's: %v", err)
	}

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, u := range imageURLs(t, m, created.ID) {
		name, ok := strings.CutPrefix(u, m.URL()+"/media/")
		if !ok {
			t.Fatalf("with a public URL the JSON points to %s, not feedd's /media/", u)
		}
		resp, err := noFollow.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://cdn.example.com/feeds/"+name {
			t.Errorf("GET %s = %d to %q", u, resp.StatusCode, resp.Header.Get("Location"))
		}
		if _, err := bucket.Open(context.Background(), name); err != nil {
			t.Errorf("the sweep removed %s, which the feed shows: %v", name, err)
		}
	}
	if strings.Contains(logs.String(), st.SecretAccessKey) {
		t.Error("the log shows the secret access key")
	}
}

func TestBadS3CredentialsStopTheStart(t *testing.T) {
	st := mediatest.Storage(t)
	if st.AccessKeyID == "" {
		t.Skip("the test server takes anonymous requests")
	}
	bad := *st
	bad.SecretAccessKey = "not-the-Secret-0123456789"
	cfg := testConfig(t, t.TempDir())
	cfg.MediaStorage = &bad
	logs := &testutil.SyncBuffer{}
	m, err := New(context.Background(), cfg, Options{Stdout: io.Discard, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err == nil {
		m.Close()
		t.Fatal("started with a wrong secret")
	}
	msg := err.Error()
	if !strings.Contains(msg, "FEEDD_MEDIA_URL") || !strings.Contains(msg, "AWS_SECRET_ACCESS_KEY") || !strings.Contains(msg, st.Bucket) {
		t.Errorf("error %q should name FEEDD_MEDIA_URL, the bucket and AWS_SECRET_ACCESS_KEY", msg)
	}
	for _, secret := range []string{bad.SecretAccessKey, st.SecretAccessKey} {
		if strings.Contains(msg, secret) || strings.Contains(logs.String(), secret) {
			t.Errorf("a secret is shown: %q / %s", msg, logs)
		}
	}
}

func TestSweepGraceWhenStorageIsShared(t *testing.T) {
	for name, c := range map[string]struct {
		cfg  func(*config.Config)
		want time.Duration
	}{
		"sqlite and the data dir": {func(*config.Config) {}, 0},
		"a bucket":                {func(c *config.Config) { c.MediaStorage = &config.MediaStorage{Bucket: "b"} }, media.DefaultSweepGrace},
		"postgresql":              {func(c *config.Config) { c.DatabaseURL = "postgres://db/feedd" }, media.DefaultSweepGrace},
	} {
		cfg := config.Default()
		c.cfg(&cfg)
		if got := (&Main{Config: cfg}).sweepGrace(); got != c.want {
			t.Errorf("%s: grace %s, want %s", name, got, c.want)
		}
	}
}

// TestSharedMediaIsSweptWhileRunning: with a bucket, orphans older than the
// grace period go while the program runs, not only at its next start, and
// the sweeping loop ends with the program.
func TestSharedMediaIsSweptWhileRunning(t *testing.T) {
	st := mediatest.Storage(t)
	bucket, err := media.OpenS3(context.Background(), mediatest.Options(st))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bucket.Close() })
	cfg := testConfig(t, t.TempDir())
	cfg.MediaStorage = st
	clock := testutil.NewClock(time.Now().UTC())
	m, err := New(context.Background(), cfg, Options{Stdout: io.Discard, Now: clock.Now, MediaSweepEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, m)
	orphan := "0f/0f" + strings.Repeat("d", 30) + "-640.jpg"
	for _, n := range []string{orphan, "backup/notes.txt"} {
		if _, err := bucket.Put(context.Background(), n, strings.NewReader("x"), 1, "text/plain"); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(media.DefaultSweepGrace + time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := bucket.Open(context.Background(), orphan); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the orphan is still there 10 s after it passed the grace period")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := bucket.Open(context.Background(), "backup/notes.txt"); err != nil {
		t.Errorf("the sweep removed an object that is not feedd's: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- stop() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the program did not stop within 10 s")
	}
}
