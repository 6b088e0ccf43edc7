package dpi

import "encoding/binary"

// RTP (RFC 3550) has no port and a thin header: version 2, a payload type,
// a sequence number, a timestamp and the SSRC. One packet proves little, so
// a flow is RTP when two packets of the same direction carry the same SSRC
// and close sequence numbers. RTCP sender/receiver reports (packet types
// 200-204) have a length field that must fit the datagram. Over TCP, RTP
// comes in RFC 4571 framing (a two-byte length).

func rtpHeader(b []byte) (ssrc uint32, seq uint16, ok bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return 0, 0, false
	}
	pt := b[1] & 0x7f
	if pt > 34 && pt < 96 || pt >= 72 && pt <= 76 {
		return 0, 0, false
	}
	ssrc = binary.BigEndian.Uint32(b[8:])
	return ssrc, u16(b[2:]), true
}

func rtcpHeader(b []byte) bool {
	if len(b) < 8 || b[0]>>6 != 2 || b[1] < 200 || b[1] > 204 {
		return false
	}
	return (int(u16(b[2:]))+1)*4 <= len(b) && binary.BigEndian.Uint32(b[4:]) != 0
}

func rtpTrack(p *pkt, b []byte) bool {
	st := p.st
	ssrc, seq, ok := rtpHeader(b)
	if !ok {
		return false
	}
	key := uint64(p.dir)<<48 | uint64(seq)<<32 | uint64(ssrc)
	if st.owner == ownRTP {
		prev := st.aux
		if Dir(prev>>48) == p.dir && uint32(prev) == ssrc {
			if d := seq - uint16(prev>>32); d >= 1 && d <= 16 {
				return true
			}
		}
		if Dir(prev>>48) == p.dir {
			st.aux = key
		}
		return false
	}
	if st.owner == ownNone {
		st.owner, st.aux = ownRTP, key
	}
	return false
}

func rtpUDP(e *Engine, p *pkt) bool {
	b := p.p
	if rtcpHeader(b) && (p.sport%2 == 1 || p.dport%2 == 1) {
		return claim(p, pRTCP, 0)
	}
	return rtpTrack(p, b) && claim(p, pRTP, 0)
}

func rtpTCP(e *Engine, p *pkt) bool {
	b := p.p
	if len(b) < 14 || u16(b) < 12 {
		return false
	}
	return rtpTrack(p, b[2:]) && claim(p, pRTP, 0)
}
