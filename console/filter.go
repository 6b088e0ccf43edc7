package console

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Filter is the filter bar, shared by every page: each field is validated
// by type here, then becomes an engine-bound query parameter ({name:Type});
// no user value is ever part of the SQL text.
type Filter struct {
	From, To time.Time    // [From, To), whole seconds
	Exporter netip.Addr   // exporter_address, invalid when unset
	Pool     string       // src_pool or dst_pool
	App      string       // protocol (application label)
	Prefix   netip.Prefix // src_addr or dst_addr within, in IPv6 (IPv4 mapped); invalid when unset
	Port     int          // src_port or dst_port; -1 when unset
}

// Ranges are the preset ranges of the filter bar.
var Ranges = map[string]time.Duration{
	"15m": 15 * time.Minute, "1h": time.Hour, "6h": 6 * time.Hour, "24h": 24 * time.Hour,
	"7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour,
}

// MaxSpan is the longest range a page may ask for (a little more than 30
// days, so that a custom range of a calendar month fits).
const MaxSpan = 31 * 24 * time.Hour

// ErrBadFilter wraps every validation error: the caller answers 400.
var ErrBadFilter = errors.New("bad filter")

var nameRE = regexp.MustCompile(`^[\p{L}\p{N}][\p{L}\p{N} ._:/+@-]{0,127}$`)

// validName accepts the pool and application names flowlens writes
// (policy pool names, nDPI labels such as TLS.YouTube).
func validName(s string) bool { return nameRE.MatchString(s) }

func badf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadFilter, fmt.Sprintf(format, a...))
}

// ParseFilter reads the filter from a request's query string: range (a
// preset) or from/to (RFC 3339 or Unix seconds), exporter (an address),
// pool, app (names), addr (an address or a CIDR prefix), port (0-65535).
func ParseFilter(q url.Values, now time.Time) (Filter, error) {
	f := Filter{Port: -1}
	now = now.Truncate(time.Second)
	from, to := q.Get("from"), q.Get("to")
	switch {
	case from != "" || to != "":
		var err error
		if f.From, err = parseTime(from); err != nil {
			return f, badf("from: %v", err)
		}
		f.To = now
		if to != "" {
			if f.To, err = parseTime(to); err != nil {
				return f, badf("to: %v", err)
			}
		}
	default:
		r := q.Get("range")
		if r == "" {
			r = "1h"
		}
		d, ok := Ranges[r]
		if !ok {
			return f, badf("range %q is not one of 15m, 1h, 6h, 24h, 7d, 30d", r)
		}
		f.From, f.To = now.Add(-d), now
	}
	if !f.From.Before(f.To) {
		return f, badf("from must be before to")
	}
	if f.To.Sub(f.From) > MaxSpan {
		return f, badf("the range is longer than 31 days")
	}
	if s := q.Get("exporter"); s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return f, badf("exporter %q is not an IP address", s)
		}
		f.Exporter = a.WithZone("")
	}
	if s := q.Get("pool"); s != "" {
		if !validName(s) {
			return f, badf("pool %q is not a pool name", s)
		}
		f.Pool = s
	}
	if s := q.Get("app"); s != "" {
		if !validName(s) {
			return f, badf("app %q is not an application name", s)
		}
		f.App = s
	}
	if s := q.Get("addr"); s != "" {
		p, err := parsePrefix(s)
		if err != nil {
			return f, badf("addr %q is not an address or CIDR prefix", s)
		}
		f.Prefix = p
	}
	if s := q.Get("port"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 65535 {
			return f, badf("port %q is not a number from 0 to 65535", s)
		}
		f.Port = n
	}
	return f, nil
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("missing")
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > 1<<32-1 {
			return time.Time{}, fmt.Errorf("%d is out of the DateTime range", n)
		}
		return time.Unix(n, 0), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor Unix seconds", s)
	}
	if t.Unix() < 0 || t.Unix() > 1<<32-1 {
		return time.Time{}, fmt.Errorf("%q is out of the DateTime range", s)
	}
	return t.Truncate(time.Second), nil
}

// parsePrefix reads an address or prefix as the store keeps it: IPv6,
// IPv4 mapped (10.0.0.0/8 is ::ffff:10.0.0.0/104).
func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, err
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, err
		}
		a = a.WithZone("")
		p = netip.PrefixFrom(a, a.BitLen())
	}
	p = p.Masked()
	if p.Addr().Is4() {
		p = netip.PrefixFrom(netip.AddrFrom16(p.Addr().As16()), p.Bits()+96)
	}
	return p, nil
}

// mapped is a as the store keeps it (IPv6, IPv4 mapped).
func mapped(a netip.Addr) string { return netip.AddrFrom16(a.As16()).String() }

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(b)
}

// source is a table the console reads: the filters it can apply besides
// the range, the exporter and the application (which every table keeps),
// the seconds each of its rows covers (0: any range), and how it counts
// flow records.
type source struct {
	table      string
	unit       int64
	pool, addr bool // src_pool/dst_pool, src_addr/dst_addr
	port       bool // src_port/dst_port: only raw flows keep ports
	// lists: top_conversations_1d, whose lists answer one filter on the
	// exporter, the pool or the application at most (topLists).
	lists bool
	count string
}

// The tables, finest first. The hourly rollups are schema version 6.
var (
	srcFlows         = source{table: "flows", pool: true, addr: true, port: true, count: "toUInt64(count())"}
	srcMinute        = source{table: "flows_1m", unit: 60, count: "sum(flows)"}
	srcHourly        = source{table: "flows_1h", unit: 3600, pool: true, count: "sum(flows)"}
	srcConversations = source{table: "conversations_1h", unit: 3600, pool: true, addr: true, count: "sum(flows)"}
	srcServers       = source{table: "servers_1h", unit: 3600, pool: true, count: "sum(flows)"}
	// The daily rollups are schema version 7: hosts_1d keeps one address
	// of each pair, so it filters neither on an address nor a port.
	srcHosts        = source{table: "hosts_1d", unit: 86400, pool: true, count: "sum(flows)"}
	srcServersDaily = source{table: "servers_1d", unit: 86400, pool: true, count: "sum(flows)"}
	// top_conversations_1d: each day's top pairs, with today's (and any
	// day not listed yet) from conversations_1h.
	srcTopConversations = source{table: "top_conversations_1d", unit: 86400, pool: true, lists: true, count: "sum(flows)"}
)

// Rollups answer ranges of at least this length; shorter ones read flows,
// which are few enough, and keep their exact edges and finer steps.
const (
	minuteFrom = time.Hour
	hourlyFrom = 24 * time.Hour
	// Daily rows widen a range to whole UTC days: at most two days more,
	// which a week or more makes small (Meta says the range answered).
	dailyFrom = 7 * 24 * time.Hour
)

// can tells whether s holds what f filters on and f's range is long
// enough for s's unit. The range is then aligned to s's unit (rounded
// out: Meta says the range answered).
func (f Filter) can(s source) bool {
	span := f.To.Sub(f.From)
	switch {
	case f.Pool != "" && !s.pool, f.Prefix.IsValid() && !s.addr, f.Port >= 0 && !s.port:
		return false
	case s.lists && f.topLists() == nil:
		return false
	case s.unit >= 86400:
		return span >= dailyFrom
	case s.unit >= 3600:
		return span >= hourlyFrom
	case s.unit >= 60:
		return span >= minuteFrom
	}
	return true
}

// topLists are the top_conversations_1d lists that hold f's top pairs, nil
// when none does (two filters, or one on addresses or ports). A pool's
// pairs are in its source pool's list or its destination pool's.
func (f Filter) topLists() []string {
	if f.Prefix.IsValid() || f.Port >= 0 {
		return nil
	}
	var lists []string
	n := 0
	if f.Exporter.IsValid() {
		n, lists = n+1, []string{"exporter"}
	}
	if f.App != "" {
		n, lists = n+1, []string{"application"}
	}
	if f.Pool != "" {
		n, lists = n+1, []string{"src_pool", "dst_pool"}
	}
	switch n {
	case 0:
		return []string{"all"}
	case 1:
		return lists
	}
	return nil
}

// pick is the first of sources that can answer f, else flows.
func (f Filter) pick(sources ...source) source {
	for _, s := range sources {
		if f.can(s) {
			return s
		}
	}
	return srcFlows
}

// params collects the engine-bound parameters of one query.
type params map[string]string

// where is the filter as a SQL condition of placeholders, its values in p.
// Conditions on columns a rollup lacks are only valid on the tables that
// keep them: callers pick the table with can first.
func (f Filter) where(p params) string {
	p["from"] = strconv.FormatInt(f.From.Unix(), 10)
	p["to"] = strconv.FormatInt(f.To.Unix(), 10)
	c := []string{"timestamp >= toDateTime({from:UInt32})", "timestamp < toDateTime({to:UInt32})"}
	if f.Exporter.IsValid() {
		p["exporter"] = mapped(f.Exporter)
		c = append(c, "exporter_address = {exporter:IPv6}")
	}
	if f.App != "" {
		p["app"] = f.App
		c = append(c, "protocol = {app:String}")
	}
	if f.Pool != "" {
		p["pool"] = f.Pool
		c = append(c, "(src_pool = {pool:String} OR dst_pool = {pool:String})")
	}
	if f.Prefix.IsValid() {
		if f.Prefix.Bits() == 128 {
			p["addr"] = f.Prefix.Addr().String()
			c = append(c, "(src_addr = {addr:IPv6} OR dst_addr = {addr:IPv6})")
		} else {
			p["addr_lo"], p["addr_hi"] = f.Prefix.Addr().String(), lastAddr(f.Prefix).String()
			c = append(c, "(src_addr BETWEEN {addr_lo:IPv6} AND {addr_hi:IPv6} OR dst_addr BETWEEN {addr_lo:IPv6} AND {addr_hi:IPv6})")
		}
	}
	if f.Port >= 0 {
		p["port"] = strconv.Itoa(f.Port)
		c = append(c, "(src_port = {port:UInt16} OR dst_port = {port:UInt16})")
	}
	return strings.Join(c, " AND ")
}

// step is the width of a time bucket for a chart of the range: about 90
// to 360 points, in round units (10 s for 15 minutes, 1 minute or more when
// flows_1m may answer, whole hours from 4 days, so that flows_1h answers a
// week).
func (f Filter) step() int64 {
	span := int64(f.To.Sub(f.From) / time.Second)
	for _, s := range []int64{10, 30, 60, 120, 300, 600, 900, 3600, 7200, 10800, 21600, 43200, 86400} {
		if span/s <= 360 {
			return s
		}
	}
	return 86400
}

// aligned rounds the range out to whole steps, so that a chart's first
// and last buckets are whole and flows and the rollups give the same sums.
func (f Filter) aligned(step int64) Filter {
	if step <= 1 {
		return f
	}
	from := f.From.Unix() / step * step
	to := (f.To.Unix() + step - 1) / step * step
	f.From, f.To = time.Unix(from, 0), time.Unix(to, 0)
	return f
}
