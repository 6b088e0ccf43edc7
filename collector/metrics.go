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

	datagrams, flows, errors, waiting, pending, templates, tplEvents, options, sflowSamples, exporters *prometheus.Desc
}

// NewDecoderMetrics returns a prometheus.Collector over decoders.
func NewDecoderMetrics(decoders []*decoder.Decoder) *DecoderMetrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("flowlens_decoder_"+name, help, labels, nil)
	}
	return &DecoderMetrics{
		decoders:     decoders,
		datagrams:    d("datagrams_total", "Datagrams decoded, by source kind.", "source"),
		flows:        d("flows_total", "Flow records decoded, by source kind.", "source"),
		errors:       d("errors_total", "Datagrams rejected as malformed, by reason.", "reason"),
		waiting:      d("waiting_for_template_total", "Data sets that arrived before their template."),
		pending:      d("pending_sets_total", "What happened to data sets kept while waiting for their template.", "outcome"),
		templates:    d("templates", "Templates currently known, over all exporters."),
		tplEvents:    d("template_events_total", "Templates learnt, rejected (invalid or over a limit) and withdrawn.", "event"),
		options:      d("options_records_total", "Options data records (sampling, application tables)."),
		sflowSamples: d("sflow_samples_total", "sFlow samples that are not flows, or not decodable.", "kind"),
		exporters:    d("exporters", "Exporters with template or sampling state."),
	}
}

// Describe implements prometheus.Collector.
func (m *DecoderMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.datagrams, m.flows, m.errors, m.waiting, m.pending, m.templates, m.tplEvents, m.options, m.sflowSamples, m.exporters} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *DecoderMetrics) Collect(ch chan<- prometheus.Metric) {
	var t decoder.Stats
	t.Errors = map[string]uint64{}
	for _, dec := range m.decoders {
		s := dec.Stats()
		for i := range s.Datagrams {
			t.Datagrams[i] += s.Datagrams[i]
			t.Flows[i] += s.Flows[i]
		}
		for k, v := range s.Errors {
			t.Errors[k] += v
		}
		t.WaitingForTemplate += s.WaitingForTemplate
		t.PendingBuffered += s.PendingBuffered
		t.PendingDecoded += s.PendingDecoded
		t.PendingExpired += s.PendingExpired
		t.PendingDropped += s.PendingDropped
		t.Templates += s.Templates
		t.TemplatesLearnt += s.TemplatesLearnt
		t.TemplatesRejected += s.TemplatesRejected
		t.TemplatesWithdrawn += s.TemplatesWithdrawn
		t.OptionsRecords += s.OptionsRecords
		t.SFlowCounterSamples += s.SFlowCounterSamples
		t.SFlowDropSamples += s.SFlowDropSamples
		t.SFlowOtherSamples += s.SFlowOtherSamples
		t.SFlowHeaderUnparsed += s.SFlowHeaderUnparsed
		t.Exporters += s.Exporters
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for i := 1; i < decoder.NumSources; i++ {
		src := schema.Source(i).String()
		counter(m.datagrams, t.Datagrams[i], src)
		counter(m.flows, t.Flows[i], src)
	}
	for k, v := range t.Errors {
		counter(m.errors, v, k)
	}
	counter(m.waiting, t.WaitingForTemplate)
	counter(m.pending, t.PendingBuffered, "buffered")
	counter(m.pending, t.PendingDecoded, "decoded")
	counter(m.pending, t.PendingExpired, "expired")
	counter(m.pending, t.PendingDropped, "dropped")
	ch <- prometheus.MustNewConstMetric(m.templates, prometheus.GaugeValue, float64(t.Templates))
	counter(m.tplEvents, t.TemplatesLearnt, "learnt")
	counter(m.tplEvents, t.TemplatesRejected, "rejected")
	counter(m.tplEvents, t.TemplatesWithdrawn, "withdrawn")
	counter(m.options, t.OptionsRecords)
	counter(m.sflowSamples, t.SFlowCounterSamples, "counter")
	counter(m.sflowSamples, t.SFlowDropSamples, "discard")
	counter(m.sflowSamples, t.SFlowOtherSamples, "other")
	counter(m.sflowSamples, t.SFlowHeaderUnparsed, "header_unparsed")
	ch <- prometheus.MustNewConstMetric(m.exporters, prometheus.GaugeValue, float64(t.Exporters))
}
