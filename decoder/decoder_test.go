package decoder

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"flowlens/schema"
)

// v9 builds NetFlow v9 datagrams for the tests.
type v9 struct {
	sysUptime, unixSecs, sourceID uint32
	sets                          [][]byte
}

func be16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func be32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

// set appends a set with id and body (padded to 4 bytes).
func (m *v9) set(id uint16, body []byte) *v9 {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	s := be16(be16(nil, id), uint16(4+len(body)))
	m.sets = append(m.sets, append(s, body...))
	return m
}

func (m *v9) bytes() []byte {
	b := be16(be16(nil, 9), uint16(len(m.sets)))
	b = be32(be32(be32(be32(b, m.sysUptime), m.unixSecs), 1), m.sourceID)
	for _, s := range m.sets {
		b = append(b, s...)
	}
	return b
}

// template encodes one template record: id, then (type, length) pairs.
func template(id uint16, fields ...uint16) []byte {
	b := be16(be16(nil, id), uint16(len(fields)/2))
	for _, f := range fields {
		b = be16(b, f)
	}
	return b
}

var testExporter = netip.MustParseAddrPort("192.0.2.10:2055")

func decodeAll(t *testing.T, d *Decoder, payloads ...[]byte) []schema.Flow {
	t.Helper()
	var out []schema.Flow
	now := time.Unix(1700000000, 0)
	for _, p := range payloads {
		if err := d.Decode(p, testExporter, now, func(f *schema.Flow) { out = append(out, *f) }); err != nil {
			t.Fatalf("decode: %v", err)
		}
	}
	return out
}

func TestV9TimesWrapAndLabel(t *testing.T) {
	name := make([]byte, 16)
	copy(name, "TLS.YouTube")
	data := be32(nil, 0xfffffc18)                 // FIRST_SWITCHED: 1000 ms before the uptime wrapped
	data = be32(data, 500)                        // LAST_SWITCHED: after the wrap
	data = append(data, 10, 0, 0, 1, 10, 0, 0, 2) // addresses
	data = be32(be32(data, 1000), 10)             // bytes, packets
	data = append(data, name...)
	m := (&v9{sysUptime: 1000, unixSecs: 1700000000}).
		set(0, template(256, 22, 4, 21, 4, 8, 4, 12, 4, 1, 4, 2, 4, 57591, 16)).
		set(256, data)
	flows := decodeAll(t, New(DefaultConfig()), m.bytes())
	if len(flows) != 1 {
		t.Fatalf("%d flows", len(flows))
	}
	f := flows[0]
	export := int64(1700000000) * 1000
	if f.FlowStartMs != export-2000 || f.FlowEndMs != export-500 {
		t.Errorf("start %d end %d, want %d %d", f.FlowStartMs-export, f.FlowEndMs-export, -2000, -500)
	}
	if f.Protocol != "TLS.YouTube" || f.ProtocolConfidence != schema.ConfidenceExporter {
		t.Errorf("label %q %s", f.Protocol, f.ProtocolConfidence)
	}
	if f.Bytes != 1000 || f.Packets != 10 || f.SamplingRate != 1 || f.EType != 0x0800 {
		t.Errorf("flow %+v", f)
	}
}

func TestV9OptionsSampling(t *testing.T) {
	// Options template 300: scope System (1, 4 bytes); options sampler id
	// (48, 1), sampling interval (34, 4).
	opt := be16(be16(be16(nil, 300), 4), 8)
	opt = be16(be16(opt, 1), 4)
	opt = be16(be16(be16(be16(opt, 48), 1), 34), 4)
	optData := be32(nil, 0)
	optData = append(optData, 7)
	optData = be32(optData, 512)
	m := (&v9{sysUptime: 1000, unixSecs: 1700000000}).
		set(1, opt).
		set(300, optData).
		set(0, template(256, 8, 4, 12, 4, 1, 4, 2, 4, 48, 1)).
		set(256, append(be32(be32([]byte{10, 0, 0, 1, 10, 0, 0, 2}, 100), 2), 7))
	d := New(DefaultConfig())
	flows := decodeAll(t, d, m.bytes())
	if len(flows) != 1 || flows[0].SamplingRate != 512 || flows[0].Bytes != 51200 || flows[0].Packets != 1024 || flows[0].SamplerID != 7 {
		t.Fatalf("flows %+v", flows)
	}
	if st := d.Stats(); st.OptionsRecords != 1 || st.TemplatesLearnt != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestPending(t *testing.T) {
	tpl := (&v9{}).set(0, template(256, 8, 4, 12, 4, 1, 4, 2, 4)).bytes()
	data := (&v9{}).set(256, append([]byte{10, 0, 0, 1, 10, 0, 0, 2}, be32(be32(nil, 100), 1)...)).bytes()
	t.Run("decoded when the template comes", func(t *testing.T) {
		d := New(DefaultConfig())
		if flows := decodeAll(t, d, data); len(flows) != 0 {
			t.Fatalf("flows before template: %d", len(flows))
		}
		flows := decodeAll(t, d, tpl)
		st := d.Stats()
		if len(flows) != 1 || st.WaitingForTemplate != 1 || st.PendingDecoded != 1 || st.PendingSets != 0 {
			t.Fatalf("%d flows, stats %+v", len(flows), st)
		}
	})
	t.Run("expired", func(t *testing.T) {
		d := New(DefaultConfig())
		now := time.Unix(1700000000, 0)
		_ = d.Decode(data, testExporter, now, func(*schema.Flow) {})
		n := 0
		_ = d.Decode(tpl, testExporter, now.Add(time.Hour), func(*schema.Flow) { n++ })
		if st := d.Stats(); n != 0 || st.PendingExpired != 1 {
			t.Fatalf("%d flows, stats %+v", n, st)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.PendingMaxSets = 2
		d := New(cfg)
		for i := 0; i < 5; i++ {
			decodeAll(t, d, data)
		}
		if st := d.Stats(); st.PendingBuffered != 2 || st.PendingDropped != 3 || st.WaitingForTemplate != 5 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("other exporter", func(t *testing.T) {
		d := New(DefaultConfig())
		decodeAll(t, d, data)
		n := 0
		_ = d.Decode(tpl, netip.MustParseAddrPort("192.0.2.99:2055"), time.Unix(1700000000, 0), func(*schema.Flow) { n++ })
		if n != 0 {
			t.Fatalf("template of another exporter decoded %d flows", n)
		}
	})
}

func TestHostileTemplates(t *testing.T) {
	cases := []struct {
		name string
		msg  []byte
	}{
		{"huge field count", (&v9{}).set(0, be16(be16(nil, 256), 65535)).bytes()},
		{"zero length fields", (&v9{}).set(0, template(256, 8, 0, 12, 0)).set(256, make([]byte, 64)).bytes()},
		{"zero field count", (&v9{}).set(0, template(256)).set(256, make([]byte, 64)).bytes()},
		{"options huge", (&v9{}).set(1, be16(be16(be16(nil, 300), 0xfffc), 0xfffc)).bytes()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := New(DefaultConfig())
			n := 0
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = d.Decode(c.msg, testExporter, time.Now(), func(*schema.Flow) { n++ })
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("decode hangs")
			}
			if n != 0 {
				t.Errorf("%d flows", n)
			}
		})
	}
	d := New(DefaultConfig())
	_ = d.Decode((&v9{}).set(0, be16(be16(nil, 256), 65535)).bytes(), testExporter, time.Now(), func(*schema.Flow) {})
	if st := d.Stats(); st.TemplatesRejected == 0 {
		t.Errorf("huge template not counted: %+v", st)
	}
}

func TestErrors(t *testing.T) {
	d := New(DefaultConfig())
	cases := []struct {
		payload []byte
		want    error
	}{
		{[]byte{0, 1}, ErrTruncated},
		{[]byte{0, 7, 0, 0, 0, 0}, ErrUnknownVersion},
		{[]byte{0, 5, 0, 30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrTruncated},
		{(&v9{}).set(256, make([]byte, 16)).bytes()[:30], ErrTruncated},
		{[]byte{0, 0, 0, 5, 0, 0, 0, 9}, ErrMalformed},
	}
	for _, c := range cases {
		err := d.Decode(c.payload, testExporter, time.Now(), func(*schema.Flow) {})
		if !errors.Is(err, c.want) {
			t.Errorf("%x: error %v, want %v", c.payload, err, c.want)
		}
	}
	if st := d.Stats(); st.Errors["truncated"] != 3 || st.Errors["unknown_version"] != 1 || st.Errors["malformed"] != 1 {
		t.Errorf("errors %v", st.Errors)
	}
}

func TestExporterEviction(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxExporters = 2
	d := New(cfg)
	tpl := (&v9{}).set(0, template(256, 8, 4)).bytes()
	for i := 0; i < 3; i++ {
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 2055)
		_ = d.Decode(tpl, ap, time.Now(), func(*schema.Flow) {})
	}
	if st := d.Stats(); st.Exporters != 2 || st.ExportersEvicted != 1 || st.Templates != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestParseHeader(t *testing.T) {
	ipv4tcp := []byte{0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
		0x30, 0x39, 0x01, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x12, 0, 0}
	eth := func(etype ...byte) []byte { return append(make([]byte, 12), etype...) }
	qinq := append(eth(0x88, 0xa8, 0, 10, 0x81, 0, 0, 20, 0x08, 0x00), ipv4tcp...)
	mpls := append(eth(0x88, 0x47, 0, 0x01, 0x40, 0x40, 0, 0x02, 0x01, 0x40), ipv4tcp...)
	icmp6 := make([]byte, 48)
	icmp6[0], icmp6[6], icmp6[40], icmp6[41] = 0x60, 58, 128, 0
	cases := []struct {
		name  string
		proto uint32
		data  []byte
		check func(f *schema.Flow) bool
	}{
		{"ipv4 tcp", 11, ipv4tcp, func(f *schema.Flow) bool {
			return f.SrcPort == 12345 && f.DstPort == 443 && f.TCPFlags == 0x12 && f.IPTTL == 64
		}},
		{"qinq", 1, qinq, func(f *schema.Flow) bool { return f.SrcVlan == 10 && f.DstPort == 443 }},
		{"mpls", 1, mpls, func(f *schema.Flow) bool {
			return f.MPLSLabelsLen == 2 && f.MPLSLabels[0] == 20 && f.MPLSLabels[1] == 32 && f.DstPort == 443
		}},
		{"icmpv6", 12, icmp6, func(f *schema.Flow) bool { return f.IPProtocol == 58 && f.ICMPType == 128 && f.EType == 0x86dd }},
		{"truncated", 1, qinq[:30], func(f *schema.Flow) bool { return !f.SrcAddr.IsValid() }},
	}
	for _, c := range cases {
		var f schema.Flow
		ParseHeader(c.proto, c.data, &f)
		if !c.check(&f) {
			t.Errorf("%s: %+v", c.name, f)
		}
	}
	if a := testing.AllocsPerRun(100, func() {
		var f schema.Flow
		ParseHeader(1, mpls, &f)
	}); a != 0 {
		t.Errorf("ParseHeader allocates %.0f", a)
	}
}
