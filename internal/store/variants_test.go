package store

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
)

func jpegMedia(key string) model.Media {
	return model.Media{Key: key, Width: 1080, Height: 1080, Color: "#102030", Bytes: 300,
		Variants: []model.Variant{{Width: 320, Height: 320, File: "aa/" + key + "-320.jpg", Bytes: 100},
			{Width: 1080, Height: 1080, File: "aa/" + key + "-1080.jpg", Bytes: 200}}}
}

func pendingKeys(t *testing.T, s *Store, formats []string, at time.Time) []string {
	t.Helper()
	ms, err := s.PendingFormats(context.Background(), formats, 3, at, "me", 10)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, m := range ms {
		keys = append(keys, m.Key)
	}
	return keys
}

// putJPEGs stores a media row with JPEGs only under each key.
func putJPEGs(t *testing.T, s *Store, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if err := s.PutMedia(context.Background(), jpegMedia(k)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFormatsArePendingUntilRecorded(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		putJPEGs(t, e.s, "a", "b")
		both := []string{model.FormatAVIF, model.FormatWebP}
		if got := pendingKeys(t, e.s, both, t0); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("pending %v, want a b", got)
		}
		a := jpegMedia("a")
		added := []model.Variant{{Width: 320, Height: 320, File: "bb/a-320.avif", Bytes: 10, Format: model.FormatAVIF},
			{Width: 1080, Height: 1080, File: "bb/a-1080.avif", Bytes: 20, Format: model.FormatAVIF}}
		if _, err := e.s.AddFormats(ctx, a, added, []string{model.FormatAVIF}); err != nil {
			t.Fatal(err)
		}
		got, err := e.s.Media(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Variants) != 4 || got.Variants[3] != added[1] || got.Bytes != 330 {
			t.Errorf("after AddFormats: %+v", got)
		}
		// a lacks WebP still; with AVIF alone wanted, only b is pending.
		if got := pendingKeys(t, e.s, both, t0); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("pending for both %v", got)
		}
		if got := pendingKeys(t, e.s, []string{model.FormatAVIF}, t0); !slices.Equal(got, []string{"b"}) {
			t.Errorf("pending for avif %v, want b", got)
		}
		if n, err := e.s.CountPendingFormats(ctx, []string{model.FormatAVIF}, 3); err != nil || n != 1 {
			t.Errorf("CountPendingFormats = %d, %v", n, err)
		}
		// The row read before AddFormats is outdated now: refused.
		if _, err := e.s.AddFormats(ctx, a, nil, both); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("AddFormats on an outdated read: %v, want ErrNotFound", err)
		}
		if _, err := e.s.AddFormats(ctx, jpegMedia("gone"), nil, both); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("AddFormats of a missing key: %v, want ErrNotFound", err)
		}
		// Files the rows name are not the encoder's to remove.
		unnamed, err := e.s.UnnamedFiles(ctx, []string{"bb/a-320.avif", "cc/nobody.webp"})
		if err != nil || !slices.Equal(unnamed, []string{"cc/nobody.webp"}) {
			t.Errorf("UnnamedFiles = %v, %v", unnamed, err)
		}
	})
}

func TestFormatFailuresDeferAndEnd(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		if err := e.s.PutMedia(ctx, jpegMedia("a")); err != nil {
			t.Fatal(err)
		}
		webp := []string{model.FormatWebP}
		for want := 1; want <= 3; want++ {
			n, err := e.s.FormatFailed(ctx, "a", func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) })
			if err != nil || n != want {
				t.Fatalf("FormatFailed = %d, %v; want %d", n, err, want)
			}
			if got := pendingKeys(t, e.s, webp, t0.Add(time.Duration(n)*time.Hour-time.Second)); len(got) != 0 && n < 3 {
				t.Errorf("due before its retry time: %v", got)
			}
		}
		// Three failures with a limit of three: never pending again.
		if got := pendingKeys(t, e.s, webp, t0.Add(1000*time.Hour)); len(got) != 0 {
			t.Errorf("pending after the last failure: %v", got)
		}
		if _, err := e.s.FormatFailed(ctx, "gone", func(int) time.Time { return t0 }); !errors.Is(err, model.ErrNotFound) {
			t.Errorf("FormatFailed of a missing key: %v", err)
		}
	})
}

// The covers of the posts shown first are encoded first, whenever they
// were stored: a grid's first row gets its formats before its last.
func TestPendingFormatsPutTheFirstPostsFirst(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		f, err := e.s.CreateFeed(ctx, "f", nil)
		if err != nil {
			t.Fatal(err)
		}
		connect(t, e.s, f.ID, "1", "IGAAfirst")
		// Stored in the order a poll stores them: the first post's first.
		for _, k := range []string{"post:3", "post:1", "post:2"} {
			if err := e.s.PutMedia(ctx, jpegMedia(k)); err != nil {
				t.Fatal(err)
			}
			e.clk.Advance(time.Second)
		}
		posts := []model.Post{
			{ID: "3", MediaType: model.MediaImage, Timestamp: t0, MediaKey: "post:3"},
			{ID: "1", MediaType: model.MediaImage, Timestamp: t0.Add(-time.Hour), MediaKey: "post:1"},
		}
		if _, err := e.s.ReplacePosts(ctx, f.ID, e.gen(t, f.ID), nil, posts, t0); err != nil {
			t.Fatal(err)
		}
		if got := pendingKeys(t, e.s, []string{model.FormatWebP}, t0); !slices.Equal(got, []string{"post:3", "post:1", "post:2"}) {
			t.Errorf("pending %v, want the first post's cover, the second's, then the image no post shows", got)
		}
	})
}

// An image being encoded is claimed by one instance: another neither lists
// nor claims it until the claim lapses, and nobody claims it once it is
// done or deferred after a failure, whatever an older list says.
func TestFormatClaims(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		putJPEGs(t, e.s, "a", "b")
		avif := []string{model.FormatAVIF}
		claim := func(key, holder string) bool {
			t.Helper()
			now := e.clk.Now()
			return must[bool](t)(e.s.ClaimFormats(ctx, key, avif, 3, now, holder, now.Add(10*time.Minute)))
		}
		if !claim("a", "x") {
			t.Fatal("first claim refused")
		}
		if claim("a", "y") {
			t.Fatal("a second instance claimed a held image")
		}
		if got := pendingKeys(t, e.s, avif, e.clk.Now()); !slices.Equal(got, []string{"b"}) {
			t.Fatalf("another instance lists %v, want b only", got)
		}
		e.clk.Advance(10 * time.Minute)
		if !claim("a", "y") {
			t.Fatal("a lapsed claim was not taken over")
		}
		added := []model.Variant{{Width: 320, Height: 320, File: "bb/a-320.avif", Bytes: 10, Format: model.FormatAVIF}}
		if _, err := e.s.AddFormats(ctx, jpegMedia("a"), added, avif); err != nil {
			t.Fatal(err)
		}
		if claim("a", "x") {
			t.Fatal("an image already done was claimed from a stale list")
		}
		if !claim("b", "x") {
			t.Fatal("b refused")
		}
		if _, err := e.s.FormatFailed(ctx, "b", func(int) time.Time { return e.clk.Now().Add(time.Hour) }); err != nil {
			t.Fatal(err)
		}
		if claim("b", "y") {
			t.Fatal("an image deferred after a failure was claimed at once")
		}
		if claim("gone", "x") {
			t.Fatal("claimed an image that does not exist")
		}
		e.clk.Advance(time.Hour)
		if !claim("b", "y") {
			t.Fatal("b not claimable when due again")
		}
		if err := e.s.ClearLeases(ctx); err != nil {
			t.Fatal(err)
		}
		if !claim("b", "z") {
			t.Fatal("b still held after ClearLeases")
		}
	})
}
