// Package web holds feedd's HTTP response rules: the error envelope, CORS,
// ETags and gzip.
//
// Handlers return *Error for anything a client should see; the server's one
// error handler renders it as {"error":{"code","message"}} with its status.
// Any other error becomes a 500 "internal" whose details only reach the log.
package web

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is an error meant for the client: a status, a stable machine code and
// a human message that names what is wrong. It never carries internals.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// RetryAfter, when positive, is sent as a Retry-After header (seconds).
	RetryAfter int `json:"-"`
	// Err is the cause, for logs only; never rendered.
	Err error `json:"-"`
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

// Unwrap returns the logged cause.
func (e *Error) Unwrap() error { return e.Err }

// StatusCode lets Echo and middleware read the status.
func (e *Error) StatusCode() int { return e.Status }

// New returns an Error with the given status, code and message.
func New(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// BadRequest names the offending field or parameter in its message.
func BadRequest(code, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Message: fmt.Sprintf(format, args...)}
}

// NotFound is a 404 for the named kind of thing.
func NotFound(what string) *Error {
	return &Error{Status: http.StatusNotFound, Code: "not_found", Message: what + " not found"}
}

// Unauthorized is the answer to a missing or wrong admin credential.
func Unauthorized() *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "missing or invalid admin credential"}
}

// As extracts an *Error from err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}
