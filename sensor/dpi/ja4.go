package dpi

import (
	"crypto/sha256"
	"slices"
)

// ja4 computes the JA4 client fingerprint of a ClientHello, following
// FoxIO's specification (github.com/FoxIO-LLC/ja4, technical_details/JA4.md):
//
//	kind, version, d|i (SNI or not), cipher count, extension count, ALPN
//	first+last character, "_", sha256 of the sorted cipher list (12 hex),
//	"_", sha256 of the sorted extensions without SNI and ALPN, "_", and the
//	signature algorithms in their order (12 hex).
//
// GREASE values are ignored everywhere. kind is 't' (TLS over TCP), 'q'
// (QUIC) or 'd' (DTLS). The work is done in stack buffers; only the
// returned string is allocated.
func ja4(h *helloInfo, kind byte) string {
	var out [36]byte
	out[0] = kind
	var v string
	switch h.version() {
	case 0x0304:
		v = "13"
	case 0x0303:
		v = "12"
	case 0x0302:
		v = "11"
	case 0x0301:
		v = "10"
	case 0x0300:
		v = "s3"
	case 0x0002:
		v = "s2"
	case 0xfeff:
		v = "d1"
	case 0xfefd:
		v = "d2"
	case 0xfefc:
		v = "d3"
	default:
		v = "00"
	}
	copy(out[1:3], v)
	out[3] = 'i'
	if h.hasSNI {
		out[3] = 'd'
	}
	twoDigits(out[4:6], h.nciphers)
	twoDigits(out[6:8], h.nexts)
	out[8], out[9] = alpnChars(firstALPN(h.alpn))
	out[10] = '_'

	var list [maxListed]uint16
	var text [2*maxListed*5 + 1]byte

	c := list[:h.nciphers]
	copy(c, h.ciphers[:h.nciphers])
	slices.Sort(c)
	n := 0
	for i, x := range c {
		if i > 0 {
			text[n] = ','
			n++
		}
		n += hex4(text[n:], x)
	}
	truncHash(out[11:23], text[:n], len(c) == 0)
	out[23] = '_'

	x := list[:0]
	for _, e := range h.exts[:h.nexts] {
		if e != extServerName && e != extALPN {
			x = append(x, e)
		}
	}
	slices.Sort(x)
	n = 0
	for i, e := range x {
		if i > 0 {
			text[n] = ','
			n++
		}
		n += hex4(text[n:], e)
	}
	first := true
	for i := 0; i+1 < len(h.sigalgs) && n+5 < len(text); i += 2 {
		s := u16(h.sigalgs[i:])
		if isGREASE(s) {
			continue
		}
		if first {
			text[n] = '_'
			first = false
		} else {
			text[n] = ','
		}
		n++
		n += hex4(text[n:], s)
	}
	truncHash(out[24:36], text[:n], len(x) == 0)
	return string(out[:])
}

func twoDigits(b []byte, n int) {
	if n > 99 {
		n = 99
	}
	b[0] = byte('0' + n/10)
	b[1] = byte('0' + n%10)
}

const hexDigits = "0123456789abcdef"

func hex4(b []byte, v uint16) int {
	b[0] = hexDigits[v>>12]
	b[1] = hexDigits[v>>8&15]
	b[2] = hexDigits[v>>4&15]
	b[3] = hexDigits[v&15]
	return 4
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// alpnChars is JA4's ALPN part: the first and last characters of the
// first ALPN value, or of its hex form when either is not alphanumeric.
func alpnChars(a []byte) (byte, byte) {
	if len(a) == 0 {
		return '0', '0'
	}
	f, l := a[0], a[len(a)-1]
	if isAlnum(f) && isAlnum(l) {
		return f, l
	}
	return hexDigits[f>>4], hexDigits[l&15]
}

func truncHash(dst []byte, text []byte, empty bool) {
	if empty {
		copy(dst, "000000000000")
		return
	}
	sum := sha256.Sum256(text)
	for i := 0; i < 6; i++ {
		dst[2*i] = hexDigits[sum[i]>>4]
		dst[2*i+1] = hexDigits[sum[i]&15]
	}
}
