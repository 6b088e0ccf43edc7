package dpi

// SMB over TCP sits in NetBIOS session service framing (RFC 1002 §4.3;
// on 445 "direct hosting" keeps the same 4-byte header). The dialect is in
// the SMB header's first byte: 0xff is SMBv1, 0xfe SMB2/3 and 0xfd an
// SMB3 transform header. nDPI names these NetBIOS.SMBv1 / NetBIOS.SMBv23.
func smbTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first || len(b) < 4 {
		return false
	}
	switch b[0] {
	case 0x00: // session message
		if len(b) < 8 || b[1]&0xfe != 0 {
			return false
		}
		if string(b[5:8]) != "SMB" {
			return false
		}
		switch b[4] {
		case 0xff:
			return claim(p, pNetBIOS, pSMBv1)
		case 0xfe, 0xfd:
			return claim(p, pNetBIOS, pSMBv23)
		}
	case 0x81: // session request: two encoded NetBIOS names of 34 bytes
		if p.port(139) && len(b) >= 4+68 && b[4] == 0x20 {
			return claim(p, pNetBIOS, 0)
		}
	case 0x82, 0x83:
		if p.port(139) && len(b) >= 4 && b[1] == 0 {
			return claim(p, pNetBIOS, 0)
		}
	}
	return false
}
