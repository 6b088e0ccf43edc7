package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
	ip4A = net.IP{192, 0, 2, 1}
	ip4B = net.IP{198, 51, 100, 2}
	ip4C = net.IP{203, 0, 113, 3}
	ip4D = net.IP{203, 0, 113, 4}
	ip6A = net.ParseIP("2001:db8::1")
	ip6B = net.ParseIP("2001:db8::2")
)

// ser serializes ls with lengths and checksums computed, the way a sender
// would put them on the wire.
func ser(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	var nl gopacket.NetworkLayer
	checksums := true
	for _, l := range ls {
		switch l := l.(type) {
		case *layers.IPv4:
			nl = l
		case *layers.IPv6:
			nl = l
		case *layers.TCP:
			if nl == nil {
				checksums = false
			} else if err := l.SetNetworkLayerForChecksum(nl); err != nil {
				t.Fatal(err)
			}
		case *layers.ICMPv6:
			if nl == nil {
				checksums = false
			} else if err := l.SetNetworkLayerForChecksum(nl); err != nil {
				t.Fatal(err)
			}
		case *layers.UDP:
			if nl == nil {
				checksums = false
			} else if err := l.SetNetworkLayerForChecksum(nl); err != nil {
				t.Fatal(err)
			}
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: checksums}, ls...); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

func eth(et layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}
}

func ipv4(src, dst net.IP, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: src, DstIP: dst, Id: 0x1234}
}

func ipv6(src, dst net.IP, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 63, NextHeader: next, SrcIP: src, DstIP: dst, TrafficClass: 0x28}
}

func tcp(sport, dport uint16, flags uint8) *layers.TCP {
	return &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1000, Ack: 2000,
		Window: 1024, FIN: flags&TCPFin != 0, SYN: flags&TCPSyn != 0, RST: flags&TCPRst != 0,
		PSH: flags&TCPPsh != 0, ACK: flags&TCPAck != 0, URG: flags&TCPUrg != 0, ECE: flags&TCPEce != 0, CWR: flags&TCPCwr != 0}
}

func udp(sport, dport uint16) *layers.UDP {
	return &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
}

func payload(s string) gopacket.Payload { return gopacket.Payload(s) }

// want lists the fields a case checks; zero values are checked too.
type want struct {
	err                error
	src, dst           string
	sport, dport       uint16
	proto              uint8
	payload            string
	payloadLen         int // when different from len(payload)
	vlan, innerVLAN    uint16
	tunnel             TunnelKind
	tunnelID           uint32
	outerSrc, outerDst string
	frag               FragKind
	flags              Flags
	tcpFlags           uint8
	icmpType, icmpCode uint8
	l3Off              int
}

func TestParse(t *testing.T) {
	// Frames gopacket cannot serialize are assembled from parts.
	inner := ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4C, ip4D, layers.IPProtocolTCP), tcp(40000, 443, TCPSyn), payload("hello"))
	innerIP := inner[14:]
	withHeader := func(h []byte, rest []byte) gopacket.Payload { return gopacket.Payload(append(bytes.Clone(h), rest...)) }

	tcpOpts := tcp(1234, 80, TCPPsh|TCPAck)
	tcpOpts.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 0xb4}}}
	ipOpts := ipv4(ip4A, ip4B, layers.IPProtocolUDP)
	ipOpts.Options = []layers.IPv4Option{{OptionType: 7, OptionLength: 4, OptionData: []byte{4, 0}}}
	ipOpts.IHL = 6
	firstFrag := ipv4(ip4A, ip4B, layers.IPProtocolUDP)
	firstFrag.Flags = layers.IPv4MoreFragments
	laterFrag := ipv4(ip4A, ip4B, layers.IPProtocolUDP)
	laterFrag.FragOffset = 185
	qinq := &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeDot1Q}
	greKey := &layers.GRE{KeyPresent: true, Key: 77, Protocol: layers.EthernetTypeIPv4}
	v6frag := func(offset uint16, more bool, next uint8) []byte {
		h := make([]byte, 8)
		h[0] = next
		fo := offset << 3
		if more {
			fo |= 1
		}
		binary.BigEndian.PutUint16(h[2:], fo)
		binary.BigEndian.PutUint32(h[4:], 0xdeadbeef)
		return h
	}
	hbh := []byte{44, 0, 1, 4, 0, 0, 0, 0} // hop-by-hop, next: fragment, PadN
	udpDatagram := ser(t, udp(5353, 53), payload("query"))

	cases := []struct {
		name  string
		link  LinkType
		frame []byte
		want  want
	}{
		{"ethernet ipv4 tcp options", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolTCP), tcpOpts, payload("GET / HTTP/1.1\r\n")),
			want{src: "192.0.2.1", dst: "198.51.100.2", sport: 1234, dport: 80, proto: 6, payload: "GET / HTTP/1.1\r\n",
				tcpFlags: TCPPsh | TCPAck, l3Off: 14}},
		{"ethernet padding is not payload", LinkEthernet,
			append(ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolUDP), udp(1000, 2000), payload("x")), make([]byte, 17)...),
			want{src: "192.0.2.1", dst: "198.51.100.2", sport: 1000, dport: 2000, proto: 17, payload: "x", l3Off: 14}},
		{"ipv4 options", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipOpts, udp(1, 2), payload("opt")),
			want{src: "192.0.2.1", dst: "198.51.100.2", sport: 1, dport: 2, proto: 17, payload: "opt", flags: FlagIPOptions, l3Off: 14}},
		{"qinq keeps the outer vlan", LinkEthernet,
			ser(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeQinQ}, qinq,
				&layers.Dot1Q{VLANIdentifier: 200, Type: layers.EthernetTypeIPv6}, ipv6(ip6A, ip6B, layers.IPProtocolUDP), udp(53, 5353), payload("dns")),
			want{src: "2001:db8::1", dst: "2001:db8::2", sport: 53, dport: 5353, proto: 17, payload: "dns", vlan: 100, innerVLAN: 200, l3Off: 22}},
		{"mpls stack", LinkEthernet,
			ser(t, eth(layers.EthernetTypeMPLSUnicast), &layers.MPLS{Label: 16}, &layers.MPLS{Label: 17, StackBottom: true},
				ipv6(ip6A, ip6B, layers.IPProtocolTCP), tcp(22, 50000, TCPAck), payload("SSH-2.0")),
			want{src: "2001:db8::1", dst: "2001:db8::2", sport: 22, dport: 50000, proto: 6, payload: "SSH-2.0", tcpFlags: TCPAck, l3Off: 22}},
		{"pppoe", LinkEthernet,
			ser(t, eth(layers.EthernetTypePPPoESession), &layers.PPPoE{Version: 1, Type: 1, Code: layers.PPPoECodeSession, SessionId: 9},
				&layers.PPP{PPPType: layers.PPPTypeIPv4}, ipv4(ip4A, ip4B, layers.IPProtocolUDP), udp(1, 2), payload("ppp")),
			want{src: "192.0.2.1", dst: "198.51.100.2", sport: 1, dport: 2, proto: 17, payload: "ppp", l3Off: 22}},
		{"ipv4 first fragment keeps its ports", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), firstFrag, udp(53, 1000), payload("part")),
			want{src: "192.0.2.1", dst: "198.51.100.2", sport: 53, dport: 1000, proto: 17, payload: "part", frag: FragFirst, l3Off: 14}},
		{"ipv4 later fragment has no transport", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), laterFrag, payload("rest of it")),
			want{src: "192.0.2.1", dst: "198.51.100.2", proto: 17, frag: FragLater, l3Off: 14}},
		{"ipv6 hop-by-hop and first fragment", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv6), ipv6(ip6A, ip6B, layers.IPProtocolIPv6HopByHop),
				withHeader(hbh, append(v6frag(0, true, 17), udpDatagram...))),
			want{src: "2001:db8::1", dst: "2001:db8::2", sport: 5353, dport: 53, proto: 17, payload: "query", frag: FragFirst, flags: FlagIPOptions, l3Off: 14}},
		{"ipv6 later fragment", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv6), ipv6(ip6A, ip6B, layers.IPProtocolIPv6Fragment), withHeader(v6frag(100, false, 6), []byte("tail"))),
			want{src: "2001:db8::1", dst: "2001:db8::2", proto: 6, frag: FragLater, l3Off: 14}},
		{"ipv6 atomic fragment is whole", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv6), ipv6(ip6A, ip6B, layers.IPProtocolIPv6Fragment), withHeader(v6frag(0, false, 17), udpDatagram)),
			want{src: "2001:db8::1", dst: "2001:db8::2", sport: 5353, dport: 53, proto: 17, payload: "query", l3Off: 14}},
		{"icmp echo", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolICMPv4),
				&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 2}, payload("ping")),
			want{src: "192.0.2.1", dst: "198.51.100.2", proto: 1, payload: "ping", icmpType: 8, l3Off: 14}},
		{"icmpv6 unreachable", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv6), ipv6(ip6A, ip6B, layers.IPProtocolICMPv6),
				&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(1, 4)}, payload("\x00\x00\x00\x00orig")),
			want{src: "2001:db8::1", dst: "2001:db8::2", proto: 58, payload: "orig", icmpType: 1, icmpCode: 4, l3Off: 14}},
		{"sctp ports", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolSCTP), &layers.SCTP{SrcPort: 2905, DstPort: 2906}, payload("chunk")),
			want{src: "192.0.2.1", dst: "198.51.100.2", sport: 2905, dport: 2906, proto: 132, payload: "chunk", l3Off: 14}},
		{"esp recognised", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolESP), payload("\x00\x00\x10\x01\x00\x00\x00\x01ciphertext")),
			want{src: "192.0.2.1", dst: "198.51.100.2", proto: 50, payload: "\x00\x00\x10\x01\x00\x00\x00\x01ciphertext", l3Off: 14}},
		{"gre with key", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolGRE), greKey, gopacket.Payload(innerIP)),
			want{src: "203.0.113.3", dst: "203.0.113.4", sport: 40000, dport: 443, proto: 6, payload: "hello", tcpFlags: TCPSyn,
				tunnel: TunnelGRE, tunnelID: 77, outerSrc: "192.0.2.1", outerDst: "198.51.100.2", l3Off: 42}},
		{"gre transparent ethernet", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolGRE), &layers.GRE{Protocol: layers.EthernetTypeTransparentEthernetBridging}, gopacket.Payload(inner)),
			want{src: "203.0.113.3", dst: "203.0.113.4", sport: 40000, dport: 443, proto: 6, payload: "hello", tcpFlags: TCPSyn,
				tunnel: TunnelGRE, outerSrc: "192.0.2.1", outerDst: "198.51.100.2", l3Off: 52}},
		{"erspan type ii", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolGRE), &layers.GRE{SeqPresent: true, Seq: 5, Protocol: layers.EthernetTypeERSPAN},
				&layers.ERSPANII{Version: 1, SessionID: 42, Index: 1}, gopacket.Payload(inner)),
			want{src: "203.0.113.3", dst: "203.0.113.4", sport: 40000, dport: 443, proto: 6, payload: "hello", tcpFlags: TCPSyn,
				tunnel: TunnelERSPAN, tunnelID: 42, outerSrc: "192.0.2.1", outerDst: "198.51.100.2", l3Off: 64}},
		{"erspan type iii", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolGRE), &layers.GRE{SeqPresent: true, Protocol: 0x22eb},
				withHeader([]byte{0x20, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0}, inner)),
			want{src: "203.0.113.3", dst: "203.0.113.4", sport: 40000, dport: 443, proto: 6, payload: "hello", tcpFlags: TCPSyn,
				tunnel: TunnelERSPAN, tunnelID: 7, outerSrc: "192.0.2.1", outerDst: "198.51.100.2", l3Off: 68}},
		{"pptp enhanced gre", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolGRE),
				withHeader([]byte{0x30, 0x81, 0x88, 0x0b, 0, 40, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0x03, 0x00, 0x21}, innerIP)),
			want{src: "203.0.113.3", dst: "203.0.113.4", sport: 40000, dport: 443, proto: 6, payload: "hello", tcpFlags: TCPSyn,
				tunnel: TunnelGRE, outerSrc: "192.0.2.1", outerDst: "198.51.100.2", l3Off: 54}},
		{"vxlan", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolUDP), udp(51000, 4789),
				&layers.VXLAN{ValidIDFlag: true, VNI: 5001}, gopacket.Payload(inner)),
			want{src: "203.0.113.3", dst: "203.0.113.4", sport: 40000, dport: 443, proto: 6, payload: "hello", tcpFlags: TCPSyn,
				tunnel: TunnelVXLAN, tunnelID: 5001, outerSrc: "192.0.2.1", outerDst: "198.51.100.2", l3Off: 64}},
		{"geneve", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv6), ipv6(ip6A, ip6B, layers.IPProtocolUDP), udp(51000, 6081),
				withHeader([]byte{0x01, 0, 0x65, 0x58, 0, 0x10, 0x01, 0, 0x01, 0x02, 0x03, 0x00}, inner)),
			want{src: "203.0.113.3", dst: "203.0.113.4", sport: 40000, dport: 443, proto: 6, payload: "hello", tcpFlags: TCPSyn,
				tunnel: TunnelGeneve, tunnelID: 0x1001, outerSrc: "2001:db8::1", outerDst: "2001:db8::2", l3Off: 88}},
		{"gtp-u", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolUDP), udp(2152, 2152),
				&layers.GTPv1U{Version: 1, ProtocolType: 1, MessageType: 255, TEID: 0xabcdef}, gopacket.Payload(innerIP)),
			want{src: "203.0.113.3", dst: "203.0.113.4", sport: 40000, dport: 443, proto: 6, payload: "hello", tcpFlags: TCPSyn,
				tunnel: TunnelGTPU, tunnelID: 0xabcdef, outerSrc: "192.0.2.1", outerDst: "198.51.100.2", l3Off: 50}},
		{"gtp-u with extension header", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolUDP), udp(2152, 2152),
				withHeader([]byte{0x34, 0xff, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0x85, 1, 0x10, 0x05, 0}, innerIP)),
			want{src: "203.0.113.3", dst: "203.0.113.4", sport: 40000, dport: 443, proto: 6, payload: "hello", tcpFlags: TCPSyn,
				tunnel: TunnelGTPU, tunnelID: 9, outerSrc: "192.0.2.1", outerDst: "198.51.100.2", l3Off: 58}},
		{"6in4", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolIPv6), ipv6(ip6A, ip6B, layers.IPProtocolUDP), udp(1, 2), payload("six")),
			want{src: "2001:db8::1", dst: "2001:db8::2", sport: 1, dport: 2, proto: 17, payload: "six",
				tunnel: TunnelIPinIP, outerSrc: "192.0.2.1", outerDst: "198.51.100.2", l3Off: 34}},
		{"teredo is labelled, not decapsulated", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolUDP), udp(3544, 40000),
				gopacket.Payload(ser(t, ipv6(ip6A, ip6B, layers.IPProtocolNoNextHeader)))),
			want{src: "192.0.2.1", dst: "198.51.100.2", sport: 3544, dport: 40000, proto: 17,
				payload: string(ser(t, ipv6(ip6A, ip6B, layers.IPProtocolNoNextHeader))), tunnel: TunnelTeredo, l3Off: 14}},
		{"vxlan with a cut inner frame stays outer", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolUDP), udp(51000, 4789),
				&layers.VXLAN{ValidIDFlag: true, VNI: 5001}, gopacket.Payload(inner[:30])),
			want{src: "192.0.2.1", dst: "198.51.100.2", sport: 51000, dport: 4789, proto: 17,
				payload: string(append([]byte{8, 0, 0, 0, 0, 0x13, 0x89, 0}, inner[:30]...)),
				tunnel:  TunnelVXLAN, tunnelID: 5001, flags: FlagTunnelInnerError, l3Off: 14}},
		{"linux sll", LinkLinuxSLL,
			append([]byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 0x0a, 0, 0, 0x08, 0x00}, ser(t, ipv4(ip4A, ip4B, layers.IPProtocolUDP), udp(1, 2), payload("sll"))...),
			want{src: "192.0.2.1", dst: "198.51.100.2", sport: 1, dport: 2, proto: 17, payload: "sll", l3Off: 16}},
		{"linux sll2", LinkLinuxSLL2,
			append([]byte{0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 0x0a, 0, 0}, ser(t, ipv6(ip6A, ip6B, layers.IPProtocolUDP), udp(1, 2), payload("sll2"))...),
			want{src: "2001:db8::1", dst: "2001:db8::2", sport: 1, dport: 2, proto: 17, payload: "sll2", l3Off: 20}},
		{"bsd null", LinkNull,
			ser(t, &layers.Loopback{Family: layers.ProtocolFamilyIPv6FreeBSD}, ipv6(ip6A, ip6B, layers.IPProtocolUDP), udp(1, 2), payload("lo")),
			want{src: "2001:db8::1", dst: "2001:db8::2", sport: 1, dport: 2, proto: 17, payload: "lo", l3Off: 4}},
		{"raw", LinkRaw,
			ser(t, ipv4(ip4A, ip4B, layers.IPProtocolUDP), udp(1, 2), payload("raw")),
			want{src: "192.0.2.1", dst: "198.51.100.2", sport: 1, dport: 2, proto: 17, payload: "raw"}},
		{"linktype ipv6", LinkIPv6,
			ser(t, ipv6(ip6A, ip6B, layers.IPProtocolTCP), tcp(1, 2, TCPRst), payload("")),
			want{src: "2001:db8::1", dst: "2001:db8::2", sport: 1, dport: 2, proto: 6, tcpFlags: TCPRst}},
		{"tso zero length", LinkIPv4,
			func() []byte {
				b := ser(t, ipv4(ip4A, ip4B, layers.IPProtocolUDP), udp(1, 2), payload("tso"))
				b[2], b[3] = 0, 0
				return b
			}(),
			want{src: "192.0.2.1", dst: "198.51.100.2", sport: 1, dport: 2, proto: 17, payload: "tso"}},
		{"snaplen cut", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolTCP), tcp(1, 2, TCPAck), payload("0123456789"))[:14+20+20+4],
			want{src: "192.0.2.1", dst: "198.51.100.2", sport: 1, dport: 2, proto: 6, payload: "0123", payloadLen: 10,
				tcpFlags: TCPAck, flags: FlagTruncated, l3Off: 14}},

		{"arp is not ip", LinkEthernet,
			ser(t, eth(layers.EthernetTypeARP), &layers.ARP{AddrType: 1, Protocol: 0x0800, HwAddressSize: 6, ProtAddressSize: 4,
				SourceHwAddress: macA, SourceProtAddress: ip4A, DstHwAddress: macB, DstProtAddress: ip4B}),
			want{err: ErrEtherType}},
		{"short ethernet", LinkEthernet, []byte{1, 2, 3}, want{err: ErrTruncated}},
		{"unknown link type", LinkType(147), []byte{0x45, 0, 0, 20}, want{err: ErrLinkType}},
		{"ipv4 version mismatch", LinkEthernet,
			func() []byte {
				b := ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolUDP), udp(1, 2))
				b[14] = 0x55
				return b
			}(),
			want{err: ErrBadIPHeader}},
		{"ipv4 header length beyond total", LinkEthernet,
			func() []byte {
				b := ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolUDP), udp(1, 2))
				b[14] = 0x4f
				return b
			}(),
			want{err: ErrBadIPHeader}},
		{"tcp data offset below 5", LinkEthernet,
			func() []byte {
				b := ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolTCP), tcp(1, 2, TCPAck))
				b[14+20+12] = 0x40
				return b
			}(),
			want{err: ErrBadL4Header, src: "192.0.2.1", dst: "198.51.100.2", proto: 6, sport: 1, dport: 2, tcpFlags: TCPAck, l3Off: 14}},
		{"udp length below 8", LinkEthernet,
			func() []byte {
				b := ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolUDP), udp(1, 2), payload("abc"))
				b[14+20+5] = 3
				return b
			}(),
			want{err: ErrBadL4Header, src: "192.0.2.1", dst: "198.51.100.2", proto: 17, sport: 1, dport: 2, l3Off: 14}},
		{"tcp header cut", LinkEthernet,
			ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolTCP), tcp(1, 2, TCPAck))[:14+20+10],
			want{err: ErrTruncated, src: "192.0.2.1", dst: "198.51.100.2", proto: 6, flags: FlagTruncated, l3Off: 14}},
		{"too many vlan tags", LinkEthernet,
			append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x81, 0},
				bytes.Repeat([]byte{0, 1, 0x81, 0}, 9)...),
			want{err: ErrTooManyHeaders, vlan: 1, innerVLAN: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var p Packet
			err := Parse(c.link, c.frame, &p)
			if !errors.Is(err, c.want.err) {
				t.Fatalf("err = %v, want %v", err, c.want.err)
			}
			w := c.want
			str := func(a netip.Addr) string {
				if !a.IsValid() {
					return ""
				}
				return a.String()
			}
			check := func(name string, got, want any) {
				t.Helper()
				if got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
			check("src", str(p.SrcIP), w.src)
			check("dst", str(p.DstIP), w.dst)
			check("sport", p.SrcPort, w.sport)
			check("dport", p.DstPort, w.dport)
			check("proto", p.Proto, w.proto)
			check("payload", string(p.Payload), w.payload)
			pl := w.payloadLen
			if pl == 0 {
				pl = len(w.payload)
			}
			if err == nil {
				check("payload len", p.PayloadLen, pl)
			}
			check("vlan", p.VLAN, w.vlan)
			check("inner vlan", p.InnerVLAN, w.innerVLAN)
			check("tunnel", p.Tunnel, w.tunnel)
			check("tunnel id", p.TunnelID, w.tunnelID)
			check("outer src", str(p.OuterSrcIP), w.outerSrc)
			check("outer dst", str(p.OuterDstIP), w.outerDst)
			check("frag", p.Frag, w.frag)
			check("flags", p.Flags, w.flags)
			check("tcp flags", p.TCPFlags, w.tcpFlags)
			check("icmp type", p.ICMPType, w.icmpType)
			check("icmp code", p.ICMPCode, w.icmpCode)
			check("l3 offset", p.L3Off, w.l3Off)
			check("len", p.Len, len(c.frame))
			if len(p.Payload) > 0 {
				// Payload is a sub-slice of the frame, after the L4 header.
				if i := indexOf(c.frame, p.Payload); i < p.L4Off || i+len(p.Payload) > len(c.frame) {
					t.Errorf("payload at %d is not a sub-slice of the frame after L4 offset %d", i, p.L4Off)
				}
				if cap(p.Payload) != len(p.Payload) {
					t.Errorf("payload capacity %d exceeds its length %d", cap(p.Payload), len(p.Payload))
				}
			}
			if err == nil && p.Frag != FragLater && p.Flags&FlagTunnelInnerError == 0 {
				// Whatever gopacket decodes of the same frame agrees.
				o := decodeOracle(c.link, c.frame)
				if o.ok && o.l4 == layers.LayerTypeTCP || o.l4 == layers.LayerTypeUDP {
					if o.src != p.SrcIP.String() || o.dst != p.DstIP.String() || o.srcPort != p.SrcPort || o.dstPort != p.DstPort || o.payload != len(p.Payload) {
						t.Errorf("gopacket: %s:%d > %s:%d payload %d", o.src, o.srcPort, o.dst, o.dstPort, o.payload)
					}
				}
			}
		})
	}
}

func indexOf(frame, sub []byte) int {
	if len(sub) == 0 {
		return len(frame)
	}
	for i := range frame {
		if &frame[i] == &sub[0] {
			return i
		}
	}
	return -1
}

// TestParseDoesNotAllocate: the hot path's promise.
func TestParseDoesNotAllocate(t *testing.T) {
	frames := [][]byte{
		ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolTCP), tcp(1234, 80, TCPAck), payload("GET /")),
		ser(t, eth(layers.EthernetTypeIPv6), ipv6(ip6A, ip6B, layers.IPProtocolUDP), udp(53, 5353), payload("dns")),
		ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolUDP), udp(51000, 4789), &layers.VXLAN{ValidIDFlag: true, VNI: 1},
			gopacket.Payload(ser(t, eth(layers.EthernetTypeIPv4), ipv4(ip4C, ip4D, layers.IPProtocolTCP), tcp(1, 2, TCPSyn)))),
		{1, 2, 3},
	}
	var p Packet
	allocs := testing.AllocsPerRun(100, func() {
		for _, f := range frames {
			_ = Parse(LinkEthernet, f, &p)
		}
	})
	if allocs != 0 {
		t.Errorf("Parse allocates %.1f times per run", allocs)
	}
}

func TestErrorsAreDistinctReasons(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range Errors() {
		s := e.String()
		if s == "unknown" || seen[s] {
			t.Errorf("error %d has reason %q", e, s)
		}
		seen[s] = true
		var pe Error
		if !errors.As(error(e), &pe) || pe != e {
			t.Errorf("errors.As(%v) failed", e)
		}
	}
}
