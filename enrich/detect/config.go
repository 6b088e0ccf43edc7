package detect

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"flowlens/enrich/policy"
)

// Config is the whole detection policy. It is plain data: FromPolicy
// fills it from a policy file, DefaultConfig gives the thresholds,
// Validate checks it and New refuses a config that does not pass. The
// rules and SaaS lists are the policy file's own types, evaluated with
// their own methods, so that they mean what enrich/policy documents.
type Config struct {
	// Rules are the policy (lateral movement) rules: every rule whose
	// Matches holds for a flow raises its own "policy" alert, with the
	// rule's Name as Rule and its Severity. The flow's category is
	// Flow.AppCategory, which the enrich chain has already overridden.
	Rules []policy.Rule
	// Learn is the learned service map.
	Learn Learn
	// DNS holds the tunnelling detection and the resolver allow-list.
	DNS DNS
	// SaaS holds the sanctioned-SaaS lists, applied to flows to external
	// servers: a client's list is SaaS.For(its pool), and an application
	// it finds Unsanctioned raises "saas" with the list's Severity. No
	// lists: the check is off.
	SaaS policy.SaaS
	// MinSeverity drops the alerts below it: they are not raised, and the
	// detections (rules, learning, DNS checks) whose every alert would be
	// below it do not run. Zero: every alert is raised.
	MinSeverity Severity

	// DedupWindow folds identical alerts (kind, rule, source, destination,
	// protocol): the first is emitted at once, the repeats within the
	// window are counted and emitted as one alert when it closes. 0
	// disables folding: every detection is emitted.
	DedupWindow time.Duration
	// MaxDedup bounds the alerts being folded; when full, the oldest
	// window is closed early (its count emitted) to make room.
	MaxDedup int
	// SweepInterval is how often Start's goroutine closes dedup windows
	// and forgets expired DNS windows.
	SweepInterval time.Duration
	// Shards is the number of independently locked parts of the state
	// (a power of two), so that collector workers rarely wait on each other.
	Shards int
}

// Learn configures the learned service map: during Period after Start,
// every (client pool, server address, IP protocol, server port) edge seen
// is recorded; after it, a flow on an edge never seen raises one
// "new_edge" alert and the edge is learned. Before Start every flow is
// learnt and none alerts.
type Learn struct {
	Enabled bool
	Period  time.Duration
	// Pools are the client pools whose edges are learned; empty means
	// every client, including those in no pool (pool "").
	Pools []string
	// MaxEdges bounds the edge set; edges that do not fit are counted
	// (dropped_total{reason="learn_edges_full"}) and alert on every
	// window of the deduplication.
	MaxEdges int
	// Severity of "new_edge" alerts; zero means SeverityLow.
	Severity Severity
}

// DNS configures the DNS detections.
type DNS struct {
	Tunnel DNSTunnel
	// AllowedResolvers are the resolvers clients may use. A DNS, DoH_DoT
	// or DoH flow to a server outside them raises "dns_resolver". Empty:
	// the check is off.
	AllowedResolvers []netip.Prefix
	// ResolverSeverity of "dns_resolver" alerts; zero means SeverityMedium.
	ResolverSeverity Severity
}

// DNSTunnel configures the tunnelling / exfiltration detection. Features
// are kept per (client address, registered domain) over a tumbling Window
// that starts at the key's first query. Once the window holds MinQueries
// queries, each feature over its threshold is one signal, and MinSignals
// signals raise "dns_tunnel". A threshold of 0 is off: its feature is
// never a signal. See DefaultConfig for why the defaults are what they
// are.
type DNSTunnel struct {
	Enabled bool
	Window  time.Duration
	// MaxKeys bounds the (client, domain) windows; when full the oldest
	// window is evicted and counted (dropped_total{reason="dns_keys_evicted"}).
	MaxKeys int

	// MinQueries is the gate: no verdict below this many queries in the
	// window. A flow counts as many queries as it has packets, so that a
	// tunnel keeping one socket (one flow, many packets) is counted too;
	// answer-side records (a router's reply flow, a biflow's reverse row)
	// are not counted, their request side is.
	MinQueries int

	// Thresholds: each one reached is a signal; 0 turns one off.
	UniqueSubdomains int     // distinct subdomains of the domain (estimated beyond a few hundred)
	QueryBytes       int     // bytes of query names
	MeanLabelLen     float64 // mean length of the subdomain labels
	MaxLabelLen      int     // longest subdomain label
	Entropy          float64 // mean Shannon entropy of the subdomain part, bits per character
	// TunnelQTypeRatio is the share of queries whose type is in
	// TunnelQTypes, over the flows whose type is known.
	TunnelQTypeRatio float64
	TunnelQTypes     []uint16
	// NXDomainRatio is the share of NXDOMAIN answers over the flows
	// whose response code is known.
	NXDomainRatio float64
	// PacketsPerFlow is the mean packets per DNS flow; ordinary lookups
	// are one query and one answer.
	PacketsPerFlow float64
	// MinSignals signals raise the alert. When fewer thresholds than
	// MinSignals are on, every one of them is needed; when none is, the
	// detection is off.
	MinSignals int

	// IgnoreDomains are registered domains never scored: services that
	// use DNS as their data channel on purpose (anti-virus lookups, DNS
	// block lists).
	IgnoreDomains []string
	// IgnoreClients are clients never scored: recursive resolvers and NAT
	// gateways, which speak for many hosts at once.
	IgnoreClients []netip.Prefix

	// Severity of "dns_tunnel" alerts; zero means SeverityHigh.
	Severity Severity
}

// defaultIgnoreDomains are registered domains whose services put data in
// query names on purpose, and would otherwise score like tunnels: DNS block
// lists queried by mail servers and anti-virus reputation lookups.
var defaultIgnoreDomains = []string{
	"spamhaus.org", "spamcop.net", "barracudacentral.org", "surbl.org", "uribl.com", "sorbs.net",
	"dnswl.org", "mailspike.net", "senderscore.com",
	"sophosxl.net", "mcafee.com", "trendmicro.com", "e5.sk", "webroot.com",
}

// DNS query types (RFC 1035, RFC 2535) the tunnelling tools use.
const (
	QTypeA       uint16 = 1
	QTypeNS      uint16 = 2
	QTypeCNAME   uint16 = 5
	QTypeNULL    uint16 = 10
	QTypeMX      uint16 = 15
	QTypeTXT     uint16 = 16
	QTypeAAAA    uint16 = 28
	QTypeSRV     uint16 = 33
	QTypeKEY     uint16 = 25
	QTypeHTTPS   uint16 = 65
	QTypePrivate uint16 = 65399 // iodine's "PRIVATE" type
)

// RCodeNXDomain is the DNS response code for a name that does not exist.
const RCodeNXDomain uint8 = 3

// DefaultConfig returns a policy with no rules, no SaaS lists and no
// learning, and DNS tunnelling detection on with these thresholds:
//
// The window is 10 minutes per (client, registered domain), and no verdict
// is given below 100 queries in it: tunnels poll continuously (iodine and
// dnscat2 about once a second even when idle), ordinary clients resolve a
// registered domain a few times and then cache. Eight signals, four needed:
//
//   - 100 unique subdomains: every tunnel query is unique (sequence numbers,
//     data); a browser touching one CDN domain sees tens (googlevideo,
//     akamaiedge), and one registered domain does not give a desktop 100
//     names in 10 minutes. Block-list lookups do, hence IgnoreDomains.
//   - 10,000 bytes of names: 100 queries of 100 bytes; CDN names are 20-40
//     bytes, tunnel names 100-250 (they fill the 253-byte name).
//   - mean label length 24 and longest label 48: hostname labels average
//     5-12 characters, hashed and UUID labels (ad frames, cloud load
//     balancers) stay within 32-36; iodine and dnscat2 fill 63-byte labels.
//   - entropy 3.5 bits per character over the subdomain: short CDN names
//     ("e6858.dscx") and telemetry names are below 3.3; hex runs of 30+
//     characters measure 3.6-3.9, base32 4.3-4.8.
//   - TXT, NULL, CNAME, MX, KEY or PRIVATE for half the queries (when the
//     type is known): clients ask for A, AAAA, HTTPS, PTR, SRV; iodine
//     uses NULL/PRIVATE/TXT, dnscat2 TXT/CNAME/MX, dns2tcp TXT/KEY.
//   - NXDOMAIN for half the answers (when known): DGA and random
//     subdomain floods; a tunnel usually answers, so it is a weak signal.
//   - 10 packets per flow on average: an ordinary lookup is one query and
//     one answer; a tunnel on one socket is hundreds of packets in one flow.
//
// Four signals keep shape and volume apart: a NAT gateway's akamaiedge
// traffic has volume (unique, bytes) but no shape; one long hashed name has
// shape but no volume. An idle dnscat2 session (18 hex characters per
// poll) shows only unique, bytes and query types and is missed at these
// defaults; MinSignals 3 catches it at the price of busy clients of
// hash-named services.
func DefaultConfig() Config {
	return Config{
		DedupWindow: 10 * time.Minute,
		MaxDedup:    100_000,
		// A second: dedup windows close at most this late, and a sweep
		// of 100k entries takes well under a millisecond.
		SweepInterval: time.Second,
		Shards:        16,
		Learn: Learn{
			Period:   24 * time.Hour,
			MaxEdges: 1_000_000,
			Severity: SeverityLow,
		},
		DNS: DNS{
			ResolverSeverity: SeverityMedium,
			Tunnel: DNSTunnel{
				Enabled:          true,
				Window:           10 * time.Minute,
				MaxKeys:          100_000,
				MinQueries:       100,
				UniqueSubdomains: 100,
				QueryBytes:       10_000,
				MeanLabelLen:     24,
				MaxLabelLen:      48,
				Entropy:          3.5,
				TunnelQTypeRatio: 0.5,
				TunnelQTypes:     []uint16{QTypeTXT, QTypeNULL, QTypeCNAME, QTypeMX, QTypeKEY, QTypePrivate},
				NXDomainRatio:    0.5,
				PacketsPerFlow:   10,
				MinSignals:       4,
				IgnoreDomains:    append([]string(nil), defaultIgnoreDomains...),
				Severity:         SeverityHigh,
			},
		},
	}
}

// ErrInvalidConfig is wrapped by every error of Validate.
var ErrInvalidConfig = errors.New("invalid detect config")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// Validate checks c and names the first field that is wrong and the values
// it accepts.
func (c *Config) Validate() error {
	names := map[string]bool{}
	for i, r := range c.Rules {
		if r.Name == "" {
			return invalid("rules[%d].name: empty", i)
		}
		if names[r.Name] {
			return invalid("rules[%d].name: %q used twice", i, r.Name)
		}
		names[r.Name] = true
		if r.Severity > policy.SeverityCritical {
			return invalid("rule %q: severity: %d is not one of info, low, medium, high, critical", r.Name, r.Severity)
		}
		if r.From.Any && r.To.Any && r.Apps.Empty() {
			return invalid("rule %q: matches every flow: give from, to, categories or protocols", r.Name)
		}
	}
	if c.Learn.Enabled {
		if c.Learn.Period <= 0 {
			return invalid("learn.period: must be > 0 when learning is enabled, got %s", c.Learn.Period)
		}
		if c.Learn.MaxEdges <= 0 {
			return invalid("learn.max_edges: must be > 0, got %d", c.Learn.MaxEdges)
		}
	}
	if err := checkSeverity(c.Learn.Severity); err != nil {
		return invalid("learn.severity: %v", err)
	}
	t := &c.DNS.Tunnel
	if t.Enabled {
		switch {
		case t.Window <= 0:
			return invalid("dns.tunnel.window: must be > 0, got %s", t.Window)
		case t.MaxKeys <= 0:
			return invalid("dns.tunnel.max_keys: must be > 0, got %d", t.MaxKeys)
		case t.MinSignals < 1 || t.MinSignals > numSignals:
			return invalid("dns.tunnel.min_signals: must be 1..%d, got %d", numSignals, t.MinSignals)
		case t.MinQueries < 0 || t.UniqueSubdomains < 0 || t.QueryBytes < 0 || t.MaxLabelLen < 0:
			return invalid("dns.tunnel: min_queries, unique_subdomains, query_bytes and max_label_len must be >= 0")
		case t.MeanLabelLen < 0 || t.Entropy < 0 || t.PacketsPerFlow < 0:
			return invalid("dns.tunnel: mean_label_len, entropy and packets_per_flow must be >= 0")
		case t.TunnelQTypeRatio < 0 || t.TunnelQTypeRatio > 1 || t.NXDomainRatio < 0 || t.NXDomainRatio > 1:
			return invalid("dns.tunnel: tunnel_qtype_ratio and nxdomain_ratio must be within 0..1")
		}
		for _, d := range t.IgnoreDomains {
			if d == "" || strings.ContainsAny(d, " \t") || d != strings.ToLower(d) {
				return invalid("dns.tunnel.ignore_domains: %q is not a lowercase domain name", d)
			}
		}
		for _, p := range t.IgnoreClients {
			if !p.IsValid() {
				return invalid("dns.tunnel.ignore_clients: invalid prefix")
			}
		}
	}
	if err := checkSeverity(t.Severity); err != nil {
		return invalid("dns.tunnel.severity: %v", err)
	}
	for _, p := range c.DNS.AllowedResolvers {
		if !p.IsValid() {
			return invalid("dns.allowed_resolvers: invalid prefix")
		}
	}
	if err := checkSeverity(c.DNS.ResolverSeverity); err != nil {
		return invalid("dns.resolver_severity: %v", err)
	}
	if l := c.SaaS.Default; l != nil && l.Severity > policy.SeverityCritical {
		return invalid("saas[%q].severity: %d is not one of info, low, medium, high, critical", policy.Default, l.Severity)
	}
	for pool, l := range c.SaaS.Pools {
		if l != nil && l.Severity > policy.SeverityCritical {
			return invalid("saas[%q].severity: %d is not one of info, low, medium, high, critical", pool, l.Severity)
		}
	}
	if err := checkSeverity(c.MinSeverity); err != nil {
		return invalid("min_severity: %v", err)
	}
	if c.DedupWindow < 0 {
		return invalid("dedup_window: must be >= 0, got %s", c.DedupWindow)
	}
	if c.DedupWindow > 0 && c.MaxDedup <= 0 {
		return invalid("max_dedup: must be > 0 when dedup_window is set, got %d", c.MaxDedup)
	}
	if c.SweepInterval <= 0 {
		return invalid("sweep_interval: must be > 0, got %s", c.SweepInterval)
	}
	if c.Shards < 1 || c.Shards > 1024 || c.Shards&(c.Shards-1) != 0 {
		return invalid("shards: must be a power of two within 1..1024, got %d", c.Shards)
	}
	return nil
}

func checkSeverity(s Severity) error {
	if s > SeverityCritical {
		return fmt.Errorf("%d is not one of info, low, medium, high, critical", s)
	}
	return nil
}
