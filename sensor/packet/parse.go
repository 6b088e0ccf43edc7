package packet

import (
	"encoding/binary"
	"net/netip"
)

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

// Ethertypes the parser follows. etherTypeByVersion is not on the wire: it
// asks etherType to pick IPv4 or IPv6 from the version nibble (raw IP link
// types, MPLS and GTP payloads).
const (
	etherTypeIPv4       = 0x0800
	etherTypeIPv6       = 0x86dd
	etherTypeVLAN       = 0x8100
	etherTypeQinQ       = 0x88a8
	etherTypeQinQOld1   = 0x9100
	etherTypeQinQOld2   = 0x9200
	etherTypeMPLS       = 0x8847
	etherTypeMPLSMcast  = 0x8848
	etherTypePPPoE      = 0x8864
	etherTypeTEB        = 0x6558 // transparent Ethernet bridging: an Ethernet frame follows
	etherTypeERSPAN2    = 0x88be
	etherTypeERSPAN3    = 0x22eb
	etherTypePPP        = 0x880b
	etherTypeByVersion  = 0
	pppProtoIPv4        = 0x0021
	pppProtoIPv6        = 0x0057
	vxlanFlagVNIPresent = 0x08
)

// Parse parses frame, whose link-layer header is link, into p. It never
// allocates and never reads outside frame. A nil error means p holds an IP
// packet and, unless it is a later fragment, its transport header; an
// Error says why not (fields reached before it are filled).
func Parse(link LinkType, frame []byte, p *Packet) error {
	*p = Packet{Len: len(frame), CapLen: len(frame), Link: link}
	switch link {
	case LinkEthernet:
		return p.ethernet(frame, 0, 0)
	case LinkLinuxSLL:
		if len(frame) < 16 {
			return ErrTruncated
		}
		return p.etherType(frame, 16, be16(frame[14:]), 0)
	case LinkLinuxSLL2:
		if len(frame) < 20 {
			return ErrTruncated
		}
		return p.etherType(frame, 20, be16(frame[0:]), 0)
	case LinkNull, LinkLoop:
		// The address family is in the writer's byte order (NULL) and its
		// IPv6 value differs between systems: the version nibble is simpler.
		if len(frame) < 4 {
			return ErrTruncated
		}
		return p.etherType(frame, 4, etherTypeByVersion, 0)
	case LinkRaw, linkRawBSD12, linkRawBSD14:
		return p.etherType(frame, 0, etherTypeByVersion, 0)
	case LinkIPv4:
		return p.ipv4(frame, 0, 0)
	case LinkIPv6:
		return p.ipv6(frame, 0, 0)
	}
	return ErrLinkType
}

func (p *Packet) ethernet(b []byte, off, depth int) error {
	if len(b)-off < 14 {
		return ErrTruncated
	}
	return p.etherType(b, off+14, be16(b[off+12:]), depth)
}

// etherType parses what follows a link header of type et at b[off:].
func (p *Packet) etherType(b []byte, off int, et uint16, depth int) error {
	for {
		switch et {
		case etherTypeIPv4:
			return p.ipv4(b, off, depth)
		case etherTypeIPv6:
			return p.ipv6(b, off, depth)
		case etherTypeVLAN, etherTypeQinQ, etherTypeQinQOld1, etherTypeQinQOld2:
			if p.VLANTags >= maxVLANTags {
				return ErrTooManyHeaders
			}
			if len(b)-off < 4 {
				return ErrTruncated
			}
			id := be16(b[off:]) & 0x0fff
			switch p.VLANTags {
			case 0:
				p.VLAN = id
			case 1:
				p.InnerVLAN = id
			}
			p.VLANTags++
			et = be16(b[off+2:])
			off += 4
		case etherTypeMPLS, etherTypeMPLSMcast:
			return p.mpls(b, off, depth)
		case etherTypePPPoE:
			// Session stage: version/type, code, session id, length, then
			// the PPP protocol number.
			if len(b)-off < 8 {
				return ErrTruncated
			}
			switch be16(b[off+6:]) {
			case pppProtoIPv4:
				return p.ipv4(b, off+8, depth)
			case pppProtoIPv6:
				return p.ipv6(b, off+8, depth)
			}
			return ErrEtherType
		case etherTypeTEB:
			return p.ethernet(b, off, depth)
		case etherTypeByVersion:
			if len(b)-off < 1 {
				return ErrTruncated
			}
			switch b[off] >> 4 {
			case 4:
				return p.ipv4(b, off, depth)
			case 6:
				return p.ipv6(b, off, depth)
			}
			return ErrBadIPHeader
		default:
			return ErrEtherType
		}
	}
}

func (p *Packet) mpls(b []byte, off, depth int) error {
	for n := 0; ; n++ {
		if n >= maxMPLSLabels {
			return ErrTooManyHeaders
		}
		if len(b)-off < 4 {
			return ErrTruncated
		}
		bottom := b[off+2]&0x01 != 0
		off += 4
		if p.MPLS < 255 {
			p.MPLS++
		}
		if bottom {
			break
		}
	}
	if len(b)-off < 1 {
		return ErrTruncated
	}
	// MPLS does not say what it carries: IP by its version nibble, or an
	// Ethernet pseudowire behind a control word (first nibble 0, RFC 4385).
	switch b[off] >> 4 {
	case 4:
		return p.ipv4(b, off, depth)
	case 6:
		return p.ipv6(b, off, depth)
	case 0:
		return p.ethernet(b, off+4, depth)
	}
	return ErrEtherType
}

func (p *Packet) ipv4(b []byte, off, depth int) error {
	if len(b)-off < 20 {
		return ErrTruncated
	}
	h := b[off:]
	if h[0]>>4 != 4 {
		return ErrBadIPHeader
	}
	ihl := int(h[0]&0x0f) << 2
	total := int(be16(h[2:]))
	if total == 0 {
		// Segmentation offload (TSO, BIG TCP) leaves the length to the NIC:
		// what was captured is the packet.
		total = len(h)
	}
	if ihl < 20 || total < ihl {
		return ErrBadIPHeader
	}
	if len(h) < ihl {
		return ErrTruncated
	}
	p.IsIPv6 = false
	p.EtherType = etherTypeIPv4
	p.L3Off = off
	p.IPLen = total
	p.TOS = h[1]
	p.TTL = h[8]
	p.Proto = h[9]
	p.SrcIP = netip.AddrFrom4([4]byte(h[12:16]))
	p.DstIP = netip.AddrFrom4([4]byte(h[16:20]))
	if ihl > 20 {
		p.Flags |= FlagIPOptions
	}
	end, cut := off+total, 0
	if end > len(b) {
		cut = end - len(b)
		end = len(b)
		p.Flags |= FlagTruncated
	}
	if ff := be16(h[6:]); ff&0x3fff != 0 { // more fragments, or an offset
		p.FragID = uint32(be16(h[4:]))
		if ff&0x1fff != 0 {
			p.Frag = FragLater
			return nil
		}
		p.Frag = FragFirst
	}
	return p.transport(b[:end], off+ihl, h[9], cut, depth)
}

func (p *Packet) ipv6(b []byte, off, depth int) error {
	if len(b)-off < 40 {
		return ErrTruncated
	}
	h := b[off:]
	if h[0]>>4 != 6 {
		return ErrBadIPHeader
	}
	plen := int(be16(h[4:]))
	if plen == 0 {
		// A jumbogram (RFC 2675) or segmentation offload: the length is
		// elsewhere or nowhere; what was captured is the packet.
		plen = len(h) - 40
	}
	p.IsIPv6 = true
	p.EtherType = etherTypeIPv6
	p.L3Off = off
	p.IPLen = 40 + plen
	p.TOS = uint8(be16(h[0:]) >> 4)
	p.TTL = h[7]
	p.SrcIP = netip.AddrFrom16([16]byte(h[8:24]))
	p.DstIP = netip.AddrFrom16([16]byte(h[24:40]))
	end, cut := off+40+plen, 0
	if end > len(b) {
		cut = end - len(b)
		end = len(b)
		p.Flags |= FlagTruncated
	}
	next := h[6]
	p.Proto = next
	o := off + 40
	// short is the error for a header that does not fit: cut by the
	// capture, or longer than the IP packet says it is.
	short := ErrBadIPHeader
	if cut > 0 {
		short = ErrTruncated
	}
	for n := 0; ; n++ {
		switch next {
		case 0, 43, 60, ProtoAH: // hop-by-hop, routing, destination options, AH
			if n >= maxIPv6Ext {
				return ErrTooManyHeaders
			}
			if end-o < 2 {
				return short
			}
			size := (int(b[o+1]) + 1) << 3
			if next == ProtoAH {
				size = (int(b[o+1]) + 2) << 2
			}
			if end-o < size {
				return short
			}
			next = b[o]
			p.Proto = next
			o += size
			p.Flags |= FlagIPOptions
		case 44: // fragment
			if n >= maxIPv6Ext {
				return ErrTooManyHeaders
			}
			if end-o < 8 {
				return short
			}
			fo := be16(b[o+2:])
			id := be32(b[o+4:])
			next = b[o]
			p.Proto = next
			o += 8
			switch {
			case fo>>3 != 0:
				p.Frag, p.FragID = FragLater, id
				return nil
			case fo&1 != 0:
				p.Frag, p.FragID = FragFirst, id
			}
			// Offset 0 without more fragments is an atomic fragment
			// (RFC 6946): a whole packet.
		default:
			return p.transport(b[:end], o, next, cut, depth)
		}
	}
}

// transport parses the header of protocol proto at b[off:]; b ends where
// the IP packet ends (or the capture, cut bytes earlier).
func (p *Packet) transport(b []byte, off int, proto uint8, cut, depth int) error {
	p.Proto = proto
	p.L4Off = off
	short := ErrBadL4Header
	if cut > 0 {
		short = ErrTruncated
	}
	switch proto {
	case ProtoTCP:
		if len(b)-off < 20 {
			return short
		}
		h := b[off:]
		doff := int(h[12]>>4) << 2
		p.SrcPort = be16(h[0:])
		p.DstPort = be16(h[2:])
		p.Seq = be32(h[4:])
		p.Ack = be32(h[8:])
		p.TCPFlags = h[13]
		if doff < 20 {
			return ErrBadL4Header
		}
		if len(h) < doff {
			return short
		}
		p.setPayload(b, off+doff, len(b)+cut)
		return nil
	case ProtoUDP:
		if len(b)-off < 8 {
			return short
		}
		h := b[off:]
		p.SrcPort = be16(h[0:])
		p.DstPort = be16(h[2:])
		ulen := int(be16(h[4:]))
		switch {
		case ulen >= 8:
			wireEnd := off + ulen
			if wireEnd < len(b) {
				b = b[:wireEnd] // the IP packet is longer than the datagram
			} else if wireEnd > len(b)+cut {
				wireEnd = len(b) + cut // the datagram claims more than the IP packet
			}
			p.setPayload(b, off+8, wireEnd)
		case ulen == 0: // jumbogram
			p.setPayload(b, off+8, len(b)+cut)
		default:
			return ErrBadL4Header
		}
		if p.Frag == FragNone && depth < maxTunnels {
			return p.udpTunnel(b, off+8, depth)
		}
		return nil
	case ProtoUDPLite, ProtoSCTP, ProtoDCCP:
		// Ports first in all three; the header is 8, 12 and at least 12 bytes.
		hl := 8
		if proto != ProtoUDPLite {
			hl = 12
		}
		if len(b)-off < hl {
			return short
		}
		p.SrcPort = be16(b[off:])
		p.DstPort = be16(b[off+2:])
		if proto == ProtoDCCP {
			if doff := int(b[off+4]) << 2; doff > hl && doff <= len(b)-off {
				hl = doff
			}
		}
		p.setPayload(b, off+hl, len(b)+cut)
		return nil
	case ProtoICMP, ProtoICMPv6:
		if len(b)-off < 4 {
			return short
		}
		p.ICMPType = b[off]
		p.ICMPCode = b[off+1]
		if len(b)-off >= 8 {
			p.setPayload(b, off+8, len(b)+cut)
		} else {
			p.setPayload(b, len(b), len(b)+cut)
		}
		return nil
	case ProtoAH:
		// Reached only in IPv4 (IPv6 walks AH as an extension header).
		if len(b)-off < 2 {
			return short
		}
		size := (int(b[off+1]) + 2) << 2
		if len(b)-off < size {
			return short
		}
		p.Flags |= FlagIPOptions
		return p.transport(b, off+size, b[off], cut, depth)
	}
	p.setPayload(b, off, len(b)+cut)
	if p.Frag != FragNone || depth >= maxTunnels {
		return nil
	}
	switch proto {
	case ProtoIPIP:
		return p.decap(TunnelIPinIP, 0, b, off, etherTypeIPv4, depth)
	case ProtoIPv6:
		return p.decap(TunnelIPinIP, 0, b, off, etherTypeIPv6, depth)
	case ProtoGRE:
		return p.gre(b, off, depth)
	}
	return nil
}

// setPayload sets the payload to b[start:] and its header length to
// wireEnd-start.
func (p *Packet) setPayload(b []byte, start, wireEnd int) {
	p.Payload = b[start:len(b):len(b)]
	p.PayloadLen = wireEnd - start
}

// decap parses the packet of ethertype et at b[off:] as the flow's packet,
// remembering the outer endpoints. If the inner packet cannot be parsed,
// p goes back to the outer packet, flagged.
func (p *Packet) decap(kind TunnelKind, id uint32, b []byte, off int, et uint16, depth int) error {
	outer := *p
	if p.Tunnel == TunnelNone {
		p.OuterSrcIP, p.OuterDstIP = p.SrcIP, p.DstIP
	}
	p.Tunnel, p.TunnelID = kind, id
	p.SrcPort, p.DstPort, p.TCPFlags, p.Seq, p.Ack = 0, 0, 0, 0, 0
	p.ICMPType, p.ICMPCode = 0, 0
	p.Payload, p.PayloadLen, p.L4Off = nil, 0, 0
	p.Frag, p.FragID = FragNone, 0
	p.Flags &^= FlagIPOptions
	if err := p.etherType(b, off, et, depth+1); err != nil {
		*p = outer
		p.Tunnel, p.TunnelID = kind, id
		p.Flags |= FlagTunnelInnerError
	}
	return nil
}

// gre decapsulates GRE (version 0) and PPTP's enhanced GRE (version 1).
// Anything it cannot follow stays the outer GRE packet.
func (p *Packet) gre(b []byte, off, depth int) error {
	if len(b)-off < 4 {
		return nil
	}
	fl := be16(b[off:])
	pt := be16(b[off+2:])
	o := off + 4
	var key uint32
	seq := fl&0x1000 != 0
	switch fl & 0x7 {
	case 0:
		if fl&0x4000 != 0 { // source routing (RFC 1701), deprecated
			return nil
		}
		if fl&0x8000 != 0 {
			o += 4
		}
		if fl&0x2000 != 0 {
			if len(b)-o < 4 {
				return nil
			}
			key = be32(b[o:])
			o += 4
		}
		if seq {
			o += 4
		}
	case 1:
		if pt != etherTypePPP || fl&0x2000 == 0 {
			return nil
		}
		o += 4 // payload length and call id, in the key field
		if seq {
			o += 4
		}
		if fl&0x0080 != 0 { // acknowledgment number
			o += 4
		}
	default:
		return nil
	}
	if o > len(b) {
		return nil
	}
	switch pt {
	case etherTypeIPv4, etherTypeIPv6, etherTypeTEB, etherTypeMPLS, etherTypeMPLSMcast:
		return p.decap(TunnelGRE, key, b, o, pt, depth)
	case etherTypeERSPAN2:
		// Type II has an 8-byte header and the sequence bit; type I neither.
		var session uint32
		if seq {
			if len(b)-o < 8 {
				return nil
			}
			session = uint32(be16(b[o+2:]) & 0x03ff)
			o += 8
		}
		return p.decap(TunnelERSPAN, session, b, o, etherTypeTEB, depth)
	case etherTypeERSPAN3:
		if len(b)-o < 12 {
			return nil
		}
		session := uint32(be16(b[o+2:]) & 0x03ff)
		optional := b[o+11]&0x01 != 0 // a platform-specific subheader follows
		o += 12
		if optional {
			o += 8
		}
		if o > len(b) {
			return nil
		}
		return p.decap(TunnelERSPAN, session, b, o, etherTypeTEB, depth)
	case etherTypePPP:
		// PPP in PPTP: optional address/control (ff 03), then a 1- or
		// 2-byte protocol. Compressed or encrypted (MPPE) PPP is not IP.
		if len(b)-o >= 2 && b[o] == 0xff && b[o+1] == 0x03 {
			o += 2
		}
		if len(b)-o < 1 {
			return nil
		}
		proto := uint16(b[o])
		if proto&1 == 0 { // not compressed: two bytes
			if len(b)-o < 2 {
				return nil
			}
			proto = be16(b[o:])
			o++
		}
		o++
		switch proto {
		case pppProtoIPv4:
			return p.decap(TunnelGRE, key, b, o, etherTypeIPv4, depth)
		case pppProtoIPv6:
			return p.decap(TunnelGRE, key, b, o, etherTypeIPv6, depth)
		}
	}
	return nil
}

// udpTunnel decapsulates VXLAN, Geneve and GTP-U and labels Teredo; pl is
// the offset of the UDP payload in b. A datagram that does not look like
// the tunnel stays a plain UDP packet.
func (p *Packet) udpTunnel(b []byte, pl, depth int) error {
	n := len(b) - pl
	switch {
	case p.DstPort == PortVXLAN || p.SrcPort == PortVXLAN:
		// RFC 7348: flags with the I bit, 24 reserved bits, VNI, 8 reserved.
		if n < 8 || b[pl]&vxlanFlagVNIPresent == 0 {
			return nil
		}
		return p.decap(TunnelVXLAN, be32(b[pl+4:])>>8, b, pl+8, etherTypeTEB, depth)
	case p.DstPort == PortGeneve || p.SrcPort == PortGeneve:
		// RFC 8926: version (2 bits, 0), option length in 4-byte words,
		// flags, protocol type, VNI, reserved, options.
		if n < 8 || b[pl]>>6 != 0 {
			return nil
		}
		o := pl + 8 + int(b[pl]&0x3f)<<2
		if o > len(b) {
			return nil
		}
		switch pt := be16(b[pl+2:]); pt {
		case etherTypeTEB, etherTypeIPv4, etherTypeIPv6:
			return p.decap(TunnelGeneve, be32(b[pl+4:])>>8, b, o, pt, depth)
		}
		return nil
	case p.DstPort == PortGTPU || p.SrcPort == PortGTPU:
		// 3GPP TS 29.281: version 1, protocol type GTP, message G-PDU (255).
		if n < 8 || b[pl]>>5 != 1 || b[pl]&0x10 == 0 || b[pl+1] != 0xff {
			return nil
		}
		teid := be32(b[pl+4:])
		o := pl + 8
		if b[pl]&0x07 != 0 { // sequence number, N-PDU number or extension present
			if len(b)-o < 4 {
				return nil
			}
			next := b[o+3]
			o += 4
			for i := 0; next != 0; i++ {
				if i >= maxIPv6Ext || len(b)-o < 1 {
					return nil
				}
				size := int(b[o]) << 2
				if size == 0 || len(b)-o < size {
					return nil
				}
				next = b[o+size-1]
				o += size
			}
		}
		return p.decap(TunnelGTPU, teid, b, o, etherTypeByVersion, depth)
	case p.DstPort == PortTeredo || p.SrcPort == PortTeredo:
		// IPv6 behind optional authentication (0x0001) or origin (0x0000)
		// indicators (RFC 4380). Labelled only: nDPI reports the UDP flow
		// as Teredo, and the inner IPv6 endpoints are per packet.
		if n >= 40 && b[pl]>>4 == 6 || n >= 2 && b[pl] == 0 && b[pl+1] <= 1 {
			p.Tunnel = TunnelTeredo
		}
	}
	return nil
}
