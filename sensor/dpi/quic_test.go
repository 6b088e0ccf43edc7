package dpi

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// RFC 9001 Appendix A.1 and RFC 9369 Appendix A.1: client Initial keys
// for the DCID 0x8394c8f03e515708.
func TestQUICInitialKeys(t *testing.T) {
	dcid, _ := hex.DecodeString("8394c8f03e515708")
	for _, tt := range []struct {
		version     uint32
		key, iv, hp string
	}{
		{quicV1, "1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c", "9f50449e04a0e810283a1e9933adedd2"},
		{quicV2, "8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f", "45b95e15235d6f45a6b19cbcb0294ba9"},
	} {
		initial, _ := hkdf.Extract(sha256.New, dcid, quicSalt(tt.version))
		client := hkdfExpandLabel(initial, "client in", 32)
		kl, il, hl := "quic key", "quic iv", "quic hp"
		if tt.version == quicV2 {
			kl, il, hl = "quicv2 key", "quicv2 iv", "quicv2 hp"
		}
		for _, c := range []struct{ label, want string }{{kl, tt.key}, {il, tt.iv}, {hl, tt.hp}} {
			got := hex.EncodeToString(hkdfExpandLabel(client, c.label, len(c.want)/2))
			if got != c.want {
				t.Errorf("%#x %s = %s, want %s", tt.version, c.label, got, c.want)
			}
		}
	}
}

func TestQUICInitial(t *testing.T) {
	e := testEngine(t)
	dcid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	tp := cat(varintBytes(0x3129), vec8([]byte("Chrome/120")))
	ch := clientHello(hello{sni: "www.youtube.com", alpn: []string{"h3"}, versions: []uint16{0x0304}, quicTP: tp})
	f := udpFlow("10.0.0.1:50000", "142.250.1.1:443")
	half := len(ch) / 2
	for _, tt := range []struct {
		name    string
		version uint32
		pkts    [][]byte
	}{
		{"v1 one packet", quicV1, [][]byte{cryptoFrame(0, ch)}},
		{"v2 one packet", quicV2, [][]byte{cryptoFrame(0, ch)}},
		{"draft-29", 0xff00001d, [][]byte{cryptoFrame(0, ch)}},
		{"shuffled frames with PING and PADDING", quicV1, [][]byte{cat(cryptoFrame(half, ch[half:]), []byte{1, 0, 0}, cryptoFrame(0, ch[:half]))}},
		{"two packets, second first", quicV1, [][]byte{cryptoFrame(half, ch[half:]), cryptoFrame(0, ch[:half])}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var pkts []pk
			for i, fr := range tt.pkts {
				pkts = append(pkts, pk{ToServer, quicInitial(t, tt.version, dcid, uint32(i), fr), 0, 0})
			}
			r, st := runFlow(e, f, pkts...)
			if r.Label != "QUIC.YouTube" || r.ServerName != "www.youtube.com" || r.ALPN != "h3" || r.JA4[:10] != "q13d0304h3" || r.UserAgent != "Chrome/120" {
				t.Errorf("got %+v", r)
			}
			if st.x != nil {
				t.Error("QUIC context not released")
			}
		})
	}
	// A packet that fails authentication is still QUIC, without a name.
	bad := quicInitial(t, quicV1, dcid, 0, cryptoFrame(0, ch))
	bad[len(bad)-1] ^= 1
	r, _ := runFlow(e, f, pk{ToServer, bad, 0, 0})
	if r.Label != "QUIC" || r.ServerName != "" || r.Confidence != ConfDPI {
		t.Errorf("corrupt Initial: %+v", r)
	}
	if e.Stats().QUICDecryptFails == 0 {
		t.Error("decrypt failure not counted")
	}
}

// gQUIC before Q050 carries its CHLO in clear.
func TestGQUIC(t *testing.T) {
	e := testEngine(t)
	vals := []byte("www.google.comChrome/85")
	chlo := cat([]byte("CHLO"), []byte{2, 0, 0, 0},
		[]byte("SNI\x00"), []byte{14, 0, 0, 0}, []byte("UAID"), []byte{23, 0, 0, 0}, vals)
	pkt := cat([]byte{0x0d}, make([]byte, 8), []byte("Q043"), []byte{1}, make([]byte, 12), []byte{0x80, 1, 0, 0}, chlo)
	pkt = append(pkt, make([]byte, 1350-len(pkt))...)
	r, _ := runFlow(e, udpFlow("10.0.0.1:50000", "142.250.1.1:443"), pk{ToServer, pkt, 0, 0})
	if r.Label != "QUIC.Google" || r.ServerName != "www.google.com" || r.UserAgent != "Chrome/85" {
		t.Errorf("got %+v", r)
	}
}
