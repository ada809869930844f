package media

import (
	"errors"
	"fmt"
	"net/url"
)

// Sentinel errors returned (wrapped) by Fetch; check them with errors.Is.
var (
	// ErrBadURL is returned for a source URL that cannot be downloaded at all:
	// unparsable, a scheme other than https (http only with AllowPrivate), or
	// credentials in the URL.
	ErrBadURL = errors.New("media: url not allowed")
	// ErrHostNotAllowed is returned when the URL's host (or a redirect's) is
	// not in the allow-list.
	ErrHostNotAllowed = errors.New("media: host not allowed")
	// ErrPrivateAddress is returned when the host resolves to a loopback,
	// private or otherwise internal address.
	ErrPrivateAddress = errors.New("media: private address refused")
	// ErrTooLarge is returned when the body exceeds the byte limit.
	ErrTooLarge = errors.New("media: image too large")
	// ErrBadImage is returned for undecodable or unsupported data, and for
	// images whose dimensions exceed the pixel limits.
	ErrBadImage = errors.New("media: bad image")
	// ErrUpstream is returned when the source answers with a non-200 status
	// or too many redirects; see UpstreamError for the status.
	ErrUpstream = errors.New("media: upstream error")
	// ErrTimeout is returned when a download takes longer than its limit.
	ErrTimeout = errors.New("media: download timed out")
	// ErrBadPath is returned by Remove for a name that is not a stored file's.
	ErrBadPath = errors.New("media: bad file name")
)

// UpstreamError is a non-200 answer from the source. A 403 from the CDN
// usually means the signed URL has expired.
type UpstreamError struct {
	Status int
}

func (e *UpstreamError) Error() string {
	return fmt.Sprintf("media: upstream status %d", e.Status)
}

// Is makes errors.Is(err, ErrUpstream) true for an *UpstreamError.
func (e *UpstreamError) Is(target error) bool { return target == ErrUpstream }

// redact renders u without userinfo, query or fragment: CDN URLs are signed
// and the signature must not reach logs.
func redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}
