package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/secret"
	"github.com/feedd/feedd/internal/store/storetest"
	"github.com/feedd/feedd/internal/testutil"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type clock = testutil.Clock

func key(b byte) []byte { return bytes.Repeat([]byte{b}, secret.KeySize) }

func box(t testing.TB, keys ...[]byte) *secret.Box {
	t.Helper()
	b, err := secret.New(keys[0], keys[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type env struct {
	s      *Store
	engine string
	path   string // SQLite: the database file
	url    string // PostgreSQL: the database URL
	clk    *clock
}

// reopen opens another Store on the same database.
func (e *env) reopen(t testing.TB, b *secret.Box, opts Options) (*Store, error) {
	t.Helper()
	var s *Store
	var err error
	if e.engine == "postgres" {
		s, err = OpenPostgres(context.Background(), e.url, b, opts)
	} else {
		s, err = Open(context.Background(), e.path, b, opts)
	}
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

// opener opens a Store on a fresh database of one engine.
type opener func(t testing.TB) *env

func openSQLite(t testing.TB) *env {
	t.Helper()
	e := &env{engine: "sqlite", path: filepath.Join(t.TempDir(), "data", "feedd.db"), clk: &clock{T: t0}} // Open creates the dir
	var err error
	if e.s, err = e.reopen(t, box(t, key(1)), Options{Now: e.clk.Now}); err != nil {
		t.Fatal(err)
	}
	return e
}

func openPostgres(t testing.TB) *env {
	t.Helper()
	e := &env{engine: "postgres", url: storetest.PostgresURL(t), clk: &clock{T: t0}}
	var err error
	if e.s, err = e.reopen(t, box(t, key(1)), Options{Now: e.clk.Now}); err != nil {
		t.Fatal(err)
	}
	return e
}

// open is the SQLite opener, for tests of what only SQLite has.
var open opener = openSQLite

// engines runs fn on SQLite and on PostgreSQL (see storetest.PostgresURL
// for when the PostgreSQL run is skipped).
func engines(t *testing.T, fn func(t *testing.T, open opener)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, openSQLite) })
	t.Run("postgres", func(t *testing.T) { fn(t, openPostgres) })
}

// gen is the feed's current connection generation.
func (e *env) gen(t testing.TB, id string) int64 {
	t.Helper()
	f, err := e.s.Feed(context.Background(), id)
	if err != nil {
		return 0
	}
	return f.Generation
}

// setStatus changes a feed's status on its current connection.
func (e *env) setStatus(t testing.TB, id string, to model.Status, reason string) error {
	_, _, err := e.s.ChangeStatus(context.Background(), model.StatusChange{FeedID: id, Generation: e.gen(t, id), To: to, Reason: reason})
	return err
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ptr[T any](v T) *T { return &v }

func connect(t testing.TB, s *Store, feedID, igID, token string) {
	t.Helper()
	f, err := s.Feed(context.Background(), feedID)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Connect(context.Background(), feedID, f.Generation,
		model.Account{AppUserID: "app-" + igID, IGUserID: igID, Username: "user_" + igID, AccountType: "BUSINESS"},
		model.Token{AccessToken: token, TokenInfo: model.TokenInfo{ObtainedAt: t0, ExpiresAt: t0.Add(60 * 24 * time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestMigrations(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		versions := func(db *sql.DB) []int {
			rows, err := db.Query(`SELECT version FROM schema_migrations ORDER BY version`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var out []int
			for rows.Next() {
				var v int
				rows.Scan(&v)
				out = append(out, v)
			}
			return out
		}
		if got := versions(e.s.r); len(got) != SchemaVersion() || got[len(got)-1] != SchemaVersion() {
			t.Fatalf("recorded versions %v, want 1..%d", got, SchemaVersion())
		}
		f := must[model.Feed](t)(e.s.CreateFeed(ctx, "kept", nil))
		e.s.Close()

		// Re-open: no migration runs again, data survives.
		s2, err := e.reopen(t, box(t, key(1)), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := versions(s2.r); len(got) != SchemaVersion() {
			t.Errorf("after re-open: versions %v", got)
		}
		if _, err := s2.Feed(ctx, f.ID); err != nil {
			t.Errorf("feed lost on re-open: %v", err)
		}
		if e.engine == "sqlite" {
			var mode string
			s2.w.QueryRow(`PRAGMA journal_mode`).Scan(&mode)
			var fk int
			s2.r.QueryRow(`PRAGMA foreign_keys`).Scan(&fk)
			if mode != "wal" || fk != 1 {
				t.Errorf("journal_mode=%s foreign_keys=%d", mode, fk)
			}
		}
		// A database from a newer feedd is refused.
		if _, err := s2.w.Exec(`INSERT INTO schema_migrations VALUES (9999, 'future', 0)`); err != nil {
			t.Fatal(err)
		}
		s2.Close()
		if _, err := e.reopen(t, box(t, key(1)), Options{}); !errors.Is(err, ErrSchemaTooNew) {
			t.Errorf("newer schema: err = %v", err)
		}
	})
}

func TestWrongKeyAndRotation(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		f := must[model.Feed](t)(e.s.CreateFeed(ctx, "f", nil))
		connect(t, e.s, f.ID, "17841", "IGAAoldkeytoken")
		e.s.Close()

		_, err := e.reopen(t, box(t, key(2)), Options{})
		if !errors.Is(err, ErrWrongKey) {
			t.Fatalf("wrong key: err = %v", err)
		}
		if !strings.Contains(err.Error(), "FEEDD_SECRET_KEY does not match") {
			t.Errorf("message %q", err)
		}

		// Rotation: new key current, old one previous; tokens get re-sealed.
		s, err := e.reopen(t, box(t, key(2), key(1)), Options{})
		if err != nil {
			t.Fatal(err)
		}
		tok := must[model.Token](t)(s.Token(ctx, f.ID))
		if tok.AccessToken != "IGAAoldkeytoken" {
			t.Errorf("token after rotation = %q", tok.AccessToken)
		}
		s.Close()
		// The old key is no longer needed.
		s, err = e.reopen(t, box(t, key(2)), Options{})
		if err != nil {
			t.Fatalf("open with the new key only: %v", err)
		}
		defer s.Close()
		if tok := must[model.Token](t)(s.Token(ctx, f.ID)); tok.AccessToken != "IGAAoldkeytoken" {
			t.Errorf("token with new key only = %q", tok.AccessToken)
		}
	})
}

func TestFeedCRUD(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		f := must[model.Feed](t)(e.s.CreateFeed(ctx, "Shop", []string{"https://shop.example"}))
		if !model.ValidFeedID(f.ID) || f.Status != model.StatusNotConnected || f.Account != nil || f.Token != nil ||
			!f.CreatedAt.Equal(t0) || !reflect.DeepEqual(f.AllowedOrigins, []string{"https://shop.example"}) {
			t.Fatalf("created %+v", f)
		}
		g := must[model.Feed](t)(e.s.CreateFeed(ctx, "Blog", nil))
		if g.ID == f.ID || g.AllowedOrigins == nil {
			t.Errorf("second feed %+v", g)
		}
		e.clk.Add(time.Minute)
		u := must[model.Feed](t)(e.s.UpdateFeed(ctx, f.ID, ptr("Shop 2"), nil))
		if u.Name != "Shop 2" || len(u.AllowedOrigins) != 1 || !u.UpdatedAt.Equal(t0.Add(time.Minute)) {
			t.Errorf("after name update %+v", u)
		}
		u = must[model.Feed](t)(e.s.UpdateFeed(ctx, f.ID, nil, &[]string{}))
		if u.Name != "Shop 2" || len(u.AllowedOrigins) != 0 {
			t.Errorf("after origins update %+v", u)
		}
		all := must[[]model.Feed](t)(e.s.Feeds(ctx))
		if len(all) != 2 {
			t.Errorf("Feeds = %d", len(all))
		}
		for _, id := range []string{"nosuchfeed", "'; DROP TABLE feeds; --", ""} {
			if _, err := e.s.Feed(ctx, id); !errors.Is(err, model.ErrNotFound) {
				t.Errorf("Feed(%q) err = %v", id, err)
			}
			if _, err := e.s.UpdateFeed(ctx, id, ptr("x"), nil); !errors.Is(err, model.ErrNotFound) {
				t.Errorf("UpdateFeed(%q) err = %v", id, err)
			}
		}
		if err := e.setStatus(t, f.ID, "bogus", ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("bad status: %v", err)
		}
		if err := e.setStatus(t, f.ID, model.StatusError, "Instagram is down"); err != nil {
			t.Fatal(err)
		}
		if got := must[model.Feed](t)(e.s.Feed(ctx, f.ID)); got.Status != model.StatusError || got.StatusReason != "Instagram is down" {
			t.Errorf("status %q %q", got.Status, got.StatusReason)
		}
		if _, err := e.s.DeleteFeed(ctx, f.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.Feed(ctx, f.ID); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("deleted feed: %v", err)
		}
		if _, err := e.s.DeleteFeed(ctx, f.ID); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("delete twice: %v", err)
		}
	})
}

func TestConnectTokenAndDue(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		f := must[model.Feed](t)(e.s.CreateFeed(ctx, "f", nil))
		if _, err := e.s.Token(ctx, f.ID); !errors.Is(err, model.ErrNotConnected) {
			t.Errorf("token before connect: %v", err)
		}
		if _, err := e.s.Token(ctx, "zzzzzzzzzz"); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("token of unknown feed: %v", err)
		}
		connect(t, e.s, f.ID, "17841", "IGAAfirst")
		got := must[model.Feed](t)(e.s.Feed(ctx, f.ID))
		if got.Status != model.StatusActive || got.Account == nil || got.Account.IGUserID != "17841" || got.Token == nil ||
			!got.Token.ExpiresAt.Equal(t0.Add(60*24*time.Hour)) {
			t.Fatalf("after connect %+v acct %+v tok %+v", got, got.Account, got.Token)
		}
		tok := must[model.Token](t)(e.s.Token(ctx, f.ID))
		if tok.AccessToken != "IGAAfirst" {
			t.Errorf("Token = %q", tok.AccessToken)
		}

		// Failed connect (unknown feed, empty token) writes nothing.
		if _, _, err := e.s.Connect(ctx, "zzzzzzzzzz", 0, model.Account{IGUserID: "1"}, model.Token{AccessToken: "x"}); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("connect unknown feed: %v", err)
		}
		if _, _, err := e.s.Connect(ctx, f.ID, e.gen(t, f.ID), model.Account{IGUserID: "2"}, model.Token{TokenInfo: model.TokenInfo{}}); !errors.Is(err, ErrInvalid) {
			t.Errorf("connect without token: %v", err)
		}
		if tok := must[model.Token](t)(e.s.Token(ctx, f.ID)); tok.AccessToken != "IGAAfirst" {
			t.Errorf("failed connect changed the token to %q", tok.AccessToken)
		}

		// Compare-and-swap.
		nt := model.Token{AccessToken: "IGAAsecond", TokenInfo: model.TokenInfo{ObtainedAt: t0.Add(48 * time.Hour), ExpiresAt: t0.Add(62 * 24 * time.Hour), RefreshedAt: t0.Add(48 * time.Hour)}}
		if err := e.s.ReplaceToken(ctx, f.ID, "IGAAstale", nt); !errors.Is(err, model.ErrTokenChanged) {
			t.Errorf("CAS with stale token: %v", err)
		}
		if err := e.s.RecordRefreshFailure(ctx, f.ID, "Instagram unreachable", t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := e.s.ReplaceToken(ctx, f.ID, "IGAAfirst", nt); err != nil {
			t.Fatal(err)
		}
		tok = must[model.Token](t)(e.s.Token(ctx, f.ID))
		if tok.AccessToken != "IGAAsecond" || tok.RefreshFailures != 0 || tok.LastRefreshError != "" ||
			!tok.NextRefreshAt.IsZero() || !tok.RefreshedAt.Equal(nt.RefreshedAt) {
			t.Errorf("after replace %+v", tok)
		}
		if err := e.s.ReplaceToken(ctx, f.ID, "IGAAfirst", nt); !errors.Is(err, model.ErrTokenChanged) {
			t.Errorf("second CAS with the old token: %v", err)
		}

		// TokensDue: young token not due; old and expiring is; scheduled retry is.
		obtained := t0.Add(48 * time.Hour)
		due := func(now time.Time, window time.Duration) int {
			return len(must[[]model.Token](t)(e.s.TokensDue(ctx, now, window)))
		}
		if n := due(obtained.Add(time.Hour), 100*24*time.Hour); n != 0 {
			t.Errorf("token younger than 24h is due (%d)", n)
		}
		if n := due(obtained.Add(25*time.Hour), 30*24*time.Hour); n != 0 {
			t.Errorf("token far from expiry is due (%d)", n)
		}
		if n := due(obtained.Add(25*time.Hour), 70*24*time.Hour); n != 1 {
			t.Errorf("old, expiring token not due (%d)", n)
		}
		e.s.RecordRefreshFailure(ctx, f.ID, "boom", obtained.Add(30*time.Hour))
		if n := due(obtained.Add(29*time.Hour), 70*24*time.Hour); n != 0 {
			t.Errorf("backoff ignored (%d)", n)
		}
		ts := must[[]model.Token](t)(e.s.TokensDue(ctx, obtained.Add(30*time.Hour), 0))
		if len(ts) != 1 || ts[0].AccessToken != "IGAAsecond" || ts[0].RefreshFailures != 1 || ts[0].LastRefreshError != "boom" {
			t.Errorf("scheduled retry %+v", ts)
		}
		e.setStatus(t, f.ID, model.StatusNeedsReauth, "token revoked")
		if n := due(obtained.Add(30*time.Hour), 70*24*time.Hour); n != 0 {
			t.Errorf("dead token is due (%d)", n)
		}

		// Lookup by Instagram user.
		for _, id := range []string{"17841", "app-17841"} {
			if fs := must[[]model.Feed](t)(e.s.FeedsForInstagramUser(ctx, id)); len(fs) != 1 || fs[0].ID != f.ID {
				t.Errorf("FeedsForInstagramUser(%q) = %d feeds", id, len(fs))
			}
		}
		if fs := must[[]model.Feed](t)(e.s.FeedsForInstagramUser(ctx, "")); len(fs) != 0 {
			t.Error("empty user id matched feeds")
		}

		// Disconnect.
		if _, _, err := e.s.Disconnect(ctx, f.ID); err != nil {
			t.Fatal(err)
		}
		got = must[model.Feed](t)(e.s.Feed(ctx, f.ID))
		if got.Status != model.StatusNotConnected || got.Account != nil || got.Token != nil {
			t.Errorf("after disconnect %+v", got)
		}
		if _, err := e.s.Token(ctx, f.ID); !errors.Is(err, model.ErrNotConnected) {
			t.Errorf("token after disconnect: %v", err)
		}
	})
}

func TestTokenMovedToAnotherRowDoesNotOpen(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		a := must[model.Feed](t)(e.s.CreateFeed(ctx, "a", nil))
		b := must[model.Feed](t)(e.s.CreateFeed(ctx, "b", nil))
		connect(t, e.s, a.ID, "1", "IGAAtokenA")
		connect(t, e.s, b.ID, "2", "IGAAtokenB")
		if _, err := e.s.w.Exec(`UPDATE tokens SET sealed = (SELECT sealed FROM tokens WHERE feed_id = ?) WHERE feed_id = ?`, a.ID, b.ID); err != nil {
			t.Fatal(err)
		}
		_, err := e.s.Token(ctx, b.ID)
		if !errors.Is(err, secret.ErrDecrypt) {
			t.Fatalf("copied token opened: %v", err)
		}
		if strings.Contains(err.Error(), "IGAA") {
			t.Errorf("error leaks a token: %v", err)
		}
	})
}

func post(id, key string, children ...model.Child) model.Post {
	return model.Post{ID: id, MediaType: "IMAGE", Permalink: "https://www.instagram.com/p/" + id, Timestamp: t0, MediaKey: key, Children: children,
		Caption: ptr("caption " + id), LikeCount: ptr(int64(3))}
}

func media(key string, files ...string) model.Media {
	m := model.Media{Key: key, Width: 1080, Height: 1350, Color: "#112233"}
	for i, f := range files {
		m.Variants = append(m.Variants, model.Variant{Width: 320 * (i + 1), Height: 400 * (i + 1), File: f, Bytes: 1000})
	}
	return m
}

func TestPostsMediaAndOrphans(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		a := must[model.Feed](t)(e.s.CreateFeed(ctx, "a", nil))
		b := must[model.Feed](t)(e.s.CreateFeed(ctx, "b", nil))
		connect(t, e.s, a.ID, "1", "IGAAa")
		connect(t, e.s, b.ID, "1", "IGAAb") // same account: shared post keys

		for _, m := range []model.Media{
			media("post:1", "aa/1-320.jpg", "aa/1-640.jpg"), media("post:2", "bb/2-320.jpg"),
			media("child:3a", "cc/3a.jpg"), media("avatar:x", "dd/av.jpg"), media("post:9", "shared.jpg"),
			media("post:8", "shared.jpg"),
		} {
			if err := e.s.PutMedia(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.s.ReplacePosts(ctx, "zzzzzzzzzz", e.gen(t, "zzzzzzzzzz"), nil, nil, t0); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("ReplacePosts unknown feed: %v", err)
		}
		acct := &model.Account{Username: "renamed", AccountType: "BUSINESS", AvatarKey: "avatar:x", FollowersCount: ptr(int64(10))}
		posts := []model.Post{post("1", "post:1"), post("2", "post:2"), post("3", "post:3", model.Child{ID: "3a", MediaType: "IMAGE", MediaKey: "child:3a"}), post("1", "post:1"), post("9", "post:9"), post("8", "post:8")}
		orphans := must[[]string](t)(e.s.ReplacePosts(ctx, a.ID, e.gen(t, a.ID), acct, posts, t0.Add(time.Minute)))
		if len(orphans) != 0 {
			t.Errorf("first snapshot orphaned %v", orphans)
		}
		if _, err := e.s.ReplacePosts(ctx, b.ID, e.gen(t, b.ID), nil, posts[:2], t0); err != nil {
			t.Fatal(err)
		}
		got := must[[]model.Post](t)(e.s.Posts(ctx, a.ID))
		if len(got) != 5 || got[0].ID != "1" || got[2].ID != "3" || got[2].Children[0].MediaKey != "child:3a" ||
			*got[0].Caption != "caption 1" || *got[0].LikeCount != 3 || got[0].CommentsCount != nil || !got[0].Timestamp.Equal(t0) {
			t.Fatalf("Posts = %+v", got)
		}
		f := must[model.Feed](t)(e.s.Feed(ctx, a.ID))
		if f.PostCount != 5 || !f.FetchedAt.Equal(t0.Add(time.Minute)) || f.Account.Username != "renamed" ||
			f.Account.AvatarKey != "avatar:x" || *f.Account.FollowersCount != 10 || f.Account.IGUserID != "1" {
			t.Errorf("feed after snapshot %+v %+v", f, f.Account)
		}
		ms := must[map[string]model.Media](t)(e.s.MediaByKeys(ctx, []string{"post:1", "post:3", "avatar:x"}))
		if len(ms) != 2 || len(ms["post:1"].Variants) != 2 || ms["post:1"].Variants[1].File != "aa/1-640.jpg" {
			t.Errorf("MediaByKeys = %+v", ms)
		}
		if _, err := e.s.Media(ctx, "post:3"); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("missing media: %v", err)
		}

		// Feed a drops posts 1, 3, 8 and 9: post:1 is still used by feed b;
		// post:9's file is shared with post:8, both gone -> one file.
		orphans = must[[]string](t)(e.s.ReplacePosts(ctx, a.ID, e.gen(t, a.ID), nil, []model.Post{post("2", "post:2")}, t0.Add(2*time.Minute)))
		sort.Strings(orphans)
		if want := []string{"cc/3a.jpg", "shared.jpg"}; !reflect.DeepEqual(orphans, want) {
			t.Errorf("orphans = %v, want %v", orphans, want)
		}
		if _, err := e.s.Media(ctx, "post:1"); err != nil {
			t.Errorf("media still used by another feed was dropped: %v", err)
		}
		if _, err := e.s.Media(ctx, "avatar:x"); err != nil {
			t.Errorf("avatar dropped: %v", err)
		}

		// Deleting feed b frees post:1 (a no longer has it); post:2 stays with a.
		orphans = must[[]string](t)(e.s.DeleteFeed(ctx, b.ID))
		sort.Strings(orphans)
		if want := []string{"aa/1-320.jpg", "aa/1-640.jpg"}; !reflect.DeepEqual(orphans, want) {
			t.Errorf("delete orphans = %v, want %v", orphans, want)
		}
		// Disconnect a frees everything else, avatar included.
		_, orphans, err := e.s.Disconnect(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(orphans)
		if want := []string{"bb/2-320.jpg", "dd/av.jpg"}; !reflect.DeepEqual(orphans, want) {
			t.Errorf("disconnect orphans = %v, want %v", orphans, want)
		}
		if files := must[map[string]struct{}](t)(e.s.ReferencedFiles(ctx)); len(files) != 0 {
			t.Errorf("files still referenced: %v", files)
		}
		// A poll finishing after the disconnect writes nothing.
		if _, err := e.s.ReplacePosts(ctx, a.ID, e.gen(t, a.ID), nil, []model.Post{post("2", "post:2")}, t0); !errors.Is(err, model.ErrNotConnected) {
			t.Errorf("ReplacePosts after disconnect: %v", err)
		}
		if ps := must[[]model.Post](t)(e.s.Posts(ctx, a.ID)); len(ps) != 0 {
			t.Errorf("posts after disconnect: %d", len(ps))
		}
	})
}

func TestSweepMedia(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		a := must[model.Feed](t)(e.s.CreateFeed(ctx, "a", nil))
		connect(t, e.s, a.ID, "1", "IGAAa")
		e.s.PutMedia(ctx, media("post:1", "1.jpg"))
		e.s.PutMedia(ctx, media("post:lost", "lost.jpg"))
		e.s.ReplacePosts(ctx, a.ID, e.gen(t, a.ID), nil, []model.Post{post("1", "post:1")}, t0)
		if files := must[[]string](t)(e.s.SweepMedia(ctx, t0)); len(files) != 0 {
			t.Errorf("swept fresh media: %v", files)
		}
		files := must[[]string](t)(e.s.SweepMedia(ctx, t0.Add(time.Hour)))
		if !reflect.DeepEqual(files, []string{"lost.jpg"}) {
			t.Errorf("swept %v", files)
		}
		if ref := must[map[string]struct{}](t)(e.s.ReferencedFiles(ctx)); len(ref) != 1 {
			t.Errorf("ReferencedFiles = %v", ref)
		}
	})
}

func TestReconnectToAnotherAccountDropsPosts(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		a := must[model.Feed](t)(e.s.CreateFeed(ctx, "a", nil))
		connect(t, e.s, a.ID, "1", "IGAAa")
		e.s.PutMedia(ctx, media("post:1", "1.jpg"))
		e.s.ReplacePosts(ctx, a.ID, e.gen(t, a.ID), nil, []model.Post{post("1", "post:1")}, t0)

		connect(t, e.s, a.ID, "1", "IGAAsameaccount")
		if n := must[model.Feed](t)(e.s.Feed(ctx, a.ID)).PostCount; n != 1 {
			t.Errorf("reconnecting the same account dropped posts (%d left)", n)
		}
		_, files, err := e.s.Connect(ctx, a.ID, e.gen(t, a.ID), model.Account{AppUserID: "x", IGUserID: "2"}, model.Token{AccessToken: "IGAAother", TokenInfo: model.TokenInfo{ExpiresAt: t0}})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(files, []string{"1.jpg"}) {
			t.Errorf("orphans = %v", files)
		}
		f := must[model.Feed](t)(e.s.Feed(ctx, a.ID))
		if f.PostCount != 0 || !f.FetchedAt.IsZero() || f.Account.IGUserID != "2" {
			t.Errorf("after reconnect to another account %+v", f)
		}
	})
}

func TestFetchBookkeeping(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		a := must[model.Feed](t)(e.s.CreateFeed(ctx, "a", nil))
		b := must[model.Feed](t)(e.s.CreateFeed(ctx, "b", nil))
		connect(t, e.s, a.ID, "1", "IGAAa")
		connect(t, e.s, b.ID, "2", "IGAAb")
		ids := func(fs []model.Feed) []string {
			var out []string
			for _, f := range fs {
				out = append(out, f.ID)
			}
			sort.Strings(out)
			return out
		}
		if d := must[[]model.Feed](t)(e.s.DueFeeds(ctx, t0, t0.Add(-time.Hour))); len(d) != 0 {
			t.Errorf("unviewed feeds due: %v", ids(d))
		}
		e.s.MarkViewed(ctx, a.ID, t0.Add(time.Minute))
		e.s.MarkViewed(ctx, a.ID, t0) // never moves back
		if v := must[model.Feed](t)(e.s.Feed(ctx, a.ID)).LastViewedAt; !v.Equal(t0.Add(time.Minute)) {
			t.Errorf("LastViewedAt = %v", v)
		}
		e.s.MarkViewed(ctx, b.ID, t0.Add(-2*time.Hour))
		if d := ids(must[[]model.Feed](t)(e.s.DueFeeds(ctx, t0.Add(time.Minute), t0.Add(-time.Hour)))); !reflect.DeepEqual(d, []string{a.ID}) {
			t.Errorf("due = %v, want only the recently viewed feed", d)
		}
		err := e.s.RecordFetch(ctx, a.ID, e.gen(t, a.ID), model.FetchResult{At: t0.Add(time.Minute), OK: false, Err: "Instagram unreachable", NextFetchAt: t0.Add(10 * time.Minute), Failures: 2})
		if err != nil {
			t.Fatal(err)
		}
		f := must[model.Feed](t)(e.s.Feed(ctx, a.ID))
		if f.LastFetchOK || f.LastFetchError != "Instagram unreachable" || f.FetchFailures != 2 || !f.NextFetchAt.Equal(t0.Add(10*time.Minute)) {
			t.Errorf("after failed fetch %+v", f)
		}
		if d := must[[]model.Feed](t)(e.s.DueFeeds(ctx, t0.Add(5*time.Minute), t0.Add(-time.Hour))); len(d) != 0 {
			t.Errorf("feed due before next_fetch_at")
		}
		e.s.RecordFetch(ctx, a.ID, e.gen(t, a.ID), model.FetchResult{At: t0.Add(10 * time.Minute), OK: true, Err: "ignored", NextFetchAt: t0.Add(25 * time.Minute)})
		f = must[model.Feed](t)(e.s.Feed(ctx, a.ID))
		if !f.LastFetchOK || f.LastFetchError != "" || f.FetchFailures != 0 {
			t.Errorf("after good fetch %+v", f)
		}
		e.setStatus(t, a.ID, model.StatusNeedsReauth, "reconnect")
		if d := must[[]model.Feed](t)(e.s.DueFeeds(ctx, t0.Add(time.Hour), t0)); len(d) != 0 {
			t.Errorf("feed needing reauth is due")
		}
		if err := e.s.RecordFetch(ctx, "zzzzzzzzzz", e.gen(t, "zzzzzzzzzz"), model.FetchResult{}); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("RecordFetch unknown: %v", err)
		}
	})
}

func TestOAuthStates(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		f := must[model.Feed](t)(e.s.CreateFeed(ctx, "f", nil))
		st := model.OAuthState{Hash: []byte("h1"), FeedID: f.ID, SessionHash: []byte("sess"), ExpiresAt: t0.Add(10 * time.Minute)}
		if err := e.s.CreateState(ctx, st); err != nil {
			t.Fatal(err)
		}
		if err := e.s.CreateState(ctx, st); !errors.Is(err, ErrConflict) {
			t.Errorf("duplicate state: %v", err)
		}
		if err := e.s.CreateState(ctx, model.OAuthState{Hash: []byte("h2"), FeedID: "zzzzzzzzzz", ExpiresAt: t0}); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("state for unknown feed: %v", err)
		}
		e.s.CreateState(ctx, model.OAuthState{Hash: []byte("old"), FeedID: f.ID, ExpiresAt: t0.Add(time.Minute)})

		got, err := e.s.ConsumeState(ctx, []byte("h1"), t0.Add(time.Minute))
		if err != nil || got.FeedID != f.ID || string(got.SessionHash) != "sess" || !got.UsedAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("consume: %+v, %v", got, err)
		}
		if _, err := e.s.ConsumeState(ctx, []byte("h1"), t0.Add(time.Minute)); !errors.Is(err, model.ErrStateUsed) {
			t.Errorf("reuse: %v", err)
		}
		if _, err := e.s.ConsumeState(ctx, []byte("nope"), t0); !errors.Is(err, model.ErrStateNotFound) {
			t.Errorf("unknown: %v", err)
		}
		if _, err := e.s.ConsumeState(ctx, []byte("old"), t0.Add(time.Minute)); !errors.Is(err, model.ErrStateExpired) {
			t.Errorf("expired: %v", err)
		}
		// Concurrent consumers: exactly one wins.
		e.s.CreateState(ctx, model.OAuthState{Hash: []byte("race"), FeedID: f.ID, ExpiresAt: t0.Add(time.Hour)})
		var wins, used int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				_, err := e.s.ConsumeState(ctx, []byte("race"), t0)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, model.ErrStateUsed):
					used++
				default:
					t.Errorf("consume race: %v", err)
				}
			})
		}
		wg.Wait()
		if wins != 1 || used != 7 {
			t.Errorf("wins=%d used=%d", wins, used)
		}
		n := must[int64](t)(e.s.PurgeExpired(ctx, t0.Add(2*time.Minute)))
		if n != 1 { // only "old" expired before then
			t.Errorf("purged %d", n)
		}
		// Deleting the feed removes its states.
		e.s.DeleteFeed(ctx, f.ID)
		if _, err := e.s.ConsumeState(ctx, []byte("race"), t0); !errors.Is(err, model.ErrStateNotFound) {
			t.Errorf("state of deleted feed: %v", err)
		}
	})
}

func TestAdmin(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		if _, err := e.s.AdminTokenHash(ctx); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("no admin token: %v", err)
		}
		if err := e.s.SetAdminTokenHash(ctx, []byte("hash1")); err != nil {
			t.Fatal(err)
		}
		if h := must[[]byte](t)(e.s.AdminTokenHash(ctx)); string(h) != "hash1" {
			t.Errorf("hash = %q", h)
		}
		se := model.Session{IDHash: []byte("sid"), CSRF: "csrf", ExpiresAt: t0.Add(time.Hour)}
		if err := e.s.CreateSession(ctx, se); err != nil {
			t.Fatal(err)
		}
		if got, err := e.s.Session(ctx, []byte("sid"), t0); err != nil || got.CSRF != "csrf" {
			t.Errorf("Session = %+v, %v", got, err)
		}
		if _, err := e.s.Session(ctx, []byte("sid"), t0.Add(time.Hour)); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("expired session: %v", err)
		}
		if err := e.s.CreateSetupLink(ctx, []byte("link"), t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := e.s.ConsumeSetupLink(ctx, []byte("link"), t0.Add(2*time.Hour)); !errors.Is(err, ErrLinkExpired) {
			t.Errorf("expired link: %v", err)
		}
		if err := e.s.ConsumeSetupLink(ctx, []byte("link"), t0); err != nil {
			t.Errorf("consume link: %v", err)
		}
		if err := e.s.ConsumeSetupLink(ctx, []byte("link"), t0); !errors.Is(err, ErrLinkUsed) {
			t.Errorf("reused link: %v", err)
		}
		if err := e.s.ConsumeSetupLink(ctx, []byte("nope"), t0); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("unknown link: %v", err)
		}
		e.s.CreateSetupLink(ctx, []byte("link2"), t0.Add(time.Hour))
		// A new admin token ends sessions and voids setup links.
		if err := e.s.SetAdminTokenHash(ctx, []byte("hash2")); err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.Session(ctx, []byte("sid"), t0); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("session survived a token reset: %v", err)
		}
		if err := e.s.ConsumeSetupLink(ctx, []byte("link2"), t0); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("setup link survived a token reset: %v", err)
		}
		e.s.CreateSession(ctx, se)
		if err := e.s.DeleteSession(ctx, []byte("sid")); err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.Session(ctx, []byte("sid"), t0); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("deleted session: %v", err)
		}
	})
}

func TestDeletionRequests(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		d := model.DeletionRequest{Code: "abc123", Kind: "delete", UserID: "17841"}
		if err := e.s.CreateDeletionRequest(ctx, d); err != nil {
			t.Fatal(err)
		}
		if err := e.s.CreateDeletionRequest(ctx, d); !errors.Is(err, ErrConflict) {
			t.Errorf("duplicate code: %v", err)
		}
		if err := e.s.CreateDeletionRequest(ctx, model.DeletionRequest{Code: "x", Kind: "other"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("bad kind: %v", err)
		}
		got := must[model.DeletionRequest](t)(e.s.DeletionRequest(ctx, "abc123"))
		if !got.RequestedAt.Equal(t0) || !got.CompletedAt.IsZero() {
			t.Errorf("pending %+v", got)
		}
		if err := e.s.CompleteDeletionRequest(ctx, "abc123", t0.Add(time.Second), 2); err != nil {
			t.Fatal(err)
		}
		got = must[model.DeletionRequest](t)(e.s.DeletionRequest(ctx, "abc123"))
		if !got.CompletedAt.Equal(t0.Add(time.Second)) || got.FeedsAffected != 2 || got.Kind != "delete" || got.UserID != "17841" {
			t.Errorf("completed %+v", got)
		}
		if _, err := e.s.DeletionRequest(ctx, "nope"); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("unknown code: %v", err)
		}
	})
}

// TestTokenNeverOnDisk proves that no stored token's bytes appear in the
// database: on SQLite in its file, WAL or shared-memory file; on PostgreSQL
// in any column of the tokens table, as text or bytes.
func TestTokenNeverOnDisk(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		tokens := []string{"IGAAtokenNumberOne0123456789abcdef", "IGAAtokenNumberTwo0123456789abcdef", "IGAArefreshedToken0123456789abcdef"}
		f := must[model.Feed](t)(e.s.CreateFeed(ctx, "f", nil))
		connect(t, e.s, f.ID, "1", tokens[0])
		g := must[model.Feed](t)(e.s.CreateFeed(ctx, "g", nil))
		connect(t, e.s, g.ID, "2", tokens[1])
		if err := e.s.ReplaceToken(ctx, f.ID, tokens[0], model.Token{AccessToken: tokens[2], TokenInfo: model.TokenInfo{ExpiresAt: t0}}); err != nil {
			t.Fatal(err)
		}
		holds := func(stage, where string, b []byte) {
			for _, tok := range tokens {
				if bytes.Contains(b, []byte(tok)) || bytes.Contains(b, []byte(tok[4:20])) {
					t.Errorf("%s: %s holds token %q", stage, where, tok)
				}
			}
		}
		if e.engine == "postgres" {
			rows, err := e.s.r.QueryContext(ctx, `SELECT t::text, sealed FROM tokens t`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			n := 0
			for rows.Next() {
				var text string
				var sealed []byte
				if err := rows.Scan(&text, &sealed); err != nil {
					t.Fatal(err)
				}
				holds("stored", "a tokens row", append([]byte(text), sealed...))
				n++
			}
			if n != 2 {
				t.Fatalf("%d tokens rows, want 2", n)
			}
			return
		}
		scan := func(stage string) {
			files, _ := filepath.Glob(e.path + "*")
			if len(files) == 0 {
				t.Fatal("no database files")
			}
			for _, p := range files {
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				holds(stage, filepath.Base(p), b)
			}
		}
		for _, p := range []string{e.path, e.path + "-wal"} {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, %v; want 0600", filepath.Base(p), fi.Mode().Perm(), err)
			}
		}
		scan("before checkpoint")
		if err := e.s.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		scan("after checkpoint")
		e.s.Close()
		scan("after close")
	})
}

func TestConcurrentWriters(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		// A second Store on the same file competes for the write lock.
		other, err := e.reopen(t, box(t, key(1)), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 16 {
			s := e.s
			if i%2 == 1 {
				s = other
			}
			wg.Go(func() {
				for j := range 4 {
					f, err := s.CreateFeed(ctx, fmt.Sprintf("f%d-%d", i, j), nil)
					if err != nil {
						errs <- err
						return
					}
					if _, _, err := s.Connect(ctx, f.ID, f.Generation, model.Account{IGUserID: "1"}, model.Token{AccessToken: "IGAAx", TokenInfo: model.TokenInfo{ExpiresAt: t0}}); err != nil {
						errs <- err
						return
					}
					if _, err := s.Feeds(ctx); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent write: %v", err)
		}
		if n := len(must[[]model.Feed](t)(e.s.Feeds(ctx))); n != 64 {
			t.Errorf("feeds = %d, want 64", n)
		}
	})
}

func TestNewFeedIDShape(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := model.NewFeedID()
		if !model.ValidFeedID(id) || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}

func BenchmarkFeed(b *testing.B) {
	e := open(b)
	ctx := context.Background()
	f, _ := e.s.CreateFeed(ctx, "f", []string{"https://a.example"})
	connect(b, e.s, f.ID, "1", "IGAAx")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.s.Feed(ctx, f.ID); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPosts50(b *testing.B) {
	e := open(b)
	ctx := context.Background()
	f, _ := e.s.CreateFeed(ctx, "f", nil)
	connect(b, e.s, f.ID, "1", "IGAAx")
	var ps []model.Post
	for i := range 50 {
		ps = append(ps, post(fmt.Sprint(i), fmt.Sprintf("post:%d", i)))
	}
	e.s.ReplacePosts(ctx, f.ID, e.gen(b, f.ID), nil, ps, t0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.s.Posts(ctx, f.ID); err != nil {
			b.Fatal(err)
		}
	}
}

// A made-up setup link is answered from the read pool: a flood of them
// never queues at the one writer.
func TestUnknownSetupLinkDoesNotWaitForTheWriter(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		e := open(t)
		ctx := context.Background()
		held, release := make(chan struct{}), make(chan struct{})
		go e.s.write(ctx, func(tx *sql.Tx) error { close(held); <-release; return nil })
		<-held
		defer close(release)
		done := make(chan error, 1)
		go func() { done <- e.s.ConsumeSetupLink(ctx, []byte("a hash no link has, 32 bytes...."), t0) }()
		select {
		case err := <-done:
			if !errors.Is(err, model.ErrNotFound) {
				t.Errorf("err = %v, want ErrNotFound", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("an unknown setup link waited for the writer")
		}
	})
}
