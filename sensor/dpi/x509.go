package dpi

import "bytes"

// A minimal DER walk over the leaf certificate of a TLS Certificate
// message, for the subject CN and the SAN dNSNames. crypto/x509 would
// need the whole certificate and allocate a full parse per flow; the
// subject comes early, so a certificate cut by the reassembly bound still
// gives its CN here.

var (
	oidCN  = []byte{0x55, 0x04, 0x03}
	oidSAN = []byte{0x55, 0x1d, 0x11}
)

const maxSAN = 8

// derNext reads one TLV. A value running past the input is returned cut
// short with whole false, so callers can still look inside it.
func derNext(b []byte) (tag byte, val, rest []byte, whole, ok bool) {
	if len(b) < 2 {
		return 0, nil, nil, false, false
	}
	tag = b[0]
	l := int(b[1])
	i := 2
	if l&0x80 != 0 {
		n := l & 0x7f
		if n == 0 || n > 3 || len(b) < 2+n {
			return 0, nil, nil, false, false
		}
		l = 0
		for j := 0; j < n; j++ {
			l = l<<8 | int(b[2+j])
		}
		i = 2 + n
	}
	if i+l > len(b) {
		return tag, b[i:], nil, false, true
	}
	return tag, b[i : i+l], b[i+l:], true, true
}

// leafCertNames returns the subject CN and the SAN dNSNames of the first
// certificate in a TLS (<= 1.2) Certificate message body.
func leafCertNames(body []byte) (cn []byte, san [][]byte, ok bool) {
	if len(body) < 6 {
		return nil, nil, false
	}
	cl := u24(body[3:])
	der := body[6:]
	if cl < len(der) {
		der = der[:cl]
	}
	tag, cert, _, _, okk := derNext(der)
	if !okk || tag != 0x30 {
		return nil, nil, false
	}
	tag, tbs, _, _, okk := derNext(cert)
	if !okk || tag != 0x30 {
		return nil, nil, false
	}
	// version?, serial, signature, issuer, validity, subject, spki, ..., [3] extensions
	field := 0
	for len(tbs) > 0 {
		tag, val, rest, whole, okk := derNext(tbs)
		if !okk {
			break
		}
		if tag == 0xa0 && field == 0 {
			tbs = rest
			continue
		}
		switch field {
		case 4: // subject
			cn = nameCN(val)
		case 6, 7, 8:
			if tag == 0xa3 {
				san = sanNames(val)
			}
		}
		field++
		if !whole {
			break
		}
		tbs = rest
	}
	return cn, san, len(cn) > 0 || len(san) > 0
}

// nameCN finds the commonName in an X.501 Name.
func nameCN(name []byte) []byte {
	for len(name) > 0 {
		tag, set, rest, _, ok := derNext(name)
		if !ok || tag != 0x31 {
			return nil
		}
		for s := set; len(s) > 0; {
			tag, atv, r2, _, ok := derNext(s)
			if !ok || tag != 0x30 {
				break
			}
			t, oid, v, _, ok := derNext(atv)
			if ok && t == 0x06 && bytes.Equal(oid, oidCN) {
				if t, val, _, whole, ok := derNext(v); ok && whole && (t == 0x13 || t == 0x0c || t == 0x16 || t == 0x14) {
					return val
				}
			}
			s = r2
		}
		name = rest
	}
	return nil
}

// sanNames reads the dNSNames of the subjectAltName extension.
func sanNames(exts []byte) [][]byte {
	tag, seq, _, _, ok := derNext(exts)
	if !ok || tag != 0x30 {
		return nil
	}
	for len(seq) > 0 {
		tag, ext, rest, whole, ok := derNext(seq)
		if !ok || tag != 0x30 {
			return nil
		}
		t, oid, v, _, ok := derNext(ext)
		if ok && t == 0x06 && bytes.Equal(oid, oidSAN) {
			t, val, r, _, ok := derNext(v)
			if ok && t == 0x01 { // critical flag
				t, val, _, _, ok = derNext(r)
			}
			if !ok || t != 0x04 {
				return nil
			}
			t, names, _, _, ok := derNext(val)
			if !ok || t != 0x30 {
				return nil
			}
			var out [][]byte
			for len(names) > 0 && len(out) < maxSAN {
				t, n, r, whole, ok := derNext(names)
				if !ok {
					break
				}
				if t == 0x82 && whole {
					out = append(out, n)
				}
				names = r
			}
			return out
		}
		if !whole {
			return nil
		}
		seq = rest
	}
	return nil
}
