package dpi

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
)

// QUIC hides its ClientHello in Initial packets protected with keys anyone
// can derive from the packet's Destination Connection ID (RFC 9001 §5.2,
// RFC 9369 §3.3 for version 2): HKDF with the version's salt, then the
// header-protection mask (AES-ECB over a sample) and AES-128-GCM. The
// ClientHello travels in CRYPTO frames that clients split, shuffle and
// spread over several Initials (Chrome does all three), so the frames are
// reassembled by offset into a bounded buffer before the TLS parser runs.
// Google's gQUIC (Q0xx) carries a plaintext "CHLO" message instead; Q050
// encrypts it the IETF way with its own salt.

var (
	saltV1      = []byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a}
	saltV2      = []byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9}
	saltDraft29 = []byte{0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0, 0x43, 0x90, 0xa8, 0x99}
	saltDraft23 = []byte{0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4, 0x63, 0x65, 0xbe, 0xf9, 0xf5, 0x02}
	saltDraft22 = []byte{0x7f, 0xbc, 0xdb, 0x0e, 0x7c, 0x66, 0xbb, 0xe9, 0x19, 0x3a, 0x96, 0xcd, 0x21, 0x51, 0x9e, 0xbd, 0x7a, 0x02, 0x64, 0x4a}
	saltQ050    = []byte{0x50, 0x45, 0x74, 0xef, 0xd0, 0x66, 0xfe, 0x2f, 0x9d, 0x94, 0x5c, 0xfc, 0xdb, 0xd3, 0xa7, 0xf0, 0xd3, 0xb5, 0x6b, 0x45}
	saltT050    = []byte{0x7f, 0xf5, 0x79, 0xe5, 0xac, 0xd0, 0x72, 0x91, 0x55, 0x80, 0x30, 0x4c, 0x43, 0xa2, 0x36, 0x7c, 0x60, 0x48, 0x83, 0x10}
	saltT051    = []byte{0x7a, 0x4e, 0xde, 0xf4, 0xe7, 0xcc, 0xee, 0x5f, 0xa4, 0x50, 0x6c, 0x19, 0x12, 0x4f, 0xc8, 0xcc, 0xda, 0x6e, 0x03, 0x3d}
)

const (
	quicV1  = 0x00000001
	quicV2  = 0x6b3343cf
	quicQ50 = 0x51303530 // "Q050"
	quicT50 = 0x54303530 // "T050"
	quicT51 = 0x54303531 // "T051"
)

// quicCtx is a QUIC flow's decryption context, pooled.
type quicCtx struct {
	version uint32
	dcid    [20]byte
	dcidLen int
	aead    cipher.AEAD
	hp      cipher.Block
	iv      [12]byte
	keyed   bool
	crypto  stream
	scratch []byte // header copy and plaintext
}

func (q *quicCtx) reset() {
	q.version, q.dcidLen, q.keyed = 0, 0, false
	q.aead, q.hp = nil, nil
	q.crypto.reset()
}

// quicVersionKind classifies a version number: 0 not QUIC, 1 IETF (or
// T05x: TLS in CRYPTO frames), 2 gQUIC with a plaintext CHLO, 3 Q050
// (encrypted CHLO).
func quicVersionKind(v uint32) int {
	switch {
	case v == quicV1 || v == quicV2:
		return 1
	case v>>8 == 0xff0000 && v&0xff >= 22: // IETF drafts we have salts for
		return 1
	case v&0xfffff000 == 0xfaceb000: // Facebook mvfst
		return 1
	case v == quicT50 || v == quicT51:
		return 1
	case v == quicQ50:
		return 3
	case v>>24 == 'Q' && isDigit(byte(v>>16)) && isDigit(byte(v>>8)) && isDigit(byte(v)):
		return 2
	case v>>24 == 'T' && isDigit(byte(v>>16)) && isDigit(byte(v>>8)) && isDigit(byte(v)):
		return 2
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func quicSalt(v uint32) []byte {
	switch {
	case v == quicV2:
		return saltV2
	case v == quicQ50:
		return saltQ050
	case v == quicT50:
		return saltT050
	case v == quicT51:
		return saltT051
	case v>>8 == 0xff0000:
		switch d := v & 0xff; {
		case d <= 22:
			return saltDraft22
		case d <= 28:
			return saltDraft23
		case d <= 32:
			return saltDraft29
		}
	case v == 0xfaceb001:
		return saltDraft22
	case v&0xfffff000 == 0xfaceb000:
		return saltDraft23
	}
	return saltV1
}

// isInitial reports whether a long-header first byte is an Initial packet
// for the version (v2 renumbered the packet types).
func isInitial(first byte, v uint32) bool {
	t := first >> 4 & 3
	if v == quicV2 {
		return t == 1
	}
	return t == 0
}

// varint reads a QUIC variable-length integer.
func varint(b []byte) (uint64, int) {
	if len(b) == 0 {
		return 0, 0
	}
	n := 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0
	}
	v := uint64(b[0] & 0x3f)
	for i := 1; i < n; i++ {
		v = v<<8 | uint64(b[i])
	}
	return v, n
}

// hkdfExpandLabel is TLS 1.3's HKDF-Expand-Label with an empty context.
func hkdfExpandLabel(secret []byte, label string, n int) []byte {
	var info [2 + 1 + 6 + 32 + 1]byte
	info[0], info[1] = byte(n>>8), byte(n)
	info[2] = byte(6 + len(label))
	copy(info[3:], "tls13 ")
	copy(info[9:], label)
	l := 9 + len(label)
	info[l] = 0
	out, err := hkdf.Expand(sha256.New, secret, string(info[:l+1]), n)
	if err != nil {
		return make([]byte, n)
	}
	return out
}

// deriveKeys sets up the client Initial keys from a DCID.
func (q *quicCtx) deriveKeys(v uint32, dcid []byte) bool {
	initial, err := hkdf.Extract(sha256.New, dcid, quicSalt(v))
	if err != nil {
		return false
	}
	client := hkdfExpandLabel(initial, "client in", 32)
	kl, il, hl := "quic key", "quic iv", "quic hp"
	if v == quicV2 {
		kl, il, hl = "quicv2 key", "quicv2 iv", "quicv2 hp"
	}
	key := hkdfExpandLabel(client, kl, 16)
	iv := hkdfExpandLabel(client, il, 12)
	hp := hkdfExpandLabel(client, hl, 16)
	blk, err := aes.NewCipher(key)
	if err != nil {
		return false
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return false
	}
	hpb, err := aes.NewCipher(hp)
	if err != nil {
		return false
	}
	q.aead, q.hp = aead, hpb
	copy(q.iv[:], iv)
	q.version = v
	q.dcidLen = copy(q.dcid[:], dcid)
	q.keyed = true
	return true
}

// decryptInitial removes header and packet protection from one long-header
// Initial packet at the start of b. It returns the plaintext (in
// q.scratch) and the packet's total length, to find coalesced packets.
func (q *quicCtx) decryptInitial(b []byte, v uint32) (plain []byte, size int, ok bool) {
	if len(b) < 7 {
		return nil, 0, false
	}
	dl := int(b[5])
	if dl > 20 || 6+dl+1 > len(b) {
		return nil, 0, false
	}
	dcid := b[6 : 6+dl]
	i := 6 + dl
	sl := int(b[i])
	i += 1 + sl
	if sl > 20 || i > len(b) {
		return nil, 0, false
	}
	tl, n := varint(b[i:])
	if n == 0 || tl > uint64(len(b)) {
		return nil, 0, false
	}
	i += n + int(tl)
	if i > len(b) {
		return nil, 0, false
	}
	length, n := varint(b[i:])
	if n == 0 {
		return nil, 0, false
	}
	i += n
	pnOff := i
	if length < 20 || uint64(pnOff)+length > uint64(len(b)) {
		return nil, 0, false
	}
	size = pnOff + int(length)
	if !q.keyed || q.version != v || !bytes.Equal(q.dcid[:q.dcidLen], dcid) {
		if !q.deriveKeys(v, dcid) {
			return nil, 0, false
		}
	}
	var mask [16]byte
	q.hp.Encrypt(mask[:], b[pnOff+4:pnOff+20])
	if cap(q.scratch) < size {
		q.scratch = make([]byte, size, max(size, 1600))
	}
	h := q.scratch[:size]
	copy(h, b[:size])
	h[0] ^= mask[0] & 0x0f
	pnLen := int(h[0]&3) + 1
	var pn uint64
	for j := 0; j < pnLen; j++ {
		h[pnOff+j] ^= mask[1+j]
		pn = pn<<8 | uint64(h[pnOff+j])
	}
	nonce := q.iv
	var pnb [8]byte
	binary.BigEndian.PutUint64(pnb[:], pn)
	for j := 0; j < 8; j++ {
		nonce[4+j] ^= pnb[j]
	}
	hdr := h[:pnOff+pnLen]
	ct := h[pnOff+pnLen:]
	out, err := q.aead.Open(ct[:0], nonce[:], ct, hdr)
	if err != nil {
		return nil, size, false
	}
	return out, size, true
}

// cryptoFrames copies the CRYPTO frames of a decrypted Initial into the
// crypto stream. Initial packets carry only PADDING, PING, ACK, CRYPTO and
// CONNECTION_CLOSE; anything else ends the walk.
//
// Google's T05x versions put TLS in gQUIC frames: CRYPTO is 0x08 there,
// PING 0x07, and the IETF numbers mean other things.
func (q *quicCtx) cryptoFrames(b []byte, c *counters) {
	gq := q.version == quicT50 || q.version == quicT51
	for len(b) > 0 {
		typ, n := varint(b)
		if n == 0 {
			return
		}
		b = b[n:]
		if gq {
			switch typ {
			case 0x00, 0x07:
				continue
			case 0x08:
				typ = 0x06
			default:
				return
			}
		}
		switch typ {
		case 0x00, 0x01:
		case 0x02, 0x03:
			cnt := 4
			for k := 0; k < cnt && len(b) > 0; k++ {
				v, n := varint(b)
				if n == 0 {
					return
				}
				b = b[n:]
				if k == 2 { // ACK range count: a gap and a length each
					if v > 256 {
						return
					}
					cnt += 2 * int(v)
				}
			}
			if typ == 0x03 {
				for k := 0; k < 3; k++ {
					_, n := varint(b)
					if n == 0 {
						return
					}
					b = b[n:]
				}
			}
		case 0x06:
			off, n := varint(b)
			if n == 0 {
				return
			}
			b = b[n:]
			l, n := varint(b)
			if n == 0 || l > uint64(len(b)-n) || off > 1<<20 {
				return
			}
			b = b[n:]
			q.crypto.write(int(off), b[:l], c)
			b = b[l:]
		case 0x1c, 0x1d:
			return
		default:
			return
		}
	}
}

// quicUDP is the QUIC dissector. It reports whether it took the packet.
func (e *Engine) quicUDP(p *pkt) bool {
	st := p.st
	b := p.p
	if st.master == 0 {
		if !p.first || len(b) < 14 || st.flags&(fSeen0<<(p.dir^1)) != 0 {
			return false
		}
		var v uint32
		var kind int
		if b[0]&0x80 != 0 {
			v = binary.BigEndian.Uint32(b[1:])
			kind = quicVersionKind(v)
			if kind == 0 || int(b[5]) > 20 {
				return false
			}
			if kind == 1 && !isInitial(b[0], v) {
				return false
			}
		} else {
			// gQUIC before Q046: public flags, an 8-byte connection id, the version.
			if b[0]&0x01 == 0 || b[0]&0x08 == 0 {
				return false
			}
			v = binary.BigEndian.Uint32(b[9:])
			if quicVersionKind(v) != 2 {
				return false
			}
			kind = 2
		}
		st.set(pQUIC, 0)
		st.setRev(p.dir != ToServer)
		if kind == 2 {
			e.gquicHello(p, b)
			e.finish(st)
			return true
		}
		st.flags |= fPending
	}
	if p.dir != st.clientDir() {
		return true
	}
	if b[0]&0x80 == 0 || len(b) < 7 {
		return true
	}
	x := e.ext(st)
	if x.q == nil {
		if !e.reserve(e.cfg.ReassemblyBytes) {
			e.finish(st) // QUIC, unnamed: no buffer left to read its Initials
			return true
		}
		x.q = e.quicPool.Get().(*quicCtx)
		x.q.reset()
	}
	q := x.q
	for len(b) >= 7 && b[0]&0x80 != 0 {
		v := binary.BigEndian.Uint32(b[1:])
		if k := quicVersionKind(v); k != 1 && k != 3 || !isInitial(b[0], v) {
			break
		}
		plain, size, ok := q.decryptInitial(b, v)
		if !ok {
			e.ctr.quicFail.Add(1)
			if size == 0 {
				break
			}
			b = b[size:]
			continue
		}
		e.ctr.quicOK.Add(1)
		if quicVersionKind(v) == 3 {
			e.gquicHello(p, plain)
			e.finish(st)
			return true
		}
		q.cryptoFrames(plain, &e.ctr)
		b = b[size:]
	}
	data := q.crypto.data()
	if len(data) >= 4 && data[0] == hsClientHello {
		l := u24(data[1:])
		if 4+l <= len(data) {
			var h helloInfo
			if parseClientHello(data[4:4+l], false, &h) {
				e.tlsClientHello(p, &h, 'q')
			}
			e.finish(st)
			return true
		}
		if 4+l > len(q.crypto.buf) {
			e.finish(st) // larger than the bound: QUIC without a name
			return true
		}
	} else if len(data) >= 4 {
		e.finish(st)
	}
	return true
}

// gquicHello reads SNI and UAID from a gQUIC CHLO found in b.
func (e *Engine) gquicHello(p *pkt, b []byte) {
	i := bytes.Index(b, []byte("CHLO"))
	if i < 0 || i+8 > len(b) {
		return
	}
	n := int(binary.LittleEndian.Uint16(b[i+4:]))
	tags := b[i+8:]
	if n > 128 || 8*n > len(tags) {
		return
	}
	vals := tags[8*n:]
	prev := 0
	st := p.st
	for k := 0; k < n; k++ {
		tag := tags[8*k : 8*k+4]
		end := int(binary.LittleEndian.Uint32(tags[8*k+4:]))
		if end < prev || end > len(vals) {
			return
		}
		v := vals[prev:end]
		prev = end
		switch string(tag) {
		case "SNI\x00":
			m := st.meta()
			m.serverName = string(sanitize(v))
			st.app = e.hostApp(st, m.serverName)
		case "UAID":
			st.meta().userAgent = string(sanitize(v))
		}
	}
}

// quicParamUA finds google_user_agent (0x3129) in QUIC transport
// parameters, where Chrome put its User-Agent.
func quicParamUA(b []byte) []byte {
	for len(b) > 0 {
		id, n := varint(b)
		if n == 0 {
			return nil
		}
		b = b[n:]
		l, n := varint(b)
		if n == 0 || l > uint64(len(b)-n) {
			return nil
		}
		b = b[n:]
		if id == 0x3129 {
			return b[:l]
		}
		b = b[l:]
	}
	return nil
}
