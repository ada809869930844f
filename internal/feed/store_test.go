package feed

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
)

// TestRealStoreEndToEnd runs the service over the SQLite store and the
// sandbox: first request, background fetch, poll with a deleted post
// (its files go), and a restart with Instagram down serving the snapshot.
func TestRealStoreEndToEnd(t *testing.T) {
	env := newEnv(t, envOptions{})
	ctx := context.Background()
	if _, err := env.st.UpdateFeed(ctx, env.id, nil, &[]string{"https://shop.example"}); err != nil {
		t.Fatal(err)
	}
	svc := env.svc

	// Not fetched yet: empty at once, then the background fetch fills it.
	d, origins, err := svc.Doc(ctx, env.id, 0, "", nil)
	if err != nil || d.Account != nil || len(d.Posts) != 0 || len(origins) != 1 {
		t.Fatalf("first request: %+v %v %v", d, origins, err)
	}
	waitFor(t, func() bool { d, _, _ := svc.Doc(ctx, env.id, 0, "", nil); return d != nil && len(d.Posts) > 0 })
	// The first poll publishes its first page early and goes on: a "fetch
	// now" while it runs joins it, and it read the posts before the
	// deletion below. This one waits for it to end.
	if err := svc.FetchNow(ctx, env.id); err != nil {
		t.Fatal(err)
	}
	d, _, err = svc.Doc(ctx, env.id, 0, "", nil)
	if err != nil || d.Account == nil || d.Account.Avatar == nil || len(d.Posts) == 0 || d.Stale {
		t.Fatalf("after the first fetch: %+v %v", d, err)
	}
	if ff := env.feed(); ff.LastViewedAt.IsZero() || ff.Account.AvatarKey == "" {
		t.Fatalf("view or avatar not recorded: %+v", ff)
	}
	n := len(d.Posts)

	// A deleted post disappears and its files are removed.
	gone := d.Posts[len(d.Posts)-1]
	env.sb.DeletePost(sandbox.AccountCreator, gone.ID)
	env.clock.Add(16 * time.Minute)
	if err := svc.FetchNow(ctx, env.id); err != nil {
		t.Fatal(err)
	}
	d, _, _ = svc.Doc(ctx, env.id, 0, "", nil)
	if len(d.Posts) != n-1 {
		t.Fatalf("%d posts after a delete, want %d", len(d.Posts), n-1)
	}
	if gone.Type != TypeCarousel && env.fileExists(t, gone.Images[0].URL) {
		t.Error("the deleted post's file is still stored")
	}

	// Restart with Instagram down: the database is the last good snapshot.
	svc.Close()
	env.st.Close()
	env.sb.SetOutage(true)
	env.st = env.openStore()
	env.conns.st = env.st
	svc = env.newService()
	d2, _, err := svc.Doc(ctx, env.id, 0, "", nil)
	if err != nil || len(d2.Posts) != n-1 || d2.Account == nil {
		t.Fatalf("after restart: %v posts=%d", err, len(d2.Posts))
	}
	if _, _, err := svc.Doc(ctx, "zzzzzzzzzz", 0, "", nil); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("unknown feed: %v", err)
	}
}
