package dpi

import (
	"bufio"
	_ "embed"
	"fmt"
	"hash/fnv"
	"io"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
)

// builtinRules is the application table shipped with flowlens: our own
// list, written for this project. nDPI's names, numeric ids and categories
// are used so labels read the same as ntopng's and nProbe's, but none of
// nDPI's (LGPL) data files are copied. The format is documented in apps.txt.
//
//go:embed apps.txt
var builtinRules string

// Automatic ids for names no `proto` line defines (applications that only
// appear in a user's `host` or `cidr` lines). nDPI's ids end far below
// autoIDBase, and the 12-bit AppID selector ends at 4095.
const (
	autoIDBase = 3072
	maxID      = 4095
)

type protoDef struct {
	name string
	cat  uint8 // index into table.cats
}

type hostRule struct {
	app uint16
	cat uint8 // 0: the application's own category
}

type rawSuffix struct {
	suffix string
	rule   hostRule
}

type portKey struct {
	l4   uint8
	port uint16
}

type substrRule struct {
	sub string // lower case
	app uint16
}

// table is the compiled application table. It is built once by NewEngine
// and read concurrently afterwards; nothing in it changes.
type table struct {
	protos  [maxID + 1]protoDef
	byName  map[string]uint16
	cats    []string
	catIdx  map[string]uint8
	hosts   map[string]hostRule // label-boundary suffixes, lower case, no trailing dot
	raw     []rawSuffix         // raw suffixes (pattern began with '*'), longest first
	cidrs   map[netip.Prefix]hostRule
	bits4   []int // prefix lengths present, longest first
	bits6   []int
	ports   map[portKey]uint16
	alpns   []substrRule // ALPN prefixes
	certs   []substrRule // substrings of a certificate's subject CN
	uas     []substrRule // substrings of an HTTP User-Agent
	nextAut uint16
}

// RuleError is a bad line in a rule file.
type RuleError struct {
	File string
	Line int
	Msg  string
}

func (e *RuleError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

func newTable() *table {
	t := &table{
		byName: map[string]uint16{},
		catIdx: map[string]uint8{},
		hosts:  map[string]hostRule{},
		cidrs:  map[netip.Prefix]hostRule{},
		ports:  map[portKey]uint16{},
	}
	t.category("Unspecified")
	t.protos[0] = protoDef{name: "Unknown"}
	t.byName["Unknown"] = 0
	t.nextAut = autoIDBase
	return t
}

func (t *table) category(name string) uint8 {
	if i, ok := t.catIdx[name]; ok {
		return i
	}
	if len(t.cats) >= 255 {
		return 0
	}
	t.cats = append(t.cats, name)
	i := uint8(len(t.cats) - 1)
	t.catIdx[name] = i
	return i
}

// id returns the id of an application or protocol name, giving names no
// `proto` line defines a stable automatic id (a hash of the name, probed
// linearly), so the same rule files give the same AppIDs on every start.
func (t *table) id(name string) (uint16, error) {
	if id, ok := t.byName[name]; ok {
		return id, nil
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	span := uint32(maxID - autoIDBase + 1)
	start := uint16(autoIDBase + h.Sum32()%span)
	for i := uint32(0); i < span; i++ {
		id := autoIDBase + (start-autoIDBase+uint16(i))%uint16(span)
		if t.protos[id].name == "" {
			t.protos[id] = protoDef{name: name}
			t.byName[name] = id
			return id, nil
		}
	}
	return 0, fmt.Errorf("no free automatic id for %q", name)
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// parse reads one rule file. Later lines and later files override earlier
// ones for the same key, so a user file can re-map a built-in domain.
func (t *table) parse(file string, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<16)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if err := t.rule(f); err != nil {
			return &RuleError{File: file, Line: n, Msg: err.Error()}
		}
	}
	if err := sc.Err(); err != nil {
		return &RuleError{File: file, Line: n + 1, Msg: err.Error()}
	}
	return nil
}

func (t *table) appCat(f []string, appAt int) (hostRule, error) {
	if len(f) < appAt+1 || len(f) > appAt+2 {
		return hostRule{}, fmt.Errorf("%s: want %d or %d fields, got %d", f[0], appAt+1, appAt+2, len(f))
	}
	if !validName(f[appAt]) {
		return hostRule{}, fmt.Errorf("bad application name %q", f[appAt])
	}
	id, err := t.id(f[appAt])
	if err != nil {
		return hostRule{}, err
	}
	r := hostRule{app: id}
	if len(f) == appAt+2 {
		if !validName(f[appAt+1]) {
			return hostRule{}, fmt.Errorf("bad category %q", f[appAt+1])
		}
		r.cat = t.category(f[appAt+1])
	}
	return r, nil
}

func (t *table) rule(f []string) error {
	switch f[0] {
	case "proto":
		if len(f) != 4 {
			return fmt.Errorf("proto: want `proto ID NAME CATEGORY`")
		}
		id, err := strconv.ParseUint(f[1], 10, 16)
		if err != nil || id == 0 || id > maxID {
			return fmt.Errorf("proto: id %q not in 1..%d", f[1], maxID)
		}
		if !validName(f[2]) || !validName(f[3]) {
			return fmt.Errorf("proto: bad name or category")
		}
		if old := t.protos[id].name; old != "" && old != f[2] {
			return fmt.Errorf("proto: id %d already names %q", id, old)
		}
		if prev, ok := t.byName[f[2]]; ok && prev != uint16(id) {
			if prev >= autoIDBase {
				return fmt.Errorf("proto: %q was used before this line defines it; put proto lines first", f[2])
			}
			return fmt.Errorf("proto: %q already has id %d", f[2], prev)
		}
		t.protos[id] = protoDef{name: f[2], cat: t.category(f[3])}
		t.byName[f[2]] = uint16(id)
	case "host":
		if len(f) < 2 {
			return fmt.Errorf("host: want `host SUFFIX APP [CATEGORY]`")
		}
		r, err := t.appCat(f, 2)
		if err != nil {
			return err
		}
		s := strings.TrimSuffix(strings.ToLower(f[1]), ".")
		if strings.HasPrefix(s, "*") {
			s = s[1:]
			if s == "" {
				return fmt.Errorf("host: empty suffix")
			}
			for i, x := range t.raw {
				if x.suffix == s {
					t.raw = append(t.raw[:i], t.raw[i+1:]...)
					break
				}
			}
			t.raw = append(t.raw, rawSuffix{s, r})
			sort.SliceStable(t.raw, func(i, j int) bool { return len(t.raw[i].suffix) > len(t.raw[j].suffix) })
			return nil
		}
		s = strings.TrimPrefix(s, ".")
		if s == "" || len(s) > 253 {
			return fmt.Errorf("host: bad suffix %q", f[1])
		}
		t.hosts[s] = r
	case "cidr":
		if len(f) < 2 {
			return fmt.Errorf("cidr: want `cidr PREFIX APP [CATEGORY]`")
		}
		p, err := netip.ParsePrefix(f[1])
		if err != nil {
			return fmt.Errorf("cidr: %v", err)
		}
		r, err := t.appCat(f, 2)
		if err != nil {
			return err
		}
		p = p.Masked()
		if p.Addr().Is4In6() {
			return fmt.Errorf("cidr: write IPv4 prefixes as a.b.c.d/n")
		}
		t.cidrs[p] = r
	case "port":
		if len(f) != 4 {
			return fmt.Errorf("port: want `port tcp|udp PORT[-PORT] PROTO`")
		}
		var l4 uint8
		switch f[1] {
		case "tcp":
			l4 = 6
		case "udp":
			l4 = 17
		default:
			return fmt.Errorf("port: %q is not tcp or udp", f[1])
		}
		lo, hi, ok := strings.Cut(f[2], "-")
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b := a
		var err2 error
		if ok {
			b, err2 = strconv.ParseUint(hi, 10, 16)
		}
		if err1 != nil || err2 != nil || a == 0 || b < a || b-a > 1024 {
			return fmt.Errorf("port: bad port or range %q", f[2])
		}
		if !validName(f[3]) {
			return fmt.Errorf("port: bad protocol name %q", f[3])
		}
		id, err := t.id(f[3])
		if err != nil {
			return err
		}
		for p := a; p <= b; p++ {
			t.ports[portKey{l4, uint16(p)}] = id
		}
	case "alpn", "cert", "ua":
		if len(f) != 3 {
			return fmt.Errorf("%s: want `%s TEXT APP`", f[0], f[0])
		}
		if !validName(f[2]) {
			return fmt.Errorf("%s: bad application name %q", f[0], f[2])
		}
		id, err := t.id(f[2])
		if err != nil {
			return err
		}
		r := substrRule{sub: strings.ToLower(f[1]), app: id}
		switch f[0] {
		case "alpn":
			t.alpns = append(t.alpns, r)
		case "cert":
			t.certs = append(t.certs, r)
		default:
			t.uas = append(t.uas, r)
		}
	default:
		return fmt.Errorf("unknown rule %q (want proto, host, cidr, port, alpn, cert or ua)", f[0])
	}
	return nil
}

// finish prepares the lookup structures once all files are read.
func (t *table) finish() {
	seen4, seen6 := map[int]bool{}, map[int]bool{}
	for p := range t.cidrs {
		if p.Addr().Is4() {
			seen4[p.Bits()] = true
		} else {
			seen6[p.Bits()] = true
		}
	}
	for b := range seen4 {
		t.bits4 = append(t.bits4, b)
	}
	for b := range seen6 {
		t.bits6 = append(t.bits6, b)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(t.bits4)))
	sort.Sort(sort.Reverse(sort.IntSlice(t.bits6)))
}

// lookupHost finds the application of a host name: the longest matching
// suffix wins, whether a label-boundary suffix (`host example.com` matches
// example.com and a.example.com, not badexample.com) or a raw one
// (`host *-teams.cloudapp.net`). The lookup neither allocates nor copies
// unless the name has upper-case letters.
func (t *table) lookupHost(name string) (hostRule, bool) {
	if len(name) == 0 || len(name) > 253 {
		return hostRule{}, false
	}
	var buf [256]byte
	n := name
	for i := 0; i < len(n); i++ {
		if c := n[i]; c >= 'A' && c <= 'Z' {
			copy(buf[:], n)
			for j := i; j < len(n); j++ {
				if c := buf[j]; c >= 'A' && c <= 'Z' {
					buf[j] = c + 'a' - 'A'
				}
			}
			return t.lookupLower(buf[:len(n)])
		}
	}
	n = strings.TrimSuffix(n, ".")
	best, bestLen, ok := hostRule{}, 0, false
	for s := n; ; {
		if r, hit := t.hosts[s]; hit {
			best, bestLen, ok = r, len(s), true
			break
		}
		i := strings.IndexByte(s, '.')
		if i < 0 {
			break
		}
		s = s[i+1:]
	}
	for _, r := range t.raw {
		if len(r.suffix) <= bestLen {
			break
		}
		if strings.HasSuffix(n, r.suffix) {
			return r.rule, true
		}
	}
	return best, ok
}

func (t *table) lookupLower(b []byte) (hostRule, bool) {
	if len(b) > 0 && b[len(b)-1] == '.' {
		b = b[:len(b)-1]
	}
	best, bestLen, ok := hostRule{}, 0, false
	for s := b; ; {
		if r, hit := t.hosts[string(s)]; hit {
			best, bestLen, ok = r, len(s), true
			break
		}
		i := indexByte(s, '.')
		if i < 0 {
			break
		}
		s = s[i+1:]
	}
	for _, r := range t.raw {
		if len(r.suffix) <= bestLen {
			break
		}
		if len(b) >= len(r.suffix) && string(b[len(b)-len(r.suffix):]) == r.suffix {
			return r.rule, true
		}
	}
	return best, ok
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// lookupAddr finds the longest prefix holding addr.
func (t *table) lookupAddr(a netip.Addr) (hostRule, bool) {
	a = a.Unmap()
	bits := t.bits6
	if a.Is4() {
		bits = t.bits4
	}
	for _, b := range bits {
		p, err := a.Prefix(b)
		if err != nil {
			continue
		}
		if r, ok := t.cidrs[p]; ok {
			return r, true
		}
	}
	return hostRule{}, false
}

// matchSub returns the first rule whose text s contains (prefix only when
// prefix is set), comparing without case and without allocating.
func matchSub(rules []substrRule, s string, prefix bool) (uint16, bool) {
	for _, r := range rules {
		if len(r.sub) > len(s) {
			continue
		}
		if prefix {
			if strings.EqualFold(s[:len(r.sub)], r.sub) {
				return r.app, true
			}
			continue
		}
		for i := 0; i+len(r.sub) <= len(s); i++ {
			if strings.EqualFold(s[i:i+len(r.sub)], r.sub) {
				return r.app, true
			}
		}
	}
	return 0, false
}

// loadTable builds the table from the built-in rules and the user files.
func loadTable(extra []string) (*table, error) {
	t := newTable()
	if err := t.parse("apps.txt (built-in)", strings.NewReader(builtinRules)); err != nil {
		return nil, err
	}
	for _, path := range extra {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("rule file: %w", err)
		}
		err = t.parse(path, f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	t.finish()
	return t, nil
}

// categoryOf follows nDPI: an application's category (or the override of
// the rule that named it) wins, except under DNS, whose flows stay
// Network whatever name they resolve.
func (t *table) categoryOf(master, app uint16, override uint8) uint8 {
	if app != 0 && master != pDNS {
		if override != 0 {
			return override
		}
		if c := t.protos[app].cat; c != 0 {
			return c
		}
	}
	if override != 0 && app == 0 {
		return override
	}
	return t.protos[master].cat
}

// Table is the application table (apps.txt and the user's rule files) on
// its own, for what needs names and categories without classifying: the
// enrich stage, for labels that arrive without a category.
type Table struct{ t *table }

// LoadTable reads the built-in table and the extra rule files.
func LoadTable(extraRules []string) (*Table, error) {
	t, err := loadTable(extraRules)
	if err != nil {
		return nil, err
	}
	return &Table{t}, nil
}

// CategoryOf returns the category the table gives a label in nDPI's names
// ("TLS.Dropbox" → Cloud, "SSH" → RemoteAccess), as a flow so labelled
// gets it; "" for names the table does not know or leaves Unspecified. It
// does not allocate.
func (tb *Table) CategoryOf(label string) string {
	t := tb.t
	master, app, _ := strings.Cut(label, ".")
	m, ok := t.byName[master]
	if !ok {
		return ""
	}
	a := t.byName[app] // 0 (none) when app is "" or unknown
	c := t.categoryOf(m, a, 0)
	if c == 0 || int(c) >= len(t.cats) {
		return ""
	}
	return t.cats[c]
}
