package store

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/feedd/feedd/internal/model"
)

func TestCurationIsStoredAndDeletedWithItsFeed(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		e := open(t)
		ctx := context.Background()
		f := must[model.Feed](t)(e.s.CreateFeed(ctx, "Shop", nil))

		c, err := e.s.Curation(ctx, f.ID)
		if err != nil || !reflect.DeepEqual(c, model.Curation{}) {
			t.Fatalf("a new feed's curation: %+v, %v; want the zero value", c, err)
		}
		want := model.Curation{Hidden: []string{"h1"}, Pinned: []string{"p2", "p1"}, Include: []string{"#cake", "chocolate cake"},
			Exclude: []string{"ケーキ"}, Types: []string{"image", "reel"}, MaxPosts: 9}
		got, err := e.s.SetCuration(ctx, f.ID, model.Curation{}, want)
		if err != nil {
			t.Fatal(err)
		}
		want.UpdatedAt = t0
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("SetCuration returned %+v, want %+v", got, want)
		}
		if c, err = e.s.Curation(ctx, f.ID); err != nil || !reflect.DeepEqual(c, want) {
			t.Fatalf("read back %+v, %v; want %+v", c, err, want)
		}

		// A second write replaces the first as a whole; empty lists read back empty.
		e.clk.Advance(60e9)
		// A write based on what the feed had before the first one is
		// refused and changes nothing.
		if _, err := e.s.SetCuration(ctx, f.ID, model.Curation{}, model.Curation{Pinned: []string{"p9"}}); !errors.Is(err, model.ErrCurationChanged) {
			t.Fatalf("a write from a stale read: %v, want ErrCurationChanged", err)
		}
		if _, err := e.s.SetCuration(ctx, f.ID, got, model.Curation{Pinned: []string{"p1"}}); err != nil {
			t.Fatal(err)
		}
		c = must[model.Curation](t)(e.s.Curation(ctx, f.ID))
		if len(c.Hidden)+len(c.Include)+len(c.Exclude)+len(c.Types) != 0 || c.MaxPosts != 0 ||
			!reflect.DeepEqual(c.Pinned, []string{"p1"}) || !c.UpdatedAt.Equal(t0.Add(60e9)) {
			t.Fatalf("after the second write: %+v", c)
		}

		if _, err := e.s.SetCuration(ctx, "nosuchfeed", model.Curation{}, want); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("curation of an unknown feed: %v, want ErrNotFound", err)
		}
		must[[]string](t)(e.s.DeleteFeed(ctx, f.ID))
		var n int
		if err := e.s.r.QueryRowContext(ctx, `SELECT count(*) FROM curations WHERE feed_id = ?`, f.ID).Scan(&n); err != nil || n != 0 {
			t.Fatalf("curation rows left after the feed's deletion: %d, %v", n, err)
		}
	})
}

// A disconnect (also Meta's deauthorize and data deletion) and a connect of
// another account forget the hidden and pinned posts with the posts; the
// rules stay.
func TestCurationForgetsPostsOfAnEndedConnection(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		e := open(t)
		ctx := context.Background()
		tok := model.Token{AccessToken: "IGAAtok", TokenInfo: model.TokenInfo{ExpiresAt: t0.Add(1e15)}}
		set := model.Curation{Hidden: []string{"h"}, Pinned: []string{"p"}, Exclude: []string{"#ad"}, MaxPosts: 4}
		check := func(what string, id string) {
			t.Helper()
			c := must[model.Curation](t)(e.s.Curation(ctx, id))
			if len(c.Hidden)+len(c.Pinned) != 0 || len(c.Exclude) != 1 || c.MaxPosts != 4 {
				t.Fatalf("after %s: %+v, want no hidden or pinned posts and the rules kept", what, c)
			}
		}

		f := must[model.Feed](t)(e.s.CreateFeed(ctx, "a", nil))
		connect := func(a model.Account, tok model.Token) {
			t.Helper()
			if _, _, err := e.s.Connect(ctx, f.ID, e.gen(t, f.ID), a, tok); err != nil {
				t.Fatal(err)
			}
		}
		connect(model.Account{AppUserID: "u1", IGUserID: "1"}, tok)
		must[model.Curation](t)(e.s.SetCuration(ctx, f.ID, model.Curation{}, set))
		// A reconnect of the same account keeps them.
		connect(model.Account{AppUserID: "u1", IGUserID: "1"}, tok)
		if c := must[model.Curation](t)(e.s.Curation(ctx, f.ID)); len(c.Hidden) != 1 || len(c.Pinned) != 1 {
			t.Fatalf("a reconnect of the same account dropped the curation: %+v", c)
		}
		connect(model.Account{AppUserID: "u2", IGUserID: "2"}, tok)
		check("a connect of another account", f.ID)

		must[model.Curation](t)(e.s.SetCuration(ctx, f.ID, must[model.Curation](t)(e.s.Curation(ctx, f.ID)), set))
		if _, _, err := e.s.Disconnect(ctx, f.ID); err != nil {
			t.Fatal(err)
		}
		check("a disconnect", f.ID)
	})
}
