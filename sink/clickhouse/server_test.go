package clickhouse

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"flowlens/schema"
)

// The tests below need a ClickHouse server: they run when CLICKHOUSE_ADDR
// is set (host:port of the native protocol, comma-separated for several),
// with CLICKHOUSE_USER and CLICKHOUSE_PASSWORD when set, and on a cluster
// when CLICKHOUSE_CLUSTER names one (the servers then need Keeper and the
// {shard} and {replica} macros). Each test works in a database of its own,
// dropped at the end. For example:
//
//	docker run -d -p 9000:9000 -e CLICKHOUSE_PASSWORD=test clickhouse/clickhouse-server
//	CLICKHOUSE_ADDR=127.0.0.1:9000 CLICKHOUSE_PASSWORD=test go test ./sink/clickhouse
func serverConfig(t *testing.T) Config {
	t.Helper()
	addr := os.Getenv("CLICKHOUSE_ADDR")
	if addr == "" {
		t.Skip("no ClickHouse server: set CLICKHOUSE_ADDR=host:9000 to run this test")
	}
	cfg := DefaultConfig()
	cfg.Addr = strings.Split(addr, ",")
	if u := os.Getenv("CLICKHOUSE_USER"); u != "" {
		cfg.User = u
	}
	cfg.Password = Secret(os.Getenv("CLICKHOUSE_PASSWORD"))
	cfg.Cluster = os.Getenv("CLICKHOUSE_CLUSTER")
	cfg.QueryTimeout = time.Minute
	admin, _ := newClient(t, cfg)
	ctx := context.Background()
	if err := admin.Start(ctx); err != nil {
		t.Fatal(err)
	}
	db := fmt.Sprintf("flowlens_test_%d", time.Now().UnixNano())
	on := ""
	if cfg.Cluster != "" {
		on = " ON CLUSTER " + quote(cfg.Cluster)
	}
	if err := admin.Exec(ctx, "CREATE DATABASE "+db+on); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+on+" SYNC"); err != nil {
			t.Error(err)
		}
	})
	cfg.Database = db
	return cfg
}

func queryInt(t *testing.T, c *Client, q string) int {
	t.Helper()
	v, err := c.QueryStrings(context.Background(), q)
	if err != nil || len(v) != 1 {
		t.Fatalf("%s: %v %v", q, v, err)
	}
	n, err := strconv.Atoi(v[0])
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// eventually polls q until it returns want: on a cluster, a replica may
// answer before it fetched the newest parts.
func eventually(t *testing.T, c *Client, q string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := queryInt(t, c, q)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", q, got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Migrations run on the server (ON CLUSTER with CLICKHOUSE_CLUSTER), a
// second run applies nothing, and a batch inserted twice with one token
// (a lander retry) is stored once, in flows and in the rollup.
func TestServerMigrateAndInsertOnce(t *testing.T) {
	cfg := serverConfig(t)
	c, _ := newClient(t, cfg)
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	tables := cfg.Tables(schema.DefaultTableConfig())
	applied, err := schema.Migrate(ctx, c, tables)
	if err != nil {
		t.Fatal(err)
	}
	var all []int
	for _, m := range schema.Migrations {
		all = append(all, m.Version)
	}
	if !slices.Equal(applied, all) {
		t.Fatalf("applied %v, want %v", applied, all)
	}
	if again, err := schema.Migrate(ctx, c, tables); err != nil || len(again) != 0 {
		t.Fatalf("second migration applied %v, %v", again, err)
	}
	if v, err := schema.StoredVersion(ctx, c, tables); err != nil || v != schema.Version() {
		t.Fatalf("stored version %d, %v", v, err)
	}
	if cfg.Cluster != "" {
		eng, err := c.QueryStrings(ctx, "SELECT engine FROM system.tables WHERE database = currentDatabase() AND name IN ('flows', 'flows_local') ORDER BY name")
		if err != nil || !slices.Equal(eng, []string{"Distributed", "ReplicatedMergeTree"}) {
			t.Fatalf("cluster engines %v, %v", eng, err)
		}
	}

	b := schema.NewBatch()
	now := uint32(time.Now().Unix())
	var bytes int
	for i := range 1000 {
		f := schema.Flow{TimeReceived: now, FlowStartMs: int64(now)*1000 - int64(i), Protocol: "DNS", Bytes: uint64(i), Packets: 1,
			ExporterAddr: netip.MustParseAddr("192.0.2.1"), SrcAddr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}),
			DstAddr: netip.MustParseAddr("2001:db8::53"), SrcPort: uint16(40000 + i), DstPort: 53, IPProtocol: 17}
		b.Append(&f)
		bytes += i
	}
	for _, token := range []string{"flows-test/0/0-1000", "flows-test/0/0-1000"} {
		if err := c.InsertFlows(ctx, b, token); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, c, "SELECT toString(count()) FROM flows", 1000)
	eventually(t, c, "SELECT toString(sum(flows)) FROM flows_1m", 1000)
	if got := queryInt(t, c, "SELECT toString(sum(bytes)) FROM flows WHERE dst_addr = toIPv6('2001:db8::53')"); got != bytes {
		t.Fatalf("sum(bytes) = %d, want %d", got, bytes)
	}
	// Another token is another batch.
	if err := c.InsertFlows(ctx, b, "flows-test/0/1000-2000"); err != nil {
		t.Fatal(err)
	}
	eventually(t, c, "SELECT toString(count()) FROM flows", 2000)
	eventually(t, c, "SELECT toString(sum(flows)) FROM flows_1m", 2000)
	if got := testutil.ToFloat64(c.m.inserts); got != 3 {
		t.Errorf("inserts metric %v, want 3", got)
	}
	if got := testutil.ToFloat64(c.m.rows); got != 3000 {
		t.Errorf("rows metric %v, want 3000 (acknowledged, deduplicated included)", got)
	}
}

// QueryStrings reads every block of a result; a failing statement leaves
// the connection usable.
func TestServerQueries(t *testing.T) {
	cfg := serverConfig(t)
	cfg.MaxConns = 1
	c, _ := newClient(t, cfg)
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := c.QueryStrings(ctx, "SELECT toString(number) FROM numbers(10000) SETTINGS max_block_size = 1000")
	if err != nil || len(got) != 10000 || got[0] != "0" || got[9999] != "9999" {
		t.Fatalf("%d rows, %v", len(got), err)
	}
	if got, err := c.QueryStrings(ctx, "SELECT 'x' WHERE 0"); err != nil || len(got) != 0 {
		t.Fatalf("empty result: %v %v", got, err)
	}
	if _, err := c.QueryStrings(ctx, "SELECT 1"); err == nil || !strings.Contains(err.Error(), "want String") {
		t.Fatalf("a UInt8 column: %v", err)
	}
	if err := c.Exec(ctx, "CREATE TABLE t (a UInt8) ENGINE = Memory"); err != nil {
		t.Fatal(err)
	}
	pooled := func() any {
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.idle) != 1 {
			t.Fatalf("%d idle connections, want 1", len(c.idle))
		}
		return c.idle[0].conn
	}
	conn := pooled()
	if err := c.Exec(ctx, "SELECT * FROM no_such_table"); err == nil || !strings.Contains(err.Error(), "UNKNOWN_TABLE") {
		t.Fatalf("unknown table: %v", err)
	}
	if pooled() != conn {
		t.Fatal("the connection was replaced after a server exception")
	}
	if err := c.Exec(ctx, "INSERT INTO t VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	if got := queryInt(t, c, "SELECT toString(sum(a)) FROM t"); got != 3 {
		t.Fatalf("sum = %d", got)
	}
	if got := testutil.ToFloat64(c.m.errors.WithLabelValues("query")) + testutil.ToFloat64(c.m.errors.WithLabelValues("exec")); got != 2 {
		t.Fatalf("errors %v, want 2", got)
	}
}
