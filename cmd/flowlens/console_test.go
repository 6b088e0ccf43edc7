package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
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
