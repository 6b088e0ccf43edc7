package detect

import (
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/publicsuffix"
)

// maxNameLen is the longest DNS name (RFC 1035: 255 octets on the wire, 253
// characters in text form).
const maxNameLen = 253

// nameFeatures are what one query name tells about tunnelling. Pure: no
// I/O, no state.
type nameFeatures struct {
	domain     string // registered domain (eTLD+1), lowercase
	sub        string // the labels before it, without the last dot; "" for the domain itself
	length     int    // bytes of the name
	labels     int    // labels of sub
	labelChars int    // bytes of sub's labels, dots excluded
	maxLabel   int
	entropy    float64 // Shannon entropy of sub's bytes (dots excluded), bits per byte
}

// parseName extracts the features of a query name. It refuses (ok false)
// names that are empty, longer than 253 bytes, have an empty label, are an
// address, have no registered domain (single labels, public suffixes), or
// are under .arpa (reverse lookups) or .local (mDNS).
func parseName(name string) (nf nameFeatures, ok bool) {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > maxNameLen || name[0] == '.' || strings.Contains(name, "..") {
		return nf, false
	}
	name = asciiLower(name)
	if strings.HasSuffix(name, ".arpa") || strings.HasSuffix(name, ".local") || strings.IndexByte(name, '.') < 0 {
		return nf, false
	}
	suffix, _ := publicsuffix.PublicSuffix(name)
	if len(name) <= len(suffix) {
		return nf, false
	}
	i := len(name) - len(suffix) - 1
	if name[i] != '.' {
		return nf, false
	}
	nf.domain = name[1+strings.LastIndexByte(name[:i], '.'):]
	nf.length = len(name)
	if len(name) > len(nf.domain) {
		nf.sub = name[:len(name)-len(nf.domain)-1]
	}
	if nf.sub == "" {
		return nf, true
	}
	// Entropy as log2(n) - Σ c·log2(c) / n over the distinct bytes seen,
	// with c·log2(c) from a table: no logarithm per byte.
	var counts [256]uint8
	var seen [256]byte
	nseen, label := 0, 0
	for i := 0; i < len(nf.sub); i++ {
		c := nf.sub[i]
		if c == '.' {
			nf.labels++
			nf.maxLabel = max(nf.maxLabel, label)
			label = 0
			continue
		}
		if counts[c] == 0 {
			seen[nseen] = c
			nseen++
		}
		counts[c]++ // at most 252 of one byte: len(sub) <= 252
		label++
		nf.labelChars++
	}
	nf.labels++
	nf.maxLabel = max(nf.maxLabel, label)
	if nf.labelChars > 0 {
		sum := 0.0
		for _, c := range seen[:nseen] {
			sum += xlog2x[counts[c]]
		}
		nf.entropy = xlog2x[nf.labelChars]/float64(nf.labelChars) - sum/float64(nf.labelChars)
	}
	return nf, true
}

// xlog2x[c] is c·log2(c), for the counts of a name's bytes.
var xlog2x = func() (t [maxNameLen + 1]float64) {
	for c := 1; c < len(t); c++ {
		t[c] = float64(c) * math.Log2(float64(c))
	}
	return t
}()

// The signals of the tunnelling verdict.
const (
	sigUnique = iota
	sigBytes
	sigMeanLabel
	sigMaxLabel
	sigEntropy
	sigQType
	sigNXDomain
	sigPackets
	numSignals
)

var signalNames = [numSignals]string{"unique subdomains", "query bytes", "mean label length", "max label length",
	"entropy", "query types", "nxdomain", "packets per flow"}

// uniqBits is the size of the linear-counting bitmap estimating distinct
// subdomains: exact in practice up to a few hundred, within a few per cent
// up to about 5000, saturated around 15000 (then reported as a floor).
const uniqBits = 2048

type dnsKey struct {
	client netip.Addr
	domain string
}

// dnsWindow is one (client, domain) window.
type dnsWindow struct {
	key       dnsKey
	start     int64 // unix nanoseconds
	flows     uint64
	queries   uint64
	packets   uint64
	nameBytes uint64
	labels    uint64
	labelLen  uint64
	maxLabel  int
	entropy   float64 // sum over names with a subdomain
	entropyN  uint64
	qtKnown   uint64
	qtTunnel  uint64
	rcKnown   uint64
	nx        uint64
	alerted   bool
	uniq      [uniqBits / 64]uint64
}

func (w *dnsWindow) unique() (n int, saturated bool) {
	zeros := 0
	for _, b := range w.uniq {
		zeros += 64 - bits.OnesCount64(b)
	}
	if zeros == 0 {
		return int(uniqBits * math.Log(uniqBits)), true
	}
	return int(math.Round(-uniqBits * math.Log(float64(zeros)/uniqBits))), false
}

// verdict is a snapshot of a window's features and the signals they raise.
type verdict struct {
	domain           string
	window           time.Duration
	queries, flows   uint64
	unique           int
	saturated        bool
	nameBytes        uint64
	meanLabel        float64
	maxLabel         int
	entropy          float64
	qtRatio, nxRatio float64
	qtKnown, rcKnown bool
	pktsPerFlow      float64
	signals          [numSignals]bool
	nSignals         int
}

func (t *tunnelTracker) judge(w *dnsWindow) (v verdict) {
	c := &t.cfg
	v.domain, v.window, v.queries, v.flows = w.key.domain, c.Window, w.queries, w.flows
	v.unique, v.saturated = w.unique()
	v.nameBytes = w.nameBytes
	if w.labels > 0 {
		v.meanLabel = float64(w.labelLen) / float64(w.labels)
	}
	v.maxLabel = w.maxLabel
	if w.entropyN > 0 {
		v.entropy = w.entropy / float64(w.entropyN)
	}
	v.qtKnown, v.rcKnown = w.qtKnown > 0, w.rcKnown > 0
	if v.qtKnown {
		v.qtRatio = float64(w.qtTunnel) / float64(w.qtKnown)
	}
	if v.rcKnown {
		v.nxRatio = float64(w.nx) / float64(w.rcKnown)
	}
	v.pktsPerFlow = float64(w.packets) / float64(w.flows)
	// A threshold of 0 is off, not "always".
	v.signals = [numSignals]bool{
		sigUnique:    c.UniqueSubdomains > 0 && v.unique >= c.UniqueSubdomains,
		sigBytes:     c.QueryBytes > 0 && v.nameBytes >= uint64(c.QueryBytes),
		sigMeanLabel: c.MeanLabelLen > 0 && v.meanLabel >= c.MeanLabelLen,
		sigMaxLabel:  c.MaxLabelLen > 0 && v.maxLabel >= c.MaxLabelLen,
		sigEntropy:   c.Entropy > 0 && w.entropyN > 0 && v.entropy >= c.Entropy,
		sigQType:     c.TunnelQTypeRatio > 0 && v.qtKnown && v.qtRatio >= c.TunnelQTypeRatio,
		sigNXDomain:  c.NXDomainRatio > 0 && v.rcKnown && v.nxRatio >= c.NXDomainRatio,
		sigPackets:   c.PacketsPerFlow > 0 && v.pktsPerFlow >= c.PacketsPerFlow,
	}
	for _, s := range v.signals {
		if s {
			v.nSignals++
		}
	}
	return v
}

func (v *verdict) evidence() string {
	var b strings.Builder
	approx := ""
	if v.saturated {
		approx = "over "
	}
	fmt.Fprintf(&b, "%s%d unique subdomains of %s in %s, %d queries, %d bytes of names, mean label %.0f chars, max label %d, entropy %.1f bits",
		approx, v.unique, v.domain, v.window, v.queries, v.nameBytes, v.meanLabel, v.maxLabel, v.entropy)
	if v.qtKnown {
		fmt.Fprintf(&b, ", %.0f%% TXT/NULL-like types", 100*v.qtRatio)
	}
	if v.rcKnown {
		fmt.Fprintf(&b, ", %.0f%% NXDOMAIN", 100*v.nxRatio)
	}
	fmt.Fprintf(&b, ", %.1f packets per flow; signals:", v.pktsPerFlow)
	sep := " "
	for i, s := range v.signals {
		if s {
			b.WriteString(sep + signalNames[i])
			sep = ", "
		}
	}
	return b.String()
}

type dnsShard struct {
	mu   sync.Mutex
	m    map[dnsKey]*dnsWindow
	fifo fifo[*dnsWindow] // in window start order, which is expiry order
	_    [64]byte
}

func (s *dnsShard) live(w *dnsWindow) bool { return s.m[w.key] == w }

// signalsOn returns how many thresholds are on (not 0).
func (c *DNSTunnel) signalsOn() int {
	n := 0
	for _, on := range [numSignals]bool{c.UniqueSubdomains > 0, c.QueryBytes > 0, c.MeanLabelLen > 0, c.MaxLabelLen > 0,
		c.Entropy > 0, c.TunnelQTypeRatio > 0, c.NXDomainRatio > 0, c.PacketsPerFlow > 0} {
		if on {
			n++
		}
	}
	return n
}

// tunnelTracker keeps the DNS windows, sharded by client address.
type tunnelTracker struct {
	cfg        DNSTunnel
	sev        Severity
	minSignals int // cfg.MinSignals, at most the thresholds on
	seed       maphash.Seed
	qtypeSet   map[uint16]struct{}
	ignore     map[string]struct{}
	perShard   int
	mask       uint64
	shards     []dnsShard
}

func newTunnelTracker(cfg DNSTunnel, shards int) *tunnelTracker {
	t := &tunnelTracker{cfg: cfg, sev: cfg.Severity.or(SeverityHigh), seed: maphash.MakeSeed(),
		minSignals: min(cfg.MinSignals, cfg.signalsOn()), ignore: set(cfg.IgnoreDomains), mask: uint64(shards - 1), shards: make([]dnsShard, shards),
		perShard: (cfg.MaxKeys + shards - 1) / shards}
	t.qtypeSet = map[uint16]struct{}{}
	for _, q := range cfg.TunnelQTypes {
		t.qtypeSet[q] = struct{}{}
	}
	for i := range t.shards {
		t.shards[i].m = map[dnsKey]*dnsWindow{}
	}
	return t
}

func (t *tunnelTracker) tunnelQType(q uint16) bool {
	_, ok := t.qtypeSet[q]
	return ok
}

func (t *tunnelTracker) size() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// sweep forgets the windows ended at now.
func (t *tunnelTracker) sweep(now time.Time) {
	limit := now.Add(-t.cfg.Window).UnixNano()
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for s.fifo.len() > 0 && s.fifo.front().start <= limit {
			w := s.fifo.pop()
			if s.live(w) {
				delete(s.m, w.key)
			}
		}
		s.mu.Unlock()
	}
}

// tunnelEval folds the flow's query into its (client, domain) window and
// alerts once the window's verdict is reached, then on every later flow of
// the window (the deduplication folds them into the count).
func (d *Detector) tunnelEval(v *view, now time.Time) {
	t := d.tunnel
	f := v.flow
	nf, ok := parseName(f.DNSQuery)
	if !ok {
		d.m.dnsInvalid.Add(1)
		return
	}
	if _, ok := t.ignore[nf.domain]; ok {
		return
	}
	if len(t.cfg.IgnoreClients) > 0 && inPrefixes(t.cfg.IgnoreClients, v.client) {
		return
	}
	h := maphash.String(t.seed, nf.sub)
	key := dnsKey{client: v.client, domain: nf.domain}
	s := &t.shards[addrHash(v.client)&t.mask]
	ns := now.UnixNano()
	window := t.cfg.Window.Nanoseconds()

	s.mu.Lock()
	w := s.m[key]
	if w != nil && ns-w.start >= window {
		delete(s.m, key) // its fifo entry is skipped when it reaches the front
		w = nil
	}
	if w == nil {
		if len(s.m) >= t.perShard {
			for s.fifo.len() > 0 {
				old := s.fifo.pop()
				if s.live(old) {
					delete(s.m, old.key)
					d.m.dnsEvicted.Add(1)
					break
				}
			}
		}
		// A key of its own, with the domain copied: key borrows the flow's
		// string, and storing key itself would make every flow (and the
		// caller's Input) escape to the heap.
		owned := dnsKey{client: key.client, domain: strings.Clone(key.domain)}
		w = &dnsWindow{key: owned, start: ns}
		s.m[owned] = w
		s.fifo.push(w)
	}
	pk := max(f.Packets, 1)
	w.flows++
	w.packets += pk
	w.queries += pk // replies are not evaluated: each packet of a request-side record is a query
	w.nameBytes += uint64(nf.length)
	w.labels += uint64(nf.labels)
	w.labelLen += uint64(nf.labelChars)
	w.maxLabel = max(w.maxLabel, nf.maxLabel)
	if nf.labelChars > 0 {
		w.entropy += nf.entropy
		w.entropyN++
	}
	w.uniq[(h%uniqBits)/64] |= 1 << (h % 64)
	if q := v.flow.DNSQType; q != 0 {
		w.qtKnown++
		if t.tunnelQType(q) {
			w.qtTunnel++
		}
	}
	if v.flow.DNSAnswered {
		w.rcKnown++
		if v.flow.DNSRCode == RCodeNXDomain {
			w.nx++
		}
	}
	fire := w.alerted
	var vd verdict
	if w.alerted || w.queries >= uint64(t.cfg.MinQueries) {
		vd = t.judge(w)
		if vd.nSignals >= t.minSignals {
			w.alerted, fire = true, true
		}
	}
	s.mu.Unlock()
	if !fire {
		return
	}
	a := d.newAlert(v, vd.domain, t.sev)
	d.raise(&a, kDNSTunnel, now, vd.evidence)
}

// resolverEval alerts on DNS to a server outside the allowed resolvers.
// The allowed resolvers themselves may query any server: they recurse.
func (d *Detector) resolverEval(v *view, now time.Time) {
	if !v.server.IsValid() || v.server.Unmap().IsMulticast() || inPrefixes(d.resolvers, v.server) ||
		inPrefixes(d.resolvers, v.client) {
		return
	}
	a := d.newAlert(v, RuleAllowedResolvers, d.resolverSev)
	d.raise(&a, kDNSResolver, now, func() string {
		return v.label + " from " + v.client.Unmap().String() + " (" + poolText(v.clientPool) + ") to " +
			hostPort(v.server, v.serverPort) + ", not an allowed resolver"
	})
}

// asciiLower lowercases A-Z only (DNS compares names ASCII
// case-insensitively; other bytes are data) and allocates only when there
// is something to change.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
