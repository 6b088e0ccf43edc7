package export

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var testTime = time.UnixMilli(1_700_000_000_123)

// testFlow is a flow with every field set.
func testFlow() Flow {
	return Flow{
		Client: netip.MustParseAddr("192.0.2.1"), Server: netip.MustParseAddr("198.51.100.7"),
		ClientPort: 51234, ServerPort: 443, Protocol: 6, VLAN: 42,
		ClientOctets: 1500, ClientPackets: 12, ServerOctets: 90000, ServerPackets: 70,
		Start: testTime.Add(-30 * time.Second), End: testTime.Add(-time.Second),
		ClientTCPFlags: 0x1b, ServerTCPFlags: 0x12, EndReason: EndOfFlow,
		Application: "TLS.YouTube", ApplicationID: 124, Category: "Media", Confidence: ConfidenceDPI,
		ServerName: "www.youtube.com",
	}
}

// fieldSpec is a template field as read back from the wire.
type fieldSpec struct {
	ie     uint16
	length uint16
	pen    uint32
}

// parseTemplates reads the template records of a template set body.
func parseTemplates(t *testing.T, body []byte) map[uint16][]fieldSpec {
	t.Helper()
	out := map[uint16][]fieldSpec{}
	for len(body) >= 4 {
		id, n := binary.BigEndian.Uint16(body), int(binary.BigEndian.Uint16(body[2:]))
		body = body[4:]
		var fs []fieldSpec
		for range n {
			f := fieldSpec{ie: binary.BigEndian.Uint16(body) &^ 0x8000, length: binary.BigEndian.Uint16(body[2:])}
			pen := body[0]&0x80 != 0
			body = body[4:]
			if pen {
				f.pen, body = binary.BigEndian.Uint32(body), body[4:]
			}
			fs = append(fs, f)
		}
		out[id] = fs
	}
	if len(body) != 0 {
		t.Fatalf("%d bytes after the template records", len(body))
	}
	return out
}

// sets splits a message into (set id, body) after checking its header.
func sets(t *testing.T, msg []byte) (seq uint32, out [][2]any) {
	t.Helper()
	if len(msg) < 16 || binary.BigEndian.Uint16(msg) != 10 || int(binary.BigEndian.Uint16(msg[2:])) != len(msg) {
		t.Fatalf("bad header % x", msg[:min(16, len(msg))])
	}
	seq = binary.BigEndian.Uint32(msg[8:])
	p := msg[16:]
	for len(p) > 0 {
		id, n := binary.BigEndian.Uint16(p), int(binary.BigEndian.Uint16(p[2:]))
		if n < 4 || n > len(p) {
			t.Fatalf("set %d length %d of %d", id, n, len(p))
		}
		out = append(out, [2]any{id, p[4:n]})
		p = p[n:]
	}
	return seq, out
}

// TestTemplates pins each layout's template to the IANA, RFC 5103 and
// nProbe element numbers and lengths the package documents.
func TestTemplates(t *testing.T) {
	common := func(v6 bool) []fieldSpec {
		src, dst, n := uint16(8), uint16(12), uint16(4)
		if v6 {
			src, dst, n = 27, 28, 16
		}
		return []fieldSpec{{src, n, 0}, {dst, n, 0}, {7, 2, 0}, {11, 2, 0}, {4, 1, 0}, {58, 2, 0}, {59, 2, 0},
			{152, 8, 0}, {153, 8, 0}, {1, 8, 0}, {2, 8, 0}, {6, 2, 0}, {136, 1, 0}}
	}
	reverse := []fieldSpec{{1, 8, penReverse}, {2, 8, penReverse}, {6, 2, penReverse}}
	ntopTail := []fieldSpec{{119, varLen, penNtop}, {501, varLen, penNtop}, {188, varLen, penNtop}, {205, varLen, penNtop}}
	for _, tc := range []struct {
		uni, ntop bool
		v4, v6    uint16
	}{{false, true, 260, 261}, {false, false, 256, 257}, {true, true, 262, 263}, {true, false, 258, 259}} {
		cfg := DefaultConfig()
		cfg.Unidirectional, cfg.Ntop = tc.uni, tc.ntop
		e, err := NewEncoder(cfg)
		if err != nil {
			t.Fatal(err)
		}
		e.Begin(testTime, true)
		_, ss := sets(t, e.Finish())
		if len(ss) != 1 || ss[0][0].(uint16) != 2 {
			t.Fatalf("%+v: sets %v", tc, ss)
		}
		got := parseTemplates(t, ss[0][1].([]byte))
		for i, id := range []uint16{tc.v4, tc.v6} {
			want := common(i == 1)
			if !tc.uni {
				want = append(want, reverse...)
			}
			want = append(want, fieldSpec{95, 5, 0})
			if tc.ntop {
				want = append(want, fieldSpec{560, 1, penNtop}, fieldSpec{207, 2, penNtop}, fieldSpec{208, 2, penNtop})
			}
			want = append(want, fieldSpec{96, varLen, 0}, fieldSpec{372, varLen, 0})
			if tc.ntop {
				want = append(want, ntopTail...)
			}
			if g := got[id]; fmtSpecs(g) != fmtSpecs(want) {
				t.Errorf("uni %v ntop %v template %d:\n got %s\nwant %s", tc.uni, tc.ntop, id, fmtSpecs(g), fmtSpecs(want))
			}
		}
		if v4, v6 := e.TemplateIDs(); v4 != tc.v4 || v6 != tc.v6 || len(got) != 2 {
			t.Errorf("ids %d %d, templates %d", v4, v6, len(got))
		}
	}
}

func fmtSpecs(fs []fieldSpec) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, " %d/%d/%d", f.pen, f.ie, f.length)
	}
	return b.String()
}

// TestVariableLength: RFC 7011 §7, one length byte below 255, then 255
// and two bytes; 255 itself takes the long form.
func TestVariableLength(t *testing.T) {
	for _, n := range []int{0, 1, 254, 255, 256, 1000, 65535} {
		b := appendVar(nil, strings.Repeat("a", n))
		var hdr, got int
		if b[0] < 255 {
			hdr, got = 1, int(b[0])
		} else {
			hdr, got = 3, int(binary.BigEndian.Uint16(b[1:]))
		}
		if got != n || len(b) != hdr+n || varSize(n) != len(b) || (n >= 255) != (hdr == 3) {
			t.Errorf("%d bytes: header %d, length %d, encoded %d, varSize %d", n, hdr, got, len(b), varSize(n))
		}
	}
}

// TestFit cuts strings at their bound without splitting a UTF-8 sequence.
func TestFit(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"example.org", 64, "example.org"},
		{"example.org", 7, "example"},
		{"bücher.de", 2, "b"}, // ü is 2 bytes: not cut in half
		{"bücher.de", 3, "bü"},
		{"日本", 5, "日"},
		{"", 1, ""},
	} {
		if got := fit(tc.s, tc.n); got != tc.want || !utf8.ValidString(got) {
			t.Errorf("fit(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

// TestMessagesAndSequence fills messages until Add refuses: each message
// stays within the MTU, holds as many records as fit, and carries the
// count of records sent before it (and skipped ones) as its sequence
// number.
func TestMessagesAndSequence(t *testing.T) {
	for _, uni := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.Unidirectional = uni
		cfg.MTU, cfg.MaxLabelLen, cfg.MaxNameLen = 512, 32, 100
		e, err := NewEncoder(cfg)
		if err != nil {
			t.Fatal(err)
		}
		f4, f6 := testFlow(), testFlow()
		f6.Client, f6.Server = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
		var total uint32
		e.Skip(5)
		total = 5
		for m := range 6 {
			e.Begin(testTime, m == 0)
			added := 0
			for i := 0; ; i++ {
				f := &f4
				if i%3 == 2 {
					f = &f6
				}
				before := e.Len()
				if !e.Add(f) {
					// Refused only when it did not fit, and untouched.
					var p prepared
					e.prepare(f, &p)
					need := p.size * perFlow(uni, f)
					if e.setStart < 0 || e.setTpl != boolInt(p.v6) {
						need += setHeaderLen
					}
					if e.Len() != before || before+need <= cfg.MTU {
						t.Fatalf("refused a flow that fits: %d + %d of %d", before, p.size, cfg.MTU)
					}
					break
				}
				added++
			}
			records := e.Records()
			msg := e.Finish()
			seq, ss := sets(t, msg)
			if len(msg) > cfg.MTU || added == 0 || seq != total {
				t.Fatalf("uni %v message %d: %d bytes, %d flows, seq %d want %d", uni, m, len(msg), added, seq, total)
			}
			if records != added*perFlow(uni, &f4) {
				t.Errorf("records %d for %d flows", records, added)
			}
			total += uint32(records)
			for _, s := range ss {
				if id := s[0].(uint16); id != 2 && id < 256 {
					t.Errorf("set id %d", id)
				}
			}
		}
		if e.Sequence() != total {
			t.Errorf("sequence %d, want %d", e.Sequence(), total)
		}
	}
}

func perFlow(uni bool, f *Flow) int {
	if uni && (f.ServerOctets != 0 || f.ServerPackets != 0) {
		return 2
	}
	return 1
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestSequenceWraps: the sequence number is modulo 2^32.
func TestSequenceWraps(t *testing.T) {
	e, _ := NewEncoder(DefaultConfig())
	e.Skip(0xffffffff)
	f := testFlow()
	e.Begin(testTime, false)
	e.Add(&f)
	e.Add(&f)
	if seq, _ := sets(t, e.Finish()); seq != 0xffffffff {
		t.Fatalf("seq %d", seq)
	}
	e.Begin(testTime, false)
	if seq, _ := sets(t, e.Finish()); seq != 1 {
		t.Fatalf("after wrap: seq %d", seq)
	}
}

// TestUnidirectionalSkipsSilentServer: no server→client record when the
// server sent nothing.
func TestUnidirectionalSkipsSilentServer(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Unidirectional = true
	e, _ := NewEncoder(cfg)
	f := testFlow()
	f.ServerOctets, f.ServerPackets = 0, 0
	e.Begin(testTime, false)
	e.Add(&f)
	if e.Records() != 1 {
		t.Fatalf("%d records", e.Records())
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"default", func(*Config) {}, ""},
		{"small mtu", func(c *Config) { c.MTU = 600 }, "largest record"},
		{"small mtu, short strings", func(c *Config) { c.MTU = 600; c.MaxNameLen = 100 }, ""},
		{"pen engine", func(c *Config) { c.ApplicationEngine = 20 }, "accepted values are 13"},
		{"ndpi engine", func(c *Config) { c.ApplicationEngine = EngineNDPI }, ""},
		{"no collector", func(c *Config) { c.Collectors = nil }, "no collectors"},
		{"huge mtu", func(c *Config) { c.MTU = 70000 }, "at most 65535"},
		{"no labels", func(c *Config) { c.MaxLabelLen = 0 }, "MaxLabelLen"},
		{"queue", func(c *Config) { c.QueueSize = 0 }, "QueueSize"},
		{"every", func(c *Config) { c.TemplateEveryMessages = -1 }, "TemplateEveryMessages"},
	} {
		cfg := DefaultConfig()
		tc.edit(&cfg)
		err := cfg.validate()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
