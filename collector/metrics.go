package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"flowlens/decoder"
	"flowlens/schema"
)

// DecoderMetrics exports the counters of a set of decoders (one per worker)
// as Prometheus metrics, summed, read at scrape time.
type DecoderMetrics struct {
	decoders []*decoder.Decoder
	stats    []stat
}

// stat is one exported sample: a family, its label values, and how to read
// it from a decoder's Stats.
type stat struct {
	desc   *prometheus.Desc
	gauge  bool
	labels []string
	get    func(*decoder.Stats) uint64
}

// NewDecoderMetrics returns a prometheus.Collector over decoders.
func NewDecoderMetrics(decoders []*decoder.Decoder) *DecoderMetrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("flowlens_decoder_"+name, help, labels, nil)
	}
	var (
		datagrams = d("datagrams_total", "Datagrams decoded, by source kind.", "source")
		flows     = d("flows_total", "Flow records decoded, by source kind.", "source")
		errs      = d("errors_total", "Datagrams rejected as malformed, by reason.", "reason")
		pending   = d("pending_sets_total", "What happened to data sets kept while waiting for their template.", "outcome")
		tplEvents = d("template_events_total", "Template events: learnt, rejected (invalid or over a limit), over_limit (of those, by the per-exporter or total cap), withdrawn, port_fallback (data decoded with a template from another source port of the exporter).", "event")
		sampling  = d("sampling_events_total", "Sampling rate events: unknown (sampling announced, rate not known: 1 used), byte_swapped (rate read little-endian, MikroTik RouterOS v6).", "event")
		sflow     = d("sflow_samples_total", "sFlow samples that are not flows, or not decodable.", "kind")
		m         = &DecoderMetrics{decoders: decoders}
	)
	add := func(desc *prometheus.Desc, gauge bool, get func(*decoder.Stats) uint64, labels ...string) {
		m.stats = append(m.stats, stat{desc, gauge, labels, get})
	}
	for i := 1; i < decoder.NumSources; i++ {
		src := schema.Source(i).String()
		add(datagrams, false, func(s *decoder.Stats) uint64 { return s.Datagrams[i] }, src)
		add(flows, false, func(s *decoder.Stats) uint64 { return s.Flows[i] }, src)
	}
	for _, r := range []string{"truncated", "malformed", "unknown_version"} {
		add(errs, false, func(s *decoder.Stats) uint64 { return s.Errors[r] }, r)
	}
	add(d("waiting_for_template_total", "Data sets that arrived before their template."), false, func(s *decoder.Stats) uint64 { return s.WaitingForTemplate })
	add(pending, false, func(s *decoder.Stats) uint64 { return s.PendingBuffered }, "buffered")
	add(pending, false, func(s *decoder.Stats) uint64 { return s.PendingDecoded }, "decoded")
	add(pending, false, func(s *decoder.Stats) uint64 { return s.PendingExpired }, "expired")
	add(pending, false, func(s *decoder.Stats) uint64 { return s.PendingDropped }, "dropped")
	add(d("templates", "Templates currently known, over all exporters."), true, func(s *decoder.Stats) uint64 { return s.Templates })
	add(tplEvents, false, func(s *decoder.Stats) uint64 { return s.TemplatesLearnt }, "learnt")
	add(tplEvents, false, func(s *decoder.Stats) uint64 { return s.TemplatesRejected }, "rejected")
	add(tplEvents, false, func(s *decoder.Stats) uint64 { return s.TemplatesOverLimit }, "over_limit")
	add(tplEvents, false, func(s *decoder.Stats) uint64 { return s.TemplatesWithdrawn }, "withdrawn")
	add(tplEvents, false, func(s *decoder.Stats) uint64 { return s.TemplatePortFallbacks }, "port_fallback")
	add(d("options_records_total", "Options data records (sampling, application tables)."), false, func(s *decoder.Stats) uint64 { return s.OptionsRecords })
	add(sampling, false, func(s *decoder.Stats) uint64 { return s.SamplingUnknown }, "unknown")
	add(sampling, false, func(s *decoder.Stats) uint64 { return s.SamplingByteSwapped }, "byte_swapped")
	add(d("biflow_reverse_flows_total", "Reverse-direction flows emitted from RFC 5103 biflow records (included in flows_total)."), false, func(s *decoder.Stats) uint64 { return s.BiflowReverse })
	add(d("times_clamped_total", "Flows whose start/end time was absurd against the export time and was replaced by it."), false, func(s *decoder.Stats) uint64 { return s.TimesClamped })
	add(d("names_table_resets_total", "Times the interned server-name/DNS-query table was full and emptied."), false, func(s *decoder.Stats) uint64 { return s.NamesResets })
	add(d("labels_dropped_total", "Application labels not kept: label table full."), false, func(s *decoder.Stats) uint64 { return s.LabelsDropped })
	add(sflow, false, func(s *decoder.Stats) uint64 { return s.SFlowCounterSamples }, "counter")
	add(sflow, false, func(s *decoder.Stats) uint64 { return s.SFlowDropSamples }, "discard")
	add(sflow, false, func(s *decoder.Stats) uint64 { return s.SFlowOtherSamples }, "other")
	add(sflow, false, func(s *decoder.Stats) uint64 { return s.SFlowHeaderUnparsed }, "header_unparsed")
	add(d("sflow_interface_counters_total", "sFlow interface counter records decoded (stored in interface_counters)."), false, func(s *decoder.Stats) uint64 { return s.SFlowCountersDecoded })
	add(d("exporters", "Exporters with template or sampling state (an exporter restored from saved state counts once per worker)."), true, func(s *decoder.Stats) uint64 { return s.Exporters })
	add(d("exporters_evicted_total", "Exporters whose state was evicted (least recently seen, over FLOWLENS_MAX_EXPORTERS)."), false, func(s *decoder.Stats) uint64 { return s.ExportersEvicted })
	return m
}

// Describe implements prometheus.Collector.
func (m *DecoderMetrics) Describe(ch chan<- *prometheus.Desc) {
	seen := map[*prometheus.Desc]bool{}
	for _, s := range m.stats {
		if !seen[s.desc] {
			seen[s.desc] = true
			ch <- s.desc
		}
	}
}

// Collect implements prometheus.Collector.
func (m *DecoderMetrics) Collect(ch chan<- prometheus.Metric) {
	snaps := make([]decoder.Stats, len(m.decoders))
	for i, d := range m.decoders {
		snaps[i] = d.Stats()
	}
	for _, s := range m.stats {
		var v uint64
		for i := range snaps {
			v += s.get(&snaps[i])
		}
		kind := prometheus.CounterValue
		if s.gauge {
			kind = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(s.desc, kind, float64(v), s.labels...)
	}
}
