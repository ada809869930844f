package feed

import (
	"time"
	"unsafe"
)

// Version is the version of the public feed JSON.
const Version = 1

// Doc is the version 1 feed document served at /api/v1/feeds/{id} and
// rendered by the HTML fragment and the widget. See docs/api.md.
type Doc struct {
	Version   int        `json:"version"`
	ID        string     `json:"id"`
	UpdatedAt *time.Time `json:"updated_at"` // null until the first successful fetch
	Stale     bool       `json:"stale"`      // true while the last poll failed
	Account   *Account   `json:"account"`    // null until fetched
	Posts     []Post     `json:"posts"`      // never null: [] when empty
	Next      *string    `json:"next"`       // opaque cursor, null on the last page
}

// Account is the public view of the connected Instagram account.
type Account struct {
	Username   string `json:"username"`
	Name       string `json:"name,omitempty"`
	ProfileURL string `json:"profile_url"`
	Avatar     *Image `json:"avatar,omitempty"`
	// FollowersCount and MediaCount are Instagram's counts from the last
	// profile read; omitted when Instagram gave none.
	FollowersCount *int64 `json:"followers_count,omitempty"`
	MediaCount     *int64 `json:"media_count,omitempty"`
}

// Image is one stored size of an image, served by feedd itself.
type Image struct {
	URL    string `json:"url"` // absolute, on FEEDD_PUBLIC_URL
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// ImageSource is the post's images in one more format than JPEG, for a
// <picture> element's <source>: the same sizes as the post's images,
// smallest first. Listed once the format is stored for every size.
type ImageSource struct {
	Type   string  `json:"type"` // image/avif or image/webp
	Images []Image `json:"images"`
}

// Post types as they appear in the JSON "type" field.
const (
	TypeImage    = "image"
	TypeVideo    = "video"
	TypeCarousel = "carousel"
)

// Post is one Instagram post. Optional fields Instagram omits stay omitted.
type Post struct {
	ID            string        `json:"id"`
	Type          string        `json:"type"` // image, video or carousel
	IsReel        bool          `json:"is_reel"`
	Permalink     string        `json:"permalink"`
	Timestamp     time.Time     `json:"timestamp"`
	Caption       *string       `json:"caption,omitempty"`
	Alt           string        `json:"alt"` // alt_text, or a caption-derived fallback
	LikeCount     *int64        `json:"like_count,omitempty"`
	CommentsCount *int64        `json:"comments_count,omitempty"`
	Color         string        `json:"color,omitempty"`    // dominant colour, #rrggbb
	Images        []Image       `json:"images"`             // smallest first; a video's cover
	Sources       []ImageSource `json:"sources,omitempty"`  // Images in AVIF, WebP: the preferred first
	Children      []Child       `json:"children,omitempty"` // carousel items
	// Video is the stored video file of a video or reel, when its feed
	// stores videos and this one fitted the caps; absent otherwise.
	Video *Video `json:"video,omitempty"`
	// Pinned: the owner pinned it, so it comes first whatever its date.
	Pinned bool `json:"pinned,omitempty"`
	// Username is the Instagram account the post came from: a feed may
	// show several.
	Username string `json:"username,omitempty"`
}

// Child is one item of a carousel.
type Child struct {
	ID     string  `json:"id"`
	Type   string  `json:"type"` // image or video
	Alt    string  `json:"alt"`
	Color  string  `json:"color,omitempty"`
	Images []Image `json:"images"`
	// Sources are Images in other formats, as in Post.
	Sources []ImageSource `json:"sources,omitempty"`
}

// size is about the memory d holds, for the hot cache's bound.
func (d *Doc) size() int {
	n := int(unsafe.Sizeof(*d)) + len(d.ID)
	if d.UpdatedAt != nil {
		n += int(unsafe.Sizeof(*d.UpdatedAt))
	}
	if d.Next != nil {
		n += 16 + len(*d.Next)
	}
	if a := d.Account; a != nil {
		n += int(unsafe.Sizeof(*a)) + len(a.Username) + len(a.Name) + len(a.ProfileURL)
		if a.FollowersCount != nil {
			n += 8
		}
		if a.MediaCount != nil {
			n += 8
		}
		if a.Avatar != nil {
			n += imagesSize([]Image{*a.Avatar})
		}
	}
	for i := range d.Posts {
		p := &d.Posts[i]
		n += int(unsafe.Sizeof(*p)) + len(p.ID) + len(p.Type) + len(p.Permalink) + len(p.Alt) + len(p.Color) + len(p.Username) + imagesSize(p.Images) + sourcesSize(p.Sources)
		if p.Caption != nil {
			n += 16 + len(*p.Caption)
		}
		if p.LikeCount != nil {
			n += 8
		}
		if p.CommentsCount != nil {
			n += 8
		}
		if p.Video != nil {
			n += int(unsafe.Sizeof(*p.Video)) + len(p.Video.URL)
		}
		for j := range p.Children {
			c := &p.Children[j]
			n += int(unsafe.Sizeof(*c)) + len(c.ID) + len(c.Type) + len(c.Alt) + len(c.Color) + imagesSize(c.Images) + sourcesSize(c.Sources)
		}
	}
	return n
}

func imagesSize(ims []Image) int {
	n := 0
	for _, im := range ims {
		n += int(unsafe.Sizeof(im)) + len(im.URL)
	}
	return n
}

func sourcesSize(ss []ImageSource) int {
	n := 0
	for _, s := range ss {
		n += int(unsafe.Sizeof(s)) + len(s.Type) + imagesSize(s.Images)
	}
	return n
}
