package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/store/storetest"
)

// An install moved from SQLite to PostgreSQL serves the same feeds, with
// tokens that still decrypt under the same key, the same posts, images,
// sessions and admin credential.
func TestCopyToPostgres(t *testing.T) {
	url := storetest.PostgresURL(t)
	ctx := context.Background()
	e := openSQLite(t)
	s := e.s

	f := must[model.Feed](t)(s.CreateFeed(ctx, "Shop", []string{"https://shop.example"}))
	connect(t, s, f.ID, "17841", "IGAAcopiedToken0123456789")
	g := must[model.Feed](t)(s.CreateFeed(ctx, "Empty", nil))
	posts := []model.Post{
		post("p1", "img:1"),
		post("p2", "img:2", model.Child{ID: "c1", MediaType: "IMAGE", MediaKey: "img:3"}),
	}
	for _, k := range []string{"img:1", "img:2", "img:3"} {
		if err := s.PutMedia(ctx, media(k, k+".jpg")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ReplacePosts(ctx, f.ID, e.gen(t, f.ID), nil, posts, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAdminTokenHash(ctx, []byte("admin token hash")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, model.Session{IDHash: []byte("session id hash"), CSRF: "csrf", ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateState(ctx, model.OAuthState{Hash: []byte("state hash"), FeedID: g.ID, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	wantFeeds := must[[]model.Feed](t)(s.Feeds(ctx))
	wantPosts := must[[]model.Post](t)(s.Posts(ctx, f.ID))
	wantFiles := must[map[string]struct{}](t)(s.ReferencedFiles(ctx))

	counts, err := CopyToPostgres(ctx, s, url)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]int64{}
	for _, c := range counts {
		rows[c.Table] = c.Rows
	}
	if rows["feeds"] != 2 || rows["posts"] != 2 || rows["media"] != 3 || rows["tokens"] != 1 || rows["admin_sessions"] != 1 {
		t.Errorf("copied rows %v", rows)
	}

	pg, err := OpenPostgres(ctx, url, box(t, key(1)), Options{Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if got := must[[]model.Feed](t)(pg.Feeds(ctx)); !reflect.DeepEqual(got, wantFeeds) {
		t.Errorf("feeds after the copy:\n got %+v\nwant %+v", got, wantFeeds)
	}
	if tok := must[model.Token](t)(pg.Token(ctx, f.ID)); tok.AccessToken != "IGAAcopiedToken0123456789" {
		t.Errorf("token after the copy = %q", tok.AccessToken)
	}
	if got := must[[]model.Post](t)(pg.Posts(ctx, f.ID)); !reflect.DeepEqual(got, wantPosts) {
		t.Errorf("posts after the copy:\n got %+v\nwant %+v", got, wantPosts)
	}
	if got := must[map[string]struct{}](t)(pg.ReferencedFiles(ctx)); !reflect.DeepEqual(got, wantFiles) {
		t.Errorf("media files after the copy: %v, want %v", got, wantFiles)
	}
	if h := must[[]byte](t)(pg.AdminTokenHash(ctx)); string(h) != "admin token hash" {
		t.Errorf("admin token hash %q", h)
	}
	if _, err := pg.Session(ctx, []byte("session id hash"), t0); err != nil {
		t.Errorf("session after the copy: %v", err)
	}
	if st, err := pg.ConsumeState(ctx, []byte("state hash"), t0); err != nil || st.FeedID != g.ID {
		t.Errorf("state after the copy: %+v, %v", st, err)
	}
	// The copied store keeps working: a new feed, a reconnect.
	h := must[model.Feed](t)(pg.CreateFeed(ctx, "new", nil))
	connect(t, pg, h.ID, "2", "IGAAnewToken")

	// A second copy into the now used database is refused and changes nothing.
	if _, err := CopyToPostgres(ctx, s, url); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("copy into a used database: err = %v, want ErrNotEmpty", err)
	}
	if n := len(must[[]model.Feed](t)(pg.Feeds(ctx))); n != 3 {
		t.Errorf("feeds after the refused copy = %d, want 3", n)
	}
	// Another key cannot open the copy.
	if _, err := OpenPostgres(ctx, url, box(t, key(2)), Options{}); !errors.Is(err, ErrWrongKey) {
		t.Errorf("open with another key: err = %v, want ErrWrongKey", err)
	}
}
