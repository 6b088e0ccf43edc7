package decoder

import (
	"sync/atomic"

	"flowlens/schema"
)

// NumSources sizes the per-source arrays of Stats (indexed by schema.Source).
const NumSources = int(schema.SourceSensor) + 1

// Error reasons counted in Stats.Errors.
const (
	reasonTruncated = iota
	reasonMalformed
	reasonUnknownVersion
	numReasons
)

var reasonNames = [numReasons]string{"truncated", "malformed", "unknown_version"}

// Stats is a snapshot of a Decoder's counters. All counters only grow,
// except Exporters, Templates and PendingSets which are current sizes.
type Stats struct {
	Datagrams [NumSources]uint64 // datagrams by schema.Source
	Flows     [NumSources]uint64 // flows emitted by schema.Source
	// Errors counts malformed datagrams by reason: "truncated",
	// "malformed", "unknown_version".
	Errors map[string]uint64

	// WaitingForTemplate counts data sets seen before their template.
	WaitingForTemplate uint64
	PendingBuffered    uint64 // of those, sets kept for later
	PendingDecoded     uint64 // buffered sets decoded once the template came
	PendingExpired     uint64 // buffered sets dropped after PendingTTL
	PendingDropped     uint64 // sets not buffered: buffer full or too big
	PendingSets        uint64 // current buffered sets

	TemplatesLearnt    uint64 // template and options template records stored
	TemplatesRejected  uint64 // invalid, too many fields, or over the limit
	TemplatesWithdrawn uint64
	Templates          uint64 // current templates over all exporters
	OptionsRecords     uint64 // options data records (sampling, applications)
	// SamplingUnknown counts flows from an exporter that announced sampling
	// (options template with sampling fields, sampler options data, a
	// sampler id in the record, an invalid rate) but whose rate for the
	// flow is unknown: rate left at 1, SamplingSource "unknown".
	SamplingUnknown uint64
	// SamplingByteSwapped counts sampling rates read little-endian
	// (MikroTik RouterOS v6, see rateField).
	SamplingByteSwapped uint64
	// TemplatesOverLimit counts templates rejected by
	// MaxTemplatesPerExporter or MaxTemplatesTotal (also in
	// TemplatesRejected).
	TemplatesOverLimit uint64
	// TemplatePortFallbacks counts data sets decoded with a template
	// learnt from another source port of the same exporter address (an
	// exporter restarted from a new port).
	TemplatePortFallbacks uint64
	// BiflowReverse counts reverse flows emitted from RFC 5103 biflow
	// records (included in Flows).
	BiflowReverse uint64
	// TimesClamped counts flows whose start or end time was absurd against
	// the export time (in the future, ages before it, start after end)
	// and was replaced by the export time.
	TimesClamped uint64
	// NamesResets counts the times the server name / DNS query table was
	// full and emptied.
	NamesResets uint64
	// SFlowCountersDecoded counts interface counter records handed to the
	// OnCounters callback.
	SFlowCountersDecoded uint64

	SFlowCounterSamples uint64 // counter samples (not flows)
	SFlowDropSamples    uint64 // discard samples (not flows)
	SFlowOtherSamples   uint64 // unknown sample formats, skipped
	SFlowHeaderUnparsed uint64 // raw headers without an IP header we parse

	Exporters        uint64 // current exporters with state
	ExportersEvicted uint64
	LabelsDropped    uint64 // application labels not interned: table full
}

type counters struct {
	datagrams [NumSources]atomic.Uint64
	flows     [NumSources]atomic.Uint64
	errors    [numReasons]atomic.Uint64

	waiting, pendBuffered, pendDecoded, pendExpired, pendDropped, pendSets atomic.Uint64

	tplLearnt, tplRejected, tplWithdrawn, templates, options, samplingUnknown atomic.Uint64

	samplingSwapped, tplOverLimit, tplPortFallback, biflowReverse, timesClamped, namesResets, sfCountersDecoded atomic.Uint64

	sfCounters, sfDrops, sfOther, sfUnparsed atomic.Uint64

	exporters, evicted, labelsDropped atomic.Uint64
}

// Stats returns a snapshot of the counters. It is safe to call from any
// goroutine while Decode runs.
func (d *Decoder) Stats() Stats {
	c := &d.stats
	s := Stats{Errors: make(map[string]uint64, numReasons)}
	for i := range s.Datagrams {
		s.Datagrams[i] = c.datagrams[i].Load()
		s.Flows[i] = c.flows[i].Load()
	}
	for i, n := range reasonNames {
		s.Errors[n] = c.errors[i].Load()
	}
	s.WaitingForTemplate = c.waiting.Load()
	s.PendingBuffered = c.pendBuffered.Load()
	s.PendingDecoded = c.pendDecoded.Load()
	s.PendingExpired = c.pendExpired.Load()
	s.PendingDropped = c.pendDropped.Load()
	s.PendingSets = c.pendSets.Load()
	s.TemplatesLearnt = c.tplLearnt.Load()
	s.TemplatesRejected = c.tplRejected.Load()
	s.TemplatesWithdrawn = c.tplWithdrawn.Load()
	s.Templates = c.templates.Load()
	s.OptionsRecords = c.options.Load()
	s.SamplingUnknown = c.samplingUnknown.Load()
	s.SamplingByteSwapped = c.samplingSwapped.Load()
	s.TemplatesOverLimit = c.tplOverLimit.Load()
	s.TemplatePortFallbacks = c.tplPortFallback.Load()
	s.BiflowReverse = c.biflowReverse.Load()
	s.TimesClamped = c.timesClamped.Load()
	s.NamesResets = c.namesResets.Load()
	s.SFlowCountersDecoded = c.sfCountersDecoded.Load()
	s.SFlowCounterSamples = c.sfCounters.Load()
	s.SFlowDropSamples = c.sfDrops.Load()
	s.SFlowOtherSamples = c.sfOther.Load()
	s.SFlowHeaderUnparsed = c.sfUnparsed.Load()
	s.Exporters = c.exporters.Load()
	s.ExportersEvicted = c.evicted.Load()
	s.LabelsDropped = c.labelsDropped.Load()
	return s
}
