package dpi

import "bytes"

// RDP opens with an X.224 Connection Request in a TPKT (RFC 1006): version
// 3, the TPKT length equal to the segment, then the COTP CR (0xe0) carrying
// the "Cookie: mstshash=" and/or an RDP negotiation request; the server
// answers with a Connection Confirm (0xd0).
func rdpTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first || len(b) < 11 || b[0] != 3 || b[1] != 0 {
		return false
	}
	if int(u16(b[2:])) != len(b) || int(b[4]) != len(b)-5 {
		return false
	}
	switch {
	case b[5] == 0xe0:
		if bytes.Contains(b[11:], []byte("Cookie: mstshash=")) || len(b) >= 19 && b[len(b)-8] == 1 && b[len(b)-6] == 8 && b[len(b)-5] == 0 || p.port(3389) {
			return claim(p, pRDP, 0)
		}
	case b[5] == 0xd0 && p.port(3389):
		return claim(p, pRDP, 0)
	}
	return false
}
