package sandbox

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// TimestampLayout is how the Graph API writes times (+0000, not RFC 3339).
const TimestampLayout = "2006-01-02T15:04:05-0700"

// apiError is a Graph API error; status 0 means 400.
type apiError struct {
	status    int
	code      int
	subcode   int
	typ       string
	msg       string
	transient bool
}

func graphErrorResponse(e *apiError) *response {
	status := e.status
	if status == 0 {
		status = http.StatusBadRequest
	}
	trace := make([]byte, 16)
	_, _ = rand.Read(trace)
	body, _ := json.Marshal(map[string]any{"error": struct {
		Message     string `json:"message"`
		Type        string `json:"type"`
		Code        int    `json:"code"`
		Subcode     int    `json:"error_subcode,omitempty"`
		IsTransient bool   `json:"is_transient"`
		FBTraceID   string `json:"fbtrace_id"`
	}{e.msg, e.typ, e.code, e.subcode, e.transient, "A" + base64.RawURLEncoding.EncodeToString(trace)}})
	return newResponse(status, "application/json; charset=UTF-8", body)
}

var versionRe = regexp.MustCompile(`^v[0-9]{1,3}\.[0-9]{1,2}$`)

// graphRoute maps /graph/[vX.Y/]{me,me/media,<media-id>,<media-id>/children}.
func (s *Sandbox) graphRoute(p string) route {
	segs := strings.Split(strings.Trim(strings.TrimPrefix(p, "/graph/"), "/"), "/")
	version := ""
	if len(segs) > 0 && versionRe.MatchString(segs[0]) {
		version, segs = segs[0], segs[1:]
	}
	bind := func(endpoint string, h func(*Sandbox, *http.Request, *reqCtx, string, []string) *response) route {
		return route{endpoint: endpoint, graph: true, handle: func(s *Sandbox, r *http.Request, rc *reqCtx) *response {
			return h(s, r, rc, version, segs)
		}}
	}
	switch {
	case len(segs) == 1 && segs[0] == "me":
		return bind(EndpointMe, (*Sandbox).handleMe)
	case len(segs) == 2 && segs[0] == "me" && segs[1] == "media":
		return bind(EndpointMedia, (*Sandbox).handleMedia)
	case (len(segs) == 1 || len(segs) == 2 && segs[1] == "children") && isDigits(segs[0]):
		return bind(EndpointMediaNode, (*Sandbox).handleNode)
	}
	return route{endpoint: EndpointUnknown, graph: true, handle: func(_ *Sandbox, r *http.Request, _ *reqCtx) *response {
		return graphErrorResponse(&apiError{code: 2500, typ: "OAuthException", msg: "Unknown path components: /" + strings.Join(segs, "/")})
	}}
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// graphPrelude does what every data call does first: method, token, throttle.
func (s *Sandbox) graphPreludeLocked(r *http.Request, rc *reqCtx, object string) (*token, *apiError) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return nil, unsupportedMethod(r, object)
	}
	t, aerr := s.tokenLocked(r.URL.Query().Get("access_token"), rc)
	if aerr != nil {
		return nil, aerr
	}
	return t, s.throttledLocked(t.acct)
}

func (s *Sandbox) throttledLocked(a *account) *apiError {
	now := s.now()
	if now.Before(s.appThrottledUntil) {
		return &apiError{code: 4, typ: "OAuthException", transient: true, msg: "(#4) Application request limit reached"}
	}
	if a != nil && now.Before(a.throttledUntil) {
		return &apiError{code: 80002, typ: "OAuthException", transient: true,
			msg: "There have been too many calls to this Instagram account. Wait a bit and try again."}
	}
	return nil
}

// addUsageHeaders counts the call and sets X-App-Usage and, when the account
// is known, X-Business-Use-Case-Usage, as every Graph answer carries them.
func (s *Sandbox) addUsageHeaders(resp *response, a *account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.appCalls = append(pruneBefore(s.appCalls, now.Add(-time.Hour)), now)
	appPct := percent(len(s.appCalls), s.opts.AppCallBudget)
	if now.Before(s.appThrottledUntil) {
		appPct = 100
	}
	resp.header.Set("X-App-Usage", fmt.Sprintf(`{"call_count":%d,"total_cputime":%d,"total_time":%d}`, appPct, appPct/4, appPct/2))
	if a == nil {
		return
	}
	a.calls = append(pruneBefore(a.calls, now.Add(-24*time.Hour)), now)
	pct := percent(len(a.calls), s.opts.AccountCallBudget)
	regain := 0
	if until := a.throttledUntil; now.Before(until) {
		pct = 100
		regain = int(math.Ceil(until.Sub(now).Minutes()))
	}
	if until := s.appThrottledUntil; now.Before(until) {
		regain = max(regain, int(math.Ceil(until.Sub(now).Minutes())))
	}
	resp.header.Set("X-Business-Use-Case-Usage", fmt.Sprintf(
		`{"%s":[{"type":"instagram","call_count":%d,"total_cputime":%d,"total_time":%d,"estimated_time_to_regain_access":%d}]}`,
		a.userID, pct, pct/4, pct/2, regain))
}

func pruneBefore(ts []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(ts) && ts[i].Before(cutoff) {
		i++
	}
	return ts[i:]
}

func percent(n, budget int) int {
	return min(100, (n*100+budget-1)/budget)
}

// ---- fields ----

type field struct {
	name   string
	sub    []field
	hasSub bool
}

var fieldNameRe = regexp.MustCompile(`^[a-z_]+$`)

// parseFields reads "a,b,children{c,d}" (one nesting level, as Instagram's
// media edges use).
func parseFields(s string, depth int) ([]field, string, error) {
	var out []field
	for {
		i := strings.IndexAny(s, ",{}")
		name := strings.TrimSpace(s)
		if i >= 0 {
			name = strings.TrimSpace(s[:i])
		}
		if !fieldNameRe.MatchString(name) {
			return nil, "", fmt.Errorf("(#100) Syntax error in fields near %q", truncate(name, 40))
		}
		f := field{name: name}
		if i < 0 {
			return append(out, f), "", nil
		}
		s = s[i:]
		if s[0] == '{' {
			if depth > 0 {
				return nil, "", fmt.Errorf("(#100) Fields of %s cannot be expanded further", name)
			}
			sub, rest, err := parseFields(s[1:], depth+1)
			if err != nil {
				return nil, "", err
			}
			if rest == "" || rest[0] != '}' {
				return nil, "", fmt.Errorf("(#100) Syntax error in fields: missing } after %s", name)
			}
			f.sub, f.hasSub, s = sub, true, rest[1:]
		}
		out = append(out, f)
		switch {
		case s == "":
			return out, "", nil
		case s[0] == '}':
			return out, s, nil
		case s[0] == ',':
			s = s[1:]
		default:
			return nil, "", fmt.Errorf("(#100) Syntax error in fields near %q", truncate(s, 40))
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func fieldsParam(r *http.Request, def string) ([]field, *apiError) {
	fs := r.URL.Query().Get("fields")
	if strings.TrimSpace(fs) == "" {
		fs = def
	}
	fields, rest, err := parseFields(fs, 0)
	if err == nil && rest != "" {
		err = fmt.Errorf("(#100) Syntax error in fields: unexpected }")
	}
	if err != nil {
		return nil, &apiError{code: 100, typ: "OAuthException", msg: err.Error()}
	}
	return fields, nil
}

func nonexisting(name, node string) *apiError {
	return &apiError{code: 100, typ: "OAuthException", msg: fmt.Sprintf("(#100) Tried accessing nonexisting field (%s) on node type (%s)", name, node)}
}

// ---- ordered JSON, escaped the way the Graph API escapes ----

type kv struct {
	k string
	v any // string, int, bool, obj, []obj
}

type obj []kv

// withID appends id when the caller did not ask for it: the Graph API
// always returns a node's id.
func (o obj) withID(id string) obj {
	if slices.ContainsFunc(o, func(e kv) bool { return e.k == "id" }) {
		return o
	}
	return append(o, kv{"id", id})
}

func (o obj) appendJSON(b []byte) []byte {
	b = append(b, '{')
	for i, e := range o {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, e.k)
		b = append(b, ':')
		b = appendJSONValue(b, e.v)
	}
	return append(b, '}')
}

func appendJSONValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		return appendJSONString(b, v)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case bool:
		return strconv.AppendBool(b, v)
	case obj:
		return v.appendJSON(b)
	case []obj:
		b = append(b, '[')
		for i, o := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = o.appendJSON(b)
		}
		return append(b, ']')
	}
	panic(fmt.Sprintf("sandbox: cannot encode %T", v))
}

// appendJSONString escapes like the real Graph API: "/" as "\/" and every
// non-ASCII character as \uXXXX (surrogate pairs for emoji), so clients
// meet the escapes live traffic has.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	u := func(b []byte, r rune) []byte {
		return append(b, '\\', 'u', hex[r>>12&0xF], hex[r>>8&0xF], hex[r>>4&0xF], hex[r&0xF])
	}
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\' || r == '/':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r < 0x20:
			b = u(b, r)
		case r < 0x80:
			b = append(b, byte(r))
		case r >= 0x10000:
			r -= 0x10000
			b = u(b, 0xD800+(r>>10))
			b = u(b, 0xDC00+(r&0x3FF))
		default:
			b = u(b, r)
		}
	}
	return append(b, '"')
}

func jsonResponse(o obj) *response {
	resp := newResponse(http.StatusOK, "application/json; charset=UTF-8", o.appendJSON(make([]byte, 0, 4096)))
	resp.header.Set("Cache-Control", "private, no-cache, no-store, must-revalidate")
	return resp
}

// ---- /me ----

func (s *Sandbox) handleMe(r *http.Request, rc *reqCtx, _ string, _ []string) *response {
	fields, aerr := fieldsParam(r, "id")
	if aerr != nil {
		return graphErrorResponse(aerr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, aerr := s.graphPreludeLocked(r, rc, "me")
	if aerr != nil {
		return graphErrorResponse(aerr)
	}
	a, now := t.acct, s.now()
	o := make(obj, 0, len(fields)+1)
	for _, f := range fields {
		if f.hasSub {
			return graphErrorResponse(nonexisting(f.name, "User"))
		}
		var v any
		switch f.name {
		case "id":
			v = a.id
		case "user_id":
			v = a.userID
		case "username":
			v = a.username
		case "name":
			v = a.name
		case "account_type":
			v = a.accountType
		case "profile_picture_url":
			v = s.mintLocked(rc.base, a.profilePic, s.mediaTTL, now)
		case "followers_count":
			v = a.followers
		case "follows_count":
			v = a.follows
		case "media_count":
			v = a.public().MediaCount
		case "biography":
			v = a.biography
		default:
			return graphErrorResponse(nonexisting(f.name, "User"))
		}
		o = append(o, kv{f.name, v})
	}
	return jsonResponse(o.withID(a.id))
}

// ---- media ----

func (s *Sandbox) mediaObjectLocked(p *post, fields []field, base string, now time.Time, child bool) (obj, *apiError) {
	o := make(obj, 0, len(fields)+1)
	for _, f := range fields {
		if f.hasSub && f.name != "children" {
			return nil, nonexisting(f.name, "Media")
		}
		var v any
		switch f.name {
		case "id":
			v = p.id
		case "caption":
			if p.hasCaption && !child {
				v = p.caption
			}
		case "media_type":
			v = p.mediaType
		case "media_url":
			if u := s.mediaURLLocked(p, base, now); u != "" {
				v = u
			}
		case "thumbnail_url":
			if p.mediaType == MediaVideo {
				v = s.mintLocked(base, p.image, s.coverTTL, now)
			}
		case "permalink":
			v = s.permalink(p, base)
		case "shortcode":
			v = p.shortcode
		case "timestamp":
			v = p.timestamp.UTC().Format(TimestampLayout)
		case "username":
			v = p.owner.username
		case "like_count":
			if !p.hideLikes && !child {
				v = p.likes
			}
		case "comments_count":
			if !child {
				v = p.comments
			}
		case "alt_text":
			if p.altText != "" {
				v = p.altText
			}
		case "is_comment_enabled":
			v = !child
		case "media_product_type":
			switch {
			case child:
				v = "CAROUSEL_ITEM"
			case p.reel:
				v = "REELS"
			default:
				v = "FEED"
			}
		case "children":
			if child {
				return nil, nonexisting(f.name, "Media")
			}
			if p.mediaType != MediaCarousel {
				continue
			}
			sub := f.sub
			if !f.hasSub {
				sub = []field{{name: "id"}}
			}
			data := make([]obj, 0, len(p.children))
			for _, c := range p.children {
				co, aerr := s.mediaObjectLocked(c, sub, base, now, true)
				if aerr != nil {
					return nil, aerr
				}
				data = append(data, co)
			}
			v = obj{{"data", data}}
		default:
			return nil, nonexisting(f.name, "Media")
		}
		if v != nil {
			o = append(o, kv{f.name, v})
		}
	}
	return o.withID(p.id), nil
}

// mediaURLLocked mints media_url: the picture, the video file, or for a
// carousel its first child's; "" when absent (reel with licensed audio).
func (s *Sandbox) mediaURLLocked(p *post, base string, now time.Time) string {
	switch {
	case p.mediaType == MediaCarousel:
		if len(p.children) == 0 {
			return ""
		}
		return s.mediaURLLocked(p.children[0], base, now)
	case p.mediaType == MediaVideo:
		if p.noMediaURL {
			return ""
		}
		return s.mintLocked(base, p.video, s.mediaTTL, now)
	}
	return s.mintLocked(base, p.image, s.mediaTTL, now)
}

func (s *Sandbox) permalink(p *post, base string) string {
	if p.reel {
		return base + "/www/reel/" + p.shortcode + "/"
	}
	return base + "/www/p/" + p.shortcode + "/"
}

const mediaDefaultFields = "id"

func encodeCursor(id string) string { return base64.RawURLEncoding.EncodeToString([]byte("sbx:" + id)) }

func decodeCursor(c string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || !strings.HasPrefix(string(b), "sbx:") {
		return "", false
	}
	return string(b[4:]), true
}

func (s *Sandbox) handleMedia(r *http.Request, rc *reqCtx, version string, _ []string) *response {
	fields, aerr := fieldsParam(r, mediaDefaultFields)
	if aerr != nil {
		return graphErrorResponse(aerr)
	}
	q := r.URL.Query()
	limit := 25
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			return graphErrorResponse(&apiError{code: 100, typ: "OAuthException", msg: "(#100) Param limit must be a number"})
		}
		if n > 0 {
			limit = min(n, 100)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, aerr := s.graphPreludeLocked(r, rc, "me")
	if aerr != nil {
		return graphErrorResponse(aerr)
	}
	posts := t.acct.posts
	indexOf := func(c string) int {
		id, ok := decodeCursor(c)
		if !ok {
			return -1
		}
		return slices.IndexFunc(posts, func(p *post) bool { return p.id == id })
	}
	badCursor := graphErrorResponse(&apiError{code: 100, typ: "OAuthException", msg: "(#100) The cursor is invalid or has expired"})
	start, end := 0, min(limit, len(posts))
	switch {
	case q.Get("after") != "":
		i := indexOf(q.Get("after"))
		if i < 0 {
			return badCursor
		}
		start, end = i+1, min(i+1+limit, len(posts))
	case q.Get("before") != "":
		i := indexOf(q.Get("before"))
		if i < 0 {
			return badCursor
		}
		start, end = max(0, i-limit), i
	}
	window := posts[start:end]
	now := s.now()
	data := make([]obj, 0, len(window))
	for _, p := range window {
		if p.deleted { // the slot stays: a page may hold fewer than limit
			continue
		}
		o, aerr := s.mediaObjectLocked(p, fields, rc.base, now, false)
		if aerr != nil {
			return graphErrorResponse(aerr)
		}
		data = append(data, o)
	}
	out := obj{{"data", data}}
	if len(window) > 0 {
		paging := obj{{"cursors", obj{{"before", encodeCursor(window[0].id)}, {"after", encodeCursor(window[len(window)-1].id)}}}}
		link := func(key, cursor string) string {
			v := url.Values{}
			for _, k := range []string{"access_token", "fields"} {
				if q.Has(k) {
					v.Set(k, q.Get(k))
				}
			}
			v.Set("limit", strconv.Itoa(limit))
			v.Set(key, cursor)
			path := "/graph/me/media"
			if version != "" {
				path = "/graph/" + version + "/me/media"
			}
			return rc.base + path + "?" + v.Encode()
		}
		if end < len(posts) {
			paging = append(paging, kv{"next", link("after", encodeCursor(window[len(window)-1].id))})
		}
		if start > 0 {
			paging = append(paging, kv{"previous", link("before", encodeCursor(window[0].id))})
		}
		out = append(out, kv{"paging", paging})
	}
	return jsonResponse(out)
}

// handleNode serves /{media-id} and /{media-id}/children for the token's own posts.
func (s *Sandbox) handleNode(r *http.Request, rc *reqCtx, _ string, segs []string) *response {
	fields, aerr := fieldsParam(r, "id")
	if aerr != nil {
		return graphErrorResponse(aerr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, aerr := s.graphPreludeLocked(r, rc, segs[0])
	if aerr != nil {
		return graphErrorResponse(aerr)
	}
	p, ok := s.media[segs[0]]
	if !ok || p.owner != t.acct || p.deleted || s.parentDeletedLocked(p) {
		return graphErrorResponse(&apiError{code: 100, subcode: 33, typ: "GraphMethodException",
			msg: fmt.Sprintf("Unsupported get request. Object with ID '%s' does not exist, cannot be loaded due to missing permissions, or does not support this operation.", segs[0])})
	}
	now := s.now()
	child := s.isChildLocked(p)
	if len(segs) == 2 {
		data := make([]obj, 0, len(p.children))
		for _, c := range p.children {
			o, aerr := s.mediaObjectLocked(c, fields, rc.base, now, true)
			if aerr != nil {
				return graphErrorResponse(aerr)
			}
			data = append(data, o)
		}
		return jsonResponse(obj{{"data", data}})
	}
	o, aerr := s.mediaObjectLocked(p, fields, rc.base, now, child)
	if aerr != nil {
		return graphErrorResponse(aerr)
	}
	return jsonResponse(o)
}

func (s *Sandbox) parentLocked(c *post) *post {
	for _, p := range c.owner.posts {
		if slices.Contains(p.children, c) {
			return p
		}
	}
	return nil
}

func (s *Sandbox) isChildLocked(p *post) bool { return s.parentLocked(p) != nil }

func (s *Sandbox) parentDeletedLocked(p *post) bool {
	parent := s.parentLocked(p)
	return parent != nil && parent.deleted
}
