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
	d := New(DefaultConfig())
	now := time.Unix(1700000000, 0)
	emit := func(f *schema.Flow) {
		if f.SamplingRate == 0 || f.Source == schema.SourceUnknown {
			t.Fatalf("bad flow %+v", f)
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
