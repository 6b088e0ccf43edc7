package dpi

import "bytes"

// SIP (RFC 3261): a request line "METHOD sip:... SIP/2.0" or a status line
// "SIP/2.0 200 OK", over UDP or TCP.
var sipMethods = [...]string{
	"INVITE ", "REGISTER ", "OPTIONS ", "ACK ", "BYE ", "CANCEL ", "SUBSCRIBE ", "NOTIFY ",
	"MESSAGE ", "INFO ", "PRACK ", "UPDATE ", "REFER ", "PUBLISH ",
}

func isSIP(b []byte) bool {
	if bytes.HasPrefix(b, []byte("SIP/2.0 ")) {
		return true
	}
	for _, m := range sipMethods {
		if len(b) > len(m)+4 && string(b[:len(m)]) == m {
			r := b[len(m):]
			if bytes.HasPrefix(r, []byte("sip:")) || bytes.HasPrefix(r, []byte("sips:")) || bytes.HasPrefix(r, []byte("tel:")) {
				return true
			}
		}
	}
	return false
}

func sipTCP(e *Engine, p *pkt) bool {
	return p.first && isSIP(p.p) && claim(p, pSIP, 0)
}

func sipUDP(e *Engine, p *pkt) bool {
	return isSIP(p.p) && claim(p, pSIP, 0)
}
