package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"time"

	"golang.org/x/time/rate"
)

// appKey is the block key for app-wide limits; no account id can equal it.
const appKey = "\x00app"

// Back-off when Instagram says "limited" but not for how long. Meta's
// advice: every extra call extends the penalty, so these are generous.
const (
	throttleBase = time.Minute
	throttleCap  = time.Hour
	blockBase    = time.Hour // code 368, "temporarily blocked"
	blockCap     = 24 * time.Hour
)

// Pacing by usage: an account's budget runs at its full rate while its
// usage header stays at or below half the high-water mark, then slows in
// proportion to the headroom left, down to minPace of the rate at the mark
// (where calls stop until Instagram's estimate, see observeUsage).
const minPace = 0.1

// Idle account budgets are forgotten after acctIdle (a paced one after
// acctIdlePaced: its usage is slow to fall), checked at most every
// acctSweepEvery.
const (
	acctIdle       = time.Hour
	acctIdlePaced  = 24 * time.Hour
	acctSweepEvery = 10 * time.Minute
)

// acctLimit is one account's budget.
type acctLimit struct {
	lim  *rate.Limiter
	pace float64 // fraction of the account rate its usage allows
	used time.Time
}

// accountLocked returns acct's budget, made on first use, and forgets
// idle ones now and then. c.mu is held.
func (c *Client) accountLocked(acct string, now time.Time) *acctLimit {
	if now.Sub(c.lastSweep) >= acctSweepEvery {
		c.lastSweep = now
		for k, a := range c.accounts {
			idle := acctIdle
			if a.pace < 1 {
				idle = acctIdlePaced
			}
			if now.Sub(a.used) > idle {
				delete(c.accounts, k)
			}
		}
	}
	a := c.accounts[acct]
	if a == nil {
		a = &acctLimit{lim: rate.NewLimiter(rate.Limit(c.acctRate), c.acctBurst), pace: 1}
		c.accounts[acct] = a
	}
	a.used = now
	return a
}

// paceFor is the fraction of the account rate a usage percentage allows.
func paceFor(pct, highWater float64) float64 {
	half := highWater / 2
	if pct <= half {
		return 1
	}
	return max(minPace, (highWater-pct)/half)
}

// pace waits for req's account budget and then for the app-wide ceiling.
// A wait that would outlast ctx's deadline is not made: the call fails as
// throttled with the wait in RetryAfter. Calls without an account (the code
// and token exchanges) have only the ceiling.
func (c *Client) pace(ctx context.Context, req request) error {
	if req.acct != "" {
		now := c.now()
		c.mu.Lock()
		lim := c.accountLocked(req.acct, now).lim
		c.mu.Unlock()
		if err := c.waitFor(ctx, req, lim, "account", now); err != nil {
			return err
		}
	}
	if c.limiter != nil {
		if err := c.waitFor(ctx, req, c.limiter, "app", c.now()); err != nil {
			return err
		}
	}
	// A concurrent call may have met a limit while we waited.
	return c.refuseIfBlocked(req)
}

// waitFor takes a token from lim, sleeping until it is there.
func (c *Client) waitFor(ctx context.Context, req request, lim *rate.Limiter, scope string, now time.Time) error {
	r := lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d == 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); !r.OK() || ok && time.Until(dl) < d {
		r.CancelAt(now)
		c.metrics.call(req.endpoint, "paced")
		return &Error{Kind: KindThrottled, Endpoint: req.endpoint, RetryAfter: d,
			Message: "the " + scope + " rate limit leaves no time before the deadline, none made"}
	}
	if err := c.sleep(ctx, d); err != nil {
		r.CancelAt(c.now())
		return fmt.Errorf("graph: %s: %w", req.endpoint, err)
	}
	c.metrics.waited.WithLabelValues(scope).Add(d.Seconds())
	return nil
}

// BlockedUntil returns when calls for acct (or app-wide) may resume, or
// the zero time when nothing is blocked.
func (c *Client) BlockedUntil(acct string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blockedUntilLocked(acct, c.now())
}

func (c *Client) blockedUntilLocked(acct string, now time.Time) time.Time {
	t := c.until[appKey]
	if a := c.until[acct]; a.After(t) {
		t = a
	}
	if !t.After(now) {
		return time.Time{}
	}
	return t
}

// refuseIfBlocked returns a throttled error, without touching the
// network, while a block holds for req's account or the whole app.
func (c *Client) refuseIfBlocked(req request) error {
	now := c.now()
	c.mu.Lock()
	until := c.blockedUntilLocked(req.acct, now)
	c.mu.Unlock()
	if until.IsZero() {
		return nil
	}
	c.metrics.call(req.endpoint, "blocked")
	return &Error{Kind: KindThrottled, Endpoint: req.endpoint, RetryAfter: until.Sub(now),
		Message: "rate limited: calls paused until " + until.UTC().Format(time.RFC3339) + ", none made"}
}

// blockLocked pauses key for d (never shortening an existing block) and
// returns the block's end.
func (c *Client) blockLocked(key string, d time.Duration, now time.Time, reason string) time.Time {
	until := now.Add(d)
	if until.After(c.until[key]) {
		c.until[key] = until
		c.metrics.blocked.Inc()
		acct := key
		if key == appKey {
			acct = "app"
		}
		c.log.Warn("graph calls paused", "acct", acct, "reason", reason, "until", until, "wait", d)
	}
	return c.until[key]
}

// strikeLocked returns the next capped exponential back-off for key.
func (c *Client) strikeLocked(key string, base, ceil time.Duration) time.Duration {
	k := c.strikes[key]
	c.strikes[key] = k + 1
	if k > 20 {
		return ceil
	}
	return min(ceil, base<<k)
}

// succeeded clears the back-off history of acct after a good answer.
func (c *Client) succeeded(acct string) {
	c.mu.Lock()
	delete(c.strikes, acct)
	c.mu.Unlock()
}

// recordThrottle blocks the account (or the app, for code 4) after a
// throttle error and sets gerr.RetryAfter to the whole wait.
func (c *Client) recordThrottle(req request, gerr *Error) {
	now := c.now()
	key := req.acct
	if gerr.Code == 4 {
		key = appKey // "Application request limit reached"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var d time.Duration
	switch {
	case gerr.RetryAfter > 0:
		d = gerr.RetryAfter
	case gerr.Code == 368:
		d = c.strikeLocked(key, blockBase, blockCap)
	case c.until[key].After(now):
		d = c.until[key].Sub(now) // the usage headers of this answer already said how long
	default:
		d = c.strikeLocked(key, throttleBase, throttleCap)
	}
	c.blockLocked(key, d, now, "throttle error code "+itoa(gerr.Code))
	gerr.RetryAfter = c.blockedUntilLocked(req.acct, now).Sub(now)
}

// appUsage is X-App-Usage: percentages of the app's hourly budget.
type appUsage struct {
	CallCount    float64 `json:"call_count"`
	TotalTime    float64 `json:"total_time"`
	TotalCPUTime float64 `json:"total_cputime"`
}

// bucUsage is one entry of X-Business-Use-Case-Usage.
type bucUsage struct {
	Type         string  `json:"type"`
	CallCount    float64 `json:"call_count"`
	TotalTime    float64 `json:"total_time"`
	TotalCPUTime float64 `json:"total_cputime"`
	Regain       float64 `json:"estimated_time_to_regain_access"` // minutes
}

const maxUsageHeader = 16 << 10

// observeUsage reads the usage headers of an answer, exports them and
// blocks what they say is exhausted. Absent headers change nothing:
// they do not mean zero use.
func (c *Client) observeUsage(req request, h http.Header) {
	now := c.now()
	if v := h.Get("X-App-Usage"); v != "" && len(v) <= maxUsageHeader {
		var u appUsage
		if json.Unmarshal([]byte(v), &u) == nil {
			c.metrics.usage.WithLabelValues("app_call_count").Set(u.CallCount)
			c.metrics.usage.WithLabelValues("app_total_time").Set(u.TotalTime)
			c.metrics.usage.WithLabelValues("app_total_cputime").Set(u.TotalCPUTime)
			c.mu.Lock()
			if max(u.CallCount, u.TotalTime, u.TotalCPUTime) >= c.highWater {
				c.blockLocked(appKey, c.strikeLocked(appKey, throttleBase, throttleCap), now, "app usage above high-water mark")
			} else {
				delete(c.strikes, appKey)
			}
			c.mu.Unlock()
		}
	}
	v := h.Get("X-Business-Use-Case-Usage")
	if v == "" || len(v) > maxUsageHeader {
		return
	}
	var ids map[string][]bucUsage
	if json.Unmarshal([]byte(v), &ids) != nil {
		return
	}
	var top bucUsage
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, entries := range ids {
		var pct, regain float64
		for _, e := range entries {
			pct = max(pct, e.CallCount, e.TotalTime, e.TotalCPUTime)
			regain = max(regain, e.Regain)
			top.CallCount = max(top.CallCount, e.CallCount)
			top.TotalTime = max(top.TotalTime, e.TotalTime)
			top.TotalCPUTime = max(top.TotalCPUTime, e.TotalCPUTime)
		}
		keys := []string{id}
		// The header may name the account by another of its ids; an answer
		// about one account is about the account this call was for.
		if len(ids) == 1 && req.acct != "" && req.acct != id {
			keys = append(keys, req.acct)
		}
		if req.acct != "" && (id == req.acct || len(ids) == 1) {
			a := c.accountLocked(req.acct, now)
			a.pace = paceFor(pct, c.highWater)
			a.lim.SetLimitAt(now, rate.Limit(c.acctRate*a.pace))
		}
		for _, k := range keys {
			switch {
			case regain > 0 && !math.IsInf(regain, 0) && !math.IsNaN(regain):
				d := time.Duration(math.Min(regain, 7*24*60) * float64(time.Minute))
				c.blockLocked(k, d, now, "business use case usage: access regained later")
			case pct >= c.highWater:
				c.blockLocked(k, c.strikeLocked(k, throttleBase, throttleCap), now, "business use case usage above high-water mark")
			}
		}
	}
	if len(ids) > 0 {
		c.metrics.usage.WithLabelValues("business_call_count").Set(top.CallCount)
		c.metrics.usage.WithLabelValues("business_total_time").Set(top.TotalTime)
		c.metrics.usage.WithLabelValues("business_total_cputime").Set(top.TotalCPUTime)
	}
}
