package dpi

import "bytes"

// BitTorrent: the TCP handshake is "\x13BitTorrent protocol"; over UDP the
// DHT speaks bencoded dictionaries ("d1:ad2:id20:...") and uTP (BEP 29) has
// a 20-byte header whose first byte is type<<4 | version 1. A uTP SYN and
// the answer carrying the same connection id, or two packets whose
// connection ids differ by one (each side's id), make a uTP flow.
var btHandshake = []byte("\x13BitTorrent protocol")

func bittorrentTCP(e *Engine, p *pkt) bool {
	return p.first && bytes.HasPrefix(p.p, btHandshake) && claim(p, pBitTorrent, 0)
}

func bittorrentUDP(e *Engine, p *pkt) bool {
	b := p.p
	st := p.st
	if bytes.HasPrefix(b, []byte("d1:ad2:id20:")) || bytes.HasPrefix(b, []byte("d1:rd2:id20:")) ||
		bytes.HasPrefix(b, []byte("d1:el")) || bytes.HasPrefix(b, btHandshake) {
		return claim(p, pBitTorrent, 0)
	}
	if len(b) < 20 || b[0]&0x0f != 1 || b[0]>>4 > 4 || b[1] > 3 {
		return false
	}
	cid := uint64(u16(b[2:]))
	if st.owner == ownBT {
		prev := st.aux
		pdir := Dir(prev >> 32)
		pc := prev & 0xffff
		if pdir != p.dir && (cid == pc || cid+1 == pc || pc+1 == cid) {
			return claim(p, pBitTorrent, 0)
		}
		return false
	}
	if st.owner == ownNone {
		st.owner, st.aux = ownBT, uint64(p.dir)<<32|cid
	}
	return false
}
