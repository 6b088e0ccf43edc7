// Package packet parses captured frames for the sensor: from the link layer
// through VLAN tags, MPLS and the common tunnels down to the transport
// header, into a caller-owned Packet, without allocating.
//
// Why our own parser rather than gopacket's layers: the sensor parses every
// packet on every worker, and only needs the flow key, a few header fields
// and where the payload starts. gopacket's DecodingLayerParser decodes each
// layer into its own struct, keeps options and layer lists and cannot walk a
// tunnel without a layer set per encapsulation; Parse does one pass over
// the bytes (BenchmarkParse against BenchmarkGopacketDLP, same run, in
// parse_bench_test.go). gopacket stays the oracle: the tests build frames
// with its layers, and TestDifferential decodes every corpus capture with
// both and compares the 5-tuples and payload lengths.
//
// decoder/packet.go does the same walk for sFlow's sampled headers into a
// schema.Flow; the sensor's needs differ (payload offsets for DPI, TCP
// sequence numbers, tunnels decapsulated to the inner flow, fragment
// state), hence this package. It has no I/O and no metrics: a parse error
// is a typed Error whose String is the drop reason the caller counts.
package packet

import (
	"net/netip"
)

// LinkType is the link-layer header type of a frame, with the numbers of
// pcap's LINKTYPE_ registry, so a capture file's link type converts as is.
type LinkType uint32

// Link types Parse understands.
const (
	LinkNull      LinkType = 0   // BSD loopback: 4-byte address family in host order
	LinkEthernet  LinkType = 1   // Ethernet II (and 802.3, reported as not IP)
	LinkRaw       LinkType = 101 // raw IPv4 or IPv6, told apart by the version nibble
	LinkLoop      LinkType = 108 // OpenBSD loopback: 4-byte address family, big endian
	LinkLinuxSLL  LinkType = 113 // Linux cooked capture v1 (tcpdump -i any)
	LinkIPv4      LinkType = 228 // raw IPv4
	LinkIPv6      LinkType = 229 // raw IPv6
	LinkLinuxSLL2 LinkType = 276 // Linux cooked capture v2

	// DLT_RAW as written by some BSDs instead of LINKTYPE_RAW.
	linkRawBSD12 LinkType = 12
	linkRawBSD14 LinkType = 14
)

func (l LinkType) String() string {
	switch l {
	case LinkNull:
		return "null"
	case LinkEthernet:
		return "ethernet"
	case LinkRaw, linkRawBSD12, linkRawBSD14:
		return "raw"
	case LinkLoop:
		return "loop"
	case LinkLinuxSLL:
		return "linux_sll"
	case LinkIPv4:
		return "ipv4"
	case LinkIPv6:
		return "ipv6"
	case LinkLinuxSLL2:
		return "linux_sll2"
	}
	return "unknown"
}

// TunnelKind says which encapsulation Parse removed to reach the packet
// the fields describe.
type TunnelKind uint8

// Tunnel kinds. All but Teredo are decapsulated: the 5-tuple is the inner
// packet's and OuterSrcIP/OuterDstIP hold the outermost tunnel endpoints.
const (
	TunnelNone   TunnelKind = iota
	TunnelGRE               // GRE (RFC 2784/2890) carrying IP, Ethernet (0x6558) or MPLS; PPTP's enhanced GRE carrying PPP
	TunnelERSPAN            // ERSPAN type I, II or III mirror traffic over GRE
	TunnelVXLAN             // VXLAN, UDP port 4789
	TunnelGeneve            // Geneve, UDP port 6081
	TunnelGTPU              // GTP-U G-PDU, UDP port 2152
	TunnelIPinIP            // IPv4 or IPv6 directly in IPv4 or IPv6 (protocols 4 and 41: IPIP, 6in4, 4in6)
	TunnelTeredo            // IPv6 in UDP port 3544: labelled only, the fields are the UDP flow's
)

func (k TunnelKind) String() string {
	switch k {
	case TunnelNone:
		return "none"
	case TunnelGRE:
		return "gre"
	case TunnelERSPAN:
		return "erspan"
	case TunnelVXLAN:
		return "vxlan"
	case TunnelGeneve:
		return "geneve"
	case TunnelGTPU:
		return "gtpu"
	case TunnelIPinIP:
		return "ipinip"
	case TunnelTeredo:
		return "teredo"
	}
	return "unknown"
}

// FragKind is the fragment state of the IP packet.
type FragKind uint8

// Fragment states. A first fragment carries the transport header and is
// parsed like a whole packet; a later one has no transport header: its
// ports, flags and payload stay empty.
const (
	FragNone  FragKind = iota
	FragFirst          // offset 0, more fragments follow
	FragLater          // offset > 0
)

func (f FragKind) String() string {
	switch f {
	case FragNone:
		return "none"
	case FragFirst:
		return "first"
	case FragLater:
		return "later"
	}
	return "unknown"
}

// Flags are facts about a parsed packet that are not errors.
type Flags uint8

const (
	// FlagTruncated: the capture holds less than the IP packet (snapshot
	// length): Payload is shorter than PayloadLen.
	FlagTruncated Flags = 1 << iota
	// FlagIPOptions: IPv4 options or IPv6 extension headers other than a
	// fragment header.
	FlagIPOptions
	// FlagTunnelInnerError: a tunnel header was found but the packet inside
	// could not be parsed (cut by the snapshot length, not IP, malformed):
	// the fields describe the outer packet, Tunnel says which tunnel.
	FlagTunnelInnerError
)

// Error is why Parse could not reach the transport header. Its String is a
// short reason for a drop counter's label.
type Error uint8

// Parse errors. Fields Parse reached before the error are filled (an IP
// packet whose TCP header is cut still has its addresses).
const (
	ErrTruncated      Error = iota + 1 // a header is cut by the end of the capture
	ErrLinkType                        // link type not supported
	ErrEtherType                       // not IP: ARP, LLDP, 802.3 LLC, an unknown ethertype or MPLS payload
	ErrBadIPHeader                     // IP version, header length or total length inconsistent
	ErrBadL4Header                     // TCP data offset below 20, UDP length below 8, headers beyond the IP length
	ErrTooManyHeaders                  // more VLAN tags, MPLS labels or IPv6 extension headers than we follow
	numErrors
)

// Errors lists every Error, so a caller can create its counters up front.
func Errors() []Error {
	errs := make([]Error, 0, numErrors-1)
	for e := Error(1); e < numErrors; e++ {
		errs = append(errs, e)
	}
	return errs
}

func (e Error) String() string {
	switch e {
	case ErrTruncated:
		return "truncated"
	case ErrLinkType:
		return "link_type"
	case ErrEtherType:
		return "not_ip"
	case ErrBadIPHeader:
		return "bad_ip_header"
	case ErrBadL4Header:
		return "bad_l4_header"
	case ErrTooManyHeaders:
		return "too_many_headers"
	}
	return "unknown"
}

func (e Error) Error() string { return "packet: " + e.String() }

// Packet is one parsed frame. Parse overwrites every field; slices point
// into the frame, so a Packet is valid as long as the frame's bytes are.
type Packet struct {
	// Len is the packet's length on the wire. Parse sets it to len(frame);
	// a capture that cut the frame knows the real length: set it after Parse.
	Len    int
	CapLen int // bytes captured: len(frame)
	Link   LinkType

	VLAN      uint16 // outermost 802.1Q/802.1ad VLAN id; 0 when untagged
	InnerVLAN uint16 // second VLAN id (QinQ); 0 when fewer than two tags
	VLANTags  uint8  // VLAN tags seen
	MPLS      uint8  // MPLS labels skipped (all stacks)

	// Tunnel is the (innermost) encapsulation removed; TunnelID its VXLAN or
	// Geneve VNI, GRE key, ERSPAN session or GTP TEID.
	Tunnel                 TunnelKind
	TunnelID               uint32
	OuterSrcIP, OuterDstIP netip.Addr // the outermost tunnel's endpoints

	// The IP packet of the flow (the inner one for a tunnel).
	IsIPv6       bool
	EtherType    uint16 // 0x0800 or 0x86dd
	SrcIP, DstIP netip.Addr
	Proto        uint8 // IP protocol after IPv6 extension headers and AH
	TOS          uint8 // IPv4 TOS or IPv6 traffic class
	TTL          uint8 // IPv4 TTL or IPv6 hop limit
	IPLen        int   // IP packet length per its header (what flow byte counters count)
	Frag         FragKind
	FragID       uint32 // IPv4 identification or IPv6 fragment identification
	Flags        Flags

	// Transport.
	SrcPort, DstPort   uint16 // TCP, UDP, UDP-Lite, SCTP, DCCP
	TCPFlags           uint8  // FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 ECE 0x40 CWR 0x80
	Seq, Ack           uint32 // TCP
	ICMPType, ICMPCode uint8  // ICMP and ICMPv6

	// L3Off and L4Off are the offsets in the frame of the flow's IP header
	// and of its transport header.
	L3Off, L4Off int
	// Payload is what follows the transport header (TCP options, UDP, SCTP
	// common, ICMP 8-byte headers), clipped to the IP and UDP lengths so
	// Ethernet padding is never payload; a sub-slice of the frame, with its
	// capacity clipped too. For protocols without a known header it is the
	// whole IP payload.
	Payload []byte
	// PayloadLen is the payload length per the headers; more than
	// len(Payload) when the capture was cut (FlagTruncated).
	PayloadLen int
}

// Limits on what Parse follows; beyond them a frame is ErrTooManyHeaders.
const (
	maxVLANTags   = 8
	maxMPLSLabels = 16
	maxIPv6Ext    = 8
	maxTunnels    = 3 // nested decapsulations; deeper ones stay the outer packet
)

// TCP flags.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
	TCPUrg = 0x20
	TCPEce = 0x40
	TCPCwr = 0x80
)

// IP protocol numbers the parser and its callers name.
const (
	ProtoICMP    = 1
	ProtoIPIP    = 4
	ProtoTCP     = 6
	ProtoDCCP    = 33
	ProtoIPv6    = 41
	ProtoGRE     = 47
	ProtoESP     = 50
	ProtoAH      = 51
	ProtoICMPv6  = 58
	ProtoSCTP    = 132
	ProtoUDPLite = 136
	ProtoUDP     = 17
)

// Ports that select a UDP tunnel parser.
const (
	PortVXLAN  = 4789
	PortGeneve = 6081
	PortGTPU   = 2152
	PortTeredo = 3544
)
