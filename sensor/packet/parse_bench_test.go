package packet

import (
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// benchFrames are the Ethernet frames of the corpus, the sensor's usual
// input, so both parsers see the same mix (TCP, UDP, VLAN, VXLAN, ...).
func benchFrames(b *testing.B) [][]byte {
	b.Helper()
	var frames [][]byte
	for _, file := range corpusFiles(b) {
		for _, f := range readCapture(b, file) {
			if f.link == LinkEthernet {
				frames = append(frames, f.data)
			}
		}
	}
	return frames
}

// BenchmarkParse: one op is one packet.
func BenchmarkParse(b *testing.B) {
	frames := benchFrames(b)
	var p Packet
	var sink int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if Parse(LinkEthernet, frames[i%len(frames)], &p) == nil {
			sink += int(p.SrcPort) + len(p.Payload)
		}
	}
	_ = sink
}

// BenchmarkParseTCP is the common case alone: Ethernet, IPv4, TCP.
func BenchmarkParseTCP(b *testing.B) {
	frame := ser(b, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolTCP), tcp(1234, 443, TCPAck|TCPPsh), payload("0123456789abcdef"))
	var p Packet
	b.ReportAllocs()
	for b.Loop() {
		_ = Parse(LinkEthernet, frame, &p)
	}
}

// BenchmarkGopacketDLP is gopacket's fastest decoding path on the same
// frames: a DecodingLayerParser with preallocated layers, as far as TCP/UDP
// (it does not follow tunnels: no layer set would).
func BenchmarkGopacketDLP(b *testing.B) {
	frames := benchFrames(b)
	var (
		eth     layers.Ethernet
		dot1q   layers.Dot1Q
		ip4     layers.IPv4
		ip6     layers.IPv6
		tcp     layers.TCP
		udp     layers.UDP
		icmp4   layers.ICMPv4
		icmp6   layers.ICMPv6
		pl      gopacket.Payload
		decoded = make([]gopacket.LayerType, 0, 16)
		sink    int
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &dot1q, &ip4, &ip6, &tcp, &udp, &icmp4, &icmp6, &pl)
	parser.IgnoreUnsupported = true
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = parser.DecodeLayers(frames[i%len(frames)], &decoded)
		for _, lt := range decoded {
			switch lt {
			case layers.LayerTypeTCP:
				sink += int(tcp.SrcPort) + len(tcp.Payload)
			case layers.LayerTypeUDP:
				sink += int(udp.SrcPort) + len(udp.Payload)
			}
		}
	}
	_ = sink
}

// BenchmarkGopacketDLPTCP: the common case alone.
func BenchmarkGopacketDLPTCP(b *testing.B) {
	frame := ser(b, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolTCP), tcp(1234, 443, TCPAck|TCPPsh), payload("0123456789abcdef"))
	var (
		eth     layers.Ethernet
		ip4     layers.IPv4
		tcp     layers.TCP
		pl      gopacket.Payload
		decoded = make([]gopacket.LayerType, 0, 16)
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &tcp, &pl)
	b.ReportAllocs()
	for b.Loop() {
		_ = parser.DecodeLayers(frame, &decoded)
	}
}

// BenchmarkGopacketNewPacket is gopacket's general API (what most Go
// sensors use), for scale.
func BenchmarkGopacketNewPacket(b *testing.B) {
	frames := benchFrames(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pkt := gopacket.NewPacket(frames[i%len(frames)], layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true, Lazy: true})
		_ = pkt.TransportLayer()
	}
}
