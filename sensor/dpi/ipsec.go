package dpi

import "encoding/binary"

// IKE (RFC 7296, and IKEv1): two 8-byte SPIs, next payload, version 0x10
// or 0x20, exchange type, flags, message id and a length equal to the
// datagram. On 4500 (NAT traversal) IKE follows a zero non-ESP marker, and
// anything else is ESP in UDP.
func ikeHeader(b []byte) bool {
	if len(b) < 28 {
		return false
	}
	ver, xt := b[17], b[18]
	if ver != 0x10 && ver != 0x20 {
		return false
	}
	if ver == 0x20 && (xt < 34 || xt > 43) || ver == 0x10 && (xt > 6 && xt < 32 || xt > 34) {
		return false
	}
	return int(binary.BigEndian.Uint32(b[24:])) == len(b)
}

func ikeUDP(e *Engine, p *pkt) bool {
	b := p.p
	switch {
	case p.port(500) && ikeHeader(b):
	case p.port(4500) && len(b) > 4 && b[0]|b[1]|b[2]|b[3] == 0 && ikeHeader(b[4:]):
	case p.port(4500) && len(b) == 1 && b[0] == 0xff: // NAT keepalive
	default:
		return false
	}
	return claim(p, pIPSec, 0)
}
