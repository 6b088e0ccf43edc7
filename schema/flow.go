// Package schema holds the one flow record every source is normalised into,
// and the column list from which the ClickHouse DDL, the Native batches and
// the docs are derived.
package schema

import (
	"net/netip"
	"strconv"
)

// Source says which kind of exporter produced a record.
type Source uint8

// Flow sources. The zero value is never emitted by a decoder.
const (
	SourceUnknown Source = iota
	SourceNetFlowV5
	SourceNetFlowV9
	SourceIPFIX
	SourceSFlowV5
	SourceSensor
)

var sourceNames = [...]string{"unknown", "netflow_v5", "netflow_v9", "ipfix", "sflow_v5", "sensor"}

// String returns the value stored in the flow_source column.
func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return "unknown"
}

// Confidence says where the application label in Flow.Protocol came from.
type Confidence uint8

// Label confidences. The numbers travel in Kafka records: new ones are
// appended, never inserted.
const (
	ConfidenceNone     Confidence = iota // no source gave a label: Protocol is "Unknown"
	ConfidencePort                       // guessed from a well-known port
	ConfidenceExporter                   // the exporter sent an application field (nProbe, NBAR, ...) and did not say how it got it
	ConfidenceDPI                        // this flow's payload was inspected (our sensor, or an exporter saying so)
	ConfidenceDNSCache                   // the server address was in an earlier DNS answer for the name
	ConfidenceIPList                     // the server address is in a known application's address list
)

var confidenceNames = [...]string{"none", "port", "exporter", "dpi", "dns_cache", "ip_list"}

// String returns the value stored in the protocol_confidence column.
func (c Confidence) String() string {
	if int(c) < len(confidenceNames) {
		return confidenceNames[c]
	}
	return "none"
}

// Direction of the flow relative to the observation point, as exporters report it.
type Direction uint8

// Directions (IPFIX IE 61 flowDirection: 0 ingress, 1 egress; we shift by one
// so that the zero value means "not reported").
const (
	DirectionUndefined Direction = iota
	DirectionIngress
	DirectionEgress
)

var directionNames = [...]string{"undefined", "ingress", "egress"}

// String returns the value stored in the direction column.
func (d Direction) String() string {
	if int(d) < len(directionNames) {
		return directionNames[d]
	}
	return "undefined"
}

// SamplingSource says where a flow's sampling rate came from, so that a
// rate nobody announced is never silently taken as 1.
type SamplingSource uint8

// Sampling sources.
const (
	SamplingNone           SamplingSource = iota // no sampling information at all: rate 1, as for unsampled exporters
	SamplingHeader                               // NetFlow v5 header, sFlow sample
	SamplingInRecord                             // a field of the data record itself (IE 34, 50, 305/306)
	SamplingOptions                              // options data for the record's sampler id
	SamplingConfigDefault                        // FLOWLENS_SAMPLING_DEFAULT: the exporter said nothing
	SamplingConfigOverride                       // FLOWLENS_SAMPLING_OVERRIDES: configuration wins over the exporter
	SamplingUnknown                              // sampling announced but its rate not known (yet): rate 1, counted
)

var samplingNames = [...]string{"none", "header", "in_record", "options", "config_default", "config_override", "unknown"}

// String returns the value stored in the sampling_rate_source column.
func (s SamplingSource) String() string {
	if int(s) < len(samplingNames) {
		return samplingNames[s]
	}
	return "unknown"
}

// MaxMPLSLabels bounds the label stack we keep, so a record has a fixed size.
const MaxMPLSLabels = 10

// Flow is one normalised flow record. Decoders fill a caller-owned Flow and
// hand it to an emit callback; the record is reused, so consumers copy what
// they keep. Every field is a value type: no allocation per record.
type Flow struct {
	TimeReceived uint32 // unix seconds, collector clock
	FlowStartMs  int64  // unix milliseconds, 0 when unknown
	FlowEndMs    int64  // unix milliseconds, 0 when unknown

	Source              Source
	ExporterAddr        netip.Addr
	ObservationDomainID uint32
	SamplerID           uint32
	SamplingRate        uint32 // 1 when unsampled or unknown
	SamplingSource      SamplingSource

	// Bytes and Packets are estimates of the real volume: raw counters
	// multiplied by SamplingRate.
	Bytes   uint64
	Packets uint64

	// Protocol is the application label ("DNS", "TLS.YouTube", "Unknown").
	Protocol           string
	ProtocolConfidence Confidence
	// AppCategory is the application's category in nDPI's names
	// ("Streaming", "Cloud", "RemoteAccess"); "" when unknown.
	AppCategory string
	// ServerName is the TLS/QUIC SNI or HTTP Host the exporter or sensor saw.
	ServerName string
	// DNSQuery is the query name of a DNS flow, when reported.
	DNSQuery string
	// DNSQType is the query type of that question (1 A, 28 AAAA, 16 TXT,
	// 10 NULL, ...), 0 when unknown. DNSRCode is the response code, valid
	// when DNSAnswered: a response was seen (NOERROR is 0, so the flag
	// tells it from "no answer").
	DNSQType    uint16
	DNSRCode    uint8
	DNSAnswered bool

	// Enrichment (enrich/): the host pools of both ends from the policy
	// file, their GeoIP country (ISO 3166-1 alpha-2) and AS organisation.
	// "" when unknown.
	SrcPool, DstPool       string
	SrcCountry, DstCountry string
	SrcASName, DstASName   string

	EType      uint16 // 0x0800 IPv4, 0x86dd IPv6
	SrcAddr    netip.Addr
	DstAddr    netip.Addr
	SrcPort    uint16
	DstPort    uint16
	IPProtocol uint8
	TCPFlags   uint8
	IPTos      uint8
	IPTTL      uint8
	ICMPType   uint8
	ICMPCode   uint8
	SrcMask    uint8
	DstMask    uint8
	NextHop    netip.Addr
	InIf       uint32
	OutIf      uint32
	SrcAS      uint32
	DstAS      uint32
	SrcVlan    uint16
	DstVlan    uint16
	SrcMAC     uint64 // 48-bit MAC in the low bits
	DstMAC     uint64
	Direction  Direction
	// ForwardingStatus is IPFIX IE 89 (top two bits: 0 unknown, 1 forwarded,
	// 2 dropped, 3 consumed).
	ForwardingStatus uint8

	MPLSLabels    [MaxMPLSLabels]uint32 // 20-bit labels, outermost first
	MPLSLabelsLen uint8

	// Post-NAT addresses (IPFIX IEs 225-228), zero when absent.
	PostNATSrcAddr netip.Addr
	PostNATDstAddr netip.Addr
	PostNATSrcPort uint16
	PostNATDstPort uint16
}

// Reset clears f for reuse without releasing anything.
func (f *Flow) Reset() { *f = Flow{} }

// Labels returns the MPLS label stack held in f.
func (f *Flow) Labels() []uint32 { return f.MPLSLabels[:f.MPLSLabelsLen] }

// InterfaceCounters is one sFlow counter sample of one interface (generic
// interface counters, RFC 3176 / sFlow v5 counters_sample format 1, with
// the Ethernet counters of format 2 when present). Counters are cumulative
// as the agent sent them; queries take differences.
type InterfaceCounters struct {
	TimeReceived uint32 // unix seconds, collector clock
	ExporterAddr netip.Addr
	AgentAddr    netip.Addr
	SubAgentID   uint32
	// SamplingInterval is the agent's counter polling interval in seconds
	// (0 when not reported).
	SamplingInterval uint32

	IfIndex     uint32
	IfType      uint32
	IfSpeed     uint64 // bits per second
	IfDirection uint32 // 0 unknown, 1 full-duplex, 2 half-duplex, 3 in, 4 out
	IfStatus    uint32 // bit 0 admin up, bit 1 oper up
	Promiscuous uint32

	InOctets, InUcastPkts, InMulticastPkts, InBroadcastPkts     uint64
	InDiscards, InErrors, InUnknownProtos                       uint32
	OutOctets, OutUcastPkts, OutMulticastPkts, OutBroadcastPkts uint64
	OutDiscards, OutErrors                                      uint32

	// Ethernet counters (sFlow counters format 2, dot3Stats of RFC 3635),
	// present when Ethernet is true.
	Ethernet                                                              bool
	AlignmentErrors, FCSErrors, SingleCollisionFrames, MultipleCollisions uint32
	SQETestErrors, DeferredTransmissions, LateCollisions                  uint32
	ExcessiveCollisions, InternalMACTransmitErrors, CarrierSenseErrors    uint32
	FrameTooLongs, InternalMACReceiveErrors, SymbolErrors                 uint32
}

// dnsTypes names the query types a query (or a detection) is likely to
// look for; others read TYPE<n>, as RFC 3597 writes unknown types.
var dnsTypes = map[uint16]string{
	1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 10: "NULL", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT",
	17: "RP", 18: "AFSDB", 24: "SIG", 25: "KEY", 28: "AAAA", 29: "LOC", 33: "SRV", 35: "NAPTR",
	37: "CERT", 39: "DNAME", 41: "OPT", 43: "DS", 44: "SSHFP", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY",
	50: "NSEC3", 52: "TLSA", 64: "SVCB", 65: "HTTPS", 99: "SPF", 251: "IXFR", 252: "AXFR", 255: "ANY",
	256: "URI", 257: "CAA",
}

// DNSTypeName returns the dns_qtype value of a query type: its mnemonic,
// TYPE<n> for others, "" for 0 (unknown).
func DNSTypeName(t uint16) string {
	if t == 0 {
		return ""
	}
	if n, ok := dnsTypes[t]; ok {
		return n
	}
	return "TYPE" + strconv.Itoa(int(t))
}

var dnsRCodes = [...]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE"}

// DNSRCodeName returns the dns_rcode value: the response code's mnemonic
// (RCODE<n> for others), "" when no response was seen.
func DNSRCodeName(rc uint8, answered bool) string {
	if !answered {
		return ""
	}
	if int(rc) < len(dnsRCodes) {
		return dnsRCodes[rc]
	}
	return "RCODE" + strconv.Itoa(int(rc))
}

// Alert is one detection (enrich/detect), stored in the alerts table. A
// repeat of the same alert within the deduplication window is folded into
// Count; LastSeen is the newest flow folded in.
type Alert struct {
	Time, LastSeen   uint32 // unix seconds
	Kind             string // policy, new_edge, dns_tunnel, dns_resolver, saas
	Rule             string // the rule's name, or the detection's
	Severity         string // info, low, medium, high, critical
	SrcAddr, DstAddr netip.Addr
	SrcPool, DstPool string
	Protocol         string
	Evidence         string
	Count            uint64
}
