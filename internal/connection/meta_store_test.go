package connection

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/store"
)

// seedPosts gives a connected feed one post and a profile picture, each with a stored file.
func seedPosts(t *testing.T, s *store.Store, feedID, postID, postFile, avatarKey, avatarFile string, at time.Time) {
	t.Helper()
	ctx := context.Background()
	for _, m := range []model.Media{
		{Key: "post:" + postID, Width: 10, Height: 10, Variants: []model.Variant{{Width: 10, Height: 10, File: postFile, Bytes: 1}}},
		{Key: avatarKey, Width: 10, Height: 10, Variants: []model.Variant{{Width: 10, Height: 10, File: avatarFile, Bytes: 1}}},
	} {
		if err := s.PutMedia(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	f, err := s.Feed(ctx, feedID)
	if err != nil {
		t.Fatal(err)
	}
	acct := *f.Account
	acct.AvatarKey = avatarKey
	posts := []model.Post{{ID: postID, MediaType: model.MediaImage, Permalink: "https://www.instagram.com/p/" + postID, Timestamp: at, MediaKey: "post:" + postID}}
	if _, err := s.ReplacePosts(ctx, feedID, f.Generation, &acct, posts, at); err != nil {
		t.Fatal(err)
	}
}

// TestMetaDeletionOverSQLiteDeletesEverything runs the service over the
// real store: Meta's delete callback leaves every feed bound to the user
// not_connected with no token, posts or files, and leaves others alone.
func TestMetaDeletionOverSQLiteDeletesEverything(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(o *Options) { o.PublicURL = "https://feedd.example/sub" })
	real := e.Store.Store
	now := e.Clock.Now()
	var ids []string
	for i, u := range []string{"1001", "1001", "1009"} {
		id := e.createFeed("Feed")
		ids = append(ids, id)
		acct := model.Account{AppUserID: "9" + u, IGUserID: u, Username: "u" + u, AccountType: "BUSINESS", ConnectedAt: now}
		if _, _, err := real.Connect(ctx, id, store.AnyGeneration, acct, model.Token{AccessToken: "IGAA-" + id, TokenInfo: model.TokenInfo{ObtainedAt: now, ExpiresAt: now.AddDate(0, 0, 60)}}); err != nil {
			t.Fatal(err)
		}
		p := string(rune('a' + i))
		seedPosts(t, real, id, "p"+p, p+"/post.jpg", "avatar:"+p, p+"/av.jpg", now)
	}

	gens := map[string]int64{}
	for _, id := range ids {
		gens[id] = e.feed(id).Generation
	}
	// Meta identifies the user by the app-scoped id here.
	req, err := e.svc.MetaCallback(ctx, model.KindDelete, signed(e.Sandbox.AppSecret(), map[string]any{"algorithm": "HMAC-SHA256", "issued_at": now.Unix(), "user_id": "91001"}))
	if err != nil {
		t.Fatal(err)
	}
	if req.FeedsAffected != 2 || !ValidConfirmationCode(req.Code) {
		t.Fatalf("request %+v", req)
	}
	if u := e.svc.DeletionStatusURL(req.Code); u != "https://feedd.example/sub/auth/instagram/deletion?code="+req.Code {
		t.Fatalf("status URL %q", u)
	}
	for _, id := range ids[:2] {
		f := e.feed(id)
		if f.Status != model.StatusNotConnected || f.Account != nil || f.Token != nil || f.PostCount != 0 {
			t.Errorf("feed %s after deletion: %+v", id, f)
		}
		if _, err := real.Token(ctx, id); !errors.Is(err, model.ErrNotConnected) {
			t.Errorf("feed %s still has a token: %v", id, err)
		}
		// A poll still running for the deleted connection cannot write back.
		if f.Generation == gens[id] {
			t.Errorf("feed %s: the deletion left the connection generation as it was", id)
		}
		if e.Feeds.Invalidations(id) == 0 {
			t.Errorf("feed %s: cached answers not dropped", id)
		}
	}
	gotFiles := e.Files.Removed()
	slices.Sort(gotFiles)
	if want := []string{"a/av.jpg", "a/post.jpg", "b/av.jpg", "b/post.jpg"}; !reflect.DeepEqual(gotFiles, want) {
		t.Errorf("removed files %v, want %v", gotFiles, want)
	}
	if f := e.feed(ids[2]); f.Status != model.StatusActive || f.PostCount != 1 {
		t.Errorf("another user's feed was touched: %+v", f)
	}
	refs, err := real.ReferencedFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := refs["c/post.jpg"]; !ok || len(refs) != 2 {
		t.Errorf("referenced files after deletion: %v", refs)
	}
	dr, err := e.svc.Deletion(ctx, req.Code)
	if err != nil || dr.CompletedAt.IsZero() || dr.FeedsAffected != 2 {
		t.Errorf("recorded request %+v, %v", dr, err)
	}
}

// A signed_request whose issued_at is more than a day old, missing, or
// far in the future is refused: nothing is deleted or recorded.
func TestStaleSignedRequestIsRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.connect("Shop", sandbox.AccountCreator)
	acct, _ := e.Sandbox.Account(sandbox.AccountCreator)
	now := e.Clock.Now()
	for _, tc := range []struct {
		name     string
		issuedAt any
	}{
		{"a day and an hour old", now.Add(-25 * time.Hour).Unix()},
		{"missing", nil},
		{"an hour ahead", now.Add(time.Hour).Unix()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := map[string]any{"algorithm": "HMAC-SHA256", "user_id": acct.UserID}
			if tc.issuedAt != nil {
				payload["issued_at"] = tc.issuedAt
			}
			for _, kind := range []string{model.KindDelete, model.KindDeauthorize} {
				if _, err := e.svc.MetaCallback(ctx, kind, signed(e.Sandbox.AppSecret(), payload)); !errors.Is(err, ErrSignedRequestStale) {
					t.Errorf("%s: err = %v, want ErrSignedRequestStale", kind, err)
				}
			}
		})
	}
	if f := e.feed(id); f.Status != model.StatusActive || f.Token == nil || f.PostCount == 0 {
		t.Errorf("feed changed by refused callbacks: %+v", f)
	}
	// Within the day it is honoured.
	payload := map[string]any{"algorithm": "HMAC-SHA256", "user_id": acct.UserID, "issued_at": now.Add(-23 * time.Hour).Unix()}
	if _, err := e.svc.MetaCallback(ctx, model.KindDelete, signed(e.Sandbox.AppSecret(), payload)); err != nil {
		t.Fatal(err)
	}
	if f := e.feed(id); f.Status != model.StatusNotConnected {
		t.Errorf("a day-fresh deletion was not carried out: %s", f.Status)
	}
}
