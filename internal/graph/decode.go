package graph

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ShortLived is the answer to a code exchange: a one-hour token.
type ShortLived struct {
	AccessToken string
	UserID      string // app-scoped user id, exact decimal digits (above 2^53: never a float)
	Permissions []string
}

// Token is a long-lived or refreshed token.
type Token struct {
	AccessToken string
	// ExpiresAt is now + ExpiresIn; zero when Instagram did not say (treat as unknown, refresh soon).
	ExpiresAt time.Time
	ExpiresIn time.Duration
}

// Profile is the connected professional account, from /me.
type Profile struct {
	ID                string // app-scoped id (equals ShortLived.UserID)
	UserID            string // professional account id (1784...)
	Username          string
	Name              string
	AccountType       string // upper-case: BUSINESS, MEDIA_CREATOR
	ProfilePictureURL string // signed CDN URL; download while fresh, never hand to a browser
	FollowersCount    *int64
	FollowsCount      *int64
	MediaCount        *int64
}

// Media is one post or carousel child. Absent fields stay absent: nil
// pointers and empty strings, never invented zeros.
type Media struct {
	ID            string
	MediaType     string // IMAGE, VIDEO or CAROUSEL_ALBUM
	Caption       *string
	MediaURL      string // may be empty (reels with copyrighted audio)
	ThumbnailURL  string // video cover; carousels carry none
	Permalink     string
	Timestamp     time.Time // zero when absent
	Username      string
	LikeCount     *int64 // nil when likes are hidden
	CommentsCount *int64
	AltText       *string
	Children      []Media // carousel children, in order
}

// Media types as Instagram spells them.
const (
	MediaTypeImage    = "IMAGE"
	MediaTypeVideo    = "VIDEO"
	MediaTypeCarousel = "CAROUSEL_ALBUM"
)

// IsReel reports whether m is a reel: a VIDEO whose permalink is a /reel/ one.
func (m *Media) IsReel() bool {
	return m.MediaType == MediaTypeVideo && strings.Contains(m.Permalink, "/reel/")
}

// CoverURL returns the URL of the picture that stands for m: an image's
// media_url, a video's thumbnail_url (media_url when that is missing), a
// carousel's first image child (or first video child's cover). Empty when
// there is none.
func (m *Media) CoverURL() string {
	switch m.MediaType {
	case MediaTypeImage:
		return m.MediaURL
	case MediaTypeVideo:
		if m.ThumbnailURL != "" {
			return m.ThumbnailURL
		}
		return "" // a video's media_url is a video file, not a picture
	case MediaTypeCarousel:
		for i := range m.Children {
			if c := &m.Children[i]; c.MediaType == MediaTypeImage && c.MediaURL != "" {
				return c.MediaURL
			}
		}
		for i := range m.Children {
			if c := &m.Children[i]; c.MediaType == MediaTypeVideo && c.ThumbnailURL != "" {
				return c.ThumbnailURL
			}
		}
		if m.ThumbnailURL != "" {
			return m.ThumbnailURL
		}
		if len(m.Children) == 0 {
			return m.MediaURL // children not expanded: media_url is the first child's
		}
		return ""
	}
	if m.ThumbnailURL != "" {
		return m.ThumbnailURL
	}
	return m.MediaURL
}

// ---- tolerant scalar types ----

// flexID is an id sent as a JSON string or a bare JSON number; it keeps
// the exact digits (a float64 would corrupt ids above 2^53).
type flexID string

func (f *flexID) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	s := b
	if b[0] == '"' {
		// Digits never need JSON escapes, so a quoted id is its bytes between the quotes.
		if len(b) < 2 || b[len(b)-1] != '"' {
			return errors.New("id is not a decimal number")
		}
		s = b[1 : len(b)-1]
	}
	if !isDigits(s) {
		return errors.New("id is not a decimal number")
	}
	*f = flexID(s)
	return nil
}

func isDigits(b []byte) bool {
	if len(b) == 0 || len(b) > 40 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// flexInt is a count or duration sent as a JSON number or a string of digits.
type flexInt struct {
	v   int64
	set bool
}

func (f *flexInt) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	s := b
	if len(b) > 0 && b[0] == '"' {
		s = bytes.Trim(b, `"`)
	}
	v, err := strconv.ParseInt(string(s), 10, 64)
	if err != nil {
		// Accept integral floats (1e3, 12.0); reject anything else.
		fv, ferr := strconv.ParseFloat(string(s), 64)
		if ferr != nil || fv != float64(int64(fv)) {
			return errors.New("value is not an integer")
		}
		v = int64(fv)
	}
	f.v, f.set = v, true
	return nil
}

func (f flexInt) ptr() *int64 {
	if !f.set {
		return nil
	}
	v := f.v
	return &v
}

// flexList is a list of strings sent as a JSON array or a comma-separated string.
type flexList []string

func (f *flexList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '[' {
		var l []string
		if err := json.Unmarshal(b, &l); err != nil {
			return err
		}
		*f = l
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	var l []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			l = append(l, p)
		}
	}
	*f = l
	return nil
}

// mediaType interns the three known media types (one allocation less per item).
type mediaType string

func (m *mediaType) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"IMAGE"`:
		*m = MediaTypeImage
	case `"VIDEO"`:
		*m = MediaTypeVideo
	case `"CAROUSEL_ALBUM"`:
		*m = MediaTypeCarousel
	case "null":
	default:
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return errors.New("media_type is not a string")
		}
		*m = mediaType(s)
	}
	return nil
}

// igTime is a Graph timestamp: 2021-08-13T08:25:28+0000, or RFC 3339.
type igTime time.Time

// TimestampLayout is how the Graph API writes timestamps (not RFC 3339).
const TimestampLayout = "2006-01-02T15:04:05-0700"

func (t *igTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return errors.New("timestamp is not a string")
	}
	s := string(b[1 : len(b)-1])
	if s == "" {
		return nil
	}
	v, err := time.Parse(TimestampLayout, s)
	if err != nil {
		var err2 error
		if v, err2 = time.Parse(time.RFC3339, s); err2 != nil {
			return errors.New("timestamp: want " + TimestampLayout + " or RFC 3339")
		}
	}
	*t = igTime(v)
	return nil
}

// ---- wire shapes ----

type wireShortLived struct {
	AccessToken string   `json:"access_token"`
	UserID      flexID   `json:"user_id"`
	Permissions flexList `json:"permissions"`
}

type wireToken struct {
	AccessToken string  `json:"access_token"`
	TokenType   string  `json:"token_type"`
	ExpiresIn   flexInt `json:"expires_in"`
}

type wireProfile struct {
	ID                flexID  `json:"id"`
	UserID            flexID  `json:"user_id"`
	Username          string  `json:"username"`
	Name              string  `json:"name"`
	AccountType       string  `json:"account_type"`
	ProfilePictureURL string  `json:"profile_picture_url"`
	FollowersCount    flexInt `json:"followers_count"`
	FollowsCount      flexInt `json:"follows_count"`
	MediaCount        flexInt `json:"media_count"`
}

type wireMedia struct {
	ID            flexID    `json:"id"`
	MediaType     mediaType `json:"media_type"`
	Caption       *string   `json:"caption"`
	MediaURL      string    `json:"media_url"`
	ThumbnailURL  string    `json:"thumbnail_url"`
	Permalink     string    `json:"permalink"`
	Timestamp     igTime    `json:"timestamp"`
	Username      string    `json:"username"`
	LikeCount     flexInt   `json:"like_count"`
	CommentsCount flexInt   `json:"comments_count"`
	AltText       *string   `json:"alt_text"`
	Children      *struct {
		Data []wireMedia `json:"data"`
	} `json:"children"`
}

type wireMediaPage struct {
	Data   []wireMedia `json:"data"`
	Paging struct {
		Next string `json:"next"`
	} `json:"paging"`
}

// mediaPage is one decoded page of /me/media.
type mediaPage struct {
	Items []Media
	Next  string // raw paging.next; holds the token, never log it
}

// errMalformed marks an answer that could not be decoded.
var errMalformed = errors.New("malformed response")

// decodeJSON streams one JSON value from r into v.
func decodeJSON(r io.Reader, v any) error {
	if err := json.NewDecoder(r).Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return fmt.Errorf("%w: invalid JSON at byte %d", errMalformed, se.Offset)
		case errors.As(err, &te):
			return fmt.Errorf("%w: field %q: want %s, got JSON %s", errMalformed, te.Field, te.Type, te.Value)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("%w: truncated body", errMalformed)
		default:
			// Our own UnmarshalJSON errors never quote the value.
			return fmt.Errorf("%w: %s", errMalformed, err.Error())
		}
	}
	return nil
}

// decodeShortLived reads a code-exchange answer: flat or wrapped in a
// "data" array, user_id as number or string, permissions as array or string.
func decodeShortLived(r io.Reader) (ShortLived, error) {
	var w struct {
		wireShortLived
		Data []wireShortLived `json:"data"`
	}
	if err := decodeJSON(r, &w); err != nil {
		return ShortLived{}, err
	}
	t := w.wireShortLived
	if t.AccessToken == "" && len(w.Data) > 0 {
		t = w.Data[0]
	}
	if t.AccessToken == "" {
		return ShortLived{}, fmt.Errorf("%w: no access_token", errMalformed)
	}
	if t.UserID == "" {
		return ShortLived{}, fmt.Errorf("%w: no user_id", errMalformed)
	}
	return ShortLived{AccessToken: t.AccessToken, UserID: string(t.UserID), Permissions: []string(t.Permissions)}, nil
}

// decodeToken reads an ig_exchange_token / ig_refresh_token answer.
func decodeToken(r io.Reader, now time.Time) (Token, error) {
	var w wireToken
	if err := decodeJSON(r, &w); err != nil {
		return Token{}, err
	}
	if w.AccessToken == "" {
		return Token{}, fmt.Errorf("%w: no access_token", errMalformed)
	}
	t := Token{AccessToken: w.AccessToken}
	// Bound expires_in to ten years so a hostile value cannot overflow.
	if w.ExpiresIn.set && w.ExpiresIn.v > 0 && w.ExpiresIn.v < 10*365*24*3600 {
		t.ExpiresIn = time.Duration(w.ExpiresIn.v) * time.Second
		t.ExpiresAt = now.Add(t.ExpiresIn)
	}
	return t, nil
}

// decodeProfile reads a /me answer.
func decodeProfile(r io.Reader) (Profile, error) {
	var w wireProfile
	if err := decodeJSON(r, &w); err != nil {
		return Profile{}, err
	}
	if w.ID == "" {
		return Profile{}, fmt.Errorf("%w: no id", errMalformed)
	}
	return Profile{
		ID: string(w.ID), UserID: string(w.UserID), Username: w.Username, Name: w.Name,
		AccountType: w.AccountType, ProfilePictureURL: w.ProfilePictureURL,
		FollowersCount: w.FollowersCount.ptr(), FollowsCount: w.FollowsCount.ptr(), MediaCount: w.MediaCount.ptr(),
	}, nil
}

// decodeMediaPage reads one /me/media page.
func decodeMediaPage(r io.Reader) (mediaPage, error) {
	var w wireMediaPage
	if err := decodeJSON(r, &w); err != nil {
		return mediaPage{}, err
	}
	items := make([]Media, 0, len(w.Data))
	for i := range w.Data {
		if w.Data[i].ID == "" {
			return mediaPage{}, fmt.Errorf("%w: media item %d has no id", errMalformed, i)
		}
		items = append(items, w.Data[i].media())
	}
	return mediaPage{Items: items, Next: w.Paging.Next}, nil
}

func (w *wireMedia) media() Media {
	m := Media{
		ID: string(w.ID), MediaType: string(w.MediaType), Caption: w.Caption, MediaURL: w.MediaURL,
		ThumbnailURL: w.ThumbnailURL, Permalink: w.Permalink, Timestamp: time.Time(w.Timestamp),
		Username: w.Username, LikeCount: w.LikeCount.ptr(), CommentsCount: w.CommentsCount.ptr(), AltText: w.AltText,
	}
	if w.Children != nil && len(w.Children.Data) > 0 {
		m.Children = make([]Media, 0, len(w.Children.Data))
		for i := range w.Children.Data {
			if w.Children.Data[i].ID == "" {
				continue // a child without id is unusable; keep the rest of the carousel
			}
			m.Children = append(m.Children, w.Children.Data[i].media())
		}
	}
	return m
}

// ---- error envelopes ----

// wireError accepts both envelopes: the Graph {"error":{...}} one and the
// token host's flat {"error_type","code","error_message"}. Some OAuth
// errors also come as {"error":"...","error_description":"..."}.
type wireError struct {
	Error            json.RawMessage `json:"error"`
	ErrorType        string          `json:"error_type"`
	Code             flexInt         `json:"code"`
	ErrorMessage     string          `json:"error_message"`
	ErrorDescription string          `json:"error_description"`
}

type wireGraphError struct {
	Message      string  `json:"message"`
	Type         string  `json:"type"`
	Code         flexInt `json:"code"`
	ErrorSubcode flexInt `json:"error_subcode"`
	FBTraceID    string  `json:"fbtrace_id"`
	IsTransient  bool    `json:"is_transient"`
	UserMsg      string  `json:"error_user_msg"`
}

// decodeError turns an error answer into a classified *Error. A body that
// is not a known envelope yields an error classified by status alone and
// carrying none of the body (it may reflect the request).
func decodeError(endpoint string, status int, body []byte, secrets ...string) *Error {
	e := &Error{Endpoint: endpoint, HTTPStatus: status}
	var w wireError
	transient := false
	if json.Unmarshal(body, &w) == nil {
		switch {
		case len(w.Error) > 0 && w.Error[0] == '{':
			var g wireGraphError
			if json.Unmarshal(w.Error, &g) == nil {
				e.Message, e.Type, e.FBTraceID = g.Message, g.Type, g.FBTraceID
				e.Code, e.Subcode = int(g.Code.v), int(g.ErrorSubcode.v)
				transient = g.IsTransient
			}
		case w.ErrorType != "" || w.ErrorMessage != "":
			e.Type, e.Message = w.ErrorType, w.ErrorMessage
			// The token host's "code" repeats the HTTP status; keep it only
			// when it looks like a Graph code so classification is by numbers.
			if c := int(w.Code.v); c != status {
				e.Code = c
			}
		case len(w.Error) > 0 && w.Error[0] == '"':
			var s string
			_ = json.Unmarshal(w.Error, &s)
			e.Type, e.Message = s, w.ErrorDescription
			if e.Message == "" {
				e.Message = s
			}
		}
	}
	if e.Message == "" {
		e.Message = "HTTP " + strconv.Itoa(status)
		if t := http.StatusText(status); t != "" {
			e.Message += " " + t
		}
	}
	e.Message = sanitizeMessage(e.Message, secrets...)
	e.Type = sanitizeMessage(e.Type, secrets...)
	e.FBTraceID = sanitizeMessage(e.FBTraceID)
	if len(e.FBTraceID) > 64 {
		e.FBTraceID = e.FBTraceID[:64]
	}
	classify(e, transient)
	return e
}
