// Package detect evaluates security detections on every enriched flow and
// hands the resulting alerts to a Sink: policy (lateral movement) rules, a
// learned service map, DNS tunnelling and rogue resolvers, unsanctioned
// SaaS. Identical alerts are folded over a window so that the alerts table
// gets one row per incident and window with a count.
//
// The package reads no files: the policy is a plain Config, which
// FromPolicy builds from a parsed policy file. Its rules and SaaS lists
// are enrich/policy's types, evaluated with their methods, so that they
// mean what that package documents.
// Evaluate is safe for concurrent use by the collector workers; its state
// is sharded by address with one mutex per shard, and a flow that matches
// nothing neither allocates nor takes a write lock.
package detect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"flowlens/enrich/policy"
	"flowlens/schema"

	"github.com/prometheus/client_golang/prometheus"
)

// Alert kinds.
const (
	KindPolicy      = "policy"
	KindNewEdge     = "new_edge"
	KindDNSTunnel   = "dns_tunnel"
	KindDNSResolver = "dns_resolver"
	KindSaaS        = "saas"
)

type kind uint8

const (
	kPolicy kind = iota
	kNewEdge
	kDNSTunnel
	kDNSResolver
	kSaaS
	numKinds
)

var kindNames = [numKinds]string{KindPolicy, KindNewEdge, KindDNSTunnel, KindDNSResolver, KindSaaS}

// Rule values of the alerts whose kind has no configured rule name.
const (
	RuleNewEdge          = "learned_service_map"
	RuleAllowedResolvers = "allowed_resolvers"
)

// Severity of an alert. The zero value means "not set" in a Config and
// takes the detection's default; alerts always carry a set severity. The
// policy file's severities (policy.Severity, counted from 0) are the
// same levels; FromPolicy maps them.
type Severity uint8

// Severities, lowest first.
const (
	SeverityInfo Severity = iota + 1
	SeverityLow
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

var severityNames = [...]string{"", "info", "low", "medium", "high", "critical"}

// String returns the severity's name ("" when not set).
func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return fmt.Sprintf("severity(%d)", uint8(s))
}

// ParseSeverity reads a severity name (info, low, medium, high, critical).
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if n != "" && n == s {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("%w: severity %q is not one of info, low, medium, high, critical", ErrInvalidConfig, s)
}

// MarshalText implements encoding.TextMarshaler.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

func (s Severity) or(def Severity) Severity {
	if s == 0 {
		return def
	}
	return s
}

// Alert is one detection, or the count of its repeats within a dedup
// window. The first alert of a window has Count 1; the one emitted when
// the window closes has Time set to the first repeat, Last to the last one
// and Count to the repeats, so that the sum of Count is the number of
// flows that raised it and the minimum of Time its first sighting.
// Addresses are oriented client (Src) to server (Dst) and kept as the flow
// had them (often IPv4-mapped).
type Alert struct {
	Time     time.Time // the detector's clock when the (first) flow was evaluated
	Last     time.Time // the last flow folded in; equal to Time when Count is 1
	Kind     string    // one of the Kind constants
	Rule     string    // the rule name; for saas "<list>: <label>" (list: the client's pool, or default), for dns_tunnel the registered domain
	Severity Severity
	SrcAddr  netip.Addr
	DstAddr  netip.Addr
	SrcPool  string
	DstPool  string
	Protocol string
	Evidence string // human-readable
	Count    uint64 // flows folded into this alert
}

// Sink receives alerts. Alert is called from the collector workers and from
// the sweeper concurrently, never with a lock of the detector held, and
// must not block for long; the Alert is the sink's to keep and is never
// modified afterwards.
type Sink interface{ Alert(*Alert) }

// SinkFunc adapts a function to Sink.
type SinkFunc func(*Alert)

// Alert implements Sink.
func (f SinkFunc) Alert(a *Alert) { f(a) }

// Multi returns a sink handing every alert to each of sinks in turn.
func Multi(sinks ...Sink) Sink { return multi(sinks) }

type multi []Sink

func (m multi) Alert(a *Alert) {
	for _, s := range m {
		s.Alert(a)
	}
}

// Deps are what a Detector uses besides its Config.
type Deps struct {
	Sink Sink         // required
	Log  *slog.Logger // nil: slog.Default()
	// Registerer receives the metrics; nil: they are created, not registered.
	Registerer prometheus.Registerer
	// Now is the clock; nil: time.Now. Tests inject their own.
	Now func() time.Time
}

// Detector evaluates flows. Create it with New.
type Detector struct {
	cfg  Config
	log  *slog.Logger
	sink Sink
	now  func() time.Time
	m    *metrics

	rules  *ruleIndex
	learn  *learner
	tunnel *tunnelTracker
	// resolvers is the allow-list of the dns_resolver check; empty: off.
	resolvers   []netip.Prefix
	resolverSev Severity
	saas        bool // Config.SaaS has a list
	saasPools   poolMap[*policy.SaaSList]
	dedup       *deduper

	// learnUntil is the end of the learning period in unix nanoseconds; 0
	// before Start, when every flow is learnt and none alerts.
	learnUntil atomic.Int64
	// coarse is the wall clock in unix nanoseconds, refreshed every
	// coarseTick while running (0 otherwise): reading the clock for every
	// flow cost a tenth of the detections' time, and windows of minutes
	// need no finer time. Not used with an injected clock (Deps.Now).
	coarse      atomic.Int64
	coarseClock bool

	mu      sync.Mutex // Start and Stop
	running bool
	stop    chan struct{}
	done    chan struct{}
}

// New validates cfg and creates the metrics; nothing runs before Start.
func New(cfg Config, deps Deps) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Sink == nil {
		return nil, errors.New("detect: a sink is required")
	}
	d := &Detector{cfg: cfg, log: deps.Log, sink: deps.Sink, now: deps.Now}
	if d.log == nil {
		d.log = slog.Default()
	}
	if d.now == nil {
		d.now, d.coarseClock = time.Now, true
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	d.m = m
	// The detector's own copy: the index points into it.
	d.cfg.Rules = slices.Clone(cfg.Rules)
	d.rules = newRuleIndex(d.cfg.Rules, cfg.MinSeverity)
	// A detection whose every alert would be dropped does not run.
	if cfg.Learn.Enabled && cfg.Learn.Severity.or(SeverityLow) >= cfg.MinSeverity {
		d.learn = newLearner(cfg.Learn, cfg.Shards)
	}
	if t := &cfg.DNS.Tunnel; t.Enabled && t.Severity.or(SeverityHigh) >= cfg.MinSeverity && t.signalsOn() > 0 {
		d.tunnel = newTunnelTracker(cfg.DNS.Tunnel, cfg.Shards)
	}
	d.resolverSev = cfg.DNS.ResolverSeverity.or(SeverityMedium)
	if d.resolverSev >= cfg.MinSeverity {
		d.resolvers = slices.Clone(cfg.DNS.AllowedResolvers)
		for i, p := range d.resolvers {
			d.resolvers[i] = unmapPrefix(p)
		}
	}
	d.saas = cfg.SaaS.Default != nil || len(cfg.SaaS.Pools) > 0
	d.saasPools = newPoolMap(cfg.SaaS.Pools)
	d.dedup = newDeduper(cfg.DedupWindow, cfg.MaxDedup, cfg.Shards, &m.dedupEvicted)
	return d, nil
}

// Start begins the learning period and the sweeper that closes dedup
// windows and forgets expired DNS windows.
func (d *Detector) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running {
		return errors.New("detect: already started")
	}
	if d.learn != nil {
		d.learnUntil.Store(d.now().Add(d.cfg.Learn.Period).UnixNano())
	}
	d.running = true
	d.stop, d.done = make(chan struct{}), make(chan struct{})
	go d.run(ctx)
	d.log.Info("detections started", "rules", len(d.cfg.Rules), "learn", d.cfg.Learn.Enabled,
		"learn_period", d.cfg.Learn.Period, "dns_tunnel", d.cfg.DNS.Tunnel.Enabled,
		"allowed_resolvers", len(d.resolvers), "saas_pools", len(d.cfg.SaaS.Pools), "saas_default", d.cfg.SaaS.Default != nil,
		"dedup_window", d.cfg.DedupWindow, "min_severity", d.cfg.MinSeverity.or(SeverityInfo))
	return nil
}

// coarseTick is the resolution of the clock flows are evaluated with.
const coarseTick = 50 * time.Millisecond

// flowTime is the time a flow is evaluated at: the coarse clock while
// running, else the configured one.
func (d *Detector) flowTime() time.Time {
	if d.coarseClock {
		if n := d.coarse.Load(); n != 0 {
			return time.Unix(0, n)
		}
	}
	return d.now()
}

func (d *Detector) run(ctx context.Context) {
	defer close(d.done)
	defer d.coarse.Store(0)
	t := time.NewTicker(d.cfg.SweepInterval)
	defer t.Stop()
	var tick <-chan time.Time
	if d.coarseClock {
		d.coarse.Store(d.now().UnixNano())
		c := time.NewTicker(coarseTick)
		defer c.Stop()
		tick = c.C
	}
	for {
		select {
		case now := <-tick:
			d.coarse.Store(now.UnixNano())
		case <-t.C:
			d.Sweep()
		case <-d.stop:
			return
		case <-ctx.Done():
			return
		}
	}
}

// Stop ends the sweeper and emits the counts of every open dedup window.
func (d *Detector) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running {
		close(d.stop)
		<-d.done
		d.running = false
	}
	d.Flush()
}

// Sweep closes the dedup windows that have ended, emitting their counts,
// and forgets the DNS windows that have ended. Start runs it every
// SweepInterval; tests with their own clock call it directly.
func (d *Detector) Sweep() {
	now := d.now()
	d.emit(d.dedup.sweep(now, nil))
	if d.tunnel != nil {
		d.tunnel.sweep(now)
	}
}

// Flush emits the counts folded so far in every open dedup window; the
// windows stay open.
func (d *Detector) Flush() { d.emit(d.dedup.flush(nil)) }

// Stats are the state sizes and what the caps turned away, for tests and
// the debug page; the same numbers are in the metrics.
type Stats struct {
	Edges, DNSKeys, DedupEntries int
	EdgesDropped                 uint64 // edges that did not fit in Learn.MaxEdges
	DNSKeysEvicted               uint64 // DNS windows evicted to stay within DNSTunnel.MaxKeys
	DedupEvicted                 uint64 // dedup windows closed early to stay within MaxDedup
	DNSInvalidNames              uint64 // query names that could not be scored (malformed, no registered domain)
}

// Stats returns the current state sizes and drop counts.
func (d *Detector) Stats() Stats {
	s := Stats{
		EdgesDropped:    d.m.edgesFull.Load(),
		DNSKeysEvicted:  d.m.dnsEvicted.Load(),
		DedupEvicted:    d.m.dedupEvicted.Load(),
		DNSInvalidNames: d.m.dnsInvalid.Load(),
	}
	if d.learn != nil {
		s.Edges = d.learn.size()
	}
	if d.tunnel != nil {
		s.DNSKeys = d.tunnel.size()
	}
	s.DedupEntries = d.dedup.size()
	return s
}

// view is a flow oriented client to server.
type view struct {
	flow                   *schema.Flow
	client, server         netip.Addr
	clientPool, serverPool string
	serverPort             uint16
	label, master          string // master: the label before its first dot
	category               string
	serverExternal         bool // in no pool, and a public address (policy's "external")
}

// Evaluate runs every detection on an enriched flow: its pools
// (SrcPool, DstPool) and, for DNS, its query type and response code come
// with it.
func (d *Detector) Evaluate(f *schema.Flow) {
	d.m.flows.Inc()
	v := view{flow: f, client: f.SrcAddr, server: f.DstAddr, clientPool: f.SrcPool, serverPool: f.DstPool, serverPort: f.DstPort}
	reply := isReply(f)
	if reply {
		v.client, v.server, v.clientPool, v.serverPool, v.serverPort = f.DstAddr, f.SrcAddr, f.DstPool, f.SrcPool, f.SrcPort
	}
	v.label, v.category = f.Protocol, f.AppCategory
	v.master = masterProtocol(v.label)
	v.serverExternal = v.serverPool == "" && !policy.IsPrivate(v.server)
	now := d.flowTime()

	d.rules.eval(d, &v, now)
	if d.learn != nil {
		d.learnEval(&v, now)
	}
	if isDNSLabel(v.master) || isEncryptedDNS(v.label) {
		if len(d.resolvers) > 0 {
			d.resolverEval(&v, now)
		}
		// The answer half of a lookup carries the query of its request
		// half (a router's two records, or the reverse row of an RFC 5103
		// biflow): counting both would count every query twice.
		if d.tunnel != nil && f.DNSQuery != "" && !reply {
			d.tunnelEval(&v, now)
		}
	}
	if d.saas && v.serverExternal {
		d.saasEval(&v, now)
	}
}

// isReply reports whether a router's one-way record is the answer half of
// a connection, whose server is the source: its source port is well known
// (< 1024) or registered (< 32768) while its destination port is above
// that range. Our sensor's biflows are already oriented client to server.
func isReply(f *schema.Flow) bool {
	if f.Source == schema.SourceSensor || f.SrcPort == 0 || f.DstPort == 0 || f.SrcPort >= f.DstPort {
		return false
	}
	return (f.SrcPort < 1024 && f.DstPort >= 1024) || (f.SrcPort < 32768 && f.DstPort >= 32768)
}

// masterProtocol returns the label before its first dot ("TLS" of
// "TLS.YouTube"), or the whole label.
func masterProtocol(l string) string {
	for i := 0; i < len(l); i++ {
		if l[i] == '.' {
			return l[:i]
		}
	}
	return l
}

func isDNSLabel(master string) bool {
	return master == "DNS" || master == "DoH_DoT" || master == "DoH"
}

// isEncryptedDNS reports DNS over TLS, HTTPS or QUIC as DPI names it: the
// application part of the label ("TLS.DoH_DoT", "QUIC.DoH_DoT"), whose
// master protocol is the transport.
func isEncryptedDNS(label string) bool {
	return strings.HasSuffix(label, ".DoH_DoT") || strings.HasSuffix(label, ".DoH")
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

func inPrefixes(l []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range l {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// raise passes one detection through the deduplication; evidence is only
// called when an alert is emitted. An alert below MinSeverity is not
// raised at all.
func (d *Detector) raise(a *Alert, k kind, now time.Time, evidence func() string) {
	if a.Severity < d.cfg.MinSeverity {
		return
	}
	a.Kind, a.Time, a.Last, a.Count = kindNames[k], now, now, 1
	out, folded := d.dedup.fold(a, k, now, evidence)
	if folded {
		d.m.folded.Inc()
	}
	d.emit(out[:])
}

func (d *Detector) emit(out []*Alert) {
	for _, a := range out {
		if a == nil {
			continue
		}
		d.m.alert(a)
		d.sink.Alert(a)
	}
}

func (d *Detector) newAlert(v *view, rule string, sev Severity) Alert {
	return Alert{Rule: rule, Severity: sev, SrcAddr: v.client, DstAddr: v.server,
		SrcPool: v.clientPool, DstPool: v.serverPool, Protocol: v.label}
}

func poolText(p string) string {
	if p == "" {
		return "no pool"
	}
	return "pool " + p
}

func hostPort(a netip.Addr, port uint16) string {
	return netip.AddrPortFrom(a.Unmap(), port).String()
}
