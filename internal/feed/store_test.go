package feed

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/secret"
	"github.com/feedd/feedd/internal/store"
)

// TestRealStoreEndToEnd runs the service over the SQLite store and the
// sandbox: first request, background fetch, poll with a deleted post
// (its files go), and a restart with Instagram down serving the snapshot.
func TestRealStoreEndToEnd(t *testing.T) {
	env := newSandboxEnv(t, sandbox.AccountCreator, true)
	ctx := context.Background()
	box, err := secret.New(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "feedd.db")
	open := func() *store.Store {
		st, err := store.Open(ctx, path, box, store.Options{Now: env.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open()
	f, err := st.CreateFeed(ctx, "Shop", []string{"https://shop.example"})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := env.sb.Account(sandbox.AccountCreator)
	tok := env.sb.MintLongLivedToken(sandbox.AccountCreator, env.clock.Now().Add(-48*time.Hour))
	if _, err := st.Connect(ctx, f.ID, store.Account{AppUserID: a.ID, IGUserID: a.UserID, Username: a.Username, AccountType: a.AccountType},
		store.Token{AccessToken: tok, ObtainedAt: env.clock.Now().Add(-48 * time.Hour), ExpiresAt: env.clock.Now().Add(50 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	newSvc := func(st *store.Store) *Service {
		svc, err := New(Options{Store: NewStore(st), Graph: NewGraphClient(env.graph), Media: NewMediaFetcher(env.media),
			PublicURL: "https://feeds.example.com", Now: env.clock.Now, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(svc.Close)
		return svc
	}
	svc := newSvc(st)

	// Not fetched yet: empty at once, then the background fetch fills it.
	d, origins, err := svc.Doc(ctx, f.ID, 0, "", nil)
	if err != nil || d.Account != nil || len(d.Posts) != 0 || len(origins) != 1 {
		t.Fatalf("first request: %+v %v %v", d, origins, err)
	}
	waitFor(t, func() bool { d, _, _ := svc.Doc(ctx, f.ID, 0, "", nil); return d != nil && len(d.Posts) > 0 })
	d, _, err = svc.Doc(ctx, f.ID, 0, "", nil)
	if err != nil || d.Account == nil || d.Account.Avatar == nil || len(d.Posts) == 0 || d.Stale {
		t.Fatalf("after the first fetch: %+v %v", d, err)
	}
	if ff, _ := st.Feed(ctx, f.ID); ff.LastViewedAt.IsZero() || ff.Account.AvatarKey == "" {
		t.Fatalf("view or avatar not recorded: %+v", ff)
	}
	n := len(d.Posts)

	// A deleted post disappears and its files are removed.
	gone := d.Posts[len(d.Posts)-1]
	env.sb.DeletePost(sandbox.AccountCreator, gone.ID)
	env.clock.Add(16 * time.Minute)
	if err := svc.FetchNow(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	d, _, _ = svc.Doc(ctx, f.ID, 0, "", nil)
	if len(d.Posts) != n-1 {
		t.Fatalf("%d posts after a delete, want %d", len(d.Posts), n-1)
	}
	if gone.Type != TypeCarousel && env.fileExists(t, gone.Images[0].URL) {
		t.Error("the deleted post's file is still stored")
	}

	// Restart with Instagram down: the database is the last good snapshot.
	svc.Close()
	st.Close()
	env.sb.SetOutage(true)
	st = open()
	defer st.Close()
	svc = newSvc(st)
	d2, _, err := svc.Doc(ctx, f.ID, 0, "", nil)
	if err != nil || len(d2.Posts) != n-1 || d2.Account == nil {
		t.Fatalf("after restart: %v posts=%d", err, len(d2.Posts))
	}
	if _, _, err := svc.Doc(ctx, "zzzzzzzzzz", 0, "", nil); err != ErrNotFound {
		t.Fatalf("unknown feed: %v", err)
	}
}
