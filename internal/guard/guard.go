// Package guard keeps a panic in a background goroutine from ending the process.
//
// A panic that escapes any goroutine ends the whole program, and feedd runs
// many goroutines nobody waits on (the poller, the token refresher, cache
// refreshes, media downloads, webhook deliveries). Run and Go recover such a
// panic, log it with its stack and count it in feedd_panics_total, so that
// one bad feed cannot take every other feed down with it.
package guard

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Guard recovers panics, logs them and counts them by where they happened.
// A nil *Guard is usable: it recovers and logs to slog.Default, but counts
// nothing.
type Guard struct {
	log    *slog.Logger
	panics *prometheus.CounterVec
}

// New returns a Guard that logs to log (nil: slog.Default) and registers
// feedd_panics_total with reg (nil: counted but not registered). If reg
// already holds the counter, the Guard counts into that one.
func New(log *slog.Logger, reg prometheus.Registerer) (*Guard, error) {
	if log == nil {
		log = slog.Default()
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feedd_panics_total",
		Help: "Panics recovered in background work, by where they happened.",
	}, []string{"where"})
	if reg != nil {
		if err := reg.Register(vec); err != nil {
			// A second Guard on one registry shares the first one's counter
			// rather than fail the service that builds it.
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("guard: register metric: %w", err)
			}
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, fmt.Errorf("guard: register metric: %w", err)
			}
			vec = existing
		}
	}
	return &Guard{log: log, panics: vec}, nil
}

// Go runs fn in a new goroutine, recovering a panic (see Run).
func (g *Guard) Go(where string, fn func()) {
	go g.Run(where, fn)
}

// Run calls fn in the caller's goroutine and reports whether it panicked. A
// panic is recovered, logged at error level with its stack, and counted
// under where, so a loop can carry on with its next iteration.
func (g *Guard) Run(where string, fn func()) (panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			panicked = true
			g.report(where, r)
		}
	}()
	fn()
	return false
}

func (g *Guard) report(where string, r any) {
	// Still on the panicking goroutine's stack: the trace shows where fn
	// panicked.
	stack := string(debug.Stack())
	log := slog.Default()
	if g != nil {
		log = g.log
		g.panics.WithLabelValues(where).Inc()
	}
	log.Error("panic recovered", slog.String("where", where), slog.String("panic", fmt.Sprint(r)), slog.String("stack", stack))
}
