package dpi

import "encoding/binary"

// OpenVPN's control channel starts with P_CONTROL_HARD_RESET_CLIENT_V2/V3
// (opcode 7 or 10, key id 0) carrying the client's 8-byte session id;
// without tls-auth the packet is 14 bytes (empty ack list, message id 0),
// with tls-auth or tls-crypt 42 or 54. The server answers with
// HARD_RESET_SERVER_V2 (opcode 8). With tls-crypt v2 the sizes vary, so
// the flow is also accepted when the client's next control or ack packet
// (opcodes 4 and 5) repeats the session id of its reset. Over TCP each
// packet has a two-byte length.
const (
	ovpnResetClientV2 = 7 << 3
	ovpnResetServerV2 = 8 << 3
	ovpnControlV1     = 4 << 3
	ovpnAckV1         = 5 << 3
	ovpnResetClientV3 = 10 << 3
)

func (e *Engine) ovpn(p *pkt, b []byte) bool {
	st := p.st
	if len(b) < 14 {
		return false
	}
	sid := binary.BigEndian.Uint64(b[1:])
	if st.owner == ownOpenVPN {
		if p.dir == Dir(st.aux>>63) || p.dir == ToServer && st.aux>>63 == 0 {
			if (b[0] == ovpnControlV1 || b[0] == ovpnAckV1) && sid&^(1<<63) == st.aux&^(1<<63) {
				return claim(p, pOpenVPN, 0)
			}
		} else if b[0] == ovpnResetServerV2 {
			return claim(p, pOpenVPN, 0)
		}
		return false
	}
	if !p.first {
		return false
	}
	switch b[0] {
	case ovpnResetClientV2, ovpnResetClientV3:
		if len(b) == 14 && b[9] == 0 && b[10]|b[11]|b[12]|b[13] == 0 || len(b) == 42 || len(b) == 54 {
			return claim(p, pOpenVPN, 0)
		}
		if st.owner == ownNone && len(b) < 1200 {
			st.owner = ownOpenVPN
			st.aux = sid&^(1<<63) | uint64(p.dir)<<63
		}
	case ovpnResetServerV2:
		if len(b) == 26 && b[9] == 1 {
			return claim(p, pOpenVPN, 0)
		}
	}
	return false
}

func openvpnUDP(e *Engine, p *pkt) bool {
	return e.ovpn(p, p.p)
}

func openvpnTCP(e *Engine, p *pkt) bool {
	b := p.p
	if len(b) < 16 || int(u16(b)) != len(b)-2 {
		return false
	}
	return e.ovpn(p, b[2:])
}
