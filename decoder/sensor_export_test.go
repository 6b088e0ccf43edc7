package decoder

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"flowlens/schema"
	"flowlens/sensor/export"
)

// The sensor's exporter and this decoder must agree on every field: these
// tests encode flows with sensor/export and decode them here.

// sensorExportTime is the export time of the messages: the receive time
// decodeAll uses, so that flow times are within the decoder's bounds.
var sensorExportTime = time.Unix(1700000000, 0)

func sensorFlow(v6 bool) export.Flow {
	f := export.Flow{
		Client: netip.MustParseAddr("192.0.2.1"), Server: netip.MustParseAddr("198.51.100.7"),
		ClientPort: 51234, ServerPort: 443, Protocol: 6, VLAN: 42,
		ClientOctets: 1500, ClientPackets: 12, ServerOctets: 90000, ServerPackets: 70,
		Start:          sensorExportTime.Add(-30*time.Second + 123*time.Millisecond),
		End:            sensorExportTime.Add(-time.Second + 456*time.Millisecond),
		ClientTCPFlags: 0x1b, ServerTCPFlags: 0x12, EndReason: export.EndOfFlow,
		Application: "TLS.YouTube", ApplicationID: 124, Category: "Media", Confidence: export.ConfidenceDPI,
		ServerName: "www.youtube.com", DNSQuery: "",
	}
	if v6 {
		f.Client, f.Server = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:1::7")
	}
	return f
}

// encodeSensor encodes flows into as many messages as they need; the
// first carries the templates.
func encodeSensor(t testing.TB, cfg export.Config, flows ...export.Flow) [][]byte {
	t.Helper()
	e, err := export.NewEncoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var msgs [][]byte
	e.Begin(sensorExportTime, true)
	for i := range flows {
		if !e.Add(&flows[i]) {
			msgs = append(msgs, append([]byte(nil), e.Finish()...))
			e.Begin(sensorExportTime, false)
			if !e.Add(&flows[i]) {
				t.Fatalf("flow %d does not fit in an empty message", i)
			}
		}
	}
	return append(msgs, append([]byte(nil), e.Finish()...))
}

// wantSensorFlows is what the collector must store for f: the
// client→server flow, then the server→client one when the server sent
// anything (biflow: the decoder's reverse flow; unidirectional: the
// second record), with ntop's fields only when they were exported.
func wantSensorFlows(f export.Flow, ntop bool) []schema.Flow {
	et := uint16(etypeIPv4)
	if f.Client.Unmap().Is6() {
		et = etypeIPv6
	}
	fwd := schema.Flow{
		TimeReceived: uint32(sensorExportTime.Unix()), FlowStartMs: f.Start.UnixMilli(), FlowEndMs: f.End.UnixMilli(),
		Source: schema.SourceIPFIX, ExporterAddr: testExporter.Addr(), ObservationDomainID: 7,
		SamplingRate: 1, SamplingSource: schema.SamplingNone,
		Bytes: f.ClientOctets, Packets: f.ClientPackets,
		Protocol: f.Application, ProtocolConfidence: schema.ConfidenceExporter, AppCategory: f.Category,
		EType: et, SrcAddr: f.Client.Unmap(), DstAddr: f.Server.Unmap(), SrcPort: f.ClientPort, DstPort: f.ServerPort,
		IPProtocol: f.Protocol, TCPFlags: f.ClientTCPFlags, SrcVlan: f.VLAN, DstVlan: f.VLAN,
	}
	if ntop {
		fwd.ServerName, fwd.DNSQuery = f.ServerName, f.DNSQuery
		switch f.Confidence {
		case export.ConfidenceDPI:
			fwd.ProtocolConfidence = schema.ConfidenceDPI
		case export.ConfidencePortGuess:
			fwd.ProtocolConfidence = schema.ConfidencePort
		case export.ConfidenceUnknown:
			fwd.Protocol, fwd.ProtocolConfidence = "", schema.ConfidenceNone
		}
	}
	if fwd.Protocol == "" && fwd.ProtocolConfidence != schema.ConfidenceNone {
		fwd.ProtocolConfidence = schema.ConfidenceNone
	}
	out := []schema.Flow{fwd}
	if f.ServerOctets != 0 || f.ServerPackets != 0 {
		rev := fwd
		rev.SrcAddr, rev.DstAddr, rev.SrcPort, rev.DstPort = fwd.DstAddr, fwd.SrcAddr, fwd.DstPort, fwd.SrcPort
		rev.Bytes, rev.Packets, rev.TCPFlags = f.ServerOctets, f.ServerPackets, f.ServerTCPFlags
		out = append(out, rev)
	}
	return out
}

func decodeSensor(t *testing.T, d *Decoder, msgs ...[]byte) []schema.Flow {
	t.Helper()
	return decodeFrom(t, d, testExporter, msgs...)
}

func sensorConfig(uni, ntop bool) export.Config {
	cfg := export.DefaultConfig()
	cfg.ObservationDomainID = 7
	cfg.Unidirectional, cfg.Ntop = uni, ntop
	return cfg
}

func diffFlows(t *testing.T, what string, got, want []schema.Flow) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d flows, want %d\n got %+v\nwant %+v", what, len(got), len(want), got, want)
		return
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("%s: flow %d\n got %+v\nwant %+v", what, i, got[i], want[i])
		}
	}
}

// TestSensorExportRoundTrip: every field the sensor exports comes back,
// IPv4 and IPv6, biflow and two records, with and without the ntop
// elements; many flows spread over several messages.
func TestSensorExportRoundTrip(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, uni := range []bool{false, true} {
			for _, ntop := range []bool{true, false} {
				name := fmt.Sprintf("v6=%v/unidirectional=%v/ntop=%v", v6, uni, ntop)
				t.Run(name, func(t *testing.T) {
					var flows []export.Flow
					var want []schema.Flow
					for i := range 40 {
						f := sensorFlow(v6 != (i%5 == 4)) // one flow in five of the other family
						f.ClientPort += uint16(i)
						f.ClientOctets += uint64(i)
						if i%7 == 3 {
							f.ServerOctets, f.ServerPackets = 0, 0 // one-way: no reverse flow
						}
						if i%4 == 1 {
							f.Application, f.Category, f.ServerName, f.DNSQuery = "DNS", "Network", "", fmt.Sprintf("host%d.example.org", i)
							f.Protocol, f.ServerPort = 17, 53
						}
						flows = append(flows, f)
						want = append(want, wantSensorFlows(f, ntop)...)
					}
					msgs := encodeSensor(t, sensorConfig(uni, ntop), flows...)
					if len(msgs) < 3 {
						t.Fatalf("%d messages: the test wants several", len(msgs))
					}
					// Both data-record paths: our walker and goflow2's
					// DecodeDataSet (the differential tests' reference).
					for _, goflow2 := range []bool{false, true} {
						d := New(DefaultConfig())
						d.useGoflow2 = goflow2
						diffFlows(t, fmt.Sprintf("%s/goflow2=%v", name, goflow2), decodeSensor(t, d, msgs...), want)
						for reason, n := range d.Stats().Errors {
							if n != 0 {
								t.Errorf("decoder errors: %s %d", reason, n)
							}
						}
					}
				})
			}
		}
	}
}

// TestSensorExportConfidence: the sensor's confidence reaches
// protocol_confidence through L7_CONFIDENCE; an unknown label is dropped
// so that enrich's port guess applies.
func TestSensorExportConfidence(t *testing.T) {
	for _, tc := range []struct {
		c        export.Confidence
		app      string
		protocol string
		want     schema.Confidence
	}{
		{export.ConfidenceDPI, "TLS.YouTube", "TLS.YouTube", schema.ConfidenceDPI},
		{export.ConfidenceDNSCache, "TLS.YouTube", "TLS.YouTube", schema.ConfidenceDNSCache},
		{export.ConfidenceIPList, "TLS.Google", "TLS.Google", schema.ConfidenceIPList},
		{export.ConfidencePortGuess, "TLS", "TLS", schema.ConfidencePort},
		{export.ConfidenceUnknown, "Unknown", "", schema.ConfidenceNone},
	} {
		f := sensorFlow(false)
		f.Confidence, f.Application = tc.c, tc.app
		got := decodeSensor(t, New(DefaultConfig()), encodeSensor(t, sensorConfig(false, true), f)...)
		if len(got) != 2 || got[0].Protocol != tc.protocol || got[0].ProtocolConfidence != tc.want ||
			got[1].Protocol != tc.protocol || got[1].ProtocolConfidence != tc.want {
			t.Errorf("%v: %+v", tc.c, got)
		}
	}
}

// TestSensorExportLongStrings: strings past 254 bytes take the 3-byte
// length form (RFC 7011 §7) and come back whole; strings past the bound
// come back cut to it.
func TestSensorExportLongStrings(t *testing.T) {
	cfg := sensorConfig(false, true)
	cfg.MTU, cfg.MaxNameLen, cfg.MaxLabelLen = 9000, 1000, 300
	f := sensorFlow(true)
	f.ServerName = strings.Repeat("a", 255) + ".example.org" // 267 bytes: long form
	f.DNSQuery = strings.Repeat("q", 1200)                   // cut to 1000
	f.Application = strings.Repeat("L", 255)                 // exactly 255: long form
	f.Category = strings.Repeat("c", 254)                    // the longest short form
	got := decodeSensor(t, New(DefaultConfig()), encodeSensor(t, cfg, f)...)
	if len(got) != 2 || got[0].ServerName != f.ServerName || got[0].DNSQuery != f.DNSQuery[:1000] ||
		got[0].Protocol != f.Application || got[0].AppCategory != f.Category {
		t.Fatalf("%d flows: %+v", len(got), got)
	}
	// The default bounds: labels cut to 64, names to 253.
	got = decodeSensor(t, New(DefaultConfig()), encodeSensor(t, sensorConfig(false, true), f)...)
	if got[0].ServerName != f.ServerName[:253] || got[0].Protocol != f.Application[:64] || got[0].AppCategory != f.Category[:64] {
		t.Fatalf("%+v", got[0])
	}
}

// TestSensorExportTemplatesAfterData: data that arrives before its
// template (a collector started after the sensor, or a lost template
// datagram) is buffered and decoded once the periodic templates come.
func TestSensorExportTemplatesAfterData(t *testing.T) {
	for _, uni := range []bool{false, true} {
		cfg := sensorConfig(uni, true)
		e, err := export.NewEncoder(cfg)
		if err != nil {
			t.Fatal(err)
		}
		f4, f6 := sensorFlow(false), sensorFlow(true)
		e.Begin(sensorExportTime, false)
		e.Add(&f4)
		e.Add(&f6)
		data := append([]byte(nil), e.Finish()...)
		e.Begin(sensorExportTime, true)
		tpl := e.Finish()

		d := New(DefaultConfig())
		if got := decodeSensor(t, d, data); len(got) != 0 {
			t.Fatalf("flows before the templates: %+v", got)
		}
		if d.Stats().WaitingForTemplate != 2 {
			t.Fatalf("stats %+v", d.Stats())
		}
		got := decodeSensor(t, d, tpl)
		diffFlows(t, fmt.Sprintf("unidirectional=%v", uni), got, append(wantSensorFlows(f4, true), wantSensorFlows(f6, true)...))
	}
}

// TestNtopL7Confidence: L7_CONFIDENCE grades the exporter's label in all
// the forms nProbe sends it: NetFlow v9 type 58032, IPFIX 35632/560 and
// 35632/(58032 - 0x8000).
func TestNtopL7Confidence(t *testing.T) {
	str := func(s string, n int) []byte { b := make([]byte, n); copy(b, s); return b }
	for _, tc := range []struct {
		conf     uint8
		protocol string
		want     schema.Confidence
	}{
		{6, "TLS", schema.ConfidenceDPI},
		{1, "TLS", schema.ConfidencePort},
		{5, "TLS", schema.ConfidenceDNSCache}, // DPI_CACHE
		{7, "TLS", schema.ConfidenceIPList},   // MATCH_BY_IP
		{4, "TLS", schema.ConfidenceExporter}, // nDPI 4.2's DPI: never read stronger
		{200, "TLS", schema.ConfidenceExporter},
		{0, "", schema.ConfidenceNone},
	} {
		m := (&v9{unixSecs: 1700000000}).
			set(0, template(256, 8, 4, 12, 4, 1, 4, 2, 4, ntopL7ProtoNameV9, 8, ntopL7ConfidenceV9, 1)).
			set(256, append(append(flow4(1, 1), str("TLS", 8)...), tc.conf))
		got := decodeAll(t, New(DefaultConfig()), m.bytes())
		for _, ie := range []uint32{ntopL7Confidence, ntopL7ConfidenceV9 - 0x8000} {
			tpl := set(2, ipfixTemplate(256, 8, 4, 0, 12, 4, 0, 1, 4, 0, 2, 4, 0, ie, 1, penNtop, ntopL7ProtoName, 0xffff, penNtop))
			got = append(got, decodeAll(t, New(DefaultConfig()), ipfix(tpl, set(256, append(append(flow4(1, 1), tc.conf, 3), "TLS"...))))...)
		}
		if len(got) != 3 {
			t.Fatalf("confidence %d: %d flows", tc.conf, len(got))
		}
		for i, f := range got {
			if f.Protocol != tc.protocol || f.ProtocolConfidence != tc.want {
				t.Errorf("confidence %d, form %d: %q %v, want %q %v", tc.conf, i, f.Protocol, f.ProtocolConfidence, tc.protocol, tc.want)
			}
		}
	}
}

// BenchmarkDecodeSensor decodes the sensor's biflow messages (variable-
// length records, ntop elements): per record and per flow stored (two per
// record).
//
//	go test ./decoder -run '^$' -bench DecodeSensor -benchmem -benchtime 2000x
func BenchmarkDecodeSensor(b *testing.B) {
	var flows []export.Flow
	for i := range 64 {
		f := sensorFlow(i%4 == 3)
		f.ClientPort += uint16(i)
		f.ServerName = fmt.Sprintf("host%d.example.org", i%16)
		flows = append(flows, f)
	}
	msgs := encodeSensor(b, sensorConfig(false, true), flows...)
	d := New(DefaultConfig())
	n := 0
	emit := func(*schema.Flow) { n++ }
	for _, m := range msgs { // templates learnt, names interned
		if err := d.Decode(m, testExporter, sensorExportTime, emit); err != nil {
			b.Fatal(err)
		}
	}
	data := msgs[1:]
	n = 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, m := range data {
			if err := d.Decode(m, testExporter, sensorExportTime, emit); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n/2), "ns/record")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
}
