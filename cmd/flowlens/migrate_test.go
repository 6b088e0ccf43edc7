package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"flowlens/internal/chdb"
	"flowlens/schema"
)

func migrate(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := migrateCmd(context.Background(), args, &out, &errOut)
	return out.String(), err
}

// An embedded store built at version 3 (the release before deduplication
// windows) is brought to the current version; a second run applies nothing.
func TestMigrateEmbeddedFromVersion3(t *testing.T) {
	dir := t.TempDir()
	out, err := migrate(t, "--data-dir", dir, "--to", "3")
	if errors.Is(err, chdb.ErrNoLibrary) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	want := "applied 1: create flows\napplied 2: create flows_1m rollup and its materialized view\n" +
		"applied 3: flows: sampling_rate_source, app_category, server_name, dns_query; create interface_counters\n" +
		"embedded store " + dir + ": schema version 3\n"
	if out != want {
		t.Fatalf("--to 3:\n%s\nwant\n%s", out, want)
	}

	out, err = migrate(t, "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	var applied []string
	for _, m := range schema.Migrations[3:] {
		applied = append(applied, fmt.Sprintf("applied %d: %s\n", m.Version, m.Description))
	}
	want = strings.Join(applied, "") + fmt.Sprintf("embedded store %s: schema version %d\n", dir, schema.Version())
	if out != want {
		t.Fatalf("upgrade:\n%s\nwant\n%s", out, want)
	}

	out, err = migrate(t, "--data-dir", dir)
	if want := fmt.Sprintf("nothing to apply\nembedded store %s: schema version %d\n", dir, schema.Version()); err != nil || out != want {
		t.Fatalf("second run: %v\n%s\nwant\n%s", err, out, want)
	}

	// The upgrade did what version 4 does, on the store itself.
	conn, err := chdb.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got, err := conn.Query([]byte("SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = 'flows_1m'"), "TSVRaw")
	if err != nil || !strings.Contains(string(got), "non_replicated_deduplication_window = "+schema.DedupWindow) {
		t.Fatalf("flows_1m after the upgrade: %s %v", got, err)
	}
}

// --print shows the cluster DDL without connecting (nothing listens at the
// configured address).
func TestMigratePrintCluster(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv("FLOWLENS_CLICKHOUSE_ADDR", addr)
	t.Setenv("FLOWLENS_CLICKHOUSE_CLUSTER", "flows_cluster")
	t.Setenv("FLOWLENS_CLICKHOUSE_DATABASE", "netflow")
	out, err := migrate(t, "--print", "--data-dir", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"-- flowlens schema up to version " + fmt.Sprint(schema.Version()) + " (cluster flows_cluster, database netflow)",
		"CREATE TABLE IF NOT EXISTS `netflow`.flows_local ON CLUSTER 'flows_cluster' (",
		"ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/flows_local', '{replica}')",
		"ENGINE = Distributed('flows_cluster', 'netflow', 'flows_local', ",
		"ReplicatedSummingMergeTree(",
		"-- migration 4: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--print lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
	// Up to version 2 on one server: no counters table, no cluster.
	t.Setenv("FLOWLENS_CLICKHOUSE_CLUSTER", "")
	out, err = migrate(t, "--print", "--to", "2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "CREATE TABLE IF NOT EXISTS flows (") || !strings.Contains(out, "-- migration 2: ") ||
		strings.Contains(out, "interface_counters") || strings.Contains(out, "ON CLUSTER") {
		t.Fatalf("--print --to 2 on one server:\n%s", out)
	}
}

// Bad settings are reported by variable (or flag), before anything is
// opened; a server that is down is named.
func TestMigrateBadConfig(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	for _, c := range []struct {
		env  map[string]string
		args []string
		want []string
	}{
		{map[string]string{"FLOWLENS_CLICKHOUSE_ADDR": "clickhouse"}, nil, []string{"FLOWLENS_CLICKHOUSE_ADDR", `"clickhouse" is not host:port`}},
		{map[string]string{"FLOWLENS_CLICKHOUSE_CLUSTER": "prod"}, []string{"--print"}, []string{"FLOWLENS_CLICKHOUSE_CLUSTER", "FLOWLENS_CLICKHOUSE_ADDR is empty"}},
		{map[string]string{"FLOWLENS_CLICKHOUSE_ADDR": "ch:9000", "FLOWLENS_CLICKHOUSE_DATABASE": "a;b"}, []string{"--print"}, []string{"FLOWLENS_CLICKHOUSE_DATABASE"}},
		{map[string]string{"FLOWLENS_CLICKHOUSE_ADDR": "ch:9000", "FLOWLENS_CLICKHOUSE_MAX_CONNS": "0"}, nil, []string{"FLOWLENS_CLICKHOUSE_MAX_CONNS"}},
		{map[string]string{"FLOWLENS_TTL_DAYS": "-1"}, []string{"--print"}, []string{"FLOWLENS_TTL_DAYS"}},
		{nil, []string{"--to", "0"}, []string{"--to 0", "versions 1 to"}},
		{nil, []string{"--to", fmt.Sprint(schema.Version() + 1)}, []string{"--to"}},
		{nil, []string{"extra"}, []string{"no arguments"}},
		{map[string]string{"FLOWLENS_CLICKHOUSE_ADDR": down}, nil, []string{"clickhouse: cannot connect", down, "refused"}},
	} {
		t.Run(strings.Join(c.want[:1], ""), func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			_, err := migrate(t, append([]string{"--data-dir", t.TempDir()}, c.args...)...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// The ClickHouse settings are in --dump, the password redacted.
func TestClickHouseConfigDump(t *testing.T) {
	t.Setenv("FLOWLENS_CLICKHOUSE_ADDR", "ch1:9000,ch2:9000")
	t.Setenv("FLOWLENS_CLICKHOUSE_PASSWORD", "hunter2")
	cfg := DefaultConfig()
	if err := loadConfig(newFlagSet(&cfg), nil, &cfg); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := cfg.dump(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FLOWLENS_CLICKHOUSE_ADDR=ch1:9000,ch2:9000\n", "FLOWLENS_CLICKHOUSE_DATABASE=default\n",
		"FLOWLENS_CLICKHOUSE_CLUSTER=\n", "FLOWLENS_CLICKHOUSE_PASSWORD=(redacted)\n", "FLOWLENS_CLICKHOUSE_QUERY_TIMEOUT=5m0s\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("--dump lacks %q", want)
		}
	}
	if strings.Contains(b.String(), "hunter2") {
		t.Error("--dump shows the password")
	}
	if string(cfg.ClickHouse.Password) != "hunter2" {
		t.Errorf("password read as %q", string(cfg.ClickHouse.Password))
	}
}

// --print-backfill prints, without connecting, the per-shard statements
// filling the hourly rollups; docs/scale-out.md shows the first as is.
func TestMigratePrintBackfill(t *testing.T) {
	t.Setenv("FLOWLENS_CLICKHOUSE_ADDR", "127.0.0.1:1")
	t.Setenv("FLOWLENS_CLICKHOUSE_CLUSTER", "flowlens")
	t.Setenv("FLOWLENS_CLICKHOUSE_DATABASE", "flowlens")
	out, err := migrate(t, "--print-backfill")
	if err != nil {
		t.Fatal(err)
	}
	stmts := strings.Split(strings.TrimSpace(out), ";\n")
	// hosts_1d (and top_conversations_1d) fill themselves: not backfilled.
	if len(stmts) != 4 || !strings.HasPrefix(stmts[1], "INSERT INTO `flowlens`.conversations_1h_local SELECT") ||
		!strings.HasPrefix(stmts[3], "INSERT INTO `flowlens`.servers_1d_local SELECT") || strings.Contains(out, "INTO `flowlens`.hosts_1d") {
		t.Fatalf("statements:\n%s", out)
	}
	first := strings.SplitN(stmts[0], "\n", 2)[1] // after the comment line
	doc, err := os.ReadFile("../../docs/scale-out.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), first) {
		t.Errorf("docs/scale-out.md does not show\n%s", first)
	}
}
