// Package scenario writes synthetic captures for end-to-end tests: well
// formed Ethernet/IPv4 frames of TCP and UDP conversations (handshake,
// payloads in both directions, FIN), with payload builders for the
// protocols the detections care about (SSH, RDP, TLS ClientHello with an
// SNI, DNS queries and answers). The captures are generated, so tests own
// their data and their expected results; gopacket serialises the headers.
package scenario

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Capture accumulates frames in pcap format, 1 ms apart unless told.
type Capture struct {
	buf  bytes.Buffer
	w    *pcapgo.Writer
	now  time.Time
	step time.Duration
	err  error
}

// New starts a capture whose first frame is at start.
func New(start time.Time) *Capture {
	c := &Capture{now: start, step: time.Millisecond}
	c.w = pcapgo.NewWriter(&c.buf)
	c.err = c.w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	return c
}

// Bytes returns the pcap file, or the first error met while writing it.
func (c *Capture) Bytes() ([]byte, error) { return c.buf.Bytes(), c.err }

// Advance moves the capture clock.
func (c *Capture) Advance(d time.Duration) { c.now = c.now.Add(d) }

var (
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	serverMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

func (c *Capture) frame(src, dst netip.AddrPort, l4 gopacket.SerializableLayer, net4 gopacket.NetworkLayer, payload []byte, fromClient bool) {
	if c.err != nil {
		return
	}
	eth := &layers.Ethernet{SrcMAC: clientMAC, DstMAC: serverMAC, EthernetType: layers.EthernetTypeIPv4}
	if !fromClient {
		eth.SrcMAC, eth.DstMAC = serverMAC, clientMAC
	}
	ip := net4.(*layers.IPv4)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, l4, gopacket.Payload(payload)); err != nil {
		c.err = err
		return
	}
	data := buf.Bytes()
	c.err = c.w.WritePacket(gopacket.CaptureInfo{Timestamp: c.now, CaptureLength: len(data), Length: len(data)}, data)
	c.now = c.now.Add(c.step)
}

func ipv4(src, dst netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// Msg is one payload of a conversation and its direction.
type Msg struct {
	ToServer bool
	Data     []byte
}

// Client and Server build Msgs.
func Client(b []byte) Msg { return Msg{true, b} }
func Server(b []byte) Msg { return Msg{false, b} }

// TCP writes a whole TCP connection: three-way handshake, the messages in
// order (each acknowledged by the other side), FIN from the client.
func (c *Capture) TCP(client, server netip.AddrPort, msgs ...Msg) {
	seq := [2]uint32{1000, 5000} // client, server
	send := func(fromClient bool, flags func(*layers.TCP), payload []byte) {
		src, dst := client, server
		i, j := 0, 1
		if !fromClient {
			src, dst, i, j = server, client, 1, 0
		}
		t := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq[i], Ack: seq[j], Window: 65535}
		flags(t)
		ip := ipv4(src.Addr(), dst.Addr(), layers.IPProtocolTCP)
		_ = t.SetNetworkLayerForChecksum(ip)
		c.frame(src, dst, t, ip, payload, fromClient)
		seq[i] += uint32(len(payload))
		if t.SYN || t.FIN {
			seq[i]++
		}
	}
	send(true, func(t *layers.TCP) { t.SYN, t.Ack = true, 0 }, nil)
	send(false, func(t *layers.TCP) { t.SYN, t.ACK = true, true }, nil)
	send(true, func(t *layers.TCP) { t.ACK = true }, nil)
	for _, m := range msgs {
		send(m.ToServer, func(t *layers.TCP) { t.ACK, t.PSH = true, true }, m.Data)
		send(!m.ToServer, func(t *layers.TCP) { t.ACK = true }, nil)
	}
	send(true, func(t *layers.TCP) { t.FIN, t.ACK = true, true }, nil)
	send(false, func(t *layers.TCP) { t.FIN, t.ACK = true, true }, nil)
	send(true, func(t *layers.TCP) { t.ACK = true }, nil)
}

// UDP writes datagrams between client and server.
func (c *Capture) UDP(client, server netip.AddrPort, msgs ...Msg) {
	for _, m := range msgs {
		src, dst := client, server
		if !m.ToServer {
			src, dst = server, client
		}
		u := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
		ip := ipv4(src.Addr(), dst.Addr(), layers.IPProtocolUDP)
		_ = u.SetNetworkLayerForChecksum(ip)
		c.frame(src, dst, u, ip, m.Data, m.ToServer)
	}
}

// SSHBanner is an SSH identification string.
func SSHBanner(software string) []byte { return []byte("SSH-2.0-" + software + "\r\n") }

// RDPConnectionRequest is an X.224 Connection Request in a TPKT with the
// mstshash cookie and an RDP negotiation request (TLS), as mstsc sends.
func RDPConnectionRequest(user string) []byte {
	cookie := []byte("Cookie: mstshash=" + user + "\r\n")
	neg := []byte{1, 0, 8, 0, 3, 0, 0, 0} // RDP_NEG_REQ, PROTOCOL_SSL|HYBRID
	cotp := append([]byte{0, 0xe0, 0, 0, 0, 0, 0}, cookie...)
	cotp = append(cotp, neg...)
	cotp[0] = byte(len(cotp) - 1)
	tpkt := []byte{3, 0, 0, 0}
	binary.BigEndian.PutUint16(tpkt[2:], uint16(4+len(cotp)))
	return append(tpkt, cotp...)
}

// TLSClientHello is a TLS 1.2/1.3 ClientHello record offering sni and
// ALPN h2/http1.1.
func TLSClientHello(sni string) []byte {
	ext := func(typ uint16, body []byte) []byte {
		return append(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, typ), uint16(len(body))), body...)
	}
	name := append([]byte{0}, binary.BigEndian.AppendUint16(nil, uint16(len(sni)))...)
	name = append(name, sni...)
	sniExt := ext(0, append(binary.BigEndian.AppendUint16(nil, uint16(len(name))), name...))
	alpnList := []byte{2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'}
	alpn := ext(16, append(binary.BigEndian.AppendUint16(nil, uint16(len(alpnList))), alpnList...))
	versions := ext(43, []byte{4, 0x03, 0x04, 0x03, 0x03})
	groups := ext(10, []byte{0, 4, 0, 0x1d, 0, 0x17})
	sigs := ext(13, []byte{0, 4, 0x04, 0x03, 0x08, 0x04})
	exts := bytes.Join([][]byte{sniExt, groups, sigs, alpn, versions}, nil)
	body := []byte{0x03, 0x03}
	body = append(body, make([]byte, 32)...)                      // random
	body = append(body, 0)                                        // session id
	body = append(body, 0, 6, 0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f) // cipher suites
	body = append(body, 1, 0)                                     // compression
	body = append(body, binary.BigEndian.AppendUint16(nil, uint16(len(exts)))...)
	body = append(body, exts...)
	hs := append([]byte{1, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	rec := []byte{0x16, 0x03, 0x01, byte(len(hs) >> 8), byte(len(hs))}
	return append(rec, hs...)
}

// DNS types and response codes used by the scenarios.
const (
	TypeA    = 1
	TypeNULL = 10
	TypeTXT  = 16
	TypeAAAA = 28
	NXDomain = 3
)

func qname(name string) []byte {
	var b []byte
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

// DNSQuery is a recursive query for name.
func DNSQuery(id uint16, name string, qtype uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0)
	b = append(b, qname(name)...)
	return append(binary.BigEndian.AppendUint16(b, qtype), 0, 1)
}

// DNSAnswer answers a query with rcode and, for A queries, the addresses.
func DNSAnswer(id uint16, name string, qtype uint16, rcode uint8, addrs ...netip.Addr) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 0x81, 0x80|rcode, 0, 1, 0, byte(len(addrs)), 0, 0, 0, 0)
	b = append(b, qname(name)...)
	b = append(binary.BigEndian.AppendUint16(b, qtype), 0, 1)
	for _, a := range addrs {
		b = append(b, 0xc0, 12, 0, TypeA, 0, 1, 0, 0, 0x0e, 0x10, 0, 4)
		b = append(b, a.AsSlice()...)
	}
	return b
}
