package feed

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
)

// heldAfterFirstPage is an env on the business account (more posts than
// the first page) whose image downloads are held once the first page's
// covers and the avatar are stored, so that a test can change the
// connection while the first poll is half-way.
func heldAfterFirstPage(t *testing.T) (*env, *gatedMedia) {
	t.Helper()
	var gm *gatedMedia
	var n atomic.Int32
	fx := newEnv(t, envOptions{account: sandbox.AccountBusiness, media: func(m Media) Media {
		gm = newGatedMedia(m, func(string) bool { return n.Add(1) > FirstPublish+1 })
		return gm
	}})
	return fx, gm
}

// startHeldPoll starts the feed's first poll and returns once its first
// page is published and its other downloads are held.
func startHeldPoll(t *testing.T, fx *env, gm *gatedMedia) chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fx.fetchNow() }()
	select {
	case <-gm.reached:
	case err := <-done:
		t.Fatalf("poll ended (%v) before its downloads were held", err)
	}
	if d := fx.doc(t, ""); len(d.Posts) == 0 || d.Account == nil || d.Account.Username != fx.user {
		t.Fatalf("first page of %s not published: %+v", fx.user, d)
	}
	return done
}

// filesOf lists the local files a document's images name.
func (e *env) filesOf(t *testing.T, d Doc) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	add := func(ims []Image) {
		for _, im := range ims {
			rel, ok := strings.CutPrefix(im.URL, "https://feeds.example.com/media/")
			if !ok {
				t.Fatalf("image URL %s is not a local one", im.URL)
			}
			out[rel] = true
		}
	}
	if d.Account != nil && d.Account.Avatar != nil {
		add([]Image{*d.Account.Avatar})
	}
	for _, p := range d.Posts {
		add(p.Images)
		for _, c := range p.Children {
			add(c.Images)
		}
	}
	return out
}

// Connecting another account while a poll of the first one downloads its
// images: the feed shows the new account's posts and profile only, and no
// image of the first account stays on disk.
func TestReconnectDuringAPollShowsOnlyTheNewAccount(t *testing.T) {
	fx, gm := heldAfterFirstPage(t)
	oldUser := fx.user
	done := startHeldPoll(t, fx, gm)

	fx.connect(fx.id, sandbox.AccountCreator)
	close(gm.release)
	if err := <-done; err != nil {
		t.Fatalf("refresh: %v", err)
	}

	b, _ := fx.sb.Account(sandbox.AccountCreator)
	want, _ := fx.sb.Posts(sandbox.AccountCreator)
	old, _ := fx.sb.Posts(sandbox.AccountBusiness)
	d := fx.doc(t, "limit=100")
	if d.Account == nil || d.Account.Username != b.Username || d.Account.Avatar == nil {
		t.Fatalf("account after the reconnect: %+v, want %s with an avatar", d.Account, b.Username)
	}
	if len(d.Posts) != len(want) {
		t.Errorf("%d posts, want the new account's %d", len(d.Posts), len(want))
	}
	for _, p := range d.Posts {
		if slices.ContainsFunc(old, func(o sandbox.Post) bool { return o.ID == p.ID }) {
			t.Fatalf("post %s of %s shown after connecting %s", p.ID, oldUser, b.Username)
		}
	}
	if f := fx.feed(); f.Account == nil || f.Account.Username != b.Username || f.PostCount != len(want) {
		t.Errorf("stored feed: %+v", f)
	}
	// Every file on disk is one the feed shows.
	shown := fx.filesOf(t, d)
	for _, f := range fx.mediaFiles() {
		if !shown[f] {
			t.Errorf("file %s left on disk; the feed does not show it", f)
		}
	}
}

// Meta's data deletion during a poll: the poll's late writes bring nothing
// back and leave no image on disk.
func TestDataDeletionDuringAPollLeavesNothing(t *testing.T) {
	fx, gm := heldAfterFirstPage(t)
	done := startHeldPoll(t, fx, gm)

	files, err := fx.st.Disconnect(context.Background(), fx.id)
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.media.Remove(files); err != nil {
		t.Fatal(err)
	}
	close(gm.release)
	if err := <-done; !errors.Is(err, model.ErrNotConnected) {
		t.Errorf("refresh after the deletion: %v, want not connected", err)
	}
	fx.svc.Invalidate(fx.id)
	if d := fx.doc(t, ""); d.Account != nil || len(d.Posts) != 0 {
		t.Errorf("feed after the deletion: %+v", d)
	}
	if f := fx.feed(); f.Status != model.StatusNotConnected || f.Account != nil || f.PostCount != 0 {
		t.Errorf("stored feed after the deletion: %+v", f)
	}
	if files := fx.mediaFiles(); len(files) != 0 {
		t.Errorf("%d images left on disk after the deletion, e.g. %s", len(files), files[0])
	}
}
