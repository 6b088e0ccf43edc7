package dpi

// DHCP (RFC 2131): BOOTP op 1/2, Ethernet addresses, and the magic cookie
// 99.130.83.99 at offset 236. DHCPv6 (RFC 8415) has only a message type
// and a transaction id, so it needs its ports, 546 and 547.
func dhcpUDP(e *Engine, p *pkt) bool {
	b := p.p
	if len(b) < 240 || !(p.port(67) || p.port(68)) {
		return false
	}
	if b[0] < 1 || b[0] > 2 || b[1] != 1 || b[2] != 6 || string(b[236:240]) != "\x63\x82\x53\x63" {
		return false
	}
	return claim(p, pDHCP, 0)
}

func dhcpv6UDP(e *Engine, p *pkt) bool {
	b := p.p
	if len(b) < 4 || !(p.port(546) || p.port(547)) || b[0] < 1 || b[0] > 13 {
		return false
	}
	return claim(p, pDHCPv6, 0)
}
