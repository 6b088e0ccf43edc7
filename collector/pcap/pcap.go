// Package pcap replays UDP datagrams from pcap and pcapng captures, for
// `flowlens decode FILE.pcap` and the decoder tests. It reads files with
// internal/pcapfile (gopacket's pure-Go pcapgo behind size guards) and
// parses the link, IP and UDP headers itself; it knows nothing about flow
// protocols.
package pcap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/google/gopacket/layers"

	"flowlens/internal/pcapfile"
)

// MaxSnapLen bounds the bytes kept per packet (internal/pcapfile's guard).
const MaxSnapLen = pcapfile.MaxSnapLen

// ErrFormat is returned for input that is neither pcap nor pcapng, or whose
// structure is invalid.
var ErrFormat = pcapfile.ErrFormat

// Datagram is one UDP datagram from a capture. Payload is only valid during
// the callback: copy it to keep it.
type Datagram struct {
	Payload   []byte
	Src, Dst  netip.AddrPort
	Timestamp time.Time
}

// Stats counts what ReadUDP saw besides the datagrams it yielded.
type Stats struct {
	Packets        uint64 // packets in the capture
	UDP            uint64 // UDP datagrams yielded
	Fragments      uint64 // IPv4/IPv6 fragments, skipped
	NotUDP         uint64 // non-UDP IP packets and non-IP frames, skipped
	Truncated      uint64 // packets cut short by the snapshot length
	UnknownLinkTyp uint64 // packets of a link type we do not parse
}

// link types beyond gopacket's uint8 LinkType enumeration.
const (
	linkTypeIPv4 = 228
	linkTypeIPv6 = 229
	linkTypeRaw2 = 12 // DLT_RAW on some BSDs
	linkTypeRaw3 = 14
)

// ReadUDP reads a pcap or pcapng capture from r and calls fn for each UDP
// datagram, in file order. An error from fn stops the read and is returned.
// A capture cut mid-packet (tcpdump killed) keeps what was read.
func ReadUDP(r io.Reader, fn func(d Datagram) error) (Stats, error) {
	var st Stats
	pr, err := pcapfile.NewReader(r)
	if err != nil {
		return st, err
	}
	for {
		data, ci, err := pr.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return st, nil
			}
			return st, fmt.Errorf("read packet %d: %w", st.Packets+1, err)
		}
		st.Packets++
		if ci.CaptureLength < ci.Length {
			st.Truncated++
		}
		d, ok := parseFrame(uint32(ci.LinkType), data, &st)
		if !ok {
			continue
		}
		d.Timestamp = ci.Timestamp
		st.UDP++
		if err := fn(d); err != nil {
			return st, err
		}
	}
}

// parseFrame finds the UDP datagram in one captured frame.
func parseFrame(link uint32, data []byte, st *Stats) (Datagram, bool) {
	var etype uint16
	switch link {
	case uint32(layers.LinkTypeEthernet):
		if len(data) < 14 {
			st.NotUDP++
			return Datagram{}, false
		}
		etype = binary.BigEndian.Uint16(data[12:])
		data = data[14:]
		for i := 0; i < 4 && (etype == 0x8100 || etype == 0x88a8 || etype == 0x9100); i++ {
			if len(data) < 4 {
				st.NotUDP++
				return Datagram{}, false
			}
			etype = binary.BigEndian.Uint16(data[2:])
			data = data[4:]
		}
	case uint32(layers.LinkTypeLinuxSLL):
		if len(data) < 16 {
			st.NotUDP++
			return Datagram{}, false
		}
		etype = binary.BigEndian.Uint16(data[14:])
		data = data[16:]
	case uint32(layers.LinkTypeNull), uint32(layers.LinkTypeLoop):
		if len(data) < 4 {
			st.NotUDP++
			return Datagram{}, false
		}
		// The family is in the writer's byte order (NULL) or big endian
		// (LOOP): look at the IP version nibble instead.
		data = data[4:]
	case uint32(layers.LinkTypeRaw), linkTypeRaw2, linkTypeRaw3, linkTypeIPv4, linkTypeIPv6:
	default:
		st.UnknownLinkTyp++
		return Datagram{}, false
	}
	if etype == 0 && len(data) > 0 {
		switch data[0] >> 4 {
		case 4:
			etype = 0x0800
		case 6:
			etype = 0x86dd
		}
	}
	var src, dst netip.Addr
	var udp []byte
	switch etype {
	case 0x0800:
		if len(data) < 20 || data[0]>>4 != 4 {
			st.NotUDP++
			return Datagram{}, false
		}
		ihl := int(data[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(data[2:]))
		if ihl < 20 || len(data) < ihl {
			st.NotUDP++
			return Datagram{}, false
		}
		if total >= ihl && total < len(data) {
			data = data[:total] // drop Ethernet padding
		}
		if binary.BigEndian.Uint16(data[6:])&0x3fff != 0 { // MF or offset
			st.Fragments++
			return Datagram{}, false
		}
		if data[9] != 17 {
			st.NotUDP++
			return Datagram{}, false
		}
		src = netip.AddrFrom4([4]byte(data[12:16]))
		dst = netip.AddrFrom4([4]byte(data[16:20]))
		udp = data[ihl:]
	case 0x86dd:
		if len(data) < 40 || data[0]>>4 != 6 {
			st.NotUDP++
			return Datagram{}, false
		}
		plen := int(binary.BigEndian.Uint16(data[4:]))
		next := data[6]
		src = netip.AddrFrom16([16]byte(data[8:24]))
		dst = netip.AddrFrom16([16]byte(data[24:40]))
		data = data[40:]
		if plen > 0 && plen < len(data) {
			data = data[:plen]
		}
		for i := 0; i < 8 && (next == 0 || next == 43 || next == 60); i++ {
			if len(data) < 8 || len(data) < (int(data[1])+1)*8 {
				st.NotUDP++
				return Datagram{}, false
			}
			next, data = data[0], data[(int(data[1])+1)*8:]
		}
		if next == 44 {
			st.Fragments++
			return Datagram{}, false
		}
		if next != 17 {
			st.NotUDP++
			return Datagram{}, false
		}
		udp = data
	default:
		st.NotUDP++
		return Datagram{}, false
	}
	if len(udp) < 8 {
		st.NotUDP++
		return Datagram{}, false
	}
	ulen := int(binary.BigEndian.Uint16(udp[4:]))
	payload := udp[8:]
	if ulen >= 8 && ulen-8 < len(payload) {
		payload = payload[:ulen-8]
	}
	return Datagram{
		Payload: payload,
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(udp[0:])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(udp[2:])),
	}, true
}
