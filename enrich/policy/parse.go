package policy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in a policy file, at the line and column of the
// offending value. Parse returns them joined (errors.Join); errors.As
// finds the first.
type Error struct {
	File         string
	Line, Column int // 1-based; 0 when the YAML parser did not say
	Msg          string
}

func (e *Error) Error() string {
	switch {
	case e.Line == 0:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	case e.Column == 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
}

const (
	maxErrors = 50
	// maxNodes bounds the nodes of a file, aliases expanded. yaml.v3
	// guards against alias bombs only when decoding into Go values, not
	// when it hands out a yaml.Node tree, whose aliases we follow. A
	// MaxFileSize file of prefixes has about 300,000 nodes.
	maxNodes = 1 << 20
	// Defaults of the sections. The DNS thresholds are enrich/detect's
	// tuned ones (its DefaultConfig); detect's tests keep them equal.
	defaultLearnPeriod   = 24 * time.Hour
	defaultMaxEdges      = 100000
	defaultDNSWindow     = 10 * time.Minute
	defaultUniqueSubs    = 100
	defaultQueryBytes    = 10000
	defaultLabelLength   = 48
	defaultEntropy       = 3.5
	defaultTXTNullShare  = 0.5
	defaultNXDomainRatio = 0.5
	defaultMinQueries    = 100
	defaultDedupWindow   = 10 * time.Minute
)

var (
	poolNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	yamlErrorRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// parser walks the yaml.Node tree and collects every error.
type parser struct {
	file  string
	errs  []error
	abort bool // too many errors or nodes: stop walking
}

func (d *parser) errorf(n *yaml.Node, format string, args ...any) {
	if d.abort {
		return
	}
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	if len(d.errs) == maxErrors {
		d.errs = append(d.errs, &Error{File: d.file, Line: line, Column: col, Msg: "too many errors, giving up"})
		d.abort = true
		return
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

// resolve follows aliases; checkSize has made sure they end.
func (d *parser) resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if d.abort {
		return nil
	}
	return n
}

// checkSize rejects a document whose tree, aliases expanded, has more
// than maxNodes nodes, or an alias inside the node it names (yaml.v3
// registers an anchor before its children). Memoised, so linear in the
// size of the file.
func (d *parser) checkSize(root *yaml.Node) bool {
	const inProgress, over = -1, maxNodes + 1
	memo := map[*yaml.Node]int{}
	var size func(n *yaml.Node) int
	size = func(n *yaml.Node) int {
		switch {
		case n == nil:
			return 0
		case n.Kind == yaml.AliasNode && n.Alias == nil:
			return 1
		case n.Kind == yaml.AliasNode:
			if memo[n.Alias] == inProgress {
				d.errorf(n, "alias *%s is inside the node it names", n.Value)
				return over
			}
			return size(n.Alias)
		}
		if s, ok := memo[n]; ok {
			return s
		}
		memo[n] = inProgress
		total := 1
		for _, c := range n.Content {
			if total += size(c); total > maxNodes {
				total = over
				break
			}
		}
		memo[n] = total
		return total
	}
	if size(root) > maxNodes && len(d.errs) == 0 {
		d.errorf(root, "document too large once aliases are expanded (over %d nodes)", maxNodes)
	}
	return len(d.errs) == 0
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a scalar"
	}
	return "a YAML node"
}

func isMergeKey(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Value == "<<" && (n.Tag == "" || n.Tag == "!" || n.ShortTag() == "!!merge")
}

// mapping calls f for every key of a mapping, in file order, merge keys
// ("<<: *base") expanded: a key given explicitly wins over a merged one.
// A duplicate explicit key is an error. A null node is an empty mapping.
func (d *parser) mapping(n *yaml.Node, what string, f func(key string, k, v *yaml.Node)) {
	if n = d.resolve(n); n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s must be a mapping, not %s", what, kindName(n))
		return
	}
	seen := map[string]*yaml.Node{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content) && !d.abort; i += 2 {
		k, v := d.resolve(n.Content[i]), n.Content[i+1]
		if k == nil {
			return
		}
		if isMergeKey(k) {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "%s: keys must be scalars, not %s", what, kindName(k))
			continue
		}
		if prev, ok := seen[k.Value]; ok {
			d.errorf(k, "%s: duplicate key %q (first at line %d)", what, k.Value, prev.Line)
			continue
		}
		seen[k.Value] = k
		f(k.Value, k, v)
	}
	// Merged mappings, in order: the first to give a key wins (YAML merge).
	for _, m := range merges {
		m = d.resolve(m)
		if m == nil {
			return
		}
		var list []*yaml.Node
		switch m.Kind {
		case yaml.MappingNode:
			list = []*yaml.Node{m}
		case yaml.SequenceNode:
			list = m.Content
		default:
			d.errorf(m, "%s: << must merge a mapping or a list of mappings", what)
			continue
		}
		for _, mm := range list {
			mm = d.resolve(mm)
			if mm == nil {
				return
			}
			if mm.Kind != yaml.MappingNode {
				d.errorf(mm, "%s: << must merge a mapping or a list of mappings", what)
				continue
			}
			for i := 0; i+1 < len(mm.Content) && !d.abort; i += 2 {
				k := d.resolve(mm.Content[i])
				if k == nil {
					return
				}
				if k.Kind != yaml.ScalarNode || isMergeKey(k) {
					d.errorf(k, "%s: nested merge keys are not supported", what)
					continue
				}
				if _, ok := seen[k.Value]; ok {
					continue
				}
				seen[k.Value] = k
				f(k.Value, k, mm.Content[i+1])
			}
		}
	}
}

// list calls f for every item of a list; a single scalar is a list of
// one, null an empty list.
func (d *parser) list(n *yaml.Node, what string, f func(item *yaml.Node)) {
	if n = d.resolve(n); n == nil || isNull(n) {
		return
	}
	switch n.Kind {
	case yaml.ScalarNode:
		f(n)
	case yaml.SequenceNode:
		for _, it := range n.Content {
			if d.abort {
				return
			}
			if it = d.resolve(it); it == nil {
				return
			}
			f(it)
		}
	default:
		d.errorf(n, "%s must be a list, not %s", what, kindName(n))
	}
}

// scalar returns the node's value, or reports that it must be a scalar.
func (d *parser) scalar(n *yaml.Node, what string) (*yaml.Node, string, bool) {
	if n = d.resolve(n); n == nil {
		return nil, "", false
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, "%s must be a scalar, not %s", what, kindName(n))
		return n, "", false
	}
	return n, n.Value, true
}

func (d *parser) strings(n *yaml.Node, what string) []string {
	var out []string
	d.list(n, what, func(it *yaml.Node) {
		if it.Kind != yaml.ScalarNode || isNull(it) || strings.TrimSpace(it.Value) == "" {
			d.errorf(it, "%s: items must be non-empty strings", what)
			return
		}
		out = append(out, it.Value)
	})
	return out
}

func (d *parser) str(n *yaml.Node, what string) string {
	n, v, ok := d.scalar(n, what)
	if ok && isNull(n) {
		return ""
	}
	return v
}

func (d *parser) boolean(n *yaml.Node, what string) bool {
	n, v, ok := d.scalar(n, what)
	if !ok || isNull(n) {
		return false
	}
	switch v {
	case "true", "True", "TRUE":
		return true
	case "false", "False", "FALSE":
		return false
	}
	d.errorf(n, "%s: %q is not a boolean (true or false)", what, v)
	return false
}

// count reads a non-negative integer; absent (null) keeps def.
func (d *parser) count(n *yaml.Node, what string, def int) int {
	n, v, ok := d.scalar(n, what)
	if !ok || isNull(n) {
		return def
	}
	i, err := strconv.ParseInt(v, 0, 64)
	switch {
	case err != nil:
		d.errorf(n, "%s: %q is not an integer", what, v)
		return def
	case i < 0:
		d.errorf(n, "%s must not be negative, got %d", what, i)
		return def
	case i > math.MaxInt32:
		d.errorf(n, "%s: %d is too large", what, i)
		return def
	}
	return int(i)
}

// number reads a float within [0, max]; absent (null) keeps def.
func (d *parser) number(n *yaml.Node, what string, def, max float64) float64 {
	n, v, ok := d.scalar(n, what)
	if !ok || isNull(n) {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	switch {
	case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
		d.errorf(n, "%s: %q is not a number", what, v)
		return def
	case f < 0:
		d.errorf(n, "%s must not be negative, got %v", what, f)
		return def
	case f > max:
		d.errorf(n, "%s must be at most %v, got %v", what, max, f)
		return def
	}
	return f
}

// duration reads a Go duration ("10m", "1h30m") or a number of days
// ("7d"); absent (null) keeps def.
func (d *parser) duration(n *yaml.Node, what string, def time.Duration) time.Duration {
	n, v, ok := d.scalar(n, what)
	if !ok || isNull(n) {
		return def
	}
	if days, ok := strings.CutSuffix(v, "d"); ok {
		if i, err := strconv.Atoi(days); err == nil && i >= 0 && i <= 365*100 {
			return time.Duration(i) * 24 * time.Hour
		}
	}
	t, err := time.ParseDuration(v)
	switch {
	case err != nil:
		d.errorf(n, "%s: %q is not a duration (like 90s, 10m, 24h or 7d)", what, v)
		return def
	case t < 0:
		d.errorf(n, "%s must not be negative, got %s", what, v)
		return def
	}
	return t
}

func (d *parser) severity(n *yaml.Node, what string, def Severity) Severity {
	n, v, ok := d.scalar(n, what)
	if !ok || isNull(n) {
		return def
	}
	s, err := ParseSeverity(v)
	if err != nil {
		d.errorf(n, "%s: %v", what, err)
		return def
	}
	return s
}

// prefix reads a CIDR or a bare address (a /32 or /128). IPv4-mapped
// IPv6 prefixes are turned into IPv4 ones, as lookups unmap addresses.
func (d *parser) prefix(n *yaml.Node, what string) (netip.Prefix, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.errorf(n, "%s: expected a CIDR or an address, not %s", what, kindName(n))
		return netip.Prefix{}, false
	}
	v := strings.TrimSpace(n.Value)
	var p netip.Prefix
	if strings.Contains(v, "/") {
		var err error
		if p, err = netip.ParsePrefix(v); err != nil {
			d.errorf(n, "%s: %q is not a CIDR", what, v)
			return netip.Prefix{}, false
		}
	} else {
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			d.errorf(n, "%s: %q is not a CIDR or an address", what, v)
			return netip.Prefix{}, false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if m := p.Masked(); m != p {
		d.errorf(n, "%s: %q has host bits set (the network is %s)", what, v, m)
		return netip.Prefix{}, false
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p, true
}

// poolRef checks a reference to a pool by name.
func (d *parser) poolRef(n *yaml.Node, what string, pools map[string]int32) bool {
	if _, ok := pools[n.Value]; ok {
		return true
	}
	switch n.Value {
	case Any, External, Internal:
		d.errorf(n, "%s: %q is not allowed here, name a pool", what, n.Value)
	default:
		d.errorf(n, "%s: unknown pool %q", what, n.Value)
	}
	return false
}

// Parse parses a policy file; name is used in the error messages. Empty
// data (or only comments) is an empty policy, which matches nothing. Any
// error rejects the whole file; all of them are returned, joined, each
// one an *Error naming the line.
func Parse(name string, data []byte) (*Policy, error) {
	p := &Policy{name: name, digest: sha256.Sum256(data)}
	p.Learn = Learn{Period: defaultLearnPeriod, MaxEdges: defaultMaxEdges, Severity: SeverityMedium}
	p.DNS = DNS{Window: defaultDNSWindow, UniqueSubdomains: defaultUniqueSubs, QueryBytes: defaultQueryBytes,
		LabelLength: defaultLabelLength, Entropy: defaultEntropy, TXTNullShare: defaultTXTNullShare,
		NXDomainRatio: defaultNXDomainRatio, MinQueries: defaultMinQueries, Severity: SeverityMedium}
	p.Alerts = Alerts{DedupWindow: defaultDedupWindow}
	if len(data) > MaxFileSize {
		return nil, &Error{File: name, Msg: ErrTooLarge.Error()}
	}
	d := &parser{file: name}
	if !d.checkText(data) {
		return nil, errors.Join(d.errs...)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.build(d, nil, nil)
			return p, nil
		}
		return nil, d.yamlError(data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.errorf(&extra, "only one YAML document is allowed")
		return nil, errors.Join(d.errs...)
	} else if !errors.Is(err, io.EOF) {
		return nil, d.yamlError(data, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			p.build(d, nil, nil)
			return p, nil
		}
		root = root.Content[0]
	}
	if d.checkSize(root) {
		d.top(p, root)
	}
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	return p, nil
}

// yamlParserErrors are the messages of yaml.v3's parser stage, whose
// line it reports 0-based (its scanner errors are 1-based).
var yamlParserErrors = map[string]bool{
	"did not find expected ',' or ']'": true, "did not find expected ',' or '}'": true,
	"did not find expected '-' indicator": true, "did not find expected <document start>": true,
	"did not find expected <stream-start>": true, "did not find expected key": true,
	"did not find expected node content": true, "found duplicate %TAG directive": true,
	"found duplicate %YAML directive": true, "found incompatible YAML document": true,
	"found undefined tag handle": true,
}

// yamlError turns a yaml.v3 error into an *Error with the right line.
// yaml.v3 leaves the line out when it is the first one.
func (d *parser) yamlError(data []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if m := yamlErrorRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if yamlParserErrors[msg] {
			line++
		}
	} else if name, ok := strings.CutPrefix(msg, "unknown anchor '"); ok {
		name = strings.TrimSuffix(name, "' referenced")
		if i := bytes.Index(data, []byte("*"+name)); i >= 0 {
			line = 1 + bytes.Count(data[:i], []byte("\n"))
		}
	}
	return &Error{File: d.file, Line: line, Msg: msg}
}

// checkText rejects what yaml.v3's reader would, with the position:
// invalid UTF-8 and the control characters YAML does not allow.
func (d *parser) checkText(data []byte) bool {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			d.errorf(&yaml.Node{Line: line, Column: col}, "invalid UTF-8 (the file must be UTF-8)")
			return false
		case r == '\n':
			line, col = line+1, 0
		case r == '\t' || r == '\r' || r == 0x85 || (r >= 0x20 && r <= 0x7e) || (r >= 0xa0 && r <= 0xd7ff) ||
			(r >= 0xe000 && r <= 0xfffd) || r >= 0x10000:
		default:
			d.errorf(&yaml.Node{Line: line, Column: col}, "control character %U is not allowed", r)
			return false
		}
		i += n
		col++
	}
	return true
}

// poolDef is a pool as written, before the tables are built.
type poolDef struct {
	name  string
	key   *yaml.Node
	cidrs []cidrAt
	vlans []uint16
	macs  []macAt
}

type cidrAt struct {
	p netip.Prefix
	n *yaml.Node
}

type macAt struct {
	mac uint64
	n   *yaml.Node
}

// top walks the document's top-level mapping. Pools come first, whatever
// their place in the file, since the other sections refer to them.
func (d *parser) top(p *Policy, root *yaml.Node) {
	sections := map[string]*yaml.Node{}
	d.mapping(root, "policy file", func(key string, k, v *yaml.Node) {
		switch key {
		case "version":
			if n, val, ok := d.scalar(v, "version"); ok && val != "1" {
				d.errorf(n, "version: unsupported version %q (this flowlens reads version 1)", val)
			}
		case "pools", "categories", "rules", "learn", "dns", "saas", "alerts":
			sections[key] = v
		default:
			d.errorf(k, "unknown key %q (accepted: version, pools, categories, rules, learn, dns, saas, alerts)", key)
		}
	})
	defs := d.pools(sections["pools"])
	index := map[string]int32{}
	names := make([]string, 0, len(defs))
	for _, def := range defs {
		names = append(names, def.name)
	}
	slices.Sort(names)
	for i, n := range names {
		index[n] = int32(i)
	}
	p.poolNames = names
	d.categories(p, sections["categories"])
	d.rules(p, sections["rules"], index)
	d.learn(p, sections["learn"], index)
	d.dns(p, sections["dns"])
	d.saas(p, sections["saas"], index)
	d.alerts(p, sections["alerts"])
	if len(d.errs) == 0 {
		p.build(d, defs, index)
	}
}

func (d *parser) pools(n *yaml.Node) []*poolDef {
	var defs []*poolDef
	d.mapping(n, "pools", func(name string, k, v *yaml.Node) {
		switch {
		case name == Any || name == External || name == Internal || name == Default:
			d.errorf(k, "pools: %q is a reserved name", name)
			return
		case !poolNameRE.MatchString(name):
			d.errorf(k, "pools: %q is not a valid pool name (letters, digits, _ . -, up to 64)", name)
			return
		}
		def := &poolDef{name: name, key: k}
		defs = append(defs, def)
		what := "pool " + name
		v = d.resolve(v)
		if v == nil {
			return
		}
		if v.Kind != yaml.MappingNode {
			d.cidrs(def, v, what)
			return
		}
		d.mapping(v, what, func(key string, k, v *yaml.Node) {
			switch key {
			case "cidrs":
				d.cidrs(def, v, what+" cidrs")
			case "vlans":
				d.list(v, what+" vlans", func(it *yaml.Node) {
					id, err := strconv.ParseUint(it.Value, 10, 16)
					if it.Kind != yaml.ScalarNode || err != nil || id < 1 || id > 4094 {
						d.errorf(it, "%s vlans: %q is not a VLAN id (1-4094)", what, it.Value)
						return
					}
					def.vlans = append(def.vlans, uint16(id))
				})
			case "macs":
				d.list(v, what+" macs", func(it *yaml.Node) {
					hw, err := net.ParseMAC(it.Value)
					if it.Kind != yaml.ScalarNode || err != nil || len(hw) != 6 {
						d.errorf(it, "%s macs: %q is not a MAC address (aa:bb:cc:dd:ee:ff)", what, it.Value)
						return
					}
					var m uint64
					for _, b := range hw {
						m = m<<8 | uint64(b)
					}
					if m == 0 {
						d.errorf(it, "%s macs: the zero MAC address means unknown and cannot be a member", what)
						return
					}
					def.macs = append(def.macs, macAt{m, it})
				})
			default:
				d.errorf(k, "%s: unknown key %q (accepted: cidrs, vlans, macs)", what, key)
			}
		})
	})
	return defs
}

func (d *parser) cidrs(def *poolDef, n *yaml.Node, what string) {
	d.list(n, what, func(it *yaml.Node) {
		if pfx, ok := d.prefix(it, what); ok {
			def.cidrs = append(def.cidrs, cidrAt{pfx, it})
		}
	})
}

// build checks the pools for overlaps between pools and builds the
// lookup tables. defs is nil for an empty policy.
func (p *Policy) build(d *parser, defs []*poolDef, index map[string]int32) {
	type scoped struct {
		vlan uint16
		p    netip.Prefix
	}
	owner := map[scoped]*yaml.Node{}
	macOwner := map[uint64]*yaml.Node{}
	var global []lpmEntry
	perVLAN := map[uint16][]lpmEntry{}
	p.macs = map[uint64]int32{}
	for _, def := range defs {
		i := index[def.name]
		add := func(vlan uint16, pfx netip.Prefix, at *yaml.Node) {
			key := scoped{vlan, pfx}
			if prev, ok := owner[key]; ok {
				where := ""
				if vlan != 0 {
					where = fmt.Sprintf(" on vlan %d", vlan)
				}
				d.errorf(at, "pool %s: %s%s is already listed at line %d", def.name, pfx, where, prev.Line)
				return
			}
			owner[key] = at
			e := lpmEntry{pfx, i}
			if vlan == 0 {
				global = append(global, e)
			} else {
				perVLAN[vlan] = append(perVLAN[vlan], e)
			}
			p.prefixes++
		}
		if len(def.vlans) == 0 {
			for _, c := range def.cidrs {
				add(0, c.p, c.n)
			}
		}
		for _, v := range def.vlans {
			if len(def.cidrs) == 0 {
				// The whole VLAN: the shortest prefixes of its scope.
				add(v, netip.MustParsePrefix("0.0.0.0/0"), def.key)
				add(v, netip.MustParsePrefix("::/0"), def.key)
				continue
			}
			for _, c := range def.cidrs {
				add(v, c.p, c.n)
			}
		}
		for _, m := range def.macs {
			if prev, ok := macOwner[m.mac]; ok {
				d.errorf(m.n, "pool %s: MAC %s is already listed at line %d", def.name, m.n.Value, prev.Line)
				continue
			}
			macOwner[m.mac] = m.n
			p.macs[m.mac] = i
		}
	}
	p.global = buildLPM(global)
	if len(perVLAN) > 0 {
		p.vlans = make(map[uint16]*lpm, len(perVLAN))
		for v, es := range perVLAN {
			t := buildLPM(es)
			p.vlans[v] = &t
		}
	}
	if p.categories == nil {
		p.categories = map[string]string{}
	}
	if p.SaaS.Pools == nil {
		p.SaaS.Pools = map[string]*SaaSList{}
	}
}

func validLabel(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == ',' {
			return false
		}
	}
	return true
}

func (d *parser) categories(p *Policy, n *yaml.Node) {
	p.categories = map[string]string{}
	d.mapping(n, "categories", func(label string, k, v *yaml.Node) {
		if !validLabel(label) {
			d.errorf(k, "categories: %q is not an application label", label)
			return
		}
		vn, c, ok := d.scalar(v, "category of "+label)
		if !ok {
			return
		}
		if isNull(vn) || !validLabel(c) {
			d.errorf(vn, "categories: %s: %q is not a category name", label, c)
			return
		}
		p.categories[label] = c
	})
}

// selector reads a rule's from or to: a pool, any, external, internal or
// a list of them.
func (d *parser) selector(n *yaml.Node, what string, index map[string]int32) (Selector, bool) {
	var s Selector
	set := false
	d.list(n, what, func(it *yaml.Node) {
		if it.Kind != yaml.ScalarNode || isNull(it) {
			d.errorf(it, "%s: expected a pool name, not %s", what, kindName(it))
			return
		}
		set = true
		switch it.Value {
		case Any:
			s.Any = true
		case External:
			s.External = true
		case Internal:
			s.Internal = true
		default:
			if d.poolRef(it, what, index) && !slices.Contains(s.Pools, it.Value) {
				s.Pools = append(s.Pools, it.Value)
			}
		}
	})
	return s, set
}

func (d *parser) rules(p *Policy, n *yaml.Node, index map[string]int32) {
	if n = d.resolve(n); n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "rules must be a list, not %s", kindName(n))
		return
	}
	names := map[string]int{}
	for _, rn := range n.Content {
		if d.abort {
			return
		}
		if rn = d.resolve(rn); rn == nil {
			return
		}
		if rn.Kind != yaml.MappingNode {
			d.errorf(rn, "rules: each rule must be a mapping, not %s", kindName(rn))
			continue
		}
		r := Rule{Line: rn.Line, From: Selector{Any: true}, To: Selector{Any: true}, Severity: SeverityMedium}
		var nameNode *yaml.Node
		d.mapping(rn, "rule", func(key string, k, v *yaml.Node) {
			switch key {
			case "name":
				nameNode, r.Name, _ = d.scalar(v, "rule name")
			case "description":
				r.Description = d.str(v, "rule description")
			case "from":
				if s, ok := d.selector(v, "rule from", index); ok {
					r.From = s
				}
			case "to":
				if s, ok := d.selector(v, "rule to", index); ok {
					r.To = s
				}
			case "categories":
				r.Apps.Categories = d.strings(v, "rule categories")
			case "protocols":
				r.Apps.Names = d.strings(v, "rule protocols")
			case "severity":
				r.Severity = d.severity(v, "rule severity", SeverityMedium)
			default:
				d.errorf(k, "rule: unknown key %q (accepted: name, description, from, to, categories, protocols, severity)", key)
			}
		})
		switch {
		case nameNode == nil:
			d.errorf(rn, "rule: name is required")
		case !poolNameRE.MatchString(r.Name):
			d.errorf(nameNode, "rule: %q is not a valid rule name (letters, digits, _ . -, up to 64)", r.Name)
		case names[r.Name] != 0:
			d.errorf(nameNode, "rule: duplicate rule name %q (first at line %d)", r.Name, names[r.Name])
		default:
			names[r.Name] = nameNode.Line
		}
		if r.From.Any && r.To.Any && r.Apps.Empty() {
			d.errorf(rn, "rule %s matches every flow: give from, to, categories or protocols", r.Name)
		}
		p.Rules = append(p.Rules, r)
	}
}

func (d *parser) learn(p *Policy, n *yaml.Node, index map[string]int32) {
	l := &p.Learn
	d.mapping(n, "learn", func(key string, k, v *yaml.Node) {
		switch key {
		case "enabled":
			l.Enabled = d.boolean(v, "learn enabled")
		case "period":
			l.Period = d.duration(v, "learn period", defaultLearnPeriod)
			if l.Period == 0 {
				d.errorf(d.resolve(v), "learn period must be positive")
			}
		case "pools":
			d.list(v, "learn pools", func(it *yaml.Node) {
				if it.Kind == yaml.ScalarNode && d.poolRef(it, "learn pools", index) {
					l.Pools = append(l.Pools, it.Value)
				} else if it.Kind != yaml.ScalarNode {
					d.errorf(it, "learn pools: expected a pool name, not %s", kindName(it))
				}
			})
		case "max_edges":
			l.MaxEdges = d.count(v, "learn max_edges", defaultMaxEdges)
		case "severity":
			l.Severity = d.severity(v, "learn severity", SeverityMedium)
		default:
			d.errorf(k, "learn: unknown key %q (accepted: enabled, period, pools, max_edges, severity)", key)
		}
	})
}

func (d *parser) dns(p *Policy, n *yaml.Node) {
	c := &p.DNS
	d.mapping(n, "dns", func(key string, k, v *yaml.Node) {
		switch key {
		case "allowed_resolvers":
			d.list(v, "dns allowed_resolvers", func(it *yaml.Node) {
				if pfx, ok := d.prefix(it, "dns allowed_resolvers"); ok {
					c.AllowedResolvers = append(c.AllowedResolvers, pfx)
				}
			})
		case "window":
			c.Window = d.duration(v, "dns window", defaultDNSWindow)
			if c.Window == 0 {
				d.errorf(d.resolve(v), "dns window must be positive")
			}
		case "unique_subdomains":
			c.UniqueSubdomains = d.count(v, "dns unique_subdomains", defaultUniqueSubs)
		case "query_bytes":
			c.QueryBytes = d.count(v, "dns query_bytes", defaultQueryBytes)
		case "label_length":
			c.LabelLength = d.count(v, "dns label_length", defaultLabelLength)
			if c.LabelLength > 63 {
				d.errorf(d.resolve(v), "dns label_length must be at most 63 (the longest DNS label), got %d", c.LabelLength)
			}
		case "entropy":
			c.Entropy = d.number(v, "dns entropy", defaultEntropy, 8)
		case "txt_null_share":
			c.TXTNullShare = d.number(v, "dns txt_null_share", defaultTXTNullShare, 1)
		case "nxdomain_ratio":
			c.NXDomainRatio = d.number(v, "dns nxdomain_ratio", defaultNXDomainRatio, 1)
		case "min_queries":
			c.MinQueries = d.count(v, "dns min_queries", defaultMinQueries)
		case "severity":
			c.Severity = d.severity(v, "dns severity", SeverityMedium)
		default:
			d.errorf(k, "dns: unknown key %q (accepted: allowed_resolvers, window, unique_subdomains, query_bytes, "+
				"label_length, entropy, txt_null_share, nxdomain_ratio, min_queries, severity)", key)
		}
	})
}

// appList reads a saas allow or deny list: application names, and
// "category:NAME" entries.
func (d *parser) appList(n *yaml.Node, what string) AppMatch {
	var m AppMatch
	d.list(n, what, func(it *yaml.Node) {
		v := strings.TrimSpace(it.Value)
		c, isCat := strings.CutPrefix(v, "category:")
		switch {
		case it.Kind != yaml.ScalarNode || isNull(it):
			d.errorf(it, "%s: expected an application or category:NAME, not %s", what, kindName(it))
		case v == "*":
			m.All = true
		case isCat && validLabel(strings.TrimSpace(c)):
			m.Categories = append(m.Categories, strings.TrimSpace(c))
		case isCat:
			d.errorf(it, "%s: %q is not a category name", what, v)
		case !validLabel(v):
			d.errorf(it, "%s: %q is not an application label", what, v)
		default:
			m.Names = append(m.Names, v)
		}
	})
	return m
}

func (d *parser) saas(p *Policy, n *yaml.Node, index map[string]int32) {
	p.SaaS.Pools = map[string]*SaaSList{}
	d.mapping(n, "saas", func(key string, k, v *yaml.Node) {
		if key != Default && !d.poolRef(k, "saas", index) {
			return
		}
		what := "saas " + key
		l := &SaaSList{Line: k.Line, Severity: SeverityMedium}
		d.mapping(v, what, func(lk string, kk, lv *yaml.Node) {
			switch lk {
			case "allow":
				l.Allow = d.appList(lv, what+" allow")
			case "deny":
				l.Deny = d.appList(lv, what+" deny")
			case "severity":
				l.Severity = d.severity(lv, what+" severity", SeverityMedium)
			default:
				d.errorf(kk, "%s: unknown key %q (accepted: allow, deny, severity)", what, lk)
			}
		})
		if key == Default {
			p.SaaS.Default = l
		} else {
			p.SaaS.Pools[key] = l
		}
	})
}

func (d *parser) alerts(p *Policy, n *yaml.Node) {
	a := &p.Alerts
	d.mapping(n, "alerts", func(key string, k, v *yaml.Node) {
		switch key {
		case "dedup_window":
			a.DedupWindow = d.duration(v, "alerts dedup_window", defaultDedupWindow)
		case "min_severity":
			a.MinSeverity = d.severity(v, "alerts min_severity", SeverityInfo)
		case "webhook":
			vn, s, ok := d.scalar(v, "alerts webhook")
			if !ok || isNull(vn) || s == "" {
				return
			}
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				d.errorf(vn, "alerts webhook: %q is not an http or https URL", s)
				return
			}
			a.Webhook = s
		case "syslog":
			vn, s, ok := d.scalar(v, "alerts syslog")
			if !ok || isNull(vn) || s == "" {
				return
			}
			sl, err := parseSyslog(s)
			if err != nil {
				d.errorf(vn, "alerts syslog: %v", err)
				return
			}
			a.Syslog = sl
		default:
			d.errorf(k, "alerts: unknown key %q (accepted: dedup_window, min_severity, webhook, syslog)", key)
		}
	})
}

// parseSyslog reads udp://host[:port], tcp://host[:port] or
// unix:///path; the port defaults to 514.
func parseSyslog(s string) (*Syslog, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL (udp://host:514, tcp://host:514, unix:///dev/log)", s)
	}
	switch u.Scheme {
	case "udp", "tcp":
		if u.Host == "" || u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("%q: expected %s://host[:port]", s, u.Scheme)
		}
		host, port := u.Hostname(), u.Port()
		if port == "" {
			port = "514"
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%q: bad port %q", s, port)
		}
		return &Syslog{Network: u.Scheme, Address: net.JoinHostPort(host, port)}, nil
	case "unix":
		if u.Path == "" || u.Host != "" {
			return nil, fmt.Errorf("%q: expected unix:///path/to/socket", s)
		}
		return &Syslog{Network: "unix", Address: u.Path}, nil
	}
	return nil, fmt.Errorf("%q: scheme must be udp, tcp or unix", s)
}
