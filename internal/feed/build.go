package feed

import (
	"context"
	"strings"
	"time"

	"github.com/feedd/feedd/internal/model"
)

// avatarMinWidth: the avatar is shown small; the smallest stored size at
// least this wide is enough even on dense screens.
const avatarMinWidth = 150

// snapshot is a feed's stored posts built once into the document's shape,
// all of them, unpaged: every page is cut from it. The pages other than the
// default one, and the HTML renderer's documents, are cut from a snapshot
// kept in the hot cache (a meta entry), so a page for any limit, type or
// cursor costs no database read, and cached answers hold only their bytes.
type snapshot struct {
	head    Doc // the document without its posts
	posts   []Post
	allowed []string
}

// page cuts the document for q from the snapshot. It also returns the
// cursor that names the page's position in the snapshot ("" for the first
// page), which differs from q.After when that names no stored post.
func (sn *snapshot) page(q Query) (*Doc, string) {
	d := sn.head
	var after string
	d.Posts, d.Next, after = page(sn.posts, q)
	return &d, after
}

// Size is about the memory the snapshot holds, for the cache's bound.
func (sn *snapshot) Size() int {
	d := sn.head
	d.Posts = sn.posts
	n := d.size()
	for _, o := range sn.allowed {
		n += len(o) + 16
	}
	return n
}

// buildSnapshot turns a feed's stored snapshot into its posts as the v1
// document shows them.
func (s *Service) buildSnapshot(ctx context.Context, f model.Feed) (*snapshot, error) {
	sn := &snapshot{head: Doc{Version: Version, ID: f.ID}, posts: []Post{}, allowed: f.AllowedOrigins}
	doc := &sn.head
	if f.FetchedAt.IsZero() {
		// Nothing fetched yet: account null, no posts (product.md).
		doc.Stale = !f.LastFetchAt.IsZero() && !f.LastFetchOK
		return sn, nil
	}
	records, err := s.store.Posts(ctx, f.ID)
	if err != nil {
		return nil, err
	}
	srcs, err := s.store.Sources(ctx, f.ID)
	if err != nil {
		return nil, err
	}
	// The header shows the chosen source's account, the main one unless the
	// owner chose another.
	var header *model.Account
	names := make(map[string]string, len(srcs))
	for i := range srcs {
		names[srcs[i].ID] = srcs[i].Account.Username
		if srcs[i].ID == f.HeaderSource || header == nil && srcs[i].ID == model.MainSource {
			header = &srcs[i].Account
		}
	}
	keys := make([]string, 0, len(records)*2+1)
	if header != nil && header.AvatarKey != "" {
		keys = append(keys, header.AvatarKey)
	}
	for i := range records {
		if k := records[i].MediaKey; k != "" {
			keys = append(keys, k)
		}
		for _, c := range records[i].Children {
			if c.MediaKey != "" {
				keys = append(keys, c.MediaKey)
			}
		}
	}
	keys = append(keys, videoKeys(f.ID, records)...)
	media, err := s.store.MediaByKeys(ctx, keys)
	if err != nil {
		return nil, err
	}
	fetched := f.FetchedAt.UTC()
	doc.UpdatedAt = &fetched
	doc.Stale = !f.LastFetchAt.IsZero() && !f.LastFetchOK || s.outdated(f, s.now())
	s.setAge(f.ID, f.FetchedAt)

	if header != nil {
		doc.Account = &Account{
			Username:   header.Username,
			Name:       header.Name,
			ProfileURL: "https://www.instagram.com/" + header.Username + "/",
			// As of the last profile read; absent when Instagram gave none.
			FollowersCount: header.FollowersCount,
			MediaCount:     header.MediaCount,
		}
		if m, ok := media[header.AvatarKey]; ok {
			if ims := s.images(m); len(ims) > 0 {
				v := ims[len(ims)-1]
				for _, c := range ims {
					if c.Width >= avatarMinWidth {
						v = c
						break
					}
				}
				doc.Account.Avatar = &v
			}
		}
	}
	sn.posts = make([]Post, 0, len(records))
	for i := range records {
		src := records[i].SourceID
		if src == "" {
			src = model.MainSource
		}
		if p, ok := s.buildPost(&records[i], media, names[src]); ok {
			p.Username = names[src]
			s.attachVideo(&p, f.ID, media)
			sn.posts = append(sn.posts, p)
		}
	}
	if sn.posts, err = s.curate(ctx, f.ID, sn.posts); err != nil {
		return nil, err
	}
	return sn, nil
}

// buildPost converts one stored post. A post without any stored image is
// left out (its download is retried on the next poll): an empty tile is
// worse than a missing one.
func (s *Service) buildPost(r *model.Post, media map[string]model.Media, username string) (Post, bool) {
	p := Post{
		ID:            r.ID,
		Type:          postType(r.MediaType),
		IsReel:        r.IsReel,
		Permalink:     r.Permalink,
		Timestamp:     r.Timestamp.UTC(),
		Caption:       r.Caption,
		Alt:           AltText(r.AltText, r.Caption, username),
		LikeCount:     r.LikeCount,
		CommentsCount: r.CommentsCount,
	}
	if p.Type == "" {
		return Post{}, false
	}
	if m, ok := media[r.MediaKey]; ok {
		p.Images = s.images(m)
		p.Sources = s.sources(m)
		p.Color = m.Color
	}
	if p.Type == TypeCarousel {
		n := len(r.Children)
		for i, c := range r.Children {
			m, ok := media[c.MediaKey]
			if !ok || len(m.Variants) == 0 {
				continue
			}
			typ := postType(c.MediaType)
			if typ == "" || typ == TypeCarousel {
				typ = TypeImage
			}
			alt := collapseSpace(deref(c.AltText))
			if alt == "" {
				alt = p.Alt + " (" + itoa(i+1) + " of " + itoa(n) + ")"
			}
			p.Children = append(p.Children, Child{ID: c.ID, Type: typ, Alt: alt, Color: m.Color, Images: s.images(m), Sources: s.sources(m)})
		}
		if len(p.Images) == 0 && len(p.Children) > 0 {
			p.Images, p.Sources, p.Color = p.Children[0].Images, p.Children[0].Sources, p.Children[0].Color
		}
	}
	if len(p.Images) == 0 {
		return Post{}, false
	}
	return p, true
}

// images lists m's JPEGs, smallest first.
func (s *Service) images(m model.Media) []Image {
	return s.imagesIn(m, "")
}

// sourceFormats are the formats listed in sources, in the order a browser
// should prefer them: the smaller first.
var sourceFormats = []string{model.FormatAVIF, model.FormatWebP}

// sources lists m's other formats, each only when it has every size the
// JPEGs have, so that a browser choosing it never gets a worse fit.
func (s *Service) sources(m model.Media) []ImageSource {
	var out []ImageSource
	jpegs := 0
	for _, v := range m.Variants {
		if v.Format == "" {
			jpegs++
		}
	}
	for _, f := range sourceFormats {
		if ims := s.imagesIn(m, f); len(ims) > 0 && len(ims) == jpegs {
			out = append(out, ImageSource{Type: model.FormatType(f), Images: ims})
		}
	}
	return out
}

func (s *Service) imagesIn(m model.Media, format string) []Image {
	out := make([]Image, 0, len(m.Variants))
	for _, v := range m.Variants {
		if v.Format == format {
			out = append(out, Image{URL: s.mediaURL(v.File), Width: v.Width, Height: v.Height})
		}
	}
	// Smallest first, whatever order the row came in.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Width < out[j-1].Width; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func (s *Service) mediaURL(file string) string {
	return s.public + "/media/" + strings.TrimLeft(file, "/")
}

// postType maps Instagram's media_type to the JSON type.
func postType(mediaType string) string {
	switch mediaType {
	case model.MediaImage:
		return TypeImage
	case model.MediaVideo:
		return TypeVideo
	case model.MediaCarousel:
		return TypeCarousel
	}
	return ""
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func (s *Service) setAge(id string, fetchedAt time.Time) {
	s.mu.Lock()
	s.ages[id] = fetchedAt
	s.mu.Unlock()
}
