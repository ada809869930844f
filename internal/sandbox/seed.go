package sandbox

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Aspect is the shape of a generated picture.
type Aspect int

// Picture shapes Instagram serves, all 1080 pixels wide.
const (
	AspectSquare    Aspect = iota // 1:1, 1080×1080
	AspectPortrait                // 4:5, 1080×1350
	AspectLandscape               // 1.91:1, 1080×566
	AspectStory                   // 9:16, 1080×1920 (reel covers)
)

func (a Aspect) size() (w, h int) {
	switch a {
	case AspectPortrait:
		return 1080, 1350
	case AspectLandscape:
		return 1080, 566
	case AspectStory:
		return 1080, 1920
	}
	return 1080, 1080
}

// Media types as the Graph API spells them.
const (
	MediaImage    = "IMAGE"
	MediaVideo    = "VIDEO"
	MediaCarousel = "CAROUSEL_ALBUM"
)

// PostSpec describes a post to add with AddPost.
type PostSpec struct {
	MediaType  string     // MediaImage (default), MediaVideo or MediaCarousel
	Reel       bool       // a VIDEO shown as a reel: /reel/ permalink, 9:16 cover
	Caption    string     // "" means no caption (the field is then absent)
	Aspect     Aspect     // picture shape of an image or non-reel video cover
	Children   []PostSpec // carousel children, 2 to 10, each IMAGE or VIDEO
	HideLikes  bool       // like_count absent
	AltText    string     // alt_text, absent when ""
	NoMediaURL bool       // a VIDEO without media_url (copyrighted audio)
	Timestamp  time.Time  // zero: the sandbox clock's now
	Likes      int
	Comments   int
}

// Post is a read-only view of a sandbox post, for tests to compare with.
type Post struct {
	ID          string
	MediaType   string
	Reel        bool
	Caption     string // "" when the post has no caption
	Shortcode   string
	Timestamp   time.Time
	LikeCount   int
	HideLikes   bool
	Comments    int
	AltText     string
	HasMediaURL bool
	Children    []Post
}

type account struct {
	id, userID, username, name, accountType, biography string
	followers, follows                                 int
	posts                                              []*post // newest first, deleted ones kept so cursors stay valid
	tokenShape                                         TokenShape
	throttledUntil                                     time.Time
	calls                                              []time.Time // for usage headers, rolling 24h
	profilePic                                         string      // CDN path
}

type post struct {
	owner         *account
	id, shortcode string
	mediaType     string
	reel          bool
	caption       string
	hasCaption    bool
	timestamp     time.Time
	likes         int
	comments      int
	hideLikes     bool
	altText       string
	noMediaURL    bool
	image         string // CDN path of the picture (image) or cover (video)
	video         string // CDN path of the video file
	children      []*post
	deleted       bool
}

func (a *account) public() Account {
	n := 0
	for _, p := range a.posts {
		if !p.deleted {
			n++
		}
	}
	return Account{ID: a.id, UserID: a.userID, Username: a.username, Name: a.name, AccountType: a.accountType,
		FollowersCount: a.followers, FollowsCount: a.follows, MediaCount: n}
}

func (p *post) public() Post {
	out := Post{ID: p.id, MediaType: p.mediaType, Reel: p.reel, Shortcode: p.shortcode, Timestamp: p.timestamp,
		LikeCount: p.likes, HideLikes: p.hideLikes, Comments: p.comments, AltText: p.altText, HasMediaURL: p.hasMediaURL()}
	if p.hasCaption {
		out.Caption = p.caption
	}
	for _, c := range p.children {
		out.Children = append(out.Children, c.public())
	}
	return out
}

// hasMediaURL reports whether media_url is present; a carousel's is its first child's.
func (p *post) hasMediaURL() bool {
	if p.mediaType == MediaCarousel {
		return len(p.children) > 0 && p.children[0].hasMediaURL()
	}
	return !p.noMediaURL
}

// seed creates the demo accounts. Everything derives from Options.Seed and
// the clock at creation, so two sandboxes built alike are alike.
func (s *Sandbox) seed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UTC().Truncate(time.Second)

	bakery := s.newAccountLocked(AccountBusiness, "Sandbox Bakery (demo)", "BUSINESS", 12840, 311,
		"A pretend bakery that lives in the feedd sandbox. Not a real account.")
	studio := s.newAccountLocked(AccountCreator, "Sandbox Studio (demo)", "MEDIA_CREATOR", 2210, 187,
		"A pretend creator in the feedd sandbox.")
	personal := s.newAccountLocked(AccountPersonal, "Sandbox Person (demo)", "PERSONAL", 96, 140,
		"A personal account: feedd cannot connect it.")

	// Hand-placed posts first (newest), then a long believable tail.
	special := []PostSpec{
		{Aspect: AspectPortrait, Caption: "Fresh sourdough this morning 🍞✨\n\nCome early, it goes fast!\n#sourdough #bakery #feeddsandbox",
			AltText: "A round loaf of sourdough bread on a wooden board"},
		{MediaType: MediaVideo, Reel: true, Caption: "60 seconds of croissant lamination 🥐 #reels #pastry"},
		{MediaType: MediaCarousel, Caption: "Behind the counter today — swipe ➡️\n#carousel #behindthescenes",
			Children: []PostSpec{{Aspect: AspectPortrait, AltText: "Trays of buns"}, {MediaType: MediaVideo}, {Aspect: AspectPortrait}}},
		{Caption: "Sandbox test: <script>alert(1)</script> must show as text and never run. #security"},
		{Aspect: AspectSquare}, // no caption at all
		{MediaType: MediaVideo, Reel: true, NoMediaURL: true, Caption: "Dancing baguettes 🎶 (this reel has licensed music, so no media_url)"},
		{Aspect: AspectPortrait, HideLikes: true, Caption: "Likes are hidden on this one 🙈 #hiddenlikes"},
		{MediaType: MediaVideo, Aspect: AspectSquare, Caption: "A plain video post, not a reel 📹"},
		{MediaType: MediaCarousel, Caption: "Ten of our favourites, 1 → 10 🔟\nThe first one is a video.",
			Children: []PostSpec{{MediaType: MediaVideo}, {}, {AltText: "Cinnamon roll"}, {MediaType: MediaVideo}, {}, {}, {MediaType: MediaVideo}, {}, {}, {}}},
		{Aspect: AspectLandscape, Caption: "\"><img src=x onerror=alert(1)> — if an image icon appears here, escaping is broken."},
		{Caption: "Win a cake 🎁 tap javascript:alert(document.cookie) or <a href=\"javascript:alert(1)\">here</a> (don't!)"},
		{Aspect: AspectPortrait, Caption: "Mixed scripts: Ünïcödé — 日本語のパン — خبز طازج — לחם טרי — 🇫🇷🥖 #unicode",
			AltText: "Bread from around the world, labelled in five languages"},
	}
	tail := []string{
		"Rye & caraway loaf. #rye #bread #bakerylife",
		"Closed Monday 🛑 back Tuesday 7:00 with <b>bold</b> flavours & \"quotes\" 'too'.",
		"Line one\nLine two\n\nLine four, after a blank line\n#multiline",
		"Emoji parade 🎂🧁🍰🍪🍩☕️👩🏽‍🍳 #sweet",
		"@" + AccountCreator + " thanks for the photos! 📸 #collab",
		"Our flour comes from a mill down the road. #local #feeddsandbox",
		strings.Repeat("A very long caption about bread. ", 60) + "#long",
		"Weekend special: apple tart 🍎",
	}
	n := 0
	at := func() time.Time {
		n++
		return now.Add(-time.Duration(n)*26*time.Hour - time.Duration(s.rng.IntN(180))*time.Minute)
	}
	for _, sp := range special {
		sp.Timestamp = at()
		s.addPostLocked(bakery, sp)
	}
	aspects := []Aspect{AspectSquare, AspectPortrait, AspectSquare, AspectLandscape, AspectPortrait}
	for i := len(special); i < 60; i++ {
		sp := PostSpec{Timestamp: at(), Caption: tail[i%len(tail)], Aspect: aspects[i%len(aspects)]}
		switch {
		case i%7 == 3:
			sp.MediaType = MediaCarousel
			for c := 0; c < 2+i%3; c++ {
				child := PostSpec{Aspect: AspectSquare}
				if c == 1 && i%2 == 0 {
					child.MediaType = MediaVideo
				}
				sp.Children = append(sp.Children, child)
			}
		case i%9 == 5:
			sp.MediaType, sp.Reel = MediaVideo, true
		case i%3 == 0:
			sp.AltText = fmt.Sprintf("Photo %d of the bakery's counter", i+1)
		}
		s.addPostLocked(bakery, sp)
	}

	n = 0
	for _, sp := range []PostSpec{
		{MediaType: MediaVideo, Reel: true, Caption: "Studio tour in 30 seconds 🎬 #creator"},
		{Aspect: AspectPortrait, Caption: "Golden hour portrait ☀️", AltText: "A warm orange gradient with a sun"},
		{MediaType: MediaCarousel, Caption: "Before / after 👀", Children: []PostSpec{{Aspect: AspectPortrait}, {Aspect: AspectPortrait}}},
		{Aspect: AspectLandscape, Caption: "Wide shot.\nShot on a pretend camera.\n#landscape"},
		{MediaType: MediaVideo, Aspect: AspectPortrait, Caption: "Timelapse 🌙"},
		{Caption: "First post! 👋 #hello"},
	} {
		sp.Timestamp = at()
		s.addPostLocked(studio, sp)
	}
	n = 0
	for _, sp := range []PostSpec{{Caption: "My cat 🐈"}, {Aspect: AspectPortrait, Caption: "Holiday"}, {}} {
		sp.Timestamp = at()
		s.addPostLocked(personal, sp)
	}
}

func (s *Sandbox) newAccountLocked(username, name, typ string, followers, follows int, bio string) *account {
	a := &account{
		id:          fmt.Sprint(27000000000000001 + 2*s.rng.Uint64N(1e15)), // odd, far above 2^53: float64 cannot hold it
		userID:      fmt.Sprint(17841400000000001 + 2*s.rng.Uint64N(4e11)),
		username:    username,
		name:        name,
		accountType: typ,
		biography:   bio,
		followers:   followers,
		follows:     follows,
	}
	a.profilePic = "/v/t51.2885-19/" + a.userID + "_" + fmt.Sprint(s.rng.Uint64N(1e15)) + "_n.jpg"
	s.images[a.profilePic] = imageSpec{w: 150, h: 150, seed: hash64("profile", a.userID), label: strings.ToUpper(username[8:9]), profile: true}
	s.accounts = append(s.accounts, a)
	s.byKey[a.id], s.byKey[a.userID], s.byKey[a.username] = a, a, a
	return a
}

func (s *Sandbox) newMediaIDLocked() string {
	for {
		id := fmt.Sprintf("178%014d", s.rng.Uint64N(1e14))
		if _, dup := s.media[id]; !dup {
			return id
		}
	}
}

func validateSpec(sp PostSpec, child bool) error {
	switch sp.MediaType {
	case "", MediaImage, MediaVideo:
		if len(sp.Children) > 0 {
			return fmt.Errorf("%w: only a carousel has children", ErrInvalidPost)
		}
	case MediaCarousel:
		if child {
			return fmt.Errorf("%w: a carousel cannot hold a carousel", ErrInvalidPost)
		}
		if len(sp.Children) < 2 || len(sp.Children) > 10 {
			return fmt.Errorf("%w: a carousel holds 2 to 10 children, not %d", ErrInvalidPost, len(sp.Children))
		}
		for _, c := range sp.Children {
			if err := validateSpec(c, true); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%w: media type %q", ErrInvalidPost, sp.MediaType)
	}
	if sp.Reel && sp.MediaType != MediaVideo {
		return fmt.Errorf("%w: a reel is a VIDEO", ErrInvalidPost)
	}
	return nil
}

// addPostLocked creates a post (spec already valid) and files it by time.
func (s *Sandbox) addPostLocked(a *account, sp PostSpec) *post {
	if sp.Timestamp.IsZero() {
		sp.Timestamp = s.now()
	}
	p := s.buildPostLocked(a, sp, sp.Timestamp.UTC().Truncate(time.Second), "")
	i, _ := slices.BinarySearchFunc(a.posts, p.timestamp, func(q *post, t time.Time) int {
		return t.Compare(q.timestamp) // newest first
	})
	a.posts = slices.Insert(a.posts, i, p)
	return p
}

func (s *Sandbox) buildPostLocked(a *account, sp PostSpec, ts time.Time, label string) *post {
	p := &post{
		owner:      a,
		id:         s.newMediaIDLocked(),
		shortcode:  "S" + s.randomStringLocked(10),
		mediaType:  sp.MediaType,
		reel:       sp.Reel,
		caption:    sp.Caption,
		hasCaption: sp.Caption != "",
		timestamp:  ts,
		likes:      sp.Likes,
		comments:   sp.Comments,
		hideLikes:  sp.HideLikes,
		altText:    sp.AltText,
		noMediaURL: sp.NoMediaURL,
	}
	if p.mediaType == "" {
		p.mediaType = MediaImage
	}
	if label == "" {
		label = fmt.Sprint(len(a.posts) + 1)
		if p.likes == 0 && p.comments == 0 {
			p.likes, p.comments = 3+s.rng.IntN(900), s.rng.IntN(60)
		}
	}
	s.media[p.id] = p
	switch p.mediaType {
	case MediaCarousel:
		for i, c := range sp.Children {
			p.children = append(p.children, s.buildPostLocked(a, c, ts, fmt.Sprintf("%s-%d", label, i+1)))
		}
		return p
	case MediaVideo:
		aspect := sp.Aspect
		if p.reel {
			aspect = AspectStory
		}
		w, h := aspect.size()
		p.image = fmt.Sprintf("/v/t51.29350-15/%s_%d_n.jpg", p.id, s.rng.Uint64N(1e15))
		s.images[p.image] = imageSpec{w: w, h: h, seed: hash64("cover", p.id), label: label, video: true}
		p.video = fmt.Sprintf("/o1/v/t16/f2/m86/%s_%d_n.mp4", p.id, s.rng.Uint64N(1e15))
		s.images[p.video] = imageSpec{mp4: true}
	default:
		w, h := sp.Aspect.size()
		p.image = fmt.Sprintf("/v/t51.29350-15/%s_%d_n.jpg", p.id, s.rng.Uint64N(1e15))
		s.images[p.image] = imageSpec{w: w, h: h, seed: hash64("image", p.id), label: label}
	}
	return p
}

// AddPost publishes a new post on acct (newest unless Timestamp says
// otherwise) and returns its media id.
func (s *Sandbox) AddPost(acct string, sp PostSpec) (string, error) {
	if err := validateSpec(sp, false); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.lookupLocked(acct)
	if err != nil {
		return "", err
	}
	return s.addPostLocked(a, sp).id, nil
}

// DeletePost removes a post: it disappears from /me/media (its page slot
// stays empty, as on the real API) and its node answers code 100.
func (s *Sandbox) DeletePost(acct, mediaID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.findPostLocked(acct, mediaID)
	if err != nil {
		return err
	}
	p.deleted = true
	return nil
}

// EditCaption replaces a post's caption; "" removes it.
func (s *Sandbox) EditCaption(acct, mediaID, caption string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.findPostLocked(acct, mediaID)
	if err != nil {
		return err
	}
	p.caption, p.hasCaption = caption, caption != ""
	return nil
}

// Posts returns acct's visible posts, newest first.
func (s *Sandbox) Posts(acct string) ([]Post, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.lookupLocked(acct)
	if err != nil {
		return nil, err
	}
	var out []Post
	for _, p := range a.posts {
		if !p.deleted {
			out = append(out, p.public())
		}
	}
	return out, nil
}

func (s *Sandbox) findPostLocked(acct, mediaID string) (*post, error) {
	a, err := s.lookupLocked(acct)
	if err != nil {
		return nil, err
	}
	for _, p := range a.posts {
		if p.id == mediaID && !p.deleted {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w: %q on %s", ErrUnknownPost, mediaID, a.username)
}
