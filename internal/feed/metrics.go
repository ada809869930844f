package feed

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the feed service. Cache hits and misses are counted by the
// cache (feedd_feed_cache_requests_total).
type metrics struct {
	pollsTotal *prometheus.CounterVec
	age        *ageCollector
	mediaUse   *mediaUseCollector
}

func newMetrics(reg prometheus.Registerer, s *Service) (*metrics, error) {
	m := &metrics{
		pollsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedd_polls_total",
			Help: "Feed polls by outcome (ok, throttled, error, needs_reauth, token_changed).",
		}, []string{"outcome"}),
		age: &ageCollector{s: s, desc: prometheus.NewDesc("feedd_feed_age_seconds",
			"Seconds since the feed's last good snapshot.", []string{"feed"}, nil)},
	}
	m.mediaUse = newMediaUseCollector(s)
	for _, o := range []string{"ok", "throttled", "error", "needs_reauth"} {
		m.pollsTotal.WithLabelValues(o)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.pollsTotal, m.age, m.mediaUse} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) polls(outcome string) { m.pollsTotal.WithLabelValues(outcome).Inc() }

// ageCollector reports each known feed's snapshot age at scrape time.
type ageCollector struct {
	s    *Service
	desc *prometheus.Desc
}

func (c *ageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *ageCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.s.now()
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	for id, at := range c.s.ages {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, now.Sub(at).Seconds(), id)
	}
}
