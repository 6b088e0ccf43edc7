package dpi

import "encoding/binary"

// Tunnels. Teredo (RFC 4380) carries an IPv6 packet in UDP 3544, maybe
// after an authentication or origin indication header. VXLAN (RFC 7348)
// has an 8-byte header with the I flag; the sensor's packet parser should
// decapsulate it, and this names the outer flow when it does not.
func teredoUDP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.port(3544) || len(b) < 40 {
		return false
	}
	i := 0
	if b[0] == 0 && b[1] == 1 { // authentication: id len, auth len, nonce, confirmation
		if len(b) < 13 {
			return false
		}
		i = 4 + int(b[2]) + int(b[3]) + 8 + 1
	}
	if i+8 <= len(b) && b[i] == 0 && b[i+1] == 0 { // origin indication
		i += 8
	}
	if i+40 > len(b) || b[i]>>4 != 6 || int(u16(b[i+4:])) != len(b)-i-40 {
		return false
	}
	return claim(p, pTeredo, 0)
}

func vxlanUDP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.port(4789) || len(b) < 8+14 || b[0] != 0x08 || b[1]|b[2]|b[3]|b[7] != 0 {
		return false
	}
	return claim(p, pVXLAN, 0)
}

// Flow export: sFlow v5 datagrams start with version 5 and the agent
// address type (1 IPv4, 2 IPv6). NetFlow v5 has a record count matching
// its size, v9 a count and a source id, IPFIX (v10) a length equal to the
// datagram; nDPI names all three NetFlow.
func sflowUDP(e *Engine, p *pkt) bool {
	b := p.p
	if len(b) < 28 || binary.BigEndian.Uint32(b) != 5 {
		return false
	}
	if at := binary.BigEndian.Uint32(b[4:]); at != 1 && at != 2 {
		return false
	}
	return claim(p, pSFlow, 0)
}

func netflowUDP(e *Engine, p *pkt) bool {
	b := p.p
	if len(b) < 20 {
		return false
	}
	switch v := u16(b); v {
	case 5:
		n := int(u16(b[2:]))
		if n < 1 || n > 30 || len(b) != 24+48*n {
			return false
		}
	case 9:
		n := int(u16(b[2:]))
		if n > 1000 || len(b) < 24 {
			return false
		}
		if fs := u16(b[20:]); fs != 0 && fs != 1 && fs < 256 {
			return false
		}
		if l := int(u16(b[22:])); l < 4 || 20+l > len(b) {
			return false
		}
	case 10:
		if int(u16(b[2:])) != len(b) || len(b) < 20 {
			return false
		}
		if s := u16(b[16:]); s != 2 && s != 3 && s < 256 {
			return false
		}
	default:
		return false
	}
	return claim(p, pNetFlow, 0)
}
