package decoder

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"flowlens/collector/pcap"
	"flowlens/schema"
)

// corpusDir is the shared test corpus, read in place.
var corpusDir = filepath.Join("..", "..", "shared", "corpus", "flows")

// expectation is the part of NAME.expect.json (tshark's reading) we check.
type expectation struct {
	ExportProtocol string            `json:"export_protocol"`
	DataRecords    int               `json:"data_records"`
	BytesSum       uint64            `json:"bytes_sum"`
	PacketsSum     uint64            `json:"packets_sum"`
	FlowsetsNoTpl  int               `json:"flowsets_without_template"`
	AllSums        map[string]uint64 `json:"counter_field_sums_all_occurrences"`
	FirstRecords   []struct {
		SrcAddr     *string `json:"src_addr"`
		DstAddr     *string `json:"dst_addr"`
		SrcPort     *uint16 `json:"src_port"`
		DstPort     *uint16 `json:"dst_port"`
		Proto       *uint8  `json:"proto"`
		Bytes       *uint64 `json:"bytes"`
		Packets     *uint64 `json:"packets"`
		FrameLength *uint64 `json:"frame_length"`
		Sampling    *uint32 `json:"sampling_rate"`
	} `json:"first_records"`
}

// corpusException documents a capture where our reading differs from
// tshark's on purpose; every other assertion still applies.
type corpusException struct {
	// replayed: we decode data sets that came before their template once
	// the template arrives (pending buffer); tshark never does. Those
	// records are checked apart and must exist.
	replayed bool
	// skipFirstL4: do not compare ports/protocol of the first records.
	skipFirstL4 bool
	// override, when set, replaces tshark's record count and raw sums.
	override *struct {
		records        int
		bytes, packets uint64
	}
	reason string
}

var corpusExceptions = map[string]corpusException{
	"akvorado-nfv9-data+templates-same-packet": {
		replayed: true,
		reason:   "first data FlowSet precedes its template in the same datagram; we decode it from the pending buffer",
	},
	"pmacct-112-ipfix-cisco-options": {
		override: &struct {
			records        int
			bytes, packets uint64
		}{9, 1197, 19},
		reason: "the exporter changes source port (61853 -> 65156) between template 347 and its data; tshark keys " +
			"templates by address+port and decodes none; we key by session (address, port, domain) and fall back to the " +
			"template of the address's previous port (Stats.TemplatePortFallbacks), and decode 9; " +
			"4 Sets (templates 341, 313, 348, 342) stay waiting for a template",
	},
	"pmacct-106-ipfix-huawei-vrf-name": {
		skipFirstL4: true,
		reason: "records carry IEs 4/7/11 twice (outer IPv6 tunnel, inner IPv4 packet); tshark's expectation mixes the inner " +
			"IPv4 addresses with the outer ports/protocol; we keep the last occurrence (inner 5-tuple: UDP 2222->1111)",
	},
}

// corpusChecks are further per-capture expectations beyond tshark's fields.
var corpusChecks = map[string]func(t *testing.T, recs []decodedRecord){
	// NBAR: application id in the record, name from options data.
	"logstash-nfv9-cisco-nbar": func(t *testing.T, recs []decodedRecord) {
		if f := recs[0].flow; f.Protocol != "icmp" || f.ProtocolConfidence != schema.ConfidenceExporter {
			t.Errorf("nbar label %q %s", f.Protocol, f.ProtocolConfidence)
		}
	},
	// nProbe's L7_PROTO_NAME in this capture is binary garbage (tshark:
	// "trailing stray characters"): it must not become a label.
	"logstash-nfv9-nprobe-dpi": func(t *testing.T, recs []decodedRecord) {
		for _, r := range recs {
			if r.flow.Protocol != "" {
				t.Errorf("label %q", r.flow.Protocol)
			}
		}
	},
	"akvorado-nfv9-samplingrate": func(t *testing.T, recs []decodedRecord) {
		for _, r := range recs {
			if r.flow.SamplingRate != 2048 {
				t.Errorf("sampling rate %d, want 2048", r.flow.SamplingRate)
			}
		}
	},
	"akvorado-nfv9-multiplesamplingrates": func(t *testing.T, recs []decodedRecord) {
		rates := map[uint32]int{}
		for _, r := range recs {
			rates[r.flow.SamplingRate]++
		}
		if rates[2000] != 11 || rates[4000] != 1 {
			t.Errorf("sampling rates %v", rates)
		}
	},
	"akvorado-ipfix-mpls": func(t *testing.T, recs []decodedRecord) {
		if l := recs[0].flow.Labels(); len(l) != 2 || l[0] != 20005 || l[1] != 524250 {
			t.Errorf("mpls labels %v", l)
		}
	},
	"akvorado-sflow-qinq": func(t *testing.T, recs []decodedRecord) {
		if f := recs[0].flow; f.SrcVlan != 1062 || f.Bytes != 106*4096 || f.Packets != 4096 {
			t.Errorf("qinq flow %+v", f)
		}
	},
}

// corpusReverseChecks check the reverse flows of RFC 5103 biflow captures:
// tshark 4.0 names the reverse counters like the forward ones, so its
// all-occurrence sums minus the first-occurrence sums are the reverse sums.
var corpusReverseChecks = map[string]func(t *testing.T, fwd, rev []decodedRecord, exp expectation){
	"akvorado-ipfix-ipfixprobe-biflow": func(t *testing.T, fwd, rev []decodedRecord, exp expectation) {
		var b, p uint64
		for _, r := range rev {
			b += r.rawBytes
			p += r.rawPackets
		}
		wantB := exp.AllSums["cflow.octets"] - exp.BytesSum
		wantP := exp.AllSums["cflow.packets"] - exp.PacketsSum
		// Two of the four records have non-zero reverse counters.
		if len(rev) != 2 || b != wantB || p != wantP {
			t.Errorf("reverse flows %d, bytes %d, packets %d; want 2, %d, %d", len(rev), b, p, wantB, wantP)
		}
		if len(rev) == 0 {
			return
		}
		f, r := fwd[0].flow, rev[0].flow
		if r.SrcAddr != f.DstAddr || r.DstAddr != f.SrcAddr || r.SrcPort != f.DstPort || r.DstPort != f.SrcPort ||
			r.InIf != f.OutIf || r.SrcMAC != f.DstMAC || r.IPProtocol != f.IPProtocol || r.Bytes != 128 || r.Packets != 1 {
			t.Errorf("reverse of %+v is %+v", f, r)
		}
	},
}

// decodedRecord is what the test keeps of an emitted flow.
type decodedRecord struct {
	flow                 schema.Flow
	rawBytes, rawPackets uint64
	haveBytes, havePkts  bool
	replayed             bool
	reverse              bool // the RFC 5103 reverse flow of a biflow record
}

// decodeCapture feeds a capture's datagrams in order to one Decoder.
func decodeCapture(t testing.TB, path string) ([]decodedRecord, *Decoder, int) {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	d := New(DefaultConfig())
	var cur decodedRecord
	d.rawHook = func(b, p uint64, hb, hp bool) {
		cur.rawBytes, cur.rawPackets, cur.haveBytes, cur.havePkts = b, p, hb, hp
	}
	var out []decodedRecord
	errs := 0
	_, err = pcap.ReadUDP(fh, func(dg pcap.Datagram) error {
		if err := d.Decode(dg.Payload, dg.Src, dg.Timestamp, func(f *schema.Flow) {
			cur.flow = *f
			cur.replayed = d.replaying
			cur.reverse = d.reversing
			out = append(out, cur)
		}); err != nil {
			t.Logf("datagram from %s: %v", dg.Src, err)
			errs++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return out, d, errs
}

func TestCorpus(t *testing.T) {
	if _, err := os.Stat(corpusDir); err != nil {
		t.Skipf("corpus not available: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*.pcap"))
	sort.Strings(files)
	if len(files) == 0 {
		t.Skip("no captures in corpus")
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".pcap")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(strings.TrimSuffix(path, ".pcap") + ".expect.json")
			if err != nil {
				t.Skipf("no expectation: %v", err)
			}
			var exp expectation
			if err := json.Unmarshal(raw, &exp); err != nil {
				t.Fatal(err)
			}
			all, d, errs := decodeCapture(t, path)
			if errs != 0 {
				t.Errorf("%d datagrams failed to decode", errs)
			}
			// Keep the records of the export protocol tshark decoded
			// (tcpdump-sflow-counters-30pdus also holds NetFlow v5).
			ex, isException := corpusExceptions[name]
			var recs, reverse []decodedRecord
			replayed := 0
			for _, r := range all {
				if r.reverse {
					// tshark counts the record once; its reverse
					// counters are checked by corpusReverseChecks.
					checkInvariants(t, r)
					reverse = append(reverse, r)
					continue
				}
				isSFlow := r.flow.Source == schema.SourceSFlowV5
				if isSFlow != (exp.ExportProtocol == "sflow") {
					continue
				}
				checkInvariants(t, r)
				if r.replayed {
					replayed++
					continue
				}
				recs = append(recs, r)
			}
			st := d.Stats()
			if isException {
				t.Logf("documented exception: %s", ex.reason)
			}
			if replayed > 0 && !ex.replayed {
				t.Errorf("%d records decoded from the pending buffer: tshark cannot; document it", replayed)
			}
			if ex.replayed && (replayed == 0 || st.PendingDecoded == 0 || st.WaitingForTemplate == 0) {
				t.Errorf("expected records from the pending buffer: replayed %d, stats %+v", replayed, st)
			}
			var bytesSum, pktsSum uint64
			for _, r := range recs {
				if r.haveBytes {
					bytesSum += r.rawBytes
				}
				if r.havePkts {
					pktsSum += r.rawPackets
				}
			}
			wantRecords, wantBytes, wantPkts := exp.DataRecords, exp.BytesSum, exp.PacketsSum
			if o := ex.override; o != nil {
				wantRecords, wantBytes, wantPkts = o.records, o.bytes, o.packets
			}
			if len(recs) != wantRecords {
				t.Errorf("records = %d, want %d", len(recs), wantRecords)
			}
			if bytesSum != wantBytes {
				t.Errorf("raw bytes sum = %d, want %d", bytesSum, wantBytes)
			}
			if pktsSum != wantPkts {
				t.Errorf("raw packets sum = %d, want %d", pktsSum, wantPkts)
			}
			if exp.FlowsetsNoTpl > 0 && st.WaitingForTemplate == 0 {
				t.Errorf("tshark saw %d sets without template, WaitingForTemplate = 0", exp.FlowsetsNoTpl)
			}
			if check := corpusChecks[name]; check != nil && len(recs) > 0 {
				check(t, recs)
			}
			if check := corpusReverseChecks[name]; check != nil {
				check(t, recs, reverse, exp)
			} else if len(reverse) > 0 {
				t.Errorf("%d reverse flows: document them in corpusReverseChecks", len(reverse))
			}
			for i, want := range exp.FirstRecords {
				if i >= len(recs) {
					t.Errorf("record %d missing", i)
					break
				}
				r := recs[i]
				f := r.flow
				checkAddr(t, i, "src", f.SrcAddr, want.SrcAddr)
				checkAddr(t, i, "dst", f.DstAddr, want.DstAddr)
				if !ex.skipFirstL4 {
					checkNum(t, i, "src port", uint64(f.SrcPort), want.SrcPort)
					checkNum(t, i, "dst port", uint64(f.DstPort), want.DstPort)
					checkNum(t, i, "proto", uint64(f.IPProtocol), want.Proto)
				}
				if exp.ExportProtocol == "sflow" {
					checkNum(t, i, "frame length", r.rawBytes, want.FrameLength)
					checkNum(t, i, "sampling rate", uint64(f.SamplingRate), want.Sampling)
					if want.FrameLength != nil && want.Sampling != nil && f.Bytes != *want.FrameLength*uint64(*want.Sampling) {
						t.Errorf("record %d: bytes = %d, want frame length × rate %d", i, f.Bytes, *want.FrameLength*uint64(*want.Sampling))
					}
					continue
				}
				if want.Bytes != nil {
					checkNum(t, i, "bytes", r.rawBytes, want.Bytes)
				} else if r.haveBytes {
					t.Errorf("record %d: tshark has no octets field, we read %d", i, r.rawBytes)
				}
				if want.Packets != nil {
					checkNum(t, i, "packets", r.rawPackets, want.Packets)
				}
			}
		})
	}
}

// checkInvariants holds for every emitted flow.
func checkInvariants(t *testing.T, r decodedRecord) {
	t.Helper()
	f := r.flow
	if f.Source == schema.SourceUnknown || f.SamplingRate == 0 || !f.ExporterAddr.IsValid() || f.TimeReceived == 0 {
		t.Errorf("incomplete flow: %+v", f)
	}
	if r.haveBytes && f.Bytes != r.rawBytes*uint64(f.SamplingRate) {
		t.Errorf("bytes %d != raw %d × rate %d", f.Bytes, r.rawBytes, f.SamplingRate)
	}
}

func checkAddr(t *testing.T, i int, what string, got netip.Addr, want *string) {
	t.Helper()
	if want == nil {
		if got.IsValid() {
			t.Errorf("record %d: %s addr = %s, tshark has none", i, what, got)
		}
		return
	}
	w, err := netip.ParseAddr(*want)
	if err != nil || got != w {
		t.Errorf("record %d: %s addr = %s, want %s", i, what, got, *want)
	}
}

func checkNum[T uint8 | uint16 | uint32 | uint64](t *testing.T, i int, what string, got uint64, want *T) {
	t.Helper()
	w := uint64(0)
	if want != nil {
		w = uint64(*want)
	}
	if got != w {
		t.Errorf("record %d: %s = %d, want %d", i, what, got, w)
	}
}
