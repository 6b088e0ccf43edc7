package dpi

// Kerberos messages are ASN.1 application tags: AS-REQ 10 (0x6a), AS-REP
// 11, TGS-REQ 12, TGS-REP 13, KRB-ERROR 30 (0x7e). Over TCP each has a
// 4-byte record mark (RFC 4120 §7.2.2). The tags are common bytes, so the
// well-known port is required.
func krbTag(b byte) bool {
	return b == 0x6a || b == 0x6b || b == 0x6c || b == 0x6d || b == 0x7e
}

func kerberosTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first || !p.port(88) || len(b) < 8 {
		return false
	}
	if b[0]&0x80 != 0 || !krbTag(b[4]) {
		return false
	}
	if l := int(u16(b[2:])) | int(b[1])<<16; l+4 < len(b) || l > 1<<20 {
		return false
	}
	return claim(p, pKerberos, 0)
}

func kerberosUDP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.port(88) || len(b) < 4 || !krbTag(b[0]) || b[1]&0x80 != 0 && b[1] > 0x83 {
		return false
	}
	return claim(p, pKerberos, 0)
}
