package auth

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/secret"
	"github.com/feedd/feedd/internal/store"
)

// openRealStore opens a fresh SQLite store in a temp dir, as feedd does.
func openRealStore(t *testing.T, now func() time.Time) *store.Store {
	t.Helper()
	box, err := secret.New(bytes.Repeat([]byte{7}, secret.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "feedd.db"), box, store.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// seedPosts gives a connected feed one post and a profile picture, each with a stored file.
func seedPosts(t *testing.T, s *store.Store, feedID, postID, postFile, avatarKey, avatarFile string, at time.Time) {
	t.Helper()
	ctx := context.Background()
	for _, m := range []store.Media{
		{Key: "post:" + postID, Width: 10, Height: 10, Variants: []store.Variant{{Width: 10, Height: 10, File: postFile, Bytes: 1}}},
		{Key: avatarKey, Width: 10, Height: 10, Variants: []store.Variant{{Width: 10, Height: 10, File: avatarFile, Bytes: 1}}},
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
	posts := []store.Post{{ID: postID, MediaType: "IMAGE", Permalink: "https://www.instagram.com/p/" + postID, Timestamp: at, MediaKey: "post:" + postID}}
	if _, err := s.ReplacePosts(ctx, feedID, &acct, posts, at); err != nil {
		t.Fatal(err)
	}
}

func TestStoreAdapterAgainstSQLite(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	real := openRealStore(t, clk.Now)
	st := NewStore(real)
	now := clk.Now().Truncate(time.Second) // the store keeps seconds

	// Feeds.
	f, err := st.CreateFeed(ctx, "Shop", []string{"https://shop.example"})
	if err != nil {
		t.Fatal(err)
	}
	if f.ID == "" || f.Name != "Shop" || f.Status != StatusNotConnected || f.Account != nil || f.Token != nil {
		t.Fatalf("created %+v", f)
	}
	name, origins := "Shop 2", []string{}
	if err := st.UpdateFeed(ctx, f.ID, &name, &origins); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Feed(ctx, f.ID); got.Name != "Shop 2" || len(got.AllowedOrigins) != 0 {
		t.Fatalf("after update %+v", got)
	}
	if _, err := st.Feed(ctx, "zzzzzzzzzz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown feed: %v", err)
	}
	if err := st.UpdateFeed(ctx, "zzzzzzzzzz", &name, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update unknown feed: %v", err)
	}
	if _, err := st.Token(ctx, f.ID); !errors.Is(err, ErrNoToken) {
		t.Fatalf("token of unconnected feed: %v", err)
	}

	// Connect: account and token round trip, token sealed and back.
	n := int64(42)
	acct := Account{AppUserID: "app-1", IGUserID: "ig-1", Username: "shop", Name: "The Shop", AccountType: "BUSINESS",
		FollowersCount: &n, ConnectedAt: now}
	tok := Token{AccessToken: "IGAA-first", TokenMeta: TokenMeta{ObtainedAt: now, ExpiresAt: now.Add(60 * 24 * time.Hour), ExpiryAssumed: true,
		NextRefreshAt: now.Add(24 * time.Hour)}}
	if files, err := st.Connect(ctx, f.ID, acct, tok); err != nil || len(files) != 0 {
		t.Fatalf("connect: %v %v", files, err)
	}
	got, err := st.Feed(ctx, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusActive || got.Account == nil || got.Account.AppUserID != "app-1" || got.Account.IGUserID != "ig-1" ||
		got.Account.Username != "shop" || got.Account.Name != "The Shop" || *got.Account.FollowersCount != 42 ||
		!got.Account.ConnectedAt.Equal(now) {
		t.Fatalf("connected feed %+v %+v", got, got.Account)
	}
	if got.Token == nil || !got.Token.ExpiresAt.Equal(tok.ExpiresAt) || !got.Token.ExpiryAssumed || !got.Token.NextRefreshAt.Equal(tok.NextRefreshAt) {
		t.Fatalf("token meta %+v", got.Token)
	}
	gt, err := st.Token(ctx, f.ID)
	if err != nil || gt.AccessToken != "IGAA-first" || !gt.ObtainedAt.Equal(now) {
		t.Fatalf("Token = %+v, %v", gt, err)
	}
	if _, err := st.Connect(ctx, "zzzzzzzzzz", acct, tok); !errors.Is(err, ErrNotFound) {
		t.Fatalf("connect unknown feed: %v", err)
	}

	// ReplaceToken is a compare-and-swap.
	next := Token{AccessToken: "IGAA-second", TokenMeta: TokenMeta{ObtainedAt: now, ExpiresAt: now.Add(59 * 24 * time.Hour), RefreshedAt: now}}
	if err := st.ReplaceToken(ctx, f.ID, "IGAA-stale", next); !errors.Is(err, ErrTokenChanged) {
		t.Fatalf("CAS with a stale token: %v", err)
	}
	if err := st.ReplaceToken(ctx, f.ID, "IGAA-first", next); err != nil {
		t.Fatal(err)
	}
	if gt, _ := st.Token(ctx, f.ID); gt.AccessToken != "IGAA-second" || gt.ExpiryAssumed || !gt.RefreshedAt.Equal(now) {
		t.Fatalf("after replace %+v", gt.TokenMeta)
	}
	if err := st.RecordRefreshFailure(ctx, f.ID, "Instagram unreachable", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if gt, _ := st.Token(ctx, f.ID); gt.RefreshFailures != 1 || gt.LastRefreshError != "Instagram unreachable" || !gt.NextRefreshAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("after failure %+v", gt.TokenMeta)
	}
	if ids, err := st.TokensDue(ctx, now.Add(2*time.Hour), time.Hour); err != nil || !slices.Equal(ids, []string{f.ID}) {
		t.Fatalf("TokensDue = %v, %v", ids, err)
	}
	if err := st.SetStatus(ctx, f.ID, StatusNeedsReauth, "token revoked"); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Feed(ctx, f.ID); got.Status != StatusNeedsReauth || got.StatusReason != "token revoked" {
		t.Fatalf("status %q %q", got.Status, got.StatusReason)
	}

	// Meta's user_id may be either stored id.
	for _, uid := range []string{"app-1", "ig-1"} {
		if ids, err := st.FeedsForInstagramUser(ctx, uid); err != nil || !slices.Equal(ids, []string{f.ID}) {
			t.Fatalf("FeedsForInstagramUser(%s) = %v, %v", uid, ids, err)
		}
	}
	if ids, err := st.FeedsForInstagramUser(ctx, "someone-else"); err != nil || len(ids) != 0 {
		t.Fatalf("unknown user: %v, %v", ids, err)
	}

	// Reconnecting the same account keeps posts and the profile picture;
	// another account orphans both files.
	seedPosts(t, real, f.ID, "p1", "aa/p1.jpg", "avatar:1", "aa/av1.jpg", now)
	if files, err := st.Connect(ctx, f.ID, acct, tok); err != nil || len(files) != 0 {
		t.Fatalf("same-account reconnect orphaned %v (%v)", files, err)
	}
	if got, _ := st.Feed(ctx, f.ID); got.PostCount != 1 {
		t.Fatalf("same-account reconnect dropped posts: %d", got.PostCount)
	}
	other := acct
	other.AppUserID, other.IGUserID, other.Username = "app-2", "ig-2", "other"
	files, err := st.Connect(ctx, f.ID, other, tok)
	slices.Sort(files)
	if err != nil || !reflect.DeepEqual(files, []string{"aa/av1.jpg", "aa/p1.jpg"}) {
		t.Fatalf("switching accounts orphaned %v (%v)", files, err)
	}

	// Disconnect returns the files it orphaned; the token is gone.
	seedPosts(t, real, f.ID, "p2", "bb/p2.jpg", "avatar:2", "bb/av2.jpg", now)
	files, err = st.Disconnect(ctx, f.ID)
	slices.Sort(files)
	if err != nil || !reflect.DeepEqual(files, []string{"bb/av2.jpg", "bb/p2.jpg"}) {
		t.Fatalf("disconnect orphaned %v (%v)", files, err)
	}
	if _, err := st.Token(ctx, f.ID); !errors.Is(err, ErrNoToken) {
		t.Fatalf("token after disconnect: %v", err)
	}
	if got, _ := st.Feed(ctx, f.ID); got.Status != StatusNotConnected || got.Account != nil || got.Token != nil || got.PostCount != 0 {
		t.Fatalf("after disconnect %+v", got)
	}

	// DeleteFeed returns the files too; the feed is gone.
	if _, err := st.Connect(ctx, f.ID, acct, tok); err != nil {
		t.Fatal(err)
	}
	seedPosts(t, real, f.ID, "p3", "cc/p3.jpg", "avatar:3", "cc/av3.jpg", now)
	files, err = st.DeleteFeed(ctx, f.ID)
	slices.Sort(files)
	if err != nil || !reflect.DeepEqual(files, []string{"cc/av3.jpg", "cc/p3.jpg"}) {
		t.Fatalf("delete orphaned %v (%v)", files, err)
	}
	if _, err := st.Feed(ctx, f.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("feed after delete: %v", err)
	}
	if _, err := st.DeleteFeed(ctx, f.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
	if fs, err := st.Feeds(ctx); err != nil || len(fs) != 0 {
		t.Fatalf("Feeds = %v, %v", fs, err)
	}
}

func TestStoreAdapterStatesAndDeletionRequests(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	st := NewStore(openRealStore(t, clk.Now))
	now := clk.Now().Truncate(time.Second)
	f, err := st.CreateFeed(ctx, "States", nil)
	if err != nil {
		t.Fatal(err)
	}

	hash := bytes.Repeat([]byte{1}, 32)
	sess := bytes.Repeat([]byte{2}, 32)
	if err := st.CreateState(ctx, OAuthState{Hash: hash, FeedID: f.ID, SessionHash: sess, CreatedAt: now, ExpiresAt: now.Add(StateTTL)}); err != nil {
		t.Fatal(err)
	}
	got, err := st.ConsumeState(ctx, hash, now.Add(time.Minute))
	if err != nil || got.FeedID != f.ID || !bytes.Equal(got.SessionHash, sess) || !bytes.Equal(got.Hash, hash) || !got.ExpiresAt.Equal(now.Add(StateTTL)) {
		t.Fatalf("ConsumeState = %+v, %v", got, err)
	}
	if _, err := st.ConsumeState(ctx, hash, now.Add(time.Minute)); !errors.Is(err, ErrStateUsed) {
		t.Fatalf("second use: %v", err)
	}
	if _, err := st.ConsumeState(ctx, bytes.Repeat([]byte{9}, 32), now); !errors.Is(err, ErrStateNotFound) {
		t.Fatalf("unknown state: %v", err)
	}
	apiHash := bytes.Repeat([]byte{3}, 32)
	if err := st.CreateState(ctx, OAuthState{Hash: apiHash, FeedID: f.ID, CreatedAt: now, ExpiresAt: now.Add(StateTTL)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ConsumeState(ctx, apiHash, now.Add(StateTTL)); !errors.Is(err, ErrStateExpired) {
		t.Fatalf("expired state: %v", err)
	}

	r := DeletionRequest{Code: "ABCDEFGHJKLMNPQRSTUV", Kind: KindDelete, UserID: "ig-1", RequestedAt: now}
	if err := st.CreateDeletionRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	dr, err := st.DeletionRequest(ctx, r.Code)
	if err != nil || dr.Kind != KindDelete || dr.UserID != "ig-1" || !dr.RequestedAt.Equal(now) || !dr.CompletedAt.IsZero() {
		t.Fatalf("DeletionRequest = %+v, %v", dr, err)
	}
	if err := st.CompleteDeletionRequest(ctx, r.Code, now.Add(time.Second), 2); err != nil {
		t.Fatal(err)
	}
	if dr, _ := st.DeletionRequest(ctx, r.Code); !dr.CompletedAt.Equal(now.Add(time.Second)) || dr.FeedsAffected != 2 {
		t.Fatalf("completed %+v", dr)
	}
	if _, err := st.DeletionRequest(ctx, "NOSUCHCODE0000000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown code: %v", err)
	}
}

// noGraph satisfies Graph for service tests that must not reach Instagram.
type noGraph struct{}

var errNoGraph = errors.New("test: no Graph calls expected")

func (noGraph) AuthorizeURL(state string) string {
	return "https://instagram.test/oauth?state=" + url.QueryEscape(state)
}
func (noGraph) ExchangeCode(context.Context, string) (graph.ShortLived, error) {
	return graph.ShortLived{}, errNoGraph
}
func (noGraph) ExchangeLongLived(context.Context, string) (graph.Token, error) {
	return graph.Token{}, errNoGraph
}
func (noGraph) Refresh(context.Context, string, string) (graph.Token, error) {
	return graph.Token{}, errNoGraph
}
func (noGraph) Me(context.Context, string, string) (graph.Profile, error) {
	return graph.Profile{}, errNoGraph
}

// TestMetaDeletionOverSQLiteDeletesEverything runs the service over the
// real store: Meta's delete callback leaves every feed bound to the user
// not_connected with no token, posts or files, and leaves others alone.
func TestMetaDeletionOverSQLiteDeletesEverything(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	real := openRealStore(t, clk.Now)
	files, inval := &fakeFiles{}, &fakeInval{}
	const appSecret = "app-secret-for-tests"
	svc, err := New(Options{Store: NewStore(real), Graph: noGraph{}, Files: files, Invalidator: inval,
		PublicURL: "https://feedd.example/sub", AppID: "123", AppSecret: appSecret, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	st := NewStore(real)
	now := clk.Now()
	var ids []string
	for i, u := range []string{"1001", "1001", "1009"} {
		f, err := svc.CreateFeed(ctx, "Feed", nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, f.ID)
		acct := Account{AppUserID: "9" + u, IGUserID: u, Username: "u" + u, AccountType: "BUSINESS", ConnectedAt: now}
		if _, err := st.Connect(ctx, f.ID, acct, Token{AccessToken: "IGAA-" + f.ID, TokenMeta: TokenMeta{ObtainedAt: now, ExpiresAt: now.AddDate(0, 0, 60)}}); err != nil {
			t.Fatal(err)
		}
		p := string(rune('a' + i))
		seedPosts(t, real, f.ID, "p"+p, p+"/post.jpg", "avatar:"+p, p+"/av.jpg", now)
	}

	// Meta identifies the user by the app-scoped id here.
	req, err := svc.MetaCallback(ctx, KindDelete, signed(appSecret, map[string]any{"algorithm": "HMAC-SHA256", "issued_at": now.Unix(), "user_id": "91001"}))
	if err != nil {
		t.Fatal(err)
	}
	if req.FeedsAffected != 2 || !ValidConfirmationCode(req.Code) {
		t.Fatalf("request %+v", req)
	}
	if u := svc.DeletionStatusURL(req.Code); u != "https://feedd.example/sub/auth/instagram/deletion?code="+req.Code {
		t.Fatalf("status URL %q", u)
	}
	for _, id := range ids[:2] {
		f, err := svc.Feed(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if f.Status != StatusNotConnected || f.Account != nil || f.Token != nil || f.PostCount != 0 {
			t.Errorf("feed %s after deletion: %+v", id, f)
		}
		if _, err := st.Token(ctx, id); !errors.Is(err, ErrNoToken) {
			t.Errorf("feed %s still has a token: %v", id, err)
		}
	}
	gotFiles := files.list()
	slices.Sort(gotFiles)
	if want := []string{"a/av.jpg", "a/post.jpg", "b/av.jpg", "b/post.jpg"}; !reflect.DeepEqual(gotFiles, want) {
		t.Errorf("removed files %v, want %v", gotFiles, want)
	}
	if f, _ := svc.Feed(ctx, ids[2]); f.Status != StatusActive || f.PostCount != 1 {
		t.Errorf("another user's feed was touched: %+v", f)
	}
	refs, err := real.ReferencedFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := refs["c/post.jpg"]; !ok || len(refs) != 2 {
		t.Errorf("referenced files after deletion: %v", refs)
	}
	dr, err := svc.Deletion(ctx, req.Code)
	if err != nil || dr.CompletedAt.IsZero() || dr.FeedsAffected != 2 {
		t.Errorf("recorded request %+v, %v", dr, err)
	}
}
