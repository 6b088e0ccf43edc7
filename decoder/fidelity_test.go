package decoder

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"flowlens/collector/pcap"
	"flowlens/schema"
)

// ipfixAt is ipfix with an export time and observation domain.
func ipfixAt(exportSecs, domain uint32, sets ...[]byte) []byte {
	b := ipfix(sets...)
	copy(b[4:], be32(nil, exportSecs))
	copy(b[12:], be32(nil, domain))
	return b
}

// flow4 is a data record for ipfixTemplate(id, 8,4,0, 12,4,0, 1,4,0, 2,4,0, ...).
func flow4(bytes, packets uint32) []byte {
	return be32(be32([]byte{10, 0, 0, 1, 10, 0, 0, 2}, bytes), packets)
}

func decodeFrom(t *testing.T, d *Decoder, from netip.AddrPort, payloads ...[]byte) []schema.Flow {
	t.Helper()
	var out []schema.Flow
	now := time.Unix(1700000000, 0)
	for _, p := range payloads {
		if err := d.Decode(p, from, now, func(f *schema.Flow) { out = append(out, *f) }); err != nil {
			t.Fatalf("decode: %v", err)
		}
	}
	return out
}

func TestSamplingSources(t *testing.T) {
	tpl := set(2, ipfixTemplate(256, 8, 4, 0, 12, 4, 0, 1, 4, 0, 2, 4, 0))
	tplRate := set(2, ipfixTemplate(257, 8, 4, 0, 12, 4, 0, 1, 4, 0, 2, 4, 0, 34, 4, 0))
	tplSampler := set(2, ipfixTemplate(258, 8, 4, 0, 12, 4, 0, 1, 4, 0, 2, 4, 0, 302, 4, 0))
	// Options template 400: scope observationDomainId (149), options
	// samplingInterval (34): announces sampling.
	optTpl := set(3, append(be16(be16(be16(nil, 400), 2), 1), be16(be16(be16(be16(nil, 149), 4), 34), 4)...))
	plain := set(256, flow4(100, 2))
	other := netip.MustParseAddrPort("198.51.100.7:4739")

	cases := []struct {
		name     string
		cfg      func(*Config)
		from     netip.AddrPort
		payloads [][]byte
		rate     uint32
		src      schema.SamplingSource
		unknown  uint64
		swapped  uint64
	}{
		{"nothing said", nil, testExporter, [][]byte{ipfix(tpl, plain)}, 1, schema.SamplingNone, 0, 0},
		{"config default", func(c *Config) { c.DefaultSamplingRate = 100 }, testExporter, [][]byte{ipfix(tpl, plain)}, 100, schema.SamplingConfigDefault, 0, 0},
		{"in record", nil, testExporter, [][]byte{ipfix(tplRate, set(257, be32(flow4(100, 2), 1000)))}, 1000, schema.SamplingInRecord, 0, 0},
		// MikroTik RouterOS v6: rate 100 little-endian (0x64000000).
		{"mikrotik little-endian", nil, testExporter, [][]byte{ipfix(tplRate, set(257, append(flow4(100, 2), 100, 0, 0, 0)))}, 100, schema.SamplingInRecord, 0, 1},
		// Rate 512 little-endian: 00 02 00 00, below 2^24 but a multiple of 65536.
		{"mikrotik little-endian 512", nil, testExporter, [][]byte{ipfix(tplRate, set(257, append(flow4(100, 2), 0, 2, 0, 0)))}, 512, schema.SamplingInRecord, 0, 1},
		{"options announced, no data", nil, testExporter, [][]byte{ipfix(optTpl, tpl, plain)}, 1, schema.SamplingUnknown, 1, 0},
		{"options", nil, testExporter, [][]byte{ipfix(optTpl, set(400, be32(be32(nil, 1), 64)), tpl, plain)}, 64, schema.SamplingOptions, 0, 0},
		{"sampler id without options", nil, testExporter, [][]byte{ipfix(tplSampler, set(258, be32(flow4(100, 2), 5)))}, 1, schema.SamplingUnknown, 1, 0},
		{"override wins", func(c *Config) {
			c.SamplingOverrides = []SamplingOverride{
				{netip.MustParsePrefix("192.0.2.0/24"), 10},
				{netip.MustParsePrefix("192.0.2.8/29"), 20},
				{netip.MustParsePrefix("0.0.0.0/0"), 30},
			}
		}, testExporter, [][]byte{ipfix(tplRate, set(257, be32(flow4(100, 2), 1000)))}, 20, schema.SamplingConfigOverride, 0, 0},
		{"override other prefix", func(c *Config) {
			c.SamplingOverrides = []SamplingOverride{{netip.MustParsePrefix("192.0.2.0/24"), 10}}
		}, other, [][]byte{ipfix(tpl, plain)}, 1, schema.SamplingNone, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			d := New(cfg)
			flows := decodeFrom(t, d, tc.from, tc.payloads...)
			if len(flows) != 1 {
				t.Fatalf("%d flows", len(flows))
			}
			f := flows[0]
			if f.SamplingRate != tc.rate || f.SamplingSource != tc.src || f.Bytes != 100*uint64(tc.rate) || f.Packets != 2*uint64(tc.rate) {
				t.Errorf("rate %d source %s bytes %d packets %d; want %d %s", f.SamplingRate, f.SamplingSource, f.Bytes, f.Packets, tc.rate, tc.src)
			}
			st := d.Stats()
			if st.SamplingUnknown != tc.unknown || st.SamplingByteSwapped != tc.swapped {
				t.Errorf("unknown %d swapped %d; want %d %d", st.SamplingUnknown, st.SamplingByteSwapped, tc.unknown, tc.swapped)
			}
			ex := d.Exporters()
			if len(ex) != 1 || len(ex[0].Sampling) != 1 || ex[0].Sampling[0] != (SamplingInfo{tc.rate, tc.src}) {
				t.Errorf("exporters view %+v", ex)
			}
		})
	}
}

func TestRateField(t *testing.T) {
	for _, tc := range []struct {
		in      []byte
		want    uint64
		swapped bool
	}{
		{[]byte{0, 0, 0, 100}, 100, false},
		{[]byte{0, 0, 0x27, 0x10}, 10000, false},
		{[]byte{0, 1, 0, 0}, 256, true}, // 65536 BE: no sampler's rate; 256 LE is
		{[]byte{100, 0, 0, 0}, 100, true},
		{[]byte{0x10, 0x27, 0, 0}, 10000, true},
		{[]byte{0x12, 0x34, 0x56, 0x78}, 0x12345678, false}, // neither reading plausible: kept
		{[]byte{0, 100}, 100, false},
	} {
		if got, sw := rateField(tc.in); got != tc.want || sw != tc.swapped {
			t.Errorf("rateField(% x) = %d %v, want %d %v", tc.in, got, sw, tc.want, tc.swapped)
		}
	}
}

// TestMikroTikV5Header: the RouterOS v5 capture says nothing about
// sampling; with a configured default the source says so.
func TestMikroTikCaptures(t *testing.T) {
	for _, name := range []string{"logstash-nfv5-mikrotik.pcap", "logstash-ipfix-mikrotik.pcap"} {
		cfg := DefaultConfig()
		cfg.DefaultSamplingRate = 10
		recs := decodeFile(t, New(cfg), name)
		if len(recs) == 0 {
			t.Fatalf("%s: no flows", name)
		}
		for _, f := range recs {
			if f.SamplingSource != schema.SamplingConfigDefault || f.SamplingRate != 10 {
				t.Fatalf("%s: %s %d", name, f.SamplingSource, f.SamplingRate)
			}
		}
	}
}

func decodeFile(t *testing.T, d *Decoder, name string) []schema.Flow {
	t.Helper()
	fh, err := os.Open(filepath.Join(corpusDir, name))
	if err != nil {
		t.Skipf("corpus: %v", err)
	}
	defer fh.Close()
	var out []schema.Flow
	_, err = pcap.ReadUDP(fh, func(dg pcap.Datagram) error {
		_ = d.Decode(dg.Payload, dg.Src, dg.Timestamp, func(f *schema.Flow) { out = append(out, *f) })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestApplicationFields(t *testing.T) {
	str := func(s string, n int) []byte { b := make([]byte, n); copy(b, s); return b }
	t.Run("nprobe ipfix", func(t *testing.T) {
		tpl := set(2, ipfixTemplate(256, 8, 4, 0, 12, 4, 0, 1, 4, 0, 2, 4, 0,
			ntopL7ProtoName, 16, penNtop, ntopL7ProtoCat, 16, penNtop,
			ntopTLSServerV9-0x8000, 0xffff, penNtop, ntopDNSQuery, 0xffff, penNtop))
		data := append(flow4(1, 1), str("TLS.YouTube", 16)...)
		data = append(data, str("Media", 16)...)
		data = append(append(data, 15), "www.youtube.com"...)
		data = append(append(data, 3), 1, 2, 3) // binary: rejected
		f := decodeAll(t, New(DefaultConfig()), ipfix(tpl, set(256, data)))
		if len(f) != 1 || f[0].Protocol != "TLS.YouTube" || f[0].AppCategory != "Media" || f[0].ServerName != "www.youtube.com" || f[0].DNSQuery != "" {
			t.Fatalf("%+v", f)
		}
	})
	t.Run("nprobe v9", func(t *testing.T) {
		m := (&v9{unixSecs: 1700000000}).
			set(0, template(256, 8, 4, 12, 4, 1, 4, 2, 4, ntopL7ProtoNameV9, 8, ntopL7ProtoCatV9, 8, ntopDNSQueryV9, 16, ntopTLSServerV9, 8)).
			set(256, append(append(append(append(flow4(1, 1), str("DNS", 8)...), str("Network", 8)...), str("example.org", 16)...), str("x.org", 8)...))
		f := decodeAll(t, New(DefaultConfig()), m.bytes())
		if len(f) != 1 || f[0].Protocol != "DNS" || f[0].AppCategory != "Network" || f[0].DNSQuery != "example.org" || f[0].ServerName != "x.org" {
			t.Fatalf("%+v", f)
		}
	})
	t.Run("palo alto and iana category", func(t *testing.T) {
		m := (&v9{unixSecs: 1700000000}).
			set(0, template(256, 8, 4, 12, 4, 1, 4, 2, 4, panAppIDV9, 16, 372, 8)).
			set(256, append(append(flow4(1, 1), str("ssl", 16)...), str("web", 8)...))
		f := decodeAll(t, New(DefaultConfig()), m.bytes())
		if len(f) != 1 || f[0].Protocol != "ssl" || f[0].AppCategory != "web" {
			t.Fatalf("%+v", f)
		}
		tpl := set(2, ipfixTemplate(256, 8, 4, 0, 12, 4, 0, 1, 4, 0, 2, 4, 0, panAppIDIPFIX, 8, penPaloAlto))
		f = decodeAll(t, New(DefaultConfig()), ipfix(tpl, set(256, append(flow4(1, 1), str("dns", 8)...))))
		if len(f) != 1 || f[0].Protocol != "dns" {
			t.Fatalf("%+v", f)
		}
	})
	t.Run("names table bounded", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.MaxNames = 2
		d := New(cfg)
		tpl := set(2, ipfixTemplate(256, 8, 4, 0, 12, 4, 0, 1, 4, 0, 2, 4, 0, ntopTLSServer, 8, penNtop))
		var got []string
		for _, n := range []string{"a.org", "b.org", "c.org", "a.org"} {
			for _, f := range decodeAll(t, d, ipfix(tpl, set(256, append(flow4(1, 1), str(n, 8)...)))) {
				got = append(got, f.ServerName)
			}
		}
		if len(got) != 4 || got[2] != "c.org" || got[3] != "a.org" || len(d.names.m) > 2 || d.Stats().NamesResets != 1 {
			t.Fatalf("names %v, table %d, stats %+v", got, len(d.names.m), d.Stats())
		}
	})
}

func TestBiflow(t *testing.T) {
	tpl := set(2, ipfixTemplate(256, 8, 4, 0, 12, 4, 0, 7, 2, 0, 11, 2, 0, 10, 4, 0, 14, 4, 0,
		1, 4, 0, 2, 4, 0, 1, 4, penReverse, 2, 4, penReverse, 6, 1, penReverse))
	rec := func(rb, rp uint32) []byte {
		b := []byte{10, 0, 0, 1, 10, 0, 0, 2}
		b = be16(be16(b, 1234), 80)
		b = be32(be32(b, 3), 4)
		b = be32(be32(b, 1000), 10)
		b = be32(be32(b, rb), rp)
		return append(b, 0x12)
	}
	d := New(DefaultConfig())
	flows := decodeAll(t, d, ipfix(tpl, set(256, append(rec(5000, 7), rec(0, 0)...))))
	if len(flows) != 3 {
		t.Fatalf("%d flows", len(flows))
	}
	r := flows[1]
	if r.SrcAddr != netip.MustParseAddr("10.0.0.2") || r.DstAddr != netip.MustParseAddr("10.0.0.1") ||
		r.SrcPort != 80 || r.DstPort != 1234 || r.InIf != 4 || r.OutIf != 3 || r.Bytes != 5000 || r.Packets != 7 || r.TCPFlags != 0x12 {
		t.Errorf("reverse %+v", r)
	}
	if f := flows[0]; f.Bytes != 1000 || f.SrcPort != 1234 {
		t.Errorf("forward %+v", f)
	}
	if st := d.Stats(); st.BiflowReverse != 1 || st.Flows[schema.SourceIPFIX] != 3 {
		t.Errorf("stats %+v", st)
	}
}

// TestIPFIXRelativeTimes: flowStart/EndSysUpTime with
// systemInitTimeMilliseconds (in the record, or from options data) are
// within seconds of the export time; an absurd base is clamped, counted.
func TestIPFIXRelativeTimes(t *testing.T) {
	const export = 1700000000
	initMs := uint64(export-3600) * 1000 // booted an hour before the export
	tpl := set(2, ipfixTemplate(256, 8, 4, 0, 12, 4, 0, 1, 4, 0, 2, 4, 0, 22, 4, 0, 21, 4, 0, 160, 8, 0))
	rec := func(init uint64) []byte {
		b := be32(be32(flow4(1, 1), 3600*1000-5000), 3600*1000-1000)
		return append(b, be32(be32(nil, uint32(init>>32)), uint32(init))...)
	}
	d := New(DefaultConfig())
	f := decodeAll(t, d, ipfixAt(export, 1, tpl, set(256, rec(initMs))))
	if len(f) != 1 || f[0].FlowStartMs != export*1000-5000 || f[0].FlowEndMs != export*1000-1000 {
		t.Fatalf("times %+v", f)
	}
	// A system init time a year off (the exporter's clock was wrong when
	// it booted): clamped to the export time.
	f = decodeAll(t, d, ipfixAt(export, 1, tpl, set(256, rec(initMs+365*24*3600*1000))))
	if len(f) != 1 || f[0].FlowStartMs != export*1000 || f[0].FlowEndMs != export*1000 || d.Stats().TimesClamped != 1 {
		t.Fatalf("times %+v, stats %+v", f, d.Stats())
	}
	if ex := d.Exporters(); len(ex) != 1 || !ex[0].HaveClockSkew || ex[0].ClockSkew != 0 {
		t.Errorf("skew %+v", ex)
	}
}

// TestSoftflowdIPFIXTimes: softflowd's IPFIX relative times never land
// far from the export time. These captures are softflowd replaying old
// pcaps (-r): its systemInitTimeMilliseconds is its start (2 s before the
// export) while flowStart/EndSysUpTime are the pcap's packet times minus
// that, wrapped to 32 bits, i.e. ~24 days in the future. They are
// clamped to the export time and counted.
func TestSoftflowdIPFIXTimes(t *testing.T) {
	for _, name := range []string{"softflowd-ipfix-dropbox.pcap", "softflowd-ipfix-http_ipv6.pcap", "softflowd-ipfix-kerberos.pcap"} {
		d := New(DefaultConfig())
		recs := decodeFile(t, d, name)
		if len(recs) == 0 {
			t.Fatalf("%s: no flows", name)
		}
		for _, f := range recs {
			recv := int64(f.TimeReceived) * 1000
			if f.FlowEndMs == 0 || f.FlowStartMs > f.FlowEndMs || f.FlowEndMs > recv+60_000 || f.FlowStartMs < recv-60_000 {
				t.Errorf("%s: start %d end %d received %d", name, f.FlowStartMs, f.FlowEndMs, recv)
			}
		}
		if got := d.Stats().TimesClamped; got != uint64(len(recs)) {
			t.Errorf("%s: clamped %d of %d", name, got, len(recs))
		}
	}
}

func TestTemplatePortFallback(t *testing.T) {
	tpl := set(2, ipfixTemplate(256, 8, 4, 0, 12, 4, 0, 1, 4, 0, 2, 4, 0))
	a := netip.MustParseAddrPort("192.0.2.10:50000")
	b := netip.MustParseAddrPort("192.0.2.10:50001")
	d := New(DefaultConfig())
	decodeFrom(t, d, a, ipfix(tpl))
	if f := decodeFrom(t, d, b, ipfix(set(256, flow4(1, 1)))); len(f) != 1 {
		t.Fatalf("restarted exporter: %d flows", len(f))
	}
	if st := d.Stats(); st.TemplatePortFallbacks != 1 || st.WaitingForTemplate != 0 {
		t.Errorf("stats %+v", st)
	}
	// A new definition from the new session is used by it, the old one by
	// the old session.
	tpl2 := set(2, ipfixTemplate(256, 8, 4, 0, 12, 4, 0, 1, 4, 0))
	decodeFrom(t, d, b, ipfix(tpl2))
	if f := decodeFrom(t, d, b, ipfix(set(256, be32([]byte{10, 0, 0, 1, 10, 0, 0, 2}, 9)))); len(f) != 1 || f[0].Bytes != 9 {
		t.Fatalf("new session %+v", f)
	}
	if f := decodeFrom(t, d, a, ipfix(set(256, flow4(5, 1)))); len(f) != 1 || f[0].Bytes != 5 || f[0].Packets != 1 {
		t.Fatalf("old session %+v", f)
	}
	ex := d.Exporters()
	if len(ex) != 1 || len(ex[0].Templates) != 2 || len(ex[0].SourcePorts) != 2 ||
		ex[0].Datagrams != 5 || ex[0].Flows != 3 || ex[0].Templates[0].Fields != 4 {
		t.Errorf("exporters %+v", ex)
	}
	// Withdrawal (field count 0) from the new session.
	decodeFrom(t, d, b, ipfix(set(2, be16(be16(nil, 256), 0))))
	if st := d.Stats(); st.TemplatesWithdrawn != 1 || st.Templates != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestTemplateCaps(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxTemplatesPerExporter = 2
	cfg.MaxTemplatesTotal = 3
	d := New(cfg)
	for i := range 3 {
		decodeFrom(t, d, netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 2055),
			ipfix(set(2, append(append(ipfixTemplate(256, 8, 4, 0), ipfixTemplate(257, 8, 4, 0)...), ipfixTemplate(258, 8, 4, 0)...))))
	}
	st := d.Stats()
	// Exporter 0: 2 stored, 1 over its limit; exporter 1: 1 stored, 2
	// over the total; exporter 2: 3 over the total.
	if st.Templates != 3 || st.TemplatesOverLimit != 6 || st.TemplatesRejected != 6 {
		t.Errorf("stats %+v", st)
	}
}

// TestSFlowCounters checks the generic interface counters against
// tshark's reading (tshark -d udp.port==6343,sflow -V: count and sums of
// "Input Octets" / "Output Octets").
func TestSFlowCounters(t *testing.T) {
	for _, tc := range []struct {
		file          string
		n             int
		inSum, outSum uint64
		agent         string
		first         schema.InterfaceCounters
	}{
		{"tcpdump-sflow-counters-30pdus.pcap", sflowCounterRecords, 163896183007, 328336516752, "",
			schema.InterfaceCounters{IfIndex: sflowFirstIfIndex, IfSpeed: sflowFirstSpeed, InOctets: sflowFirstInOctets, OutOctets: sflowFirstOutOctets}},
		{"tcpdump-sflow-ipv6-agent.pcap", 48, 1576, 732631, "30::1:1:1", schema.InterfaceCounters{IfIndex: 23001}},
	} {
		d := New(DefaultConfig())
		var got []schema.InterfaceCounters
		d.OnCounters(func(c *schema.InterfaceCounters) { got = append(got, *c) })
		decodeFile(t, d, tc.file)
		var in, out uint64
		for _, c := range got {
			in += c.InOctets
			out += c.OutOctets
			if !c.AgentAddr.IsValid() || !c.ExporterAddr.IsValid() || c.TimeReceived == 0 {
				t.Fatalf("%s: counters %+v", tc.file, c)
			}
		}
		st := d.Stats()
		if len(got) != tc.n || uint64(len(got)) != st.SFlowCountersDecoded || in != tc.inSum || out != tc.outSum {
			t.Errorf("%s: %d records (stats %d), in %d out %d; want %d, %d, %d", tc.file, len(got), st.SFlowCountersDecoded, in, out, tc.n, tc.inSum, tc.outSum)
		}
		if len(got) == 0 {
			continue
		}
		c := got[0]
		if c.IfIndex != tc.first.IfIndex || (tc.first.IfSpeed != 0 && (c.IfSpeed != tc.first.IfSpeed || c.InOctets != tc.first.InOctets || c.OutOctets != tc.first.OutOctets)) {
			t.Errorf("%s: first counters %+v", tc.file, c)
		}
		if tc.agent != "" && c.AgentAddr != netip.MustParseAddr(tc.agent) {
			t.Errorf("%s: agent %s", tc.file, c.AgentAddr)
		}
	}
}

// The first generic interface counters of tcpdump-sflow-counters-30pdus,
// as tshark reads them (142 such records in the capture).
const (
	sflowFirstIfIndex   = 55
	sflowFirstSpeed     = 1000000000
	sflowFirstInOctets  = 820721
	sflowFirstOutOctets = 178785248
	sflowCounterRecords = 142
)

func TestStateRoundTrip(t *testing.T) {
	// IPFIX data template, an options template with its sampling data,
	// and a v9 template from another exporter.
	optTpl := set(3, append(be16(be16(be16(nil, 400), 2), 1), be16(be16(be16(be16(nil, 149), 4), 34), 4)...))
	tpl := set(2, ipfixTemplate(256, 8, 4, 0, 12, 4, 0, 1, 4, 0, 2, 4, 0, ntopL7ProtoName, 0xffff, penNtop))
	d := New(DefaultConfig())
	decodeAll(t, d, ipfix(optTpl, set(400, be32(be32(nil, 7), 32)), tpl))
	other := netip.MustParseAddrPort("[2001:db8::1]:9995")
	decodeFrom(t, d, other, (&v9{unixSecs: 1700000000}).set(0, template(260, 8, 4, 12, 4, 1, 4, 2, 4)).bytes())
	state, err := d.MarshalState()
	if err != nil {
		t.Fatal(err)
	}

	d2 := New(DefaultConfig())
	if err := d2.UnmarshalState(state); err != nil {
		t.Fatal(err)
	}
	data := append(flow4(100, 1), 3, 'D', 'N', 'S')
	f := decodeAll(t, d2, ipfix(set(256, data)))
	if len(f) != 1 || f[0].Protocol != "DNS" || f[0].SamplingRate != 32 || f[0].SamplingSource != schema.SamplingOptions || f[0].Bytes != 3200 {
		t.Fatalf("after restore: %+v", f)
	}
	f = decodeFrom(t, d2, other, (&v9{unixSecs: 1700000000}).set(260, flow4(5, 1)).bytes())
	if len(f) != 1 || f[0].Bytes != 5 {
		t.Fatalf("v9 after restore: %+v", f)
	}
	if st := d2.Stats(); st.Templates != 3 || st.Exporters != 2 || st.WaitingForTemplate != 0 {
		t.Errorf("stats %+v", st)
	}
	again, _ := d2.MarshalState()
	if string(again) != string(state) {
		t.Errorf("state changed through a round trip")
	}

	// Corrupt states: every truncation and a few flipped bytes give an
	// error (never a panic) and leave the decoder empty.
	for i := range len(state) {
		d3 := New(DefaultConfig())
		if err := d3.UnmarshalState(state[:i]); err == nil {
			t.Fatalf("truncated at %d: no error", i)
		}
		if d3.Stats().Exporters != 0 {
			t.Fatalf("truncated at %d: state loaded", i)
		}
	}
	for _, bad := range [][]byte{nil, []byte("FLDS\x02"), []byte("FLDS\x01\xff\xff\xff\xff"), append(append([]byte(nil), state...), 0)} {
		if err := New(DefaultConfig()).UnmarshalState(bad); err == nil {
			t.Errorf("state % x: no error", bad)
		}
	}
}

func TestOptionsTemplateWithdrawal(t *testing.T) {
	opt := append(be16(be16(be16(nil, 400), 2), 1), be16(be16(be16(be16(nil, 149), 4), 34), 4)...)
	opt2 := append(be16(be16(be16(nil, 401), 2), 1), be16(be16(be16(be16(nil, 149), 4), 34), 4)...)
	d := New(DefaultConfig())
	decodeAll(t, d, ipfix(set(3, append(opt, opt2...))))
	// Withdraw 400, define 402 in the same set.
	opt3 := append(be16(be16(be16(nil, 402), 2), 1), be16(be16(be16(be16(nil, 149), 4), 34), 4)...)
	decodeAll(t, d, ipfix(set(3, append(be16(be16(nil, 400), 0), opt3...))))
	st := d.Stats()
	if st.TemplatesWithdrawn != 1 || st.Templates != 2 {
		t.Fatalf("stats %+v", st)
	}
	ids := []uint16{}
	for _, tpl := range d.Exporters()[0].Templates {
		ids = append(ids, tpl.ID)
	}
	if len(ids) != 2 || ids[0] != 401 || ids[1] != 402 {
		t.Errorf("templates %v", ids)
	}
}

// TestExportersConcurrent reads the exporter view while Decode runs (run
// with -race).
func TestExportersConcurrent(t *testing.T) {
	payloads := corpusPayloads(t)
	if len(payloads) == 0 {
		t.Skip("no corpus")
	}
	cfg := DefaultConfig()
	cfg.MaxExporters = 4 // inserts and evictions while reading
	d := New(cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			for _, e := range d.Exporters() {
				_ = len(e.Templates) + len(e.Sampling) + len(e.SourcePorts)
			}
			_ = d.Stats()
		}
	}()
	now := time.Unix(1700000000, 0)
	for i, p := range payloads {
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 7)}), uint16(2000+i%3))
		_ = d.Decode(p, from, now, func(*schema.Flow) {})
	}
	<-done
}

// Ethernet counters (format 2) ride with the generic ones of the same
// sample. tshark (-Y 'frame.number!=18') reads 142 Ethernet records summing
// 28 FCS errors and 8 symbol errors; frame 18 is a host-counters sample
// (formats 2001, 2021) that tshark misreads as a malformed Ethernet record.
func TestSFlowEthernetCounters(t *testing.T) {
	d := New(DefaultConfig())
	var n int
	var fcs, align, symbol uint64
	d.OnCounters(func(c *schema.InterfaceCounters) {
		if c.Ethernet {
			n++
			fcs += uint64(c.FCSErrors)
			align += uint64(c.AlignmentErrors)
			symbol += uint64(c.SymbolErrors)
		}
	})
	decodeFile(t, d, "tcpdump-sflow-counters-30pdus.pcap")
	if n != 142 || fcs != 28 || align != 0 || symbol != 8 {
		t.Fatalf("ethernet records %d, FCS %d, alignment %d, symbol %d; want 142, 28, 0, 8", n, fcs, align, symbol)
	}
}

// TestExporterDrops: what an exporter loses is counted on that exporter,
// by reason, and on no other.
func TestExporterDrops(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxTemplatesPerExporter = 1
	cfg.PendingMaxSets = 1
	cfg.PendingTTL = time.Minute
	d := New(cfg)
	bad := netip.MustParseAddrPort("192.0.2.66:2055")
	good := netip.MustParseAddrPort("192.0.2.7:2055")
	now := time.Unix(1700000000, 0)
	decode := func(from netip.AddrPort, at time.Time, p []byte) {
		_ = d.Decode(p, from, at, func(*schema.Flow) {})
	}
	tpl := set(2, ipfixTemplate(256, 8, 4, 0, 12, 4, 0, 1, 4, 0, 2, 4, 0))
	decode(good, now, ipfix(tpl, set(256, flow4(100, 2))))
	full := ipfix(tpl)
	decode(bad, now, full[:len(full)-3])                                                                 // truncated
	decode(bad, now, ipfix(set(2, append(ipfixTemplate(300, 8, 4, 0), ipfixTemplate(301, 8, 4, 0)...)))) // 1 over the limit
	decode(bad, now, ipfix(set(400, flow4(1, 1)), set(401, flow4(1, 1))))                                // 1 buffered, 1 not
	decode(bad, now.Add(2*time.Minute), ipfix(set(300, flow4(1, 1))))                                    // the buffered set expires
	got := map[string]map[string]uint64{}
	for _, e := range d.Exporters() {
		got[e.Addr.String()] = e.Drops
	}
	want := map[string]map[string]uint64{
		"192.0.2.7":  nil,
		"192.0.2.66": {"truncated": 1, "template_rejected": 1, "no_template_buffer_full": 1, "no_template_expired": 1},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("drops by exporter:\n%v\nwant\n%v", got, want)
	}
}
