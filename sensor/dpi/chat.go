package dpi

import "bytes"

// Messaging over their own TCP protocols. WhatsApp's clients open with
// "WA" and two version bytes (then the Noise handshake; newer ones send
// "ED\x00\x01" first). XMPP (Jabber) opens an XML stream.
func whatsappTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first || len(b) < 4 {
		return false
	}
	if b[0] == 'W' && b[1] == 'A' && b[2] < 10 && b[3] < 10 || bytes.HasPrefix(b, []byte("ED\x00\x01")) {
		return claim(p, pWhatsApp, 0)
	}
	return false
}

func jabberTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first || len(b) < 16 {
		return false
	}
	if bytes.HasPrefix(b, []byte("<stream:stream")) ||
		bytes.HasPrefix(b, []byte("<?xml")) && bytes.Contains(b, []byte("jabber")) {
		return claim(p, pJabber, 0)
	}
	return false
}

// Ookla's speed test servers speak a line protocol on 8080 (and 5060):
// the client says "HI <guid>", the server "HELLO <version>".
func ooklaTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first || len(b) < 3 {
		return false
	}
	if bytes.HasPrefix(b, []byte("HI ")) || bytes.Equal(b, []byte("HI\n")) ||
		bytes.HasPrefix(b, []byte("HELLO ")) {
		return claim(p, pOokla, 0)
	}
	return false
}

// TeamViewer's own protocol (port 5938) begins with 0x17 0x24 or 0x11 0x30.
func teamviewerTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first || !p.port(5938) || len(b) < 4 {
		return false
	}
	if b[0] == 0x17 && b[1] == 0x24 || b[0] == 0x11 && b[1] == 0x30 {
		return claim(p, pTeamViewer, 0)
	}
	return false
}
