package graph

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kind says what a caller should do about a failed call.
type Kind int

// The kinds of failure, classified by Instagram's numeric codes (never by
// the envelope's type string) and, on the OAuth endpoints, by message.
const (
	// KindBadRequest: bad parameter, object gone or an unclassified refusal; do not retry blindly.
	KindBadRequest Kind = iota
	// KindTokenInvalid: the token is dead (190 family, 102); the owner must reconnect.
	KindTokenInvalid
	// KindThrottled: a rate limit holds; wait for RetryAfter without calling.
	KindThrottled
	// KindTransient: a server hiccup (1, 2, 5xx, timeout, malformed answer); try again later.
	KindTransient
	// KindPermission: a permission is missing (10, 200–299); the owner must reconnect with the scope.
	KindPermission
	// KindTokenTooYoung: a refresh was refused because the token is under 24 hours old; not a dead token.
	KindTokenTooYoung
	// KindCodeInvalid: the OAuth code was unknown, already used or expired; start the connect flow again.
	KindCodeInvalid
	// KindRedirectMismatch: the redirect URI differs from the registered one; a configuration error.
	KindRedirectMismatch
	// KindInvalidApp: wrong Instagram app id or secret; a configuration error.
	KindInvalidApp
	// KindUnreachable: Instagram could not be reached at all (DNS, refused connection, TLS).
	KindUnreachable
)

var kindNames = [...]string{
	KindBadRequest:       "bad_request",
	KindTokenInvalid:     "token_invalid",
	KindThrottled:        "throttled",
	KindTransient:        "transient",
	KindPermission:       "permission",
	KindTokenTooYoung:    "token_too_young",
	KindCodeInvalid:      "code_invalid",
	KindRedirectMismatch: "redirect_mismatch",
	KindInvalidApp:       "invalid_app",
	KindUnreachable:      "unreachable",
}

// String returns the snake_case name used in logs and metric labels.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind_" + strconv.Itoa(int(k))
}

// Sentinels for errors.Is; a *Error matches the one of its Kind.
var (
	ErrTokenInvalid     = errors.New("graph: token invalid")
	ErrThrottled        = errors.New("graph: throttled")
	ErrTransient        = errors.New("graph: temporarily unavailable")
	ErrTokenTooYoung    = errors.New("graph: token too young to refresh")
	ErrCodeInvalid      = errors.New("graph: authorization code invalid or used")
	ErrRedirectMismatch = errors.New("graph: redirect uri mismatch")
	ErrInvalidApp       = errors.New("graph: invalid app id or secret")
	ErrPermission       = errors.New("graph: permission missing")
	ErrBadRequest       = errors.New("graph: bad request")
	ErrUnreachable      = errors.New("graph: unreachable")
)

var kindSentinels = [...]error{
	KindBadRequest:       ErrBadRequest,
	KindTokenInvalid:     ErrTokenInvalid,
	KindThrottled:        ErrThrottled,
	KindTransient:        ErrTransient,
	KindPermission:       ErrPermission,
	KindTokenTooYoung:    ErrTokenTooYoung,
	KindCodeInvalid:      ErrCodeInvalid,
	KindRedirectMismatch: ErrRedirectMismatch,
	KindInvalidApp:       ErrInvalidApp,
	KindUnreachable:      ErrUnreachable,
}

// Error is a failed Graph or OAuth call. Message is sanitized: it never
// holds a token, secret, code or unredacted URL.
type Error struct {
	Kind       Kind
	Endpoint   string // which call failed: "code", "exchange", "refresh", "me", "media"
	HTTPStatus int    // 0 when no response arrived
	Code       int
	Subcode    int
	Type       string
	Message    string
	RetryAfter time.Duration // for KindThrottled (and transient answers with Retry-After): how long to wait
	FBTraceID  string

	cause error // already redacted; exposed through Unwrap
}

// Error describes the failure without secrets.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("graph: ")
	if e.Endpoint != "" {
		b.WriteString(e.Endpoint)
		b.WriteString(": ")
	}
	b.WriteString(e.Kind.String())
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	var details []string
	if e.Code != 0 {
		details = append(details, "code "+strconv.Itoa(e.Code))
	}
	if e.Subcode != 0 {
		details = append(details, "subcode "+strconv.Itoa(e.Subcode))
	}
	if e.HTTPStatus != 0 {
		details = append(details, "http "+strconv.Itoa(e.HTTPStatus))
	}
	if e.RetryAfter > 0 {
		details = append(details, "retry after "+e.RetryAfter.Round(time.Second).String())
	}
	if len(details) > 0 {
		b.WriteString(" (")
		b.WriteString(strings.Join(details, ", "))
		b.WriteString(")")
	}
	return b.String()
}

// Is lets errors.Is match the Kind's sentinel. ErrTransient also matches
// KindUnreachable: both mean "try again later".
func (e *Error) Is(target error) bool {
	if int(e.Kind) < len(kindSentinels) && kindSentinels[e.Kind] == target {
		return true
	}
	return target == ErrTransient && e.Kind == KindUnreachable
}

// Unwrap returns the (redacted) transport or context error behind a failure, if any.
func (e *Error) Unwrap() error { return e.cause }

// NeedsReauth reports whether only the owner reconnecting can fix this:
// a dead token or a missing permission.
func (e *Error) NeedsReauth() bool {
	return e.Kind == KindTokenInvalid || e.Kind == KindPermission
}

// Temporary reports whether the same call may succeed later without anyone acting.
func (e *Error) Temporary() bool {
	switch e.Kind {
	case KindThrottled, KindTransient, KindUnreachable, KindTokenTooYoung:
		return true
	}
	return false
}

// NeedsReauth reports whether err is a *Error that only reconnecting can fix.
func NeedsReauth(err error) bool {
	var ge *Error
	return errors.As(err, &ge) && ge.NeedsReauth()
}

// RetryAfter returns how long err asks the caller to wait, or 0.
func RetryAfter(err error) time.Duration {
	var ge *Error
	if errors.As(err, &ge) {
		return ge.RetryAfter
	}
	return 0
}

// classify sets e.Kind from the HTTP status, codes and, for the OAuth and
// refresh endpoints, the message wording Instagram is known to use.
func classify(e *Error, transientFlag bool) {
	msg := strings.ToLower(e.Message)
	onCode := e.Endpoint == endpointCode
	withSecret := onCode || e.Endpoint == endpointExchange
	switch {
	case e.Endpoint == endpointRefresh && strings.Contains(msg, "24 hour"):
		e.Kind = KindTokenTooYoung
	case onCode && strings.Contains(msg, "redirect_uri"):
		e.Kind = KindRedirectMismatch
	case onCode && (strings.Contains(msg, "matching code was not found") ||
		strings.Contains(msg, "already used") ||
		strings.Contains(msg, "code") && strings.Contains(msg, "expired")):
		e.Kind = KindCodeInvalid
	case withSecret && (strings.Contains(msg, "invalid platform app") ||
		strings.Contains(msg, "client secret") || strings.Contains(msg, "client_secret") ||
		strings.Contains(msg, "client_id")),
		e.Code == 101:
		e.Kind = KindInvalidApp
	case e.Code == 190 || e.Code == 102:
		e.Kind = KindTokenInvalid
	case isThrottleCode(e.Code) || e.HTTPStatus == http.StatusTooManyRequests:
		e.Kind = KindThrottled
	case e.Code == 10 || (e.Code >= 200 && e.Code <= 299):
		e.Kind = KindPermission
	case e.Code == 1 || e.Code == 2:
		e.Kind = KindTransient
	case e.Code == 100:
		e.Kind = KindBadRequest
	case e.HTTPStatus >= 500, transientFlag:
		e.Kind = KindTransient
	default:
		e.Kind = KindBadRequest
	}
}

// isThrottleCode reports the Graph codes that mean "rate limited" (368 is
// a temporary block, handled as throttling with a long back-off).
func isThrottleCode(code int) bool {
	switch code {
	case 4, 17, 32, 613, 341, 80002, 368:
		return true
	}
	return code >= 80000 && code <= 80014 // the Business Use Case family
}

// maxMessage bounds how much upstream wording an error carries.
const maxMessage = 300

// sanitizeMessage makes upstream text safe for logs: secrets named in
// secrets are cut out, URL parameters redacted, control characters and
// invalid UTF-8 dropped, and the length bounded.
func sanitizeMessage(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	s = Redact(s)
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			if r == '\n' || r == '\t' || r == '\r' {
				return ' '
			}
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// errorf builds a client-side *Error (no upstream response involved).
func errorf(kind Kind, endpoint, format string, args ...any) *Error {
	return &Error{Kind: kind, Endpoint: endpoint, Message: fmt.Sprintf(format, args...)}
}
