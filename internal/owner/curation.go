package owner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/feed"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/ui"
	"github.com/feedd/feedd/internal/web"
)

// CurationStore is what curation needs from the database; *store.Store
// implements it.
type CurationStore interface {
	Curation(ctx context.Context, feedID string) (model.Curation, error)
	SetCuration(ctx context.Context, feedID string, prev, next model.Curation) (model.Curation, error)
	Posts(ctx context.Context, feedID string) ([]model.Post, error)
	MediaByKeys(ctx context.Context, keys []string) (map[string]model.Media, error)
}

// CurationView is a feed's curation as the admin API shows it.
type CurationView struct {
	Hidden    []string   `json:"hidden"`
	Pinned    []string   `json:"pinned"`
	Include   []string   `json:"include"`
	Exclude   []string   `json:"exclude"`
	Types     []string   `json:"types"`
	MaxPosts  int        `json:"max_posts"`
	UpdatedAt *time.Time `json:"updated_at"` // null: never changed
}

// CurationPatch is a partial curation update; nil fields stay as they are.
type CurationPatch struct {
	Hidden   *[]string `json:"hidden"`
	Pinned   *[]string `json:"pinned"`
	Include  *[]string `json:"include"`
	Exclude  *[]string `json:"exclude"`
	Types    *[]string `json:"types"`
	MaxPosts *int      `json:"max_posts"`
}

// PostView is a stored post with its place in the served feed.
type PostView struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	IsReel    bool      `json:"is_reel"`
	Permalink string    `json:"permalink"`
	Timestamp time.Time `json:"timestamp"`
	Caption   *string   `json:"caption,omitempty"`
	Thumbnail string    `json:"thumbnail,omitempty"` // the smallest stored image
	Shown     bool      `json:"shown"`
	Pin       int       `json:"pin,omitempty"`    // 1-based position among the pins
	Reason    string    `json:"reason,omitempty"` // why it is not shown
	Rule      string    `json:"rule,omitempty"`   // the exclude rule it matched

	thumbW, thumbH int
}

func viewOf(c model.Curation) CurationView {
	v := CurationView{Hidden: c.Hidden, Pinned: c.Pinned, Include: c.Include, Exclude: c.Exclude, Types: c.Types, MaxPosts: c.MaxPosts}
	for _, l := range []*[]string{&v.Hidden, &v.Pinned, &v.Include, &v.Exclude, &v.Types} {
		if *l == nil {
			*l = []string{}
		}
	}
	if !c.UpdatedAt.IsZero() {
		t := c.UpdatedAt.UTC()
		v.UpdatedAt = &t
	}
	return v
}

// feedExists answers 404 for a feed that does not exist.
func (s *Service) feedExists(ctx context.Context, id string) error {
	if !model.ValidFeedID(id) {
		return feedNotFound()
	}
	_, err := s.store.Feed(ctx, id)
	return clientErr(err)
}

// Curation returns what the owner chose the feed to show.
func (s *Service) Curation(ctx context.Context, id string) (CurationView, error) {
	if err := s.feedExists(ctx, id); err != nil {
		return CurationView{}, err
	}
	c, err := s.store.Curation(ctx, id)
	if err != nil {
		return CurationView{}, err
	}
	return viewOf(c), nil
}

// UpdateCuration changes the feed's curation and serves the feed anew at
// once. Hidden and pinned ids must name stored posts (or be hidden or
// pinned already); ids of posts no longer stored are forgotten.
func (s *Service) UpdateCuration(ctx context.Context, id string, p CurationPatch) (CurationView, error) {
	return s.update(ctx, id, func(model.Curation, []model.Post) (CurationPatch, error) { return p, nil })
}

// maxCurationTries bounds the retries of a change that lost the race with
// another change of the same feed's curation.
const maxCurationTries = 16

// update applies the patch that change makes of the curation as read, and
// writes it only if the curation is still that one: a change made meanwhile
// (another tab, a script) is read again and never lost.
func (s *Service) update(ctx context.Context, id string, change func(cur model.Curation, posts []model.Post) (CurationPatch, error)) (CurationView, error) {
	if err := s.feedExists(ctx, id); err != nil {
		return CurationView{}, err
	}
	for range maxCurationTries {
		cur, err := s.store.Curation(ctx, id)
		if err != nil {
			return CurationView{}, err
		}
		posts, err := s.store.Posts(ctx, id)
		if err != nil {
			return CurationView{}, err
		}
		p, err := change(cur, posts)
		if err != nil {
			return CurationView{}, err
		}
		next, err := patched(cur, p, posts)
		if err != nil {
			return CurationView{}, err
		}
		saved, err := s.store.SetCuration(ctx, id, cur, next)
		if errors.Is(err, model.ErrCurationChanged) {
			continue
		}
		if err != nil {
			return CurationView{}, clientErr(err)
		}
		s.invalidate(id)
		s.log.Info("feed curation changed", slog.String("feed", id), slog.Int("hidden", len(saved.Hidden)),
			slog.Int("pinned", len(saved.Pinned)), slog.Int("rules", len(saved.Include)+len(saved.Exclude)))
		return viewOf(saved), nil
	}
	return CurationView{}, web.New(http.StatusConflict, "curation_changed", "the curation kept changing meanwhile; nothing was changed: try again")
}

// patched is cur with p applied, checked and normalised; posts are the
// feed's stored posts, which hidden and pinned ids must name.
func patched(cur model.Curation, p CurationPatch, posts []model.Post) (model.Curation, error) {
	next := cur
	for _, f := range []struct {
		from *[]string
		to   *[]string
	}{{p.Hidden, &next.Hidden}, {p.Pinned, &next.Pinned}, {p.Include, &next.Include}, {p.Exclude, &next.Exclude}, {p.Types, &next.Types}} {
		if f.from != nil {
			*f.to = *f.from
		}
	}
	if p.MaxPosts != nil {
		next.MaxPosts = *p.MaxPosts
	}
	next, err := feed.NormalizeCuration(next)
	if err != nil {
		return model.Curation{}, err
	}
	stored := make(map[string]bool, len(posts))
	for i := range posts {
		stored[posts[i].ID] = true
	}
	for _, l := range []struct {
		field string
		dst   *[]string
	}{{"hidden", &next.Hidden}, {"pinned", &next.Pinned}} {
		kept := make([]string, 0, len(*l.dst))
		for i, pid := range *l.dst {
			switch {
			case stored[pid]:
				kept = append(kept, pid)
			case !slices.Contains(cur.Hidden, pid) && !slices.Contains(cur.Pinned, pid):
				return model.Curation{}, web.BadRequest("invalid_"+l.field, "%s[%d]: no stored post has the id %s", l.field, i, pid)
			}
		}
		*l.dst = kept
	}
	return next, nil
}

// Moderation actions on one post.
const (
	ActHide  = "hide"
	ActShow  = "show"
	ActPin   = "pin"
	ActUnpin = "unpin"
	ActUp    = "up"   // one place earlier among the pins
	ActDown  = "down" // one place later among the pins
)

// Moderate applies one action to one post of the feed.
func (s *Service) Moderate(ctx context.Context, id, postID, action string) (CurationView, error) {
	return s.update(ctx, id, func(cur model.Curation, posts []model.Post) (CurationPatch, error) {
		return moderated(cur, posts, postID, action)
	})
}

// moderated is the patch of one action on one post.
func moderated(cur model.Curation, posts []model.Post, postID, action string) (CurationPatch, error) {
	if !slices.ContainsFunc(posts, func(p model.Post) bool { return p.ID == postID }) &&
		!slices.Contains(cur.Hidden, postID) && !slices.Contains(cur.Pinned, postID) {
		return CurationPatch{}, web.BadRequest("invalid_post", "post: no stored post has the id %s", strconv.Quote(excerpt(postID, 64)))
	}
	hidden := slices.DeleteFunc(slices.Clone(cur.Hidden), func(s string) bool { return s == postID })
	pinned := slices.Clone(cur.Pinned)
	at := slices.Index(pinned, postID)
	switch action {
	case ActHide:
		hidden = append(hidden, postID)
		pinned = slices.DeleteFunc(pinned, func(s string) bool { return s == postID })
	case ActShow:
	case ActPin:
		if at < 0 {
			pinned = append(pinned, postID)
		}
	case ActUnpin:
		pinned = slices.DeleteFunc(pinned, func(s string) bool { return s == postID })
	case ActUp, ActDown:
		to := at - 1
		if action == ActDown {
			to = at + 1
		}
		if at < 0 {
			return CurationPatch{}, web.BadRequest("invalid_post", "post: %s is not pinned", postID)
		}
		if to >= 0 && to < len(pinned) {
			pinned[at], pinned[to] = pinned[to], pinned[at]
		}
	default:
		return CurationPatch{}, web.BadRequest("invalid_action", "action: must be one of hide, show, pin, unpin, up, down")
	}
	return CurationPatch{Hidden: &hidden, Pinned: &pinned}, nil
}

// Posts lists the feed's stored posts, newest first, each with its place in
// the served feed: the shown ones first in the served order, then the
// others with the reason they are left out.
func (s *Service) Posts(ctx context.Context, id string) ([]PostView, CurationView, error) {
	if err := s.feedExists(ctx, id); err != nil {
		return nil, CurationView{}, err
	}
	c, err := s.store.Curation(ctx, id)
	if err != nil {
		return nil, CurationView{}, err
	}
	posts, err := s.store.Posts(ctx, id)
	if err != nil {
		return nil, CurationView{}, err
	}
	keys := make([]string, 0, len(posts))
	for i := range posts {
		k := posts[i].MediaKey
		if k == "" && len(posts[i].Children) > 0 {
			k = posts[i].Children[0].MediaKey
		}
		keys = append(keys, k)
	}
	media, err := s.store.MediaByKeys(ctx, keys)
	if err != nil {
		return nil, CurationView{}, err
	}
	// The feed leaves out a post none of whose images is stored yet (a
	// later poll stores it): the curation places the others, as the feed
	// does, and those come last.
	var ready, waiting []model.Post
	var readyKeys, waitingKeys []string
	for i := range posts {
		if m, ok := media[keys[i]]; ok && len(m.Variants) > 0 {
			ready, readyKeys = append(ready, posts[i]), append(readyKeys, keys[i])
		} else {
			waiting, waitingKeys = append(waiting, posts[i]), append(waitingKeys, keys[i])
		}
	}
	out := make([]PostView, 0, len(posts))
	for _, pl := range feed.NewCurator(c).Explain(ready) {
		out = append(out, s.postView(&ready[pl.Index], media[readyKeys[pl.Index]], pl))
	}
	for i := range waiting {
		out = append(out, s.postView(&waiting[i], media[waitingKeys[i]], feed.Placement{Reason: ReasonNoImage}))
	}
	return out, viewOf(c), nil
}

// ReasonNoImage: the post is not shown because none of its images is
// stored yet.
const ReasonNoImage = "no_image"

func (s *Service) postView(p *model.Post, m model.Media, pl feed.Placement) PostView {
	v := PostView{ID: p.ID, Type: feed.TypeOf(p.MediaType), IsReel: p.IsReel, Permalink: p.Permalink,
		Timestamp: p.Timestamp.UTC(), Caption: p.Caption, Shown: pl.Shown, Pin: pl.Pin, Reason: pl.Reason, Rule: pl.Rule}
	if len(m.Variants) > 0 {
		small := m.Variants[0]
		for _, vr := range m.Variants[1:] {
			if vr.Width < small.Width {
				small = vr
			}
		}
		v.Thumbnail = s.publicURL + "/media/" + strings.TrimLeft(small.File, "/")
		v.thumbW, v.thumbH = small.Width, small.Height
	}
	return v
}

// --- admin API ---

// registerCuration mounts the curation routes of the admin API on the
// /api/admin group.
func (h *Handler) registerCuration(g Router) {
	g.GET("/feeds/:id/curation", h.apiCuration)
	g.PATCH("/feeds/:id/curation", h.apiPatchCuration)
	g.GET("/feeds/:id/posts", h.apiPosts)
}

func (h *Handler) apiCuration(c *echo.Context) error {
	v, err := h.svc.Curation(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func (h *Handler) apiPatchCuration(c *echo.Context) error {
	var p CurationPatch
	if err := decodeJSON(c, &p); err != nil {
		return err
	}
	v, err := h.svc.UpdateCuration(c.Request().Context(), c.Param("id"), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func (h *Handler) apiPosts(c *echo.Context) error {
	posts, _, err := h.svc.Posts(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"posts": posts})
}

// --- the moderation page ---

var moderationPage = ui.Must(ui.Parse(templateFS, "templates/partials.html", "templates/moderation.html"))

// registerModeration mounts the moderation page on the /setup group.
func (h *Handler) registerModeration(g Router) {
	g.GET("/feeds/:id/moderation", h.moderation)
	g.POST("/feeds/:id/moderation/posts", h.moderatePost)
	g.POST("/feeds/:id/moderation/rules", h.moderateRules)
}

type moderationView struct {
	Feed      Status
	Tiles     []tileView
	Shown     int
	Include   string // one rule a line
	Exclude   string
	Types     map[string]bool
	TypeNames []string
	MaxPosts  string // "" for no cap
	Preview   string
	Limits    struct{ Rules, RuleLen, Pins, Cap int }
}

type tileView struct {
	PostView
	Date    string
	Excerpt string
	State   string // what the tile's badge says
	Label   string // names the post in its buttons, for screen readers
	W, H    int
	Pins    int // how many posts are pinned (for the last pin's "down")
}

func moderationPath(c *echo.Context) string { return feedPage(c) + "/moderation" }

func (h *Handler) moderation(c *echo.Context) error {
	ctx := c.Request().Context()
	st, err := h.svc.Feed(ctx, c.Param("id"))
	if err != nil {
		if he, ok := web.As(err); ok && he.Status == http.StatusNotFound {
			h.setFlash(c, flash{Kind: "error", Msg: "That feed does not exist (any more)."})
			return c.Redirect(http.StatusSeeOther, h.svc.prefix+"/setup")
		}
		return err
	}
	posts, cur, err := h.svc.Posts(ctx, st.ID)
	if err != nil {
		return err
	}
	v := moderationView{Feed: st, Include: strings.Join(cur.Include, "\n"), Exclude: strings.Join(cur.Exclude, "\n"),
		Types: map[string]bool{}, TypeNames: []string{"image", "video", "carousel", "reel"}}
	v.Limits.Rules, v.Limits.RuleLen, v.Limits.Pins, v.Limits.Cap = feed.MaxRules, feed.MaxRuleLen, feed.MaxPins, feed.MaxCuratedCap
	for _, t := range v.TypeNames {
		v.Types[t] = len(cur.Types) == 0 || slices.Contains(cur.Types, t)
	}
	if cur.MaxPosts > 0 {
		v.MaxPosts = strconv.Itoa(cur.MaxPosts)
	}
	// The version, a digest of the curation, makes the browser load the
	// preview anew after a change instead of the copy it may hold for a
	// minute (two changes can fall in the same second).
	v.Preview = h.svc.prefix + "/feeds/" + url.PathEscape(st.ID) + "/embed"
	if cur.UpdatedAt != nil {
		b, _ := json.Marshal(cur)
		sum := sha256.Sum256(b)
		v.Preview += "?v=" + hex.EncodeToString(sum[:6])
	}
	pins := 0
	for _, p := range posts {
		if p.Pin > 0 {
			pins++
		}
	}
	for _, p := range posts {
		t := tileView{PostView: p, Date: p.Timestamp.Format("2 Jan 2006"), W: p.thumbW, H: p.thumbH, Pins: pins}
		kind := p.Type
		if p.IsReel {
			kind = "reel"
		}
		t.Label = kind + " of " + t.Date
		if p.Caption != nil {
			t.Excerpt = excerpt(*p.Caption, 80)
		}
		switch {
		case p.Pin > 0:
			t.State = "Pinned, " + strconv.Itoa(p.Pin) + " of " + strconv.Itoa(pins)
		case p.Shown:
			t.State = "Shown"
		case p.Reason == feed.ReasonHidden:
			t.State = "Hidden"
		case p.Reason == feed.ReasonType:
			t.State = "Not shown: type " + p.Type
			if p.IsReel {
				t.State = "Not shown: type reel"
			}
		case p.Reason == feed.ReasonInclude:
			t.State = "Not shown: no include rule matches"
		case p.Reason == feed.ReasonExclude:
			t.State = "Not shown: matches " + p.Rule
		case p.Reason == feed.ReasonCap:
			t.State = "Not shown: beyond the cap"
		case p.Reason == ReasonNoImage:
			t.State = "Not shown until its image is stored"
		}
		if p.Shown {
			v.Shown++
		}
		v.Tiles = append(v.Tiles, t)
	}
	d := h.basePage()
	pg := h.page(c, d)
	pg.Data = v
	pg.Title, pg.Prefix = "Moderation: "+st.Name, h.svc.prefix
	return ui.Render(c.Response(), http.StatusOK, moderationPage, pg)
}

func excerpt(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

func (h *Handler) moderatePost(c *echo.Context) error {
	post := c.FormValue("post")
	_, err := h.svc.Moderate(c.Request().Context(), c.Param("id"), post, c.FormValue("action"))
	to := moderationPath(c)
	if err == nil && model.ValidFeedID(c.Param("id")) {
		to += "#post-" + url.PathEscape(post)
	}
	msg := map[string]string{ActHide: "Hidden.", ActShow: "Shown again.", ActPin: "Pinned.", ActUnpin: "Unpinned.",
		ActUp: "Moved up.", ActDown: "Moved down."}[c.FormValue("action")]
	return h.back(c, to, err, msg)
}

func (h *Handler) moderateRules(c *echo.Context) error {
	if err := c.Request().ParseForm(); err != nil {
		return h.back(c, moderationPath(c), web.BadRequest("invalid_form", "body: not a valid form"), "")
	}
	f := c.Request().PostForm
	include, exclude, types := lines(f.Get("include")), lines(f.Get("exclude")), f["types"]
	if len(types) == 0 {
		return h.back(c, moderationPath(c), web.BadRequest("invalid_types", "types: tick at least one type of post"), "")
	}
	maxPosts := 0
	if s := strings.TrimSpace(f.Get("max_posts")); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return h.back(c, moderationPath(c), web.BadRequest("invalid_max_posts", "max_posts: must be a whole number (empty for no cap)"), "")
		}
		maxPosts = n
	}
	_, err := h.svc.UpdateCuration(c.Request().Context(), c.Param("id"),
		CurationPatch{Include: &include, Exclude: &exclude, Types: &types, MaxPosts: &maxPosts})
	return h.back(c, moderationPath(c), err, "Rules saved.")
}

// lines reads a textarea: one rule a line, blank lines skipped.
func lines(s string) []string {
	out := []string{}
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
