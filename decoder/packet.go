package decoder

import (
	"encoding/binary"
	"net/netip"

	"flowlens/schema"
)

// sFlow sampled header protocols (SFLOW-STRUCTS5 header_protocol).
const (
	headerProtoEthernet = 1
	headerProtoIPv4     = 11
	headerProtoIPv6     = 12
)

// Ethernet types the header parser follows.
const (
	etypeIPv4   = 0x0800
	etypeIPv6   = 0x86dd
	etypeVLAN   = 0x8100
	etypeQinQ   = 0x88a8
	etypeQinQ2  = 0x9100
	etypeMPLS   = 0x8847
	etypeMPLSMc = 0x8848
)

// ParseHeader fills the L2-L4 fields of f from the first bytes of a sampled
// packet (sFlow raw packet header). proto is the sFlow header_protocol
// (1 Ethernet, 11 IPv4, 12 IPv6). It never allocates and never reads past
// data; a truncated header leaves the fields it could not reach untouched.
// It reports whether an IP header was found.
func ParseHeader(proto uint32, data []byte, f *schema.Flow) bool {
	switch proto {
	case headerProtoEthernet:
		return parseEthernet(data, f)
	case headerProtoIPv4:
		return parseIPv4(data, f)
	case headerProtoIPv6:
		return parseIPv6(data, f)
	}
	return false
}

func mac48(b []byte) uint64 {
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

func parseEthernet(data []byte, f *schema.Flow) bool {
	if len(data) < 14 {
		return false
	}
	f.DstMAC = mac48(data[0:6])
	f.SrcMAC = mac48(data[6:12])
	etype := binary.BigEndian.Uint16(data[12:14])
	data = data[14:]
	// VLAN tags: the outermost tag gives SrcVlan when the exporter did not
	// send extended switch data; QinQ stacks are skipped.
	for tags := 0; (etype == etypeVLAN || etype == etypeQinQ || etype == etypeQinQ2) && tags < 4; tags++ {
		if len(data) < 4 {
			return false
		}
		if f.SrcVlan == 0 {
			f.SrcVlan = binary.BigEndian.Uint16(data[0:2]) & 0x0fff
		}
		etype = binary.BigEndian.Uint16(data[2:4])
		data = data[4:]
	}
	if etype == etypeMPLS || etype == etypeMPLSMc {
		for {
			if len(data) < 4 {
				return false
			}
			entry := binary.BigEndian.Uint32(data[0:4])
			data = data[4:]
			if f.MPLSLabelsLen < schema.MaxMPLSLabels {
				f.MPLSLabels[f.MPLSLabelsLen] = entry >> 12
				f.MPLSLabelsLen++
			}
			if entry&0x100 != 0 { // bottom of stack
				break
			}
		}
		if len(data) < 1 {
			return false
		}
		switch data[0] >> 4 {
		case 4:
			etype = etypeIPv4
		case 6:
			etype = etypeIPv6
		default:
			return false
		}
	}
	switch etype {
	case etypeIPv4:
		return parseIPv4(data, f)
	case etypeIPv6:
		return parseIPv6(data, f)
	}
	if f.EType == 0 {
		f.EType = etype
	}
	return false
}

func parseIPv4(data []byte, f *schema.Flow) bool {
	if len(data) < 20 || data[0]>>4 != 4 {
		return false
	}
	ihl := int(data[0]&0x0f) * 4
	if ihl < 20 {
		return false
	}
	f.EType = etypeIPv4
	f.IPTos = data[1]
	f.IPTTL = data[8]
	f.IPProtocol = data[9]
	f.SrcAddr = netip.AddrFrom4([4]byte(data[12:16]))
	f.DstAddr = netip.AddrFrom4([4]byte(data[16:20]))
	// Only the first fragment holds the transport header.
	if binary.BigEndian.Uint16(data[6:8])&0x1fff != 0 || len(data) < ihl {
		return true
	}
	parseL4(f.IPProtocol, data[ihl:], f)
	return true
}

func parseIPv6(data []byte, f *schema.Flow) bool {
	if len(data) < 40 || data[0]>>4 != 6 {
		return false
	}
	f.EType = etypeIPv6
	f.IPTos = uint8(binary.BigEndian.Uint16(data[0:2]) >> 4)
	f.IPTTL = data[7]
	next := data[6]
	f.SrcAddr = netip.AddrFrom16([16]byte(data[8:24]))
	f.DstAddr = netip.AddrFrom16([16]byte(data[24:40]))
	data = data[40:]
	// Walk a bounded number of extension headers to the transport header.
	for i := 0; i < 8; i++ {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(data) < 8 {
				f.IPProtocol = next
				return true
			}
			n := (int(data[1]) + 1) * 8
			next = data[0]
			if len(data) < n {
				f.IPProtocol = next
				return true
			}
			data = data[n:]
			continue
		case 44: // fragment
			if len(data) < 8 {
				f.IPProtocol = next
				return true
			}
			next = data[0]
			offset := binary.BigEndian.Uint16(data[2:4]) >> 3
			f.IPProtocol = next
			if offset != 0 {
				return true
			}
			data = data[8:]
			continue
		}
		break
	}
	f.IPProtocol = next
	parseL4(next, data, f)
	return true
}

func parseL4(proto uint8, data []byte, f *schema.Flow) {
	switch proto {
	case 6: // TCP
		if len(data) >= 14 {
			f.TCPFlags = data[13]
		}
		fallthrough
	case 17, 132, 136: // UDP, SCTP, UDP-Lite: ports first
		if len(data) >= 4 {
			f.SrcPort = binary.BigEndian.Uint16(data[0:2])
			f.DstPort = binary.BigEndian.Uint16(data[2:4])
		}
	case 1, 58: // ICMP, ICMPv6
		if len(data) >= 2 {
			f.ICMPType = data[0]
			f.ICMPCode = data[1]
		}
	}
}
