package schema

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/ClickHouse/ch-go/proto"
)

// ColumnOf is one column of a table whose rows are T. A table's column list
// is the single source of truth: the DDL, the Native batches, `flowlens
// decode` JSON and docs/schema.md are all derived from it.
type ColumnOf[T any] struct {
	Name  string
	Type  string // ClickHouse type
	Codec string // CODEC(...) clause body, empty for the default
	Doc   string
	Since int // schema version that added the column (see migrations.go)

	// bind creates the column's Native builder and returns the function that
	// appends one Flow to it. Called once per Batch, never per row.
	bind func() (proto.ColInput, func(*T))
	// json appends the column's value for f (no key) to dst.
	json func(dst []byte, f *T) []byte
}

// Column is a column of the flows table.
type Column = ColumnOf[Flow]

func u8[T any](name, doc string, get func(*T) uint8) ColumnOf[T] {
	return ColumnOf[T]{Name: name, Type: "UInt8", Doc: doc, Since: 1,
		bind: func() (proto.ColInput, func(*T)) {
			c := new(proto.ColUInt8)
			return c, func(f *T) { c.Append(get(f)) }
		},
		json: func(dst []byte, f *T) []byte { return strconv.AppendUint(dst, uint64(get(f)), 10) }}
}

func u16[T any](name, doc string, get func(*T) uint16) ColumnOf[T] {
	return ColumnOf[T]{Name: name, Type: "UInt16", Doc: doc, Since: 1,
		bind: func() (proto.ColInput, func(*T)) {
			c := new(proto.ColUInt16)
			return c, func(f *T) { c.Append(get(f)) }
		},
		json: func(dst []byte, f *T) []byte { return strconv.AppendUint(dst, uint64(get(f)), 10) }}
}

func u32[T any](name, doc string, get func(*T) uint32) ColumnOf[T] {
	return ColumnOf[T]{Name: name, Type: "UInt32", Doc: doc, Since: 1,
		bind: func() (proto.ColInput, func(*T)) {
			c := new(proto.ColUInt32)
			return c, func(f *T) { c.Append(get(f)) }
		},
		json: func(dst []byte, f *T) []byte { return strconv.AppendUint(dst, uint64(get(f)), 10) }}
}

func u64[T any](name, codec, doc string, get func(*T) uint64) ColumnOf[T] {
	return ColumnOf[T]{Name: name, Type: "UInt64", Codec: codec, Doc: doc, Since: 1,
		bind: func() (proto.ColInput, func(*T)) {
			c := new(proto.ColUInt64)
			return c, func(f *T) { c.Append(get(f)) }
		},
		json: func(dst []byte, f *T) []byte { return strconv.AppendUint(dst, get(f), 10) }}
}

func lcString[T any](name, doc string, get func(*T) string) ColumnOf[T] {
	return ColumnOf[T]{Name: name, Type: "LowCardinality(String)", Doc: doc, Since: 1,
		bind: func() (proto.ColInput, func(*T)) {
			c := proto.NewLowCardinality[string](new(proto.ColStr))
			return c, func(f *T) { c.Append(get(f)) }
		},
		json: func(dst []byte, f *T) []byte { return strconv.AppendQuote(dst, get(f)) }}
}

// addr stores IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d); the zero Addr as ::.
func addr[T any](name, doc string, get func(*T) netip.Addr) ColumnOf[T] {
	return ColumnOf[T]{Name: name, Type: "IPv6", Doc: doc, Since: 1,
		bind: func() (proto.ColInput, func(*T)) {
			c := new(proto.ColIPv6)
			return c, func(f *T) { c.Append(AddrTo16(get(f))) }
		},
		json: func(dst []byte, f *T) []byte {
			a := get(f)
			if !a.IsValid() {
				return append(dst, `"::"`...)
			}
			dst = append(dst, '"')
			dst = a.Unmap().AppendTo(dst)
			return append(dst, '"')
		}}
}

func ms[T any](name, doc string, get func(*T) int64) ColumnOf[T] {
	return ColumnOf[T]{Name: name, Type: "DateTime64(3)", Codec: "DoubleDelta, LZ4", Doc: doc, Since: 1,
		bind: func() (proto.ColInput, func(*T)) {
			c := new(proto.ColDateTime64).WithPrecision(proto.PrecisionMilli)
			return c, func(f *T) { c.AppendRaw(proto.DateTime64(get(f))) }
		},
		json: func(dst []byte, f *T) []byte {
			dst = append(dst, '"')
			dst = time.UnixMilli(get(f)).UTC().AppendFormat(dst, "2006-01-02 15:04:05.000")
			return append(dst, '"')
		}}
}

// dt is a DateTime column of unix seconds.
func dt[T any](name, doc string, get func(*T) uint32) ColumnOf[T] {
	return ColumnOf[T]{Name: name, Type: "DateTime", Codec: "DoubleDelta, LZ4", Doc: doc, Since: 1,
		bind: func() (proto.ColInput, func(*T)) {
			c := new(proto.ColDateTime)
			return c, func(f *T) { c.AppendRaw(proto.DateTime(get(f))) }
		},
		json: func(dst []byte, f *T) []byte {
			dst = append(dst, '"')
			dst = time.Unix(int64(get(f)), 0).UTC().AppendFormat(dst, "2006-01-02 15:04:05")
			return append(dst, '"')
		}}
}

// str is a String column, compressed harder: high-cardinality names.
func str[T any](name, doc string, get func(*T) string) ColumnOf[T] {
	return ColumnOf[T]{Name: name, Type: "String", Codec: "ZSTD(1)", Doc: doc, Since: 1,
		bind: func() (proto.ColInput, func(*T)) {
			c := new(proto.ColStr)
			return c, func(f *T) { c.Append(get(f)) }
		},
		json: func(dst []byte, f *T) []byte { return strconv.AppendQuote(dst, get(f)) }}
}

// since marks a column added by schema version v.
func since[T any](v int, c ColumnOf[T]) ColumnOf[T] {
	c.Since = v
	return c
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
	dt("timestamp", "When the collector received the record (collector clock, never in the future). Use it for time ranges.", func(f *Flow) uint32 { return f.TimeReceived }),
	ms("flow_start", "Absolute start of the flow as the exporter reported it (NetFlow v9 sysUptime-relative times converted, IPFIX 150-157); 1970 when unknown.", func(f *Flow) int64 { return f.FlowStartMs }),
	ms("flow_end", "Absolute end of the flow (last packet); 1970 when unknown.", func(f *Flow) int64 { return f.FlowEndMs }),
	lcString("flow_source", "Kind of source: netflow_v5, netflow_v9, ipfix, sflow_v5 or sensor.", func(f *Flow) string { return f.Source.String() }),
	addr("exporter_address", "Address the export datagram came from (IPv4 mapped into IPv6).", func(f *Flow) netip.Addr { return f.ExporterAddr }),
	u32("observation_domain_id", "IPFIX observation domain, NetFlow v9 source id, sFlow sub-agent id; 0 for NetFlow v5.", func(f *Flow) uint32 { return f.ObservationDomainID }),
	u32("sampler_id", "Sampler (selector) id that sampled this flow, 0 when not reported.", func(f *Flow) uint32 { return f.SamplerID }),
	u32("sampling_rate", "1-in-N packet sampling rate applied by the exporter; 1 when unsampled or unknown.", func(f *Flow) uint32 { return f.SamplingRate }),
	since(3, lcString("sampling_rate_source", "Where sampling_rate came from: header (v5, sFlow), in_record, options, config_default, config_override, none (exporter said nothing: 1), unknown (sampling announced, rate not known: 1, so volumes are under-estimated); empty on rows stored before schema version 3.", func(f *Flow) string { return f.SamplingSource.String() })),
	lcString("protocol", "Application label (nDPI names: DNS, TLS.YouTube, ...); Unknown when no source gave one.", func(f *Flow) string { return f.Protocol }),
	lcString("protocol_confidence", "Where protocol came from: dpi (payload inspection: our sensor, or an exporter saying so), dns_cache (server address seen in an earlier DNS answer), ip_list (server address in an application address list), exporter (application field sent by the exporter, no more said), port (well-known port guess), none.", func(f *Flow) string { return f.ProtocolConfidence.String() }),
	since(3, lcString("app_category", "Application category in nDPI's names (Streaming, Cloud, RemoteAccess, ...) from the exporter or the sensor; empty when unknown.", func(f *Flow) string { return f.AppCategory })),
	since(3, str("server_name", "TLS/QUIC server name (SNI) or HTTP Host, from the exporter (nProbe TLS_SERVER_NAME, ...) or the sensor; empty when unknown.", func(f *Flow) string { return f.ServerName })),
	since(3, str("dns_query", "DNS query name of a DNS flow, when the exporter or sensor reported it.", func(f *Flow) string { return f.DNSQuery })),
	since(5, lcString("dns_qtype", "Query type of that DNS question (A, AAAA, TXT, NULL, ...; TYPE<n> for others), from the sensor or an exporter's DNS_QUERY_TYPE; empty when unknown.", func(f *Flow) string { return DNSTypeName(f.DNSQType) })),
	since(5, lcString("dns_rcode", "Response code of the DNS answer (NOERROR, NXDOMAIN, SERVFAIL, ...); empty when no answer was seen.", func(f *Flow) string { return DNSRCodeName(f.DNSRCode, f.DNSAnswered) })),
	since(5, lcString("src_pool", "Host pool of the source address, from the policy file (FLOWLENS_POLICY_FILE; longest prefix wins); empty when none.", func(f *Flow) string { return f.SrcPool })),
	since(5, lcString("dst_pool", "Host pool of the destination address; empty when none.", func(f *Flow) string { return f.DstPool })),
	since(5, lcString("src_country", "Country of the source address (ISO 3166-1 alpha-2) from the GeoIP database; empty when unknown or not configured.", func(f *Flow) string { return f.SrcCountry })),
	since(5, lcString("dst_country", "Country of the destination address; empty when unknown.", func(f *Flow) string { return f.DstCountry })),
	since(5, lcString("src_as_name", "Organisation of src_as from the GeoIP ASN database (which also fills src_as when the exporter sent none); empty when unknown.", func(f *Flow) string { return f.SrcASName })),
	since(5, lcString("dst_as_name", "Organisation of dst_as; empty when unknown.", func(f *Flow) string { return f.DstASName })),
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

// CounterColumns lists the interface_counters table's columns.
var CounterColumns = []ColumnOf[InterfaceCounters]{
	since(3, dt("timestamp", "When the collector received the counter sample.", func(c *InterfaceCounters) uint32 { return c.TimeReceived })),
	since(3, addr("exporter_address", "Address the datagram came from.", func(c *InterfaceCounters) netip.Addr { return c.ExporterAddr })),
	since(3, addr("agent_address", "sFlow agent address in the datagram.", func(c *InterfaceCounters) netip.Addr { return c.AgentAddr })),
	since(3, u32("sub_agent_id", "sFlow sub-agent id.", func(c *InterfaceCounters) uint32 { return c.SubAgentID })),
	since(3, u32("sampling_interval", "Counter polling interval in seconds, 0 when not reported.", func(c *InterfaceCounters) uint32 { return c.SamplingInterval })),
	since(3, u32("if_index", "Interface SNMP index.", func(c *InterfaceCounters) uint32 { return c.IfIndex })),
	since(3, u32("if_type", "IANA ifType (6 ethernetCsmacd, ...).", func(c *InterfaceCounters) uint32 { return c.IfType })),
	since(3, u64("if_speed", "", "Interface speed, bits per second.", func(c *InterfaceCounters) uint64 { return c.IfSpeed })),
	since(3, u32("if_direction", "0 unknown, 1 full-duplex, 2 half-duplex, 3 in, 4 out.", func(c *InterfaceCounters) uint32 { return c.IfDirection })),
	since(3, u32("if_status", "Bit 0 admin up, bit 1 operational up.", func(c *InterfaceCounters) uint32 { return c.IfStatus })),
	since(3, u32("promiscuous", "Promiscuous mode (1) or not (2), 0 unknown.", func(c *InterfaceCounters) uint32 { return c.Promiscuous })),
	since(3, u64("in_octets", "", "Cumulative octets received (ifHCInOctets).", func(c *InterfaceCounters) uint64 { return c.InOctets })),
	since(3, u64("in_ucast_pkts", "", "Cumulative unicast packets received.", func(c *InterfaceCounters) uint64 { return c.InUcastPkts })),
	since(3, u64("in_multicast_pkts", "", "Cumulative multicast packets received.", func(c *InterfaceCounters) uint64 { return c.InMulticastPkts })),
	since(3, u64("in_broadcast_pkts", "", "Cumulative broadcast packets received.", func(c *InterfaceCounters) uint64 { return c.InBroadcastPkts })),
	since(3, u32("in_discards", "Cumulative inbound discards.", func(c *InterfaceCounters) uint32 { return c.InDiscards })),
	since(3, u32("in_errors", "Cumulative inbound errors.", func(c *InterfaceCounters) uint32 { return c.InErrors })),
	since(3, u32("in_unknown_protos", "Cumulative inbound packets of unknown protocols.", func(c *InterfaceCounters) uint32 { return c.InUnknownProtos })),
	since(3, u64("out_octets", "", "Cumulative octets sent (ifHCOutOctets).", func(c *InterfaceCounters) uint64 { return c.OutOctets })),
	since(3, u64("out_ucast_pkts", "", "Cumulative unicast packets sent.", func(c *InterfaceCounters) uint64 { return c.OutUcastPkts })),
	since(3, u64("out_multicast_pkts", "", "Cumulative multicast packets sent.", func(c *InterfaceCounters) uint64 { return c.OutMulticastPkts })),
	since(3, u64("out_broadcast_pkts", "", "Cumulative broadcast packets sent.", func(c *InterfaceCounters) uint64 { return c.OutBroadcastPkts })),
	since(3, u32("out_discards", "Cumulative outbound discards.", func(c *InterfaceCounters) uint32 { return c.OutDiscards })),
	since(3, u32("out_errors", "Cumulative outbound errors.", func(c *InterfaceCounters) uint32 { return c.OutErrors })),
	since(3, u8("ethernet", "1 when the sample carried Ethernet counters (the dot3 columns), else 0.", func(c *InterfaceCounters) uint8 {
		if c.Ethernet {
			return 1
		}
		return 0
	})),
	since(3, u32("dot3_alignment_errors", "dot3StatsAlignmentErrors (cumulative).", func(c *InterfaceCounters) uint32 { return c.AlignmentErrors })),
	since(3, u32("dot3_fcs_errors", "dot3StatsFCSErrors (cumulative): frames with a bad checksum, the sign of a bad cable or optic.", func(c *InterfaceCounters) uint32 { return c.FCSErrors })),
	since(3, u32("dot3_single_collision_frames", "dot3StatsSingleCollisionFrames (cumulative).", func(c *InterfaceCounters) uint32 { return c.SingleCollisionFrames })),
	since(3, u32("dot3_multiple_collision_frames", "dot3StatsMultipleCollisionFrames (cumulative).", func(c *InterfaceCounters) uint32 { return c.MultipleCollisions })),
	since(3, u32("dot3_sqe_test_errors", "dot3StatsSQETestErrors (cumulative).", func(c *InterfaceCounters) uint32 { return c.SQETestErrors })),
	since(3, u32("dot3_deferred_transmissions", "dot3StatsDeferredTransmissions (cumulative).", func(c *InterfaceCounters) uint32 { return c.DeferredTransmissions })),
	since(3, u32("dot3_late_collisions", "dot3StatsLateCollisions (cumulative): a duplex mismatch shows here.", func(c *InterfaceCounters) uint32 { return c.LateCollisions })),
	since(3, u32("dot3_excessive_collisions", "dot3StatsExcessiveCollisions (cumulative).", func(c *InterfaceCounters) uint32 { return c.ExcessiveCollisions })),
	since(3, u32("dot3_internal_mac_transmit_errors", "dot3StatsInternalMacTransmitErrors (cumulative).", func(c *InterfaceCounters) uint32 { return c.InternalMACTransmitErrors })),
	since(3, u32("dot3_carrier_sense_errors", "dot3StatsCarrierSenseErrors (cumulative).", func(c *InterfaceCounters) uint32 { return c.CarrierSenseErrors })),
	since(3, u32("dot3_frame_too_longs", "dot3StatsFrameTooLongs (cumulative): MTU mismatch.", func(c *InterfaceCounters) uint32 { return c.FrameTooLongs })),
	since(3, u32("dot3_internal_mac_receive_errors", "dot3StatsInternalMacReceiveErrors (cumulative).", func(c *InterfaceCounters) uint32 { return c.InternalMACReceiveErrors })),
	since(3, u32("dot3_symbol_errors", "dot3StatsSymbolErrors (cumulative).", func(c *InterfaceCounters) uint32 { return c.SymbolErrors })),
}

// AppendJSON appends f as one JSON object whose keys are the column names,
// in table order, IPv4 addresses dotted.
func AppendJSON(dst []byte, f *Flow) []byte { return AppendJSONOf(dst, Columns, f) }

// AppendJSONOf appends one row of cols as a JSON object.
func AppendJSONOf[T any](dst []byte, cols []ColumnOf[T], r *T) []byte {
	dst = append(dst, '{')
	for i := range cols {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, cols[i].Name...)
		dst = append(dst, '"', ':')
		dst = cols[i].json(dst, r)
	}
	return append(dst, '}')
}

// AlertColumns lists the alerts table's columns.
var AlertColumns = []ColumnOf[Alert]{
	since(5, dt("timestamp", "When the alert was raised (the first flow that matched).", func(a *Alert) uint32 { return a.Time })),
	since(5, dt("last_seen", "The newest flow folded into this alert (the deduplication window).", func(a *Alert) uint32 { return a.LastSeen })),
	since(5, lcString("kind", "Detection: policy (a pool rule), new_edge (learned service map), dns_tunnel, dns_resolver (DNS to a resolver outside the allow-list), saas (unsanctioned application).", func(a *Alert) string { return a.Kind })),
	since(5, lcString("rule", "Name of the rule (policy, saas) or of the detection.", func(a *Alert) string { return a.Rule })),
	since(5, lcString("severity", "info, low, medium, high or critical.", func(a *Alert) string { return a.Severity })),
	since(5, addr("src_addr", "Client address (IPv4 mapped into IPv6).", func(a *Alert) netip.Addr { return a.SrcAddr })),
	since(5, addr("dst_addr", "Server address; :: when the alert is about a domain (dns_tunnel).", func(a *Alert) netip.Addr { return a.DstAddr })),
	since(5, lcString("src_pool", "Host pool of the client.", func(a *Alert) string { return a.SrcPool })),
	since(5, lcString("dst_pool", "Host pool of the server.", func(a *Alert) string { return a.DstPool })),
	since(5, lcString("protocol", "Application label of the flow (nDPI names).", func(a *Alert) string { return a.Protocol })),
	since(5, str("evidence", "What was seen, in words (counts, thresholds, the domain).", func(a *Alert) string { return a.Evidence })),
	since(5, u64("count", "", "Flows folded into this alert.", func(a *Alert) uint64 { return a.Count })),
}
