package schema

import (
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
// They are AggregatingMergeTree tables of SimpleAggregateFunction columns,
// so that a plain sum() or any() reads them, and servers_1h can keep a
// uniq state beside its sums. Rows of one key may not be merged yet:
// always GROUP BY and sum().
type rollup struct {
	name string
	doc  string
	// keys are the flows columns the rollup groups by, after the hour
	// (its ORDER BY).
	keys []string
	// values are flows columns kept with any(): functions of the keys in
	// practice (an application's category, an address's country), so
	// keeping them adds no rows.
	values []string
	// where limits the flows rows summed ("" for all).
	where string
	// clients keeps uniqState(src_addr) as `clients`.
	clients bool
	// perAddress rollups expire with the flows (TTLDays): they hold
	// addresses, as flows do. The others are kept as long as flows_1m.
	perAddress bool
	// indexes are data-skipping indexes, as in flows.
	indexes []string
}

var hourlyRollups = []rollup{
	{
		name:   "flows_1h",
		doc:    "1-hour rollup: flows_1m's keys with the category, pools and countries.",
		keys:   append(append([]string(nil), rollupKeys...), "app_category", "src_pool", "dst_pool", "src_country", "dst_country"),
		values: []string{"src_as_name", "dst_as_name"},
	},
	{
		name:       "conversations_1h",
		doc:        "1-hour rollup per exporter, address pair, application and pools.",
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
		keys:       []string{"exporter_address", "server_name", "protocol", "src_pool", "dst_pool"},
		where:      "server_name != ''",
		clients:    true,
		perAddress: true,
	},
}

// HourlyRollups names the hourly rollup tables, for the docs and tests.
func HourlyRollups() []string {
	var out []string
	for _, r := range hourlyRollups {
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

// create is the DDL of r's table (r.name_local on a cluster) and, on a
// cluster, of its read-only Distributed table.
func (r rollup) create(cfg TableConfig) []string {
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS " + cfg.local(r.name).ref + cfg.onCluster() + " (\n")
	b.WriteString("  `timestamp` DateTime COMMENT 'Start of the hour' CODEC(DoubleDelta, LZ4),\n")
	for _, k := range r.keys {
		c := flowsColumn(k)
		fmt.Fprintf(&b, "  `%s` %s,\n", k, c.Type)
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

// selectFrom is the SELECT that sums flows rows of table into r's rows:
// the materialized view's, and the backfill's.
func (r rollup) selectFrom(table string) string {
	keys := strings.Join(r.keys, ", ")
	s := "SELECT toStartOfHour(timestamp) AS timestamp, " + keys
	for _, v := range r.values {
		s += ", any(" + v + ") AS " + v
	}
	s += ",\n  sum(bytes) AS bytes, sum(packets) AS packets, toUInt64(count()) AS flows"
	if r.clients {
		s += ", uniqState(src_addr) AS clients"
	}
	s += "\nFROM " + table
	if r.where != "" {
		s += " WHERE " + r.where
	}
	return s + " GROUP BY timestamp, " + keys
}

// view is the materialized view filling r from every insert into flows
// (flows_local into r_local on a cluster, so each shard sums its rows).
func (r rollup) view(cfg TableConfig) string {
	return "CREATE MATERIALIZED VIEW IF NOT EXISTS " + cfg.qualify(r.name+"_mv").ref + cfg.onCluster() + " TO " + cfg.local(r.name).ref + " AS\n" +
		r.selectFrom(cfg.local("flows").ref)
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
func hourlyRollupStatements(cfg TableConfig) []string {
	var out []string
	for _, r := range hourlyRollups {
		out = append(out, r.create(cfg)...)
		if !cfg.clustered() {
			out = append(out,
				"DROP VIEW IF EXISTS "+cfg.qualify(r.name+"_mv").ref,
				"TRUNCATE TABLE "+cfg.local(r.name).ref,
				"INSERT INTO "+cfg.local(r.name).ref+" "+r.selectFrom(cfg.local("flows").ref)+backfillSettings)
		}
		out = append(out, r.view(cfg))
	}
	return out
}

// backfillSettings bound the backfill's memory: its GROUP BY spills to
// disk past 1 GiB (100 million flows needed 9.5 GB without it).
const backfillSettings = "\nSETTINGS max_bytes_before_external_group_by = 1073741824"

// Backfill is the statement filling rollup name from the flows a shard
// holds, for a cluster migrated to version 6 with flows already stored
// (run it on one replica of each shard, with the landers stopped).
func Backfill(cfg TableConfig, name string) (string, error) {
	for _, r := range hourlyRollups {
		if r.name == name {
			return "INSERT INTO " + cfg.local(r.name).ref + " " + r.selectFrom(cfg.local("flows").ref) + backfillSettings, nil
		}
	}
	return "", fmt.Errorf("no hourly rollup %q (have %s)", name, strings.Join(HourlyRollups(), ", "))
}
