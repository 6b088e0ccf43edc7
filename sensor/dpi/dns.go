package dpi

import (
	"encoding/binary"
	"net/netip"
)

// DNS over UDP and TCP, and its multicast relatives (mDNS, LLMNR, NetBIOS
// name service) which share the message format. The query name names the
// flow ("DNS.WhatsApp"); the A/AAAA answers go into the engine's address
// cache, so later flows to those addresses get the name's application
// even when they carry no name themselves.

type dnsHeader struct {
	id, flags, qd, an, ns, ar uint16
}

func parseDNSHeader(b []byte) (h dnsHeader, ok bool) {
	if len(b) < 12 {
		return h, false
	}
	h = dnsHeader{u16(b), u16(b[2:]), u16(b[4:]), u16(b[6:]), u16(b[8:]), u16(b[10:])}
	return h, true
}

// dnsName reads a (possibly compressed) name at off into out as dotted
// text. It returns the text length and the offset after the name in the
// message. Pointer loops end after a bounded number of jumps.
func dnsName(msg []byte, off int, out []byte) (n, next int, ok bool) {
	next = -1
	for jumps := 0; jumps < 32; {
		if off >= len(msg) {
			return 0, 0, false
		}
		l := int(msg[off])
		switch {
		case l == 0:
			if next < 0 {
				next = off + 1
			}
			return n, next, true
		case l&0xc0 == 0xc0:
			if off+1 >= len(msg) {
				return 0, 0, false
			}
			if next < 0 {
				next = off + 2
			}
			off = int(l&0x3f)<<8 | int(msg[off+1])
			jumps++
		case l&0xc0 != 0:
			return 0, 0, false
		default:
			if off+1+l > len(msg) {
				return 0, 0, false
			}
			if out != nil {
				if n > 0 {
					if n >= len(out) {
						return 0, 0, false
					}
					out[n] = '.'
					n++
				}
				if n+l > len(out) {
					return 0, 0, false
				}
				copy(out[n:], msg[off+1:off+1+l])
				n += l
			}
			off += 1 + l
		}
	}
	return 0, 0, false
}

// dnsFamily says which protocol of the DNS family a UDP flow's ports
// suggest, 0 for none.
func dnsFamily(p *pkt) uint16 {
	switch {
	case p.port(53):
		return pDNS
	case p.port(5353):
		return pMDNS
	case p.port(5355):
		return pLLMNR
	case p.sport == 137 || p.dport == 137:
		return pNetBIOS
	}
	return 0
}

// dnsUDP is the dissector for the DNS family over UDP.
func (e *Engine) dnsUDP(p *pkt) bool {
	fam := dnsFamily(p)
	if fam == 0 || p.st.master != 0 && p.st.master != fam {
		return false
	}
	return e.dnsMessage(p, p.p, fam)
}

// dnsTCP reads DNS over TCP (two-byte length, then the message).
func (e *Engine) dnsTCP(p *pkt) bool {
	if !p.port(53) || len(p.p) < 2+12 {
		return false
	}
	if p.st.master != 0 && p.st.master != pDNS {
		return false
	}
	l := int(u16(p.p))
	if l < 12 {
		return false
	}
	msg := p.p[2:]
	if len(msg) > l {
		msg = msg[:l]
	}
	return e.dnsMessage(p, msg, pDNS)
}

// dnsMessage checks and reads one message. It returns false when the
// payload is not a plausible message of the family.
func (e *Engine) dnsMessage(p *pkt, msg []byte, fam uint16) bool {
	st := p.st
	h, ok := parseDNSHeader(msg)
	if !ok {
		return false
	}
	resp := h.flags&0x8000 != 0
	opcode := h.flags >> 11 & 0xf
	if opcode > 6 || h.qd > 16 || h.an > 256 || h.ns > 256 || h.ar > 256 {
		return false
	}
	if !resp && h.qd == 0 && fam != pMDNS && fam != pNetBIOS {
		return false
	}
	var name [256]byte
	off := 12
	qn := 0
	var qtype uint16
	if h.qd > 0 {
		n, next, ok := dnsName(msg, off, name[:])
		if !ok || next+4 > len(msg) {
			return false
		}
		qn, off = n, next+4
		qtype = uint16(msg[next])<<8 | uint16(msg[next+1])
		for i := 1; i < int(h.qd); i++ {
			_, next, ok := dnsName(msg, off, nil)
			if !ok {
				break
			}
			off = next + 4
		}
	} else if fam == pMDNS && h.an > 0 {
		// An mDNS announcement: name the flow from its first record.
		n, _, ok := dnsName(msg, off, name[:])
		if !ok {
			return false
		}
		qn = n
	}
	if st.master == 0 {
		st.set(fam, 0)
		if qn > 0 && fam != pNetBIOS {
			m := st.meta()
			m.dnsQuery = string(sanitize(name[:qn]))
			m.serverName = m.dnsQuery
			if fam == pDNS {
				m.dnsQType = qtype
			}
			if fam == pDNS {
				st.app = e.hostApp(st, m.dnsQuery)
			}
		}
		if fam == pDNS && !resp {
			st.phase = phDNSAnswer
			st.flags |= fPending
			return true
		}
	}
	if fam != pDNS {
		e.finish(st)
		return true
	}
	if !resp {
		// A later query of the same flow (a client keeping its socket, as
		// DNS tunnels do): the flow reports its longest name, the one a
		// tunnel detection needs to see, not only its first.
		if m := st.m; m != nil && qn > len(m.dnsQuery) {
			m.dnsQuery = string(sanitize(name[:qn]))
			m.serverName, m.dnsQType = m.dnsQuery, qtype
		}
		return true
	}
	key := ""
	if st.m != nil {
		key = st.m.dnsQuery
		if !st.m.dnsAnswered {
			st.m.dnsRCode, st.m.dnsAnswered = uint8(h.flags&0xf), true
		}
	}
	e.dnsAnswers(msg, off, h, name[:qn], key)
	if p.f.Proto != 17 {
		e.finish(st)
	}
	// Over UDP the flow stays open to the budget (MaxPackets): one lookup
	// is two packets and costs nothing more; a long-lived socket gets its
	// longer queries read.
	return true
}

// dnsAnswers puts the A and AAAA answers of a response in the cache, under
// the query name.
func (e *Engine) dnsAnswers(msg []byte, off int, h dnsHeader, qname []byte, key string) {
	if e.dns == nil || len(qname) == 0 || h.flags&0xf != 0 || h.an == 0 {
		return
	}
	now := e.now()
	for i := 0; i < int(h.an); i++ {
		_, next, ok := dnsName(msg, off, nil)
		if !ok || next+10 > len(msg) {
			return
		}
		typ := u16(msg[next:])
		ttl := binary.BigEndian.Uint32(msg[next+4:])
		rl := int(u16(msg[next+8:]))
		rd := next + 10
		if rd+rl > len(msg) {
			return
		}
		var a netip.Addr
		switch {
		case typ == 1 && rl == 4:
			a = netip.AddrFrom4([4]byte(msg[rd : rd+4]))
		case typ == 28 && rl == 16:
			a = netip.AddrFrom16([16]byte(msg[rd : rd+16]))
		}
		if a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() {
			if key == "" {
				key = string(sanitize(qname))
			}
			e.dns.put(a, key, ttl, now)
		}
		off = rd + rl
	}
}
