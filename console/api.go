package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"flowlens/schema"
)

// sqlOf fills a query template: {T} the table, {F} its count of flow
// records, {N} a row's count of flow records, {W} the filter's condition,
// {M} the metric's sum. All are the console's own constants; user values
// are only ever in p, as {name:Type} parameters.
func sqlOf(tmpl string, s source, where, metric string) string {
	rowFlows := "flows"
	if s.unit == 0 {
		rowFlows = "toUInt64(1)"
	}
	return strings.NewReplacer("{T}", s.table, "{F}", s.count, "{N}", rowFlows, "{W}", where, "{M}", metric).Replace(tmpl)
}

// metricExpr is the sum a chart shows, per table.
func metricExpr(s source, metric string) string {
	switch metric {
	case "packets":
		return "sum(packets)"
	case "flows":
		return s.count
	default:
		return "sum(bytes)"
	}
}

// chartSource is the table a chart of f in steps of step reads: the
// first of sources that can answer f and whose rows fit in a step.
func chartSource(f Filter, step int64, sources ...source) source {
	var fit []source
	for _, s := range sources {
		if s.unit == 0 || step%s.unit == 0 {
			fit = append(fit, s)
		}
	}
	return f.pick(fit...)
}

func (c *Console) filter(r *http.Request) (Filter, error) {
	return ParseFilter(r.URL.Query(), c.deps.Now())
}

func limitOf(r *http.Request, def, most int) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > most {
		return 0, badf("limit %q is not a number from 1 to %d", s, most)
	}
	return n, nil
}

// Meta tells a page where its answer came from and how long it took.
type Meta struct {
	Table     string  `json:"table"`
	From      int64   `json:"from"`
	To        int64   `json:"to"`
	Step      int64   `json:"step,omitempty"`
	ElapsedMS float64 `json:"elapsed_ms"`
	// Note says how the answer is approximate, when it is.
	Note string `json:"note,omitempty"`
}

func meta(table string, f Filter, step int64, d time.Duration) Meta {
	return Meta{Table: table, From: f.From.Unix(), To: f.To.Unix(), Step: step, ElapsedMS: float64(d.Microseconds()) / 1000}
}

// Series is a stacked chart: one value per bucket for each series, the
// biggest first, "Other" last.
type Series struct {
	Meta
	Metric string      `json:"metric"`
	By     string      `json:"by"`
	Times  []int64     `json:"times"`
	Series []SeriesRow `json:"series"`
}

// SeriesRow is one series of a chart.
type SeriesRow struct {
	Name   string    `json:"name"`
	Total  float64   `json:"total"`
	Values []float64 `json:"values"`
}

// OverviewSeries is the number of series the overview stacks besides Other.
const OverviewSeries = 8

const overviewSQL = `SELECT toUInt32(toStartOfInterval(timestamp, toIntervalSecond({step:UInt32}))) AS t,
  if({K} IN (SELECT k FROM (SELECT {K} AS k, {M} AS v FROM {T} WHERE {W} GROUP BY k ORDER BY v DESC, k LIMIT {top:UInt8})), {K}, 'Other') AS s,
  {M} AS v
FROM {T} WHERE {W} GROUP BY t, s ORDER BY t, s`

// overview is traffic over time stacked by application or category, from
// the coarsest table that can answer (filter.go's can): flows_1h for
// steps of half an hour or more, flows_1m (by application, with filters on
// the exporter and the application only) for ranges of an hour or more.
func (c *Console) overview(r *http.Request) (any, error) {
	f, err := c.filter(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	by := q.Get("by")
	if by == "" {
		by = "application"
	}
	var key string
	switch by {
	case "application":
		key = "protocol"
	case "category":
		key = "if(app_category = '', 'Uncategorised', app_category)"
	default:
		return nil, badf("by %q is not application or category", by)
	}
	metric := q.Get("metric")
	switch metric {
	case "":
		metric = "bytes"
	case "bytes", "packets", "flows":
	default:
		return nil, badf("metric %q is not bytes, packets or flows", metric)
	}
	// conversations_1h last: it keeps addresses, for an address filter
	// over a day or more.
	sources := []source{srcHourly, srcMinute, srcConversations}
	if by == "category" {
		sources = []source{srcHourly, srcConversations} // flows_1m keeps no category
	}
	step := f.step()
	src := chartSource(f, step, c.rollups(sources...)...)
	f = f.aligned(step)
	table := src.table
	p := params{"step": strconv.FormatInt(step, 10), "top": strconv.Itoa(OverviewSeries)}
	sql := strings.ReplaceAll(sqlOf(overviewSQL, src, f.where(p), metricExpr(src, metric)), "{K}", key)
	var d time.Duration
	res, err := c.run(r.Context(), sql, p, &d)
	if err != nil {
		return nil, err
	}
	out := Series{Meta: meta(table, f, step, d), Metric: metric, By: by}
	n := int((f.To.Unix() - f.From.Unix()) / step)
	for i := range n {
		out.Times = append(out.Times, f.From.Unix()+int64(i)*step)
	}
	idx := map[string]int{}
	for i := range res.Data {
		t, name, v := int64(res.num(i, 0)), res.str(i, 1), res.num(i, 2)
		k, ok := idx[name]
		if !ok {
			k = len(out.Series)
			idx[name] = k
			out.Series = append(out.Series, SeriesRow{Name: name, Values: make([]float64, n)})
		}
		if b := int((t - f.From.Unix()) / step); b >= 0 && b < n {
			out.Series[k].Values[b] += v
			out.Series[k].Total += v
		}
	}
	sort.SliceStable(out.Series, func(i, j int) bool {
		a, b := out.Series[i], out.Series[j]
		if (a.Name == "Other") != (b.Name == "Other") {
			return b.Name == "Other"
		}
		if a.Total != b.Total {
			return a.Total > b.Total
		}
		return a.Name < b.Name
	})
	return out, nil
}

// TopResult is a page's table and where it came from.
type TopResult struct {
	Meta
	Dim string `json:"dim"`
	Table
}

// Top tables, each with the rollups that can answer it, coarsest first.
// A conversation's or server's application is the one with the most bytes
// (topKWeighted: the same from flows and from rollups, where any() is not).
var topSQL = map[string]struct {
	sql      string
	sources  []source
	rollup   string            // the same from flows_1m, which keeps no category
	bySource map[string]string // the same from a table of another shape
}{
	"applications": {
		sql: `SELECT protocol AS application, any(app_category) AS category, sum(bytes) AS bytes, sum(packets) AS packets, {F} AS flows
FROM {T} WHERE {W} GROUP BY application ORDER BY bytes DESC, application LIMIT {limit:UInt32}`,
		sources: []source{srcHourly, srcConversations},
		rollup: `SELECT protocol AS application, sum(bytes) AS bytes, sum(packets) AS packets, sum(flows) AS flows
FROM flows_1m WHERE {W} GROUP BY application ORDER BY bytes DESC, application LIMIT {limit:UInt32}`,
	},
	"talkers": {bySource: map[string]string{
		// hosts_1d keeps each side of a pair as its own row, and the
		// hours up to its filled_to: the later ones (an hour or two, and
		// while a migrated store catches up, more) are conversations_1h's,
		// each side made a row the same way. One statement, so that a
		// refresh does not come between reading filled_to and the rows.
		"hosts_1d": `SELECT replaceOne(toString(host), '::ffff:', '') AS address, any(pool) AS pool,
  sum(s) AS bytes_sent, sum(r) AS bytes_received, bytes_sent + bytes_received AS bytes, sum(n) AS flows
FROM (
  SELECT host, any(if(sent = 1, src_pool, dst_pool)) AS pool, sumIf(bytes, sent = 1) AS s, sumIf(bytes, sent = 0) AS r, sum(flows) AS n
  FROM hosts_1d WHERE {W} GROUP BY host
  UNION ALL
  SELECT host, any(if(sent = 1, src_pool, dst_pool)) AS pool, sumIf(bytes, sent = 1) AS s, sumIf(bytes, sent = 0) AS r, sum(flows) AS n
  FROM conversations_1h ARRAY JOIN [src_addr, dst_addr] AS host, [toUInt8(1), toUInt8(0)] AS sent
  WHERE {W} AND timestamp >= ` + schema.FilledTo("hosts_1d") + ` GROUP BY host
) GROUP BY host ORDER BY bytes DESC, address LIMIT {limit:UInt32}`},
		sql: `SELECT replaceOne(toString(host), '::ffff:', '') AS address, any(pool) AS pool,
  sum(sent) AS bytes_sent, sum(received) AS bytes_received, sum(sent) + sum(received) AS bytes, sum(n) AS flows
FROM (
  SELECT src_addr AS host, src_pool AS pool, sum(bytes) AS sent, toUInt64(0) AS received, {F} AS n FROM {T} WHERE {W} GROUP BY host, pool
  UNION ALL
  SELECT dst_addr AS host, dst_pool AS pool, toUInt64(0) AS sent, sum(bytes) AS received, {F} AS n FROM {T} WHERE {W} GROUP BY host, pool
) GROUP BY host ORDER BY bytes DESC, address LIMIT {limit:UInt32}`, sources: []source{srcHosts, srcConversations}},
	// A conversation's application is added by conversationApps, for the
	// rows shown only: per pair in this query it costs 10 to 40 times the
	// query (a top-K state per address pair, millions of pairs a day).
	"conversations": {bySource: map[string]string{
		// Each listed day's top pairs in the filter's lists (a pair in
		// both pool lists once: max), and as many of the days not listed
		// (today) from conversations_1h; the application with the most
		// bytes of a listed day, or of an hour of the others (grouping
		// today's rows by application too cost four times as much).
		"top_conversations_1d": `SELECT replaceOne(toString(src_addr), '::ffff:', '') AS src, replaceOne(toString(dst_addr), '::ffff:', '') AS dst,
  toLowCardinality(argMax(application, b)) AS application, sum(b) AS bytes, sum(p) AS packets, sum(n) AS flows
FROM (
  SELECT src_addr, dst_addr, argMax(application, bytes) AS application, max(bytes) AS b, max(packets) AS p, max(flows) AS n
  FROM top_conversations_1d WHERE list IN {lists:Array(String)} AND {W} GROUP BY timestamp, src_addr, dst_addr
  UNION ALL
  (SELECT src_addr, dst_addr, argMax(protocol, bytes) AS application, sum(bytes) AS b, sum(packets) AS p, sum(flows) AS n
  FROM conversations_1h WHERE {W} AND {REST}
  GROUP BY src_addr, dst_addr ORDER BY b DESC, src_addr, dst_addr LIMIT {top:UInt32})
) GROUP BY src_addr, dst_addr ORDER BY bytes DESC, src, dst LIMIT {limit:UInt32}`},
		sql: `SELECT replaceOne(toString(src_addr), '::ffff:', '') AS src, replaceOne(toString(dst_addr), '::ffff:', '') AS dst,
  sum(bytes) AS bytes, sum(packets) AS packets, {F} AS flows
FROM {T} WHERE {W} GROUP BY src_addr, dst_addr ORDER BY bytes DESC, src, dst LIMIT {limit:UInt32}`, sources: []source{srcTopConversations, srcConversations}},
	"countries": {sql: `SELECT country, sum(sent) AS bytes_sent, sum(received) AS bytes_received, sum(sent) + sum(received) AS bytes, sum(n) AS flows
FROM (
  SELECT src_country AS country, sum(bytes) AS sent, toUInt64(0) AS received, {F} AS n FROM {T} WHERE {W} AND src_country != '' GROUP BY country
  UNION ALL
  SELECT dst_country AS country, toUInt64(0) AS sent, sum(bytes) AS received, {F} AS n FROM {T} WHERE {W} AND dst_country != '' GROUP BY country
) GROUP BY country ORDER BY bytes DESC, country LIMIT {limit:UInt32}`, sources: []source{srcHourly, srcConversations}},
	"asns": {sql: `SELECT asn, any(name) AS name, sum(sent) AS bytes_sent, sum(received) AS bytes_received, sum(sent) + sum(received) AS bytes, sum(n) AS flows
FROM (
  SELECT src_as AS asn, any(src_as_name) AS name, sum(bytes) AS sent, toUInt64(0) AS received, {F} AS n FROM {T} WHERE {W} AND src_as != 0 GROUP BY asn
  UNION ALL
  SELECT dst_as AS asn, any(dst_as_name) AS name, toUInt64(0) AS sent, sum(bytes) AS received, {F} AS n FROM {T} WHERE {W} AND dst_as != 0 GROUP BY asn
) GROUP BY asn ORDER BY bytes DESC, asn LIMIT {limit:UInt32}`, sources: []source{srcHourly}},
	// The clients' uniq states are merged for the names shown only: over a
	// month, merging every name's (a state per day, exporter and pools) is
	// most of the query's time.
	"servers": {sql: `SELECT server_name, topKWeighted(1)(protocol, {T}.bytes)[1] AS application, sum(bytes) AS bytes, {F} AS flows, {U} AS clients
FROM {T} WHERE {W} AND server_name IN (
  SELECT server_name FROM {T} WHERE {W} AND server_name != '' GROUP BY server_name ORDER BY sum(bytes) DESC, server_name LIMIT {limit:UInt32})
GROUP BY server_name ORDER BY bytes DESC, server_name LIMIT {limit:UInt32}`, sources: []source{srcServersDaily, srcServers}},
}

// TopDims are the top page's tables.
var TopDims = []string{"applications", "talkers", "conversations", "countries", "asns", "servers"}

func (c *Console) top(r *http.Request) (any, error) {
	f, err := c.filter(r)
	if err != nil {
		return nil, err
	}
	dim := r.URL.Query().Get("dim")
	if dim == "" {
		dim = "applications"
	}
	t, ok := topSQL[dim]
	if !ok {
		return nil, badf("dim %q is not one of %s", dim, strings.Join(TopDims, ", "))
	}
	limit, err := limitOf(r, 20, 1000)
	if err != nil {
		return nil, err
	}
	src, sql := f.pick(c.rollups(t.sources...)...), t.sql
	if src == srcFlows && t.rollup != "" && f.can(srcMinute) && !c.rawOnly {
		src, sql = srcMinute, t.rollup
	}
	if q, ok := t.bySource[src.table]; ok {
		sql = q
	}
	f = f.aligned(src.unit)
	table := src.table
	p := params{"limit": strconv.Itoa(limit)}
	uniq := "uniq(src_addr)"
	if src == srcServers || src == srcServersDaily {
		uniq = "uniqMerge(clients)"
	}
	sql = strings.ReplaceAll(sqlOf(sql, src, f.where(p), ""), "{U}", uniq)
	var d time.Duration
	if src == srcTopConversations {
		p["top"] = strconv.Itoa(schema.TopConversations)
		p["lists"] = "['" + strings.Join(f.topLists(), "','") + "']"
		rest, err := c.unlisted(r.Context(), f, p, &d)
		if err != nil {
			return nil, err
		}
		sql = strings.ReplaceAll(sql, "{REST}", rest)
	}
	res, err := c.run(r.Context(), sql, p, &d)
	if err != nil {
		return nil, err
	}
	out := res.table()
	m := meta(table, f, 0, d)
	if src == srcTopConversations {
		m.Note = fmt.Sprintf("each day's top %d address pairs summed: a pair's bytes on the days it was not among them are missing", schema.TopConversations)
	} else if dim == "conversations" {
		if out, err = c.conversationApps(r.Context(), src, f, out, &d); err != nil {
			return nil, err
		}
	}
	m.ElapsedMS = float64(d.Microseconds()) / 1000
	return TopResult{Meta: m, Dim: dim, Table: out}, nil
}

// unlisted is the condition on conversations_1h's rows of the days in f
// (whole days) that top_conversations_1d has no list for. The view lists
// the most recent complete day missing first, and a day without flows
// gets no list, so the days with flows and no list are those after the
// last listed (today, and yesterday until the next refresh) and, while a
// migrated store catches up, those before the first: two bounds on the
// timestamp, which the primary key answers.
func (c *Console) unlisted(ctx context.Context, f Filter, p params, d *time.Duration) (string, error) {
	res, err := c.run(ctx, "SELECT toUInt32(min(timestamp)), toUInt32(max(timestamp)), count() FROM top_conversations_1d WHERE list = 'all' AND "+
		"timestamp >= toDateTime({from:UInt32}) AND timestamp < toDateTime({to:UInt32})", p, d)
	if err != nil {
		return "", err
	}
	if len(res.Data) != 1 || res.num(0, 2) == 0 {
		return "1", nil
	}
	p["listed_from"] = res.str(0, 0)
	p["listed_to"] = strconv.FormatInt(int64(res.num(0, 1))+86400, 10)
	return "(timestamp < toDateTime({listed_from:UInt32}) OR timestamp >= toDateTime({listed_to:UInt32}))", nil
}

// conversationAppsSQL is the application with the most bytes of each
// given address pair (ties: the greatest name), the same from flows and
// from conversations_1h.
const conversationAppsSQL = `SELECT replaceOne(toString(src_addr), '::ffff:', '') AS src, replaceOne(toString(dst_addr), '::ffff:', '') AS dst,
  argMax(protocol, (pb, protocol)) AS application
FROM (SELECT src_addr, dst_addr, protocol, sum(bytes) AS pb FROM {T}
  WHERE {W} AND (src_addr, dst_addr) IN arrayZip({srcs:Array(IPv6)}, {dsts:Array(IPv6)}) GROUP BY src_addr, dst_addr, protocol)
GROUP BY src_addr, dst_addr`

// conversationApps inserts the application column after src and dst.
func (c *Console) conversationApps(ctx context.Context, s source, f Filter, t Table, d *time.Duration) (Table, error) {
	var srcs, dsts []string
	for _, row := range t.Rows {
		a, err1 := netip.ParseAddr(fmt.Sprint(row[0]))
		b, err2 := netip.ParseAddr(fmt.Sprint(row[1]))
		if err1 != nil || err2 != nil {
			return t, fmt.Errorf("conversation %v -> %v: not addresses", row[0], row[1])
		}
		srcs, dsts = append(srcs, "'"+mapped(a)+"'"), append(dsts, "'"+mapped(b)+"'")
	}
	apps := map[[2]string]string{}
	if len(t.Rows) > 0 {
		p := params{"srcs": "[" + strings.Join(srcs, ",") + "]", "dsts": "[" + strings.Join(dsts, ",") + "]"}
		res, err := c.run(ctx, sqlOf(conversationAppsSQL, s, f.where(p), ""), p, d)
		if err != nil {
			return t, err
		}
		for i := range res.Data {
			apps[[2]string{res.str(i, 0), res.str(i, 1)}] = res.str(i, 2)
		}
	}
	t.Columns = slices.Insert(t.Columns, 2, "application")
	t.Types = slices.Insert(t.Types, 2, "LowCardinality(String)")
	for i, row := range t.Rows {
		t.Rows[i] = slices.Insert(row, 2, any(apps[[2]string{fmt.Sprint(row[0]), fmt.Sprint(row[1])}]))
	}
	return t, nil
}

// Host is one address: its pool and place, volume over time, applications
// and peers. Rows where it is the source and rows where it is the
// destination are read by two queries joined by UNION ALL, so that each
// can use its address's bloom filter index.
type Host struct {
	Meta
	Address      string    `json:"address"`
	Pool         string    `json:"pool"`
	Country      string    `json:"country"`
	ASName       string    `json:"as_name"`
	BytesSent    float64   `json:"bytes_sent"`
	BytesRecv    float64   `json:"bytes_received"`
	Flows        float64   `json:"flows"`
	FirstSeen    int64     `json:"first_seen"`
	LastSeen     int64     `json:"last_seen"`
	Times        []int64   `json:"times"`
	Sent         []float64 `json:"sent"`
	Received     []float64 `json:"received"`
	Applications Table     `json:"applications"`
	Peers        Table     `json:"peers"`
}

// hostRows is the host's rows seen from its side: out = 1 when it sent,
// n the flow records a row stands for.
const hostRows = `(
  SELECT timestamp, 1 AS out, dst_addr AS peer, src_pool AS pool, dst_pool AS peer_pool, src_country AS country, src_as_name AS as_name,
    protocol, app_category, bytes, packets, {N} AS n FROM {T} WHERE {W} AND src_addr = {host:IPv6}
  UNION ALL
  SELECT timestamp, 0 AS out, src_addr AS peer, dst_pool AS pool, src_pool AS peer_pool, dst_country AS country, dst_as_name AS as_name,
    protocol, app_category, bytes, packets, {N} AS n FROM {T} WHERE {W} AND dst_addr = {host:IPv6} AND src_addr != {host:IPv6}
)`

func (c *Console) host(r *http.Request) (any, error) {
	f, err := c.filter(r)
	if err != nil {
		return nil, err
	}
	s := r.URL.Query().Get("host")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil, badf("host %q is not an IP address", s)
	}
	a = a.WithZone("")
	// Over a week or more, conversations_1h: first and last seen are then
	// the start of an hour.
	step := f.step()
	src := chartSource(f, step, c.rollups(srcConversations)...)
	f = f.aligned(step)
	p := params{"host": mapped(a), "step": strconv.FormatInt(step, 10), "limit": "20"}
	rows := sqlOf(hostRows, src, f.where(p), "")
	h := Host{Address: a.Unmap().String()}
	var d time.Duration
	ctx := r.Context()
	sum, err := c.run(ctx, `SELECT anyIf(pool, pool != '') AS pool, anyIf(country, country != '') AS country, anyIf(as_name, as_name != '') AS as_name,
  sumIf(bytes, out = 1) AS sent, sumIf(bytes, out = 0) AS received, sum(n) AS flows,
  toUInt32(min(timestamp)) AS first, toUInt32(max(timestamp)) AS last FROM `+rows, p, &d)
	if err != nil {
		return nil, err
	}
	if len(sum.Data) == 1 {
		h.Pool, h.Country, h.ASName = sum.str(0, 0), sum.str(0, 1), sum.str(0, 2)
		h.BytesSent, h.BytesRecv, h.Flows = sum.num(0, 3), sum.num(0, 4), sum.num(0, 5)
		if h.Flows > 0 {
			h.FirstSeen, h.LastSeen = int64(sum.num(0, 6)), int64(sum.num(0, 7))
		}
	}
	series, err := c.run(ctx, `SELECT toUInt32(toStartOfInterval(timestamp, toIntervalSecond({step:UInt32}))) AS t,
  sumIf(bytes, out = 1) AS sent, sumIf(bytes, out = 0) AS received FROM `+rows+` GROUP BY t ORDER BY t`, p, &d)
	if err != nil {
		return nil, err
	}
	n := int((f.To.Unix() - f.From.Unix()) / step)
	h.Sent, h.Received = make([]float64, n), make([]float64, n)
	for i := range n {
		h.Times = append(h.Times, f.From.Unix()+int64(i)*step)
	}
	for i := range series.Data {
		if b := int((int64(series.num(i, 0)) - f.From.Unix()) / step); b >= 0 && b < n {
			h.Sent[b] += series.num(i, 1)
			h.Received[b] += series.num(i, 2)
		}
	}
	apps, err := c.run(ctx, `SELECT protocol AS application, any(app_category) AS category, sumIf(bytes, out = 1) AS bytes_sent,
  sumIf(bytes, out = 0) AS bytes_received, sum(bytes) AS total_bytes, sum(n) AS flows FROM `+rows+`
GROUP BY application ORDER BY total_bytes DESC, application LIMIT {limit:UInt32}`, p, &d)
	if err != nil {
		return nil, err
	}
	peers, err := c.run(ctx, `SELECT replaceOne(toString(peer), '::ffff:', '') AS peer, any(peer_pool) AS pool,
  sumIf(bytes, out = 1) AS bytes_sent, sumIf(bytes, out = 0) AS bytes_received, sum(bytes) AS total_bytes, sum(n) AS flows,
  arraySort(groupUniqArray(4)(protocol)) AS applications FROM `+rows+`
GROUP BY peer ORDER BY total_bytes DESC, peer LIMIT {limit:UInt32}`, p, &d)
	if err != nil {
		return nil, err
	}
	h.Applications, h.Peers = apps.table(), peers.table()
	h.Meta = meta(src.table, f, step, d)
	return h, nil
}

var (
	severities = map[string]bool{"info": true, "low": true, "medium": true, "high": true, "critical": true}
	alertKinds = map[string]bool{"policy": true, "new_edge": true, "dns_tunnel": true, "dns_resolver": true, "saas": true}
)

// Alerts is the alerts page: the newest alerts and counts by severity.
type Alerts struct {
	Meta
	BySeverity map[string]float64 `json:"by_severity"`
	Table
}

// alerts reads the alerts table; of the filter bar it takes the range,
// pool, application and address (alerts have no exporter or port).
func (c *Console) alerts(r *http.Request) (any, error) {
	f, err := c.filter(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	limit, err := limitOf(r, 200, 5000)
	if err != nil {
		return nil, err
	}
	af := f
	af.Exporter, af.Port = netip.Addr{}, -1
	p := params{"limit": strconv.Itoa(limit)}
	where := af.where(p)
	if s := q.Get("severity"); s != "" {
		if !severities[s] {
			return nil, badf("severity %q is not info, low, medium, high or critical", s)
		}
		p["severity"] = s
		where += " AND severity = {severity:String}"
	}
	if s := q.Get("kind"); s != "" {
		if !alertKinds[s] {
			return nil, badf("kind %q is not policy, new_edge, dns_tunnel, dns_resolver or saas", s)
		}
		p["kind"] = s
		where += " AND kind = {kind:String}"
	}
	var d time.Duration
	res, err := c.run(r.Context(), `SELECT toUInt32(timestamp) AS time, toUInt32(last_seen) AS last_seen, kind, rule, severity,
  replaceOne(toString(src_addr), '::ffff:', '') AS src, replaceOne(toString(dst_addr), '::ffff:', '') AS dst,
  src_pool, dst_pool, protocol AS application, evidence, count
FROM alerts WHERE `+where+` ORDER BY timestamp DESC, kind, src LIMIT {limit:UInt32}`, p, &d)
	if err != nil {
		return nil, err
	}
	sev, err := c.run(r.Context(), `SELECT severity, count() FROM alerts WHERE `+where+` GROUP BY severity`, p, &d)
	if err != nil {
		return nil, err
	}
	out := Alerts{Meta: meta("alerts", f, 0, d), BySeverity: map[string]float64{}, Table: res.table()}
	for i := range sev.Data {
		out.BySeverity[sev.str(i, 0)] = sev.num(i, 1)
	}
	return out, nil
}

// Exporters is the exporters page: the collector's view of each exporter
// (Deps.Exporters) and the store's (records per second over the last five
// minutes, sources, sampling).
type Exporters struct {
	Meta
	Collector any   `json:"collector"`
	Store     Table `json:"store"`
}

func (c *Console) exporters(r *http.Request) (any, error) {
	out := Exporters{}
	if c.deps.Exporters != nil {
		out.Collector = c.deps.Exporters()
	}
	now := c.deps.Now().Truncate(time.Second)
	p := params{"now": strconv.FormatInt(now.Unix(), 10)}
	var d time.Duration
	res, err := c.run(r.Context(), `SELECT replaceOne(toString(exporter_address), '::ffff:', '') AS address,
  arraySort(groupUniqArray(flow_source)) AS sources,
  toUInt32(max(timestamp)) AS last_minute,
  round(sumIf(flows, timestamp >= toDateTime({now:UInt32}) - 300) / 300, 2) AS records_per_s,
  sum(flows) AS flows_1h, sum(bytes) AS bytes_1h
FROM flows_1m WHERE timestamp >= toDateTime({now:UInt32}) - 3600 AND timestamp <= toDateTime({now:UInt32})
GROUP BY exporter_address ORDER BY address`, p, &d)
	if err != nil {
		return nil, err
	}
	samp, err := c.run(r.Context(), `SELECT replaceOne(toString(exporter_address), '::ffff:', '') AS address,
  arrayStringConcat(arraySort(groupUniqArray(concat(toString(sampling_rate), ' (', if(sampling_rate_source = '', '?', sampling_rate_source), ')'))), ', ') AS sampling
FROM flows WHERE timestamp >= toDateTime({now:UInt32}) - 900 AND timestamp <= toDateTime({now:UInt32}) GROUP BY exporter_address`, p, &d)
	if err != nil {
		return nil, err
	}
	bySamp := map[string]string{}
	for i := range samp.Data {
		bySamp[samp.str(i, 0)] = samp.str(i, 1)
	}
	out.Store = res.table()
	out.Store.Columns = append(out.Store.Columns, "sampling")
	out.Store.Types = append(out.Store.Types, "String")
	for i, row := range out.Store.Rows {
		out.Store.Rows[i] = append(row, bySamp[res.str(i, 0)])
	}
	out.Meta = Meta{Table: "flows_1m", From: now.Unix() - 3600, To: now.Unix(), ElapsedMS: float64(d.Microseconds()) / 1000}
	return out, nil
}

// Options are the filter bar's suggestions over its range: exporters,
// applications and pools from flows_1h over a day or more; under a day
// exporters and applications from flows_1m, pools from flows.
type Options struct {
	Exporters    []string `json:"exporters"`
	Applications []string `json:"applications"`
	Pools        []string `json:"pools"`
	ElapsedMS    float64  `json:"elapsed_ms"`
}

func (c *Console) options(r *http.Request) (any, error) {
	f, err := c.filter(r)
	if err != nil {
		return nil, err
	}
	src := Filter{From: f.From, To: f.To, Port: -1}.pick(c.rollups(srcHourly, srcMinute)...)
	if src == srcFlows {
		src = srcMinute // options are suggestions: a range under an hour reads the minute rollup too
	}
	f = f.aligned(src.unit)
	p := params{}
	w := Filter{From: f.From, To: f.To, Port: -1}.where(p)
	var d time.Duration
	ctx := r.Context()
	var out Options
	list := func(sql string, dst *[]string) error {
		res, err := c.run(ctx, sql, p, &d)
		if err != nil {
			return err
		}
		*dst = []string{}
		for i := range res.Data {
			*dst = append(*dst, res.str(i, 0))
		}
		return nil
	}
	if err := list(`SELECT replaceOne(toString(exporter_address), '::ffff:', '') AS a FROM `+src.table+` WHERE `+w+` GROUP BY exporter_address ORDER BY a LIMIT 1000`, &out.Exporters); err != nil {
		return nil, err
	}
	if err := list(`SELECT protocol FROM `+src.table+` WHERE `+w+` GROUP BY protocol ORDER BY sum(bytes) DESC, protocol LIMIT 500`, &out.Applications); err != nil {
		return nil, err
	}
	// Pools: flows_1h keeps them; otherwise the last day of flows.
	pools, pp := src, p
	if src != srcHourly {
		day := Filter{From: f.To.Add(-24 * time.Hour), To: f.To, Port: -1}
		if f.From.After(day.From) {
			day.From = f.From
		}
		pools, pp = srcFlows, params{}
		w = day.where(pp)
	}
	res, err := c.run(ctx, `SELECT p FROM (SELECT arrayJoin([src_pool, dst_pool]) AS p FROM `+pools.table+` WHERE `+w+`) WHERE p != '' GROUP BY p ORDER BY p LIMIT 1000`, pp, &d)
	if err != nil {
		return nil, err
	}
	out.Pools = []string{}
	for i := range res.Data {
		out.Pools = append(out.Pools, res.str(i, 0))
	}
	out.ElapsedMS = float64(d.Microseconds()) / 1000
	return out, nil
}

// errStatus is an error with an HTTP status (the SQL page).
type errStatus struct {
	status int
	err    error
}

func (e *errStatus) Error() string { return e.err.Error() }

func statusErr(status int, format string, a ...any) error {
	return &errStatus{status, fmt.Errorf(format, a...)}
}

func statusOf(err error) int {
	var s *errStatus
	if errors.As(err, &s) {
		return s.status
	}
	return http.StatusBadGateway
}
