package schema

import (
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestSchemaDocUpToDate(t *testing.T) {
	for path, want := range map[string]string{"../docs/schema.md": Markdown(), "../docs/queries.md": QueriesMarkdown()} {
		if *update {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("%s is stale: run `make docs` (%v)", path, err)
		}
	}
}

// The column builders, the JSON keys and the DDL all come from Columns.
func TestColumnsDerived(t *testing.T) {
	b := NewBatch()
	seen := map[string]bool{}
	for i, c := range Columns {
		if seen[c.Name] {
			t.Fatalf("duplicate column %s", c.Name)
		}
		seen[c.Name] = true
		if got := string(b.Input()[i].Data.Type()); got != c.Type {
			t.Errorf("%s: builder type %s, DDL type %s", c.Name, got, c.Type)
		}
		if c.Doc == "" {
			t.Errorf("%s has no doc", c.Name)
		}
		if !strings.Contains(CreateFlows(DefaultTableConfig(), 0), "`"+c.Name+"` "+c.Type) {
			t.Errorf("%s missing from DDL", c.Name)
		}
	}
	cb := NewBatchOf(CounterColumns)
	for i, c := range CounterColumns {
		if got := string(cb.Input()[i].Data.Type()); got != c.Type {
			t.Errorf("counters %s: builder type %s, DDL type %s", c.Name, got, c.Type)
		}
		if !strings.Contains(CreateCounters(DefaultTableConfig()), "`"+c.Name+"` "+c.Type) {
			t.Errorf("counters %s missing from DDL", c.Name)
		}
	}
	f := Flow{SrcAddr: netip.MustParseAddr("192.0.2.1"), DstAddr: netip.MustParseAddr("2001:db8::1"), Protocol: `a"b`}
	f.MPLSLabels[0], f.MPLSLabelsLen = 16, 1
	var m map[string]any
	if err := json.Unmarshal(AppendJSON(nil, &f), &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != len(Columns) || m["src_addr"] != "192.0.2.1" || m["dst_addr"] != "2001:db8::1" || m["protocol"] != `a"b` {
		t.Fatalf("json: %v", m)
	}
}

func TestBatchNative(t *testing.T) {
	b := NewBatch()
	var f Flow
	for range 3 {
		b.Append(&f)
	}
	data, err := b.Native()
	if err != nil || b.Rows() != 3 || len(data) == 0 {
		t.Fatalf("native: %d rows, %d bytes, %v", b.Rows(), len(data), err)
	}
	b.Reset()
	if b.Rows() != 0 || b.Input()[0].Data.Rows() != 0 {
		t.Fatal("reset kept rows")
	}
}

func BenchmarkBatchAppend(b *testing.B) {
	batch := NewBatch()
	f := Flow{SrcAddr: netip.MustParseAddr("192.0.2.1"), DstAddr: netip.MustParseAddr("198.51.100.1"), Protocol: "TLS", Bytes: 1500, Packets: 1}
	b.ReportAllocs()
	for i := range b.N {
		if i%50000 == 0 {
			batch.Reset()
		}
		batch.Append(&f)
	}
}
