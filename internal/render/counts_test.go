package render

import (
	"net/url"
	"strings"
	"testing"
)

func TestHeaderCountsOption(t *testing.T) {
	doc := testDoc(3)
	followers, media := int64(12345), int64(678)
	acct := *doc.Account
	acct.FollowersCount, acct.MediaCount = &followers, &media
	doc.Account = &acct

	if got := render(t, doc, DefaultOptions); strings.Contains(got, "followers") {
		t.Fatal("counts shown without the option")
	}
	o, err := ParseOptions(url.Values{"counts": {"true"}})
	if err != nil || !o.Counts || o.Params().Get("counts") != "true" {
		t.Fatalf("counts option: %+v, %v", o, err)
	}
	if got := render(t, doc, o); !strings.Contains(got, "· 12,345 followers · 678 posts</span></span>") {
		t.Fatalf("header without the counts:\n%s", got)
	}
	o.Lang = "de"
	if got := render(t, doc, o); !strings.Contains(got, "12.345 Follower · 678 Beiträge") {
		t.Fatalf("German header without its counts:\n%s", got)
	}
	o.Lang, o.Texts = "", map[string]string{"followers": "{n} fans"}
	if got := render(t, doc, o); !strings.Contains(got, "12,345 fans") {
		t.Fatal("the owner's text for followers is not used")
	}
	acct.FollowersCount, acct.MediaCount = nil, nil
	if got := render(t, doc, o); strings.Contains(got, "·") {
		t.Fatal("counts Instagram did not give are shown")
	}
}
