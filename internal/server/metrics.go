package server

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics counts requests by route pattern (never the raw path, so
// visitors cannot grow the label set). Resolved children are cached so a
// request costs two map reads and no allocation.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	mu        sync.RWMutex
	counters  map[counterKey]prometheus.Counter
	observers map[string]prometheus.Observer
}

type counterKey struct {
	route  string
	method string
	code   int
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
		counters:  map[counterKey]prometheus.Counter{},
		observers: map[string]prometheus.Observer{},
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: register http metrics: %w", err)
		}
	}
	return m, nil
}

func (m *httpMetrics) observe(route, method string, code int, d time.Duration) {
	method = knownMethod(method)
	k := counterKey{route, method, code}
	m.mu.RLock()
	c, ok1 := m.counters[k]
	o, ok2 := m.observers[route]
	m.mu.RUnlock()
	if !ok1 || !ok2 {
		m.mu.Lock()
		if c, ok1 = m.counters[k]; !ok1 {
			c = m.requests.WithLabelValues(route, method, strconv.Itoa(code))
			m.counters[k] = c
		}
		if o, ok2 = m.observers[route]; !ok2 {
			o = m.duration.WithLabelValues(route)
			m.observers[route] = o
		}
		m.mu.Unlock()
	}
	c.Inc()
	o.Observe(d.Seconds())
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
