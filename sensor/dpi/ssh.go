package dpi

import "bytes"

// SSH: both ends open with an identification string, "SSH-2.0-..."
// (RFC 4253 §4.2), or "SSH-1.99-" from servers speaking both versions.
func sshTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first || len(b) < 8 || !bytes.HasPrefix(b, []byte("SSH-")) {
		return false
	}
	if !bytes.HasPrefix(b[4:], []byte("2.0-")) && !bytes.HasPrefix(b[4:], []byte("1.")) {
		return false
	}
	return claim(p, pSSH, 0)
}
