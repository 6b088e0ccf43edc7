package kafka

import (
	"errors"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"flowlens/schema"
)

// fullFlow sets every field to a non-zero value, most near their maximum,
// so a truncation or a swapped field shows.
func fullFlow() schema.Flow {
	f := schema.Flow{
		TimeReceived: 1_700_000_000, FlowStartMs: 1_699_999_999_000, FlowEndMs: -1,
		Source: schema.SourceIPFIX, ExporterAddr: netip.MustParseAddr("192.0.2.1"),
		ObservationDomainID: 0xffffffff, SamplerID: 7, SamplingRate: 1000, SamplingSource: schema.SamplingOptions,
		Bytes: 1<<64 - 1, Packets: 12345,
		Protocol: "TLS.YouTube", ProtocolConfidence: schema.ConfidenceDPI, AppCategory: "Streaming",
		ServerName: "www.youtube.com", DNSQuery: "example.org",
		EType: 0x86dd, SrcAddr: netip.MustParseAddr("2001:db8::1"), DstAddr: netip.MustParseAddr("2001:db8::2"),
		SrcPort: 65535, DstPort: 443, IPProtocol: 6, TCPFlags: 0x1b, IPTos: 0xb8, IPTTL: 255,
		ICMPType: 3, ICMPCode: 4, SrcMask: 64, DstMask: 128, NextHop: netip.MustParseAddr("::ffff:10.0.0.1"),
		InIf: 10, OutIf: 20, SrcAS: 4200000000, DstAS: 15169, SrcVlan: 4094, DstVlan: 1,
		SrcMAC: 0xffffffffffff, DstMAC: 0x020000000001, Direction: schema.DirectionEgress, ForwardingStatus: 0xc0,
		MPLSLabels: [schema.MaxMPLSLabels]uint32{1048575, 16, 17}, MPLSLabelsLen: 3,
		PostNATSrcAddr: netip.MustParseAddr("198.51.100.7"), PostNATDstAddr: netip.MustParseAddr("203.0.113.9"),
		PostNATSrcPort: 40000, PostNATDstPort: 8443,
	}
	return f
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for name, f := range map[string]schema.Flow{
		"full":  fullFlow(),
		"empty": {},
		"v4":    {ExporterAddr: netip.MustParseAddr("10.1.1.1"), SrcAddr: netip.MustParseAddr("10.0.0.1"), EType: 0x800, Bytes: 1},
	} {
		t.Run(name, func(t *testing.T) {
			b := Encode(nil, &f)
			var got schema.Flow
			if err := Decode(b, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, f) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, f)
			}
		})
	}
}

// protoFields reads "type name = number;" lines from flow.proto.
func protoFields(t *testing.T) map[protowire.Number]string {
	t.Helper()
	src, err := os.ReadFile("flow.proto")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^\s*(?:repeated\s+)?(\w+)\s+(\w+)\s*=\s*(\d+);`)
	out := map[protowire.Number]string{}
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		n, _ := strconv.Atoi(m[3])
		if prev, dup := out[protowire.Number(n)]; dup {
			t.Fatalf("flow.proto: number %d used by %s and %s", n, prev, m[2])
		}
		out[protowire.Number(n)] = m[1] + " " + m[2]
	}
	return out
}

// TestProtoListsEveryField decodes a full record with bare protowire and
// checks every field number the encoder wrote is in flow.proto with a
// matching wire type, and that flow.proto lists nothing the encoder omits.
func TestProtoListsEveryField(t *testing.T) {
	proto := protoFields(t)
	f := fullFlow()
	b := Encode(nil, &f)
	seen := map[protowire.Number]bool{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			t.Fatal(protowire.ParseError(n))
		}
		decl, ok := proto[num]
		if !ok {
			t.Errorf("encoder writes field %d, flow.proto does not list it", num)
		}
		wantBytes := regexp.MustCompile(`^(bytes|string|uint32 mpls_labels)`).MatchString(decl)
		if (typ == protowire.BytesType) != wantBytes {
			t.Errorf("field %d (%s): wire type %d", num, decl, typ)
		}
		seen[num] = true
		b = b[n:]
	}
	for num, decl := range proto {
		if !seen[num] {
			t.Errorf("flow.proto lists %d (%s), the encoder never writes it", num, decl)
		}
	}
	if len(seen) != reflect.TypeFor[schema.Flow]().NumField()-1 { // MPLSLabels+Len are one field
		t.Errorf("encoder writes %d fields, schema.Flow has %d", len(seen), reflect.TypeFor[schema.Flow]().NumField()-1)
	}
}

func TestDecodeErrors(t *testing.T) {
	tag := func(n protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, n, typ) }
	for name, b := range map[string][]byte{
		"truncated tag":     {0x80},
		"truncated varint":  append(tag(fBytes, protowire.VarintType), 0xff),
		"uint8 overflow":    protowire.AppendVarint(tag(fIPProtocol, protowire.VarintType), 256),
		"uint16 overflow":   protowire.AppendVarint(tag(fSrcPort, protowire.VarintType), 1<<16),
		"uint32 overflow":   protowire.AppendVarint(tag(fInIf, protowire.VarintType), 1<<32),
		"bad address len":   protowire.AppendBytes(tag(fSrcAddr, protowire.BytesType), []byte{1, 2, 3}),
		"bytes past end":    append(tag(fProtocol, protowire.BytesType), 10, 'a'),
		"wrong wire type":   protowire.AppendVarint(tag(fProtocol, protowire.VarintType), 1),
		"fixed32 for known": protowire.AppendFixed32(tag(fBytes, protowire.Fixed32Type), 1),
		"too many labels":   protowire.AppendBytes(tag(fMPLSLabels, protowire.BytesType), make([]byte, 11)),
	} {
		t.Run(name, func(t *testing.T) {
			var f schema.Flow
			if err := Decode(b, &f); !errors.Is(err, ErrDecode) {
				t.Fatalf("Decode(%x) = %v, want ErrDecode", b, err)
			}
		})
	}
}

func TestDecodeSkipsUnknownFields(t *testing.T) {
	f := fullFlow()
	b := protowire.AppendVarint(protowire.AppendTag(nil, 1000, protowire.VarintType), 5)
	b = protowire.AppendBytes(protowire.AppendTag(b, 1001, protowire.BytesType), []byte("future"))
	b = protowire.AppendFixed64(protowire.AppendTag(b, 1002, protowire.Fixed64Type), 5)
	b = Encode(b, &f)
	var got schema.Flow
	if err := Decode(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, f) {
		t.Fatal("unknown fields changed the record")
	}
}

func TestEncodeAllocs(t *testing.T) {
	f := fullFlow()
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() { buf = Encode(buf[:0], &f) }); n != 0 {
		t.Fatalf("Encode: %v allocs/op, want 0", n)
	}
}

func BenchmarkEncode(b *testing.B) {
	f := fullFlow()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = Encode(buf[:0], &f)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecode(b *testing.B) {
	f := fullFlow()
	buf := Encode(nil, &f)
	var got schema.Flow
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if err := Decode(buf, &got); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	full := fullFlow()
	f.Add(Encode(nil, &full))
	f.Add([]byte{})
	f.Add(Encode(nil, &schema.Flow{ExporterAddr: netip.MustParseAddr("10.0.0.1"), Bytes: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got schema.Flow
		if err := Decode(b, &got); err != nil {
			return
		}
		// Whatever decodes must re-encode to something that decodes to
		// the same record.
		var again schema.Flow
		if err := Decode(Encode(nil, &got), &again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(got, again) {
			t.Fatalf("re-encode changed the record:\n%+v\n%+v", got, again)
		}
	})
}
