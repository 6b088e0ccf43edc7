package schema

import (
	"fmt"
	"strings"
)

// Markdown renders docs/schema.md from the column list and the DDL.
func Markdown() string {
	var b strings.Builder
	b.WriteString("# Schema\n\n<!-- Generated from schema/columns.go by `make docs`; do not edit. -->\n\n")
	fmt.Fprintf(&b, "Schema version %d; flow record version %d (the Kafka topic is `flows-v%d`). Every source (NetFlow v5/v9, IPFIX, sFlow v5, the sensor) is normalised into one row of `flows`.\n", Version(), RecordVersion(), RecordVersion())
	b.WriteString("Addresses are `IPv6`; IPv4 addresses are stored IPv4-mapped (`::ffff:192.0.2.1`): `toString()` prints them that way, ")
	b.WriteString("`IPv4NumToString(toIPv4(src_addr))` or `replaceOne(toString(src_addr), '::ffff:', '')` print them dotted, and `src_addr = toIPv6('192.0.2.1')` matches one.\n\n")
	b.WriteString("## `flows`\n\n| column | type | meaning |\n|---|---|---|\n")
	for _, c := range Columns {
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", c.Name, c.Type, strings.ReplaceAll(c.Doc, "|", "\\|"))
	}
	b.WriteString("\n## `flows_1m`\n\nA 1-minute rollup filled by the materialized view `flows_1m_mv` on every insert into `flows` ")
	b.WriteString("(SummingMergeTree: always `sum()` its `bytes`, `packets` and `flows` and `GROUP BY`, since rows of one key may not be merged yet). ")
	fmt.Fprintf(&b, "Keys: `timestamp` (start of the minute), %s.\n\n", "`"+strings.Join(rollupKeys, "`, `")+"`")
	b.WriteString("## Hourly rollups\n\nThree 1-hour rollups, each filled by its materialized view (`<name>_mv`) on every insert into `flows`, and from the flows already stored when a store is migrated to version 6. ")
	b.WriteString("They are AggregatingMergeTree tables of `SimpleAggregateFunction` columns: read them with `sum(bytes)`, `sum(packets)`, `sum(flows)` and `any()` of the kept values, and always `GROUP BY`, since rows of one key may not be merged yet. ")
	b.WriteString("The web console reads them for ranges of a day or more (`timestamp` is the start of the hour).\n\n| table | keys | kept with any() | kept for |\n|---|---|---|---|\n")
	rollupRows(&b, hourlyRollups)
	b.WriteString("\n## Daily rollups\n\nTwo 1-day rollups (schema version 7), filled from an hourly rollup. `servers_1d` by a materialized view on `servers_1h`, so that an insert into `flows` reaches it as the hourly rows it made, already summed (a store migrated to version 7 fills it from `servers_1h`). ")
	fmt.Fprintf(&b, "`hosts_1d` by the refreshable materialized view `hosts_1d_mv`: every 2 minutes it adds the hours of `conversations_1h` that ended %d hour ago or more and come after its rows' `filled_to` (at most a day a refresh, so that a migrated store catches up a day every 2 minutes); `max(filled_to)` of its last day is where it stops, and the console reads the hours after it from `conversations_1h` (a view on inserts cost an insert of distinct address pairs 0.7x of its rate). Rows that arrive for an hour already added are not in it. ", RefreshHours)
	b.WriteString("Read them as the hourly ones. The web console reads them for talkers and server names over ranges of a week or more (`timestamp` is the start of the UTC day; the range shown is widened to whole days).\n\n| table | keys | kept with any() | kept for |\n|---|---|---|---|\n")
	rollupRows(&b, dailyRollups)
	fmt.Fprintf(&b, "\n`top_conversations_1d` (version 7) keeps each complete UTC day's %d address pairs with the most bytes (`timestamp`, `src_addr`, `dst_addr`, `application`: the pair's application with the most bytes that day, `bytes`, `packets`, `flows`), kept for the flows TTL. ", TopConversations)
	b.WriteString("No view on inserts can keep a day's top pairs: the refreshable materialized view `top_conversations_1d_mv` computes one missing day from `conversations_1h` every 2 minutes, the most recent first (a store migrated with a month of flows catches up in about an hour). ")
	b.WriteString("The console sums these lists for the top conversations of a week or more without filters, and says so: a pair's bytes are exact on the days it was among the day's top pairs and missing on the others. Flows that arrive for a day after its list was made are not in it.\n")
	b.WriteString("\n")
	b.WriteString("## `interface_counters`\n\nsFlow counter samples (generic interface counters, with Ethernet counters when sent), one row per interface and sample. ")
	b.WriteString("Counters are cumulative as the agent sent them: take differences per `(exporter_address, agent_address, if_index)` over time (see docs/troubleshooting.md for the flows-vs-counters check).\n\n")
	b.WriteString("| column | type | meaning |\n|---|---|---|\n")
	for _, c := range CounterColumns {
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", c.Name, c.Type, strings.ReplaceAll(c.Doc, "|", "\\|"))
	}
	b.WriteString("\n## `alerts`\n\nThe detections' output (enrich/detect, rules in the policy file): one row per alert; repeats of the same alert ")
	b.WriteString("(kind, rule, addresses, protocol) within the deduplication window are folded into `count` and `last_seen`, so a repeat past the window is a new row.\n\n")
	b.WriteString("| column | type | meaning |\n|---|---|---|\n")
	for _, c := range AlertColumns {
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", c.Name, c.Type, strings.ReplaceAll(c.Doc, "|", "\\|"))
	}
	b.WriteString("\n## DDL (default TTLs)\n\n```sql\n")
	b.WriteString(CreateFlows(DefaultTableConfig(), 0) + ";\n\n")
	for _, s := range CreateRollup(DefaultTableConfig()) {
		b.WriteString(s + ";\n\n")
	}
	for _, r := range allRollups() {
		for _, s := range append(r.create(DefaultTableConfig()), r.view(DefaultTableConfig())) {
			b.WriteString(s + ";\n\n")
		}
	}
	b.WriteString(CreateCounters(DefaultTableConfig()) + ";\n\n")
	b.WriteString(CreateAlerts(DefaultTableConfig()) + ";\n\n")
	b.WriteString("```\n")
	return b.String()
}

// rollupRows writes one table row per rollup: its keys, kept values and TTL.
func rollupRows(b *strings.Builder, rs []rollup) {
	for _, r := range rs {
		kept := "the rollup TTL"
		if r.perAddress {
			kept = "the flows TTL"
		}
		vals := "`" + strings.Join(r.values, "`, `") + "`"
		if len(r.values) == 0 {
			vals = ""
		}
		if r.clients {
			vals += " (and `clients`: `uniqMerge(clients)` is the number of distinct `src_addr`)"
		}
		where := ""
		if r.where != "" {
			where = " Only flows where `" + r.where + "`."
		}
		fmt.Fprintf(b, "| `%s` | `%s` | %s | %s |\n", r.name, strings.Join(r.keys, "`, `"), strings.TrimSpace(vals+where), kept)
	}
}
