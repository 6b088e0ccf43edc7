package dpi

import "encoding/binary"

// STUN (RFC 5389/8489): a 20-byte header with the message length (a
// multiple of 4, equal to the rest) and the magic cookie 0x2112A442. The
// service behind it comes from its attributes: Microsoft's MS-TURN/MS-ICE
// attributes mean Teams/Skype calls, a REALM such as "turn.l.google.com"
// names the operator, and failing that the server's address block does
// (nDPI's STUN.GoogleCall, STUN.FacebookVoip, STUN.Skype_TeamsCall).
// ICE flows go on with DTLS: a ClientHello after STUN makes the flow DTLS,
// keeping the call's application, as nDPI does.

const stunCookie = 0x2112a442

// stunMessage checks a STUN header at b[0:] and returns the attributes.
func stunMessage(b []byte, classicOK bool) ([]byte, bool) {
	if len(b) < 20 || b[0]&0xc0 != 0 {
		return nil, false
	}
	l := int(u16(b[2:]))
	if l%4 != 0 || 20+l != len(b) {
		return nil, false
	}
	if binary.BigEndian.Uint32(b[4:]) != stunCookie {
		if !classicOK {
			return nil, false
		}
		switch u16(b) {
		case 0x0001, 0x0101, 0x0111, 0x0002, 0x0102, 0x0112:
		default:
			return nil, false
		}
	}
	return b[20:], true
}

// stunApp reads the attributes for the call service behind the flow.
func (e *Engine) stunApp(p *pkt, attrs []byte) uint16 {
	for len(attrs) >= 4 {
		t, l := u16(attrs), int(u16(attrs[2:]))
		if 4+l > len(attrs) {
			break
		}
		v := attrs[4 : 4+l]
		switch t {
		case 0x8008, 0x8050, 0x8054, 0x8055, 0x8056, 0x8057, 0x8070, 0x8090, 0x8095, 0x800b:
			return pSkypeCall
		case 0xc057:
			return pGoogleCall
		case 0x0014: // REALM
			if l > 0 {
				m := p.st.meta()
				if m.serverName == "" {
					m.serverName = string(sanitize(v))
				}
				if a := e.hostApp(p.st, m.serverName); a != 0 {
					return callApp(a)
				}
			}
		}
		attrs = attrs[4+(l+3)&^3:]
	}
	return 0
}

// callApp maps a service to the name nDPI gives its calls.
func callApp(app uint16) uint16 {
	switch app {
	case pGoogle, 284, 239: // Google, GoogleCloud, GoogleServices
		return pGoogleCall
	case pFacebook:
		return pFBVoip
	case 125, 212, 219, 276, 250: // Skype_Teams, Microsoft, Microsoft365, Azure, Teams
		return pSkypeCall
	case pWhatsApp:
		return 45 // WhatsAppCall
	}
	return app
}

func (e *Engine) stunClaim(p *pkt, attrs []byte) bool {
	st := p.st
	app := e.stunApp(p, attrs)
	if st.master == 0 {
		st.set(pSTUN, app)
		e.stunAddrApp(st, p.f)
		st.flags |= fPending // watch for DTLS and for a later attribute naming the service
		st.owner = ownSTUN
		return true
	}
	if st.app == 0 {
		st.app = app
	}
	return true
}

// stunAddrApp names a STUN flow's service from the server's address block
// when no attribute did.
func (e *Engine) stunAddrApp(st *State, f *Flow) {
	if st.app != 0 {
		return
	}
	if hr, ok := e.tab.lookupAddr(f.Server.Addr()); ok {
		if c := callApp(hr.app); c != hr.app {
			st.app = c
			return
		}
	}
	if hr, ok := e.tab.lookupAddr(f.Client.Addr()); ok {
		if c := callApp(hr.app); c != hr.app {
			st.app = c
		}
	}
}

func stunUDP(e *Engine, p *pkt) bool {
	attrs, ok := stunMessage(p.p, p.port(3478))
	if !ok {
		return false
	}
	return e.stunClaim(p, attrs)
}

// stunTCP accepts STUN over TCP, bare or in RFC 4571 framing.
func stunTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first {
		return false
	}
	if attrs, ok := stunMessage(b, p.port(3478)); ok {
		return e.stunClaim(p, attrs)
	}
	if len(b) > 2 && int(u16(b)) == len(b)-2 {
		if attrs, ok := stunMessage(b[2:], false); ok {
			return e.stunClaim(p, attrs)
		}
	}
	return false
}

// stunFollow watches a STUN flow's later packets.
func (e *Engine) stunFollow(p *pkt) {
	st := p.st
	b := p.p
	if isDTLSRecord(b) {
		st.master = pDTLS
		if e.dtlsHello(p, b) {
			e.finish(st)
		}
		return
	}
	if attrs, ok := stunMessage(b, false); ok && st.app == 0 {
		st.app = e.stunApp(p, attrs)
	}
}
