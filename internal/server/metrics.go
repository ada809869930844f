package server

import (
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics counts requests by route pattern (never the raw path, so
// visitors cannot grow the label set).
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedd_http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "feedd_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: register http metrics: %w", err)
		}
	}
	return m, nil
}

// route is what the core middleware keeps per route pattern: its metrics
// label, whether it is public, and its metric children, resolved on first
// use (so that /metrics lists only routes that were requested) and then
// found without a lock or a label lookup.
type route struct {
	label    string
	public   bool
	duration atomic.Pointer[prometheus.Observer]
	counts   cow[countKey, prometheus.Counter]
}

type countKey struct {
	method string
	code   int
}

func (rt *route) observe(m *httpMetrics, method string, code int, d time.Duration) {
	k := countKey{knownMethod(method), code}
	c, ok := rt.counts.load(k)
	if !ok {
		// WithLabelValues returns the same child for the same labels, so
		// two requests racing here store equal values.
		c = m.requests.WithLabelValues(rt.label, k.method, strconv.Itoa(code))
		rt.counts.store(k, c)
	}
	c.Inc()
	o := rt.duration.Load()
	if o == nil {
		h := m.duration.WithLabelValues(rt.label)
		o = &h
		rt.duration.Store(o)
	}
	(*o).Observe(d.Seconds())
}

// knownMethod folds unusual methods into one label value.
func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}
