package dpi

// Syslog (RFC 3164/5424) messages begin with "<PRI>" (PRI at most 191).
// On port 514 that is enough; elsewhere the header after it must look
// like RFC 5424 ("1 2024-...") or RFC 3164 ("Mmm dd ...") too.
func syslogPRI(b []byte) (int, bool) {
	if len(b) < 4 || b[0] != '<' {
		return 0, false
	}
	pri := 0
	for i := 1; i < 5 && i < len(b); i++ {
		c := b[i]
		if c == '>' {
			return i + 1, i > 1 && pri <= 191
		}
		if !isDigit(c) {
			return 0, false
		}
		pri = pri*10 + int(c-'0')
	}
	return 0, false
}

var months = [...]string{"Jan ", "Feb ", "Mar ", "Apr ", "May ", "Jun ", "Jul ", "Aug ", "Sep ", "Oct ", "Nov ", "Dec "}

func syslogHeader(b []byte) bool {
	if len(b) >= 7 && isDigit(b[0]) && b[1] == ' ' && isDigit(b[2]) && isDigit(b[3]) && isDigit(b[4]) && isDigit(b[5]) && b[6] == '-' {
		return true
	}
	if len(b) >= 6 {
		for _, m := range months {
			if string(b[:4]) == m && (isDigit(b[4]) || b[4] == ' ') {
				return true
			}
		}
	}
	return false
}

func syslogMsg(p *pkt) bool {
	i, ok := syslogPRI(p.p)
	if !ok {
		return false
	}
	if p.port(514) || p.port(601) || p.port(6514) {
		return true
	}
	return syslogHeader(p.p[i:])
}

func syslogUDP(e *Engine, p *pkt) bool {
	return syslogMsg(p) && claim(p, pSyslog, 0)
}

func syslogTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first {
		return false
	}
	// RFC 6587 octet counting: "123 <PRI>..."
	for i := 0; i < 6 && i < len(b); i++ {
		if b[i] == ' ' && i > 0 {
			q := *p
			q.p = b[i+1:]
			if syslogMsg(&q) {
				return claim(p, pSyslog, 0)
			}
			break
		}
		if !isDigit(b[i]) {
			break
		}
	}
	return syslogMsg(p) && claim(p, pSyslog, 0)
}
