// Package pcap replays UDP datagrams from pcap and pcapng captures, for
// `flowlens decode FILE.pcap` and the decoder tests. It reads files with
// gopacket's pure-Go pcapgo (no libpcap, no cgo) and parses the link, IP
// and UDP headers itself; it knows nothing about flow protocols.
package pcap

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// MaxSnapLen bounds the bytes kept per packet. pcapgo allocates the
// snapshot length a file claims before reading; a hostile header must not
// make it allocate gigabytes.
const MaxSnapLen = 256 << 10

// MaxPcapngSize bounds a pcapng input, which is read and checked in memory
// before pcapgo parses it.
const MaxPcapngSize = 1 << 30

// ErrFormat is returned for input that is neither pcap nor pcapng, or whose
// structure is invalid.
var ErrFormat = errors.New("not a valid pcap or pcapng capture")

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
func ReadUDP(r io.Reader, fn func(d Datagram) error) (Stats, error) {
	var st Stats
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil {
		return st, fmt.Errorf("read capture header: %w", ErrFormat)
	}
	type source interface {
		ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var src source
	linkOf := func(ci gopacket.CaptureInfo) layers.LinkType { return 0 }
	if binary.BigEndian.Uint32(magic) == 0x0a0d0d0a {
		data, err := io.ReadAll(io.LimitReader(br, MaxPcapngSize+1))
		if err != nil {
			return st, fmt.Errorf("read pcapng: %w", err)
		}
		if len(data) > MaxPcapngSize {
			return st, fmt.Errorf("pcapng larger than %d bytes: %w", MaxPcapngSize, ErrFormat)
		}
		if err := checkPcapng(data); err != nil {
			return st, err
		}
		ng, err := pcapgo.NewNgReader(bytes.NewReader(data), pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return st, fmt.Errorf("pcapng: %w: %w", ErrFormat, err)
		}
		src = ng
		linkOf = func(ci gopacket.CaptureInfo) layers.LinkType {
			if len(ci.AncillaryData) > 0 {
				if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok {
					return lt
				}
			}
			return ng.LinkType()
		}
	} else {
		hdr, err := br.Peek(24)
		if err != nil {
			return st, fmt.Errorf("read pcap header: %w", ErrFormat)
		}
		fixed, err := clampPcapHeader(hdr)
		if err != nil {
			return st, err
		}
		if _, err := br.Discard(24); err != nil {
			return st, fmt.Errorf("read pcap header: %w", err)
		}
		pr, err := pcapgo.NewReader(io.MultiReader(bytes.NewReader(fixed), br))
		if err != nil {
			return st, fmt.Errorf("pcap: %w: %w", ErrFormat, err)
		}
		src = pr
		lt := pr.LinkType()
		linkOf = func(gopacket.CaptureInfo) layers.LinkType { return lt }
	}
	for {
		data, ci, err := src.ZeroCopyReadPacketData()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return st, nil
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				// A capture cut mid-packet (tcpdump killed): keep what we read.
				return st, nil
			}
			return st, fmt.Errorf("read packet %d: %w: %w", st.Packets+1, ErrFormat, err)
		}
		st.Packets++
		if ci.CaptureLength < ci.Length {
			st.Truncated++
		}
		d, ok := parseFrame(uint32(linkOf(ci)), data, &st)
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

// clampPcapHeader checks a classic pcap global header and returns a copy
// whose snapshot length is at most MaxSnapLen.
func clampPcapHeader(hdr []byte) ([]byte, error) {
	var order binary.ByteOrder
	switch binary.LittleEndian.Uint32(hdr) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		order = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		return nil, fmt.Errorf("magic %x: %w", hdr[:4], ErrFormat)
	}
	fixed := bytes.Clone(hdr)
	if snap := order.Uint32(fixed[16:]); snap == 0 || snap > MaxSnapLen {
		order.PutUint32(fixed[16:], MaxSnapLen)
	}
	return fixed, nil
}

// checkPcapng walks the blocks of an in-memory pcapng file and rejects what
// would make pcapgo allocate beyond the file (packet or option lengths
// larger than their block) or loop; it clamps interface snapshot lengths.
func checkPcapng(data []byte) error {
	var order binary.ByteOrder = binary.LittleEndian
	for off := 0; off < len(data); {
		if len(data)-off < 12 {
			return fmt.Errorf("pcapng block at %d: %w", off, ErrFormat)
		}
		typ := order.Uint32(data[off:])
		if binary.LittleEndian.Uint32(data[off:]) == 0x0a0d0d0a {
			typ = 0x0a0d0d0a
			switch binary.LittleEndian.Uint32(data[off+8:]) {
			case 0x1a2b3c4d:
				order = binary.LittleEndian
			case 0x4d3c2b1a:
				order = binary.BigEndian
			default:
				return fmt.Errorf("pcapng byte order: %w", ErrFormat)
			}
		}
		length := int(order.Uint32(data[off+4:]))
		if length < 12 || length%4 != 0 || length > len(data)-off {
			return fmt.Errorf("pcapng block length %d at %d: %w", length, off, ErrFormat)
		}
		block := data[off : off+length]
		switch typ {
		case 0x0a0d0d0a: // section header
			if length < 28 {
				return fmt.Errorf("pcapng section header: %w", ErrFormat)
			}
		case 1: // interface description
			if length < 20 {
				return fmt.Errorf("pcapng interface block: %w", ErrFormat)
			}
			if snap := order.Uint32(block[12:]); snap == 0 || snap > MaxSnapLen {
				order.PutUint32(block[12:], MaxSnapLen)
			}
		case 6: // enhanced packet
			if length < 32 || int(order.Uint32(block[20:])) > length-32 {
				return fmt.Errorf("pcapng packet length at %d: %w", off, ErrFormat)
			}
		case 2: // obsolete packet block
			if length < 32 || int(order.Uint32(block[20:])) > length-32 {
				return fmt.Errorf("pcapng packet length at %d: %w", off, ErrFormat)
			}
		case 3: // simple packet
			if length < 16 || int(order.Uint32(block[8:])) > length-16 {
				return fmt.Errorf("pcapng simple packet length at %d: %w", off, ErrFormat)
			}
		}
		off += length
	}
	return nil
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
