// Package retry holds the one rule for how long to wait before trying a
// failed thing again: capped exponential back-off.
package retry

import "time"

// Backoff is the wait before retry number n (1-based): base, doubling with
// each further retry, never more than max.
func Backoff(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}
