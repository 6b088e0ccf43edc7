package schema

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// TableConfig holds the storage choices that go into the DDL.
type TableConfig struct {
	// TTLDays is how long raw flows are kept; 0 keeps them forever.
	TTLDays int
	// RollupTTLDays is how long the 1-minute rollup is kept; 0 keeps it forever.
	RollupTTLDays int
	// Cluster is the ClickHouse cluster (a remote_servers name, or a macro
	// such as {cluster}) the tables are spread over; "" for one server or
	// the embedded store. See cluster.go for the layout.
	Cluster string
	// Database holds the tables on a cluster, where statements name it
	// explicitly. Empty: the connection's current database, which MigrateTo
	// reads. Unused on a single server.
	Database string
}

// DefaultTableConfig keeps 30 days of flows and a year of rollups.
func DefaultTableConfig() TableConfig { return TableConfig{TTLDays: 30, RollupTTLDays: 365} }

// Validate reports invalid storage settings.
func (c TableConfig) Validate() error {
	if c.TTLDays < 0 || c.RollupTTLDays < 0 {
		return fmt.Errorf("TTL days must be >= 0 (got %d and %d)", c.TTLDays, c.RollupTTLDays)
	}
	if !c.clustered() {
		return nil
	}
	if err := ValidCluster(c.Cluster); err != nil {
		return err
	}
	return ValidDatabase(c.Database)
}

func ttl(days int) string {
	if days == 0 {
		return ""
	}
	return fmt.Sprintf("TTL timestamp + toIntervalDay(%d)", days)
}

func columnDef[T any](c ColumnOf[T]) string {
	s := fmt.Sprintf("`%s` %s COMMENT %s", c.Name, c.Type, quote(c.Doc))
	if c.Codec != "" {
		s += " CODEC(" + c.Codec + ")"
	}
	return s
}

func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// CreateFlows returns the CREATE TABLE for flows holding the columns that
// exist at schema version upTo (all of them when upTo <= 0); on a cluster,
// the CREATE of flows_local (flowsTables adds the Distributed flows).
//
// ORDER BY starts with a 5-minute time bucket, so time-range queries read few
// granules, then the exporter (per-router questions) and the addresses; the
// bloom-filter indexes serve "who talked to X" without the exporter.
func CreateFlows(cfg TableConfig, upTo int) string {
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS " + cfg.local("flows").ref + cfg.onCluster() + " (\n")
	b.WriteString(columnDefs(Columns, upTo))
	b.WriteString("  INDEX idx_src_addr src_addr TYPE bloom_filter(0.01) GRANULARITY 4,\n")
	b.WriteString("  INDEX idx_dst_addr dst_addr TYPE bloom_filter(0.01) GRANULARITY 4\n")
	b.WriteString(") ENGINE = " + cfg.engine("MergeTree", "flows", "") + "\nPARTITION BY toYYYYMMDD(timestamp)\n")
	b.WriteString("ORDER BY (toStartOfFiveMinutes(timestamp), exporter_address, src_addr, dst_addr)\n")
	if t := ttl(cfg.TTLDays); t != "" {
		b.WriteString(t + "\n")
	}
	b.WriteString("SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1")
	return b.String()
}

// columnDefs renders the definitions of the columns existing at version
// upTo (all when upTo <= 0), one a line, each followed by a comma.
func columnDefs[T any](cols []ColumnOf[T], upTo int) string {
	var b strings.Builder
	for _, c := range cols {
		if upTo > 0 && c.Since > upTo {
			continue
		}
		b.WriteString("  " + columnDef(c) + ",\n")
	}
	return b.String()
}

// ColumnList is "(`a`, `b`, ...)" for an INSERT naming its columns.
func ColumnList[T any](cols []ColumnOf[T]) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = "`" + c.Name + "`"
	}
	return "(" + strings.Join(names, ", ") + ")"
}

// flowsTables is the DDL of flows at version upTo: the table, and on a
// cluster the Distributed table over it.
func flowsTables(cfg TableConfig, upTo int) []string {
	return append([]string{CreateFlows(cfg, upTo)}, cfg.distributed("flows", flowsShardingKey)...)
}

// CreateCounters returns the DDL of interface_counters: sFlow counter
// samples, one row per interface and sample, kept as long as the rollup.
// On a cluster it is interface_counters_local (countersTables adds the
// Distributed table).
func CreateCounters(cfg TableConfig) string {
	s := "CREATE TABLE IF NOT EXISTS " + cfg.local("interface_counters").ref + cfg.onCluster() + " (\n" +
		strings.TrimSuffix(columnDefs(CounterColumns, 0), ",\n") + "\n" +
		") ENGINE = " + cfg.engine("MergeTree", "interface_counters", "") + "\nPARTITION BY toYYYYMM(timestamp)\nORDER BY (exporter_address, if_index, timestamp)\n"
	if t := ttl(cfg.RollupTTLDays); t != "" {
		s += t + "\n"
	}
	return s + "SETTINGS ttl_only_drop_parts = 1"
}

// CreateAlerts returns the DDL of alerts: the detections' output, one row
// per deduplicated alert, kept as long as the rollups.
func CreateAlerts(cfg TableConfig) string {
	s := "CREATE TABLE IF NOT EXISTS " + cfg.local("alerts").ref + cfg.onCluster() + " (\n" +
		strings.TrimSuffix(columnDefs(AlertColumns, 0), ",\n") + "\n" +
		") ENGINE = " + cfg.engine("MergeTree", "alerts", "") + "\nPARTITION BY toYYYYMM(timestamp)\nORDER BY (timestamp, kind, src_addr)\n"
	if t := ttl(cfg.RollupTTLDays); t != "" {
		s += t + "\n"
	}
	return s + "SETTINGS ttl_only_drop_parts = 1"
}

func alertsTables(cfg TableConfig) []string {
	return append([]string{CreateAlerts(cfg)}, cfg.distributed("alerts", alertsShardingKey)...)
}

func countersTables(cfg TableConfig) []string {
	return append([]string{CreateCounters(cfg)}, cfg.distributed("interface_counters", countersShardingKey)...)
}

// addColumns adds the columns of version v to the tables of base, each
// after its predecessor so that SELECT * keeps the list's order.
func addColumns[T any](cfg TableConfig, base string, cols []ColumnOf[T], v int) []string {
	var out []string
	for i, c := range cols {
		if c.Since != v {
			continue
		}
		for _, t := range cfg.columnTables(base) {
			out = append(out, addColumnStmt(cfg, t, cols, i))
		}
	}
	return out
}

func addColumnStmt[T any](cfg TableConfig, t physical, cols []ColumnOf[T], i int) string {
	stmt := "ALTER TABLE " + t.ref + cfg.onCluster() + " ADD COLUMN IF NOT EXISTS " + columnDef(cols[i])
	if i > 0 {
		return stmt + " AFTER `" + cols[i-1].Name + "`"
	}
	return stmt + " FIRST"
}

// rollupKeys are the dimensions kept by the 1-minute rollup.
var rollupKeys = []string{"exporter_address", "flow_source", "protocol", "ip_protocol", "etype", "in_if", "out_if", "src_as", "dst_as", "direction"}

// CreateRollup returns the DDL of the 1-minute rollup table and of the
// materialized view that fills it from every insert into flows. On a
// cluster: flows_1m_local, the Distributed flows_1m (read-only: rows come
// from the view) and the view from flows_local into flows_1m_local, so
// that each shard sums its own rows.
func CreateRollup(cfg TableConfig) []string {
	cols := map[string]Column{}
	for _, c := range Columns {
		cols[c.Name] = c
	}
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS " + cfg.local("flows_1m").ref + cfg.onCluster() + " (\n  `timestamp` DateTime COMMENT 'Start of the minute' CODEC(DoubleDelta, LZ4),\n")
	for _, k := range rollupKeys {
		b.WriteString(fmt.Sprintf("  `%s` %s,\n", k, cols[k].Type))
	}
	b.WriteString("  `bytes` UInt64,\n  `packets` UInt64,\n  `flows` UInt64 COMMENT 'Number of flow records summed'\n")
	b.WriteString(") ENGINE = " + cfg.engine("SummingMergeTree", "flows_1m", "(bytes, packets, flows)") + "\nPARTITION BY toYYYYMM(timestamp)\n")
	b.WriteString("ORDER BY (timestamp, " + strings.Join(rollupKeys, ", ") + ")\n")
	if t := ttl(cfg.RollupTTLDays); t != "" {
		b.WriteString(t + "\n")
	}
	b.WriteString("SETTINGS ttl_only_drop_parts = 1")
	keys := strings.Join(rollupKeys, ", ")
	mv := "CREATE MATERIALIZED VIEW IF NOT EXISTS " + cfg.qualify("flows_1m_mv").ref + cfg.onCluster() + " TO " + cfg.local("flows_1m").ref + " AS\n" +
		"SELECT toStartOfMinute(timestamp) AS timestamp, " + keys + ",\n" +
		"  sum(bytes) AS bytes, sum(packets) AS packets, count() AS flows\n" +
		"FROM " + cfg.local("flows").ref + " GROUP BY timestamp, " + keys
	return append(append([]string{b.String()}, cfg.distributed("flows_1m", "")...), mv)
}

// DB is what migrations need from a store: the embedded engine and a
// ClickHouse server both provide it.
type DB interface {
	// Exec runs a statement that returns nothing.
	Exec(ctx context.Context, query string) error
	// QueryStrings runs a query returning one String column.
	QueryStrings(ctx context.Context, query string) ([]string, error)
}

// Migration is one idempotent schema step.
type Migration struct {
	Version     int
	Description string
	Statements  func(TableConfig) []string
}

// Migrations are applied in order; each statement is idempotent (IF NOT
// EXISTS), so a step interrupted half way is simply run again. Columns
// added later carry Since = their version and are added by reconcile.
var Migrations = []Migration{
	{1, "create flows", func(c TableConfig) []string { return flowsTables(c, 1) }},
	{2, "create flows_1m rollup and its materialized view", CreateRollup},
	{3, "flows: sampling_rate_source, app_category, server_name, dns_query; create interface_counters", func(c TableConfig) []string {
		return append(addColumns(c, "flows", Columns, 3), countersTables(c)...)
	}},
	{4, "flows, flows_1m: keep insert_deduplication_token for the last 10000 inserts (lander retries)", func(c TableConfig) []string {
		return []string{
			"ALTER TABLE " + c.local("flows").ref + c.onCluster() + " MODIFY SETTING " + c.dedupSetting() + " = " + DedupWindow,
			"ALTER TABLE " + c.local("flows_1m").ref + c.onCluster() + " MODIFY SETTING " + c.dedupSetting() + " = " + DedupWindow,
		}
	}},
	{5, "flows: dns_qtype, dns_rcode, src/dst pool, country and AS name (enrichment); create alerts and the report views", func(c TableConfig) []string {
		return append(append(addColumns(c, "flows", Columns, 5), alertsTables(c)...), CreateReports(c)...)
	}},
	{6, "create hourly rollups flows_1h, conversations_1h and servers_1h (web console over long ranges), filled from the stored flows", hourlyRollupStatements},
	{7, "create daily rollups for ranges of a week or more: servers_1d (server names), filled from servers_1h, and hosts_1d (talkers) and top_conversations_1d (each day's top address pairs), refreshed every 2 minutes from conversations_1h", dailyRollupStatements},
}

// DedupWindow is how many recent inserts a MergeTree table remembers by
// their insert_deduplication_token. `flowlens land` inserts each Kafka
// partition's offset range with a token naming it, so an insert retried
// after a crash or a partition hand-over is skipped instead of stored twice.
// The rollup needs the window too: since ClickHouse 25, a materialized view
// receives the block even when its source table deduplicated it, and only
// its own window stops the double count (TestDedupToken).
// Inserts without a token are not deduplicated (INSERT ... SELECT does not
// hash blocks), so the embedded path is unaffected. On a cluster the
// Replicated tables keep the window in Keeper
// (replicated_deduplication_window).
const DedupWindow = "10000"

// Version is the schema version this build writes.
func Version() int { return Migrations[len(Migrations)-1].Version }

// RecordVersion is the version of the flow record: the schema version
// that last added a column to flows. The Kafka topic carries it, so that
// a migration adding only tables or views keeps collectors and landers of
// neighbouring releases on one topic.
func RecordVersion() int {
	v := 1
	for _, c := range Columns {
		v = max(v, c.Since)
	}
	return v
}

// Migrate brings the store to the current schema version and TTLs. It
// returns the versions it applied.
func Migrate(ctx context.Context, db DB, cfg TableConfig) ([]int, error) {
	return MigrateTo(ctx, db, cfg, Version())
}

// MigrateTo applies the migrations up to version (tests use it to build the
// previous release's schema); reconcile runs only for the current version.
func MigrateTo(ctx context.Context, db DB, cfg TableConfig, version int) ([]int, error) {
	cfg, err := resolveDatabase(ctx, db, cfg)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := db.Exec(ctx, cfg.migrationsTable()); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	done, err := db.QueryStrings(ctx, "SELECT toString(version) FROM "+cfg.qualify("schema_migrations").ref)
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	have := map[string]bool{}
	for _, v := range done {
		have[v] = true
	}
	var applied []int
	for _, m := range pending(have, version) {
		for _, stmt := range m.Statements(cfg) {
			if err := db.Exec(ctx, stmt); err != nil {
				return applied, fmt.Errorf("migration %d (%s): %w", m.Version, m.Description, err)
			}
		}
		if err := db.Exec(ctx, record(cfg, m)); err != nil {
			return applied, fmt.Errorf("record migration %d: %w", m.Version, err)
		}
		applied = append(applied, m.Version)
	}
	if version < Version() {
		return applied, nil
	}
	if err := reconcile(ctx, db, cfg); err != nil {
		return applied, err
	}
	return applied, nil
}

// resolveDatabase fills in the cluster database from the connection.
func resolveDatabase(ctx context.Context, db DB, cfg TableConfig) (TableConfig, error) {
	if !cfg.clustered() || cfg.Database != "" {
		return cfg, nil
	}
	cur, err := db.QueryStrings(ctx, "SELECT currentDatabase()")
	if err != nil || len(cur) != 1 {
		return cfg, fmt.Errorf("read the current database: %d rows, %v", len(cur), err)
	}
	cfg.Database = cur[0]
	return cfg, nil
}

// pending are the migrations up to version that are not in have.
func pending(have map[string]bool, version int) []Migration {
	var out []Migration
	for _, m := range Migrations {
		if !have[fmt.Sprint(m.Version)] && m.Version <= version {
			out = append(out, m)
		}
	}
	return out
}

// record is the statement recording m in schema_migrations.
func record(cfg TableConfig, m Migration) string {
	return fmt.Sprintf("INSERT INTO %s (version, description) VALUES (%d, %s)", cfg.qualify("schema_migrations").ref, m.Version, quote(m.Description))
}

// Script is the SQL that MigrateTo runs on a store holding no table yet,
// up to version (all when version <= 0), for review (`flowlens migrate
// --print`). The final reconcile step is left out: on a new store it finds
// nothing to change. On a cluster, cfg.Database must be set.
func Script(cfg TableConfig, version int) (string, error) {
	if version <= 0 {
		version = Version()
	}
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	mode := "single server"
	if cfg.clustered() {
		mode = fmt.Sprintf("cluster %s, database %s", cfg.Cluster, cfg.Database)
	}
	fmt.Fprintf(&b, "-- flowlens schema up to version %d (%s)\n\n%s;\n", version, mode, cfg.migrationsTable())
	for _, m := range pending(nil, version) {
		fmt.Fprintf(&b, "\n-- migration %d: %s\n", m.Version, m.Description)
		for _, stmt := range m.Statements(cfg) {
			b.WriteString(stmt + ";\n")
		}
		b.WriteString(record(cfg, m) + ";\n")
	}
	return b.String(), nil
}

// StoredVersion is the highest schema version recorded in the store, 0
// when none is.
func StoredVersion(ctx context.Context, db DB, cfg TableConfig) (int, error) {
	cfg, err := resolveDatabase(ctx, db, cfg)
	if err != nil {
		return 0, err
	}
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	v, err := db.QueryStrings(ctx, "SELECT toString(max(version)) FROM "+cfg.qualify("schema_migrations").ref)
	if err != nil {
		return 0, fmt.Errorf("read schema_migrations: %w", err)
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("read schema_migrations: %d rows", len(v))
	}
	n, err := strconv.Atoi(v[0])
	if err != nil {
		return 0, fmt.Errorf("read schema_migrations: version %q: %w", v[0], err)
	}
	return n, nil
}

// reconcile adds the columns a newer build knows and applies the configured
// TTLs, so changing FLOWLENS_TTL_DAYS takes effect at the next start.
func reconcile(ctx context.Context, db DB, cfg TableConfig) error {
	if err := addMissing(ctx, db, cfg, "flows", Columns); err != nil {
		return err
	}
	if err := addMissing(ctx, db, cfg, "interface_counters", CounterColumns); err != nil {
		return err
	}
	if err := addMissing(ctx, db, cfg, "alerts", AlertColumns); err != nil {
		return err
	}
	for _, t := range []struct {
		base string
		days int
	}{{"flows", cfg.TTLDays}, {"flows_1m", cfg.RollupTTLDays}, {"interface_counters", cfg.RollupTTLDays}, {"alerts", cfg.RollupTTLDays},
		{"flows_1h", cfg.RollupTTLDays}, {"conversations_1h", cfg.TTLDays}, {"servers_1h", cfg.TTLDays},
		{"hosts_1d", cfg.TTLDays}, {"servers_1d", cfg.TTLDays}, {"top_conversations_1d", cfg.TTLDays}} {
		table := cfg.local(t.base)
		engine, err := db.QueryStrings(ctx, "SELECT engine_full FROM system.tables WHERE database = "+cfg.systemDatabase()+" AND name = "+quote(table.bare))
		if err != nil || len(engine) != 1 {
			return fmt.Errorf("read %s engine: %d rows, %v", table.bare, len(engine), err)
		}
		want := ttl(t.days)
		has := strings.Contains(engine[0], " TTL ")
		alter := "ALTER TABLE " + table.ref + cfg.onCluster()
		switch {
		case want == "" && has:
			err = db.Exec(ctx, alter+" REMOVE TTL")
		case want != "" && !strings.Contains(engine[0], fmt.Sprintf("toIntervalDay(%d)", t.days)):
			err = db.Exec(ctx, alter+" MODIFY "+want+" SETTINGS materialize_ttl_after_modify = 0")
		}
		if err != nil {
			return fmt.Errorf("set %s TTL: %w", table.bare, err)
		}
	}
	return nil
}

// addMissing adds the columns of cols that the tables of base lack (a
// newer build on a table whose migrations recorded fewer columns).
func addMissing[T any](ctx context.Context, db DB, cfg TableConfig, base string, cols []ColumnOf[T]) error {
	for _, t := range cfg.columnTables(base) {
		existing, err := db.QueryStrings(ctx, "SELECT name FROM system.columns WHERE database = "+cfg.systemDatabase()+" AND table = "+quote(t.bare))
		if err != nil {
			return fmt.Errorf("list %s columns: %w", t.bare, err)
		}
		have := map[string]bool{}
		for _, n := range existing {
			have[n] = true
		}
		for i, c := range cols {
			if have[c.Name] {
				continue
			}
			if err := db.Exec(ctx, addColumnStmt(cfg, t, cols, i)); err != nil {
				return fmt.Errorf("add column %s.%s: %w", t.bare, c.Name, err)
			}
		}
	}
	return nil
}
