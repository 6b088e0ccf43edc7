package schema

import (
	"errors"
	"fmt"
	"regexp"
)

// Cluster layout. With TableConfig.Cluster set, every table X of the
// single-server schema becomes two, created ON CLUSTER:
//
//   - X_local, the same columns, ORDER BY, TTL and settings on a
//     Replicated*MergeTree engine: each shard's replicas hold the shard's rows;
//   - X, a Distributed table over the X_local of every shard, which queries
//     and inserts use, so that SQL written for one server runs unchanged.
//
// The rollup's materialized view reads flows_local and writes
// flows_1m_local: each shard sums its own rows, and queries on flows_1m
// sum the shards' sums. Schema changes go to the X_local tables ON CLUSTER,
// and added columns to the Distributed X too.
//
// Every name is qualified with TableConfig.Database: an ON CLUSTER
// statement is run by each host's DDL worker, where unqualified names (and
// currentDatabase() in engine arguments) resolve to the host's default
// database, not the initiator's (ClickHouse issues #8170, #37318).
//
// The statements of the single-server schema are built by the same
// functions with an empty Cluster, which makes every helper below return
// the plain name or nothing: there is one column list and one builder per
// table.

// physical is a table as it is stored: its bare name (system.tables) and
// how statements name it (qualified on a cluster).
type physical struct{ bare, ref string }

func (c TableConfig) clustered() bool { return c.Cluster != "" }

// qualify names a table of the configured database.
func (c TableConfig) qualify(bare string) physical {
	if !c.clustered() {
		return physical{bare, bare}
	}
	return physical{bare, "`" + c.Database + "`." + bare}
}

// local is the table holding base's rows: base itself on a single server,
// base_local on a cluster.
func (c TableConfig) local(base string) physical {
	if !c.clustered() {
		return c.qualify(base)
	}
	return c.qualify(base + "_local")
}

// columnTables are the tables whose columns follow base's column list:
// the local table, and on a cluster the Distributed one too.
func (c TableConfig) columnTables(base string) []physical {
	if !c.clustered() {
		return []physical{c.local(base)}
	}
	return []physical{c.local(base), c.qualify(base)}
}

// onCluster is the ON CLUSTER clause of every DDL statement.
func (c TableConfig) onCluster() string {
	if !c.clustered() {
		return ""
	}
	return " ON CLUSTER " + quote(c.Cluster)
}

// systemDatabase is the database condition of system.tables and
// system.columns queries.
func (c TableConfig) systemDatabase() string {
	if !c.clustered() {
		return "currentDatabase()"
	}
	return quote(c.Database)
}

// engine renders the MergeTree-family engine of base's local table with
// params (the family's own parameters, "" for none). On a cluster it is
// the Replicated variant, one ZooKeeper/Keeper path per shard.
func (c TableConfig) engine(family, base, params string) string {
	if !c.clustered() {
		if params == "" {
			return family
		}
		return family + "(" + params + ")"
	}
	return c.replicated(family, "/clickhouse/tables/{shard}/{database}/"+c.local(base).bare, "{replica}", params)
}

func (c TableConfig) replicated(family, path, replica, params string) string {
	args := quote(path) + ", " + quote(replica)
	if params != "" {
		args += ", " + params
	}
	return "Replicated" + family + "(" + args + ")"
}

// distributed returns, on a cluster, the CREATE of base's Distributed
// table over base_local, with the structure of base_local (AS). An empty
// shardingKey makes a read-only table: a multi-shard Distributed table
// without a key refuses inserts.
func (c TableConfig) distributed(base, shardingKey string) []string {
	if !c.clustered() {
		return nil
	}
	args := quote(c.Cluster) + ", " + quote(c.Database) + ", " + quote(c.local(base).bare)
	if shardingKey != "" {
		args += ", " + shardingKey
	}
	return []string{"CREATE TABLE IF NOT EXISTS " + c.qualify(base).ref + c.onCluster() + " AS " + c.local(base).ref +
		"\nENGINE = Distributed(" + args + ")"}
}

// Sharding keys of the Distributed tables. They must be functions of the
// row, not rand(): a retried insert carries the same
// insert_deduplication_token, and each shard can only recognise it as a
// repeat if it receives the same rows as the first time. With rand(), a
// retry after a partial failure would send a shard other rows under a
// token it has already seen (dropped) and the failed shard's rows would be
// lost or doubled.
const (
	flowsShardingKey    = "cityHash64(exporter_address, src_addr, dst_addr, src_port, dst_port, flow_start)"
	countersShardingKey = "cityHash64(exporter_address, agent_address, if_index)"
	alertsShardingKey   = "cityHash64(timestamp, kind, rule, src_addr, dst_addr)"
)

// dedupSetting is the table setting holding the window of remembered
// insert_deduplication_tokens: Replicated tables keep theirs in Keeper.
func (c TableConfig) dedupSetting() string {
	if c.clustered() {
		return "replicated_deduplication_window"
	}
	return "non_replicated_deduplication_window"
}

// migrationsTable is the DDL of schema_migrations. On a cluster it is one
// table for the whole cluster (every host a replica, whatever its shard),
// so that a migration recorded on one host is seen by all.
func (c TableConfig) migrationsTable() string {
	engine := "MergeTree"
	if c.clustered() {
		engine = c.replicated("MergeTree", "/clickhouse/tables/{database}/schema_migrations", "{shard}-{replica}", "")
	}
	return "CREATE TABLE IF NOT EXISTS " + c.qualify("schema_migrations").ref + c.onCluster() +
		" (version UInt32, description String, applied DateTime DEFAULT now()) ENGINE = " + engine + " ORDER BY version"
}

var (
	// Cluster names are remote_servers element names, or a macro such as
	// {cluster}; they are quoted as string literals.
	clusterName = regexp.MustCompile(`^[A-Za-z0-9_.{}-]+$`)
	// Database names are quoted as identifiers (backquotes).
	databaseName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// ValidCluster reports whether name can be used as TableConfig.Cluster.
func ValidCluster(name string) error {
	if name != "" && !clusterName.MatchString(name) {
		return fmt.Errorf("cluster name %q: use letters, digits, '_', '-', '.' or a macro such as {cluster}", name)
	}
	return nil
}

// ValidDatabase reports whether name can be used as TableConfig.Database.
func ValidDatabase(name string) error {
	if name == "" {
		return errors.New("database name is empty")
	}
	if !databaseName.MatchString(name) {
		return fmt.Errorf("database name %q: use letters, digits, '_' or '-'", name)
	}
	return nil
}
