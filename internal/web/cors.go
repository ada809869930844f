package web

import (
	"net/http"
	"strings"
)

// Header values assigned into header maps as is, so that writing them
// allocates nothing. Nobody may modify them (len == cap, so an append by a
// later middleware copies rather than writes through).
var (
	hdrAny          = []string{"*"}
	hdrExpose       = []string{"ETag"}
	hdrMethods      = []string{"GET, HEAD, OPTIONS"}
	hdrAllowHeaders = []string{"If-None-Match"}
	hdrMaxAge       = []string{"86400"}
	hdrPreflightVar = []string{"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"}
)

// AllowOrigin is the CORS decision shared by the JSON and HTML feed routes:
// with no allowed origins every site may read the feed ("*"); otherwise the
// request's Origin is echoed when it is in the list (compared without case
// and without a trailing slash; "*" in the list allows all).
func AllowOrigin(allowed []string, origin string) (string, bool) {
	if len(allowed) == 0 {
		return "*", true
	}
	for _, a := range allowed {
		if a == "*" {
			return "*", true
		}
	}
	if origin == "" || origin == "null" {
		return "", false
	}
	for _, a := range allowed {
		if strings.EqualFold(strings.TrimRight(a, "/"), origin) {
			return origin, true
		}
	}
	return "", false
}

// OriginHeader is an AllowOrigin result as a header value; "*" costs no
// allocation.
func OriginHeader(v string) []string {
	if v == "*" {
		return hdrAny
	}
	return []string{v}
}

// SetOrigin lets origin v (an OriginHeader value) read the response and its
// ETag.
func SetOrigin(h http.Header, v []string) {
	h["Access-Control-Allow-Origin"] = v
	h["Access-Control-Expose-Headers"] = hdrExpose
}

// SetPreflight writes the headers of a preflight answer: its Vary, and when
// v (an OriginHeader value) is not nil, the grant for that origin of GET,
// HEAD and OPTIONS with If-None-Match, cached for a day.
func SetPreflight(h http.Header, v []string) {
	h["Vary"] = hdrPreflightVar
	if v == nil {
		return
	}
	h["Access-Control-Allow-Origin"] = v
	h["Access-Control-Allow-Methods"] = hdrMethods
	h["Access-Control-Allow-Headers"] = hdrAllowHeaders
	h["Access-Control-Max-Age"] = hdrMaxAge
}
