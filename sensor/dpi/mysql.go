package dpi

// MySQL servers speak first: a handshake packet (3-byte length, sequence
// 0) with protocol version 10 and a NUL-terminated server version such as
// "8.0.36" or "10.11.6-MariaDB".
func mysqlTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first || len(b) < 4+1+6 {
		return false
	}
	if u24le(b) != len(b)-4 || b[3] != 0 || b[4] != 0x0a {
		return false
	}
	v := b[5:]
	if !isDigit(v[0]) {
		return false
	}
	for i := 1; i < len(v) && i < 64; i++ {
		c := v[i]
		if c == 0 {
			return i >= 3 && claim(p, pMySQL, 0)
		}
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return false
}

func u24le(b []byte) int { return int(b[0]) | int(b[1])<<8 | int(b[2])<<16 }
