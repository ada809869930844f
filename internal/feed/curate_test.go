package feed

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/sandbox"
	"github.com/feedd/feedd/internal/web"
)

func TestCaptionRuleMatches(t *testing.T) {
	for _, tc := range []struct {
		rule, caption string
		want          bool
	}{
		{"cake", "Fresh cake today", true},
		{"cake", "CAKE!", true},
		{"cake", "our #cake of the day", true}, // the word inside a hashtag
		{"cake", "a cupcake", false},
		{"cake", "cakes", false},
		{"cake", "#cakeday", false},
		{"#cake", "our #cake of the day", true},
		{"#cake", "our #Cake, again", true},
		{"#cake", "fresh cake", false}, // a hashtag rule wants the hashtag
		{"#cake", "#cakes", false},
		{"#cake", "##cake", true},
		{"#cake", "cake#", false},
		{"chocolate cake", "Chocolate\n  cake!", true},
		{"chocolate cake", "chocolate cakes", false},
		{"straße", "STRASSE", true}, // full case folding
		{"ΣΟΦΙΑ", "σοφια", true},
		{"café", "CAFE\u0301 au lait", true}, // NFD caption, NFC rule
		{"кафе", "Наше КАФЕ открыто", true},
		{"кафе", "кафетерий", false},
		{"ケーキ", "今日のケーキです", true}, // no spaces in Japanese: substring
		{"蛋糕", "巧克力蛋糕", true},
		{"#ケーキ", "美味しい #ケーキ 🍰", true},
		{"#ケーキ", "美味しいケーキ", false},
		{"케이크", "케이크를 샀어요", true},
		{"ขนม", "ขนมปังอร่อย", true},
		{"sale", "", false},
	} {
		r := compileRule(tc.rule)
		if got := r.match(fold(tc.caption)); got != tc.want {
			t.Errorf("rule %q on %q: %v, want %v", tc.rule, tc.caption, got, tc.want)
		}
	}
}

func str(s string) *string { return &s }

// posts for the curator: newest first, ids p1..p6.
func curatorPosts() []Post {
	return []Post{
		{ID: "p1", Type: TypeImage, Caption: str("New #cake")},
		{ID: "p2", Type: TypeVideo, IsReel: true, Caption: str("reel of bread")},
		{ID: "p3", Type: TypeCarousel, Caption: str("Sale on cakes")},
		{ID: "p4", Type: TypeVideo, Caption: str("a video")},
		{ID: "p5", Type: TypeImage},
		{ID: "p6", Type: TypeImage, Caption: str("old cake, SALE")},
	}
}

func TestCuratorShowsPinsFirstAndLeavesOutWhatTheOwnerChose(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    model.Curation
		want string
	}{
		{"nothing chosen", model.Curation{}, "p1,p2,p3,p4,p5,p6"},
		{"hidden", model.Curation{Hidden: []string{"p2", "p5"}}, "p1,p3,p4,p6"},
		{"pins in the owner's order", model.Curation{Pinned: []string{"p5", "p3"}}, "p5,p3,p1,p2,p4,p6"},
		{"pin of a post not stored", model.Curation{Pinned: []string{"gone", "p6"}}, "p6,p1,p2,p3,p4,p5"},
		{"include: the word, also as a hashtag", model.Curation{Include: []string{"cake"}}, "p1,p6"},
		{"include hashtag or word", model.Curation{Include: []string{"#cake", "bread"}}, "p1,p2"},
		{"exclude", model.Curation{Exclude: []string{"sale"}}, "p1,p2,p4,p5"},
		{"exclude wins over include", model.Curation{Include: []string{"cake", "cakes"}, Exclude: []string{"sale"}}, "p1"},
		{"pins are shown whatever the rules", model.Curation{Exclude: []string{"sale"}, Pinned: []string{"p6"}}, "p6,p1,p2,p4,p5"},
		{"types: reels but not other videos", model.Curation{Types: []string{"image", "reel"}}, "p1,p2,p5,p6"},
		{"types: videos but not reels", model.Curation{Types: []string{"video"}}, "p4"},
		{"cap after pins", model.Curation{Pinned: []string{"p6"}, MaxPosts: 3}, "p6,p1,p2"},
		{"cap counts what is shown", model.Curation{Hidden: []string{"p1"}, MaxPosts: 2}, "p2,p3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ids []string
			for _, p := range NewCurator(tc.c).Apply(curatorPosts()) {
				ids = append(ids, p.ID)
			}
			if got := strings.Join(ids, ","); got != tc.want {
				t.Fatalf("shown %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCuratorExplainsEveryPost(t *testing.T) {
	var stored []model.Post
	for _, p := range curatorPosts() {
		mt := map[string]string{TypeImage: model.MediaImage, TypeVideo: model.MediaVideo, TypeCarousel: model.MediaCarousel}[p.Type]
		stored = append(stored, model.Post{ID: p.ID, MediaType: mt, IsReel: p.IsReel, Caption: p.Caption})
	}
	c := model.Curation{Hidden: []string{"p1"}, Pinned: []string{"p4"}, Exclude: []string{"SALE"}, Types: []string{"image", "video", "carousel"}, MaxPosts: 2}
	var got []string
	for _, pl := range NewCurator(c).Explain(stored) {
		s := stored[pl.Index].ID + ":"
		switch {
		case pl.Pin > 0:
			s += "pin" + itoa(pl.Pin)
		case pl.Shown:
			s += "shown"
		default:
			s += pl.Reason
			if pl.Rule != "" {
				s += " " + pl.Rule
			}
		}
		got = append(got, s)
	}
	want := "p4:pin1,p5:shown,p1:hidden,p2:type,p3:exclude SALE,p6:exclude SALE"
	if strings.Join(got, ",") != want {
		t.Fatalf("placements\n got %s\nwant %s", strings.Join(got, ","), want)
	}
	c.MaxPosts = 1
	pl := NewCurator(c).Explain(stored)
	if stored[pl[1].Index].ID != "p1" || stored[pl[len(pl)-1].Index].ID != "p6" {
		t.Fatalf("capped post not back in stored order: %+v", pl)
	}
	for _, p := range pl {
		if stored[p.Index].ID == "p5" && (p.Shown || p.Reason != ReasonCap) {
			t.Fatalf("p5 beyond the cap: %+v", p)
		}
	}
}

func TestNormalizeCurationRefusesBadInputNamingTheField(t *testing.T) {
	many := make([]string, MaxRules+1)
	for i := range many {
		many[i] = "w" + itoa(i)
	}
	pins := make([]string, MaxPins+1)
	for i := range pins {
		pins[i] = "p" + itoa(i)
	}
	for _, tc := range []struct {
		c    model.Curation
		want string
	}{
		{model.Curation{Include: []string{"ok", "  "}}, "include[1]: must not be empty"},
		{model.Curation{Exclude: []string{strings.Repeat("é", MaxRuleLen+1)}}, "exclude[0]: at most 100 characters"},
		{model.Curation{Include: many}, "at most 100 rules"},
		{model.Curation{Include: many[:50], Exclude: many[:51]}, "at most 100 rules"},
		{model.Curation{Exclude: []string{"#"}}, "exclude[0]: a hashtag is"},
		{model.Curation{Exclude: []string{"#two words"}}, "exclude[0]: a hashtag is"},
		{model.Curation{Include: []string{"!!!"}}, "include[0]: must contain a letter or digit"},
		{model.Curation{Include: []string{"a\x00b"}}, "include[0]: must not contain control characters"},
		{model.Curation{Include: []string{"\xff"}}, "include[0]: must be valid UTF-8"},
		{model.Curation{Types: []string{"image", "story"}}, `types[1]: "story" is not one of image, video, carousel, reel`},
		{model.Curation{MaxPosts: -1}, "max_posts: must be from 0"},
		{model.Curation{MaxPosts: MaxCuratedCap + 1}, "max_posts: must be from 0"},
		{model.Curation{Pinned: pins}, "pinned: at most 50 posts"},
		{model.Curation{Hidden: []string{"ok", "../x"}}, `hidden[1]: "../x" is not a post id`},
		{model.Curation{Hidden: []string{"p1"}, Pinned: []string{"p2", "p1"}}, "pinned[1]: post p1 is also hidden"},
	} {
		_, err := NormalizeCuration(tc.c)
		he, ok := web.As(err)
		if !ok || he.Status != 400 || !strings.Contains(he.Message, tc.want) {
			t.Errorf("%+v: %v, want a 400 saying %q", tc.c, err, tc.want)
		}
	}
	got, err := NormalizeCuration(model.Curation{Include: []string{" Cake ", "cake", "CAKE", "chocolate \n cake"},
		Types: []string{"Reel", "image", "reel"}, Pinned: []string{"a", "a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Include, "|") != "Cake|chocolate cake" || strings.Join(got.Types, ",") != "image,reel" ||
		strings.Join(got.Pinned, ",") != "a,b" || got.Hidden == nil || got.Exclude == nil {
		t.Fatalf("normalized %+v", got)
	}
}

// The owner's change shows at once: a new document with a new ETag, from
// what is stored, without asking Instagram; the JSON and the renderer's
// document agree.
func TestCurationChangeServesNewETagWithoutGraphCall(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.useSample()
	if err := e.fetchNow(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before, err := e.svc.Entry(ctx, e.id, DefaultQuery)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.ids(e.doc(t, "")); got != "101,102,103,104,105" {
		t.Fatalf("before: %s", got)
	}
	calls := len(e.sb.Calls())

	if _, err := e.st.SetCuration(ctx, e.id, model.Curation{}, model.Curation{Hidden: []string{e.idOf("102")}, Pinned: []string{e.idOf("105")},
		Exclude: []string{"#sea"}}); err != nil {
		t.Fatal(err)
	}
	e.svc.Invalidate(e.id)
	after, err := e.svc.Entry(ctx, e.id, DefaultQuery)
	if err != nil {
		t.Fatal(err)
	}
	if after.ETag == before.ETag {
		t.Fatal("same ETag after the curation changed")
	}
	if got := e.ids(e.doc(t, "")); got != "105,103,104" {
		t.Fatalf("after: %s, want 105 pinned, 101 (#sea) and 102 (hidden) left out", got)
	}
	if got := e.ids(e.doc(t, "type=reel")); got != "103,104" {
		t.Fatalf("the query still narrows: %s", got)
	}
	doc, _, err := e.svc.Doc(ctx, e.id, 2, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.ids(*doc); got != "105,103" || doc.Next == nil {
		t.Fatalf("the renderer's first page: %s (next %v)", got, doc.Next)
	}
	next, _, err := e.svc.Doc(ctx, e.id, 2, *doc.Next, nil)
	if err != nil || e.ids(*next) != "104" {
		t.Fatalf("the renderer's second page: %+v, %v", next, err)
	}
	if n := len(e.sb.Calls()); n != calls {
		t.Fatalf("the sandbox saw %d calls after the curation changed", n-calls)
	}
}

func TestAccountCountsInTheJSON(t *testing.T) {
	e := newEnv(t, envOptions{})
	if err := e.fetchNow(); err != nil {
		t.Fatal(err)
	}
	a, err := e.sb.Account(sandbox.AccountCreator)
	if err != nil {
		t.Fatal(err)
	}
	d := e.doc(t, "")
	if d.Account == nil || d.Account.FollowersCount == nil || *d.Account.FollowersCount != int64(a.FollowersCount) ||
		d.Account.MediaCount == nil || *d.Account.MediaCount != int64(a.MediaCount) {
		t.Fatalf("account %+v, want followers %d and media %d", d.Account, a.FollowersCount, a.MediaCount)
	}
	if !strings.Contains(string(e.fetchJSON(t, e.id, "")), `"followers_count":`) {
		t.Fatal("no followers_count in the JSON")
	}
}

// "Load more" after the post its cursor names was hidden continues at the
// next older post, never again at the pinned ones on top (they are older
// than the cursor, but shown first).
func TestCursorOfAHiddenPostSkipsThePins(t *testing.T) {
	var posts []Post
	for i := range 6 {
		posts = append(posts, Post{ID: "p" + itoa(i+1), Type: TypeImage, Timestamp: time.Date(2026, 11, 20-i, 0, 0, 0, 0, time.UTC)})
	}
	pinned := NewCurator(model.Curation{Pinned: []string{"p6"}}).Apply(posts)
	first, next, _ := page(pinned, Query{Limit: 3})
	if ids(first) != "p6,p1,p2" || next == nil {
		t.Fatalf("first page %s", ids(first))
	}
	q, err := newQuery(3, *next, 0)
	if err != nil {
		t.Fatal(err)
	}
	// p2, the cursor's post, is hidden meanwhile.
	hidden := NewCurator(model.Curation{Pinned: []string{"p6"}, Hidden: []string{"p2"}}).Apply(posts)
	second, _, _ := page(hidden, q)
	if ids(second) != "p3,p4,p5" {
		t.Fatalf("second page after the cursor's post was hidden: %s, want p3,p4,p5", ids(second))
	}
	if !pinned[0].Pinned || pinned[1].Pinned {
		t.Fatalf("pinned flags %v %v", pinned[0].Pinned, pinned[1].Pinned)
	}
}

func ids(posts []Post) string {
	var s []string
	for _, p := range posts {
		s = append(s, p.ID)
	}
	return strings.Join(s, ",")
}

// The curation runs on every snapshot build (a cache miss): 50 posts with
// long captions against the most rules a feed may have.
func BenchmarkCuratorApplyMostRules(b *testing.B) {
	var posts []Post
	caption := strings.Repeat("Fresh sourdough and rye, baked at dawn. #bakery #bread ", 4)
	for i := range 50 {
		posts = append(posts, Post{ID: "p" + itoa(i), Type: TypeImage, Caption: &caption})
	}
	var rules []string
	for i := range MaxRules {
		rules = append(rules, "word"+itoa(i))
	}
	c := model.Curation{Exclude: rules[:MaxRules/2], Include: append(rules[MaxRules/2:MaxRules-1], "#bread"), Pinned: []string{"p7"}}
	b.ReportAllocs()
	for b.Loop() {
		if len(NewCurator(c).Apply(posts)) != 50 {
			b.Fatal("posts left out")
		}
	}
}
