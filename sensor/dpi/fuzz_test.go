package dpi

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Fuzz targets, one per dissector family, seeded from the corpus captures
// and the table tests' messages. Every input must leave the engine without
// a panic, with a label, and with its buffers released once done.

// corpusPayloads returns up to n first payloads of flows of the corpus
// that match keep, or none when the corpus is absent.
func corpusPayloads(tb testing.TB, keep func(proto uint8, port uint16) bool, n int) [][]byte {
	entries, err := os.ReadDir(corpusDir())
	if err != nil {
		return nil
	}
	var out [][]byte
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".pcap") && !strings.HasSuffix(name, ".pcapng") {
			continue
		}
		frames := readFrames(tb, filepath.Join(corpusDir(), name))
		flows, _, evs := flowsOf(frames)
		seen := map[[2]int]bool{}
		for _, ev := range evs {
			f := flows[ev.flow].f
			if len(ev.payload) == 0 || seen[[2]int{ev.flow, int(ev.dir)}] || !keep(f.Proto, f.Server.Port()) {
				continue
			}
			seen[[2]int{ev.flow, int(ev.dir)}] = true
			out = append(out, bytes.Clone(ev.payload))
			if len(out) >= n {
				return out
			}
		}
	}
	return out
}

// check runs the invariants on a state after feeding it.
func check(t *testing.T, e *Engine, st *State, f *Flow) {
	r := e.Result(st, f)
	if r.Label == "" || r.Master == "" || r.Category == "" {
		t.Fatalf("empty result %+v", r)
	}
	if st.flags&fDone != 0 && st.x != nil {
		t.Fatal("done with buffers held")
	}
}

// feedTCP sends the stream in segments of size seg from each side.
func feedTCP(e *Engine, f *Flow, st *State, client, server []byte, segSize int) {
	if segSize < 1 {
		segSize = 1
	}
	e.Inspect(st, f, ToServer, nil, tcpSYN, 100)
	e.Inspect(st, f, ToClient, nil, tcpSYN|tcpACK, 900)
	for off := 0; off < len(client) || off < len(server); off += segSize {
		if off < len(client) {
			e.Inspect(st, f, ToServer, client[off:min(off+segSize, len(client))], tcpACK, uint32(101+off))
		}
		if off < len(server) {
			e.Inspect(st, f, ToClient, server[off:min(off+segSize, len(server))], tcpACK, uint32(901+off))
		}
	}
}

func FuzzTLS(f *testing.F) {
	ch := tlsRecord(tlsHandshake, clientHello(hello{sni: "www.example.com", alpn: []string{"h2"}, versions: []uint16{0x0304}, sigalgs: []uint16{0x0403}}))
	srv := cat(tlsRecord(tlsHandshake, serverHello(0x0303)), tlsRecord(tlsHandshake, certificateMsg(selfSigned(f, "www.dropbox.com", "dropbox.com"))))
	f.Add(ch, srv, uint8(200))
	f.Add(tlsRecord(tlsHandshake, clientHello(hello{noSNI: true})), srv, uint8(7))
	for _, p := range corpusPayloads(f, func(proto uint8, port uint16) bool { return proto == 6 && port == 443 }, 40) {
		f.Add(p, srv, uint8(100))
	}
	e := testEngine(f)
	f.Fuzz(func(t *testing.T, client, server []byte, seg uint8) {
		fl := tcpFlow("10.0.0.1:40000", "10.0.0.2:443")
		var st State
		feedTCP(e, &fl, &st, client, server, int(seg)+1)
		check(t, e, &st, &fl)
		var h helloInfo
		parseClientHello(client, false, &h)
		ja4(&h, 't')
		parseServerHello(server)
		leafCertNames(server)
		tlsRecords(client, func(byte, []byte, bool) bool { return true })
	})
}

func FuzzQUIC(f *testing.F) {
	ch := clientHello(hello{sni: "www.google.com", alpn: []string{"h3"}, versions: []uint16{0x0304}})
	dcid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	f.Add(quicInitial(f, quicV1, dcid, 0, cryptoFrame(0, ch)), cryptoFrame(0, ch))
	f.Add(quicInitial(f, quicV2, dcid, 1, cryptoFrame(5, ch[5:])), cat(cryptoFrame(0, ch[:5]), []byte{2, 0, 0, 0, 0}))
	for _, p := range corpusPayloads(f, func(proto uint8, port uint16) bool { return proto == 17 && port == 443 }, 20) {
		f.Add(p, p)
	}
	e := testEngine(f)
	f.Fuzz(func(t *testing.T, datagram, frames []byte) {
		fl := udpFlow("10.0.0.1:50000", "10.0.0.2:443")
		var st State
		e.Inspect(&st, &fl, ToServer, datagram, 0, 0)
		e.Inspect(&st, &fl, ToServer, datagram, 0, 0)
		check(t, e, &st, &fl)
		// The frame parser behind the decryption, on its own.
		q := &quicCtx{crypto: stream{buf: make([]byte, 4096)}}
		q.cryptoFrames(frames, &e.ctr)
		if d := q.crypto.data(); len(d) > 4 {
			var h helloInfo
			parseClientHello(d[4:], false, &h)
		}
		var p pkt
		p.st = &st
		e.gquicHello(&p, frames)
		quicParamUA(frames)
	})
}

func FuzzHTTP(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: www.example.com:80\r\nUser-Agent: x\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"), uint8(5))
	f.Add([]byte("CONNECT [::1]:443 HTTP/1.1\r\n\r\n"), []byte("HTTP/1.0 200\r\n"), uint8(0))
	for _, p := range corpusPayloads(f, func(proto uint8, port uint16) bool { return proto == 6 && port == 80 }, 30) {
		f.Add(p, p, uint8(64))
	}
	e := testEngine(f)
	f.Fuzz(func(t *testing.T, req, resp []byte, seg uint8) {
		fl := tcpFlow("10.0.0.1:40000", "10.0.0.2:80")
		var st State
		feedTCP(e, &fl, &st, req, resp, int(seg)+1)
		check(t, e, &st, &fl)
		header(req, "host:")
		hostOnly(req)
	})
}

func FuzzDNS(f *testing.F) {
	f.Add(dnsQuery(1, "www.example.com", 1), dnsAnswer(1, "www.example.com", 60, netip.MustParseAddr("192.0.2.1")))
	f.Add([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12}, []byte{0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1})
	for _, p := range corpusPayloads(f, func(proto uint8, port uint16) bool { return port == 53 || port == 5353 || port == 137 }, 40) {
		f.Add(p, p)
	}
	e := testEngine(f)
	f.Fuzz(func(t *testing.T, q, a []byte) {
		for _, fl := range []Flow{udpFlow("10.0.0.1:40000", "10.0.0.2:53"), udpFlow("10.0.0.1:5353", "224.0.0.251:5353"), tcpFlow("10.0.0.1:40000", "10.0.0.2:53")} {
			var st State
			e.Inspect(&st, &fl, ToServer, q, tcpACK, 1)
			e.Inspect(&st, &fl, ToClient, a, tcpACK, 1)
			check(t, e, &st, &fl)
		}
		var out [256]byte
		dnsName(a, 12, out[:])
	})
}

// FuzzOther drives every other dissector: any payloads, any port, UDP or
// TCP, both directions.
func FuzzOther(f *testing.F) {
	for _, s := range [][]byte{
		[]byte("SSH-2.0-x\r\n"), rdpRequest(), nbss([]byte("\xfeSMB")), []byte("RFB 003.008\n"), []byte("220 x\r\n"),
		[]byte("<34>Oct 11 22:14:15 x"), dhcpDiscover(), netbiosDatagram(), mysqlGreeting(), stunBinding(),
		dtlsHelloRecord(), rtpPacket(1), []byte("\x13BitTorrent protocol"), []byte("d1:ad2:id20:"),
		[]byte("\x00\x01f\x00octet\x00"), []byte("INVITE sip:a@b SIP/2.0\r\n"), []byte{0x38, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0},
	} {
		f.Add(s, s, uint16(0), false)
	}
	for _, p := range corpusPayloads(f, func(proto uint8, port uint16) bool { return port != 443 && port != 80 && port != 53 }, 80) {
		f.Add(p, p, uint16(0), true)
	}
	e := testEngine(f)
	ports := []uint16{22, 25, 88, 123, 137, 138, 161, 389, 445, 500, 502, 514, 1194, 1883, 3306, 3389, 3478, 3544, 4070, 4500, 4789, 5060, 5432, 5683, 5938, 6343, 6667, 8801, 17500, 27036, 51820, 57621}
	f.Fuzz(func(t *testing.T, a, b []byte, port uint16, tcp bool) {
		if int(port) < len(ports) {
			port = ports[port]
		}
		fl := udpFlow("10.0.0.1:40000", netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), port).String())
		if tcp {
			fl.Proto = 6
		}
		var st State
		for i, p := range [][]byte{a, b, a, b} {
			e.Inspect(&st, &fl, Dir(i&1), p, tcpACK, uint32(1+i*len(p)))
		}
		check(t, e, &st, &fl)
	})
}

func FuzzRules(f *testing.F) {
	f.Add([]byte(builtinRules[:2000]))
	f.Add([]byte("proto 3500 X Web\nhost *x X\ncidr ::/0 X\nport tcp 1-1024 X\nalpn a X\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tab := newTable()
		if err := tab.parse("fuzz", bytes.NewReader(data)); err == nil {
			tab.finish()
			tab.lookupHost("a.b.example.com")
			tab.lookupAddr(netip.MustParseAddr("10.0.0.1"))
		}
	})
}
