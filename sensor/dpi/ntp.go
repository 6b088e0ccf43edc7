package dpi

// NTP (RFC 5905): a 48-byte header (plus extensions or a MAC) whose first
// byte holds the version (1-4) and the mode (1-7), on port 123.
func ntpUDP(e *Engine, p *pkt) bool {
	b := p.p
	if len(b) < 48 || !p.port(123) {
		return false
	}
	v, mode := b[0]>>3&7, b[0]&7
	if v < 1 || v > 4 || mode == 0 {
		return false
	}
	return claim(p, pNTP, 0)
}
