package dpi

import "bytes"

// TFTP (RFC 1350): a read or write request names a file and a transfer
// mode ("octet", "netascii", "mail"); the transfer itself runs between
// other ports, DATA blocks (opcode 3) answered by ACKs (opcode 4) of the
// same block number.
func tftpUDP(e *Engine, p *pkt) bool {
	b := p.p
	st := p.st
	if len(b) < 4 || b[0] != 0 {
		return false
	}
	switch b[1] {
	case 1, 2:
		r := b[2:]
		i := bytes.IndexByte(r, 0)
		if i < 1 || i+1 >= len(r) {
			return false
		}
		mode := r[i+1:]
		j := bytes.IndexByte(mode, 0)
		if j < 4 {
			return false
		}
		m := bytes.ToLower(mode[:j])
		if string(m) == "octet" || string(m) == "netascii" || string(m) == "mail" {
			return claim(p, pTFTP, 0)
		}
	case 3, 4:
		if b[1] == 3 && len(b) > 4+65464 || b[1] == 4 && len(b) != 4 {
			return false
		}
		blk := uint64(u16(b[2:]))
		key := uint64(b[1])<<16 | blk | uint64(p.dir)<<32
		if st.owner == ownTFTP {
			prev := st.aux
			if Dir(prev>>32) != p.dir && prev&0xffff == blk && (prev>>16&0xff) != uint64(b[1]) {
				return claim(p, pTFTP, 0)
			}
			st.aux = key
			return false
		}
		if st.owner == ownNone {
			st.owner, st.aux = ownTFTP, key
		}
	case 6: // option acknowledgement: "name\0value\0" pairs of known options
		r := b[2:]
		i := bytes.IndexByte(r, 0)
		if i > 0 {
			switch string(bytes.ToLower(r[:i])) {
			case "blksize", "tsize", "timeout", "windowsize":
				if b[len(b)-1] == 0 {
					return claim(p, pTFTP, 0)
				}
			}
		}
	case 5:
		if p.port(69) && len(b) >= 5 && b[len(b)-1] == 0 {
			return claim(p, pTFTP, 0)
		}
	}
	return false
}
