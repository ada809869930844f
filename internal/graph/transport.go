package graph

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// request is one logical call; do may send it several times.
type request struct {
	endpoint   string
	acct       string // throttle key
	method     string
	url        string     // holds secrets: never log it unredacted
	form       url.Values // POST body
	idempotent bool       // safe to resend after it reached the server
	secrets    []string   // values to cut out of any upstream message
}

// body is a response body bounded to MaxBodyBytes.
type body struct {
	r io.Reader
	n int64
}

func (b *body) Read(p []byte) (int, error) {
	if b.n <= 0 {
		// Probe one byte to tell "exactly at the limit" from "more to come".
		var one [1]byte
		if k, _ := b.r.Read(one[:]); k > 0 {
			return 0, errBodyTooBig
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	k, err := b.r.Read(p)
	b.n -= int64(k)
	return k, err
}

var errBodyTooBig = fmt.Errorf("body larger than %d bytes", MaxBodyBytes)

// Retry tuning: full-jitter exponential back-off between these bounds.
const (
	retryBase     = 250 * time.Millisecond
	retryCap      = 4 * time.Second
	maxAttempts   = 8
	maxErrorBytes = 64 << 10
)

// do sends req, honouring blocks, the account's budget, the app-wide
// ceiling and the retry budget, and hands a 2xx body to decode. Every error it returns is a
// *Error or wraps ctx.Err(), and none holds a secret.
func (c *Client) do(ctx context.Context, req request, decode func(*body) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("graph: %s: %w", req.endpoint, err)
	}
	if err := c.refuseIfBlocked(req); err != nil {
		return err
	}
	start := c.now()
	var slept time.Duration
	for attempt := 0; ; attempt++ {
		if err := c.pace(ctx, req); err != nil {
			return err
		}
		gerr, retry := c.attempt(ctx, req, decode, attempt)
		if gerr == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("graph: %s: %w", req.endpoint, ctx.Err())
		}
		if !retry {
			return gerr
		}
		d := backoff(attempt)
		if gerr.RetryAfter > d {
			d = gerr.RetryAfter
		}
		spent := max(c.now().Sub(start), slept)
		if attempt+1 >= maxAttempts || spent+d > c.budget {
			return gerr
		}
		c.log.Info("graph call failed, retrying", "endpoint", req.endpoint, "attempt", attempt+1,
			"wait", d, slog.Any("error", gerr))
		if err := c.sleep(ctx, d); err != nil {
			return fmt.Errorf("graph: %s: %w", req.endpoint, err)
		}
		slept += d
	}
}

// backoff is full jitter: uniform in [0, min(cap, base·2^attempt)].
func backoff(attempt int) time.Duration {
	ceil := retryCap
	if attempt < 5 {
		ceil = min(retryCap, retryBase<<attempt)
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// attempt sends req once. It returns nil on success, or the error and
// whether a retry is allowed.
func (c *Client) attempt(ctx context.Context, req request, decode func(*body) error, n int) (*Error, bool) {
	hreq, err := c.newRequest(ctx, req)
	if err != nil {
		return errorf(KindBadRequest, req.endpoint, "building request: %s", sanitizeMessage(redactURLError(err).Error(), req.secrets...)), false
	}
	began := c.now()
	resp, err := c.hc.Do(hreq)
	if err != nil {
		gerr := c.transportError(req, err)
		c.metrics.call(req.endpoint, gerr.Kind.String())
		// A request that never reached the server may be resent even if it
		// is not idempotent (the code exchange).
		return gerr, req.idempotent || !reachedServer(err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBytes))
		_ = resp.Body.Close()
	}()
	c.observeUsage(req, resp.Header)
	c.log.Debug("graph call", "endpoint", req.endpoint, "acct", req.acct, "status", resp.StatusCode,
		"attempt", n+1, "duration", c.now().Sub(began))

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		b := &body{r: resp.Body, n: MaxBodyBytes}
		if err := decode(b); err != nil {
			gerr := &Error{Kind: KindTransient, Endpoint: req.endpoint, HTTPStatus: resp.StatusCode,
				Message: sanitizeMessage(err.Error(), req.secrets...)}
			c.metrics.call(req.endpoint, "malformed")
			return gerr, false
		}
		c.metrics.call(req.endpoint, "ok")
		c.succeeded(req.acct)
		return nil, false
	}

	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	gerr := decodeError(req.endpoint, resp.StatusCode, raw, req.secrets...)
	if ra := parseRetryAfter(resp.Header.Get("Retry-After"), c.now()); ra > 0 {
		gerr.RetryAfter = ra
	}
	c.metrics.call(req.endpoint, gerr.Kind.String())
	switch gerr.Kind {
	case KindThrottled:
		c.recordThrottle(req, gerr)
		return gerr, false
	case KindTransient:
		// 5xx after the code exchange reached the server: the code may be spent.
		return gerr, req.idempotent
	}
	return gerr, false
}

func (c *Client) newRequest(ctx context.Context, req request) (*http.Request, error) {
	var rd io.Reader
	if req.form != nil {
		rd = strings.NewReader(req.form.Encode())
	}
	hreq, err := http.NewRequestWithContext(ctx, req.method, req.url, rd)
	if err != nil {
		return nil, err
	}
	if req.form != nil {
		hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("User-Agent", "feedd")
	return hreq, nil
}

// transportError classifies a failure without a response and redacts the
// URL net/http put into it.
func (c *Client) transportError(req request, err error) *Error {
	err = redactURLError(err)
	kind := KindTransient
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case errors.As(err, &dnsErr) && !dnsErr.IsTimeout:
		kind = KindUnreachable
	case errors.As(err, &opErr) && opErr.Op == "dial" && !opErr.Timeout():
		kind = KindUnreachable
	}
	return &Error{Kind: kind, Endpoint: req.endpoint,
		Message: sanitizeMessage(err.Error(), req.secrets...), cause: err}
}

// reachedServer reports whether a failed request may have been received:
// only a failed dial proves it was not.
func reachedServer(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return false
	}
	var dnsErr *net.DNSError
	return !errors.As(err, &dnsErr)
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, 7*24*3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 7*24*time.Hour)
	}
	return 0
}
