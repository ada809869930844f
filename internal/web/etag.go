package web

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// StrongETag is the quoted, strong entity tag of body: the first 12 bytes of
// its SHA-256, base64url.
func StrongETag(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
}

// ETagMatch reports whether an If-None-Match header (all its lines) names
// etag, using the weak comparison RFC 9110 prescribes for If-None-Match:
// W/"x" matches "x"; "*" matches any current representation.
func ETagMatch(ifNoneMatch []string, etag string) bool {
	for _, line := range ifNoneMatch {
		for line != "" {
			line = strings.TrimLeft(line, " \t,")
			if line == "" {
				break
			}
			if line[0] == '*' {
				return true
			}
			if strings.HasPrefix(line, "W/") {
				line = line[2:]
			}
			if line == "" || line[0] != '"' {
				// Not a valid entity tag: skip to the next element.
				i := strings.IndexByte(line, ',')
				if i < 0 {
					break
				}
				line = line[i:]
				continue
			}
			end := strings.IndexByte(line[1:], '"')
			if end < 0 {
				break
			}
			if line[:end+2] == etag {
				return true
			}
			line = line[end+2:]
		}
	}
	return false
}
