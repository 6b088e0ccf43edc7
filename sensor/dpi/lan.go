package dpi

import (
	"bytes"
	"encoding/binary"
)

// Applications' own LAN and discovery protocols, each a fixed signature on
// its port: Dropbox LAN sync (JSON broadcasts on 17500), Spotify Connect
// discovery ("SpotUdp0" on 57621) and its TCP access point protocol (4070),
// Steam's in-home discovery (27036) and Datagram Relay pings ("sdping"),
// Tuya IoT LAN broadcasts (0x000055aa ... 0x0000aa55 on 6666/6667).

func dropboxUDP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.port(17500) || len(b) < 16 || b[0] != '{' || !bytes.Contains(b, []byte(`"host_int"`)) {
		return false
	}
	return claim(p, pDropbox, 0)
}

func spotifyUDP(e *Engine, p *pkt) bool {
	if !p.port(57621) || !bytes.HasPrefix(p.p, []byte("SpotUdp")) {
		return false
	}
	return claim(p, pSpotify, 0)
}

func spotifyTCP(e *Engine, p *pkt) bool {
	b := p.p
	if !p.first || !p.port(4070) || len(b) < 8 || !bytes.HasPrefix(b, []byte{0, 4, 0, 0}) {
		return false
	}
	return claim(p, pSpotify, 0)
}

func steamUDP(e *Engine, p *pkt) bool {
	b := p.p
	switch {
	case p.port(27036) && len(b) >= 8 && binary.BigEndian.Uint64(b) == 0xffffffff214c5fa0:
		return claim(p, pSteam, 0)
	case len(b) >= 8 && b[0] == 0x01 && string(b[2:8]) == "sdping":
		return claim(p, pSteamDR, 0)
	}
	return false
}

func tuyaUDP(e *Engine, p *pkt) bool {
	b := p.p
	if len(b) < 24 || !(p.port(6666) || p.port(6667)) {
		return false
	}
	if binary.BigEndian.Uint32(b) != 0x000055aa || binary.BigEndian.Uint32(b[len(b)-4:]) != 0x0000aa55 {
		return false
	}
	return claim(p, pTuyaLP, 0)
}

// Discord voice opens with a 74-byte IP discovery request (type 1, length
// 70, the SSRC) that the server answers (type 2) with the client's address.
func discordUDP(e *Engine, p *pkt) bool {
	b := p.p
	if len(b) != 74 || b[0] != 0 || b[1] != 1 && b[1] != 2 || u16(b[2:]) != 70 {
		return false
	}
	return claim(p, pDiscord, 0)
}

// Zoom's media servers (UDP 8801-8810) wrap everything in their own header
// whose first byte is a message type 1-5 and whose next bytes are a
// sequence or session id.
func zoomUDP(e *Engine, p *pkt) bool {
	b := p.p
	srv := p.srvPort()
	if srv < 8801 || srv > 8810 || len(b) < 12 || b[0] < 1 || b[0] > 5 {
		return false
	}
	return claim(p, pZoom, 0)
}
