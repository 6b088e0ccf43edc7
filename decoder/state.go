package decoder

import (
	"bytes"
	"errors"
	"net/netip"
	"time"
)

// errTooManyTemplates is returned by templateStore.add over its limits.
var errTooManyTemplates = errors.New("too many templates")

func templateKey(version uint16, obsDomain uint32, id uint16) uint64 {
	return uint64(version)<<48 | uint64(obsDomain)<<16 | uint64(id)
}

// tplKey names a template within one exporter address: the exporter
// session is (address, source port, observation domain), and the template
// id within it.
type tplKey struct {
	k    uint64 // templateKey
	port uint16
}

// maxPortsPerExporter bounds the source ports remembered per exporter
// address (template fallback after a restart, Exporters view).
const maxPortsPerExporter = 8

// templateStore is one exporter address's templates, keyed per session
// (source port, version, observation domain, template id), bounded, and
// without locks since a Decoder is single-goroutine. The map is keyed by
// templateKey (a uint64: the runtime's fast map path, looked up per data
// set); the sessions that defined a key are its slots, nearly always one.
type templateStore struct {
	m map[uint64][]tplSlot
	n int // slots over all keys
	// ports are the source ports seen, most recent first.
	ports []uint16
	port  uint16 // source port of the datagram being decoded
	max   int
}

// tplSlot is one session's template for a key.
type tplSlot struct {
	port uint16
	tpl  any
	// raw holds the wire bytes the template was parsed from, so that an
	// identical resend is recognised without parsing (Decoder.relearn),
	// and so that MarshalState can save it; nil when unknown.
	raw []byte
}

// slot returns the current session's slot for k, nil when none.
func (ts *templateStore) slot(k uint64) *tplSlot {
	s := ts.m[k]
	for i := range s {
		if s[i].port == ts.port {
			return &s[i]
		}
	}
	return nil
}

// get returns the template of the current session, falling back to the
// same key under another source port of the address: an exporter that
// restarts from a new port sends data before its next template resend.
func (ts *templateStore) get(k uint64) (tpl any, ok, fallback bool) {
	s := ts.m[k]
	for i := range s {
		if s[i].port == ts.port {
			return s[i].tpl, true, false
		}
	}
	if len(s) > 0 {
		return s[0].tpl, true, true
	}
	return nil, false, false
}

// notePort makes port the current session and remembers it.
func (ts *templateStore) notePort(port uint16) (isNew bool) {
	ts.port = port
	if len(ts.ports) > 0 && ts.ports[0] == port {
		return false
	}
	i := 0
	for i < len(ts.ports) && ts.ports[i] != port {
		i++
	}
	if i == len(ts.ports) {
		isNew = true
		if len(ts.ports) < maxPortsPerExporter {
			ts.ports = append(ts.ports, 0)
		} else {
			i = len(ts.ports) - 1
		}
	}
	copy(ts.ports[1:i+1], ts.ports[:i])
	ts.ports[0] = port
	return isNew
}

// addTemplate stores a template for the current session and returns its
// slot. At the per-exporter limit the same key under another port (a
// previous session) makes room.
func (d *Decoder) addTemplate(ex *exporterState, k uint64, tpl any) (*tplSlot, error) {
	ts := ex.templates
	if s := ts.slot(k); s != nil {
		s.tpl = tpl
		return s, nil
	}
	if ts.n >= ts.max {
		if len(ts.m[k]) == 0 {
			d.stats.tplOverLimit.Add(1)
			return nil, errTooManyTemplates
		}
		old := ts.m[k][0].port
		d.dropTemplate(ts, k, old)
		ex.info.removeTemplate(tplKey{k, old})
	}
	if d.stats.templates.Load() >= uint64(d.cfg.MaxTemplatesTotal) {
		d.stats.tplOverLimit.Add(1)
		return nil, errTooManyTemplates
	}
	d.stats.templates.Add(1)
	ts.n++
	ts.m[k] = append(ts.m[k], tplSlot{port: ts.port, tpl: tpl})
	s := ts.m[k]
	return &s[len(s)-1], nil
}

// dropTemplate removes the template of session port for k.
func (d *Decoder) dropTemplate(ts *templateStore, k uint64, port uint16) bool {
	s := ts.m[k]
	for i := range s {
		if s[i].port == port {
			if len(s) == 1 {
				delete(ts.m, k)
			} else {
				ts.m[k] = append(s[:i:i], s[i+1:]...)
			}
			ts.n--
			d.stats.templates.Add(^uint64(0))
			return true
		}
	}
	return false
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
// Only info is read by other goroutines.
type exporterState struct {
	templates *templateStore
	samplers  map[samplerKey]uint32 // sampling rate by sampler
	sysInit   map[domainKey]uint64  // systemInitTimeMilliseconds from options
	apps      map[appKey]string     // application id → interned name
	lastSeen  uint64
	// override is the configured rate for this address (0: none).
	override uint32
	// announced: an options template with sampling fields came, so a
	// record without a known rate is sampled at an unknown rate.
	announced bool
	// lastRate is the (rate, source) last noted in info; skew, haveSkew
	// and seenSec the values last written to it.
	lastRate uint64
	skew     int64
	haveSkew bool
	seenSec  int64
	info     *exporterInfo
}

// exporter returns the state of addr, creating it and evicting the least
// recently seen exporter when the table is full.
func (d *Decoder) exporter(addr netip.Addr) *exporterState {
	d.tick++
	if ex, ok := d.exporters[addr]; ok {
		ex.lastSeen = d.tick
		return ex
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.exporters) >= d.cfg.MaxExporters {
		var oldest netip.Addr
		min := ^uint64(0)
		for a, ex := range d.exporters {
			if ex.lastSeen < min {
				min, oldest = ex.lastSeen, a
			}
		}
		if ex := d.exporters[oldest]; ex != nil {
			d.stats.templates.Add(^uint64(ex.templates.n - 1))
		}
		delete(d.exporters, oldest)
		d.stats.evicted.Add(1)
		d.stats.exporters.Add(^uint64(0))
	}
	ex := &exporterState{
		templates: &templateStore{m: make(map[uint64][]tplSlot), max: d.cfg.MaxTemplatesPerExporter},
		samplers:  make(map[samplerKey]uint32),
		sysInit:   make(map[domainKey]uint64),
		apps:      make(map[appKey]string),
		lastSeen:  d.tick,
		override:  d.overrideRate(addr),
		info:      &exporterInfo{addr: addr},
	}
	d.exporters[addr] = ex
	d.stats.exporters.Add(1)
	return ex
}

// overrideRate returns the rate of the longest configured prefix holding
// addr, 0 when none does.
func (d *Decoder) overrideRate(addr netip.Addr) uint32 {
	best, rate := -1, uint32(0)
	for _, o := range d.cfg.SamplingOverrides {
		if o.Rate > 0 && o.Prefix.Contains(addr) && o.Prefix.Bits() > best {
			best, rate = o.Prefix.Bits(), o.Rate
		}
	}
	return rate
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
			if ex := d.exporters[p.exporter]; ex != nil {
				ex.info.drops[dropNoTemplateExpired].Add(1)
			}
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
