package schema

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/ClickHouse/ch-go/proto"
)

// Column is one column of the flows table. The list in Columns is the single
// source of truth: the DDL, the Native batches, `flowlens decode` JSON and
// docs/schema.md are all derived from it.
type Column struct {
	Name  string
	Type  string // ClickHouse type
	Codec string // CODEC(...) clause body, empty for the default
	Doc   string
	Since int // schema version that added the column (see migrations.go)

	// bind creates the column's Native builder and returns the function that
	// appends one Flow to it. Called once per Batch, never per row.
	bind func() (proto.ColInput, func(*Flow))
	// json appends the column's value for f (no key) to dst.
	json func(dst []byte, f *Flow) []byte
}

func u8(name, doc string, get func(*Flow) uint8) Column {
	return Column{Name: name, Type: "UInt8", Doc: doc, Since: 1,
		bind: func() (proto.ColInput, func(*Flow)) {
			c := new(proto.ColUInt8)
			return c, func(f *Flow) { c.Append(get(f)) }
		},
		json: func(dst []byte, f *Flow) []byte { return strconv.AppendUint(dst, uint64(get(f)), 10) }}
}

func u16(name, doc string, get func(*Flow) uint16) Column {
	return Column{Name: name, Type: "UInt16", Doc: doc, Since: 1,
		bind: func() (proto.ColInput, func(*Flow)) {
			c := new(proto.ColUInt16)
			return c, func(f *Flow) { c.Append(get(f)) }
		},
		json: func(dst []byte, f *Flow) []byte { return strconv.AppendUint(dst, uint64(get(f)), 10) }}
}

func u32(name, doc string, get func(*Flow) uint32) Column {
	return Column{Name: name, Type: "UInt32", Doc: doc, Since: 1,
		bind: func() (proto.ColInput, func(*Flow)) {
			c := new(proto.ColUInt32)
			return c, func(f *Flow) { c.Append(get(f)) }
		},
		json: func(dst []byte, f *Flow) []byte { return strconv.AppendUint(dst, uint64(get(f)), 10) }}
}

func u64(name, codec, doc string, get func(*Flow) uint64) Column {
	return Column{Name: name, Type: "UInt64", Codec: codec, Doc: doc, Since: 1,
		bind: func() (proto.ColInput, func(*Flow)) {
			c := new(proto.ColUInt64)
			return c, func(f *Flow) { c.Append(get(f)) }
		},
		json: func(dst []byte, f *Flow) []byte { return strconv.AppendUint(dst, get(f), 10) }}
}

func lcString(name, doc string, get func(*Flow) string) Column {
	return Column{Name: name, Type: "LowCardinality(String)", Doc: doc, Since: 1,
		bind: func() (proto.ColInput, func(*Flow)) {
			c := proto.NewLowCardinality[string](new(proto.ColStr))
			return c, func(f *Flow) { c.Append(get(f)) }
		},
		json: func(dst []byte, f *Flow) []byte { return strconv.AppendQuote(dst, get(f)) }}
}

// addr stores IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d); the zero Addr as ::.
func addr(name, doc string, get func(*Flow) netip.Addr) Column {
	return Column{Name: name, Type: "IPv6", Doc: doc, Since: 1,
		bind: func() (proto.ColInput, func(*Flow)) {
			c := new(proto.ColIPv6)
			return c, func(f *Flow) { c.Append(AddrTo16(get(f))) }
		},
		json: func(dst []byte, f *Flow) []byte {
			a := get(f)
			if !a.IsValid() {
				return append(dst, `"::"`...)
			}
			dst = append(dst, '"')
			dst = a.Unmap().AppendTo(dst)
			return append(dst, '"')
		}}
}

func ms(name, doc string, get func(*Flow) int64) Column {
	return Column{Name: name, Type: "DateTime64(3)", Codec: "DoubleDelta, LZ4", Doc: doc, Since: 1,
		bind: func() (proto.ColInput, func(*Flow)) {
			c := new(proto.ColDateTime64).WithPrecision(proto.PrecisionMilli)
			return c, func(f *Flow) { c.AppendRaw(proto.DateTime64(get(f))) }
		},
		json: func(dst []byte, f *Flow) []byte {
			dst = append(dst, '"')
			dst = time.UnixMilli(get(f)).UTC().AppendFormat(dst, "2006-01-02 15:04:05.000")
			return append(dst, '"')
		}}
}

// AddrTo16 returns the 16-byte form stored in IPv6 columns.
func AddrTo16(a netip.Addr) [16]byte {
	if !a.IsValid() {
		return [16]byte{}
	}
	return a.As16()
}

// Columns lists the flows table's columns in table order.
var Columns = []Column{
	{Name: "timestamp", Type: "DateTime", Codec: "DoubleDelta, LZ4", Since: 1,
		Doc: "When the collector received the record (collector clock, never in the future). Use it for time ranges.",
		bind: func() (proto.ColInput, func(*Flow)) {
			c := new(proto.ColDateTime)
			return c, func(f *Flow) { c.AppendRaw(proto.DateTime(f.TimeReceived)) }
		},
		json: func(dst []byte, f *Flow) []byte {
			dst = append(dst, '"')
			dst = time.Unix(int64(f.TimeReceived), 0).UTC().AppendFormat(dst, "2006-01-02 15:04:05")
			return append(dst, '"')
		}},
	ms("flow_start", "Absolute start of the flow as the exporter reported it (NetFlow v9 sysUptime-relative times converted, IPFIX 150-157); 1970 when unknown.", func(f *Flow) int64 { return f.FlowStartMs }),
	ms("flow_end", "Absolute end of the flow (last packet); 1970 when unknown.", func(f *Flow) int64 { return f.FlowEndMs }),
	lcString("flow_source", "Kind of source: netflow_v5, netflow_v9, ipfix, sflow_v5 or sensor.", func(f *Flow) string { return f.Source.String() }),
	addr("exporter_address", "Address the export datagram came from (IPv4 mapped into IPv6).", func(f *Flow) netip.Addr { return f.ExporterAddr }),
	u32("observation_domain_id", "IPFIX observation domain, NetFlow v9 source id, sFlow sub-agent id; 0 for NetFlow v5.", func(f *Flow) uint32 { return f.ObservationDomainID }),
	u32("sampler_id", "Sampler (selector) id that sampled this flow, 0 when not reported.", func(f *Flow) uint32 { return f.SamplerID }),
	u32("sampling_rate", "1-in-N packet sampling rate applied by the exporter; 1 when unsampled or unknown.", func(f *Flow) uint32 { return f.SamplingRate }),
	lcString("protocol", "Application label (nDPI names: DNS, TLS.YouTube, ...); Unknown when no source gave one.", func(f *Flow) string { return f.Protocol }),
	lcString("protocol_confidence", "Where protocol came from: dpi (our sensor), exporter (application field sent by the exporter), port (well-known port guess), none.", func(f *Flow) string { return f.ProtocolConfidence.String() }),
	u64("bytes", "T64, LZ4", "Estimated real bytes: raw counter x sampling_rate.", func(f *Flow) uint64 { return f.Bytes }),
	u64("packets", "T64, LZ4", "Estimated real packets: raw counter x sampling_rate.", func(f *Flow) uint64 { return f.Packets }),
	u16("etype", "Ethernet type of the flow: 2048 (IPv4), 34525 (IPv6), 0 unknown.", func(f *Flow) uint16 { return f.EType }),
	addr("src_addr", "Source address (IPv4 mapped into IPv6).", func(f *Flow) netip.Addr { return f.SrcAddr }),
	addr("dst_addr", "Destination address (IPv4 mapped into IPv6).", func(f *Flow) netip.Addr { return f.DstAddr }),
	u16("src_port", "Source transport port.", func(f *Flow) uint16 { return f.SrcPort }),
	u16("dst_port", "Destination transport port.", func(f *Flow) uint16 { return f.DstPort }),
	u8("ip_protocol", "IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...).", func(f *Flow) uint8 { return f.IPProtocol }),
	u8("tcp_flags", "OR of the TCP flags seen in the flow.", func(f *Flow) uint8 { return f.TCPFlags }),
	u8("ip_tos", "IP type of service / traffic class byte (DSCP << 2 | ECN).", func(f *Flow) uint8 { return f.IPTos }),
	u8("ip_ttl", "IP TTL / hop limit, when reported.", func(f *Flow) uint8 { return f.IPTTL }),
	u8("icmp_type", "ICMP or ICMPv6 type.", func(f *Flow) uint8 { return f.ICMPType }),
	u8("icmp_code", "ICMP or ICMPv6 code.", func(f *Flow) uint8 { return f.ICMPCode }),
	u8("src_mask", "Source prefix length from the exporter's routing table.", func(f *Flow) uint8 { return f.SrcMask }),
	u8("dst_mask", "Destination prefix length from the exporter's routing table.", func(f *Flow) uint8 { return f.DstMask }),
	addr("next_hop", "IP or BGP next hop reported by the exporter.", func(f *Flow) netip.Addr { return f.NextHop }),
	u32("in_if", "Input interface SNMP index.", func(f *Flow) uint32 { return f.InIf }),
	u32("out_if", "Output interface SNMP index.", func(f *Flow) uint32 { return f.OutIf }),
	u32("src_as", "Source AS number, as the exporter reported it.", func(f *Flow) uint32 { return f.SrcAS }),
	u32("dst_as", "Destination AS number, as the exporter reported it.", func(f *Flow) uint32 { return f.DstAS }),
	u16("vlan", "VLAN id on the input side (dot1q / source VLAN).", func(f *Flow) uint16 { return f.SrcVlan }),
	u16("dst_vlan", "VLAN id on the output side, when reported.", func(f *Flow) uint16 { return f.DstVlan }),
	u64("src_mac", "", "Source MAC address as a number (use MACNumToString).", func(f *Flow) uint64 { return f.SrcMAC }),
	u64("dst_mac", "", "Destination MAC address as a number (use MACNumToString).", func(f *Flow) uint64 { return f.DstMAC }),
	lcString("direction", "Flow direction as the exporter reported it: ingress, egress or undefined.", func(f *Flow) string { return f.Direction.String() }),
	u8("forwarding_status", "IPFIX forwardingStatus (89): top two bits 1 forwarded, 2 dropped, 3 consumed; 0 unknown.", func(f *Flow) uint8 { return f.ForwardingStatus }),
	{Name: "mpls_labels", Type: "Array(UInt32)", Since: 1, Doc: "MPLS label stack (20-bit labels, outermost first).",
		bind: func() (proto.ColInput, func(*Flow)) {
			c := proto.NewArray[uint32](new(proto.ColUInt32))
			return c, func(f *Flow) { c.Append(f.Labels()) }
		},
		json: func(dst []byte, f *Flow) []byte {
			dst = append(dst, '[')
			for i, l := range f.Labels() {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = strconv.AppendUint(dst, uint64(l), 10)
			}
			return append(dst, ']')
		}},
	addr("post_nat_src_addr", "Source address after NAT (IPFIX 225/281), :: when absent.", func(f *Flow) netip.Addr { return f.PostNATSrcAddr }),
	addr("post_nat_dst_addr", "Destination address after NAT (IPFIX 226/282), :: when absent.", func(f *Flow) netip.Addr { return f.PostNATDstAddr }),
	u16("post_nat_src_port", "Source port after NAT (IPFIX 227).", func(f *Flow) uint16 { return f.PostNATSrcPort }),
	u16("post_nat_dst_port", "Destination port after NAT (IPFIX 228).", func(f *Flow) uint16 { return f.PostNATDstPort }),
}

// AppendJSON appends f as one JSON object whose keys are the column names,
// in table order, IPv4 addresses dotted.
func AppendJSON(dst []byte, f *Flow) []byte {
	dst = append(dst, '{')
	for i := range Columns {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, Columns[i].Name...)
		dst = append(dst, '"', ':')
		dst = Columns[i].json(dst, f)
	}
	return append(dst, '}')
}
