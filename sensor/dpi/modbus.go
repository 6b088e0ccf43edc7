package dpi

// Modbus/TCP: the MBAP header (transaction id, protocol id 0, length of
// the rest, unit id) then a function code. Only on port 502: the header
// alone is too weak a signature.
func modbusTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first || !p.port(502) || len(b) < 8 {
		return false
	}
	if b[2] != 0 || b[3] != 0 || int(u16(b[4:])) != len(b)-6 {
		return false
	}
	if fc := b[7] & 0x7f; fc == 0 || fc > 0x2b && fc != 0x5a && fc != 0x64 {
		return false
	}
	return claim(p, pModbus, 0)
}
