package decoder

import (
	"bytes"
	"errors"
	"maps"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"
)

// errTooManyTemplates is returned by templateStore.AddTemplate over its limit.
var errTooManyTemplates = errors.New("too many templates for exporter")

func templateKey(version uint16, obsDomain uint32, id uint16) uint64 {
	return uint64(version)<<48 | uint64(obsDomain)<<16 | uint64(id)
}

// templateStore is one exporter's template set: goflow2's
// NetFlowTemplateSystem keyed by (version, observation domain, template id),
// bounded, and without locks since a Decoder is single-goroutine.
type templateStore struct {
	m map[uint64]any
	// raw holds the wire bytes each template was parsed from, so that an
	// identical resend is recognised without parsing (Decoder.relearn).
	raw   map[uint64][]byte
	max   int
	gauge *atomic.Uint64 // Decoder-wide current template count
}

var _ netflow.NetFlowTemplateSystem = (*templateStore)(nil)

func (ts *templateStore) AddTemplate(version uint16, obsDomain uint32, id uint16, tpl any) error {
	k := templateKey(version, obsDomain, id)
	if _, ok := ts.m[k]; !ok {
		if len(ts.m) >= ts.max {
			return errTooManyTemplates
		}
		ts.gauge.Add(1)
	}
	ts.m[k] = tpl
	return nil
}

func (ts *templateStore) GetTemplate(version uint16, obsDomain uint32, id uint16) (any, error) {
	if t, ok := ts.m[templateKey(version, obsDomain, id)]; ok {
		return t, nil
	}
	return nil, netflow.ErrorTemplateNotFound
}

func (ts *templateStore) RemoveTemplate(version uint16, obsDomain uint32, id uint16) (any, error) {
	k := templateKey(version, obsDomain, id)
	if t, ok := ts.m[k]; ok {
		delete(ts.m, k)
		delete(ts.raw, k)
		ts.gauge.Add(^uint64(0))
		return t, nil
	}
	return nil, netflow.ErrorTemplateNotFound
}

func (ts *templateStore) GetTemplates() netflow.FlowBaseTemplateSet {
	return maps.Clone(netflow.FlowBaseTemplateSet(ts.m))
}

type samplerKey struct {
	version   uint16
	obsDomain uint32
	id        uint64
}

type domainKey struct {
	version   uint16
	obsDomain uint32
}

type appKey struct {
	obsDomain uint32
	id        uint64
}

// exporterState is what a Decoder remembers about one exporter address.
type exporterState struct {
	templates *templateStore
	samplers  map[samplerKey]uint32 // sampling rate by sampler
	sysInit   map[domainKey]uint64  // systemInitTimeMilliseconds from options
	apps      map[appKey]string     // application id → interned name
	lastSeen  uint64
}

// exporter returns the state of addr, creating it and evicting the least
// recently seen exporter when the table is full.
func (d *Decoder) exporter(addr netip.Addr) *exporterState {
	d.tick++
	if ex, ok := d.exporters[addr]; ok {
		ex.lastSeen = d.tick
		return ex
	}
	if len(d.exporters) >= d.cfg.MaxExporters {
		var oldest netip.Addr
		min := ^uint64(0)
		for a, ex := range d.exporters {
			if ex.lastSeen < min {
				min, oldest = ex.lastSeen, a
			}
		}
		if ex := d.exporters[oldest]; ex != nil {
			d.stats.templates.Add(^uint64(len(ex.templates.m) - 1))
		}
		delete(d.exporters, oldest)
		d.stats.evicted.Add(1)
		d.stats.exporters.Add(^uint64(0))
	}
	ex := &exporterState{
		templates: &templateStore{m: make(map[uint64]any), raw: make(map[uint64][]byte), max: d.cfg.MaxTemplatesPerExporter, gauge: &d.stats.templates},
		samplers:  make(map[samplerKey]uint32),
		sysInit:   make(map[domainKey]uint64),
		apps:      make(map[appKey]string),
		lastSeen:  d.tick,
	}
	d.exporters[addr] = ex
	d.stats.exporters.Add(1)
	return ex
}

// interner keeps one copy of each application label so that records carry
// a shared string and decoding does not allocate per record.
type interner struct {
	m   map[string]string
	max int
}

func newInterner(max int) interner { return interner{m: make(map[string]string), max: max} }

// get returns the interned copy of the label in b, or "" when b holds no
// printable label; ok is false when the table is full.
func (in *interner) get(b []byte) (string, bool) {
	// Fixed-length string fields are NUL padded: cut at the first NUL.
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "", true
	}
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return "", true // not a label: binary garbage
		}
	}
	if s, ok := in.m[string(b)]; ok {
		return s, true
	}
	if len(in.m) >= in.max {
		return "", false
	}
	s := string(b)
	in.m[s] = s
	return s, true
}

// pendingSet is a data set kept until its template arrives.
type pendingSet struct {
	exporter netip.Addr
	hdr      msgHeader
	id       uint16
	received time.Time
	data     []byte
}

type pendingQueue struct {
	sets  []pendingSet
	bytes int
}

func (q *pendingQueue) len() int { return len(q.sets) }

// bufferPending keeps a copy of a data set whose template is unknown.
func (d *Decoder) bufferPending(addr netip.Addr, hdr msgHeader, id uint16, data []byte, received time.Time) {
	q := &d.pending
	if len(q.sets) >= d.cfg.PendingMaxSets || q.bytes+len(data) > d.cfg.PendingMaxBytes {
		d.stats.pendDropped.Add(1)
		return
	}
	q.sets = append(q.sets, pendingSet{exporter: addr, hdr: hdr, id: id, received: received, data: bytes.Clone(data)})
	q.bytes += len(data)
	d.stats.pendBuffered.Add(1)
	d.stats.pendSets.Store(uint64(len(q.sets)))
}

// expirePending drops buffered sets older than PendingTTL.
func (d *Decoder) expirePending(now time.Time) {
	q := &d.pending
	n := 0
	for _, p := range q.sets {
		if now.Sub(p.received) > d.cfg.PendingTTL {
			q.bytes -= len(p.data)
			d.stats.pendExpired.Add(1)
			continue
		}
		q.sets[n] = p
		n++
	}
	clear(q.sets[n:])
	q.sets = q.sets[:n]
	d.stats.pendSets.Store(uint64(n))
}

// takePending removes and returns (through fn) the buffered sets of addr
// that the template (version, obsDomain, id) describes, in arrival order.
func (d *Decoder) takePending(addr netip.Addr, version uint16, obsDomain uint32, id uint16, fn func(p *pendingSet)) {
	q := &d.pending
	if len(q.sets) == 0 {
		return
	}
	n := 0
	var matched []pendingSet
	for _, p := range q.sets {
		if p.exporter == addr && p.id == id && p.hdr.version == version && p.hdr.obsDomain == obsDomain {
			matched = append(matched, p)
			q.bytes -= len(p.data)
			continue
		}
		q.sets[n] = p
		n++
	}
	clear(q.sets[n:])
	q.sets = q.sets[:n]
	d.stats.pendSets.Store(uint64(n))
	for i := range matched {
		d.stats.pendDecoded.Add(1)
		fn(&matched[i])
	}
}
