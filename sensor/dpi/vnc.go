package dpi

import "bytes"

// VNC (RFB, RFC 6143): the server's first message is its protocol
// version, "RFB 003.008\n", which the client echoes.
func vncTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first || len(b) != 12 || !bytes.HasPrefix(b, []byte("RFB 00")) || b[11] != '\n' {
		return false
	}
	return claim(p, pVNC, 0)
}
