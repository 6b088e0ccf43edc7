package schema

import "strings"

// Report is a parameterized view answering one question users ask often,
// so that the question has one tested answer in SQL, the same on the
// embedded store and on a ClickHouse server or cluster:
//
//	SELECT * FROM top_applications(from = now() - 3600, to = now())
//
// Every report takes the time range `from` (inclusive) and `to`
// (exclusive) as DateTime parameters; the SQL reads FROM {flows} and
// FROM {alerts}, replaced by the tables of the configuration.
type Report struct {
	Name, Doc, SQL string
}

// Reports are the views docs/queries.md documents (and tests).
var Reports = []Report{
	{"top_applications", "Traffic by application label and category: bytes, packets, flows, distinct clients.", `
SELECT protocol, app_category, sum(bytes) AS bytes, sum(packets) AS packets, count() AS flows, uniq(src_addr) AS clients
FROM {flows}
WHERE timestamp >= {from:DateTime} AND timestamp < {to:DateTime}
GROUP BY protocol, app_category
ORDER BY bytes DESC, protocol`},
	{"top_talkers", "Hosts by bytes sent plus received, with their pool and what they sent and received.", `
SELECT replaceOne(toString(host), '::ffff:', '') AS address, any(pool) AS pool, sum(sent) AS bytes_sent,
       sum(received) AS bytes_received, sum(sent) + sum(received) AS bytes, sum(n) AS flows
FROM (
    SELECT src_addr AS host, src_pool AS pool, sum(bytes) AS sent, 0 AS received, count() AS n
    FROM {flows} WHERE timestamp >= {from:DateTime} AND timestamp < {to:DateTime} GROUP BY host, pool
    UNION ALL
    SELECT dst_addr AS host, dst_pool AS pool, 0 AS sent, sum(bytes) AS received, count() AS n
    FROM {flows} WHERE timestamp >= {from:DateTime} AND timestamp < {to:DateTime} GROUP BY host, pool
)
GROUP BY host
ORDER BY bytes DESC, address`},
	{"saas_usage", "Bytes per client pool and application (the part of the label after the dot: Microsoft365, GoogleWorkspace, Dropbox, ...), for labelled traffic.", `
SELECT src_pool AS pool, splitByChar('.', protocol)[-1] AS application, any(app_category) AS category,
       sum(bytes) AS bytes, count() AS flows, uniq(src_addr) AS clients
FROM {flows}
WHERE timestamp >= {from:DateTime} AND timestamp < {to:DateTime} AND position(protocol, '.') > 0
GROUP BY pool, application
ORDER BY pool, bytes DESC, application`},
	{"alerts_by_kind", "Alerts by kind, rule and severity: alert rows, flows folded in, distinct clients, last seen.", `
SELECT kind, rule, severity, count() AS alerts, sum(count) AS flows, uniq(src_addr) AS clients, max(last_seen) AS last_seen
FROM {alerts}
WHERE timestamp >= {from:DateTime} AND timestamp < {to:DateTime}
GROUP BY kind, rule, severity
ORDER BY alerts DESC, kind, rule`},
}

// CreateReports returns the statements (re)creating the report views:
// CREATE OR REPLACE, so that each build's definitions take effect at its
// first start. On a cluster they read the Distributed tables.
func CreateReports(cfg TableConfig) []string {
	out := make([]string, 0, len(Reports))
	for _, r := range Reports {
		sql := strings.NewReplacer("{flows}", cfg.qualify("flows").ref, "{alerts}", cfg.qualify("alerts").ref).Replace(strings.TrimSpace(r.SQL))
		out = append(out, "CREATE OR REPLACE VIEW "+cfg.qualify(r.Name).ref+cfg.onCluster()+" AS\n"+sql)
	}
	return out
}

// QueriesMarkdown renders docs/queries.md from Reports.
func QueriesMarkdown() string {
	var b strings.Builder
	b.WriteString("# Report views\n\n<!-- Generated from schema/reports.go by `make docs`; do not edit. -->\n\n")
	b.WriteString("Parameterized views for the reports people ask for, created by the schema migration on the embedded store and on a\n")
	b.WriteString("ClickHouse server or cluster alike. Each takes a time range, `from` inclusive and `to` exclusive:\n\n")
	b.WriteString("```sql\nSELECT * FROM top_applications(from = now() - INTERVAL 1 HOUR, to = now()) LIMIT 10;\n")
	b.WriteString("-- How much goes to Office 365 vs Google Workspace vs Dropbox, per pool, last 7 days:\n")
	b.WriteString("SELECT pool, application, formatReadableSize(bytes) FROM saas_usage(from = now() - INTERVAL 7 DAY, to = now())\n")
	b.WriteString("WHERE application IN ('Microsoft365', 'Teams', 'Outlook', 'OneDrive', 'GoogleServices', 'GoogleDocs', 'GoogleDrive', 'Dropbox');\n```\n\n")
	b.WriteString("`flowlens query` runs them (`bin/flowlens query \"SELECT * FROM alerts_by_kind(from = today(), to = now())\"`). ")
	b.WriteString("`sink/embedded`'s TestReports runs every one on rows whose answer it knows.\n")
	for _, r := range Reports {
		b.WriteString("\n## `" + r.Name + "`\n\n" + r.Doc + "\n\n```sql\n" + strings.TrimSpace(r.SQL) + "\n```\n")
	}
	return b.String()
}
