package graph

import (
	"errors"
	"net/url"
	"regexp"
)

// secretParams matches a secret-bearing parameter in a URL, a query string
// or a form body, also when percent-encoded inside another URL (%3D) and
// in JSON ("access_token":"..."). "code" only matches as a whole name, so
// error_code=... is left alone.
var secretParams = regexp.MustCompile(
	`(?i)(^|[^a-z0-9_]|%3f|%26)(access_token|client_secret|code|oh|fb_exchange_token|input_token|signed_request)` +
		`(?:(=|"\s*:\s*")[^&\s#"'<>;,]*|(%3d)[^&%\s#"'<>;,]*)`)

// Redact returns s with the values of access_token, client_secret, code,
// oh (CDN signature) and similar parameters replaced, wherever they occur
// in s: a URL, a query string or a message quoting one.
func Redact(s string) string {
	if s == "" {
		return s
	}
	return secretParams.ReplaceAllString(s, "${1}${2}${3}${4}REDACTED")
}

// redactURLError rewrites the URL inside a *url.Error, which net/http puts
// into every transport error verbatim (token included).
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: Redact(ue.URL), Err: ue.Err}
	}
	return err
}
