package dpi

import (
	"crypto/aes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"testing"
)

// Builders of protocol messages for the table tests.

func be16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func vec8(b []byte) []byte  { return cat([]byte{byte(len(b))}, b) }
func vec16(b []byte) []byte { return cat(be16(uint16(len(b))), b) }
func vec24(b []byte) []byte {
	return cat([]byte{byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}, b)
}

func u16s(vs ...uint16) []byte {
	var b []byte
	for _, v := range vs {
		b = append(b, be16(v)...)
	}
	return b
}

func ext(typ uint16, data []byte) []byte { return cat(be16(typ), vec16(data)) }

// hello describes a ClientHello to build.
type hello struct {
	legacy   uint16
	versions []uint16 // supported_versions; none when nil
	ciphers  []uint16
	sni      string
	noSNI    bool
	alpn     []string
	sigalgs  []uint16
	extra    []uint16 // empty extensions, in this order, after the others
	dtls     bool
	quicTP   []byte // QUIC transport parameters extension
}

// clientHello returns the handshake message (type, length, body).
func clientHello(h hello) []byte {
	if h.legacy == 0 {
		h.legacy = 0x0303
	}
	if h.ciphers == nil {
		h.ciphers = []uint16{0x1301, 0x1302, 0xc02b}
	}
	random := make([]byte, 32)
	body := cat(be16(h.legacy), random, vec8(make([]byte, 32)))
	if h.dtls {
		body = append(body, 0) // empty cookie
	}
	body = cat(body, vec16(u16s(h.ciphers...)), []byte{1, 0})
	var exts []byte
	if !h.noSNI {
		name := []byte(h.sni)
		exts = cat(exts, ext(extServerName, vec16(cat([]byte{0}, vec16(name)))))
	}
	if h.alpn != nil {
		var l []byte
		for _, a := range h.alpn {
			l = cat(l, vec8([]byte(a)))
		}
		exts = cat(exts, ext(extALPN, vec16(l)))
	}
	if h.sigalgs != nil {
		exts = cat(exts, ext(extSigAlgs, vec16(u16s(h.sigalgs...))))
	}
	if h.versions != nil {
		exts = cat(exts, ext(extSupVersions, vec8(u16s(h.versions...))))
	}
	if h.quicTP != nil {
		exts = cat(exts, ext(extQUICParams, h.quicTP))
	}
	for _, t := range h.extra {
		exts = cat(exts, ext(t, nil))
	}
	body = cat(body, vec16(exts))
	if h.dtls {
		l := len(body)
		hdr := []byte{hsClientHello, byte(l >> 16), byte(l >> 8), byte(l), 0, 0, 0, 0, 0, byte(l >> 16), byte(l >> 8), byte(l)}
		return cat(hdr, body)
	}
	return cat([]byte{hsClientHello}, vec24(body))
}

func tlsRecord(ct byte, payload []byte) []byte {
	return cat([]byte{ct, 3, 1}, vec16(payload))
}

func serverHello(version uint16) []byte {
	body := cat(be16(0x0303), make([]byte, 32), vec8(nil), be16(0xc02f), []byte{0})
	if version >= 0x0304 {
		body = cat(body, vec16(ext(extSupVersions, be16(version))))
	}
	return cat([]byte{hsServerHello}, vec24(body))
}

func certificateMsg(der []byte) []byte {
	return cat([]byte{hsCertificate}, vec24(vec24(vec24(der))))
}

// pk is one packet of a test flow.
type pk struct {
	dir   Dir
	data  []byte
	flags uint8
	seq   uint32
}

func addrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func tcpFlow(c, s string) Flow { return Flow{Proto: 6, Client: addrPort(c), Server: addrPort(s)} }
func udpFlow(c, s string) Flow { return Flow{Proto: 17, Client: addrPort(c), Server: addrPort(s)} }

func testEngine(tb testing.TB) *Engine {
	tb.Helper()
	e, err := NewEngine(DefaultConfig())
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// runFlow feeds the packets and returns the result.
func runFlow(e *Engine, f Flow, pkts ...pk) (Result, *State) {
	st := new(State)
	for _, p := range pkts {
		if e.Inspect(st, &f, p.dir, p.data, p.flags, p.seq) {
			break
		}
	}
	return e.Result(st, &f), st
}

// tcpStreams lays out a TCP handshake and the segments of each side's
// stream, with sequence numbers, in the order given by segs (each
// {dir, offset, length}).
type seg struct {
	dir      Dir
	off, len int
}

func tcpPackets(client, server []byte, segs []seg) []pk {
	const isnC, isnS = 1000, 50000
	pkts := []pk{
		{ToServer, nil, tcpSYN, isnC},
		{ToClient, nil, tcpSYN | tcpACK, isnS},
		{ToServer, nil, tcpACK, isnC + 1},
	}
	for _, s := range segs {
		src, isn := client, uint32(isnC+1)
		if s.dir == ToClient {
			src, isn = server, isnS+1
		}
		end := s.off + s.len
		if end > len(src) {
			end = len(src)
		}
		pkts = append(pkts, pk{s.dir, src[s.off:end], tcpACK | 0x08, isn + uint32(s.off)})
	}
	return pkts
}

// whole returns the segments that send each side's stream in chunks of n.
func whole(dir Dir, data []byte, n int) []seg {
	var out []seg
	for off := 0; off < len(data); off += n {
		out = append(out, seg{dir, off, n})
	}
	return out
}

func varintBytes(v uint64) []byte {
	switch {
	case v < 1<<6:
		return []byte{byte(v)}
	case v < 1<<14:
		return []byte{0x40 | byte(v>>8), byte(v)}
	case v < 1<<30:
		return []byte{0x80 | byte(v>>24), byte(v >> 16), byte(v >> 8), byte(v)}
	}
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v|3<<62)
	return b
}

func cryptoFrame(off int, data []byte) []byte {
	return cat([]byte{0x06}, varintBytes(uint64(off)), varintBytes(uint64(len(data))), data)
}

// quicInitial protects a client Initial packet carrying frames, padded to
// 1200 bytes, as a client would (RFC 9001 §5).
func quicInitial(tb testing.TB, version uint32, dcid []byte, pn uint32, frames []byte) []byte {
	tb.Helper()
	var q quicCtx
	if !q.deriveKeys(version, dcid) {
		tb.Fatal("derive keys")
	}
	first := byte(0xc3) // long header, Initial, 4-byte packet number
	if version == quicV2 {
		first = 0xd3
	}
	hdrLen := 1 + 4 + 1 + len(dcid) + 1 + 1 + 2 + 4
	payloadLen := 1200 - hdrLen - 16
	if len(frames) > payloadLen {
		payloadLen = len(frames)
	}
	plain := make([]byte, payloadLen) // PADDING frames are zeros
	copy(plain, frames)
	length := 4 + payloadLen + 16
	hdr := cat([]byte{first}, binary.BigEndian.AppendUint32(nil, version), vec8(dcid), []byte{0}, []byte{0},
		[]byte{0x40 | byte(length>>8), byte(length)}, binary.BigEndian.AppendUint32(nil, pn))
	nonce := q.iv
	var pnb [8]byte
	binary.BigEndian.PutUint64(pnb[:], uint64(pn))
	for i := 0; i < 8; i++ {
		nonce[4+i] ^= pnb[i]
	}
	ct := q.aead.Seal(nil, nonce[:], plain, hdr)
	pkt := cat(hdr, ct)
	pnOff := len(hdr) - 4
	var mask [16]byte
	hpb, _ := aes.NewCipher(hpKey(tb, version, dcid))
	hpb.Encrypt(mask[:], pkt[pnOff+4:pnOff+20])
	pkt[0] ^= mask[0] & 0x0f
	for i := 0; i < 4; i++ {
		pkt[pnOff+i] ^= mask[1+i]
	}
	return pkt
}

// hpKey derives the header protection key (the context keeps only the cipher).
func hpKey(tb testing.TB, version uint32, dcid []byte) []byte {
	initial, err := hkdf.Extract(sha256.New, dcid, quicSalt(version))
	if err != nil {
		tb.Fatal(err)
	}
	client := hkdfExpandLabel(initial, "client in", 32)
	label := "quic hp"
	if version == quicV2 {
		label = "quicv2 hp"
	}
	return hkdfExpandLabel(client, label, 16)
}

// DNS messages.

func dnsQName(name string) []byte {
	var b []byte
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			b = append(b, byte(i-start))
			b = append(b, name[start:i]...)
			start = i + 1
		}
	}
	return append(b, 0)
}

func dnsQuery(id uint16, name string, qtype uint16) []byte {
	return cat(be16(id), be16(0x0100), be16(1), be16(0), be16(0), be16(0), dnsQName(name), be16(qtype), be16(1))
}

// dnsAnswer answers name with A/AAAA records (compressed names) of ttl.
func dnsAnswer(id uint16, name string, ttl uint32, addrs ...netip.Addr) []byte {
	b := cat(be16(id), be16(0x8180), be16(1), be16(uint16(len(addrs))), be16(0), be16(0), dnsQName(name), be16(1), be16(1))
	for _, a := range addrs {
		typ, rd := uint16(1), a.AsSlice()
		if a.Is6() {
			typ = 28
		}
		b = cat(b, []byte{0xc0, 12}, be16(typ), be16(1), binary.BigEndian.AppendUint32(nil, ttl), vec16(rd))
	}
	return b
}
