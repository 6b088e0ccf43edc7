package dpi

// DTLS (RFC 6347/9147) records: content type 20-23, version 0xfeff (1.0),
// 0xfefd (1.2) or 0xfefc (1.3), epoch, 48-bit sequence, length. A
// ClientHello gives SNI, ALPN ("webrtc") and a JA4 with 'd'.

func isDTLSRecord(b []byte) bool {
	if len(b) < 13 || b[0] < 20 || b[0] > 23 || b[1] != 0xfe || b[2] != 0xff && b[2] != 0xfd && b[2] != 0xfc {
		return false
	}
	return 13+int(u16(b[11:])) <= len(b)
}

func (e *Engine) dtlsUDP(p *pkt) bool {
	st := p.st
	b := p.p
	if st.master == pDTLS {
		if isDTLSRecord(b) && e.dtlsHello(p, b) {
			e.finish(st)
		}
		return true
	}
	if st.master != 0 || !isDTLSRecord(b) {
		return false
	}
	st.set(pDTLS, 0)
	if e.dtlsHello(p, b) {
		return true
	}
	st.flags |= fPending // the ClientHello may follow (or be in a later record)
	return true
}

// dtlsHello looks for an unfragmented ClientHello in the datagram's
// records and reports whether it read one.
func (e *Engine) dtlsHello(p *pkt, b []byte) bool {
	for len(b) >= 13 {
		ct := b[0]
		if b[1] != 0xfe {
			return false
		}
		rl := int(u16(b[11:]))
		if 13+rl > len(b) {
			return false
		}
		rec := b[13 : 13+rl]
		b = b[13+rl:]
		if ct != tlsHandshake || len(rec) < 12 || rec[0] != hsClientHello {
			continue
		}
		ml := u24(rec[1:])
		off, fl := u24(rec[6:]), u24(rec[9:])
		if off != 0 || fl != ml || 12+ml > len(rec) {
			continue
		}
		var h helloInfo
		if parseClientHello(rec[12:12+ml], true, &h) {
			app := p.st.app
			e.tlsClientHello(p, &h, 'd')
			if p.st.app == 0 {
				p.st.app = app
			}
			return true
		}
	}
	return false
}
