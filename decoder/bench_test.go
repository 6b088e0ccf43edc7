package decoder

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"flowlens/collector/pcap"
	"flowlens/schema"
)

// benchCapture loads a corpus capture, primes a Decoder with it (templates,
// sampling options), and returns the datagrams that carry flows.
func benchCapture(b *testing.B, name string, goflow2 bool) (*Decoder, []pcap.Datagram, int) {
	b.Helper()
	fh, err := os.Open(filepath.Join(corpusDir, name))
	if err != nil {
		b.Skipf("corpus: %v", err)
	}
	defer fh.Close()
	d := New(DefaultConfig())
	d.useGoflow2 = goflow2
	var dgs []pcap.Datagram
	records := 0
	_, err = pcap.ReadUDP(fh, func(dg pcap.Datagram) error {
		n := 0
		dg.Payload = append([]byte(nil), dg.Payload...)
		_ = d.Decode(dg.Payload, dg.Src, dg.Timestamp, func(*schema.Flow) { n++ })
		if n > 0 {
			dgs = append(dgs, dg)
			records += n
		}
		return nil
	})
	if err != nil || records == 0 {
		b.Skipf("no records in %s: %v", name, err)
	}
	return d, dgs, records
}

// benchDecode measures our parsers ("flowlens") and goflow2's decoders
// ("goflow2", the reference path) on the same capture in one run, so that
// the ratio survives a noisy machine.
func benchDecode(b *testing.B, name string) {
	b.Run("flowlens", func(b *testing.B) { benchPath(b, name, false) })
	b.Run("goflow2", func(b *testing.B) { benchPath(b, name, true) })
}

func benchPath(b *testing.B, name string, goflow2 bool) {
	d, dgs, records := benchCapture(b, name, goflow2)
	var sink uint64
	emit := func(f *schema.Flow) { sink += f.Bytes }
	now := time.Now()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, dg := range dgs {
			_ = d.Decode(dg.Payload, dg.Src, now, emit)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	total := float64(b.N) * float64(records)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/total, "ns/record")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/total, "allocs/record")
	b.ReportMetric(float64(records)/float64(len(dgs)), "records/datagram")
	_ = sink
}

func BenchmarkDecodeV5(b *testing.B) { benchDecode(b, "akvorado-nfv5.pcap") }
func BenchmarkDecodeV9(b *testing.B) { benchDecode(b, "softflowd-v9-dropbox.pcap") }
func BenchmarkDecodeIPFIX(b *testing.B) {
	benchDecode(b, "pmacct-401-ipfix-ipv6-cisco-mpls-udponly.pcap")
}
func BenchmarkDecodeSFlow(b *testing.B) { benchDecode(b, "pmacctd-sfprobe-dropbox.pcap") }

func BenchmarkParseHeader(b *testing.B) {
	// Ethernet / 802.1Q / IPv4 / TCP.
	pkt := []byte{
		0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x81, 0x00, 0x00, 0x64, 0x08, 0x00,
		0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
		0x30, 0x39, 0x01, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x18, 0, 0, 0, 0, 0, 0,
	}
	var f schema.Flow
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		f.Reset()
		ParseHeader(1, pkt, &f)
	}
	if f.DstPort != 443 || f.SrcVlan != 100 {
		b.Fatalf("parsed %+v", f)
	}
}
