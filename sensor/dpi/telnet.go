package dpi

// Telnet sessions open with option negotiation (RFC 854): IAC (0xff)
// followed by WILL/WONT/DO/DONT (0xfb-0xfe) and an option, usually several
// in a row; the first segment is made of such triples (and sub-options).
func telnetTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first || len(b) < 3 || b[0] != 0xff || b[1] < 0xfa || b[1] == 0xff {
		return false
	}
	// Every IAC in the first bytes must start a negotiation.
	n := 0
	for i := 0; i+1 < len(b) && i < 24; i++ {
		if b[i] == 0xff {
			if b[i+1] < 0xf0 {
				return false
			}
			n++
		}
	}
	return n >= 1 && claim(p, pTelnet, 0)
}
