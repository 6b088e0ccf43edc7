package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"flowlens/internal/chdb"
	"flowlens/schema"
)

func benchFlows(n int) []schema.Flow {
	now := uint32(time.Now().Unix())
	out := make([]schema.Flow, n)
	for i := range out {
		out[i] = schema.Flow{
			TimeReceived: now, FlowStartMs: int64(now)*1000 - int64(i%5000), FlowEndMs: int64(now) * 1000,
			Source: schema.SourceNetFlowV9, ExporterAddr: netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 4)}), SamplingRate: 1,
			Protocol: []string{"TLS", "DNS", "HTTP", "QUIC", "Unknown"}[i%5], ProtocolConfidence: schema.ConfidencePort,
			Bytes: uint64(40 + i%1500), Packets: uint64(1 + i%10), EType: 0x0800,
			SrcAddr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), DstAddr: netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}),
			SrcPort: uint16(1024 + i%60000), DstPort: []uint16{443, 53, 80, 443, 8080}[i%5], IPProtocol: 6, InIf: uint32(i % 8), OutIf: uint32(i % 3),
		}
	}
	return out
}

// batchOf is a batch of flows.
func batchOf(flows []schema.Flow) *schema.Batch {
	batch := schema.NewBatch()
	for i := range flows {
		batch.Append(&flows[i])
	}
	return batch
}

// BenchmarkInsert compares ways of handing a 50k-row batch to chDB:
// Native inline after INSERT (what Store does), the same Native block read
// back through file() (what Store does, the spool write included), and
// JSONEachRow text inline. rows/s is the figure
// to compare; ns/op is per batch.
func BenchmarkInsert(b *testing.B) {
	if _, err := os.Stat(chdb.LibraryPath()); err != nil {
		b.Skip("libchdb not found: make chdb")
	}
	const rows = 50_000
	flows := benchFlows(rows)
	batch := batchOf(flows)
	native, err := batch.Native()
	if err != nil {
		b.Fatal(err)
	}
	var jsonRows []byte
	for i := range flows {
		jsonRows = schema.AppendJSON(jsonRows, &flows[i])
		jsonRows = append(jsonRows, '\n')
	}
	variants := []struct {
		name    string
		prepare func(dir string) []byte
	}{
		{"native-inline", func(string) []byte {
			return append([]byte("INSERT INTO flows FORMAT Native\n"), native...)
		}},
		{"native-file", nil},
		{"jsoneachrow-inline", func(string) []byte {
			return append([]byte("INSERT INTO flows FORMAT JSONEachRow\n"), jsonRows...)
		}},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			dir := b.TempDir()
			cfg := DefaultConfig()
			cfg.DataDir = filepath.Join(dir, "data")
			s, err := New(cfg, slog.New(slog.DiscardHandler), nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer s.Stop()
			b.SetBytes(int64(len(native)))
			b.ResetTimer()
			if v.prepare == nil {
				for range b.N {
					if err := s.insert(batch); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				q := v.prepare(dir)
				for range b.N {
					if _, err := s.conn.Query(q, ""); err != nil {
						b.Skipf("%s fails: %v", v.name, err)
					}
				}
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
			b.StopTimer()
			out, err := s.Query(context.Background(), "SELECT count() FROM flows", "TSVRaw")
			if err != nil || string(out) != fmt.Sprintf("%d\n", rows*b.N) {
				b.Fatalf("stored %q, want %d (%v)", out, rows*b.N, err)
			}
		})
	}
}

// BenchmarkEncode is the Go side of an insert: appending rows into the
// columns and encoding the Native block.
func BenchmarkEncode(b *testing.B) {
	const rows = 50_000
	flows := benchFlows(rows)
	batch := schema.NewBatch()
	b.ReportAllocs()
	for range b.N {
		batch.Reset()
		for i := range flows {
			batch.Append(&flows[i])
		}
		if _, err := batch.Native(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkInsertRollups is what the materialized views cost an insert:
// the same 50k-row batches through Store.insert with only flows_1m's view
// (schema version 5), with the hourly rollups' too (version 6) and with
// those of version 7 (servers_1d's view on servers_1h's inserts; hosts_1d
// is refreshed apart, top_conversations_1d too). The batch is the worst case for
// conversations_1h: 50k distinct address pairs, nothing to fold.
func BenchmarkInsertRollups(b *testing.B) {
	if _, err := os.Stat(chdb.LibraryPath()); err != nil {
		b.Skip("libchdb not found: make chdb")
	}
	const rows = 50_000
	batch := batchOf(benchFlows(rows))
	for _, v := range []struct {
		name string
		drop []string
	}{
		{"v5-flows_1m", schema.AllRollups()},
		{"v6-flows_1h-only", append([]string{"conversations_1h", "servers_1h"}, schema.DailyRollups()...)},
		{"v6-conversations_1h-only", append([]string{"flows_1h", "servers_1h"}, schema.DailyRollups()...)},
		{"v6-hourly", schema.DailyRollups()},
		{"v7-daily", nil},
	} {
		b.Run(v.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.DataDir = filepath.Join(b.TempDir(), "data")
			s, err := New(cfg, slog.New(slog.DiscardHandler), nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer s.Stop()
			for _, r := range v.drop {
				if err := s.Exec(context.Background(), "DROP VIEW "+r+"_mv"); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				if err := s.insert(batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
