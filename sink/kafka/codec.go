package kafka

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"flowlens/schema"
)

// Field numbers of the Flow message. They are the wire contract with the
// lander and with consumers, declared in schema/flow.proto (message
// flowlens.flow.Flow); a number is never reused, a removed field is
// reserved there. The tests hold this codec to the code protoc generates
// from it (schema/flowpb): TestProtoListsEveryField for numbers and wire
// types, TestProtoHasEveryFlowField for schema.Flow's fields, and the
// differential tests against proto.Marshal and proto.Unmarshal.
const (
	fTimeReceived        protowire.Number = 1
	fFlowStartMs         protowire.Number = 2
	fFlowEndMs           protowire.Number = 3
	fSource              protowire.Number = 4
	fExporterAddr        protowire.Number = 5
	fObservationDomainID protowire.Number = 6
	fSamplerID           protowire.Number = 7
	fSamplingRate        protowire.Number = 8
	fSamplingSource      protowire.Number = 9
	fBytes               protowire.Number = 10
	fPackets             protowire.Number = 11
	fProtocol            protowire.Number = 12
	fProtocolConfidence  protowire.Number = 13
	fAppCategory         protowire.Number = 14
	fServerName          protowire.Number = 15
	fDNSQuery            protowire.Number = 16
	fEType               protowire.Number = 17
	fSrcAddr             protowire.Number = 18
	fDstAddr             protowire.Number = 19
	fSrcPort             protowire.Number = 20
	fDstPort             protowire.Number = 21
	fIPProtocol          protowire.Number = 22
	fTCPFlags            protowire.Number = 23
	fIPTos               protowire.Number = 24
	fIPTTL               protowire.Number = 25
	fICMPType            protowire.Number = 26
	fICMPCode            protowire.Number = 27
	fSrcMask             protowire.Number = 28
	fDstMask             protowire.Number = 29
	fNextHop             protowire.Number = 30
	fInIf                protowire.Number = 31
	fOutIf               protowire.Number = 32
	fSrcAS               protowire.Number = 33
	fDstAS               protowire.Number = 34
	fSrcVlan             protowire.Number = 35
	fDstVlan             protowire.Number = 36
	fSrcMAC              protowire.Number = 37
	fDstMAC              protowire.Number = 38
	fDirection           protowire.Number = 39
	fForwardingStatus    protowire.Number = 40
	fMPLSLabels          protowire.Number = 41
	fPostNATSrcAddr      protowire.Number = 42
	fPostNATDstAddr      protowire.Number = 43
	fPostNATSrcPort      protowire.Number = 44
	fPostNATDstPort      protowire.Number = 45
	fDNSQType            protowire.Number = 46
	fDNSRCode            protowire.Number = 47
	fDNSAnswered         protowire.Number = 48
	fSrcPool             protowire.Number = 49
	fDstPool             protowire.Number = 50
	fSrcCountry          protowire.Number = 51
	fDstCountry          protowire.Number = 52
	fSrcASName           protowire.Number = 53
	fDstASName           protowire.Number = 54

	// fLast is the highest field number this build knows: above it a field
	// is skipped (a newer producer), at or below it a wrong type is an error.
	fLast = fDstASName
)

// ErrDecode is wrapped by every error Decode returns.
var ErrDecode = errors.New("decode flow")

func appendUint(b []byte, n protowire.Number, v uint64) []byte {
	if v == 0 { // proto3: zero values are not sent
		return b
	}
	b = protowire.AppendTag(b, n, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendInt(b []byte, n protowire.Number, v int64) []byte {
	return appendUint(b, n, uint64(v)) // proto int64: two's complement varint
}

// appendString writes s, with invalid UTF-8 replaced by U+FFFD: proto3
// string fields must be UTF-8, and a consumer using generated code rejects
// the whole record otherwise. Exporters' strings (application names, DNS
// names) are not trusted to be valid.
func appendString(b []byte, n protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendAddr writes 4 bytes for IPv4, 16 for IPv6 and nothing for the zero
// Addr. Zones are not carried: flow addresses never have one.
func appendAddr(b []byte, n protowire.Number, a netip.Addr) []byte {
	switch {
	case a.Is4():
		v := a.As4()
		b = protowire.AppendTag(b, n, protowire.BytesType)
		b = protowire.AppendVarint(b, 4)
		return append(b, v[:]...)
	case a.Is6():
		v := a.As16()
		b = protowire.AppendTag(b, n, protowire.BytesType)
		b = protowire.AppendVarint(b, 16)
		return append(b, v[:]...)
	}
	return b
}

// Encode appends the protobuf encoding of f (message flowlens.flow.Flow in
// schema/flow.proto) to b, in the canonical proto3 form: fields in number
// order, zero values omitted, labels packed. It does not allocate when b
// has room.
// Strings are written as they are: one that is not valid UTF-8 makes the
// record unreadable by generated proto3 code (the decoders store printable
// ASCII only).
func Encode(b []byte, f *schema.Flow) []byte {
	b = appendUint(b, fTimeReceived, uint64(f.TimeReceived))
	b = appendInt(b, fFlowStartMs, f.FlowStartMs)
	b = appendInt(b, fFlowEndMs, f.FlowEndMs)
	b = appendUint(b, fSource, uint64(f.Source))
	b = appendAddr(b, fExporterAddr, f.ExporterAddr)
	b = appendUint(b, fObservationDomainID, uint64(f.ObservationDomainID))
	b = appendUint(b, fSamplerID, uint64(f.SamplerID))
	b = appendUint(b, fSamplingRate, uint64(f.SamplingRate))
	b = appendUint(b, fSamplingSource, uint64(f.SamplingSource))
	b = appendUint(b, fBytes, f.Bytes)
	b = appendUint(b, fPackets, f.Packets)
	b = appendString(b, fProtocol, f.Protocol)
	b = appendUint(b, fProtocolConfidence, uint64(f.ProtocolConfidence))
	b = appendString(b, fAppCategory, f.AppCategory)
	b = appendString(b, fServerName, f.ServerName)
	b = appendString(b, fDNSQuery, f.DNSQuery)
	b = appendUint(b, fEType, uint64(f.EType))
	b = appendAddr(b, fSrcAddr, f.SrcAddr)
	b = appendAddr(b, fDstAddr, f.DstAddr)
	b = appendUint(b, fSrcPort, uint64(f.SrcPort))
	b = appendUint(b, fDstPort, uint64(f.DstPort))
	b = appendUint(b, fIPProtocol, uint64(f.IPProtocol))
	b = appendUint(b, fTCPFlags, uint64(f.TCPFlags))
	b = appendUint(b, fIPTos, uint64(f.IPTos))
	b = appendUint(b, fIPTTL, uint64(f.IPTTL))
	b = appendUint(b, fICMPType, uint64(f.ICMPType))
	b = appendUint(b, fICMPCode, uint64(f.ICMPCode))
	b = appendUint(b, fSrcMask, uint64(f.SrcMask))
	b = appendUint(b, fDstMask, uint64(f.DstMask))
	b = appendAddr(b, fNextHop, f.NextHop)
	b = appendUint(b, fInIf, uint64(f.InIf))
	b = appendUint(b, fOutIf, uint64(f.OutIf))
	b = appendUint(b, fSrcAS, uint64(f.SrcAS))
	b = appendUint(b, fDstAS, uint64(f.DstAS))
	b = appendUint(b, fSrcVlan, uint64(f.SrcVlan))
	b = appendUint(b, fDstVlan, uint64(f.DstVlan))
	b = appendUint(b, fSrcMAC, f.SrcMAC)
	b = appendUint(b, fDstMAC, f.DstMAC)
	b = appendUint(b, fDirection, uint64(f.Direction))
	b = appendUint(b, fForwardingStatus, uint64(f.ForwardingStatus))
	if n := min(int(f.MPLSLabelsLen), schema.MaxMPLSLabels); n > 0 {
		size := 0
		for _, l := range f.MPLSLabels[:n] {
			size += protowire.SizeVarint(uint64(l))
		}
		b = protowire.AppendTag(b, fMPLSLabels, protowire.BytesType) // packed
		b = protowire.AppendVarint(b, uint64(size))
		for _, l := range f.MPLSLabels[:n] {
			b = protowire.AppendVarint(b, uint64(l))
		}
	}
	b = appendAddr(b, fPostNATSrcAddr, f.PostNATSrcAddr)
	b = appendAddr(b, fPostNATDstAddr, f.PostNATDstAddr)
	b = appendUint(b, fPostNATSrcPort, uint64(f.PostNATSrcPort))
	b = appendUint(b, fPostNATDstPort, uint64(f.PostNATDstPort))
	b = appendUint(b, fDNSQType, uint64(f.DNSQType))
	b = appendUint(b, fDNSRCode, uint64(f.DNSRCode))
	if f.DNSAnswered {
		b = appendUint(b, fDNSAnswered, 1)
	}
	b = appendString(b, fSrcPool, f.SrcPool)
	b = appendString(b, fDstPool, f.DstPool)
	b = appendString(b, fSrcCountry, f.SrcCountry)
	b = appendString(b, fDstCountry, f.DstCountry)
	b = appendString(b, fSrcASName, f.SrcASName)
	b = appendString(b, fDstASName, f.DstASName)
	return b
}

func decodeErr(n protowire.Number, format string, args ...any) error {
	return fmt.Errorf("%w: field %d: %s", ErrDecode, n, fmt.Sprintf(format, args...))
}

func fits(n protowire.Number, v uint64, bits uint) error {
	if bits < 64 && v>>bits != 0 {
		return decodeErr(n, "value %d overflows %d bits", v, bits)
	}
	return nil
}

// Decode resets f and fills it from one encoded record. Unknown fields are
// skipped so that a newer collector can add fields before landers know
// them; values too wide for their Go field are an error, never truncated.
// Strings are copied out of b.
//
// Decode is deliberately stricter than proto.Unmarshal into flowpb.Flow,
// which accepts what schema.Flow cannot hold: integers wider than the Go
// field (a uint32 port above 65535), addresses of other than 4 or 16
// bytes, more than schema.MaxMPLSLabels labels, unpacked labels, and a
// known field with another wire type (which it keeps as unknown), and
// field numbers above 2^29-1. It is more lenient in one way: it does not
// check that strings are UTF-8 (Encode never writes invalid UTF-8; a
// lander keeps what another producer sent rather than drop the flow).
// TestDecodeStricterThanProtobuf and TestDecodeLenienterThanProtobuf list
// the cases; FuzzDecodeMatchesProtobuf checks there are no others.
func Decode(b []byte, f *schema.Flow) error {
	f.Reset()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: tag: %w", ErrDecode, protowire.ParseError(n))
		}
		if !num.IsValid() {
			return fmt.Errorf("%w: field number %d out of range", ErrDecode, num)
		}
		b = b[n:]
		var err error
		switch typ {
		case protowire.VarintType:
			var v uint64
			if v, n = protowire.ConsumeVarint(b); n >= 0 {
				err = setVarint(f, num, v)
			}
		case protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				err = setBytes(f, num, v)
			}
		default:
			if num <= fLast {
				return decodeErr(num, "unexpected wire type %d", typ)
			}
			err = errUnknown
		}
		if errors.Is(err, errUnknown) {
			// A field this build does not know: skip it whatever its type.
			n, err = protowire.ConsumeFieldValue(num, typ, b), nil
		}
		if err != nil {
			return err
		}
		if n < 0 {
			return decodeErr(num, "%v", protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}

var errUnknown = errors.New("unknown field")

func setVarint(f *schema.Flow, num protowire.Number, v uint64) error {
	var bits uint = 64
	switch num {
	case fTimeReceived, fObservationDomainID, fSamplerID, fSamplingRate,
		fInIf, fOutIf, fSrcAS, fDstAS:
		bits = 32
	case fSource, fSamplingSource, fProtocolConfidence, fIPProtocol, fTCPFlags, fIPTos,
		fIPTTL, fICMPType, fICMPCode, fSrcMask, fDstMask, fDirection, fForwardingStatus, fDNSRCode:
		bits = 8
	case fEType, fSrcPort, fDstPort, fSrcVlan, fDstVlan, fPostNATSrcPort, fPostNATDstPort, fDNSQType:
		bits = 16
	case fDNSAnswered:
		bits = 1
	case fFlowStartMs, fFlowEndMs, fBytes, fPackets, fSrcMAC, fDstMAC:
	default:
		if num <= fLast {
			return decodeErr(num, "unexpected varint")
		}
		return errUnknown
	}
	if err := fits(num, v, bits); err != nil {
		return err
	}
	switch num {
	case fTimeReceived:
		f.TimeReceived = uint32(v)
	case fFlowStartMs:
		f.FlowStartMs = int64(v)
	case fFlowEndMs:
		f.FlowEndMs = int64(v)
	case fSource:
		f.Source = schema.Source(v)
	case fObservationDomainID:
		f.ObservationDomainID = uint32(v)
	case fSamplerID:
		f.SamplerID = uint32(v)
	case fSamplingRate:
		f.SamplingRate = uint32(v)
	case fSamplingSource:
		f.SamplingSource = schema.SamplingSource(v)
	case fBytes:
		f.Bytes = v
	case fPackets:
		f.Packets = v
	case fProtocolConfidence:
		f.ProtocolConfidence = schema.Confidence(v)
	case fEType:
		f.EType = uint16(v)
	case fSrcPort:
		f.SrcPort = uint16(v)
	case fDstPort:
		f.DstPort = uint16(v)
	case fIPProtocol:
		f.IPProtocol = uint8(v)
	case fTCPFlags:
		f.TCPFlags = uint8(v)
	case fIPTos:
		f.IPTos = uint8(v)
	case fIPTTL:
		f.IPTTL = uint8(v)
	case fICMPType:
		f.ICMPType = uint8(v)
	case fICMPCode:
		f.ICMPCode = uint8(v)
	case fSrcMask:
		f.SrcMask = uint8(v)
	case fDstMask:
		f.DstMask = uint8(v)
	case fInIf:
		f.InIf = uint32(v)
	case fOutIf:
		f.OutIf = uint32(v)
	case fSrcAS:
		f.SrcAS = uint32(v)
	case fDstAS:
		f.DstAS = uint32(v)
	case fSrcVlan:
		f.SrcVlan = uint16(v)
	case fDstVlan:
		f.DstVlan = uint16(v)
	case fSrcMAC:
		f.SrcMAC = v
	case fDstMAC:
		f.DstMAC = v
	case fDirection:
		f.Direction = schema.Direction(v)
	case fForwardingStatus:
		f.ForwardingStatus = uint8(v)
	case fPostNATSrcPort:
		f.PostNATSrcPort = uint16(v)
	case fPostNATDstPort:
		f.PostNATDstPort = uint16(v)
	case fDNSQType:
		f.DNSQType = uint16(v)
	case fDNSRCode:
		f.DNSRCode = uint8(v)
	case fDNSAnswered:
		f.DNSAnswered = v == 1
	}
	return nil
}

func decodeAddr(num protowire.Number, v []byte) (netip.Addr, error) {
	switch len(v) {
	case 4:
		return netip.AddrFrom4([4]byte(v)), nil
	case 16:
		return netip.AddrFrom16([16]byte(v)), nil
	}
	return netip.Addr{}, decodeErr(num, "address of %d bytes", len(v))
}

func setBytes(f *schema.Flow, num protowire.Number, v []byte) error {
	var err error
	switch num {
	case fExporterAddr:
		f.ExporterAddr, err = decodeAddr(num, v)
	case fSrcAddr:
		f.SrcAddr, err = decodeAddr(num, v)
	case fDstAddr:
		f.DstAddr, err = decodeAddr(num, v)
	case fNextHop:
		f.NextHop, err = decodeAddr(num, v)
	case fPostNATSrcAddr:
		f.PostNATSrcAddr, err = decodeAddr(num, v)
	case fPostNATDstAddr:
		f.PostNATDstAddr, err = decodeAddr(num, v)
	case fProtocol:
		f.Protocol = string(v)
	case fAppCategory:
		f.AppCategory = string(v)
	case fServerName:
		f.ServerName = string(v)
	case fDNSQuery:
		f.DNSQuery = string(v)
	case fSrcPool:
		f.SrcPool = string(v)
	case fDstPool:
		f.DstPool = string(v)
	case fSrcCountry:
		f.SrcCountry = string(v)
	case fDstCountry:
		f.DstCountry = string(v)
	case fSrcASName:
		f.SrcASName = string(v)
	case fDstASName:
		f.DstASName = string(v)
	case fMPLSLabels:
		for len(v) > 0 {
			l, n := protowire.ConsumeVarint(v)
			if n < 0 {
				return decodeErr(num, "%v", protowire.ParseError(n))
			}
			if err := fits(num, l, 32); err != nil {
				return err
			}
			if f.MPLSLabelsLen >= schema.MaxMPLSLabels {
				return decodeErr(num, "more than %d labels", schema.MaxMPLSLabels)
			}
			f.MPLSLabels[f.MPLSLabelsLen] = uint32(l)
			f.MPLSLabelsLen++
			v = v[n:]
		}
	default:
		if num <= fLast {
			return decodeErr(num, "unexpected length-delimited value")
		}
		return errUnknown
	}
	return err
}
