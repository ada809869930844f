package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
)

func srcToken(tok string) model.Token {
	return model.Token{AccessToken: tok, TokenInfo: model.TokenInfo{ObtainedAt: t0, ExpiresAt: t0.Add(60 * 24 * time.Hour)}}
}

func srcAccount(ig string) model.Account {
	return model.Account{AppUserID: "app-" + ig, IGUserID: ig, Username: "user_" + ig, AccountType: "BUSINESS"}
}

func postAt(id, key string, ts time.Time) model.Post {
	p := post(id, key)
	p.Timestamp = ts
	return p
}

func ids(posts []model.Post) string {
	var out []string
	for _, p := range posts {
		out = append(out, p.ID+"@"+p.SourceID)
	}
	return strings.Join(out, " ")
}

// Two accounts' posts come out newest first, each post naming its source,
// and a poll of one source replaces only that source's posts.
// twoAccounts is a feed connected to its first account ("IGAAmain") with a
// second one added as a source ("IGAAsecond"), and the feed's generation.
func twoAccounts(t *testing.T, e *env) (model.Feed, model.Source, int64) {
	t.Helper()
	ctx := context.Background()
	f := must[model.Feed](t)(e.s.CreateFeed(ctx, "a", nil))
	connect(t, e.s, f.ID, "main1", "IGAAmain")
	gen := e.gen(t, f.ID)
	src := must[model.Source](t)(e.s.AddSource(ctx, f.ID, gen, "", srcAccount("second"), srcToken("IGAAsecond")))
	return f, src, gen
}

func TestSourcesMergeNewestFirstAndReplaceOnlyTheirOwnPosts(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		e := open(t)
		ctx := context.Background()
		f, src, gen := twoAccounts(t, e)
		if src.ID == model.MainSource || !model.ValidSourceID(src.ID) || src.Status != model.StatusActive || src.Account.Username != "user_second" {
			t.Fatalf("added source %+v", src)
		}
		h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
		must[[]string](t)(e.s.ReplacePosts(ctx, f.ID, gen, nil, []model.Post{postAt("m3", "", h(5)), postAt("m2", "", h(3)), postAt("m1", "", h(1))}, t0))
		must[[]string](t)(e.s.ReplaceSourcePosts(ctx, f.ID, src.ID, gen, src.Generation, nil,
			[]model.Post{postAt("s2", "", h(4)), postAt("s1", "", h(3)), postAt("s0", "", h(0))}, t0))
		want := "m3@main s2@" + src.ID + " m2@main s1@" + src.ID + " m1@main s0@" + src.ID
		if got := ids(must[[]model.Post](t)(e.s.Posts(ctx, f.ID))); got != want {
			t.Fatalf("merged posts: %s\nwant %s", got, want)
		}

		// The main account's next poll leaves the second account's posts.
		must[[]string](t)(e.s.ReplacePosts(ctx, f.ID, gen, nil, []model.Post{postAt("m4", "", h(6))}, t0))
		want = "m4@main s2@" + src.ID + " s1@" + src.ID + " s0@" + src.ID
		if got := ids(must[[]model.Post](t)(e.s.Posts(ctx, f.ID))); got != want {
			t.Fatalf("after the main source's poll: %s\nwant %s", got, want)
		}
		srcs := must[[]model.Source](t)(e.s.Sources(ctx, f.ID))
		if len(srcs) != 2 || srcs[0].ID != model.MainSource || srcs[0].Account.IGUserID != "main1" || srcs[1].ID != src.ID ||
			!srcs[1].FetchedAt.Equal(t0) {
			t.Fatalf("sources: %+v", srcs)
		}
		// Each token opens with its own row; neither is the other's.
		if tok := must[model.Token](t)(e.s.SourceToken(ctx, f.ID, src.ID)); tok.AccessToken != "IGAAsecond" || tok.SourceID != src.ID {
			t.Fatalf("source token %q of %q", tok.AccessToken, tok.SourceID)
		}
		if tok := must[model.Token](t)(e.s.SourceToken(ctx, f.ID, model.MainSource)); tok.AccessToken != "IGAAmain" {
			t.Fatalf("main token %q", tok.AccessToken)
		}
	})
}

func TestSourceAddedTwiceOrOfAnotherFeedIsRefused(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		e := open(t)
		ctx := context.Background()
		f := must[model.Feed](t)(e.s.CreateFeed(ctx, "a", nil))
		other := must[model.Feed](t)(e.s.CreateFeed(ctx, "b", nil))
		if _, err := e.s.AddSource(ctx, f.ID, AnyGeneration, "", srcAccount("x"), srcToken("IGAAx")); !errors.Is(err, model.ErrNotConnected) {
			t.Fatalf("a source for a feed not connected: %v, want ErrNotConnected", err)
		}
		connect(t, e.s, f.ID, "main1", "IGAAmain")
		connect(t, e.s, other.ID, "o1", "IGAAo")
		gen := e.gen(t, f.ID)
		if _, err := e.s.AddSource(ctx, f.ID, gen, "", srcAccount("main1"), srcToken("IGAAagain")); !errors.Is(err, model.ErrSourceDuplicate) {
			t.Fatalf("the main account again: %v, want ErrSourceDuplicate", err)
		}
		src := must[model.Source](t)(e.s.AddSource(ctx, f.ID, gen, "", srcAccount("second"), srcToken("IGAAsecond")))
		if _, err := e.s.AddSource(ctx, f.ID, gen, "", srcAccount("second"), srcToken("IGAAsecond2")); !errors.Is(err, model.ErrSourceDuplicate) {
			t.Fatalf("an active source again: %v, want ErrSourceDuplicate", err)
		}
		// The main connection cannot move onto an account that is a source.
		if _, _, err := e.s.Connect(ctx, f.ID, gen, srcAccount("second"), srcToken("IGAAc")); !errors.Is(err, model.ErrSourceDuplicate) {
			t.Fatalf("connect to a source's account: %v, want ErrSourceDuplicate", err)
		}
		// Another feed's source is not this feed's.
		if _, err := e.s.RemoveSource(ctx, other.ID, src.ID); !errors.Is(err, model.ErrSourceNotFound) {
			t.Fatalf("remove through another feed: %v, want ErrSourceNotFound", err)
		}
		if err := e.s.SetHeaderSource(ctx, other.ID, src.ID); !errors.Is(err, model.ErrSourceNotFound) {
			t.Fatalf("header from another feed's source: %v, want ErrSourceNotFound", err)
		}
		if _, err := e.s.SourceToken(ctx, other.ID, src.ID); !errors.Is(err, model.ErrSourceNotFound) {
			t.Fatalf("token through another feed: %v, want ErrSourceNotFound", err)
		}
		if _, err := e.s.RemoveSource(ctx, f.ID, model.MainSource); !errors.Is(err, model.ErrMainSource) {
			t.Fatalf("remove the main source: %v, want ErrMainSource", err)
		}
		if got := len(must[[]model.Source](t)(e.s.Sources(ctx, other.ID))); got != 1 {
			t.Fatalf("the other feed has %d sources, want 1", got)
		}
		// At most MaxSources in all.
		for i := 2; i < model.MaxSources; i++ {
			must[model.Source](t)(e.s.AddSource(ctx, f.ID, gen, "", srcAccount("n"+string(rune('a'+i))), srcToken("IGAAn")))
		}
		if _, err := e.s.AddSource(ctx, f.ID, gen, "", srcAccount("toomany"), srcToken("IGAAt")); !errors.Is(err, model.ErrTooManySources) {
			t.Fatalf("source %d: %v, want ErrTooManySources", model.MaxSources+1, err)
		}
	})
}

// A source's removal drops its posts and the images only they used; the
// other account's stay.
func TestRemovedSourceTakesItsPostsAndImages(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		e := open(t)
		ctx := context.Background()
		f, src, gen := twoAccounts(t, e)
		for _, m := range []model.Media{media("post:m", "m.jpg"), media("post:s", "s.jpg"), media("avatar:s", "av.jpg")} {
			if err := e.s.PutMedia(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		must[[]string](t)(e.s.ReplacePosts(ctx, f.ID, gen, nil, []model.Post{post("m", "post:m")}, t0))
		acct := srcAccount("second")
		acct.AvatarKey = "avatar:s"
		must[[]string](t)(e.s.ReplaceSourcePosts(ctx, f.ID, src.ID, gen, src.Generation, &acct, []model.Post{post("s", "post:s")}, t0))
		if err := e.s.SetHeaderSource(ctx, f.ID, src.ID); err != nil {
			t.Fatal(err)
		}

		files := must[[]string](t)(e.s.RemoveSource(ctx, f.ID, src.ID))
		slices.Sort(files)
		if strings.Join(files, " ") != "av.jpg s.jpg" {
			t.Fatalf("files to delete: %v, want the source's avatar and post image", files)
		}
		if got := ids(must[[]model.Post](t)(e.s.Posts(ctx, f.ID))); got != "m@main" {
			t.Fatalf("posts left: %s", got)
		}
		if _, err := e.s.Media(ctx, "post:m"); err != nil {
			t.Fatalf("the main account's image: %v", err)
		}
		if fd := must[model.Feed](t)(e.s.Feed(ctx, f.ID)); fd.HeaderSource != model.MainSource {
			t.Fatalf("header source after removal: %q", fd.HeaderSource)
		}
		// A poll of the removed source that ends now writes nothing.
		if _, err := e.s.ReplaceSourcePosts(ctx, f.ID, src.ID, gen, src.Generation, nil, []model.Post{post("late", "")}, t0); !errors.Is(err, model.ErrConnectionChanged) {
			t.Fatalf("late poll of a removed source: %v, want ErrConnectionChanged", err)
		}
		if _, err := e.s.RemoveSource(ctx, f.ID, src.ID); !errors.Is(err, model.ErrSourceNotFound) {
			t.Fatalf("second removal: %v", err)
		}
	})
}

// A source reconnected, or a feed disconnected, while a poll or refresh of
// the source runs: the older writes are refused and change nothing.
func TestWritesOfAnOlderSourceConnectionAreRefused(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		e := open(t)
		ctx := context.Background()
		f, src, gen := twoAccounts(t, e)

		// The token is rejected: the source needs reconnecting, the feed's
		// own status is untouched.
		from, changed, err := e.s.ChangeSourceStatus(ctx, model.SourceChange{FeedID: f.ID, SourceID: src.ID, FeedGeneration: gen,
			Generation: src.Generation, To: model.StatusNeedsReauth, Reason: "token revoked", IfToken: "IGAAsecond"})
		if err != nil || from != model.StatusActive || !changed {
			t.Fatalf("change source status: %v %v %v", from, changed, err)
		}
		srcs := must[[]model.Source](t)(e.s.Sources(ctx, f.ID))
		worst, _ := model.Worst(srcs)
		if srcs[0].Status != model.StatusActive || worst.ID != src.ID || worst.Status != model.StatusNeedsReauth {
			t.Fatalf("after the rejection: main %s, worst %s %s", srcs[0].Status, worst.ID, worst.Status)
		}
		if due := must[[]model.Token](t)(e.s.SourceTokensDue(ctx, t0.Add(59*24*time.Hour), 7*24*time.Hour)); len(due) != 0 {
			t.Fatalf("a source needing reconnection is due for refresh: %d", len(due))
		}

		// Reconnected: same id and posts, new generation; the old poll's
		// and the old token's writes are refused.
		re := must[model.Source](t)(e.s.AddSource(ctx, f.ID, gen, "", srcAccount("second"), srcToken("IGAAsecondnew")))
		if re.ID != src.ID || re.Generation == src.Generation || re.Status != model.StatusActive {
			t.Fatalf("reconnected source %+v (was %+v)", re, src)
		}
		if _, err := e.s.ReplaceSourcePosts(ctx, f.ID, src.ID, gen, src.Generation, nil, []model.Post{post("old", "")}, t0); !errors.Is(err, model.ErrConnectionChanged) {
			t.Fatalf("poll of the older source connection: %v, want ErrConnectionChanged", err)
		}
		if _, _, err := e.s.ChangeSourceStatus(ctx, model.SourceChange{FeedID: f.ID, SourceID: src.ID, FeedGeneration: gen,
			Generation: src.Generation, To: model.StatusNeedsReauth}); !errors.Is(err, model.ErrConnectionChanged) {
			t.Fatalf("status change of the older source connection: %v, want ErrConnectionChanged", err)
		}
		if err := e.s.ReplaceSourceToken(ctx, f.ID, src.ID, "IGAAsecond", srcToken("IGAArefreshedold")); !errors.Is(err, model.ErrTokenChanged) {
			t.Fatalf("refresh of the older token: %v, want ErrTokenChanged", err)
		}
		if err := e.s.ReplaceSourceToken(ctx, f.ID, src.ID, "IGAAsecondnew", srcToken("IGAArefreshed")); err != nil {
			t.Fatal(err)
		}
		if tok := must[model.Token](t)(e.s.SourceToken(ctx, f.ID, src.ID)); tok.AccessToken != "IGAArefreshed" {
			t.Fatalf("token after refresh %q", tok.AccessToken)
		}

		// A disconnect ends every source; their writes are refused.
		must[[]string](t)(e.s.ReplaceSourcePosts(ctx, f.ID, src.ID, gen, re.Generation, nil, []model.Post{post("s", "")}, t0))
		if _, _, err := e.s.Disconnect(ctx, f.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.ReplaceSourcePosts(ctx, f.ID, src.ID, gen, re.Generation, nil, []model.Post{post("s2", "")}, t0); !errors.Is(err, model.ErrConnectionChanged) {
			t.Fatalf("poll across a disconnect: %v, want ErrConnectionChanged", err)
		}
		if n := len(must[[]model.Source](t)(e.s.Sources(ctx, f.ID))); n != 0 {
			t.Fatalf("%d sources after disconnect", n)
		}
		if n := len(must[[]model.Post](t)(e.s.Posts(ctx, f.ID))); n != 0 {
			t.Fatalf("%d posts after disconnect", n)
		}
	})
}

// A further source's token is sealed under its own row and re-sealed when
// the key rotates.
func TestSourceTokensSurviveKeyRotation(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := open(t)
		f, src, _ := twoAccounts(t, e)
		var sealed []byte
		if err := e.s.r.QueryRowContext(ctx, `SELECT sealed FROM sources WHERE id = ?`, src.ID).Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(sealed), "IGAAsecond") {
			t.Fatal("the source token is stored in the clear")
		}
		if _, err := e.s.box.Open(sealed, tokenAAD(f.ID)); err == nil {
			t.Fatal("a source token opens as the feed's main token")
		}
		e.s.Close()
		s := must[*Store](t)(e.reopen(t, box(t, key(2), key(1)), Options{}))
		s.Close()
		s = must[*Store](t)(e.reopen(t, box(t, key(2)), Options{}))
		if tok := must[model.Token](t)(s.SourceToken(ctx, f.ID, src.ID)); tok.AccessToken != "IGAAsecond" {
			t.Fatalf("source token after rotation %q", tok.AccessToken)
		}
	})
}

// Of two instances, one claims a source token's refresh slot; once the
// refreshed token is stored, the old slot cannot be claimed again.
func TestSourceRefreshIsClaimedOncePerSlot(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		e := open(t)
		ctx := context.Background()
		f, src, _ := twoAccounts(t, e)
		until := t0.Add(time.Minute)
		a := must[bool](t)(e.s.ClaimSourceRefresh(ctx, f.ID, src.ID, "a", src.Token, until))
		b := must[bool](t)(e.s.ClaimSourceRefresh(ctx, f.ID, src.ID, "b", src.Token, until))
		if !a || b {
			t.Fatalf("claims: a %v, b %v; want a only", a, b)
		}
		if ok := must[bool](t)(e.s.RenewLease(ctx, model.LeaseSourceRefresh, f.ID+"/"+src.ID, "b", until)); ok {
			t.Fatal("b renewed a's claim")
		}
		if ok := must[bool](t)(e.s.RenewLease(ctx, model.LeaseSourceRefresh, f.ID+"/"+src.ID, "a", until)); !ok {
			t.Fatal("a could not renew its claim")
		}
		e.clk.Advance(time.Second)
		fresh := model.Token{AccessToken: "IGAAfresh", TokenInfo: model.TokenInfo{ExpiresAt: t0.Add(60 * 24 * time.Hour)}} // obtained now
		if err := e.s.ReplaceSourceToken(ctx, f.ID, src.ID, "IGAAsecond", fresh); err != nil {
			t.Fatal(err)
		}
		if err := e.s.ReleaseLease(ctx, model.LeaseSourceRefresh, f.ID+"/"+src.ID, "a"); err != nil {
			t.Fatal(err)
		}
		// b read the token before the refresh: its slot is gone.
		if ok := must[bool](t)(e.s.ClaimSourceRefresh(ctx, f.ID, src.ID, "b", src.Token, until)); ok {
			t.Fatal("the refreshed slot was claimed again")
		}
	})
}

// A further source's token is refreshed while the main account needs
// reconnecting: the feed goes on showing that account.
func TestSourceTokenIsDueWhileTheMainAccountNeedsReconnecting(t *testing.T) {
	engines(t, func(t *testing.T, open opener) {
		e := open(t)
		ctx := context.Background()
		f, src, gen := twoAccounts(t, e)
		if _, _, err := e.s.ChangeStatus(ctx, model.StatusChange{FeedID: f.ID, Generation: gen, To: model.StatusNeedsReauth}); err != nil {
			t.Fatal(err)
		}
		due := must[[]model.Token](t)(e.s.SourceTokensDue(ctx, t0.Add(59*24*time.Hour), 7*24*time.Hour))
		if len(due) != 1 || due[0].SourceID != src.ID || due[0].AccessToken != "IGAAsecond" {
			t.Fatalf("due source tokens: %d", len(due))
		}
	})
}
