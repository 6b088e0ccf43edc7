package capture

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, for docs/metrics.md.
const (
	MetricPackets       = "flowlens_sensor_capture_packets_total"
	MetricBytes         = "flowlens_sensor_capture_bytes_total"
	MetricTruncated     = "flowlens_sensor_capture_truncated_total"
	MetricKernelPackets = "flowlens_sensor_capture_kernel_packets_total"
	MetricKernelDrops   = "flowlens_sensor_capture_kernel_drops_total"
	MetricKernelFreezes = "flowlens_sensor_capture_kernel_freezes_total"
	MetricReadErrors    = "flowlens_sensor_capture_read_errors_total"
)

// collector exports a source's per-worker Stats, read at scrape time.
type collector struct {
	source string
	kernel bool // AF_PACKET: the kernel counters exist
	stats  func() []Stats
	descs  []*prometheus.Desc
	get    []func(*Stats) uint64
}

func newCollector(source string, kernel bool, stats func() []Stats) *collector {
	c := &collector{source: source, kernel: kernel, stats: stats}
	add := func(name, help string, get func(*Stats) uint64) {
		c.descs = append(c.descs, prometheus.NewDesc(name, help, []string{"source", "worker"}, nil))
		c.get = append(c.get, get)
	}
	add(MetricPackets, "Packets captured and handed to the sensor workers.", func(s *Stats) uint64 { return s.Packets })
	add(MetricBytes, "Wire bytes of the packets captured.", func(s *Stats) uint64 { return s.Bytes })
	add(MetricTruncated, "Packets captured shorter than on the wire (snapshot length, or larger than a ring block).",
		func(s *Stats) uint64 { return s.Truncated })
	if kernel {
		add(MetricKernelPackets, "Packets the worker's AF_PACKET socket received, including those it dropped (TPACKET_V3 tp_packets).",
			func(s *Stats) uint64 { return s.KernelPackets })
		add(MetricKernelDrops, "Packets the kernel dropped because the worker's ring was full (TPACKET_V3 tp_drops): the sensor is too slow or the ring too small.",
			func(s *Stats) uint64 { return s.KernelDrops })
		add(MetricKernelFreezes, "Times the worker's ring froze with every block full (TPACKET_V3 tp_freeze_q_cnt).",
			func(s *Stats) uint64 { return s.KernelFreezes })
		add(MetricReadErrors, "Reads of the worker's ring that failed and were retried (poll errors, e.g. the interface went down).",
			func(s *Stats) uint64 { return s.ReadErrors })
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for w, s := range c.stats() {
		worker := strconv.Itoa(w)
		for i, d := range c.descs {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(c.get[i](&s)), c.source, worker)
		}
	}
}
