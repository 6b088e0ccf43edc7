package clickhouse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"flowlens/internal/chdb"
	"flowlens/schema"
)

func configured(addrs ...string) Config {
	c := DefaultConfig()
	c.Addr = addrs
	return c
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*Config)
		want []string // variables named, in order
	}{
		{"default is unconfigured and valid", func(*Config) {}, nil},
		{"one server", func(c *Config) { c.Addr = []string{"clickhouse:9000"} }, nil},
		{"cluster", func(c *Config) {
			c.Addr = []string{"ch1:9000", "[2001:db8::1]:9440"}
			c.Cluster = "{cluster}"
			c.Database = "flows-db"
		}, nil},
		{"not host:port", func(c *Config) { c.Addr = []string{"clickhouse"} }, []string{"CLICKHOUSE_ADDR"}},
		{"no host", func(c *Config) { c.Addr = []string{":9000"} }, []string{"CLICKHOUSE_ADDR"}},
		{"bad port", func(c *Config) { c.Addr = []string{"ch:0", "ch:x"} }, []string{"CLICKHOUSE_ADDR", "CLICKHOUSE_ADDR"}},
		{"cluster without server", func(c *Config) { c.Cluster = "prod" }, []string{"CLICKHOUSE_CLUSTER"}},
		{"bad cluster name", func(c *Config) { c.Addr = []string{"ch:9000"}; c.Cluster = "prod'" }, []string{"CLICKHOUSE_CLUSTER"}},
		{"no database", func(c *Config) { c.Addr = []string{"ch:9000"}; c.Database = "" }, []string{"CLICKHOUSE_DATABASE"}},
		{"bad database", func(c *Config) { c.Addr = []string{"ch:9000"}; c.Database = "a.b" }, []string{"CLICKHOUSE_DATABASE"}},
		{"every other field", func(c *Config) {
			c.Addr = []string{"ch:9000"}
			c.User, c.DialTimeout, c.QueryTimeout, c.MaxConns = " ", 0, -time.Second, 0
		}, []string{"CLICKHOUSE_USER", "CLICKHOUSE_DIAL_TIMEOUT", "CLICKHOUSE_QUERY_TIMEOUT", "CLICKHOUSE_MAX_CONNS"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.edit(&cfg)
			err := cfg.ValidateEnv("FLOWLENS_")
			var got []string
			if err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var fe *FieldError
					if !errors.As(e, &fe) {
						t.Fatalf("%v is not a FieldError", e)
					}
					if !strings.HasPrefix(e.Error(), fe.Var+": ") {
						t.Errorf("%q does not start with the variable", e)
					}
					got = append(got, strings.TrimPrefix(fe.Var, "FLOWLENS_"))
				}
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("variables %v, want %v (%v)", got, c.want, err)
			}
		})
	}
	if err := configured("x").Validate(); err == nil || !strings.HasPrefix(err.Error(), "CLICKHOUSE_ADDR: ") {
		t.Fatalf("Validate without prefix: %v", err)
	}
	if _, err := New(DefaultConfig(), slog.New(slog.DiscardHandler), nil); err == nil || !strings.Contains(err.Error(), "CLICKHOUSE_ADDR") {
		t.Fatalf("New without an address: %v", err)
	}
}

func TestTables(t *testing.T) {
	cfg := configured("ch:9000")
	cfg.Cluster, cfg.Database = "prod", "flows"
	got := cfg.Tables(schema.TableConfig{TTLDays: 7, RollupTTLDays: 90})
	if got != (schema.TableConfig{TTLDays: 7, RollupTTLDays: 90, Cluster: "prod", Database: "flows"}) {
		t.Fatalf("%+v", got)
	}
}

// The password never shows where the configuration is printed.
func TestSecretRedacted(t *testing.T) {
	cfg := configured("ch:9000")
	cfg.Password = "hunter2"
	j, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(cfg.Password), fmt.Sprintf("%+v", cfg), string(j)} {
		if strings.Contains(s, "hunter2") || !strings.Contains(s, redacted) {
			t.Errorf("password shown: %s", s)
		}
	}
	if fmt.Sprint(Secret("")) != "" {
		t.Error("an empty password prints as set")
	}
}

// The INSERT names every column of the batch, in the batch's order.
func TestInsertQuery(t *testing.T) {
	q := InsertQuery()
	var names []string
	for _, c := range schema.NewBatch().Input() {
		names = append(names, "`"+c.Name+"`")
	}
	want := "INSERT INTO flows (" + strings.Join(names, ", ") + ") VALUES"
	if q != want {
		t.Fatalf("got  %s\nwant %s", q, want)
	}
}

func TestInsertSettings(t *testing.T) {
	v := func(major, minor int) proto.ServerHello { return proto.ServerHello{Major: major, Minor: minor} }
	token := []ch.Setting{
		{Key: "insert_deduplication_token", Value: "flows-v4/3/100-200", Important: true},
		{Key: "deduplicate_blocks_in_dependent_materialized_views", Value: "1"},
	}
	for _, c := range []struct {
		token   string
		cluster bool
		server  proto.ServerHello
		want    []ch.Setting
	}{
		{"", false, v(25, 8), nil},
		{"flows-v4/3/100-200", false, v(25, 8), token},
		{"", true, v(25, 8), []ch.Setting{{Key: "distributed_foreground_insert", Value: "1", Important: true}}},
		{"flows-v4/3/100-200", true, v(23, 11), append(slices.Clone(token), ch.Setting{Key: "distributed_foreground_insert", Value: "1", Important: true})},
		{"", true, v(23, 10), []ch.Setting{{Key: "insert_distributed_sync", Value: "1", Important: true}}},
		{"", true, v(22, 12), []ch.Setting{{Key: "insert_distributed_sync", Value: "1", Important: true}}},
	} {
		if got := insertSettings(c.token, c.cluster, c.server); !slices.Equal(got, c.want) {
			t.Errorf("token %q, cluster %v, server %d.%d:\n got %+v\nwant %+v", c.token, c.cluster, c.server.Major, c.server.Minor, got, c.want)
		}
	}
}

// The statement and setting names are ClickHouse's: checked against the
// engine (chDB), where libchdb is installed.
func TestInsertKnownToClickHouse(t *testing.T) {
	conn, err := chdb.Open("")
	if errors.Is(err, chdb.ErrNoLibrary) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if out, err := conn.Query([]byte("SELECT formatQuery("+quote(InsertQuery())+")"), "TSVRaw"); err != nil || !strings.HasSuffix(string(out), "FORMAT Values\n") {
		t.Fatalf("insert query: %q %v", out, err)
	}
	keys := map[string]bool{}
	for _, s := range [][]ch.Setting{insertSettings("t", true, proto.ServerHello{Major: 25}), insertSettings("t", true, proto.ServerHello{Major: 22})} {
		for _, k := range s {
			keys[k.Key] = true
		}
	}
	if len(keys) != 4 {
		t.Fatalf("settings %v", keys)
	}
	for k := range keys {
		out, err := conn.Query([]byte("SELECT count() FROM system.settings WHERE name = "+quote(k)), "TSV")
		if err != nil || string(out) != "1\n" {
			t.Errorf("setting %s unknown to ClickHouse: %q %v", k, out, err)
		}
	}
}

func newClient(t *testing.T, cfg Config) (*Client, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(cfg, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c, reg
}

// closedAddr is an address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// A server that is down, or that accepts and never answers, makes Start
// fail within the dial timeout, with an error naming every address.
func TestStartServerDown(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	down := closedAddr(t)
	cfg := configured(down, silent.Addr().String())
	cfg.DialTimeout = 300 * time.Millisecond
	cfg.QueryTimeout = 2 * time.Second
	cfg.MaxConns = 1
	c, _ := newClient(t, cfg)
	start := time.Now()
	err = c.Start(context.Background())
	if err == nil {
		t.Fatal("Start succeeded with no server")
	}
	for _, want := range []string{"cannot connect", down + ": ", "connection refused", silent.Addr().String() + ": no answer within 300ms"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), down+": no answer") {
		t.Errorf("a refused connection reported as a timeout: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Start took %s", d)
	}
	if got := testutil.ToFloat64(c.m.errors.WithLabelValues("connect")); got != 2 {
		t.Errorf("connect errors = %v, want 2", got)
	}
	if got := testutil.ToFloat64(c.m.conns); got != 0 {
		t.Errorf("connections = %v after failed dials", got)
	}
	// Operations fail the same way, counted, and keep no connection slot
	// (MaxConns is 1: a leaked slot would make the second wait).
	for range 2 {
		if err := c.Exec(context.Background(), "SELECT 1"); err == nil || !strings.Contains(err.Error(), "cannot connect") {
			t.Fatalf("Exec with no server: %v", err)
		}
	}
	if got := testutil.ToFloat64(c.m.errors.WithLabelValues("exec")); got != 2 {
		t.Errorf("exec errors = %v", got)
	}
}

// handshakeServer answers the native handshake (ch-go's test server does
// no more), enough for Start.
func handshakeServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() { _ = ch.NewServer(ch.ServerOptions{}).Serve(ln) }()
	return ln.Addr().String()
}

// Start goes on to the next address when one is down, and the connection
// it made is pooled, then closed by Stop.
func TestStartFailover(t *testing.T) {
	down, up := closedAddr(t), handshakeServer(t)
	c, _ := newClient(t, configured(down, up))
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(c.m.errors.WithLabelValues("connect")); got != 1 {
		t.Errorf("connect errors = %v, want 1", got)
	}
	if got := testutil.ToFloat64(c.m.conns); got != 1 {
		t.Errorf("connections = %v, want 1", got)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(c.m.conns); got != 0 {
		t.Errorf("connections after Stop = %v", got)
	}
	if err := c.Exec(context.Background(), "SELECT 1"); !errors.Is(err, ErrStopped) {
		t.Fatalf("Exec after Stop: %v", err)
	}
}

// A connection idle for long is pinged before use, and replaced when the
// server has closed it meanwhile. (ch-go's test server hangs up after the
// handshake, as a server dropping an idle connection does.)
func TestStaleIdleConnectionReplaced(t *testing.T) {
	c, _ := newClient(t, configured(handshakeServer(t)))
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	old := c.idle[0].conn
	c.idle[0].since = time.Now().Add(-2 * idlePing)
	c.mu.Unlock()
	conn, err := c.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if conn == old || !old.IsClosed() {
		t.Fatal("the stale connection was handed out")
	}
	if got := testutil.ToFloat64(c.m.conns); got != 1 {
		t.Errorf("connections = %v, want 1", got)
	}
	c.release(conn, nil)
	if len(c.slots) != 0 {
		t.Errorf("%d slots held after release", len(c.slots))
	}
}

// Every metric the client exports is in docs/metrics.md.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	_, reg := newClient(t, configured("ch:9000"))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != 5 {
		t.Fatalf("%d metric families, want 5", len(families))
	}
	for _, f := range families {
		if !strings.Contains(string(doc), "`"+f.GetName()+"`") {
			t.Errorf("%s is not in docs/metrics.md", f.GetName())
		}
	}
}
