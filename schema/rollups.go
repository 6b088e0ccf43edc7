package schema

import (
	"context"
	"fmt"
	"strings"
)

// Hourly rollups (schema version 6). flows_1m answers the overview and the
// applications table up to a day; over a week or a month it holds too many
// rows (one per minute and key), and it keeps no address, pool or server
// name, so the talkers, conversations, server names and host pages read
// every flow of the range. These three tables, each filled by a
// materialized view on every insert into flows, answer them from about one
// row per hour and key instead (docs/benchmarks.md §Web console):
//
//   - flows_1h: flows_1m's keys plus category, pools and countries (the
//     overview, applications, countries and ASes over long ranges, with
//     the pool filter);
//   - conversations_1h: per exporter, address pair, application and pools
//     (talkers, conversations, the host page, with the address filter);
//   - servers_1h: per server name, with the clients' uniq() state.
//
// Daily rollups (schema version 7) answer the pages whose hourly rows
// barely fold: when address pairs seldom repeat within an hour,
// conversations_1h holds about a row per flow, and a month of talkers
// grouped tens of millions of them. Each is filled from an hourly rollup:
//
//   - hosts_1d: one row per day, address, side (sent: 1 when the address
//     was the source), exporter, application and the pair's pools, from
//     conversations_1h (talkers over a week or more). A view on inserts
//     (in cascade from conversations_1h's) cost an insert of distinct
//     pairs 0.7x of its rate, more than every other rollup but
//     conversations_1h (BenchmarkInsertRollups): a refreshable view adds
//     the complete hours instead (refreshed), and the console reads the
//     hours after its filled_to from conversations_1h;
//   - servers_1d: servers_1h per day (server names over a week or more),
//     by a view on servers_1h's inserts (the cascade costs the insert only
//     the hourly rows, already summed, and few: a third of the flows have
//     a name).
//
// They are AggregatingMergeTree tables of SimpleAggregateFunction columns,
// so that a plain sum() or any() reads them, and the servers rollups can
// keep a uniq state beside their sums. Rows of one key may not be merged
// yet: always GROUP BY and sum().
type rollup struct {
	name string
	doc  string
	// unit is the rows' time unit in seconds (3600 or 86400); timestamp is
	// its start, in UTC.
	unit int64
	// from is the table the view reads: flows, or an hourly rollup.
	from string
	// keys are the columns the rollup groups by, after the timestamp (its
	// ORDER BY): flows columns, and host and sent for a sides rollup.
	keys []string
	// values are flows columns kept with any(): functions of the keys in
	// practice (an application's category, an address's country), so
	// keeping them adds no rows.
	values []string
	// where limits the rows summed ("" for all).
	where string
	// clients keeps uniqState(src_addr) as `clients`.
	clients bool
	// sides makes one row of each address of a pair row: host is the
	// address, sent 1 for the source and 0 for the destination.
	sides bool
	// perAddress rollups expire with the flows (TTLDays): they hold
	// addresses, as flows do. The others are kept as long as flows_1m.
	perAddress bool
	// indexes are data-skipping indexes, as in flows.
	indexes []string
	// refreshed rollups are filled by a refreshable view adding the
	// complete hours of r.from after the rows' filled_to (refreshView),
	// not by a view on inserts.
	refreshed bool
}

var hourlyRollups = []rollup{
	{
		name:   "flows_1h",
		doc:    "1-hour rollup: flows_1m's keys with the category, pools and countries.",
		unit:   3600,
		from:   "flows",
		keys:   append(append([]string(nil), rollupKeys...), "app_category", "src_pool", "dst_pool", "src_country", "dst_country"),
		values: []string{"src_as_name", "dst_as_name"},
	},
	{
		name:       "conversations_1h",
		doc:        "1-hour rollup per exporter, address pair, application and pools.",
		unit:       3600,
		from:       "flows",
		keys:       []string{"exporter_address", "src_addr", "dst_addr", "protocol", "src_pool", "dst_pool"},
		values:     []string{"app_category", "src_country", "dst_country", "src_as_name", "dst_as_name"},
		perAddress: true,
		indexes: []string{
			"INDEX idx_src_addr src_addr TYPE bloom_filter(0.01) GRANULARITY 4",
			"INDEX idx_dst_addr dst_addr TYPE bloom_filter(0.01) GRANULARITY 4",
		},
	},
	{
		name:       "servers_1h",
		doc:        "1-hour rollup per TLS/QUIC server name or HTTP host, with the clients' uniq() state.",
		unit:       3600,
		from:       "flows",
		keys:       []string{"exporter_address", "server_name", "protocol", "src_pool", "dst_pool"},
		where:      "server_name != ''",
		clients:    true,
		perAddress: true,
	},
}

var dailyRollups = []rollup{
	{
		name:       "hosts_1d",
		doc:        "1-day rollup per address and side (sent: 1 as the source), exporter, application and the pair's pools, from conversations_1h.",
		unit:       86400,
		from:       "conversations_1h",
		keys:       []string{"exporter_address", "host", "sent", "protocol", "src_pool", "dst_pool"},
		sides:      true,
		perAddress: true,
		refreshed:  true,
	},
	{
		name:       "servers_1d",
		doc:        "1-day rollup of servers_1h.",
		unit:       86400,
		from:       "servers_1h",
		keys:       []string{"exporter_address", "server_name", "protocol", "src_pool", "dst_pool"},
		clients:    true,
		perAddress: true,
	},
}

// allRollups are the hourly and daily rollups, each after the one it reads.
func allRollups() []rollup { return append(append([]rollup(nil), hourlyRollups...), dailyRollups...) }

// HourlyRollups names the hourly rollup tables, for the docs and tests.
func HourlyRollups() []string { return names(hourlyRollups) }

// DailyRollups names the daily rollup tables, for the docs and tests.
func DailyRollups() []string { return names(dailyRollups) }

func names(rs []rollup) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.name)
	}
	return out
}

func flowsColumn(name string) Column {
	for _, c := range Columns {
		if c.Name == name {
			return c
		}
	}
	panic("schema: rollup of unknown column " + name)
}

// keyType is the type of one of r's keys.
func (r rollup) keyType(k string) string {
	switch {
	case r.sides && k == "host":
		return "IPv6"
	case r.sides && k == "sent":
		return "UInt8"
	}
	return flowsColumn(k).Type
}

// create is the DDL of r's table (r.name_local on a cluster) and, on a
// cluster, of its read-only Distributed table.
func (r rollup) create(cfg TableConfig) []string {
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS " + cfg.local(r.name).ref + cfg.onCluster() + " (\n")
	fmt.Fprintf(&b, "  `timestamp` DateTime COMMENT 'Start of the %s' CODEC(DoubleDelta, LZ4),\n", map[int64]string{3600: "hour", 86400: "day (UTC)"}[r.unit])
	for _, k := range r.keys {
		fmt.Fprintf(&b, "  `%s` %s,\n", k, r.keyType(k))
	}
	for _, v := range r.values {
		c := flowsColumn(v)
		fmt.Fprintf(&b, "  `%s` SimpleAggregateFunction(any, %s),\n", v, c.Type)
	}
	b.WriteString("  `bytes` SimpleAggregateFunction(sum, UInt64),\n  `packets` SimpleAggregateFunction(sum, UInt64),\n")
	b.WriteString("  `flows` SimpleAggregateFunction(sum, UInt64) COMMENT 'Number of flow records summed'")
	if r.clients {
		b.WriteString(",\n  `clients` AggregateFunction(uniq, IPv6) COMMENT 'uniqState(src_addr): read with uniqMerge(clients)'")
	}
	if r.refreshed {
		fmt.Fprintf(&b, ",\n  `filled_to` SimpleAggregateFunction(max, DateTime) COMMENT 'The rows hold %s''s hours before this one (on the table''s last day)'", r.from)
	}
	for _, ix := range r.indexes {
		b.WriteString(",\n  " + ix)
	}
	b.WriteString("\n) ENGINE = " + cfg.engine("AggregatingMergeTree", r.name, "") + "\nPARTITION BY toYYYYMM(timestamp)\n")
	b.WriteString("ORDER BY (timestamp, " + strings.Join(r.keys, ", ") + ")\n")
	days := cfg.RollupTTLDays
	if r.perAddress {
		days = cfg.TTLDays
	}
	if t := ttl(days); t != "" {
		b.WriteString(t + "\n")
	}
	b.WriteString("SETTINGS ttl_only_drop_parts = 1, " + cfg.dedupSetting() + " = " + DedupWindow)
	return append([]string{b.String()}, cfg.distributed(r.name, "")...)
}

// selectFrom is the SELECT that sums the rows of table (r.from, or its
// local table on a cluster) into r's rows: the materialized view's, and
// the backfill's.
func (r rollup) selectFrom(table string) string {
	keys := strings.Join(r.keys, ", ")
	ts := "toStartOfHour(timestamp)"
	if r.unit == 86400 {
		ts = "toDateTime(intDiv(toUInt32(timestamp), 86400) * 86400)" // UTC days, whatever the server's time zone
	}
	s := "SELECT " + ts + " AS timestamp, " + keys
	for _, v := range r.values {
		s += ", any(" + v + ") AS " + v
	}
	if r.from == "flows" {
		s += ",\n  sum(bytes) AS bytes, sum(packets) AS packets, toUInt64(count()) AS flows"
		if r.clients {
			s += ", uniqState(src_addr) AS clients"
		}
	} else {
		s += ",\n  sum(bytes) AS bytes, sum(packets) AS packets, sum(flows) AS flows"
		if r.clients {
			s += ", uniqMergeState(clients) AS clients"
		}
	}
	if r.refreshed {
		s += ", hi AS filled_to" // the refresh's end (refreshView)
	}
	s += "\nFROM " + table
	if r.sides {
		s += " ARRAY JOIN [src_addr, dst_addr] AS host, [toUInt8(1), toUInt8(0)] AS sent"
	}
	if r.where != "" {
		s += " WHERE " + r.where
	}
	return s + " GROUP BY timestamp, " + keys
}

// RefreshHours is how long after an hour ends a refreshed rollup adds it
// (an hour: flows landing late, through a lagging Kafka consumer, still
// count); the console reads the hours after filled_to from the hourly
// rollup.
const RefreshHours = 1

// refreshView is the refreshable view filling a refreshed rollup: every 2
// minutes it adds r.from's complete hours after the rows' filled_to (the
// max of the table's last day), at most a day of them, so that a migrated
// store catches up a day a refresh without a long query; the next hour
// that holds rows starts it, so that days without flows are skipped. Rows
// of an hour already added that arrive later are not in r.
func (r rollup) refreshView(cfg TableConfig) string {
	table, from := cfg.local(r.name).ref, cfg.local(r.from).ref
	return "CREATE MATERIALIZED VIEW IF NOT EXISTS " + cfg.qualify(r.name+"_mv").ref + cfg.onCluster() +
		" REFRESH EVERY 2 MINUTE APPEND TO " + table + " AS\n" +
		"WITH " + FilledTo(table) + " AS w,\n" +
		"  (SELECT min(timestamp) FROM " + from + " WHERE timestamp >= w) AS lo,\n" +
		fmt.Sprintf("  least(lo + INTERVAL 1 DAY, toStartOfHour(now() - INTERVAL %d HOUR)) AS hi\n", RefreshHours) +
		r.selectFrom("(SELECT * FROM "+from+" WHERE timestamp >= lo AND timestamp < hi)") + backfillSettings
}

// FilledTo is the SQL scalar of where refreshed rollup table's rows end:
// the hours of its source from there on are not in it yet (the refresh
// view starts there; the console reads them from the source).
func FilledTo(table string) string {
	return "(SELECT max(filled_to) FROM " + table + " WHERE timestamp = (SELECT max(timestamp) FROM " + table + "))"
}

// view is the materialized view filling r from every insert into r.from
// (its local table into r_local on a cluster, so each shard sums its rows).
func (r rollup) view(cfg TableConfig) string {
	if r.refreshed {
		return r.refreshView(cfg)
	}
	return "CREATE MATERIALIZED VIEW IF NOT EXISTS " + cfg.qualify(r.name+"_mv").ref + cfg.onCluster() + " TO " + cfg.local(r.name).ref + " AS\n" +
		r.selectFrom(cfg.local(r.from).ref)
}

// hourlyRollupStatements is migration 6. On a single server (and the
// embedded store) each rollup is also filled from the flows already
// stored, before its view exists: the view is dropped and the table
// emptied first, so that a migration interrupted half way and run again
// counts no row twice. Rows inserted while the backfill runs are missed by
// the rollup (not doubled): stop the landers while `flowlens migrate`
// runs; the embedded store migrates before it accepts rows. On a cluster
// an INSERT ... SELECT reaches one shard only, so the rollups start empty
// and docs/scale-out.md gives the statement to run on each shard.
func hourlyRollupStatements(cfg TableConfig) []string { return rollupStatements(cfg, hourlyRollups) }

// dailyRollupStatements is migration 7, as migration 6 but filled from the
// hourly rollups.
func dailyRollupStatements(cfg TableConfig) []string {
	return append(rollupStatements(cfg, dailyRollups), topConversationsStatements(cfg)...)
}

// TopConversations is how many address pairs top_conversations_1d keeps
// a day in each of its lists.
const TopConversations = 1000

// TopConversationLists are top_conversations_1d's lists: a day's top pairs
// of all flows, and of the flows of each exporter, source pool,
// destination pool and application, so that a filter on one of these
// reads a list too. The list's key is in its column (exporter_address,
// src_pool, dst_pool or protocol), the others are empty.
var TopConversationLists = []string{"all", "exporter", "src_pool", "dst_pool", "application"}

// topConversationsStatements create top_conversations_1d: each complete
// UTC day's TopConversations address pairs with the most bytes, in each
// list, with the application with the most bytes of each. No view on
// inserts can keep a day's top pairs, and when pairs seldom repeat a month
// of conversations_1h holds about a row per flow, too many to group for a
// page: the console sums these lists for the conversations of a week or
// more (an approximation it says it makes). A refreshable view computes
// one missing day a refresh, the most recent first, so that a migrated
// store catches up in about an hour without a long query; a refresh with
// nothing to do reads conversations_1h's timestamps only. Flows that
// arrive for a day after its lists were made are not in them.
func topConversationsStatements(cfg TableConfig) []string {
	table, conv := cfg.local("top_conversations_1d"), cfg.local("conversations_1h")
	out := []string{"CREATE TABLE IF NOT EXISTS " + table.ref + cfg.onCluster() + " (\n" +
		"  `timestamp` DateTime COMMENT 'Start of the day (UTC)' CODEC(DoubleDelta, LZ4),\n" +
		"  `list` LowCardinality(String) COMMENT 'all, exporter, src_pool, dst_pool or application: whose top pairs',\n" +
		"  `exporter_address` IPv6 COMMENT 'The exporter list''s exporter',\n" +
		"  `src_pool` LowCardinality(String) COMMENT 'The src_pool list''s pool',\n" +
		"  `dst_pool` LowCardinality(String) COMMENT 'The dst_pool list''s pool',\n" +
		"  `protocol` LowCardinality(String) COMMENT 'The application list''s application',\n" +
		"  `src_addr` IPv6,\n  `dst_addr` IPv6,\n" +
		"  `application` LowCardinality(String) COMMENT 'The pair''s application with the most bytes that day (in the list)',\n" +
		"  `bytes` UInt64,\n  `packets` UInt64,\n  `flows` UInt64\n" +
		") ENGINE = " + cfg.engine("MergeTree", "top_conversations_1d", "") + "\nPARTITION BY toYYYYMM(timestamp)\n" +
		"ORDER BY (timestamp, list, exporter_address, src_pool, dst_pool, protocol, src_addr, dst_addr)\n" + ttl(cfg.TTLDays) +
		"\nSETTINGS ttl_only_drop_parts = 1"}
	out = append(out, cfg.distributed("top_conversations_1d", "")...)
	const today = "toDateTime(intDiv(toUInt32(now()), 86400) * 86400)"
	day := "toDateTime(intDiv(toUInt32(timestamp), 86400) * 86400)"
	// Each branch names its list's key columns l_*: an alias named as a
	// column would shadow it in the branch's own aggregates.
	branch := func(list, key, cols, where string) string {
		by, limitBy := "src_addr, dst_addr", ""
		if key != "" {
			by, limitBy = key+", "+by, " BY "+key
		}
		app := "argMax(protocol, pb)"
		if key == "protocol" {
			app = "protocol"
		}
		return fmt.Sprintf("  (SELECT '%s' AS list, %s, src_addr, dst_addr, %s AS application, sum(pb) AS bytes, sum(pp) AS packets, sum(pf) AS flows\n"+
			"  FROM day_rows%s GROUP BY %s ORDER BY bytes DESC, src_addr, dst_addr LIMIT %d%s)", list, cols, app, where, by, TopConversations, limitBy)
	}
	return append(out, "CREATE MATERIALIZED VIEW IF NOT EXISTS "+cfg.qualify("top_conversations_1d_mv").ref+cfg.onCluster()+
		" REFRESH EVERY 2 MINUTE APPEND TO "+table.ref+" AS\n"+
		"WITH (SELECT max(m) FROM (SELECT DISTINCT "+day+" AS m FROM "+conv.ref+" WHERE timestamp < "+today+")\n"+
		"    WHERE m NOT IN (SELECT DISTINCT timestamp FROM "+table.ref+")) AS d0,\n"+
		"  day_rows AS (SELECT exporter_address, src_pool, dst_pool, protocol, src_addr, dst_addr, sum(bytes) AS pb, sum(packets) AS pp, sum(flows) AS pf\n"+
		"    FROM "+conv.ref+" WHERE "+day+" = d0 GROUP BY exporter_address, src_pool, dst_pool, protocol, src_addr, dst_addr)\n"+
		"SELECT d0 AS timestamp, list, l_exporter AS exporter_address, l_src_pool AS src_pool, l_dst_pool AS dst_pool, l_protocol AS protocol,\n"+
		"  src_addr, dst_addr, application, bytes, packets, flows\nFROM (\n"+
		branch("all", "", "toIPv6('::') AS l_exporter, '' AS l_src_pool, '' AS l_dst_pool, '' AS l_protocol", "")+"\n  UNION ALL\n"+
		branch("exporter", "exporter_address", "exporter_address AS l_exporter, '' AS l_src_pool, '' AS l_dst_pool, '' AS l_protocol", "")+"\n  UNION ALL\n"+
		branch("src_pool", "src_pool", "toIPv6('::') AS l_exporter, src_pool AS l_src_pool, '' AS l_dst_pool, '' AS l_protocol", " WHERE src_pool != ''")+"\n  UNION ALL\n"+
		branch("dst_pool", "dst_pool", "toIPv6('::') AS l_exporter, '' AS l_src_pool, dst_pool AS l_dst_pool, '' AS l_protocol", " WHERE dst_pool != ''")+"\n  UNION ALL\n"+
		branch("application", "protocol", "toIPv6('::') AS l_exporter, '' AS l_src_pool, '' AS l_dst_pool, protocol AS l_protocol", "")+"\n"+
		")\nSETTINGS max_bytes_before_external_group_by = 1073741824")
}

func rollupStatements(cfg TableConfig, rs []rollup) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.create(cfg)...)
		if !cfg.clustered() && !r.refreshed { // a refreshed rollup's view fills it from the start
			out = append(out,
				"DROP VIEW IF EXISTS "+cfg.qualify(r.name+"_mv").ref,
				"TRUNCATE TABLE "+cfg.local(r.name).ref,
				"INSERT INTO "+cfg.local(r.name).ref+" "+r.selectFrom(cfg.local(r.from).ref)+backfillSettings)
		}
		out = append(out, r.view(cfg))
	}
	return out
}

// backfillSettings bound the backfill's memory: its GROUP BY spills to
// disk past 1 GiB (100 million flows needed 9.5 GB without it).
const backfillSettings = "\nSETTINGS max_bytes_before_external_group_by = 1073741824"

// Backfill is the statement filling rollup name from what a shard holds
// (flows, or the hourly rollup a daily one reads), for a cluster migrated
// to version 6 or 7 with flows already stored (run it on one replica of
// each shard, with the landers stopped, in the order of BackfilledRollups).
func Backfill(cfg TableConfig, name string) (string, error) {
	for _, r := range allRollups() {
		if r.name == name && r.refreshed {
			return "", fmt.Errorf("%s is filled by its refreshable view, not backfilled", name)
		} else if r.name == name {
			return "INSERT INTO " + cfg.local(r.name).ref + " " + r.selectFrom(cfg.local(r.from).ref) + backfillSettings, nil
		}
	}
	return "", fmt.Errorf("no rollup %q (have %s)", name, strings.Join(AllRollups(), ", "))
}

// AllRollups names the hourly and daily rollups, each after the one it
// reads.
func AllRollups() []string { return names(allRollups()) }

// BackfilledRollups names the rollups filled by views on inserts (those a
// migrated cluster backfills), each after the one it reads.
func BackfilledRollups() []string {
	var out []string
	for _, r := range allRollups() {
		if !r.refreshed {
			out = append(out, r.name)
		}
	}
	return out
}

// CatchUpDaily refreshes the refreshable views (hosts_1d_mv and
// top_conversations_1d_mv) until a refresh adds nothing (each adds a day
// at most), instead of waiting for their schedule: for tests and
// benchmarks.
func CatchUpDaily(ctx context.Context, db DB, cfg TableConfig) error {
	probe := "SELECT toString(max(filled_to)) || '/' || toString((SELECT uniqExact(timestamp) FROM " + cfg.local("top_conversations_1d").ref + ")) FROM " + cfg.local("hosts_1d").ref
	views := []string{cfg.qualify("hosts_1d_mv").ref, cfg.qualify("top_conversations_1d_mv").ref}
	for range 2 * 366 {
		before, err := db.QueryStrings(ctx, probe)
		if err != nil {
			return err
		}
		for _, v := range views {
			if err := db.Exec(ctx, "SYSTEM REFRESH VIEW "+v); err != nil {
				return err
			}
			if err := db.Exec(ctx, "SYSTEM WAIT VIEW "+v); err != nil {
				return err
			}
		}
		after, err := db.QueryStrings(ctx, probe)
		if err != nil {
			return err
		}
		if len(before) == 1 && len(after) == 1 && before[0] == after[0] {
			return nil
		}
	}
	return fmt.Errorf("%s: still refreshing after %d days", strings.Join(views, ", "), 2*366)
}
