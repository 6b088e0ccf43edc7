package dpi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// The example of FoxIO's JA4 specification (technical_details/JA4.md):
// its cipher and extension lists, signature algorithms, TLS 1.3 and h2.
func TestJA4SpecExample(t *testing.T) {
	ciphers := []uint16{0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035}
	// The spec's extension order: 001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015
	var h helloInfo
	h.legacy, h.maxVersion, h.hasSNI = 0x0303, 0x0304, true
	h.nciphers = copy(h.ciphers[:], append([]uint16{0x0a0a}, ciphers...)[1:])
	h.nexts = copy(h.exts[:], []uint16{0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015})
	h.alpn = cat(vec8([]byte("h2")), vec8([]byte("http/1.1")))
	h.sigalgs = u16s(0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)
	if got, want := ja4(&h, 't'), "t13d1516h2_8daaf6152771_e5627efa2ab1"; got != want {
		t.Errorf("ja4 = %s, want %s", got, want)
	}
	// Without signature algorithms the extension list is hashed alone.
	h.sigalgs = nil
	if got, want := ja4(&h, 't')[24:], "6d807ffa2a79"; got != want {
		t.Errorf("ja4_c without sigalgs = %s, want %s", got, want)
	}
}

func TestJA4Parts(t *testing.T) {
	for _, tt := range []struct {
		name string
		h    hello
		kind byte
		want string // the first 10 characters
	}{
		{"http/1.1 is h1", hello{sni: "a.example", alpn: []string{"http/1.1"}}, 't', "t12d0302h1"},
		{"no ALPN", hello{sni: "a.example"}, 't', "t12d030100"},
		{"no SNI", hello{noSNI: true, alpn: []string{"h2"}}, 't', "t12i0301h2"},
		{"GREASE ignored", hello{sni: "x", ciphers: []uint16{0x0a0a, 0x1301}, extra: []uint16{0x1a1a}, versions: []uint16{0x2a2a, 0x0304, 0x0303}}, 't', "t13d0102" + "00"},
		{"non-alphanumeric ALPN uses hex", hello{sni: "x", alpn: []string{"\xab\xcd"}}, 't', "t12d0302ad"},
		{"one-character ALPN", hello{sni: "x", alpn: []string{"a"}}, 'q', "q12d0302aa"},
		{"DTLS 1.2", hello{legacy: 0xfefd, noSNI: true, dtls: true}, 'd', "dd2i0300" + "00"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := clientHello(tt.h)
			var h helloInfo
			off := 4
			if tt.h.dtls {
				off = 12
			}
			if !parseClientHello(m[off:], tt.h.dtls, &h) {
				t.Fatal("parse failed")
			}
			if got := ja4(&h, tt.kind); got[:10] != tt.want {
				t.Errorf("ja4 = %s, want prefix %s", got, tt.want)
			}
		})
	}
}

func TestTLSClientHello(t *testing.T) {
	e := testEngine(t)
	ch := tlsRecord(tlsHandshake, clientHello(hello{sni: "www.youtube.com", alpn: []string{"h2", "http/1.1"},
		versions: []uint16{0x0304, 0x0303}, sigalgs: []uint16{0x0403, 0x0804}}))
	f := tcpFlow("10.0.0.1:40000", "142.250.1.1:443")
	for _, tt := range []struct {
		name string
		segs []seg
	}{
		{"one segment", whole(ToServer, ch, 1460)},
		{"three segments", whole(ToServer, ch, 40)},
		{"out of order", []seg{{ToServer, 40, 40}, {ToServer, 0, 40}, {ToServer, 80, 1000}}},
		{"retransmitted and overlapping", []seg{{ToServer, 0, 40}, {ToServer, 0, 40}, {ToServer, 20, 50}, {ToServer, 70, 1000}}},
		{"one byte at a time", whole(ToServer, ch, 1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.MaxPackets = 250
			e, _ := NewEngine(cfg)
			r, st := runFlow(e, f, tcpPackets(ch, nil, tt.segs)...)
			if r.Label != "TLS.YouTube" || r.Confidence != ConfDPI || r.ServerName != "www.youtube.com" || r.ALPN != "h2" ||
				r.Category != "Media" || r.JA4[:10] != "t13d0304h2" {
				t.Errorf("got %+v", r)
			}
			if st.x != nil {
				t.Error("buffers not released after classification")
			}
		})
	}
	// The capture began with the server's SYN-ACK: the "client" of the
	// flow table is the server; the content decides.
	rev := tcpFlow("142.250.1.1:443", "10.0.0.1:40000")
	r, _ := runFlow(e, rev, pk{ToClient, ch, tcpACK, 7}, pk{ToServer, tlsRecord(tlsHandshake, serverHello(0x0304)), tcpACK, 9})
	if r.Label != "TLS.YouTube" {
		t.Errorf("reversed flow: %+v", r)
	}
}

func TestTLSVariants(t *testing.T) {
	e := testEngine(t)
	ch := func(sni string) []byte { return tlsRecord(tlsHandshake, clientHello(hello{sni: sni})) }
	for _, tt := range []struct {
		name, server, label string
		first               []byte
	}{
		{"IMAPS port", "1.2.3.4:993", "IMAPS", ch("mail.example.org")},
		{"SMTPS port", "1.2.3.4:465", "SMTPS", ch("smtp.example.org")},
		{"DoT port", "9.9.9.9:853", "TLS.DoH_DoT", ch("resolver.example")},
		{"DoH by name", "1.1.1.1:443", "TLS.DoH_DoT", ch("cloudflare-dns.com")},
		{"any port", "1.2.3.4:8443", "TLS.Dropbox", ch("client.dropbox.com")},
		{"mid-stream application data", "1.2.3.4:443", "TLS", cat([]byte{23, 3, 3, 0, 40}, make([]byte, 40))},
		{"Tor-like random name", "1.2.3.4:9001", "TLS.Tor", ch("www.q4cyamnc6mtokjurvdclt.com")},
		{"ALPN names AnyDesk", "1.2.3.4:443", "TLS.AnyDesk", tlsRecord(tlsHandshake, clientHello(hello{noSNI: true, alpn: []string{"anydesk/6.2.0/linux"}}))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := runFlow(e, tcpFlow("10.0.0.1:40000", tt.server), pk{ToServer, tt.first, tcpACK, 1})
			if r.Label != tt.label || r.Confidence != ConfDPI {
				t.Errorf("got %s (%s)", r.Label, r.Confidence)
			}
		})
	}
}

// selfSigned makes a certificate DER for cn with the SANs.
func selfSigned(tb testing.TB, cn string, san ...string) []byte {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Test"}},
		DNSNames:     san,
		NotBefore:    time.Unix(1e9, 0),
		NotAfter:     time.Unix(2e9, 0),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

func TestTLSCertificateNames(t *testing.T) {
	e := testEngine(t)
	ch := tlsRecord(tlsHandshake, clientHello(hello{noSNI: true}))
	for _, tt := range []struct {
		name, label, server string
		der                 []byte
		version             uint16
	}{
		{"CN", "TLS.Dropbox", "www.dropbox.com", selfSigned(t, "www.dropbox.com"), 0x0303},
		{"wildcard CN", "TLS.NetFlix", "*.nflxvideo.net", selfSigned(t, "*.nflxvideo.net"), 0x0303},
		{"SAN when CN is unknown", "TLS.Zoom", "Zoom Video", selfSigned(t, "Zoom Video", "zoom.us", "*.zoom.us"), 0x0303},
		{"cert rule", "TLS.AnyDesk", "AnyDesk Client", selfSigned(t, "AnyDesk Client"), 0x0303},
		{"TLS 1.3 hides it", "TLS", "", selfSigned(t, "www.dropbox.com"), 0x0304},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := cat(tlsRecord(tlsHandshake, serverHello(tt.version)), tlsRecord(tlsHandshake, certificateMsg(tt.der)))
			segs := cat2(whole(ToServer, ch, 1460), whole(ToClient, srv, 100))
			r, st := runFlow(e, tcpFlow("10.0.0.1:40000", "1.2.3.4:443"), tcpPackets(ch, srv, segs)...)
			if r.Label != tt.label || r.ServerName != tt.server {
				t.Errorf("got %s server %q", r.Label, r.ServerName)
			}
			if st.flags&fDone == 0 || st.x != nil {
				t.Errorf("not finished and released: flags %x", st.flags)
			}
		})
	}
	// A truncated certificate (cut by the reassembly bound) still gives its CN.
	der := selfSigned(t, "www.dropbox.com")
	cn, _, ok := leafCertNames(certificateMsg(der)[4 : 4+6+len(der)/2])
	if !ok || string(cn) != "www.dropbox.com" {
		t.Errorf("truncated certificate: %q %v", cn, ok)
	}
}

func cat2(a, b []seg) []seg { return append(append([]seg{}, a...), b...) }

// With the engine's buffer budget spent, a ClientHello split over
// segments cannot be read: the flow stays TLS, and the refusal is counted.
func TestReassemblyBudget(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ReassemblyMemory = 1
	e, _ := NewEngine(cfg)
	ch := tlsRecord(tlsHandshake, clientHello(hello{sni: "www.youtube.com"}))
	r, _ := runFlow(e, tcpFlow("10.0.0.1:40000", "1.2.3.4:443"), tcpPackets(ch, nil, whole(ToServer, ch, 30))...)
	if r.Label != "TLS" || e.Stats().ReassemblyRefused == 0 || e.Stats().ReassemblyHeld != 0 {
		t.Errorf("got %s, stats %+v", r.Label, e.Stats())
	}
	// With the default budget every buffer taken is given back.
	e = testEngine(t)
	for i := 0; i < 10; i++ {
		runFlow(e, tcpFlow("10.0.0.1:40000", "1.2.3.4:443"), tcpPackets(ch, nil, whole(ToServer, ch, 30))...)
	}
	if s := e.Stats(); s.ReassemblyHeld != 0 || s.Segments == 0 {
		t.Errorf("stats %+v", s)
	}
}

// A ClientHello claiming more than the buffer holds ends as plain TLS,
// without reading past the bound.
func TestTLSBounded(t *testing.T) {
	e := testEngine(t)
	rec := []byte{22, 3, 1, 0x40, 0x00, 1, 0x00, 0x3f, 0xfc}
	var pkts []pk
	seq := uint32(1)
	pkts = append(pkts, pk{ToServer, rec, tcpACK, seq})
	seq += uint32(len(rec))
	for i := 0; i < 40; i++ {
		pkts = append(pkts, pk{ToServer, make([]byte, 1400), tcpACK, seq})
		seq += 1400
	}
	r, st := runFlow(e, tcpFlow("10.0.0.1:40000", "1.2.3.4:443"), pkts...)
	if r.Label != "TLS" || st.flags&fDone == 0 {
		t.Errorf("got %+v, flags %x", r, st.flags)
	}
}
