package kafka

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"flowlens/schema"
	"flowlens/schema/flowpb"
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
		DNSQType: 16, DNSRCode: 3, DNSAnswered: true,
		SrcPool: "iot", DstPool: "servers", SrcCountry: "DE", DstCountry: "US", SrcASName: "Example GmbH", DstASName: "Google LLC",
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

// The tests below hold the hand-written codec to schema/flow.proto through
// the code protoc generates from it (schema/flowpb), and both to
// schema.Flow. scripts/generate.sh --check keeps flowpb in step with the
// .proto, so a field added to one side only fails here.

// flowField pairs a field of schema.Flow with the proto field carrying it.
type flowField struct {
	index    int // in schema.Flow
	typ      reflect.Type
	lenIndex int // for an array, the index of its <Name>Len field; else -1
	fd       protoreflect.FieldDescriptor
}

// carriedBy lists the schema.Flow fields that have no proto field of their
// own: the length of the MPLS stack is the length of the repeated field.
var carriedBy = map[string]string{"MPLSLabelsLen": "MPLSLabels"}

var addrType = reflect.TypeFor[netip.Addr]()

func flowDescriptor() protoreflect.MessageDescriptor {
	return flowpb.File_schema_flow_proto.Messages().ByName("Flow")
}

// mapFlowFields matches schema.Flow's fields to the proto's by name:
// protoc-gen-go's Go names differ from ours only in case (IPTTL/IpTtl,
// EType/Etype, PostNATSrcAddr/PostNatSrcAddr), so the proto name without
// underscores equals the Go name lowercased. It returns one problem per
// field that has no partner or a type the other side cannot hold.
func mapFlowFields() (fields []flowField, problems []string) {
	md := flowDescriptor()
	byKey := map[string]protoreflect.FieldDescriptor{}
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		byKey[strings.ReplaceAll(string(fd.Name()), "_", "")] = fd
	}
	used := map[protoreflect.FieldNumber]bool{}
	ft := reflect.TypeFor[schema.Flow]()
	for i := range ft.NumField() {
		sf := ft.Field(i)
		if _, ok := carriedBy[sf.Name]; ok {
			continue
		}
		fd := byKey[strings.ToLower(sf.Name)]
		if fd == nil {
			problems = append(problems, fmt.Sprintf("schema.Flow.%s (%s) has no field in schema/flow.proto: "+
				"add one with the next free number, encode it in sink/kafka/codec.go and run make generate", sf.Name, sf.Type))
			continue
		}
		used[fd.Number()] = true
		if why := kindMismatch(sf.Type, fd); why != "" {
			problems = append(problems, fmt.Sprintf("schema.Flow.%s (%s) and schema/flow.proto %s = %d: %s",
				sf.Name, sf.Type, fd.Name(), fd.Number(), why))
			continue
		}
		ff := flowField{index: i, typ: sf.Type, lenIndex: -1, fd: fd}
		if sf.Type.Kind() == reflect.Array {
			l, ok := ft.FieldByName(sf.Name + "Len")
			if !ok {
				problems = append(problems, fmt.Sprintf("schema.Flow.%s: array without a %sLen field", sf.Name, sf.Name))
				continue
			}
			ff.lenIndex = l.Index[0]
		}
		fields = append(fields, ff)
	}
	for i := range md.Fields().Len() {
		if fd := md.Fields().Get(i); !used[fd.Number()] {
			problems = append(problems, fmt.Sprintf("schema/flow.proto %s = %d matches no schema.Flow field "+
				"(a removed field is deleted and its number reserved)", fd.Name(), fd.Number()))
		}
	}
	return fields, problems
}

// kindMismatch says why a proto field cannot carry a Go field exactly, ""
// when it can: every unsigned Go integer travels as uint32 or uint64 of at
// least its width, int64 as int64 (two's complement, never sint64's
// zigzag), addresses as bytes, the label array as packed uint32.
func kindMismatch(t reflect.Type, fd protoreflect.FieldDescriptor) string {
	if fd.HasPresence() {
		return "explicit presence (optional): the codec sends zero as absent"
	}
	if t.Kind() == reflect.Array {
		if !fd.IsList() || !fd.IsPacked() {
			return "an array needs a packed repeated field"
		}
		t = t.Elem()
	} else if fd.IsList() {
		return "repeated field for a scalar"
	}
	var want protoreflect.Kind
	switch {
	case t == addrType:
		want = protoreflect.BytesKind
	case t.Kind() == reflect.Uint8, t.Kind() == reflect.Uint16, t.Kind() == reflect.Uint32:
		want = protoreflect.Uint32Kind
	case t.Kind() == reflect.Uint64:
		want = protoreflect.Uint64Kind
	case t.Kind() == reflect.Int64:
		want = protoreflect.Int64Kind
	case t.Kind() == reflect.String:
		want = protoreflect.StringKind
	case t.Kind() == reflect.Bool:
		want = protoreflect.BoolKind
	default:
		return fmt.Sprintf("no proto mapping for Go kind %s", t.Kind())
	}
	if fd.Kind() != want {
		return fmt.Sprintf("proto kind %s, want %s", fd.Kind(), want)
	}
	return ""
}

var flowFieldsOnce = sync.OnceValues(mapFlowFields)

// flowFields is mapFlowFields for the tests that need a complete mapping.
func flowFields(tb testing.TB) []flowField {
	tb.Helper()
	fields, problems := flowFieldsOnce()
	if len(problems) > 0 {
		tb.Fatalf("schema.Flow and schema/flow.proto disagree (see TestProtoHasEveryFlowField): %s", problems[0])
	}
	return fields
}

// flowToPB is what a consumer must read for f, built field by field
// through protoreflect: addresses as their 4 or 16 bytes, enumerations as
// their numbers, at most MaxMPLSLabels labels.
func flowToPB(fields []flowField, f *schema.Flow) *flowpb.Flow {
	pb := new(flowpb.Flow)
	m := pb.ProtoReflect()
	v := reflect.ValueOf(f).Elem()
	for _, ff := range fields {
		fv := v.Field(ff.index)
		switch {
		case ff.lenIndex >= 0:
			n := min(int(v.Field(ff.lenIndex).Uint()), fv.Len())
			if n == 0 {
				continue
			}
			l := m.Mutable(ff.fd).List()
			for i := range n {
				l.Append(protoreflect.ValueOfUint32(uint32(fv.Index(i).Uint())))
			}
		case fv.IsZero(): // proto3: a zero value is absent
		case ff.typ == addrType:
			m.Set(ff.fd, protoreflect.ValueOfBytes(fv.Interface().(netip.Addr).AsSlice()))
		case ff.fd.Kind() == protoreflect.Uint32Kind:
			m.Set(ff.fd, protoreflect.ValueOfUint32(uint32(fv.Uint())))
		case ff.fd.Kind() == protoreflect.Uint64Kind:
			m.Set(ff.fd, protoreflect.ValueOfUint64(fv.Uint()))
		case ff.fd.Kind() == protoreflect.Int64Kind:
			m.Set(ff.fd, protoreflect.ValueOfInt64(fv.Int()))
		case ff.fd.Kind() == protoreflect.StringKind:
			m.Set(ff.fd, protoreflect.ValueOfString(fv.String()))
		case ff.fd.Kind() == protoreflect.BoolKind:
			m.Set(ff.fd, protoreflect.ValueOfBool(fv.Bool()))
		}
	}
	return pb
}

// pbDiff lists the fields on which got and want differ, one per line.
func pbDiff(got, want *flowpb.Flow) string {
	var sb strings.Builder
	g, w := got.ProtoReflect(), want.ProtoReflect()
	fds := flowDescriptor().Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		if !g.Get(fd).Equal(w.Get(fd)) {
			fmt.Fprintf(&sb, "\n  %s = %d: got %v, want %v", fd.Name(), fd.Number(), fmtValue(g, fd), fmtValue(w, fd))
		}
	}
	if u := g.GetUnknown(); len(u) > 0 {
		fmt.Fprintf(&sb, "\n  unknown fields: %x", u)
	}
	return sb.String()
}

func fmtValue(m protoreflect.Message, fd protoreflect.FieldDescriptor) string {
	if fd.IsList() {
		l := m.Get(fd).List()
		vs := make([]any, l.Len())
		for i := range vs {
			vs[i] = l.Get(i).Interface()
		}
		return fmt.Sprint(vs)
	}
	if b, ok := m.Get(fd).Interface().([]byte); ok {
		return fmt.Sprintf("%x", b)
	}
	return fmt.Sprintf("%q", fmt.Sprint(m.Get(fd).Interface()))
}

// TestProtoHasEveryFlowField fails, naming the field, when schema.Flow
// gains a field schema/flow.proto lacks (or the reverse), or when a proto
// field's kind cannot hold its Go field exactly. It also checks fullFlow
// still sets every field, which the other tests rely on.
func TestProtoHasEveryFlowField(t *testing.T) {
	if _, problems := mapFlowFields(); len(problems) > 0 {
		for _, p := range problems {
			t.Error(p)
		}
	}
	full := fullFlow()
	v := reflect.ValueOf(full)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("fullFlow leaves schema.Flow.%s zero: set it, so the encoder is seen writing it", v.Type().Field(i).Name)
		}
	}
}

// TestProtoListsEveryField walks a full record with bare protowire and
// checks against the generated descriptor that every field the encoder
// writes is declared with that number and a kind of that wire type (varint
// kinds other than zigzag sint*, or length-delimited: string, bytes, packed
// repeated), and that every declared field is written.
func TestProtoListsEveryField(t *testing.T) {
	md := flowDescriptor()
	if md.Syntax() != protoreflect.Proto3 {
		t.Fatalf("schema/flow.proto is %v, the codec implements proto3 (zero values absent)", md.Syntax())
	}
	f := fullFlow()
	b := Encode(nil, &f)
	seen := map[protowire.Number]bool{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			t.Fatal(protowire.ParseError(n))
		}
		b = b[n:]
		if seen[num] {
			t.Errorf("encoder writes field %d twice", num)
		}
		seen[num] = true
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			t.Errorf("encoder writes field %d, schema/flow.proto does not declare it", num)
			continue
		}
		switch want := wireType(fd); {
		case want < 0:
			t.Errorf("field %d (%s %s): the codec writes no %s (zigzag, fixed-width or message kind)", num, fd.Kind(), fd.Name(), fd.Kind())
		case typ != want:
			t.Errorf("field %d (%s %s): encoder writes wire type %d, the proto expects %d", num, fd.Kind(), fd.Name(), typ, want)
		}
	}
	for i := range md.Fields().Len() {
		if fd := md.Fields().Get(i); !seen[fd.Number()] {
			t.Errorf("schema/flow.proto declares %s = %d, the encoder never writes it", fd.Name(), fd.Number())
		}
	}
}

// wireType is the wire type a proto3 encoder uses for fd, -1 for kinds the
// codec never uses (zigzag, fixed-width, messages).
func wireType(fd protoreflect.FieldDescriptor) protowire.Type {
	if fd.IsList() && fd.IsPacked() {
		return protowire.BytesType
	}
	switch fd.Kind() {
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind, protoreflect.Int32Kind, protoreflect.Int64Kind,
		protoreflect.BoolKind, protoreflect.EnumKind:
		return protowire.VarintType
	case protoreflect.StringKind, protoreflect.BytesKind:
		return protowire.BytesType
	}
	return -1
}

// maxFlow sets every field to the largest value its Go type holds (the
// smallest for FlowStartMs), addresses to all-ones IPv6, a full label
// stack and strings long enough for two-byte lengths.
func maxFlow() schema.Flow {
	var f schema.Flow
	v := reflect.ValueOf(&f).Elem()
	for i := range v.NumField() {
		fv := v.Field(i)
		switch {
		case fv.Type() == addrType:
			fv.Set(reflect.ValueOf(netip.AddrFrom16([16]byte{0: 0xff, 1: 0xff, 2: 0xff, 3: 0xff, 4: 0xff, 5: 0xff, 6: 0xff, 7: 0xff,
				8: 0xff, 9: 0xff, 10: 0xff, 11: 0xff, 12: 0xff, 13: 0xff, 14: 0xff, 15: 0xff})))
		case fv.Kind() == reflect.Array:
			for j := range fv.Len() {
				fv.Index(j).SetUint(math.MaxUint64 >> (64 - fv.Type().Elem().Bits()))
			}
		case fv.CanUint():
			fv.SetUint(math.MaxUint64 >> (64 - fv.Type().Bits()))
		case fv.CanInt():
			fv.SetInt(math.MaxInt64)
		case fv.Kind() == reflect.String:
			fv.SetString(strings.Repeat("x", 300))
		case fv.Kind() == reflect.Bool:
			fv.SetBool(true)
		}
	}
	f.FlowStartMs = math.MinInt64
	f.MPLSLabelsLen = schema.MaxMPLSLabels
	return f
}

// differentialFlows are the records the encoder is checked on against
// proto.Unmarshal.
func differentialFlows() map[string]schema.Flow {
	return map[string]schema.Flow{
		"full": fullFlow(),
		"zero": {},
		"ipv6": {EType: 0x86dd, ExporterAddr: netip.MustParseAddr("2001:db8::a"),
			SrcAddr: netip.MustParseAddr("2001:db8::1"), DstAddr: netip.MustParseAddr("ff02::1"),
			NextHop: netip.MustParseAddr("fe80::1"), PostNATSrcAddr: netip.MustParseAddr("::ffff:192.0.2.1"),
			PostNATDstAddr: netip.MustParseAddr("::"), IPProtocol: 58, ICMPType: 135},
		"ipv4": {EType: 0x800, ExporterAddr: netip.MustParseAddr("10.1.1.1"),
			SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("255.255.255.255"),
			NextHop: netip.MustParseAddr("0.0.0.0"), PostNATSrcAddr: netip.MustParseAddr("100.64.0.1"),
			SrcPort: 53, DstPort: 1, IPProtocol: 17, Bytes: 1, Packets: 1},
		"mpls": {MPLSLabels: [schema.MaxMPLSLabels]uint32{0, 1, 2, 3, 16, 1 << 19, 1<<20 - 1, 7, 8, 9}, MPLSLabelsLen: schema.MaxMPLSLabels},
		// A length past the array is clamped by the encoder, as here.
		"mpls len past max": {MPLSLabels: [schema.MaxMPLSLabels]uint32{5}, MPLSLabelsLen: 200},
		"max":               maxFlow(),
		"negative times":    {FlowStartMs: -1, FlowEndMs: math.MinInt64},
		"non-ascii": {Protocol: "TLS.Ünïcødé", AppCategory: "Vidéo", ServerName: "пример.рф",
			DNSQuery: "例え.テスト", Source: schema.SourceSensor},
		"emoji and nul": {ServerName: "\U0001F600.example", DNSQuery: "a\x00b"},
	}
}

// TestEncodeMatchesProtobuf is differential test (a): what our encoder
// writes, the generated code reads back as the same values, and the
// encoding has the size proto.Marshal gives the same message.
func TestEncodeMatchesProtobuf(t *testing.T) {
	fields := flowFields(t)
	for name, f := range differentialFlows() {
		t.Run(name, func(t *testing.T) {
			b := Encode(nil, &f)
			got := new(flowpb.Flow)
			if err := proto.Unmarshal(b, got); err != nil {
				t.Fatalf("proto.Unmarshal(Encode): %v", err)
			}
			if len(got.ProtoReflect().GetUnknown()) > 0 {
				t.Errorf("fields unknown to flowpb: %x", got.ProtoReflect().GetUnknown())
			}
			want := flowToPB(fields, &f)
			if !proto.Equal(got, want) {
				t.Fatalf("proto.Unmarshal(Encode(f)) differs:%s", pbDiff(got, want))
			}
			if n := proto.Size(want); n != len(b) {
				t.Errorf("Encode wrote %d bytes, proto.Marshal writes %d", len(b), n)
			}
		})
	}

	// The same through the generated getters, independently of the
	// name matching flowToPB relies on.
	f := fullFlow()
	got := new(flowpb.Flow)
	if err := proto.Unmarshal(Encode(nil, &f), got); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"exporter_addr", got.GetExporterAddr(), []byte{192, 0, 2, 1}},
		{"src_addr", got.GetSrcAddr(), f.SrcAddr.AsSlice()},
		{"next_hop", len(got.GetNextHop()), 16},
		{"source", got.GetSource(), uint32(schema.SourceIPFIX)},
		{"direction", got.GetDirection(), uint32(schema.DirectionEgress)},
		{"sampling_source", got.GetSamplingSource(), uint32(schema.SamplingOptions)},
		{"protocol_confidence", got.GetProtocolConfidence(), uint32(schema.ConfidenceDPI)},
		{"flow_end_ms", got.GetFlowEndMs(), int64(-1)},
		{"bytes", got.GetBytes(), uint64(math.MaxUint64)},
		{"src_port", got.GetSrcPort(), uint32(65535)},
		{"src_as", got.GetSrcAs(), uint32(4200000000)},
		{"src_mac", got.GetSrcMac(), uint64(0xffffffffffff)},
		{"mpls_labels", got.GetMplsLabels(), []uint32{1048575, 16, 17}},
		{"server_name", got.GetServerName(), "www.youtube.com"},
		{"post_nat_dst_port", got.GetPostNatDstPort(), uint32(8443)},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// randomPB fills a flowpb.Flow with values schema.Flow can hold: each
// integer within its Go field's width (zero, the maximum or anything),
// addresses of 4 or 16 bytes, up to MaxMPLSLabels labels, valid UTF-8.
func randomPB(r *rand.Rand, fields []flowField) *flowpb.Flow {
	pb := new(flowpb.Flow)
	m := pb.ProtoReflect()
	uintOf := func(bits int) uint64 {
		max := uint64(math.MaxUint64) >> (64 - bits)
		switch r.IntN(4) {
		case 0:
			return max
		case 1:
			return r.Uint64N(300) & max
		}
		return r.Uint64() & max
	}
	for _, ff := range fields {
		if r.IntN(5) == 0 {
			continue // absent
		}
		switch {
		case ff.lenIndex >= 0:
			l := m.Mutable(ff.fd).List()
			for range r.IntN(ff.typ.Len() + 1) {
				l.Append(protoreflect.ValueOfUint32(uint32(uintOf(ff.typ.Elem().Bits()))))
			}
		case ff.typ == addrType:
			a := make([]byte, []int{4, 16}[r.IntN(2)])
			for i := range a {
				a[i] = byte(r.Uint32())
			}
			m.Set(ff.fd, protoreflect.ValueOfBytes(a))
		case ff.fd.Kind() == protoreflect.StringKind:
			runes := []rune("aZ.-_09 éßж例😀\x00\u00ff\U0010FFFF")
			s := make([]rune, r.IntN(40))
			for i := range s {
				s[i] = runes[r.IntN(len(runes))]
			}
			m.Set(ff.fd, protoreflect.ValueOfString(string(s)))
		case ff.fd.Kind() == protoreflect.Int64Kind:
			m.Set(ff.fd, protoreflect.ValueOfInt64([]int64{math.MinInt64, math.MaxInt64, -1, r.Int64() - r.Int64()}[r.IntN(4)]))
		case ff.fd.Kind() == protoreflect.Uint32Kind:
			m.Set(ff.fd, protoreflect.ValueOfUint32(uint32(uintOf(ff.typ.Bits()))))
		case ff.fd.Kind() == protoreflect.Uint64Kind:
			m.Set(ff.fd, protoreflect.ValueOfUint64(uintOf(ff.typ.Bits())))
		case ff.fd.Kind() == protoreflect.BoolKind:
			m.Set(ff.fd, protoreflect.ValueOfBool(r.IntN(2) == 1))
		}
	}
	return pb
}

// TestDecodeMatchesProtobuf is differential test (b): records written by
// proto.Marshal from random messages decode to the same values. Seeded, so
// a failure reproduces.
func TestDecodeMatchesProtobuf(t *testing.T) {
	fields := flowFields(t)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 1000 {
		pb := randomPB(r, fields)
		b, err := proto.Marshal(pb)
		if err != nil {
			t.Fatal(err)
		}
		var got schema.Flow
		if err := Decode(b, &got); err != nil {
			t.Fatalf("#%d: Decode(proto.Marshal(%v)): %v", i, prototext.Format(pb), err)
		}
		if back := flowToPB(fields, &got); !proto.Equal(back, pb) {
			t.Fatalf("#%d: Decode(proto.Marshal(m)) differs:%s\nm = %v", i, pbDiff(back, pb), prototext.Format(pb))
		}
		if n := len(Encode(nil, &got)); n != len(b) {
			t.Fatalf("#%d: Encode writes %d bytes for what proto.Marshal wrote in %d", i, n, len(b))
		}
	}
}

// TestDecodeStricterThanProtobuf lists what proto.Unmarshal accepts and our
// Decode deliberately rejects: the values have no schema.Flow form, and
// truncating them would store a different flow than the one sent.
func TestDecodeStricterThanProtobuf(t *testing.T) {
	tag := func(n protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, n, typ) }
	for name, b := range map[string][]byte{
		"5-byte address":             protowire.AppendBytes(tag(fSrcAddr, protowire.BytesType), []byte{1, 2, 3, 4, 5}),
		"empty address":              protowire.AppendBytes(tag(fExporterAddr, protowire.BytesType), nil),
		"uint32 field above uint16":  protowire.AppendVarint(tag(fSrcPort, protowire.VarintType), 1<<16),
		"uint32 field above uint8":   protowire.AppendVarint(tag(fDirection, protowire.VarintType), 256),
		"uint32 field above 32 bits": protowire.AppendVarint(tag(fInIf, protowire.VarintType), 1<<32),
		"label above 32 bits":        protowire.AppendBytes(tag(fMPLSLabels, protowire.BytesType), protowire.AppendVarint(nil, 1<<32)),
		"11 labels":                  protowire.AppendBytes(tag(fMPLSLabels, protowire.BytesType), make([]byte, 11)),
		"unpacked label":             protowire.AppendVarint(tag(fMPLSLabels, protowire.VarintType), 16),
		"known field, other type":    protowire.AppendVarint(tag(fProtocol, protowire.VarintType), 1),
	} {
		t.Run(name, func(t *testing.T) {
			if err := proto.Unmarshal(b, new(flowpb.Flow)); err != nil {
				t.Fatalf("proto.Unmarshal rejects it too (%v): not a difference, move it to TestDecodeErrors", err)
			}
			var f schema.Flow
			if err := Decode(b, &f); !errors.Is(err, ErrDecode) {
				t.Fatalf("Decode(%x) = %v, want ErrDecode", b, err)
			}
		})
	}
}

// TestDecodeLenienterThanProtobuf pins the one input Decode accepts and
// proto.Unmarshal rejects, listed in codec.go's doc: invalid UTF-8 in a
// string field (proto3 string fields must be UTF-8). Encode replaces
// invalid sequences with U+FFFD, so our own records are always readable by
// generated code; Decode keeps another producer's bytes as they are.
//
// When Decode gets stricter, a case fails here: delete it, and its line in
// the codec doc.
func TestDecodeLenienterThanProtobuf(t *testing.T) {
	for name, c := range map[string]struct {
		b    []byte
		want string
	}{
		"invalid UTF-8": {protowire.AppendString(protowire.AppendTag(nil, fServerName, protowire.BytesType), "bad\xff.example"), "invalid UTF-8"},
	} {
		t.Run(name, func(t *testing.T) {
			var f schema.Flow
			if err := Decode(c.b, &f); err != nil {
				t.Fatalf("Decode rejects it now (%v): remove the case here and in codec.go's doc", err)
			}
			if err := proto.Unmarshal(c.b, new(flowpb.Flow)); err == nil {
				t.Fatal("proto.Unmarshal accepts it now: remove the case here and in codec.go's doc")
			}
			if got := protobufStricter(c.b); !strings.Contains(got, c.want) {
				t.Fatalf("protobufStricter = %q, want %q", got, c.want)
			}
		})
	}
	// Encode repairs invalid UTF-8, and the record then reads with
	// generated code too.
	f := schema.Flow{ServerName: "bad\xff.example"}
	b := Encode(nil, &f)
	var got schema.Flow
	if err := Decode(b, &got); err != nil || got.ServerName != "bad\uFFFD.example" {
		t.Fatalf("Decode(Encode(f)) = %q, %v; want the invalid byte replaced by U+FFFD", got.ServerName, err)
	}
	if err := proto.Unmarshal(b, new(flowpb.Flow)); err != nil {
		t.Fatalf("generated code rejects what Encode wrote: %v", err)
	}
}

// protobufStricter says why proto.Unmarshal may reject b where Decode
// accepts it (TestDecodeLenienterThanProtobuf), "" when it should not.
func protobufStricter(b []byte) string {
	md := flowDescriptor()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b) // not SizeTag(num): a tag may be overlong
		if n < 0 {
			return ""
		}
		if num > protowire.MaxValidNumber {
			return fmt.Sprintf("field number %d above 2^29-1", num)
		}
		b = b[n:]
		if fd := md.Fields().ByNumber(num); fd != nil && fd.Kind() == protoreflect.StringKind && typ == protowire.BytesType {
			if v, _ := protowire.ConsumeBytes(b); !utf8.Valid(v) {
				return fmt.Sprintf("invalid UTF-8 in %s", fd.Name())
			}
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return ""
		}
		b = b[n:]
	}
	return ""
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

// BenchmarkEncodeProtobuf is BenchmarkEncode's record through the
// generated code, for docs/architecture.md's comparison.
func BenchmarkEncodeProtobuf(b *testing.B) {
	f := fullFlow()
	pb := flowToPB(flowFields(b), &f)
	buf := make([]byte, 0, 512)
	opts := proto.MarshalOptions{}
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = opts.MarshalAppend(buf[:0], pb); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkDecodeProtobuf is BenchmarkDecode's record through the
// generated code, unmarshalled into one reused message.
func BenchmarkDecodeProtobuf(b *testing.B) {
	f := fullFlow()
	buf := Encode(nil, &f)
	pb := new(flowpb.Flow)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if err := proto.Unmarshal(buf, pb); err != nil {
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
		// the same record, but for invalid UTF-8, which Encode repairs.
		var again schema.Flow
		if err := Decode(Encode(nil, &got), &again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		// Every string field (reflection: a new one is covered too).
		v := reflect.ValueOf(&got).Elem()
		for i := range v.NumField() {
			if fv := v.Field(i); fv.Kind() == reflect.String {
				fv.SetString(strings.ToValidUTF8(fv.String(), "\uFFFD"))
			}
		}
		if !reflect.DeepEqual(got, again) {
			t.Fatalf("re-encode changed the record:\n%+v\n%+v", got, again)
		}
	})
}

// FuzzDecodeMatchesProtobuf is differential test (c): whatever Decode
// accepts, proto.Unmarshal accepts too and reads as the same values, but
// for the two inputs of TestDecodeLenienterThanProtobuf. The reverse does
// not hold on purpose (TestDecodeStricterThanProtobuf).
func FuzzDecodeMatchesProtobuf(f *testing.F) {
	fields := flowFields(f)
	tag := func(b []byte, n protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(b, n, typ) }
	for _, fl := range differentialFlows() {
		f.Add(Encode(nil, &fl))
	}
	unknown := protowire.AppendVarint(tag(nil, 1000, protowire.VarintType), 5)
	unknown = protowire.AppendBytes(tag(unknown, 1001, protowire.BytesType), []byte("future"))
	unknown = protowire.AppendFixed32(tag(unknown, 1002, protowire.Fixed32Type), 5)
	unknown = tag(tag(unknown, 1003, protowire.StartGroupType), 1003, protowire.EndGroupType)
	f.Add(unknown)
	// Repeated scalars (last wins) and two packed label chunks (appended).
	twice := protowire.AppendVarint(tag(nil, fSrcPort, protowire.VarintType), 1)
	twice = protowire.AppendVarint(tag(twice, fSrcPort, protowire.VarintType), 2)
	twice = protowire.AppendBytes(tag(twice, fMPLSLabels, protowire.BytesType), []byte{1, 2})
	twice = protowire.AppendBytes(tag(twice, fMPLSLabels, protowire.BytesType), []byte{3})
	twice = protowire.AppendString(tag(twice, fProtocol, protowire.BytesType), "a")
	twice = protowire.AppendString(tag(twice, fProtocol, protowire.BytesType), "b")
	f.Add(twice)
	f.Add(protowire.AppendString(tag(nil, fDNSQuery, protowire.BytesType), "\xff"))
	// The same behind an overlong (two-byte) tag for app_category.
	f.Add([]byte("\xf2\x00\x10000000000000\xff000"))
	f.Add(protowire.AppendVarint(tag(nil, protowire.MaxValidNumber+1, protowire.VarintType), 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got schema.Flow
		if err := Decode(b, &got); err != nil {
			return
		}
		pb := new(flowpb.Flow)
		if err := proto.Unmarshal(b, pb); err != nil {
			if protobufStricter(b) != "" {
				return
			}
			t.Fatalf("Decode accepts %x, proto.Unmarshal does not: %v", b, err)
		}
		pb.ProtoReflect().SetUnknown(nil) // Decode skips them too
		if want := flowToPB(fields, &got); !proto.Equal(pb, want) {
			t.Fatalf("%x: Decode and proto.Unmarshal differ (got: Decode):%s", b, pbDiff(want, pb))
		}
	})
}
