package dpi

import "encoding/binary"

// PostgreSQL clients open with a length-prefixed StartupMessage (protocol
// 3.0 = 196608), or an SSLRequest / GSSENCRequest / CancelRequest, whose
// codes are fixed numbers.
func postgresTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first || len(b) < 8 {
		return false
	}
	l := binary.BigEndian.Uint32(b)
	code := binary.BigEndian.Uint32(b[4:])
	switch {
	case code == 80877103 || code == 80877104:
		if l == 8 && len(b) == 8 {
			return claim(p, pPostgreSQL, 0)
		}
	case code == 80877102:
		if l == 16 && len(b) == 16 {
			return claim(p, pPostgreSQL, 0)
		}
	case code == 196608:
		if int(l) == len(b) && b[len(b)-1] == 0 {
			return claim(p, pPostgreSQL, 0)
		}
	}
	return false
}
