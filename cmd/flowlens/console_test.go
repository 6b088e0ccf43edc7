package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"flowlens/console"
	"flowlens/internal/chdb/chhttp"
	"flowlens/schema"
	"flowlens/sink/embedded"
)

// TestConsoleServed: `flowlens run` serves the web console on its HTTP
// port, reading the embedded store the collector fills: the page, and the
// top applications of softflowd's export of a capture, whose bytes are the
// exporter's total.
func TestConsoleServed(t *testing.T) {
	needChdb(t)
	d := startDaemon(t, t.TempDir())
	e := readExpect(t, "softflowd-v9-dropbox")
	replayPcap(t, "softflowd-v9-dropbox.pcap", d.netflow, 0, -1)
	d.waitStored(e.DataRecords)
	get := func(path string) []byte {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", d.httpP, path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s: %s", path, resp.Status, b)
		}
		return b
	}
	if page := string(get("/")); !strings.Contains(page, "<html") || !strings.Contains(page, "flowlens") {
		t.Errorf("console page: %.200s", page)
	}
	var top struct {
		Columns []string `json:"columns"`
		Rows    [][]any  `json:"rows"`
	}
	raw := get("/api/v1/console/top?dim=applications&range=30d")
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatalf("top: %v: %s", err, raw)
	}
	col := -1
	for i, c := range top.Columns {
		if c == "bytes" {
			col = i
		}
	}
	var sum float64
	for _, r := range top.Rows {
		if col >= 0 && col < len(r) {
			if v, ok := r[col].(float64); ok {
				sum += v
			}
		}
	}
	if col < 0 || uint64(sum) != e.BytesSum {
		t.Errorf("top applications: bytes %v, want %d (%s)", sum, e.BytesSum, raw)
	}
	if n := d.metricBy("flowlens_console_requests_total", `endpoint="top"`); n != 1 {
		t.Errorf("flowlens_console_requests_total{endpoint=\"top\"} = %v, want 1", n)
	}
}

// TestConsoleRole: `flowlens console` serves the console from a ClickHouse
// server's HTTP interface — here chhttp over an embedded store of this
// process (the same engine), with no libchdb for the binary — and answers
// short ranges from flows and long ones from the hourly rollups.
func TestConsoleRole(t *testing.T) {
	needChdb(t)
	dir := t.TempDir()
	scfg := embedded.DefaultConfig()
	scfg.DataDir = filepath.Join(dir, "store")
	store, err := embedded.New(scfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := store.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer store.Stop()
	now := uint32(time.Now().Unix())
	client, server := netip.MustParseAddr("::ffff:10.0.0.7"), netip.MustParseAddr("::ffff:203.0.113.9")
	for i, age := range []uint32{60, 2 * 86400} {
		f := schema.Flow{TimeReceived: now - age, Source: schema.SourceIPFIX, ExporterAddr: netip.MustParseAddr("::ffff:192.0.2.1"),
			SrcAddr: client, DstAddr: server, SrcPort: 50000, DstPort: 443, IPProtocol: 6, Protocol: "TLS.Dropbox", AppCategory: "Cloud",
			ServerName: "www.dropbox.com", Bytes: uint64(1000 * (i + 1)), Packets: 10, SrcPool: "office"}
		store.Put(&f)
	}
	store.Flush(ctx)
	sessions, err := console.OpenEmbedded(scfg.DataDir, console.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer sessions.Close()
	ch := httptest.NewServer(chhttp.Handler(sessions, sessions))
	defer ch.Close()

	d := &daemon{t: t, dir: dir, httpP: freePort(t, "tcp"), command: "console",
		env: []string{"FLOWLENS_CONSOLE_CLICKHOUSE_URL=" + ch.URL, "CHDB_LIB_PATH=/nonexistent/libchdb.so"}}
	d.start()
	t.Cleanup(d.stop)
	get := func(path string, into any) string {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", d.httpP, path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s: %s\n%s", path, resp.Status, b, d.logText())
		}
		if into != nil {
			if err := json.Unmarshal(b, into); err != nil {
				t.Fatalf("%s: %v: %s", path, err, b)
			}
		}
		return string(b)
	}
	if page := get("/", nil); !strings.Contains(page, "<html") {
		t.Errorf("console page: %.200s", page)
	}
	type top struct {
		Table string  `json:"table"`
		Rows  [][]any `json:"rows"`
	}
	for _, c := range []struct {
		path, table string
		bytes       float64
	}{
		{"/api/v1/console/top?dim=applications&range=15m", "flows", 1000},
		{"/api/v1/console/top?dim=applications&range=7d", "flows_1h", 3000},
		// One pool filter over a week: the daily top lists (today's from
		// conversations_1h); two filters: conversations_1h alone.
		{"/api/v1/console/top?dim=conversations&range=7d&pool=office", "top_conversations_1d", 3000},
		{"/api/v1/console/top?dim=conversations&range=7d&pool=office&exporter=192.0.2.1", "conversations_1h", 3000},
		{"/api/v1/console/top?dim=servers&range=30d", "servers_1d", 3000},
		{"/api/v1/console/top?dim=talkers&range=30d&limit=1", "hosts_1d", 3000},
	} {
		var r top
		get(c.path, &r)
		if r.Table != c.table || len(r.Rows) != 1 || !slices.Contains(r.Rows[0], any(c.bytes)) {
			t.Errorf("%s: %s %v, want %s with %v bytes", c.path, r.Table, r.Rows, c.table, c.bytes)
		}
	}
	if !strings.Contains(d.logText(), fmt.Sprintf("msg=\"clickhouse schema\" version=%d", schema.Version())) {
		t.Errorf("the schema version is not logged:\n%s", d.logText())
	}
	if m := get("/metrics", nil); !strings.Contains(m, `flowlens_console_requests_total{`) {
		t.Errorf("no console metrics")
	}
}

// TestConsoleRoleConfig: without the server's URL, or with a bad one,
// `flowlens console` says which variable to set.
func TestConsoleRoleConfig(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"", "FLOWLENS_CONSOLE_CLICKHOUSE_URL: flowlens console needs"},
		{"clickhouse:8123", "CONSOLE_CLICKHOUSE_URL: want http://host:8123"},
		{"http://user:pw@clickhouse:8123", "not in the URL"},
	} {
		t.Setenv("FLOWLENS_CONSOLE_CLICKHOUSE_URL", c.url)
		var out, errOut strings.Builder
		err := dispatch(context.Background(), []string{"console", "--check"}, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("url %q: %v, want %q", c.url, err, c.want)
		}
	}
	t.Setenv("FLOWLENS_CONSOLE_CLICKHOUSE_URL", "http://clickhouse:8123")
	var out, errOut strings.Builder
	if err := dispatch(context.Background(), []string{"console", "--check"}, &out, &errOut); err != nil || out.String() != "configuration ok\n" {
		t.Errorf("good url: %v %q", err, out.String())
	}
}
