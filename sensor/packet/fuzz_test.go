package packet

import (
	"reflect"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// fuzzLinks are the link types the fuzzer picks from with the input's
// first byte.
var fuzzLinks = []LinkType{LinkEthernet, LinkLinuxSLL, LinkLinuxSLL2, LinkNull, LinkLoop, LinkRaw, LinkIPv4, LinkIPv6, LinkType(147)}

func fuzzLinkIndex(l LinkType) byte {
	for i, fl := range fuzzLinks {
		if fl == l {
			return byte(i)
		}
	}
	return 0
}

// FuzzParse checks that Parse never panics or reads outside the frame, and
// that what it returns is consistent. Seeds: a few packets of every corpus
// capture and the tunnel frames of TestParse.
func FuzzParse(f *testing.F) {
	for _, file := range corpusFiles(f) {
		for i, fr := range readCapture(f, file) {
			if i >= 8 {
				break
			}
			f.Add(append([]byte{fuzzLinkIndex(fr.link)}, fr.data...))
		}
	}
	inner := ser(f, eth(layers.EthernetTypeIPv4), ipv4(ip4C, ip4D, layers.IPProtocolTCP), tcp(40000, 443, TCPSyn), payload("hello"))
	for _, fr := range [][]byte{
		ser(f, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolGRE), &layers.GRE{KeyPresent: true, Key: 7, Protocol: layers.EthernetTypeTransparentEthernetBridging}, gopacket.Payload(inner)),
		ser(f, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolGRE), &layers.GRE{SeqPresent: true, Protocol: layers.EthernetTypeERSPAN}, &layers.ERSPANII{Version: 1, SessionID: 4}, gopacket.Payload(inner)),
		ser(f, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolUDP), udp(1, 4789), &layers.VXLAN{ValidIDFlag: true, VNI: 1}, gopacket.Payload(inner)),
		ser(f, eth(layers.EthernetTypeIPv4), ipv4(ip4A, ip4B, layers.IPProtocolUDP), udp(2152, 2152), &layers.GTPv1U{Version: 1, ProtocolType: 1, MessageType: 255, TEID: 1}, gopacket.Payload(inner[14:])),
		ser(f, eth(layers.EthernetTypeMPLSUnicast), &layers.MPLS{Label: 3, StackBottom: true}, ipv6(ip6A, ip6B, layers.IPProtocolIPv6HopByHop), gopacket.Payload([]byte{17, 0, 1, 4, 0, 0, 0, 0, 0, 1, 0, 2, 0, 8, 0, 0})),
	} {
		f.Add(append([]byte{0}, fr...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		link := fuzzLinks[int(in[0])%len(fuzzLinks)]
		frame := in[1:]
		var p, q Packet
		err := Parse(link, frame, &p)
		if err != nil {
			if _, ok := err.(Error); !ok {
				t.Fatalf("error %v is not a packet.Error", err)
			}
		}
		if err2 := Parse(link, frame, &q); err2 != err || !same(&p, &q) {
			t.Fatalf("Parse is not deterministic")
		}
		if p.Len != len(frame) || p.CapLen != len(frame) {
			t.Fatalf("Len %d CapLen %d for %d bytes", p.Len, p.CapLen, len(frame))
		}
		if p.L3Off < 0 || p.L3Off > len(frame) || p.L4Off < 0 || p.L4Off > len(frame) {
			t.Fatalf("offsets %d/%d outside %d bytes", p.L3Off, p.L4Off, len(frame))
		}
		if len(p.Payload) > 0 {
			i := indexOf(frame, p.Payload)
			if i < 0 || i < p.L4Off || i+len(p.Payload) > len(frame) {
				t.Fatalf("payload at %d (len %d) outside the frame after %d", i, len(p.Payload), p.L4Off)
			}
			if cap(p.Payload) != len(p.Payload) {
				t.Fatalf("payload capacity %d > length %d", cap(p.Payload), len(p.Payload))
			}
		}
		if err == nil {
			if !p.SrcIP.IsValid() || !p.DstIP.IsValid() {
				t.Fatalf("no error but no addresses")
			}
			if p.IsIPv6 != p.SrcIP.Is6() || p.IsIPv6 != p.DstIP.Is6() {
				t.Fatalf("IsIPv6 %v for %s > %s", p.IsIPv6, p.SrcIP, p.DstIP)
			}
			if p.PayloadLen < len(p.Payload) {
				t.Fatalf("PayloadLen %d < len(Payload) %d", p.PayloadLen, len(p.Payload))
			}
			if p.Tunnel != TunnelNone && p.Tunnel != TunnelTeredo && p.Flags&FlagTunnelInnerError == 0 && !p.OuterSrcIP.IsValid() {
				t.Fatalf("tunnel %v without outer endpoints", p.Tunnel)
			}
		}
	})
}

func same(p, q *Packet) bool {
	if string(p.Payload) != string(q.Payload) {
		return false
	}
	a, b := *p, *q
	a.Payload, b.Payload = nil, nil
	return reflect.DeepEqual(a, b)
}
