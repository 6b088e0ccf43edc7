package dpi

import "encoding/binary"

// TLS: the ClientHello names the server (SNI) and the client (ALPN, JA4);
// for TLS 1.2 and older without SNI the server's certificate, sent in
// clear, names the server instead. Both may span TCP segments, so the
// dissector reads each direction through the bounded stream buffer.

const (
	tlsHandshake   = 22
	hsClientHello  = 1
	hsServerHello  = 2
	hsCertificate  = 11
	extServerName  = 0x0000
	extSigAlgs     = 0x000d
	extALPN        = 0x0010
	extSupVersions = 0x002b
	extQUICParams  = 0x0039
	extQUICDraft   = 0xffa5
	maxListed      = 256 // ciphers or extensions kept for JA4; more are ignored
)

// helloInfo is what a ClientHello says; the slices point into the message.
type helloInfo struct {
	legacy     uint16
	maxVersion uint16 // highest non-GREASE supported_versions entry, 0 when absent
	hasSNI     bool
	sni        []byte
	alpn       []byte // the ALPN extension's protocol list
	sigalgs    []byte // the signature_algorithms list
	ciphers    [maxListed]uint16
	nciphers   int
	exts       [maxListed]uint16
	nexts      int
	quicUA     []byte // google_user_agent from QUIC transport parameters
}

func isGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

func u16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func u24(b []byte) int    { return int(b[0])<<16 | int(b[1])<<8 | int(b[2]) }

// parseClientHello reads a ClientHello body (after the 4-byte handshake
// header). DTLS adds a cookie after the session id.
func parseClientHello(b []byte, dtls bool, h *helloInfo) bool {
	if len(b) < 2+32+1 {
		return false
	}
	h.legacy = u16(b)
	i := 2 + 32
	sid := int(b[i])
	i += 1 + sid
	if sid > 32 || i > len(b) {
		return false
	}
	if dtls {
		if i >= len(b) {
			return false
		}
		i += 1 + int(b[i])
		if i > len(b) {
			return false
		}
	}
	if i+2 > len(b) {
		return false
	}
	n := int(u16(b[i:]))
	i += 2
	if n%2 != 0 || i+n > len(b) {
		return false
	}
	for j := 0; j < n; j += 2 {
		c := u16(b[i+j:])
		if isGREASE(c) || h.nciphers == maxListed {
			continue
		}
		h.ciphers[h.nciphers] = c
		h.nciphers++
	}
	i += n
	if i >= len(b) {
		return false
	}
	i += 1 + int(b[i]) // compression methods
	if i > len(b) {
		return false
	}
	if i == len(b) {
		return true // no extensions (SSL 3.0 style)
	}
	if i+2 > len(b) {
		return false
	}
	end := i + 2 + int(u16(b[i:]))
	i += 2
	if end > len(b) {
		return false
	}
	for i+4 <= end {
		typ, l := u16(b[i:]), int(u16(b[i+2:]))
		i += 4
		if i+l > end {
			return false
		}
		v := b[i : i+l]
		i += l
		if isGREASE(typ) {
			continue
		}
		if h.nexts < maxListed {
			h.exts[h.nexts] = typ
			h.nexts++
		}
		switch typ {
		case extServerName:
			h.hasSNI = true
			// server_name_list: u16 len, then type(1) u16 len name
			if len(v) >= 5 && v[2] == 0 {
				nl := int(u16(v[3:]))
				if 5+nl <= len(v) {
					h.sni = v[5 : 5+nl]
				}
			}
		case extALPN:
			if len(v) >= 2 && 2+int(u16(v)) <= len(v) {
				h.alpn = v[2 : 2+int(u16(v))]
			}
		case extSigAlgs:
			if len(v) >= 2 && 2+int(u16(v)) <= len(v) {
				h.sigalgs = v[2 : 2+int(u16(v))]
			}
		case extSupVersions:
			if len(v) >= 1 && 1+int(v[0]) <= len(v) {
				for j := 1; j+1 < 1+int(v[0]); j += 2 {
					x := u16(v[j:])
					if !isGREASE(x) && x > h.maxVersion {
						h.maxVersion = x
					}
				}
			}
		case extQUICParams, extQUICDraft:
			h.quicUA = quicParamUA(v)
		}
	}
	return true
}

// firstALPN returns the first protocol of an ALPN list.
func firstALPN(list []byte) []byte {
	if len(list) < 1 || 1+int(list[0]) > len(list) {
		return nil
	}
	return list[1 : 1+int(list[0])]
}

// tlsVersion returns the version a ClientHello offers at best.
func (h *helloInfo) version() uint16 {
	if h.maxVersion != 0 {
		return h.maxVersion
	}
	return h.legacy
}

// parseServerHello returns the version the server chose.
func parseServerHello(b []byte) (uint16, bool) {
	if len(b) < 2+32+1 {
		return 0, false
	}
	v := u16(b)
	i := 2 + 32
	i += 1 + int(b[i]) // session id
	i += 2 + 1         // cipher, compression
	if i+2 > len(b) {
		return v, i <= len(b)
	}
	end := i + 2 + int(u16(b[i:]))
	i += 2
	if end > len(b) {
		end = len(b)
	}
	for i+4 <= end {
		typ, l := u16(b[i:]), int(u16(b[i+2:]))
		i += 4
		if i+l > end {
			break
		}
		if typ == extSupVersions && l == 2 {
			v = u16(b[i:])
		}
		i += l
	}
	return v, true
}

// tlsRecords walks the handshake messages at the start of a TLS stream,
// calling fn with each message's type and body; body is cut short when
// the message is longer than the bytes at hand (complete is false then).
// Messages split over several records are read from their first record
// only: that is enough for the ClientHello of every client we know of and
// for the leaf certificate. It returns false when data is not TLS.
func tlsRecords(data []byte, fn func(typ byte, body []byte, complete bool) bool) bool {
	for len(data) >= 5 {
		if data[1] != 3 || data[2] > 4 {
			return false
		}
		ct := data[0]
		rl := int(u16(data[3:]))
		if rl > 16384+2048 {
			return false
		}
		rec := data[5:]
		whole := len(rec) >= rl
		if whole {
			rec = rec[:rl]
		}
		switch ct {
		case tlsHandshake:
			for len(rec) >= 4 {
				ml := u24(rec[1:])
				body := rec[4:]
				complete := len(body) >= ml
				if complete {
					body = body[:ml]
				}
				if !fn(rec[0], body, complete) {
					return true
				}
				if !complete {
					return true
				}
				rec = rec[4+ml:]
			}
		case 20, 21, 23: // change_cipher_spec, alert, application_data
		default:
			return false
		}
		if !whole {
			return true
		}
		data = data[5+rl:]
	}
	return true
}

// looksTLS reports whether data begins a TLS handshake record of the
// given message type.
func looksTLS(data []byte, typ byte) bool {
	return len(data) >= 6 && data[0] == tlsHandshake && data[1] == 3 && data[2] <= 4 &&
		u16(data[3:]) >= 4 && data[5] == typ
}

// tlsTCP is the TLS dissector for TCP. Roles come from the content, not
// from who sent the flow's first packet: a capture that begins with the
// server's SYN-ACK still has the ClientHello going the other way.
func (e *Engine) tlsTCP(p *pkt) bool {
	st := p.st
	if st.master == 0 {
		// Only the first payload of a direction can begin the stream.
		if !p.first {
			return false
		}
		other := st.flags&(fSeen0<<(p.dir^1)) != 0
		switch {
		case looksTLS(p.p, hsClientHello):
			st.set(e.tlsMaster(p, p.dir), 0)
			st.setRev(p.dir != ToServer)
			st.phase = phTLSClient
			st.flags |= fPending
		case looksTLS(p.p, hsServerHello) && !other:
			// The capture missed the ClientHello.
			st.set(e.tlsMaster(p, p.dir^1), 0)
			st.setRev(p.dir == ToServer)
			st.phase = phTLSServerCS
			st.flags |= fPending
		case len(p.p) < 6 && p.p[0] == tlsHandshake && (len(p.p) < 2 || p.p[1] == 3):
			// A tiny first segment: TLS until the next bytes say otherwise.
			st.set(e.tlsMaster(p, p.dir), 0)
			st.setRev(p.dir != ToServer)
			st.phase = phTLSClient
			st.flags |= fPending
			st.owner = ownTLSProv
		case tlsRecordStart(p.p):
			// Mid-stream: records of an established session.
			st.set(e.tlsMaster(p, p.dir), 0)
			e.finish(st)
			return true
		default:
			return false
		}
	}
	client := st.clientDir()
	switch st.phase {
	case phTLSClient:
		if p.dir != client {
			return true
		}
		data := e.streamData(p)
		if st.owner == ownTLSProv && len(data) >= 6 {
			if !looksTLS(data, hsClientHello) {
				// Not TLS after all: give the flow back to the other dissectors.
				st.master, st.conf, st.phase, st.owner = 0, ConfUnknown, phNone, ownNone
				st.flags &^= fPending
				e.release(st)
				return false
			}
			st.owner = ownNone
		}
		var h helloInfo
		got, need := false, false
		ok := tlsRecords(data, func(typ byte, body []byte, complete bool) bool {
			if typ != hsClientHello {
				return false
			}
			if !complete {
				need = true
				return false
			}
			got = parseClientHello(body, false, &h)
			return false
		})
		switch {
		case got:
			e.tlsClientHello(p, &h, 't')
		case ok && (need || len(data) < 9) && !p.streamFull():
			e.keep(p)
		default:
			e.finish(st) // not parseable: TLS it stays
		}
	case phTLSServer, phTLSServerCS:
		if p.dir == client {
			return true
		}
		e.tlsServer(p)
	}
	return true
}

// tlsRecordStart reports whether b begins with a TLS record of an
// established session (change_cipher_spec, alert or application data)
// whose length fits what a record can be.
func tlsRecordStart(b []byte) bool {
	if len(b) < 5 || b[0] < 20 || b[0] > 23 || b[0] == tlsHandshake || b[1] != 3 || b[2] < 1 || b[2] > 4 {
		return false
	}
	l := int(u16(b[3:]))
	if l == 0 || l > 16384+2048 {
		return false
	}
	if b[0] == 20 {
		return l == 1 && len(b) >= 6 && b[5] == 1
	}
	if b[0] == 21 {
		return l == 2 || l >= 24
	}
	return l >= 17 // AEAD tag at least
}

// setRev records that the flow's client (by content) sent its second
// packet direction, ToClient.
func (st *State) setRev(rev bool) {
	if rev {
		st.flags |= fRev
	} else {
		st.flags &^= fRev
	}
}

// clientDir is the direction the content says the client sends in.
func (st *State) clientDir() Dir {
	if st.flags&fRev != 0 {
		return ToClient
	}
	return ToServer
}

// tlsMaster is TLS, or the protocol nDPI names for TLS on a mail port.
func (e *Engine) tlsMaster(p *pkt, clientDir Dir) uint16 {
	port := p.dport // the port the client sends to
	if p.dir != clientDir {
		port = p.sport
	}
	switch port {
	case 993:
		return pIMAPS
	case 995:
		return pPOPS
	case 465:
		return pSMTPS
	}
	return pTLS
}

// tlsClientHello records what a ClientHello says and decides whether the
// server's answer is still needed. kind is JA4's first letter.
func (e *Engine) tlsClientHello(p *pkt, h *helloInfo, kind byte) {
	st := p.st
	m := st.meta()
	if len(h.sni) > 0 {
		m.serverName = string(sanitize(h.sni))
	}
	if a := firstALPN(h.alpn); len(a) > 0 {
		m.alpn = string(sanitize(a))
	}
	if len(h.quicUA) > 0 && m.userAgent == "" {
		m.userAgent = string(sanitize(h.quicUA))
	}
	m.ja4 = ja4(h, kind)
	app := uint16(0)
	if m.serverName != "" {
		app = e.hostApp(st, m.serverName)
	}
	if app == 0 && len(h.alpn) > 0 {
		if id, ok := matchSub(e.tab.alpns, m.alpn, true); ok {
			app = id
		}
	}
	if app == 0 && kind != 'd' && p.port(853) { // DNS over TLS, or over QUIC
		app = pDoHDoT
	}
	if app == 0 && m.serverName != "" && kind == 't' && torLikeSNI(m.serverName) {
		app = pTor
	}
	st.app = app
	if app != 0 || m.serverName != "" || kind != 't' {
		e.finish(st)
		return
	}
	// No name in the hello: TLS <= 1.2 servers send their certificate in clear.
	st.phase = phTLSServer
	e.releaseDir(st, p.dir) // the client's stream is no longer needed
}

// tlsServer reads ServerHello and Certificate from the server's stream.
func (e *Engine) tlsServer(p *pkt) {
	st := p.st
	data := e.streamData(p)
	var ver uint16
	done, need := false, false
	ok := tlsRecords(data, func(typ byte, body []byte, complete bool) bool {
		switch typ {
		case hsServerHello:
			if !complete {
				need = true
				return false
			}
			v, ok := parseServerHello(body)
			if !ok {
				done = true
				return false
			}
			ver = v
			if v >= 0x0304 && v < 0x7f00 || v > 0x7f00 && v <= 0x7fff {
				done = true // TLS 1.3: the certificate is encrypted
				return false
			}
		case hsCertificate:
			// Wait for the whole leaf certificate (the SANs come after the
			// CN), not for the rest of the chain, unless the buffer is full.
			leaf := len(body) >= 6 && 6+u24(body[3:]) <= len(body)
			if !complete && !leaf && !p.streamFull() {
				need = true
				return false
			}
			if cn, san, ok := leafCertNames(body); ok {
				e.tlsCertNames(st, cn, san)
			}
			done = true
			return false
		case 12, 13, 14: // server key exchange, certificate request, hello done: no certificate
			done = true
			return false
		}
		return true
	})
	_ = ver
	switch {
	case done || !ok:
		e.finish(st)
	case p.streamFull():
		e.finish(st)
	default:
		_ = need
		e.keep(p)
	}
}

// tlsCertNames names a flow from its server certificate: the subject CN,
// then the first SAN that the table knows.
func (e *Engine) tlsCertNames(st *State, cn []byte, san [][]byte) {
	m := st.meta()
	name := cn
	if len(name) == 0 && len(san) > 0 {
		name = san[0]
	}
	if len(name) > 0 {
		m.serverName = string(sanitize(name))
	}
	app := uint16(0)
	if len(cn) > 0 {
		if id, ok := matchSub(e.tab.certs, m.serverName, false); ok {
			app = id
		}
	}
	if app == 0 && len(cn) > 0 {
		app = e.hostApp(st, stripWildcard(m.serverName))
	}
	for _, s := range san {
		if app != 0 {
			break
		}
		app = e.hostApp(st, stripWildcard(string(s)))
	}
	if st.app == 0 {
		st.app = app
	}
}

func stripWildcard(s string) string {
	if len(s) > 2 && s[0] == '*' && s[1] == '.' {
		return s[2:]
	}
	return s
}

// sanitize drops a name's bytes that are not printable ASCII, in place in
// a copy only when needed (most names are clean). Labels and names go to
// ClickHouse and JSON, which want valid text.
func sanitize(b []byte) []byte {
	clean := true
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			clean = false
			break
		}
	}
	if clean {
		if len(b) > 255 {
			return b[:255]
		}
		return b
	}
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c >= 0x20 && c <= 0x7e {
			out = append(out, c)
		}
	}
	if len(out) > 255 {
		out = out[:255]
	}
	return out
}

// torLikeSNI recognises the names Tor clients put in their ClientHello:
// "www." + 8 to 30 random lower-case letters and digits + ".com" or
// ".net". Random strings of that length almost always hold a digit and a
// run of four or more consonants, which real host names of that shape
// rarely do.
func torLikeSNI(s string) bool {
	if len(s) < 4+8+4 || s[:4] != "www." {
		return false
	}
	tld := s[len(s)-4:]
	if tld != ".com" && tld != ".net" {
		return false
	}
	mid := s[4 : len(s)-4]
	if len(mid) < 8 || len(mid) > 30 {
		return false
	}
	digits, run, maxRun := 0, 0, 0
	for i := 0; i < len(mid); i++ {
		switch c := mid[i]; {
		case c >= '0' && c <= '9':
			digits++
			run = 0
		case c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u' || c == 'y':
			run = 0
		case c >= 'a' && c <= 'z':
			run++
			if run > maxRun {
				maxRun = run
			}
		default:
			return false
		}
	}
	return digits >= 1 && maxRun >= 4
}
