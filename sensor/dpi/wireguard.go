package dpi

// WireGuard: message type 1-4 in the first byte, three reserved zero bytes,
// and fixed sizes for the handshake (initiation 148, response 92, cookie
// reply 64); transport data is 16 + a multiple of 16. Cloudflare WARP
// speaks the same protocol but puts a client id in the reserved bytes, on
// port 2408 (nDPI: CloudflareWarp).
func wireguardUDP(e *Engine, p *pkt) bool {
	b := p.p
	if len(b) < 32 || b[0] < 1 || b[0] > 4 {
		return false
	}
	sizeOK := false
	switch b[0] {
	case 1:
		sizeOK = len(b) == 148
	case 2:
		sizeOK = len(b) == 92
	case 3:
		sizeOK = len(b) == 64
	case 4:
		sizeOK = len(b)%16 == 0
	}
	if !sizeOK {
		return false
	}
	if p.port(2408) {
		return claim(p, pCFWarp, 0)
	}
	if b[1] != 0 || b[2] != 0 || b[3] != 0 {
		return false
	}
	if b[0] == 4 && !p.port(51820) {
		return false // bare transport data: too weak off the usual port
	}
	return claim(p, pWireGuard, 0)
}
