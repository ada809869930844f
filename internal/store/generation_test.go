package store

import (
	"context"
	"errors"
	"testing"

	"github.com/feedd/feedd/internal/model"
)

// A poll reads the feed, calls Instagram, downloads images and then writes.
// Anything that changed the connection meanwhile must win over its write.
func TestWritesOfAnOlderConnectionAreRefused(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		for _, tc := range []struct {
			name   string
			change func(e *env, id string)
		}{
			{"reconnected to another account", func(e *env, id string) { connect(t, e.s, id, "2", "IGAAsecond") }},
			{"reconnected to the same account", func(e *env, id string) { connect(t, e.s, id, "1", "IGAAagain") }},
			{"disconnected", func(e *env, id string) {
				if _, _, err := e.s.Disconnect(ctx, id); err != nil {
					t.Fatal(err)
				}
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := open(t)
				f := must[model.Feed](t)(e.s.CreateFeed(ctx, "f", nil))
				connect(t, e.s, f.ID, "1", "IGAAfirst")
				old := e.gen(t, f.ID)
				tc.change(e, f.ID)
				if e.gen(t, f.ID) == old {
					t.Fatal("generation did not move")
				}
				before := must[model.Feed](t)(e.s.Feed(ctx, f.ID))

				acct := &model.Account{Username: "old_account", AvatarKey: "avatar:old"}
				_, err := e.s.ReplacePosts(ctx, f.ID, old, acct, []model.Post{post("9", "post:9")}, t0)
				if !errors.Is(err, model.ErrConnectionChanged) {
					t.Errorf("ReplacePosts err = %v, want ErrConnectionChanged", err)
				}
				err = e.s.RecordFetch(ctx, f.ID, old, model.FetchResult{At: t0, Err: "old poll failed", NextFetchAt: t0.AddDate(1, 0, 0), Failures: 5})
				if !errors.Is(err, model.ErrConnectionChanged) {
					t.Errorf("RecordFetch err = %v, want ErrConnectionChanged", err)
				}
				_, _, err = e.s.ChangeStatus(ctx, model.StatusChange{FeedID: f.ID, Generation: old, To: model.StatusNeedsReauth, Reason: "old token"})
				if !errors.Is(err, model.ErrConnectionChanged) {
					t.Errorf("ChangeStatus err = %v, want ErrConnectionChanged", err)
				}

				after := must[model.Feed](t)(e.s.Feed(ctx, f.ID))
				if after.PostCount != 0 || after.Status != before.Status || after.LastFetchError != before.LastFetchError ||
					!after.NextFetchAt.Equal(before.NextFetchAt) || after.FetchFailures != before.FetchFailures {
					t.Errorf("older connection's writes landed: %+v", after)
				}
				if after.Account != nil && (after.Account.Username == "old_account" || after.Account.AvatarKey == "avatar:old") {
					t.Errorf("older connection's profile landed: %+v", after.Account)
				}
			})
		}
	})
}

func TestChangeStatusOnlyForTheCurrentToken(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		f := must[model.Feed](t)(e.s.CreateFeed(ctx, "f", nil))
		connect(t, e.s, f.ID, "1", "IGAAfirst")
		gen := e.gen(t, f.ID)
		if err := e.s.ReplaceToken(ctx, f.ID, "IGAAfirst", model.Token{AccessToken: "IGAArefreshed", TokenInfo: model.TokenInfo{ExpiresAt: t0}}); err != nil {
			t.Fatal(err)
		}
		// A poll that held the token a refresh replaced got a 190 for it.
		_, _, err := e.s.ChangeStatus(ctx, model.StatusChange{FeedID: f.ID, Generation: gen, To: model.StatusNeedsReauth, IfToken: "IGAAfirst"})
		if !errors.Is(err, model.ErrTokenChanged) {
			t.Fatalf("stale token: err = %v, want ErrTokenChanged", err)
		}
		if got := must[model.Feed](t)(e.s.Feed(ctx, f.ID)); got.Status != model.StatusActive {
			t.Fatalf("status = %s after a stale token's failure", got.Status)
		}
		from, changed, err := e.s.ChangeStatus(ctx, model.StatusChange{FeedID: f.ID, Generation: gen, To: model.StatusNeedsReauth, Reason: "revoked", IfToken: "IGAArefreshed"})
		if err != nil || from != model.StatusActive || !changed {
			t.Fatalf("current token: from %s changed %v err %v", from, changed, err)
		}
		from, changed, err = e.s.ChangeStatus(ctx, model.StatusChange{FeedID: f.ID, Generation: gen, To: model.StatusNeedsReauth, Reason: "revoked again"})
		if err != nil || from != model.StatusNeedsReauth || changed {
			t.Fatalf("repeat: from %s changed %v err %v", from, changed, err)
		}
	})
}

func TestDropUnreferencedKeepsWhatAFeedUses(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		f := must[model.Feed](t)(e.s.CreateFeed(ctx, "f", nil))
		connect(t, e.s, f.ID, "1", "IGAAfirst")
		e.s.PutMedia(ctx, media("post:1", "1.jpg"))
		e.s.PutMedia(ctx, media("post:late", "late.jpg"))
		if _, err := e.s.ReplacePosts(ctx, f.ID, e.gen(t, f.ID), nil, []model.Post{post("1", "post:1")}, t0); err != nil {
			t.Fatal(err)
		}
		files := must[[]string](t)(e.s.DropUnreferenced(ctx, []string{"post:1", "post:late", "post:never"}))
		if len(files) != 1 || files[0] != "late.jpg" {
			t.Errorf("files = %v, want [late.jpg]", files)
		}
		if have := must[map[string]model.Media](t)(e.s.MediaByKeys(ctx, []string{"post:1", "post:late"})); len(have) != 1 {
			t.Errorf("media rows left = %v", have)
		}
	})
}

// Two connects (or a connect and a data deletion) that read the feed at the
// same time: the later write must not undo the earlier one.
func TestConnectOfAnOlderConnectionIsRefused(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		f := must[model.Feed](t)(e.s.CreateFeed(ctx, "f", nil))
		connect(t, e.s, f.ID, "1", "IGAAfirst")
		read := e.gen(t, f.ID)
		prev, _, err := e.s.Disconnect(ctx, f.ID) // Meta's data deletion wins the race
		if err != nil || prev.Status != model.StatusActive || prev.Account == nil || prev.Account.IGUserID != "1" {
			t.Fatalf("Disconnect: prev %+v, err %v", prev, err)
		}
		_, _, err = e.s.Connect(ctx, f.ID, read, model.Account{IGUserID: "1", Username: "back"},
			model.Token{AccessToken: "IGAAagain", TokenInfo: model.TokenInfo{ExpiresAt: t0.AddDate(0, 0, 60)}})
		if !errors.Is(err, model.ErrConnectionChanged) {
			t.Fatalf("Connect on the generation read before the deletion: err = %v, want ErrConnectionChanged", err)
		}
		got := must[model.Feed](t)(e.s.Feed(ctx, f.ID))
		if got.Status != model.StatusNotConnected || got.Account != nil || got.Token != nil {
			t.Errorf("the older connect landed: %+v", got)
		}
		if _, err := e.s.Token(ctx, f.ID); !errors.Is(err, model.ErrNotConnected) {
			t.Errorf("token after a refused connect: %v", err)
		}
	})
}

func TestReconnectingTheSameAccountKeepsItsAvatar(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		f := must[model.Feed](t)(e.s.CreateFeed(ctx, "f", nil))
		connect(t, e.s, f.ID, "1", "IGAAfirst")
		e.s.PutMedia(ctx, media("avatar:1", "av.jpg"))
		if _, err := e.s.ReplacePosts(ctx, f.ID, e.gen(t, f.ID), &model.Account{Username: "user_1", AvatarKey: "avatar:1"}, nil, t0); err != nil {
			t.Fatal(err)
		}
		connect(t, e.s, f.ID, "1", "IGAAsecond")
		if got := must[model.Feed](t)(e.s.Feed(ctx, f.ID)); got.Account == nil || got.Account.AvatarKey != "avatar:1" {
			t.Fatalf("same account reconnected: account %+v", got.Account)
		}
		if have := must[map[string]model.Media](t)(e.s.MediaByKeys(ctx, []string{"avatar:1"})); len(have) != 1 {
			t.Error("the avatar's image was dropped by a reconnect of the same account")
		}
		connect(t, e.s, f.ID, "2", "IGAAother")
		if got := must[model.Feed](t)(e.s.Feed(ctx, f.ID)); got.Account == nil || got.Account.AvatarKey != "" {
			t.Errorf("another account kept the previous avatar: %+v", got.Account)
		}
	})
}
