package dpi

import "bytes"

// FTP, SMTP, POP3 and IMAP are line protocols where the server greets
// first. POP3 ("+OK") and IMAP ("* OK") greetings say which they are; a
// "220" greeting is FTP or SMTP, told apart by the port, the greeting text
// or the client's first command (EHLO/HELO against USER/AUTH/FEAT).
func mailTCP(e *Engine, p *pkt) bool {
	b := p.p
	st := p.st
	if p.first && len(b) >= 4 && (b[0] == '+' || b[0] == '*' || b[0] == '2') {
		switch {
		case bytes.HasPrefix(b, []byte("+OK")):
			return claim(p, pPOP3, 0)
		case bytes.HasPrefix(b, []byte("* OK")) || bytes.HasPrefix(b, []byte("* PREAUTH")):
			return claim(p, pIMAP, 0)
		case bytes.HasPrefix(b, []byte("220")) && (b[3] == ' ' || b[3] == '-'):
			switch {
			case p.port(21):
				return ftpClaim(p)
			case p.port(25) || p.port(587) || p.port(2525):
				return claim(p, pSMTP, 0)
			}
			line := b
			if i := bytes.IndexByte(b, '\n'); i > 0 {
				line = b[:i]
			}
			switch {
			case bytes.Contains(bytes.ToUpper(line), []byte("FTP")):
				return ftpClaim(p)
			case bytes.Contains(bytes.ToUpper(line), []byte("SMTP")):
				return claim(p, pSMTP, 0)
			}
			st.owner, st.aux = ownMail, 220
			return false
		}
	}
	if len(b) < 4 {
		return false
	}
	cmd := b
	if len(cmd) > 5 {
		cmd = cmd[:5]
	}
	up := [5]byte{}
	for i := range cmd {
		c := cmd[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		up[i] = c
	}
	c := string(up[:len(cmd)])
	switch {
	case c == "EHLO " || c == "HELO ":
		return claim(p, pSMTP, 0)
	case st.owner == ownMail && st.aux == 220 && (c == "USER " || c == "AUTH " || c == "FEAT\r" || c == "SYST\r" || c == "OPTS "):
		return ftpClaim(p)
	}
	return false
}

// ftpClaim names a control connection and keeps watching it for the data
// connections it announces.
func ftpClaim(p *pkt) bool {
	p.st.set(pFTPControl, 0)
	p.st.phase = phFTP
	p.st.flags |= fPending
	return true
}
