package decoder

import (
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"flowlens/collector/pcap"
	"flowlens/schema"
)

// corpusPayloads returns the UDP payloads of every corpus capture.
func corpusPayloads(tb testing.TB) [][]byte {
	tb.Helper()
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*.pcap"))
	var out [][]byte
	for _, path := range files {
		fh, err := os.Open(path)
		if err != nil {
			continue
		}
		_, _ = pcap.ReadUDP(fh, func(d pcap.Datagram) error {
			out = append(out, append([]byte(nil), d.Payload...))
			return nil
		})
		fh.Close()
	}
	return out
}

var fuzzExporter = netip.MustParseAddrPort("192.0.2.1:2055")

// fuzzDecode decodes data twice with one Decoder, so that templates the
// input holds apply to its own data sets the second time, and checks the
// emitted records.
func fuzzDecode(t *testing.T, data []byte) {
	cfg := DefaultConfig()
	cfg.DefaultSamplingRate = 3
	cfg.SamplingOverrides = []SamplingOverride{{netip.MustParsePrefix("198.51.100.0/24"), 7}}
	d := New(cfg)
	d.OnCounters(func(c *schema.InterfaceCounters) {
		if !c.ExporterAddr.IsValid() {
			t.Fatalf("bad counters %+v", c)
		}
	})
	now := time.Unix(1700000000, 0)
	emit := func(f *schema.Flow) {
		if f.SamplingRate == 0 || f.Source == schema.SourceUnknown || f.SamplingSource > schema.SamplingUnknown {
			t.Fatalf("bad flow %+v", f)
		}
		if f.SamplingSource == schema.SamplingNone && f.SamplingRate != 1 {
			t.Fatalf("rate %d without sampling information", f.SamplingRate)
		}
		if f.MPLSLabelsLen > schema.MaxMPLSLabels {
			t.Fatalf("mpls labels %d", f.MPLSLabelsLen)
		}
	}
	for i := 0; i < 2; i++ {
		_ = d.Decode(data, fuzzExporter, now, emit)
		now = now.Add(time.Second)
	}
	_ = d.Stats()
	_ = d.Exporters()
	// Whatever was learnt from the wire can be saved and loaded.
	state, err := d.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	if err := New(cfg).UnmarshalState(state); err != nil {
		t.Fatalf("state learnt from the wire does not load: %v", err)
	}
}

// seedVersion adds the corpus payloads whose version matches.
func seedVersion(f *testing.F, match func([]byte) bool) {
	for _, p := range corpusPayloads(f) {
		if match(p) {
			f.Add(p)
		}
	}
}

func isVersion(v uint16) func([]byte) bool {
	return func(p []byte) bool { return len(p) >= 4 && binary.BigEndian.Uint16(p) == v }
}

func isSFlow(p []byte) bool { return len(p) >= 4 && binary.BigEndian.Uint32(p) == 5 }

// withVersion keeps the fuzzer on one version's path.
func withVersion(data []byte, v []byte) []byte {
	if len(data) < len(v) {
		return data
	}
	out := append([]byte(nil), data...)
	copy(out, v)
	return out
}

func FuzzDecode(f *testing.F) {
	seedVersion(f, func([]byte) bool { return true })
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, data) })
}

func FuzzDecodeV5(f *testing.F) {
	seedVersion(f, isVersion(5))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, withVersion(data, []byte{0, 5})) })
}

func FuzzDecodeV9(f *testing.F) {
	seedVersion(f, isVersion(9))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, withVersion(data, []byte{0, 9})) })
}

func FuzzDecodeIPFIX(f *testing.F) {
	seedVersion(f, isVersion(10))
	f.Fuzz(func(t *testing.T, data []byte) {
		data = withVersion(data, []byte{0, 10})
		if len(data) >= 4 {
			// Make the message length agree often enough to get past it.
			binary.BigEndian.PutUint16(data[2:], uint16(len(data)))
		}
		fuzzDecode(t, data)
	})
}

func FuzzDecodeSFlow(f *testing.F) {
	seedVersion(f, isSFlow)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, withVersion(data, []byte{0, 0, 0, 5})) })
}

func FuzzParseHeader(f *testing.F) {
	for _, p := range corpusPayloads(f) {
		if len(p) > 64 {
			f.Add(uint32(1), p[:64])
			f.Add(uint32(11), p[20:64])
		}
	}
	f.Add(uint32(1), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x81, 0, 0, 5, 0x88, 0x47, 0, 0, 1, 0xff, 0x45})
	f.Fuzz(func(t *testing.T, proto uint32, data []byte) {
		var fl schema.Flow
		ParseHeader(proto%16, data, &fl)
		if fl.MPLSLabelsLen > schema.MaxMPLSLabels {
			t.Fatalf("mpls labels %d", fl.MPLSLabelsLen)
		}
	})
}

// FuzzUnmarshalState: a corrupt or hostile state file is an error, never
// a panic; a state that loads saves again and loads again.
func FuzzUnmarshalState(f *testing.F) {
	for _, p := range corpusPayloads(f) {
		d := New(DefaultConfig())
		if d.Decode(p, fuzzExporter, time.Unix(1700000000, 0), func(*schema.Flow) {}) == nil && d.Stats().Templates > 0 {
			if st, err := d.MarshalState(); err == nil {
				f.Add(st)
			}
		}
	}
	f.Add([]byte("FLDS\x01\x00\x00\x00\x01\x04\xc0\x00\x02\x01\x00\x01\x00\x00\x00\x0a\x00\x00\x00\x00\x00\x00\x08\x01\x00\x00\x01\x00\x08\x00\x04\x00\x00\x00\x00"))
	// Hostile: a template claiming 65535 fields of 65535 bytes; an
	// exporter count far over the limit; an options template kind with a
	// data template's bytes.
	hostile := []byte("FLDS\x01\x00\x00\x00\x01\x04\xc0\x00\x02\x01\x00\x01\x00\x00\x00\x0a\x00\x00\x00\x00\x00\x00\x08\x01\x00\xff\xff\x00\x08\xff\xff\x00\x00\x00\x00")
	f.Add(hostile)
	f.Add([]byte("FLDS\x01\x7f\xff\xff\xff"))
	f.Add([]byte("FLDS\x01\x00\x00\x00\x01\x04\xc0\x00\x02\x01\x00\x01\x00\x00\x00\x0a\x00\x00\x00\x00\x01\x00\x08\x01\x00\x00\x01\x00\x08\x00\x04\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := New(DefaultConfig())
		if err := d.UnmarshalState(data); err != nil {
			if d.Stats().Exporters != 0 {
				t.Fatalf("failed load changed the decoder: %v", err)
			}
			return
		}
		st, err := d.MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		if err := New(DefaultConfig()).UnmarshalState(st); err != nil {
			t.Fatalf("saved state does not load: %v", err)
		}
	})
}

// fuzzFixed decodes an IPFIX message holding tpl, then a data set of the
// fuzzer's bytes under template 256.
func fuzzFixed(t *testing.T, tpl, data []byte) {
	fuzzDecode(t, ipfix(set(2, tpl), set(256, data)))
}

// FuzzBiflow targets RFC 5103 reverse flows.
func FuzzBiflow(f *testing.F) {
	tpl := ipfixTemplate(256, 8, 4, 0, 12, 4, 0, 7, 2, 0, 11, 2, 0, 1, 4, 0, 2, 4, 0,
		1, 4, penReverse, 2, 0xffff, penReverse, 6, 1, penReverse, 8, 4, penReverse)
	f.Add(append(be32(be32(be32(be16(be16([]byte{10, 0, 0, 1, 10, 0, 0, 2}, 1), 2), 3), 4), 5), 4, 0, 0, 0, 6, 0x12, 1, 2, 3, 4))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) { fuzzFixed(t, tpl, data) })
}

// FuzzMikroTik targets in-record sampling rates (byte-swapped or not) and
// relative times with a system init time.
func FuzzMikroTik(f *testing.F) {
	tpl := ipfixTemplate(256, 8, 4, 0, 12, 4, 0, 1, 4, 0, 2, 4, 0, 34, 4, 0, 22, 4, 0, 21, 4, 0, 160, 8, 0)
	rec := be32(be32(be32(be32([]byte{10, 0, 0, 1, 10, 0, 0, 2}, 100), 2), 0x64000000), 1000)
	rec = be32(be32(be32(rec, 2000), 0x18b), 0xcfe2_3000)
	f.Add(rec)
	f.Add(append(rec[:16], 0, 2, 0, 0))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzFixed(t, tpl, data) })
}
