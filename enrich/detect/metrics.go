package detect

import (
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, for docs/metrics.md.
const (
	MetricAlerts  = "flowlens_detect_alerts_total"
	MetricFolded  = "flowlens_detect_alerts_folded_total"
	MetricFlows   = "flowlens_detect_flows_total"
	MetricDropped = "flowlens_detect_dropped_total"
)

// Reasons of flowlens_detect_dropped_total: what a state cap turned away.
const (
	ReasonLearnEdgesFull = "learn_edges_full" // an edge not stored: Learn.MaxEdges reached
	ReasonDNSKeysEvicted = "dns_keys_evicted" // a (client, domain) window evicted: DNSTunnel.MaxKeys reached
	ReasonDedupEvicted   = "dedup_evicted"    // a dedup window closed early: MaxDedup reached (its count is emitted, not lost)
	ReasonDNSInvalidName = "dns_invalid_name" // a query name not scored: malformed, too long, or without a registered domain
)

type metrics struct {
	flows   prometheus.Counter
	folded  prometheus.Counter
	alerts  *prometheus.CounterVec
	byKind  [numKinds][len(severityNames)]prometheus.Counter
	dropped *droppedCollector

	edgesFull, dnsEvicted, dedupEvicted, dnsInvalid atomic.Uint64
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		flows: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricFlows, Help: "Flows evaluated by the detections."}),
		folded: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricFolded,
			Help: "Detections counted into an open dedup window instead of being emitted."}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricAlerts,
			Help: "Alerts handed to the sink, by kind and severity (first alerts of a window and the counts emitted when it closes)."},
			[]string{"kind", "severity"}),
	}
	for k := range m.byKind {
		for s := range m.byKind[k] {
			if s > 0 {
				m.byKind[k][s] = m.alerts.WithLabelValues(kindNames[k], severityNames[s])
			}
		}
	}
	m.dropped = &droppedCollector{m: m, desc: prometheus.NewDesc(MetricDropped,
		"What the state caps turned away, by reason.", []string{"reason"}, nil)}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.flows, m.folded, m.alerts, m.dropped} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("detect: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) alert(a *Alert) {
	for k, n := range kindNames {
		if n == a.Kind && int(a.Severity) < len(severityNames) && a.Severity > 0 {
			m.byKind[k][a.Severity].Inc()
			return
		}
	}
}

// droppedCollector reads the atomic drop counters, which Stats reads too.
type droppedCollector struct {
	m    *metrics
	desc *prometheus.Desc
}

func (c *droppedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *droppedCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range []struct {
		reason string
		v      *atomic.Uint64
	}{
		{ReasonLearnEdgesFull, &c.m.edgesFull},
		{ReasonDNSKeysEvicted, &c.m.dnsEvicted},
		{ReasonDedupEvicted, &c.m.dedupEvicted},
		{ReasonDNSInvalidName, &c.m.dnsInvalid},
	} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(r.v.Load()), r.reason)
	}
}
