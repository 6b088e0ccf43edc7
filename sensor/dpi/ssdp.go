package dpi

import "bytes"

// SSDP (UPnP discovery) is HTTP over UDP: M-SEARCH and NOTIFY requests to
// 239.255.255.250:1900 (or a unicast port), and "HTTP/1.1 200 OK" answers.
func ssdpUDP(e *Engine, p *pkt) bool {
	b := p.p
	switch {
	case bytes.HasPrefix(b, []byte("M-SEARCH * HTTP/1.")), bytes.HasPrefix(b, []byte("NOTIFY * HTTP/1.")):
	case bytes.HasPrefix(b, []byte("HTTP/1.1 200 OK")) && p.port(1900):
	default:
		return false
	}
	return claim(p, pSSDP, 0)
}
