package graph

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	calls   *prometheus.CounterVec
	usage   *prometheus.GaugeVec
	blocked prometheus.Counter
	waited  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedd_graph_calls_total",
			Help: "Instagram API calls by endpoint and outcome (ok, malformed, an error kind; blocked: refused locally during a rate-limit block; paced: refused locally because the budget's wait outlasted the caller's deadline).",
		}, []string{"endpoint", "outcome"}),
		usage: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "feedd_graph_usage_percent",
			Help: "Latest rate-limit usage Instagram reported, in percent (app_* from X-App-Usage, business_* the highest in X-Business-Use-Case-Usage).",
		}, []string{"kind"}),
		blocked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "feedd_graph_blocked_total",
			Help: "Times feedd paused Instagram calls for an account or the whole app because of rate limits.",
		}),
		waited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedd_graph_wait_seconds_total",
			Help: "Time Instagram calls waited for their account's budget (scope account) or the app-wide ceiling FEEDD_GRAPH_RATE (scope app).",
		}, []string{"scope"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.calls, err = register(reg, m.calls); err != nil {
		return nil, err
	}
	if m.usage, err = register(reg, m.usage); err != nil {
		return nil, err
	}
	if m.blocked, err = register(reg, m.blocked); err != nil {
		return nil, err
	}
	if m.waited, err = register(reg, m.waited); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers col, or reuses the equal collector already there
// (several clients may share one registry, as tests do).
func register[C prometheus.Collector](reg prometheus.Registerer, col C) (C, error) {
	if err := reg.Register(col); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return col, err
	}
	return col, nil
}

func (m *metrics) call(endpoint, outcome string) {
	m.calls.WithLabelValues(endpoint, outcome).Inc()
}

func itoa(i int) string { return strconv.Itoa(i) }
