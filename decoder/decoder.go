// Package decoder turns flow export datagrams (NetFlow v5, NetFlow v9, IPFIX,
// sFlow v5) into schema.Flow records. It is pure parsing: no I/O, no metrics
// registry, no logging.
//
// What is ours and what is goflow2's, and why: on the hot path the decoder
// must not allocate per record (see BenchmarkDecode*, which runs our path
// and goflow2's side by side).
//   - NetFlow v5 records are read in place (v5.go); goflow2's netflowlegacy
//     allocates the record slice and reads through interface{} arguments,
//     about 10x slower.
//   - NetFlow v9 / IPFIX templates are parsed by goflow2, then compiled
//     once into a field plan that walkDataSet follows to read data records
//     straight into the reused Flow (walk.go); goflow2's DecodeDataSet
//     allocates a []DataField per record and boxes every value (18-34
//     allocations a record, 4-7x slower). An identical template resend is
//     recognised from its bytes and not parsed again. Options data
//     (sampling, application names) is still decoded by goflow2.
//   - sFlow samples are decoded by goflow2 (6 allocations a flow sample);
//     the sampled packet header parsing is ours (packet.go).
//
// The mapping of information elements to Flow fields (record.go), the
// template and sampling state, and the bounds are ours and shared by both
// paths.
//
// Fidelity: every flow says where its sampling rate came from
// (schema.SamplingSource; configuration overrides and defaults in Config,
// MikroTik's little-endian rates in rateField); templates are kept per
// exporter session with a fallback across source ports (state.go) and can
// be saved and restored (persist.go); RFC 5103 biflow records become two
// flows (emitReverse); absurd flow times are clamped to the export time
// (clampTimes); sFlow interface counters go to OnCounters; Exporters is
// the per-exporter view (exporters.go).
//
// goflow2's data paths stay behind Decoder.useGoflow2 as the reference of
// the differential tests (diff_test.go).
package decoder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflowlegacy"

	"flowlens/schema"
)

// Errors a caller may branch on with errors.Is. Every error returned by
// Decode wraps exactly one of them.
var (
	// ErrUnknownVersion: the first bytes are not a supported export version.
	ErrUnknownVersion = errors.New("unknown export version")
	// ErrTruncated: a length field points past the end of the datagram.
	ErrTruncated = errors.New("truncated datagram")
	// ErrMalformed: the datagram is structurally invalid (bad lengths,
	// counts out of range, invalid template).
	ErrMalformed = errors.New("malformed datagram")
)

// Config bounds the state a Decoder keeps per collector worker.
type Config struct {
	// MaxExporters bounds the exporters whose template and sampling state
	// is kept; the least recently seen exporter is evicted beyond it.
	MaxExporters int
	// MaxTemplatesPerExporter bounds templates (all versions and
	// observation domains) per exporter; extra templates are dropped.
	MaxTemplatesPerExporter int
	// MaxTemplateFields rejects templates with more fields than this.
	MaxTemplateFields int
	// MaxSamplersPerExporter bounds sampler entries from options data.
	MaxSamplersPerExporter int
	// MaxApplicationsPerExporter bounds the application id → name table
	// learnt from options data (Cisco NBAR).
	MaxApplicationsPerExporter int
	// PendingMaxSets and PendingMaxBytes bound the data sets kept while
	// their template is unknown; PendingTTL is how long they are kept.
	// PendingMaxSets = 0 disables buffering (sets are only counted).
	PendingMaxSets  int
	PendingMaxBytes int
	PendingTTL      time.Duration
	// MaxLabels bounds the interned application label and category
	// strings; labels beyond it are left empty and counted.
	MaxLabels int
	// MaxNames bounds the interned server names and DNS queries; when the
	// table is full it is emptied and starts again (counted), since these
	// names keep changing.
	MaxNames int
	// MaxTemplatesTotal bounds templates over all exporters (a template
	// flood from many spoofed addresses); extra templates are rejected.
	MaxTemplatesTotal int

	// DefaultSamplingRate applies to flows whose exporter said nothing
	// about sampling (SamplingConfigDefault); 0 or 1 leaves them at 1.
	DefaultSamplingRate uint32
	// SamplingOverrides give the rate of exporters by address prefix; the
	// longest matching prefix wins over anything the exporter says
	// (SamplingConfigOverride).
	SamplingOverrides []SamplingOverride
}

// SamplingOverride is a configured sampling rate for the exporters whose
// address is in Prefix.
type SamplingOverride struct {
	Prefix netip.Prefix
	Rate   uint32
}

// DefaultConfig returns limits suited to a collector worker facing a few
// thousand exporters.
func DefaultConfig() Config {
	return Config{
		MaxExporters:               4096,
		MaxTemplatesPerExporter:    256,
		MaxTemplateFields:          512,
		MaxSamplersPerExporter:     64,
		MaxApplicationsPerExporter: 4096,
		PendingMaxSets:             256,
		PendingMaxBytes:            1 << 20,
		PendingTTL:                 30 * time.Second,
		MaxLabels:                  4096,
		MaxTemplatesTotal:          65536,
		MaxNames:                   65536,
	}
}

// Decoder decodes export datagrams into flows. It is NOT safe for
// concurrent use: the collector runs one per worker and routes each exporter
// address to one worker, so template state for an exporter lives in exactly
// one Decoder and datagrams of one exporter are decoded in order. Only
// Stats and Exporters may be called from another goroutine.
type Decoder struct {
	cfg Config
	// mu guards inserts into and evictions from exporters, so that
	// Exporters can read the map; the decoding goroutine reads it without.
	mu         sync.RWMutex
	exporters  map[netip.Addr]*exporterState
	cur        *exporterState // exporter of the datagram being decoded
	dgFlows    uint64         // flows emitted for the current datagram
	pending    pendingQueue
	labels     interner // application labels and categories
	names      interner // server names and DNS queries (high cardinality)
	onCounters func(*schema.InterfaceCounters)
	counters   schema.InterfaceCounters
	stats      counters
	flow       schema.Flow
	rec        recordState
	tick       uint64 // logical clock for exporter eviction
	buf        bytes.Buffer
	v5         netflowlegacy.PacketNetFlowV5
	sf         sfScratch
	vals       [][]byte    // walkDataSet's values of one variable-length record
	tplExt     []tplExtent // records of the template set being learnt

	// useGoflow2 (tests only) decodes NetFlow v5 and v9/IPFIX data
	// records with goflow2's decoders instead of ours: the reference the
	// differential tests compare our parsers against.
	useGoflow2 bool

	// rawHook, when set (tests only), is called before every emit with the
	// raw (unscaled) byte and packet counters as the exporter sent them:
	// v5 dOctets/dPkts, v9/IPFIX IE 1/2, sFlow frame length and 1.
	rawHook func(bytes, packets uint64, haveBytes, havePackets bool)
	// replaying is true while buffered sets are decoded (tests read it).
	replaying bool
	// reversing is true while the reverse flow of an RFC 5103 biflow
	// record is emitted (tests read it).
	reversing bool
}

// New returns a Decoder with the limits of cfg; zero limits take the
// defaults, except PendingMaxSets which may be 0 to disable buffering.
func New(cfg Config) *Decoder {
	def := DefaultConfig()
	if cfg.MaxExporters <= 0 {
		cfg.MaxExporters = def.MaxExporters
	}
	if cfg.MaxTemplatesPerExporter <= 0 {
		cfg.MaxTemplatesPerExporter = def.MaxTemplatesPerExporter
	}
	if cfg.MaxTemplateFields <= 0 {
		cfg.MaxTemplateFields = def.MaxTemplateFields
	}
	if cfg.MaxSamplersPerExporter <= 0 {
		cfg.MaxSamplersPerExporter = def.MaxSamplersPerExporter
	}
	if cfg.MaxApplicationsPerExporter <= 0 {
		cfg.MaxApplicationsPerExporter = def.MaxApplicationsPerExporter
	}
	if cfg.PendingMaxSets < 0 {
		cfg.PendingMaxSets = 0
	}
	if cfg.PendingMaxBytes <= 0 {
		cfg.PendingMaxBytes = def.PendingMaxBytes
	}
	if cfg.PendingTTL <= 0 {
		cfg.PendingTTL = def.PendingTTL
	}
	if cfg.MaxLabels <= 0 {
		cfg.MaxLabels = def.MaxLabels
	}
	if cfg.MaxNames <= 0 {
		cfg.MaxNames = def.MaxNames
	}
	if cfg.MaxTemplatesTotal <= 0 {
		cfg.MaxTemplatesTotal = def.MaxTemplatesTotal
	}
	return &Decoder{
		cfg:       cfg,
		exporters: make(map[netip.Addr]*exporterState),
		labels:    newInterner(cfg.MaxLabels),
		names:     newInterner(cfg.MaxNames),
	}
}

// Decode decodes one export datagram received from exporter at time
// received. The version is detected from the first bytes. For every flow
// record it fills a reused *schema.Flow and calls emit; emit must not keep
// the pointer. A malformed datagram returns an error wrapping ErrTruncated,
// ErrMalformed or ErrUnknownVersion; records emitted before the error stand.
// Data sets whose template is not known yet are not an error: they are
// counted (Stats.WaitingForTemplate) and buffered within the Config limits.
func (d *Decoder) Decode(payload []byte, exporter netip.AddrPort, received time.Time, emit func(*schema.Flow)) error {
	if len(payload) < 4 {
		d.stats.errors[reasonTruncated].Add(1)
		return fmt.Errorf("decode from %s: %d bytes: %w", exporter, len(payload), ErrTruncated)
	}
	src := schema.SourceUnknown
	switch v := binary.BigEndian.Uint16(payload); {
	case v == 5:
		src = schema.SourceNetFlowV5
	case v == 9:
		src = schema.SourceNetFlowV9
	case v == 10:
		src = schema.SourceIPFIX
	case v == 0 && binary.BigEndian.Uint32(payload) == 5:
		src = schema.SourceSFlowV5
	}
	if src == schema.SourceUnknown {
		d.stats.errors[reasonUnknownVersion].Add(1)
		return fmt.Errorf("decode from %s: version 0x%08x: %w", exporter, binary.BigEndian.Uint32(payload), ErrUnknownVersion)
	}
	d.stats.datagrams[src].Add(1)
	addr := exporter.Addr().Unmap()
	if d.pending.len() > 0 {
		d.expirePending(received)
	}
	ex := d.exporter(addr)
	d.cur, d.dgFlows = ex, 0
	in := ex.info
	in.datagrams.Add(1)
	ex.noteSeen(received)
	if ex.templates.notePort(exporter.Port()) {
		in.setPorts(ex.templates.ports)
	}
	// Template rejections and unbuffered sets are counted deep in the
	// decoding paths; the difference over this datagram is its exporter's.
	rejected, unbuffered := d.stats.tplRejected.Load(), d.stats.pendDropped.Load()
	var err error
	switch src {
	case schema.SourceNetFlowV5:
		err = d.decodeV5(payload, addr, received, emit)
	case schema.SourceNetFlowV9, schema.SourceIPFIX:
		err = d.decodeNetFlow(payload, addr, received, emit)
	case schema.SourceSFlowV5:
		err = d.decodeSFlow(payload, addr, received, emit)
	}
	if n := d.stats.tplRejected.Load() - rejected; n > 0 {
		in.drops[dropTemplateRejected].Add(n)
	}
	if n := d.stats.pendDropped.Load() - unbuffered; n > 0 {
		in.drops[dropNoTemplateBufferFull].Add(n)
	}
	if d.dgFlows > 0 {
		// All flows of a datagram, replayed ones included, are of its
		// version.
		d.stats.flows[src].Add(d.dgFlows)
		in.flows.Add(d.dgFlows)
	}
	if err != nil {
		in.errors.Add(1)
		switch {
		case errors.Is(err, ErrTruncated):
			d.stats.errors[reasonTruncated].Add(1)
			in.drops[dropTruncated].Add(1)
		default:
			d.stats.errors[reasonMalformed].Add(1)
			in.drops[dropMalformed].Add(1)
		}
		return fmt.Errorf("decode %s from %s: %w", src, exporter, err)
	}
	return nil
}

// emitFlow finishes the shared fields of d.flow and hands it to emit.
func (d *Decoder) emitFlow(emit func(*schema.Flow)) {
	// Every path sets SamplingRate through Decoder.sampling (never 0) and
	// notes it for Exporters (noteRate) before it comes here.
	d.dgFlows++ // added to the shared counters once per datagram
	emit(&d.flow)
}

// sampling decides the rate of a flow from what the exporter said (rate,
// with src where it came from; rate 0 when it said nothing, src
// SamplingUnknown when it announced sampling without a usable rate) and
// the configuration. A configured override wins; an unknown rate is 1 and
// counted, never silently taken as "unsampled".
func (d *Decoder) sampling(ex *exporterState, rate uint64, src schema.SamplingSource) (uint32, schema.SamplingSource) {
	if ex.override == 0 && rate-1 < 1<<31 && src != schema.SamplingUnknown {
		return uint32(rate), src // the exporter's rate: the common case, inlined
	}
	return d.samplingSlow(ex, rate, src)
}

//go:noinline
func (d *Decoder) samplingSlow(ex *exporterState, rate uint64, src schema.SamplingSource) (uint32, schema.SamplingSource) {
	if ex.override > 0 {
		return ex.override, schema.SamplingConfigOverride
	}
	if rate > 1<<31 {
		rate, src = 0, schema.SamplingUnknown
	}
	if rate > 0 {
		return uint32(rate), src
	}
	if src == schema.SamplingUnknown {
		d.stats.samplingUnknown.Add(1)
		return 1, schema.SamplingUnknown
	}
	if d.cfg.DefaultSamplingRate > 1 {
		return d.cfg.DefaultSamplingRate, schema.SamplingConfigDefault
	}
	return 1, schema.SamplingNone
}

// receivedSeconds converts the collector clock to the TimeReceived column.
func receivedSeconds(t time.Time) uint32 {
	s := t.Unix()
	if s < 0 {
		return 0
	}
	return uint32(s)
}

// malformed wraps a goflow2 or structural error as ErrMalformed, keeping
// the original message.
func malformed(what string, err error) error {
	if err == nil {
		return fmt.Errorf("%s: %w", what, ErrMalformed)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrMalformed, err)
}
