package dpi

// NetBIOS datagram service (RFC 1002 §4.4) on UDP 138: direct/broadcast
// datagrams carry two encoded names and then, for Windows browsing, an SMB
// (v1) message: nDPI names those NetBIOS.SMBv1. The name service on 137
// has the DNS message format and is read by the DNS dissector.
func netbiosUDP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.port(138) || len(b) < 14 || b[0] < 0x10 || b[0] > 0x16 {
		return false
	}
	if b[0] <= 0x12 && len(b) >= 82+4 && string(b[83:86]) == "SMB" && b[82] == 0xff {
		return claim(p, pNetBIOS, pSMBv1)
	}
	return claim(p, pNetBIOS, 0)
}
