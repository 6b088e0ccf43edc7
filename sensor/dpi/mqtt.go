package dpi

import "bytes"

// MQTT clients open with CONNECT (0x10), a variable-length remaining
// length, then the protocol name: "MQTT" (3.1.1 and 5) or "MQIsdp" (3.1).
func mqttTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first || len(b) < 12 || b[0] != 0x10 {
		return false
	}
	i := 1
	for ; i < 5 && b[i]&0x80 != 0; i++ {
	}
	i++
	if i+8 > len(b) {
		return false
	}
	n := b[i:]
	if bytes.HasPrefix(n, []byte("\x00\x04MQTT")) || bytes.HasPrefix(n, []byte("\x00\x06MQIsdp")) {
		return claim(p, pMQTT, 0)
	}
	return false
}
