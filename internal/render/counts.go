package render

import (
	"strings"

	textlang "golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/feedd/feedd/internal/feed"
)

// counts is the account's followers and posts in the feed's language, the
// numbers grouped as the language writes them; "" when Instagram gave
// neither.
func (t texts) counts(a *feed.Account) string {
	p := message.NewPrinter(textlang.Make(t.l.code))
	var parts []string
	if a.FollowersCount != nil {
		parts = append(parts, t.f("followers", "n", p.Sprint(*a.FollowersCount)))
	}
	if a.MediaCount != nil {
		parts = append(parts, t.f("media-count", "n", p.Sprint(*a.MediaCount)))
	}
	return strings.Join(parts, " · ")
}
