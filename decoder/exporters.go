package decoder

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"flowlens/schema"
)

// ExporterInfo is what a Decoder knows about one exporter address, for the
// collector's exporters table and /templates view.
type ExporterInfo struct {
	Addr netip.Addr
	// LastSeen is the collector clock of the first datagram of the last
	// second a datagram came in.
	LastSeen  time.Time
	Datagrams uint64
	Flows     uint64
	Errors    uint64 // datagrams that failed to decode
	// Drops counts what of this exporter's export was lost, by reason
	// (only reasons that occurred): "truncated" and "malformed" datagrams,
	// "template_rejected" (invalid or over a limit), and data sets that
	// never met their template: "no_template_buffer_full" (not buffered)
	// and "no_template_expired" (buffered, template never came). Drops
	// before decoding (allow-list, rate limit, full queues) are counted
	// per listener in the metrics, not here.
	Drops map[string]uint64
	// WaitingForTemplate counts data sets that came before their template.
	WaitingForTemplate uint64
	Templates          []TemplateInfo // sorted by version, domain, id, port
	// Sampling lists the distinct (rate, source) pairs given to this
	// exporter's flows, first seen first (at most maxRatesPerExporter).
	Sampling []SamplingInfo
	// ClockSkew is the export header time minus the receive time of the
	// last datagram with a header clock (v5, v9, IPFIX), in seconds;
	// HaveClockSkew is false when none had one (sFlow).
	ClockSkew     int64
	HaveClockSkew bool
	SourcePorts   []uint16 // source ports seen (at most 8, no particular order)
}

// TemplateInfo describes one stored template.
type TemplateInfo struct {
	Version             uint16 // 9 or 10
	ObservationDomainID uint32
	ID                  uint16
	Fields              int // scope and option fields for options templates
	Options             bool
	SourcePort          uint16 // the exporter session that sent it
}

// SamplingInfo is a sampling rate and where it came from.
type SamplingInfo struct {
	Rate   uint32
	Source schema.SamplingSource
}

const maxRatesPerExporter = 8

// dropReason indexes exporterInfo.drops.
type dropReason int

const (
	dropTruncated dropReason = iota
	dropMalformed
	dropTemplateRejected
	dropNoTemplateBufferFull
	dropNoTemplateExpired
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{"truncated", "malformed", "template_rejected", "no_template_buffer_full", "no_template_expired"}

// exporterInfo is the part of an exporter's state other goroutines read.
// The decoding goroutine updates counters with atomics (per datagram, not
// per record) and takes mu only when templates, ports or rates change.
type exporterInfo struct {
	addr                              netip.Addr
	lastSeen                          atomic.Int64 // unix ns
	datagrams, flows, errors, waiting atomic.Uint64
	// drops by reason, indexed by dropReason.
	drops    [numDropReasons]atomic.Uint64
	skew     atomic.Int64
	haveSkew atomic.Bool

	mu        sync.Mutex
	templates map[tplKey]TemplateInfo
	rates     []SamplingInfo
	ports     []uint16
}

func (in *exporterInfo) setTemplate(key tplKey, t TemplateInfo) {
	in.mu.Lock()
	if in.templates == nil {
		in.templates = make(map[tplKey]TemplateInfo)
	}
	in.templates[key] = t
	in.mu.Unlock()
}

func (in *exporterInfo) removeTemplate(key tplKey) {
	in.mu.Lock()
	delete(in.templates, key)
	in.mu.Unlock()
}

func (in *exporterInfo) setPorts(ports []uint16) {
	in.mu.Lock()
	in.ports = append(in.ports[:0], ports...)
	in.mu.Unlock()
}

// noteRate records the (rate, source) of a flow when it differs from the
// last one noted: called per flow, it is a comparison in steady state.
func (d *Decoder) noteRate(ex *exporterState, f *schema.Flow) {
	if key := uint64(f.SamplingRate)<<8 | uint64(f.SamplingSource); key != ex.lastRate {
		d.addRate(ex, key, f)
	}
}

//go:noinline
func (d *Decoder) addRate(ex *exporterState, key uint64, f *schema.Flow) {
	ex.lastRate = key
	in := ex.info
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, r := range in.rates {
		if r.Rate == f.SamplingRate && r.Source == f.SamplingSource {
			return
		}
	}
	if len(in.rates) < maxRatesPerExporter {
		in.rates = append(in.rates, SamplingInfo{f.SamplingRate, f.SamplingSource})
	}
}

// noteSkew records the exporter's header clock against ours; the shared
// value is only written when it changes.
func (ex *exporterState) noteSkew(headerSecs uint32, received time.Time) {
	if skew := int64(headerSecs) - received.Unix(); skew != ex.skew || !ex.haveSkew {
		ex.info.skew.Store(skew)
		if !ex.haveSkew {
			ex.info.haveSkew.Store(true)
		}
		ex.skew, ex.haveSkew = skew, true
	}
}

// noteSeen records the receive time, to the second: the shared value is
// written once a second, not per datagram.
func (ex *exporterState) noteSeen(received time.Time) {
	if s := received.Unix(); s != ex.seenSec {
		ex.seenSec = s
		ex.info.lastSeen.Store(received.UnixNano())
	}
}

// Exporters returns what the Decoder knows about each exporter it keeps
// state for, sorted by address. It is safe to call from any goroutine
// while Decode runs; the values of one exporter are read one by one, not
// as an atomic snapshot.
func (d *Decoder) Exporters() []ExporterInfo {
	d.mu.RLock()
	infos := make([]*exporterInfo, 0, len(d.exporters))
	for _, ex := range d.exporters {
		infos = append(infos, ex.info)
	}
	d.mu.RUnlock()
	out := make([]ExporterInfo, 0, len(infos))
	for _, in := range infos {
		e := ExporterInfo{
			Addr:               in.addr,
			Datagrams:          in.datagrams.Load(),
			Flows:              in.flows.Load(),
			Errors:             in.errors.Load(),
			WaitingForTemplate: in.waiting.Load(),
			ClockSkew:          in.skew.Load(),
			HaveClockSkew:      in.haveSkew.Load(),
		}
		for r := range in.drops {
			if n := in.drops[r].Load(); n > 0 {
				if e.Drops == nil {
					e.Drops = make(map[string]uint64)
				}
				e.Drops[dropReasonNames[r]] = n
			}
		}
		if ns := in.lastSeen.Load(); ns != 0 {
			e.LastSeen = time.Unix(0, ns)
		}
		in.mu.Lock()
		for _, t := range in.templates {
			e.Templates = append(e.Templates, t)
		}
		e.Sampling = slices.Clone(in.rates)
		e.SourcePorts = slices.Clone(in.ports)
		in.mu.Unlock()
		slices.SortFunc(e.Templates, func(a, b TemplateInfo) int {
			return cmp.Or(cmp.Compare(a.Version, b.Version), cmp.Compare(a.ObservationDomainID, b.ObservationDomainID),
				cmp.Compare(a.ID, b.ID), cmp.Compare(a.SourcePort, b.SourcePort))
		})
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b ExporterInfo) int { return a.Addr.Compare(b.Addr) })
	return out
}
