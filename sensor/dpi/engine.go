package dpi

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Dir is the direction of a packet in its flow.
type Dir uint8

// The client is the endpoint that sent the flow's first packet.
const (
	ToServer Dir = 0
	ToClient Dir = 1
)

// Confidence says how a label was found, from the weakest to the strongest.
type Confidence uint8

const (
	ConfUnknown  Confidence = iota // nothing matched
	ConfPort                       // a well-known port of the flow
	ConfIPList                     // the table's address blocks
	ConfDNSCache                   // a name this client's resolver returned for the address
	ConfDPI                        // the flow's own payload
)

func (c Confidence) String() string {
	switch c {
	case ConfPort:
		return "port_guess"
	case ConfIPList:
		return "ip_list"
	case ConfDNSCache:
		return "dns_cache"
	case ConfDPI:
		return "dpi"
	}
	return "unknown"
}

// Flow is the flow as the classifier sees it; the caller keeps it.
type Flow struct {
	Proto          uint8          // IP protocol (6 TCP, 17 UDP, 1/58 ICMP, ...)
	Client, Server netip.AddrPort // Client sent the first packet
}

// Result is a flow's classification.
type Result struct {
	Label      string // nDPI style: "TLS.YouTube", "QUIC.Google", "DNS", "HTTP.Dropbox", "SSH", "Unknown"
	Master     string // "TLS" of "TLS.YouTube"; the whole label when it has one part
	App        string // "YouTube"; "" when the label has one part
	Category   string // nDPI category name ("Web", "Media", "Cloud", ...; "Unspecified" when none)
	Confidence Confidence
	ServerName string // TLS/QUIC SNI, HTTP Host, the DNS query name for DNS flows; for TLS without
	// SNI the server certificate's name; for flows named from the DNS cache, the name resolved
	DNSQuery  string // DNS flows: first query name
	ALPN      string // first ALPN offered (TLS/QUIC)
	JA4       string // JA4 client fingerprint (TLS, DTLS and QUIC ClientHello)
	UserAgent string // HTTP (and gQUIC/QUIC when the client sends one)
	// DNS flows: the first question's type (0 unknown) and, when
	// DNSAnswered, the response code of its answer.
	DNSQType    uint16
	DNSRCode    uint8
	DNSAnswered bool
	// AppID identifies Label for IPFIX applicationId (RFC 6759): the
	// classification engine id 13 (PANA-L7: a vendor's own layer-7 numbering) in the top byte, then the
	// master protocol's nDPI id in the next 12 bits and the application's
	// nDPI id in the low 12 bits (0 when the label has one part). ntop
	// tools know these ids as L7_PROTO "master.app". Names the table
	// gives no id get a stable automatic id in 3072..4095 (see apps.txt).
	// Unknown flows have AppID 0.
	AppID uint32
}

// AppIDEngine is the RFC 6759 classification engine id in Result.AppID.
const AppIDEngine = 13

// Config configures an Engine.
type Config struct {
	// ExtraRules are user rule files in apps.txt's format, read after the
	// built-in table (a later rule for the same key wins).
	ExtraRules []string
	// DNSCacheSize bounds the address → name cache fed by DNS answers
	// (entries over all shards). 0 takes the default, negative disables it.
	DNSCacheSize int
	// DNSCacheMinTTL and DNSCacheMaxTTL clamp how long an answer names its
	// addresses. Clients keep using an address well past its record's TTL,
	// so the floor is far above typical TTLs.
	DNSCacheMinTTL, DNSCacheMaxTTL time.Duration
	// MaxPackets is the per-flow budget of packets with payload; after it
	// the flow keeps whatever label it has (and the fallbacks).
	MaxPackets int
	// ReassemblyBytes bounds each direction's TCP reassembly buffer (and
	// QUIC's CRYPTO stream buffer). Buffers exist only while a flow needs
	// one and go back to a pool when it is classified.
	ReassemblyBytes int
	// ReassemblyMemory bounds the bytes all flows' buffers hold together,
	// so that many half-open handshakes cannot take the sensor's memory: a
	// flow that would go past it is classified from what it has (counted
	// in Stats.ReassemblyRefused).
	ReassemblyMemory int64
	// Now is the clock for DNS cache expiry; nil means time.Now. Offline
	// replay passes the capture's clock so answers expire in capture time.
	Now func() time.Time
}

// DefaultConfig returns the defaults: a 64k-entry DNS cache keeping
// names 10 minutes to 24 hours, 16 packets per flow, 16 KiB per direction
// and 64 MiB of buffers in all.
func DefaultConfig() Config {
	return Config{
		DNSCacheSize:     1 << 16,
		DNSCacheMinTTL:   10 * time.Minute,
		DNSCacheMaxTTL:   24 * time.Hour,
		MaxPackets:       16,
		ReassemblyBytes:  16 << 10,
		ReassemblyMemory: 64 << 20,
	}
}

// Stats counts what the engine did that a caller may want as metrics.
type Stats struct {
	Segments          uint64 // TCP segments copied into a reassembly buffer
	OutOfOrder        uint64 // segments that arrived ahead of a gap
	Retransmits       uint64 // segments with no new bytes
	ReassemblyDrops   uint64 // bytes past the buffer bound or beyond the gap slots
	ReassemblyRefused uint64 // buffers not given because ReassemblyMemory was reached
	ReassemblyHeld    int64  // bytes of buffers held by flows now
	QUICDecrypted     uint64 // QUIC Initial packets decrypted
	QUICDecryptFails  uint64 // QUIC Initial packets that did not decrypt
	DNSCacheInserts   uint64
	DNSCacheHits      uint64
	DNSCacheEvicted   uint64
}

type counters struct {
	segments, ooo, retrans, drops, quicOK, quicFail, refused atomic.Uint64
	held                                                     atomic.Int64
}

// Engine holds what flows share: the rule table and the DNS cache. It is
// safe for concurrent use by any number of workers; each State must be
// used by one goroutine at a time.
type Engine struct {
	cfg    Config
	tab    *table
	dns    *dnsCache
	now    func() time.Time
	labels atomic.Pointer[map[uint32]string]
	lmu    sync.Mutex
	ctr    counters

	ftp expectations // FTP data endpoints announced on control connections

	streamPool sync.Pool // *stream
	quicPool   sync.Pool // *quicCtx
	extPool    sync.Pool // *flowExt
}

// NewEngine compiles the built-in table and cfg.ExtraRules. A bad rule
// file gives a *RuleError naming file:line.
func NewEngine(cfg Config) (*Engine, error) {
	d := DefaultConfig()
	if cfg.DNSCacheSize == 0 {
		cfg.DNSCacheSize = d.DNSCacheSize
	}
	if cfg.DNSCacheMinTTL <= 0 {
		cfg.DNSCacheMinTTL = d.DNSCacheMinTTL
	}
	if cfg.DNSCacheMaxTTL <= 0 {
		cfg.DNSCacheMaxTTL = d.DNSCacheMaxTTL
	}
	if cfg.DNSCacheMaxTTL < cfg.DNSCacheMinTTL {
		cfg.DNSCacheMaxTTL = cfg.DNSCacheMinTTL
	}
	if cfg.MaxPackets <= 0 {
		cfg.MaxPackets = d.MaxPackets
	}
	if cfg.MaxPackets > 250 {
		cfg.MaxPackets = 250
	}
	if cfg.ReassemblyBytes <= 0 {
		cfg.ReassemblyBytes = d.ReassemblyBytes
	}
	if cfg.ReassemblyBytes < 2048 {
		cfg.ReassemblyBytes = 2048
	}
	if cfg.ReassemblyBytes > 1<<20 {
		cfg.ReassemblyBytes = 1 << 20
	}
	if cfg.ReassemblyMemory <= 0 {
		cfg.ReassemblyMemory = d.ReassemblyMemory
	}
	t, err := loadTable(cfg.ExtraRules)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, tab: t, now: cfg.Now}
	if e.now == nil {
		e.now = time.Now
	}
	if cfg.DNSCacheSize > 0 {
		e.dns = newDNSCache(cfg.DNSCacheSize, cfg.DNSCacheMinTTL, cfg.DNSCacheMaxTTL)
	}
	size := cfg.ReassemblyBytes
	e.streamPool.New = func() any { return &stream{buf: make([]byte, size)} }
	e.quicPool.New = func() any { return &quicCtx{crypto: stream{buf: make([]byte, size)}} }
	e.extPool.New = func() any { return new(flowExt) }
	m := map[uint32]string{}
	e.labels.Store(&m)
	return e, nil
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	s := Stats{
		Segments:          e.ctr.segments.Load(),
		OutOfOrder:        e.ctr.ooo.Load(),
		Retransmits:       e.ctr.retrans.Load(),
		ReassemblyDrops:   e.ctr.drops.Load(),
		QUICDecrypted:     e.ctr.quicOK.Load(),
		QUICDecryptFails:  e.ctr.quicFail.Load(),
		ReassemblyRefused: e.ctr.refused.Load(),
		ReassemblyHeld:    e.ctr.held.Load(),
	}
	if e.dns != nil {
		s.DNSCacheInserts = e.dns.inserts.Load()
		s.DNSCacheHits = e.dns.hits.Load()
		s.DNSCacheEvicted = e.dns.evicted.Load()
	}
	return s
}

// State is the per-flow classification state, embedded by value in the
// caller's flow entry; its zero value is a fresh flow. It holds two
// pointers that stay nil for most flows: the found strings (allocated once,
// when a flow has any) and the reassembly/QUIC context (pooled, held only
// while a flow needs it).
type State struct {
	x      *flowExt
	m      *meta
	aux    uint64    // one dissector's memory across packets (see owner)
	isn    [2]uint32 // per direction, the sequence number of the stream's first byte
	master uint16
	app    uint16
	npay   uint8 // payload packets inspected
	ntot   uint8 // packets inspected (saturating)
	conf   Confidence
	flags  uint8
	cat    uint8 // category override from a host rule or HTTP content (0: none)
	phase  uint8 // what the classifying dissector still waits for
	owner  uint8 // which dissector owns aux
}

const (
	fDone    uint8 = 1 << iota // final: Inspect is a no-op
	fSyn0                      // isn[ToServer] known: from the SYN, or the first payload when the SYN was missed
	fSyn1                      // isn[ToClient] known
	fSeen0                     // a payload went ToServer
	fSeen1                     // a payload went ToClient
	fPending                   // classified, but the dissector wants more (server certificate, DNS answer)
	fRev                       // the content's client sends ToClient (the capture began with the server)
)

// Phases: what a classifying dissector still waits for (State.phase).
const (
	phNone        = iota
	phTLSClient   // the ClientHello is not complete yet
	phTLSServer   // no SNI: reading ServerHello and Certificate
	phHTTPResp    // HTTP: the request is read, waiting for the response headers
	phDNSAnswer   // DNS: the query is read, waiting for the answer
	phTLSServerCS // TLS: ServerHello seen first (no ClientHello), reading Certificate
	phFTP         // FTP control: watching for data connection endpoints
)

// Owners of State.aux: the one dissector using it across packets.
const (
	ownNone = iota
	ownHTTPReq
	ownRTP
	ownTFTP
	ownOpenVPN
	ownBT
	ownMail
	ownSTUN
	ownTLSProv // TLS begun with a segment too short to be sure
)

// meta holds the strings a flow carried.
type meta struct {
	serverName, dnsQuery, alpn, ja4, userAgent string
	dnsQType                                   uint16
	dnsRCode                                   uint8
	dnsAnswered                                bool
}

// flowExt is the pooled part of a flow that needs buffers.
type flowExt struct {
	s [2]*stream
	q *quicCtx
}

func (st *State) meta() *meta {
	if st.m == nil {
		st.m = new(meta)
	}
	return st.m
}

// set records a classification from the flow's payload.
func (st *State) set(master, app uint16) {
	st.master, st.app, st.conf = master, app, ConfDPI
}

// finish marks the flow done and gives its buffers back.
func (e *Engine) finish(st *State) {
	st.flags |= fDone
	st.flags &^= fPending
	e.release(st)
}

// Release gives back the buffers a flow holds, keeping its classification
// (Result still works). Inspect does it when it returns done; call it when
// a flow leaves the table before that (idle timeout, eviction), or its
// buffers count against Config.ReassemblyMemory until the process ends.
// It is cheap, and safe on any state.
func (e *Engine) Release(st *State) {
	e.release(st)
}

func (e *Engine) release(st *State) {
	x := st.x
	if x == nil {
		return
	}
	st.x = nil
	for i, s := range x.s {
		if s != nil {
			e.putStream(s)
			x.s[i] = nil
		}
	}
	if x.q != nil {
		x.q.reset()
		e.quicPool.Put(x.q)
		e.ctr.held.Add(-int64(e.cfg.ReassemblyBytes))
		x.q = nil
	}
	e.extPool.Put(x)
}

// reserve takes n bytes of the buffer budget.
func (e *Engine) reserve(n int) bool {
	if e.ctr.held.Add(int64(n)) > e.cfg.ReassemblyMemory {
		e.ctr.held.Add(-int64(n))
		e.ctr.refused.Add(1)
		return false
	}
	return true
}

func (e *Engine) putStream(s *stream) {
	s.reset()
	e.streamPool.Put(s)
	e.ctr.held.Add(-int64(e.cfg.ReassemblyBytes))
}

func (e *Engine) ext(st *State) *flowExt {
	if st.x == nil {
		st.x = e.extPool.Get().(*flowExt)
	}
	return st.x
}

// pkt is one packet being inspected, with what dissectors need to know.
type pkt struct {
	e     *Engine
	st    *State
	f     *Flow
	dir   Dir
	p     []byte
	tcpf  uint8
	seq   uint32
	sport uint16 // this packet's source port
	dport uint16 // this packet's destination port
	first bool   // first payload in this direction
}

// port reports whether either end of the flow uses port n.
func (p *pkt) port(n uint16) bool { return p.sport == n || p.dport == n }

// srvPort is the flow's server-side port.
func (p *pkt) srvPort() uint16 { return p.f.Server.Port() }

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// Inspect feeds one packet of the flow: its L4 payload (possibly empty),
// the TCP flags and sequence number for TCP. It returns true once the flow
// is classified for good or its budget is spent; further calls are no-ops.
func (e *Engine) Inspect(st *State, f *Flow, dir Dir, payload []byte, tcpFlags uint8, seq uint32) (done bool) {
	if st.flags&fDone != 0 {
		return true
	}
	if st.ntot < 255 {
		st.ntot++
	}
	p := pkt{e: e, st: st, f: f, dir: dir & 1, p: payload, tcpf: tcpFlags, seq: seq}
	if p.dir == ToServer {
		p.sport, p.dport = f.Client.Port(), f.Server.Port()
	} else {
		p.sport, p.dport = f.Server.Port(), f.Client.Port()
	}
	switch f.Proto {
	case 6:
		if st.ntot == 1 && e.ftp.n.Load() > 0 && e.ftp.take(f.Server, e.now()) {
			st.set(pFTPData, 0)
			e.finish(st)
			return true
		}
		if tcpFlags&tcpSYN != 0 {
			st.isn[p.dir] = seq + 1
			st.flags |= fSyn0 << p.dir
		}
		if len(payload) == 0 {
			// A flow of empty segments never reaches the payload budget;
			// stop it after four times as many packets.
			if int(st.ntot) >= 4*e.cfg.MaxPackets || (st.ntot == 255) {
				e.finish(st)
				return true
			}
			return false
		}
	case 17:
		if len(payload) == 0 {
			return false
		}
	default:
		e.inspectOther(&p)
		e.finish(st)
		return true
	}
	p.first = st.flags&(fSeen0<<p.dir) == 0
	if st.npay < 255 {
		st.npay++
	}
	if f.Proto == 6 && p.first && st.flags&(fSyn0<<p.dir) != 0 {
		// A segment ahead of the stream's first byte (the SYN told where it
		// starts): keep it until the first one comes, so that dissectors
		// see the stream from its start.
		if off := int32(seq - st.isn[p.dir]); off > 0 {
			if int(off) < e.cfg.ReassemblyBytes {
				e.keep(&p)
			}
			return e.budget(st)
		}
	}
	st.flags |= fSeen0 << p.dir
	if f.Proto == 6 {
		e.inspectTCP(&p)
	} else {
		e.inspectUDP(&p)
	}
	if st.flags&fDone != 0 {
		return true
	}
	if st.master != 0 && st.flags&fPending == 0 {
		e.finish(st)
		return true
	}
	return e.budget(st)
}

// budget ends a flow whose payload packets reached the budget.
func (e *Engine) budget(st *State) bool {
	n := e.cfg.MaxPackets
	if st.phase == phFTP {
		n = min(n*ftpBudget, 255)
	}
	if int(st.npay) >= n {
		e.finish(st)
		return true
	}
	return false
}

// inspectOther names flows of IP protocols without ports from the
// protocol number alone, as nDPI does (with DPI confidence).
func (e *Engine) inspectOther(p *pkt) {
	var id uint16
	switch p.f.Proto {
	case 1:
		id = pICMP
	case 58:
		id = pICMPv6
	case 2:
		id = pIGMP
	case 4, 41:
		id = pIPinIP
	case 47:
		id = pGRE
	case 50, 51:
		id = pIPSec
	case 89:
		id = pOSPF
	case 112:
		id = pVRRP
	case 132:
		id = pSCTP
	default:
		return
	}
	p.st.set(id, 0)
}

// Result gives the flow's label now, with the fallbacks for flows the
// payload did not name: the DNS cache for the flow's addresses, then the
// address blocks, for the application; the well-known port for the
// protocol. It is cheap and may be called any number of times.
func (e *Engine) Result(st *State, f *Flow) Result {
	var r Result
	if m := st.m; m != nil {
		r.ServerName, r.DNSQuery, r.ALPN, r.JA4, r.UserAgent = m.serverName, m.dnsQuery, m.alpn, m.ja4, m.userAgent
		r.DNSQType, r.DNSRCode, r.DNSAnswered = m.dnsQType, m.dnsRCode, m.dnsAnswered
	}
	master, app, conf, cat := st.master, st.app, st.conf, st.cat
	if master == 0 && app == 0 {
		conf = ConfUnknown
		for _, a := range [2]netip.Addr{f.Server.Addr(), f.Client.Addr()} {
			if !a.IsValid() {
				continue
			}
			if e.dns != nil {
				if name, ok := e.dns.get(a, e.now()); ok {
					if hr, ok := e.tab.lookupHost(name); ok {
						app, cat, conf = hr.app, hr.cat, ConfDNSCache
						if r.ServerName == "" {
							r.ServerName = name
						}
						break
					}
				}
			}
		}
		if app == 0 {
			for _, a := range [2]netip.Addr{f.Server.Addr(), f.Client.Addr()} {
				if !a.IsValid() {
					continue
				}
				if hr, ok := e.tab.lookupAddr(a); ok {
					app, cat, conf = hr.app, hr.cat, ConfIPList
					break
				}
			}
		}
		if f.Proto == 6 || f.Proto == 17 {
			if id, ok := e.tab.ports[portKey{f.Proto, f.Server.Port()}]; ok {
				master = id
			} else if id, ok := e.tab.ports[portKey{f.Proto, f.Client.Port()}]; ok {
				master = id
			}
		}
		if master != 0 && app == master {
			app = 0
		}
		if master == 0 {
			master, app = app, 0
		}
		if master != 0 && conf == ConfUnknown {
			conf = ConfPort
		}
	}
	r.Confidence = conf
	if master == 0 {
		r.Label, r.Master, r.Category = "Unknown", "Unknown", e.tab.cats[0]
		return r
	}
	r.Label = e.label(master, app)
	r.Master = e.tab.protos[master].name
	if app != 0 {
		r.App = e.tab.protos[app].name
	}
	r.Category = e.tab.cats[e.tab.categoryOf(master, app, cat)]
	r.AppID = AppIDEngine<<24 | uint32(master)<<12 | uint32(app)
	return r
}

// label joins master and app names, caching the string so Result does not
// allocate: the cache is a copy-on-write map, as the set of pairs is small.
func (e *Engine) label(master, app uint16) string {
	if app == 0 {
		return e.tab.protos[master].name
	}
	k := uint32(master)<<16 | uint32(app)
	if s, ok := (*e.labels.Load())[k]; ok {
		return s
	}
	e.lmu.Lock()
	defer e.lmu.Unlock()
	old := *e.labels.Load()
	if s, ok := old[k]; ok {
		return s
	}
	s := e.tab.protos[master].name + "." + e.tab.protos[app].name
	m := make(map[uint32]string, len(old)+1)
	for kk, v := range old {
		m[kk] = v
	}
	m[k] = s
	e.labels.Store(&m)
	return s
}

// hostApp names the application of a host name (SNI, Host, query name),
// recording the rule's category override.
func (e *Engine) hostApp(st *State, name string) uint16 {
	if hr, ok := e.tab.lookupHost(name); ok {
		st.cat = hr.cat
		return hr.app
	}
	return 0
}
