package dpi

// SNMP messages are a BER SEQUENCE of version (0 = v1, 1 = v2c, 3 = v3),
// then for v1/v2c a community OCTET STRING and a PDU (tags 0xa0-0xa8), for
// v3 the header SEQUENCE. The structure is strict enough to accept on any
// port.
func berLen(b []byte, i int) (l, next int, ok bool) {
	if i >= len(b) {
		return 0, 0, false
	}
	l = int(b[i])
	if l&0x80 == 0 {
		return l, i + 1, true
	}
	n := l & 0x7f
	if n == 0 || n > 3 || i+1+n > len(b) {
		return 0, 0, false
	}
	l = 0
	for j := 0; j < n; j++ {
		l = l<<8 | int(b[i+1+j])
	}
	return l, i + 1 + n, true
}

func snmpUDP(e *Engine, p *pkt) bool {
	b := p.p
	if len(b) < 16 || b[0] != 0x30 {
		return false
	}
	l, i, ok := berLen(b, 1)
	if !ok || i+l != len(b) || i+3 > len(b) || b[i] != 0x02 || b[i+1] != 1 {
		return false
	}
	ver := b[i+2]
	i += 3
	switch ver {
	case 0, 1:
		if i >= len(b) || b[i] != 0x04 {
			return false
		}
		cl, j, ok := berLen(b, i+1)
		if !ok || j+cl >= len(b) {
			return false
		}
		if t := b[j+cl]; t < 0xa0 || t > 0xa8 {
			return false
		}
	case 3:
		if i >= len(b) || b[i] != 0x30 {
			return false
		}
	default:
		return false
	}
	return claim(p, pSNMP, 0)
}
