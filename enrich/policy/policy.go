package policy

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"time"
)

// MaxFileSize bounds a policy file. A real one with 10,000 prefixes is
// well under 1 MiB; the bound keeps a hostile or mistaken file (a pcap
// given as --policy) from costing memory.
const MaxFileSize = 4 << 20

// Severity ranks an alert. The zero value is SeverityInfo.
type Severity uint8

// Severities, lowest first, so that they compare with <.
const (
	SeverityInfo Severity = iota
	SeverityLow
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

var severityNames = [...]string{"info", "low", "medium", "high", "critical"}

// String returns the severity's name in the file ("high").
func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return "unknown"
}

// ParseSeverity reads a severity name as written in the file.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if s == n {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q (accepted: info, low, medium, high, critical)", s)
}

// Special pool names: they select addresses rather than name a pool, so no
// pool may be called so.
const (
	Any      = "any"      // every address
	External = "external" // in no pool and not a private, loopback, link-local or multicast address
	Internal = "internal" // in a pool, or private, loopback, link-local or multicast
	// Default is the key of the saas entry for clients whose pool has none.
	Default = "default"
)

// Selector says which addresses a rule's from or to side covers. The zero
// value selects nothing.
type Selector struct {
	Any      bool
	External bool
	Internal bool
	Pools    []string // pool names
}

// Match reports whether an address in pool ("" when in none) is selected.
func (s Selector) Match(pool string, addr netip.Addr) bool {
	switch {
	case s.Any:
		return true
	case pool != "" && slices.Contains(s.Pools, pool):
		return true
	case s.External && pool == "" && !IsPrivate(addr):
		return true
	case s.Internal && (pool != "" || IsPrivate(addr)):
		return true
	}
	return false
}

// String returns the selector as it would be written in the file.
func (s Selector) String() string {
	var out []string
	if s.Any {
		out = append(out, Any)
	}
	if s.External {
		out = append(out, External)
	}
	if s.Internal {
		out = append(out, Internal)
	}
	out = append(out, s.Pools...)
	return fmt.Sprint(out)
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// IsPrivate reports whether addr is not routable on the Internet as far
// as "external" is concerned: RFC 1918 and fc00::/7, RFC 6598 shared
// space, loopback, link-local, multicast and unspecified.
func IsPrivate(addr netip.Addr) bool {
	addr = addr.Unmap()
	if addr.Is4() {
		// The same tests on the bytes: the detections ask for every flow.
		a := addr.As4()
		return a[0] == 10 || a[0] == 172 && a[1]&0xf0 == 16 || a[0] == 192 && a[1] == 168 || // private
			a[0] == 127 || a[0] == 169 && a[1] == 254 || a[0]&0xf0 == 224 || // loopback, link-local, multicast
			a == [4]byte{} || a[0] == 100 && a[1]&0xc0 == 64 // unspecified, CGNAT
	}
	return isPrivateSlow(addr)
}

// isPrivateSlow is IsPrivate through netip's own tests.
func isPrivateSlow(addr netip.Addr) bool {
	addr = addr.Unmap()
	return !addr.IsValid() || addr.IsPrivate() || addr.IsLoopback() || addr.IsLinkLocalUnicast() ||
		addr.IsMulticast() || addr.IsUnspecified() || cgnat.Contains(addr)
}

// AppMatch is a set of applications and categories, as the rules and
// saas sections list them. A name matches a label the way Category looks
// labels up: "TLS.Dropbox" matches that label only, "Dropbox" matches
// "Dropbox", "TLS.Dropbox" and "QUIC.Dropbox", "TLS" matches "TLS" and
// every "TLS.*" label.
type AppMatch struct {
	Names      []string // application labels, master protocols or application parts
	Categories []string // categories ("category:Cloud" entries, or a rule's categories)
	All        bool     // "*": everything
}

// Empty reports whether m lists nothing.
func (m AppMatch) Empty() bool { return !m.All && len(m.Names) == 0 && len(m.Categories) == 0 }

// Match reports whether a flow labelled label, in category (the effective
// one, after Policy.Category), is in m.
func (m AppMatch) Match(label, category string) bool {
	if m.All {
		return true
	}
	if category != "" && slices.Contains(m.Categories, category) {
		return true
	}
	if len(m.Names) == 0 || label == "" {
		return false
	}
	if slices.Contains(m.Names, label) {
		return true
	}
	master, app, ok := splitLabel(label)
	return ok && (slices.Contains(m.Names, master) || slices.Contains(m.Names, app))
}

// Rule is one entry of the rules section: flows from a client in From to
// a server in To, whose application is in Apps (any application when Apps
// is empty), are a policy violation.
type Rule struct {
	Name        string
	Description string
	Line        int // line of the rule in the file, for messages
	From, To    Selector
	Apps        AppMatch // protocols: → Names, categories: → Categories
	Severity    Severity
}

// Matches reports whether a flow violates r. Pools are the client's and
// server's (Policy.Pool or PoolFor), category the effective category.
func (r *Rule) Matches(clientPool string, client netip.Addr, serverPool string, server netip.Addr, label, category string) bool {
	return r.From.Match(clientPool, client) && r.To.Match(serverPool, server) &&
		(r.Apps.Empty() || r.Apps.Match(label, category))
}

// Learn configures the service map: edges (client pool, server, protocol)
// seen during Period after start are learned, and a new edge afterwards
// alerts.
type Learn struct {
	Enabled  bool
	Period   time.Duration // default 24h
	Pools    []string      // client pools watched; empty: every client
	MaxEdges int           // bound on learned edges, default 100000
	Severity Severity      // of a new-edge alert, default medium
}

// DNS configures the rogue resolver and DNS tunnelling checks. A zero
// threshold disables its check.
type DNS struct {
	// AllowedResolvers are the sanctioned resolvers: DNS, DoH and DoT to
	// any other server alerts. Empty: the check is off.
	AllowedResolvers []netip.Prefix
	Window           time.Duration // over which the counters below accumulate, default 10m
	// Per client and registered domain, within Window:
	UniqueSubdomains int     // distinct names below the domain, default 100
	QueryBytes       int     // bytes of query names, default 10000
	LabelLength      int     // longest label, default 48
	Entropy          float64 // Shannon entropy of the labels in bits per character, default 3.5
	TXTNullShare     float64 // share of TXT and NULL queries, default 0.5
	NXDomainRatio    float64 // share of NXDOMAIN answers, default 0.5
	MinQueries       int     // queries before the shares and the entropy count, default 100
	Severity         Severity
}

// ResolverAllowed reports whether addr is a sanctioned resolver. It is
// true for every address when no resolver is listed.
func (d *DNS) ResolverAllowed(addr netip.Addr) bool {
	if len(d.AllowedResolvers) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, p := range d.AllowedResolvers {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// SaaSList is a pool's sanctioned-SaaS policy: an application in Deny and
// not in Allow is unsanctioned. Allow carves exceptions out of Deny;
// "deny: ['*']" with an allow list makes an allow list.
type SaaSList struct {
	Allow, Deny AppMatch
	Severity    Severity // of an unsanctioned-SaaS alert, default medium
	Line        int      // of the entry in the file, for messages
}

// Unsanctioned reports whether the application is unsanctioned.
func (l *SaaSList) Unsanctioned(label, category string) bool {
	return l.Deny.Match(label, category) && !l.Allow.Match(label, category)
}

// SaaS holds the saas section. A client uses its pool's list when there
// is one, else Default; the lists are not merged.
type SaaS struct {
	Default *SaaSList // nil: none
	Pools   map[string]*SaaSList
}

// For returns the list for a client in pool ("" when in none), nil when
// there is none.
func (s *SaaS) For(pool string) *SaaSList {
	if l, ok := s.Pools[pool]; ok && pool != "" {
		return l
	}
	return s.Default
}

// Syslog is where alerts go as syslog messages.
type Syslog struct {
	Network string // "udp", "tcp" or "unix"
	Address string // host:port, or a socket path
}

// Alerts configures alert delivery.
type Alerts struct {
	DedupWindow time.Duration // same alert (rule, client, server) at most once per window, default 10m; 0: no dedup
	MinSeverity Severity      // alerts below it are dropped, default info
	Webhook     string        // http(s) URL, "" for none
	Syslog      *Syslog       // nil for none
}

// Policy is a parsed, valid policy file. It is shared by every goroutine
// that holds it (Watcher.Current) and must be treated as read-only: the
// lookups are safe for concurrent use, and the exported section data
// (Rules, Learn, DNS, SaaS, Alerts) must not be modified. Its zero value
// is not usable; an empty policy comes from Parse of an empty file.
type Policy struct {
	name   string
	digest [32]byte

	poolNames  []string // pool index → name, sorted
	global     lpm      // prefixes without vlans
	vlans      map[uint16]*lpm
	macs       map[uint64]int32
	prefixes   int // every prefix, global and per VLAN
	categories map[string]string

	Rules  []Rule
	Learn  Learn
	DNS    DNS
	SaaS   SaaS
	Alerts Alerts
}

// Name returns the file name the policy was parsed from.
func (p *Policy) Name() string { return p.name }

// Digest returns the SHA-256 of the file, to tell versions apart.
func (p *Policy) Digest() [32]byte { return p.digest }

// Pools returns the pool names, sorted.
func (p *Policy) Pools() []string { return slices.Clone(p.poolNames) }

// HasPool reports whether a pool of that name is defined.
func (p *Policy) HasPool(name string) bool {
	_, ok := slices.BinarySearch(p.poolNames, name)
	return ok
}

// NumPrefixes returns the number of prefixes in all pools.
func (p *Policy) NumPrefixes() int { return p.prefixes }

// Overrides returns a copy of the category overrides.
func (p *Policy) Overrides() map[string]string {
	m := make(map[string]string, len(p.categories))
	for k, v := range p.categories {
		m[k] = v
	}
	return m
}

func (p *Policy) poolName(i int32) string {
	if i < 0 {
		return ""
	}
	return p.poolNames[i]
}

// Pool returns the pool of addr from the prefixes that are not limited to
// VLANs: the pool of the longest matching prefix, "" when none matches.
// An IPv4-mapped IPv6 address is looked up as IPv4. It does not allocate.
func (p *Policy) Pool(addr netip.Addr) string {
	return p.poolName(p.global.lookup(addr))
}

// PoolFor returns the pool of a host seen with a VLAN and a MAC address
// (48 bits in the low bits, as in schema.Flow; 0 and vlan 0 when
// unknown). A listed MAC wins; then the prefixes limited to that VLAN
// (longest first, a pool that lists the VLAN without cidrs being the
// shortest); then Pool(addr). It does not allocate.
func (p *Policy) PoolFor(addr netip.Addr, vlan uint16, mac uint64) string {
	if mac != 0 && len(p.macs) != 0 {
		if i, ok := p.macs[mac]; ok {
			return p.poolNames[i]
		}
	}
	if vlan != 0 && len(p.vlans) != 0 {
		if t := p.vlans[vlan]; t != nil {
			if i := t.lookup(addr); i >= 0 {
				return p.poolNames[i]
			}
		}
	}
	return p.poolName(p.global.lookup(addr))
}

// Category returns the category override for an application label: the
// exact label first ("TLS.Dropbox"), then its application part
// ("Dropbox"), then its master protocol ("TLS"). ok is false when no override
// applies and the label's own category stands. It does not allocate.
func (p *Policy) Category(label string) (category string, ok bool) {
	if len(p.categories) == 0 || label == "" {
		return "", false
	}
	if c, ok := p.categories[label]; ok {
		return c, true
	}
	master, app, dot := splitLabel(label)
	if !dot {
		return "", false
	}
	// The application is more specific than its transport: an override of
	// Dropbox holds for TLS.Dropbox and QUIC.Dropbox, whatever TLS says.
	if c, ok := p.categories[app]; ok {
		return c, true
	}
	c, ok := p.categories[master]
	return c, ok
}

// splitLabel splits "TLS.YouTube" at its first dot.
func splitLabel(label string) (master, app string, ok bool) {
	for i := 0; i < len(label); i++ {
		if label[i] == '.' {
			return label[:i], label[i+1:], i > 0 && i < len(label)-1
		}
	}
	return label, "", false
}

// Load reads and parses a policy file. A file that does not exist is an
// empty policy, so that a default path needs no file.
func Load(path string) (*Policy, error) {
	data, err := readFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Parse(path, nil)
	}
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy: read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: %w", path, ErrTooLarge)
	}
	return data, nil
}

// ErrTooLarge is returned for a file over MaxFileSize.
var ErrTooLarge = fmt.Errorf("policy file larger than %d bytes", MaxFileSize)
