package schema

import (
	"context"
	"fmt"
	"strings"
)

// TableConfig holds the storage choices that go into the DDL.
type TableConfig struct {
	// TTLDays is how long raw flows are kept; 0 keeps them forever.
	TTLDays int
	// RollupTTLDays is how long the 1-minute rollup is kept; 0 keeps it forever.
	RollupTTLDays int
}

// DefaultTableConfig keeps 30 days of flows and a year of rollups.
func DefaultTableConfig() TableConfig { return TableConfig{TTLDays: 30, RollupTTLDays: 365} }

// Validate reports invalid storage settings.
func (c TableConfig) Validate() error {
	if c.TTLDays < 0 || c.RollupTTLDays < 0 {
		return fmt.Errorf("TTL days must be >= 0 (got %d and %d)", c.TTLDays, c.RollupTTLDays)
	}
	return nil
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
// exist at schema version upTo (all of them when upTo <= 0).
//
// ORDER BY starts with a 5-minute time bucket, so time-range queries read few
// granules, then the exporter (per-router questions) and the addresses; the
// bloom-filter indexes serve "who talked to X" without the exporter.
func CreateFlows(cfg TableConfig, upTo int) string {
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS flows (\n")
	b.WriteString(columnDefs(Columns, upTo))
	b.WriteString("  INDEX idx_src_addr src_addr TYPE bloom_filter(0.01) GRANULARITY 4,\n")
	b.WriteString("  INDEX idx_dst_addr dst_addr TYPE bloom_filter(0.01) GRANULARITY 4\n")
	b.WriteString(") ENGINE = MergeTree\nPARTITION BY toYYYYMMDD(timestamp)\n")
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

// CreateCounters returns the DDL of interface_counters: sFlow counter
// samples, one row per interface and sample, kept as long as the rollup.
func CreateCounters(cfg TableConfig) string {
	s := "CREATE TABLE IF NOT EXISTS interface_counters (\n" + strings.TrimSuffix(columnDefs(CounterColumns, 0), ",\n") + "\n" +
		") ENGINE = MergeTree\nPARTITION BY toYYYYMM(timestamp)\nORDER BY (exporter_address, if_index, timestamp)\n"
	if t := ttl(cfg.RollupTTLDays); t != "" {
		s += t + "\n"
	}
	return s + "SETTINGS ttl_only_drop_parts = 1"
}

// addColumns adds to table the columns of version v, each after its
// predecessor so that SELECT * keeps the list's order.
func addColumns[T any](table string, cols []ColumnOf[T], v int) []string {
	var out []string
	for i, c := range cols {
		if c.Since == v {
			out = append(out, addColumnStmt(table, cols, i))
		}
	}
	return out
}

func addColumnStmt[T any](table string, cols []ColumnOf[T], i int) string {
	stmt := "ALTER TABLE " + table + " ADD COLUMN IF NOT EXISTS " + columnDef(cols[i])
	if i > 0 {
		return stmt + " AFTER `" + cols[i-1].Name + "`"
	}
	return stmt + " FIRST"
}

// rollupKeys are the dimensions kept by the 1-minute rollup.
var rollupKeys = []string{"exporter_address", "flow_source", "protocol", "ip_protocol", "etype", "in_if", "out_if", "src_as", "dst_as", "direction"}

// CreateRollup returns the DDL of the 1-minute rollup table and of the
// materialized view that fills it from every insert into flows.
func CreateRollup(cfg TableConfig) []string {
	cols := map[string]Column{}
	for _, c := range Columns {
		cols[c.Name] = c
	}
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS flows_1m (\n  `timestamp` DateTime COMMENT 'Start of the minute' CODEC(DoubleDelta, LZ4),\n")
	for _, k := range rollupKeys {
		b.WriteString(fmt.Sprintf("  `%s` %s,\n", k, cols[k].Type))
	}
	b.WriteString("  `bytes` UInt64,\n  `packets` UInt64,\n  `flows` UInt64 COMMENT 'Number of flow records summed'\n")
	b.WriteString(") ENGINE = SummingMergeTree((bytes, packets, flows))\nPARTITION BY toYYYYMM(timestamp)\n")
	b.WriteString("ORDER BY (timestamp, " + strings.Join(rollupKeys, ", ") + ")\n")
	if t := ttl(cfg.RollupTTLDays); t != "" {
		b.WriteString(t + "\n")
	}
	b.WriteString("SETTINGS ttl_only_drop_parts = 1")
	keys := strings.Join(rollupKeys, ", ")
	mv := "CREATE MATERIALIZED VIEW IF NOT EXISTS flows_1m_mv TO flows_1m AS\n" +
		"SELECT toStartOfMinute(timestamp) AS timestamp, " + keys + ",\n" +
		"  sum(bytes) AS bytes, sum(packets) AS packets, count() AS flows\n" +
		"FROM flows GROUP BY timestamp, " + keys
	return []string{b.String(), mv}
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
	{1, "create flows", func(c TableConfig) []string { return []string{CreateFlows(c, 1)} }},
	{2, "create flows_1m rollup and its materialized view", CreateRollup},
	{3, "flows: sampling_rate_source, app_category, server_name, dns_query; create interface_counters", func(c TableConfig) []string {
		return append(addColumns("flows", Columns, 3), CreateCounters(c))
	}},
	{4, "flows, flows_1m: keep insert_deduplication_token for the last 10000 inserts (lander retries)", func(TableConfig) []string {
		return []string{
			"ALTER TABLE flows MODIFY SETTING non_replicated_deduplication_window = " + DedupWindow,
			"ALTER TABLE flows_1m MODIFY SETTING non_replicated_deduplication_window = " + DedupWindow,
		}
	}},
}

// DedupWindow is how many recent inserts a MergeTree table remembers by
// their insert_deduplication_token. `flowlens land` inserts each Kafka
// partition's offset range with a token naming it, so an insert retried
// after a crash or a partition hand-over is skipped instead of stored twice.
// The rollup needs the window too: since ClickHouse 25, a materialized view
// receives the block even when its source table deduplicated it, and only
// its own window stops the double count (TestDedupToken).
// Inserts without a token are not deduplicated (INSERT ... SELECT does not
// hash blocks), so the embedded path is unaffected.
const DedupWindow = "10000"

// Version is the schema version this build writes.
func Version() int { return Migrations[len(Migrations)-1].Version }

const migrationsTable = "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, description String, applied DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version"

// Migrate brings the store to the current schema version and TTLs. It
// returns the versions it applied.
func Migrate(ctx context.Context, db DB, cfg TableConfig) ([]int, error) {
	return MigrateTo(ctx, db, cfg, Version())
}

// MigrateTo applies the migrations up to version (tests use it to build the
// previous release's schema); reconcile runs only for the current version.
func MigrateTo(ctx context.Context, db DB, cfg TableConfig, version int) ([]int, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := db.Exec(ctx, migrationsTable); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	done, err := db.QueryStrings(ctx, "SELECT toString(version) FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	have := map[string]bool{}
	for _, v := range done {
		have[v] = true
	}
	var applied []int
	for _, m := range Migrations {
		if have[fmt.Sprint(m.Version)] || m.Version > version {
			continue
		}
		for _, stmt := range m.Statements(cfg) {
			if err := db.Exec(ctx, stmt); err != nil {
				return applied, fmt.Errorf("migration %d (%s): %w", m.Version, m.Description, err)
			}
		}
		if err := db.Exec(ctx, fmt.Sprintf("INSERT INTO schema_migrations (version, description) VALUES (%d, %s)", m.Version, quote(m.Description))); err != nil {
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

// reconcile adds the columns a newer build knows and applies the configured
// TTLs, so changing FLOWLENS_TTL_DAYS takes effect at the next start.
func reconcile(ctx context.Context, db DB, cfg TableConfig) error {
	if err := addMissing(ctx, db, "flows", Columns); err != nil {
		return err
	}
	if err := addMissing(ctx, db, "interface_counters", CounterColumns); err != nil {
		return err
	}
	for table, days := range map[string]int{"flows": cfg.TTLDays, "flows_1m": cfg.RollupTTLDays, "interface_counters": cfg.RollupTTLDays} {
		engine, err := db.QueryStrings(ctx, "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = "+quote(table))
		if err != nil || len(engine) != 1 {
			return fmt.Errorf("read %s engine: %v", table, err)
		}
		want := ttl(days)
		has := strings.Contains(engine[0], " TTL ")
		switch {
		case want == "" && has:
			err = db.Exec(ctx, "ALTER TABLE "+table+" REMOVE TTL")
		case want != "" && !strings.Contains(engine[0], fmt.Sprintf("toIntervalDay(%d)", days)):
			err = db.Exec(ctx, "ALTER TABLE "+table+" MODIFY "+want+" SETTINGS materialize_ttl_after_modify = 0")
		}
		if err != nil {
			return fmt.Errorf("set %s TTL: %w", table, err)
		}
	}
	return nil
}

// addMissing adds the columns of cols that table lacks (a newer build on a
// table whose migrations recorded fewer columns).
func addMissing[T any](ctx context.Context, db DB, table string, cols []ColumnOf[T]) error {
	existing, err := db.QueryStrings(ctx, "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = "+quote(table))
	if err != nil {
		return fmt.Errorf("list %s columns: %w", table, err)
	}
	have := map[string]bool{}
	for _, n := range existing {
		have[n] = true
	}
	for i, c := range cols {
		if have[c.Name] {
			continue
		}
		if err := db.Exec(ctx, addColumnStmt(table, cols, i)); err != nil {
			return fmt.Errorf("add column %s.%s: %w", table, c.Name, err)
		}
	}
	return nil
}
