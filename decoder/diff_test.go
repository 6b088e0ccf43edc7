package decoder

import (
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"flowlens/collector/pcap"
	"flowlens/schema"
)

// Differential tests: our parsers (v5 records, the v9/IPFIX template
// walker) against goflow2's decoders (Decoder.useGoflow2) on the same
// datagrams. Both must emit the same flows, with the same raw counters,
// return the same errors and leave the same Stats.

// diffRecord is one emitted flow with the raw counters rawHook saw.
type diffRecord struct {
	flow                 schema.Flow
	rawBytes, rawPackets uint64
	haveBytes, havePkts  bool
	replayed             bool
}

// diffRun decodes datagrams in order with one Decoder.
type diffRun struct {
	d    *Decoder
	recs []diffRecord
	errs []string
	cur  diffRecord
}

func newDiffRun(goflow2 bool) *diffRun {
	r := &diffRun{d: New(DefaultConfig())}
	r.d.useGoflow2 = goflow2
	r.d.rawHook = func(b, p uint64, hb, hp bool) {
		r.cur.rawBytes, r.cur.rawPackets, r.cur.haveBytes, r.cur.havePkts = b, p, hb, hp
	}
	return r
}

func (r *diffRun) decode(payload []byte, src netip.AddrPort, at time.Time) {
	err := r.d.Decode(payload, src, at, func(f *schema.Flow) {
		r.cur.flow = *f
		r.cur.replayed = r.d.replaying
		r.recs = append(r.recs, r.cur)
		r.cur = diffRecord{}
	})
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	r.errs = append(r.errs, msg)
}

// compareRuns fails t at the first difference between ours and ref.
func compareRuns(t *testing.T, ours, ref *diffRun) {
	t.Helper()
	if len(ours.recs) != len(ref.recs) {
		t.Errorf("flows: ours %d, goflow2 %d", len(ours.recs), len(ref.recs))
	}
	for i := range min(len(ours.recs), len(ref.recs)) {
		if ours.recs[i] != ref.recs[i] {
			t.Fatalf("flow %d differs:\nours    %+v\ngoflow2 %+v", i, ours.recs[i], ref.recs[i])
		}
	}
	for i := range ours.errs {
		if ours.errs[i] != ref.errs[i] {
			t.Fatalf("datagram %d error: ours %q, goflow2 %q", i, ours.errs[i], ref.errs[i])
		}
	}
	if a, b := ours.d.Stats(), ref.d.Stats(); !reflect.DeepEqual(a, b) {
		t.Fatalf("stats differ:\nours    %+v\ngoflow2 %+v", a, b)
	}
}

// readCapture returns the datagrams of one capture.
func readCapture(tb testing.TB, path string) []pcap.Datagram {
	tb.Helper()
	fh, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer fh.Close()
	var out []pcap.Datagram
	if _, err := pcap.ReadUDP(fh, func(dg pcap.Datagram) error {
		dg.Payload = append([]byte(nil), dg.Payload...)
		out = append(out, dg)
		return nil
	}); err != nil {
		tb.Fatalf("read %s: %v", path, err)
	}
	return out
}

func corpusFiles(tb testing.TB) []string {
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*.pcap"))
	sort.Strings(files)
	if len(files) == 0 {
		tb.Skip("no captures in corpus")
	}
	return files
}

func TestDifferentialCorpus(t *testing.T) {
	total := 0
	for _, path := range corpusFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".pcap"), func(t *testing.T) {
			ours, ref := newDiffRun(false), newDiffRun(true)
			for _, dg := range readCapture(t, path) {
				ours.decode(dg.Payload, dg.Src, dg.Timestamp)
				ref.decode(dg.Payload, dg.Src, dg.Timestamp)
			}
			compareRuns(t, ours, ref)
			total += len(ours.recs)
		})
	}
	t.Logf("%d flows identical on both paths", total)
}

// ipfix builds an IPFIX message from sets (id, body).
func ipfix(sets ...[]byte) []byte {
	b := be32(be32(be32(be16(be16(nil, 10), 0), 1700000000), 1), 7)
	for _, s := range sets {
		b = append(b, s...)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

func set(id uint16, body []byte) []byte {
	return append(be16(be16(nil, id), uint16(4+len(body))), body...)
}

// ipfixTemplate encodes one IPFIX template record; fields are (type,
// length, pen) triples, pen 0 meaning no enterprise number.
func ipfixTemplate(id uint16, fields ...uint32) []byte {
	b := be16(be16(nil, id), uint16(len(fields)/3))
	for i := 0; i+2 < len(fields); i += 3 {
		typ := uint16(fields[i])
		if fields[i+2] != 0 {
			typ |= 0x8000
		}
		b = be16(be16(b, typ), uint16(fields[i+1]))
		if fields[i+2] != 0 {
			b = be32(b, fields[i+2])
		}
	}
	return b
}

// TestDifferentialHostile compares both paths on templates built to
// break a walker: variable-length overruns, cut-off length headers, zero
// and 65535 lengths, enterprise fields.
func TestDifferentialHostile(t *testing.T) {
	varTpl := ipfixTemplate(300, 8, 4, 0, 96, 0xffff, 0, 7, 2, 0, 12, 4, 0)
	ntop := ipfixTemplate(301, 8, 4, 0, ntopL7ProtoNameV9-0x8000, 0xffff, penNtop, 1, 8, 0, 2, 4, 9)
	tailTpl := ipfixTemplate(300, 8, 4, 0, 96, 0xffff, 0)
	addr := []byte{10, 0, 0, 1}
	cases := []struct {
		name string
		msgs [][]byte
	}{
		{"var short", [][]byte{ipfix(set(2, varTpl), set(300, append(append(append(addr, 3, 'd', 'n', 's'), 0, 53), addr...)))}},
		{"var long form", [][]byte{ipfix(set(2, varTpl), set(300, append(append(append(addr, 255, 0, 3, 'f', 'o', 'o'), 0, 80), addr...)))}},
		{"var overrun", [][]byte{ipfix(set(2, varTpl), set(300, append(addr, 200, 'x', 'y', 1, 2, 3, 4, 5, 6, 7)))}},
		{"var long overrun", [][]byte{ipfix(set(2, varTpl), set(300, append(addr, 255, 0xff, 0xff, 1, 2, 3, 4, 5, 6)))}},
		{"var header cut", [][]byte{ipfix(set(2, tailTpl), set(300, append(append(addr, 1, 'a'), addr...)))}},
		{"var long header cut", [][]byte{ipfix(set(2, tailTpl), set(300, append(append(addr, 1, 'a'), append(addr, 255)...)))}},
		{"var long header half", [][]byte{ipfix(set(2, tailTpl), set(300, append(append(addr, 1, 'a'), append(addr, 255, 0)...)))}},
		{"var long form short", [][]byte{ipfix(set(2, tailTpl), set(300, append(addr, 255, 0, 2, 'o', 'k')))}},
		{"only var fields", [][]byte{ipfix(set(2, ipfixTemplate(302, 96, 0xffff, 0, 82, 0xffff, 0)), set(302, []byte{2, 'h', 'i', 0, 1, 'z', 0, 0, 255}))}},
		{"enterprise", [][]byte{ipfix(set(2, ntop), set(301, append(append(addr, 4, 'H', 'T', 'T', 'P'), 0, 0, 0, 0, 0, 0, 1, 0, 9, 9, 9, 9)))}},
		{"enterprise zero pen", [][]byte{ipfix(set(2, ipfixTemplate(303, 1, 4, 0, 2, 4, 0)), set(2, append(be16(be16(nil, 304), 1), 0x80, 1, 0, 4, 0, 0, 0, 0)), set(304, []byte{0, 0, 1, 0, 0, 0, 2, 0}))}},
		{"zero lengths", [][]byte{ipfix(set(2, ipfixTemplate(305, 8, 0, 0, 1, 4, 0, 12, 0, 0)), set(305, []byte{0, 0, 0, 9, 0, 0, 0, 8, 1}))}},
		{"v9 65535 length", [][]byte{(&v9{}).set(0, template(256, 8, 4, 82, 0xffff, 1, 4)).set(256, append(append(addr, 2, 'a', 'b'), 0, 0, 1, 0)).bytes()}},
		{"v9 huge fixed length", [][]byte{(&v9{}).set(0, template(256, 8, 4, 82, 0xfffe)).set(256, append(addr, 1, 2, 3)).bytes()}},
		{"data before template", [][]byte{
			ipfix(set(300, append(append(append(addr, 1, 'q', 0, 1), addr...), 0, 0, 0))),
			ipfix(set(2, varTpl)),
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ours, ref := newDiffRun(false), newDiffRun(true)
			for _, m := range c.msgs {
				ours.decode(m, testExporter, time.Unix(1700000000, 0))
				ref.decode(m, testExporter, time.Unix(1700000000, 0))
			}
			compareRuns(t, ours, ref)
			if testing.Verbose() {
				t.Logf("%d flows, errors %q", len(ours.recs), ours.errs)
			}
		})
	}
}

// FuzzDifferential decodes two datagrams, twice (so that templates of one
// apply to data of the other), on both paths.
func FuzzDifferential(f *testing.F) {
	for _, path := range corpusFiles(f) {
		dgs := readCapture(f, path)
		for i := 0; i+1 < len(dgs) && i < 8; i++ {
			f.Add(dgs[0].Payload, dgs[i+1].Payload)
		}
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		ours, ref := newDiffRun(false), newDiffRun(true)
		at := time.Unix(1700000000, 0)
		for i, m := range [][]byte{a, b, a, b} {
			if len(m) >= 4 && binary.BigEndian.Uint16(m) == 10 {
				// Make the IPFIX message length agree often enough.
				binary.BigEndian.PutUint16(m[2:], uint16(len(m)))
			}
			ours.decode(m, fuzzExporter, at.Add(time.Duration(i)*time.Second))
			ref.decode(m, fuzzExporter, at.Add(time.Duration(i)*time.Second))
		}
		compareRuns(t, ours, ref)
	})
}
