package dpi

// LDAP messages are BER: a SEQUENCE holding the message id (INTEGER) and an
// application-tagged operation (bind 0x60/0x61, search 0x63-0x65, modify,
// add, delete, extended 0x77/0x78, unbind 0x42). Port 389 (and 3268, the
// global catalog) is required; CLDAP uses the same over UDP.
func ldapMessage(b []byte) bool {
	if len(b) < 7 || b[0] != 0x30 {
		return false
	}
	i := 2
	if b[1]&0x80 != 0 {
		n := int(b[1] & 0x7f)
		if n == 0 || n > 4 {
			return false
		}
		i += n
	}
	if i+3 > len(b) || b[i] != 0x02 || b[i+1] == 0 || b[i+1] > 4 {
		return false
	}
	i += 2 + int(b[i+1])
	if i >= len(b) {
		return false
	}
	switch b[i] {
	case 0x60, 0x61, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x4a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x77, 0x78, 0x42, 0x50:
		return true
	}
	return false
}

func ldapTCP(e *Engine, p *pkt) bool {
	if !p.first || !(p.port(389) || p.port(3268)) || !ldapMessage(p.p) {
		return false
	}
	return claim(p, pLDAP, 0)
}

func ldapUDP(e *Engine, p *pkt) bool {
	if !p.port(389) || !ldapMessage(p.p) {
		return false
	}
	return claim(p, pLDAP, 0)
}
