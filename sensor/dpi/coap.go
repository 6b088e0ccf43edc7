package dpi

// CoAP (RFC 7252) on UDP 5683/5684: version 1 in the top bits, a token of
// at most 8 bytes, and a code whose class is 0 (request), 2, 4 or 5.
func coapUDP(e *Engine, p *pkt) bool {
	b := p.p
	if len(b) < 4 || !(p.port(5683) || p.port(5684)) || b[0]>>6 != 1 || b[0]&0x0f > 8 {
		return false
	}
	switch b[1] >> 5 {
	case 0, 2, 4, 5:
	default:
		return false
	}
	return claim(p, pCoAP, 0)
}
