package dpi

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// ber builds a BER TLV with a short or long length.
func ber(tag byte, content ...[]byte) []byte {
	c := cat(content...)
	if len(c) < 128 {
		return cat([]byte{tag, byte(len(c))}, c)
	}
	return cat([]byte{tag, 0x82, byte(len(c) >> 8), byte(len(c))}, c)
}

func rdpRequest() []byte {
	cotp := cat([]byte{0xe0, 0, 0, 0, 0, 0}, []byte("Cookie: mstshash=eltons\r\n"), []byte{1, 0, 8, 0, 3, 0, 0, 0})
	total := 4 + 1 + len(cotp)
	return cat([]byte{3, 0, byte(total >> 8), byte(total), byte(len(cotp))}, cotp)
}

func nbss(msg []byte) []byte { return cat([]byte{0, 0, byte(len(msg) >> 8), byte(len(msg))}, msg) }

func dhcpDiscover() []byte {
	b := make([]byte, 300)
	b[0], b[1], b[2] = 1, 1, 6
	copy(b[236:], "\x63\x82\x53\x63\x35\x01\x01\xff")
	return b
}

func netbiosDatagram() []byte {
	b := make([]byte, 82)
	b[0] = 0x11
	return cat(b, []byte("\xffSMB"), make([]byte, 60))
}

func mysqlGreeting() []byte {
	body := cat([]byte{0x0a}, []byte("8.0.36\x00"), make([]byte, 40))
	return cat([]byte{byte(len(body)), 0, 0, 0}, body)
}

func stunBinding(attrs ...[]byte) []byte {
	a := cat(attrs...)
	return cat(be16(0x0001), be16(uint16(len(a))), []byte{0x21, 0x12, 0xa4, 0x42}, make([]byte, 12), a)
}

func dtlsHelloRecord() []byte {
	m := clientHello(hello{legacy: 0xfefd, noSNI: true, dtls: true, alpn: []string{"webrtc"}})
	return cat([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0}, vec16(m))
}

func rtpPacket(seq uint16) []byte {
	return cat([]byte{0x80, 0x00}, be16(seq), []byte{0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef}, make([]byte, 160))
}

func TestLongTail(t *testing.T) {
	e := testEngine(t)
	snmpGet := ber(0x30, ber(0x02, []byte{1}), ber(0x04, []byte("public")),
		ber(0xa0, ber(0x02, []byte{1}), ber(0x02, []byte{0}), ber(0x02, []byte{0}),
			ber(0x30, ber(0x30, ber(0x06, []byte{0x2b, 6, 1, 2, 1, 1, 5, 0}), []byte{5, 0}))))
	ipv6 := cat([]byte{0x60, 0, 0, 0, 0, 0, 59, 64}, make([]byte, 32))
	ipfix := cat(be16(10), be16(24), make([]byte, 12), be16(2), be16(8), make([]byte, 4))
	nf5 := cat(be16(5), be16(1), make([]byte, 20), make([]byte, 48))
	type pks = []pk
	one := func(d Dir, b []byte) pks { return pks{{d, b, tcpACK, 1}} }
	for _, tt := range []struct {
		name, label string
		f           Flow
		pkts        pks
	}{
		{"SSH", "SSH", tcpFlow("10.0.0.1:40000", "10.0.0.2:22"), one(ToClient, []byte("SSH-2.0-OpenSSH_9.6\r\n"))},
		{"SSH any port", "SSH", tcpFlow("10.0.0.1:40000", "10.0.0.2:8000"), one(ToServer, []byte("SSH-2.0-PuTTY_0.80\r\n"))},
		{"RDP", "RDP", tcpFlow("10.0.0.1:40000", "10.0.0.2:3389"), one(ToServer, rdpRequest())},
		{"SMBv2", "NetBIOS.SMBv23", tcpFlow("10.0.0.1:40000", "10.0.0.2:445"), one(ToServer, nbss(cat([]byte("\xfeSMB"), make([]byte, 60))))},
		{"SMBv1", "NetBIOS.SMBv1", tcpFlow("10.0.0.1:40000", "10.0.0.2:445"), one(ToServer, nbss(cat([]byte("\xffSMB"), make([]byte, 60))))},
		{"VNC", "VNC", tcpFlow("10.0.0.1:40000", "10.0.0.2:5900"), one(ToClient, []byte("RFB 003.008\n"))},
		{"Telnet", "Telnet", tcpFlow("10.0.0.1:40000", "10.0.0.2:23"), one(ToClient, []byte{0xff, 0xfd, 0x18, 0xff, 0xfd, 0x20, 0xff, 0xfd, 0x23})},
		{"FTP", "FTP_CONTROL", tcpFlow("10.0.0.1:40000", "10.0.0.2:21"), one(ToClient, []byte("220 ProFTPD Server ready.\r\n"))},
		{"FTP by command", "FTP_CONTROL", tcpFlow("10.0.0.1:40000", "10.0.0.2:2121"),
			pks{{ToClient, []byte("220 Welcome\r\n"), tcpACK, 1}, {ToServer, []byte("USER anonymous\r\n"), tcpACK, 1}}},
		{"SMTP", "SMTP", tcpFlow("10.0.0.1:40000", "10.0.0.2:25"), one(ToClient, []byte("220 mx.example.com ESMTP Postfix\r\n"))},
		{"SMTP by command", "SMTP", tcpFlow("10.0.0.1:40000", "10.0.0.2:10025"),
			pks{{ToClient, []byte("220 mx.example.com ready\r\n"), tcpACK, 1}, {ToServer, []byte("EHLO client\r\n"), tcpACK, 1}}},
		{"POP3", "POP3", tcpFlow("10.0.0.1:40000", "10.0.0.2:110"), one(ToClient, []byte("+OK Dovecot ready.\r\n"))},
		{"IMAP", "IMAP", tcpFlow("10.0.0.1:40000", "10.0.0.2:143"), one(ToClient, []byte("* OK [CAPABILITY IMAP4rev1] ready\r\n"))},
		{"NTP", "NTP", udpFlow("10.0.0.1:123", "10.0.0.2:123"), one(ToServer, cat([]byte{0x23}, make([]byte, 47)))},
		{"SNMP", "SNMP", udpFlow("10.0.0.1:40000", "10.0.0.2:161"), one(ToServer, snmpGet)},
		{"SNMP any port", "SNMP", udpFlow("10.0.0.1:40000", "10.0.0.2:10161"), one(ToServer, snmpGet)},
		{"DHCP", "DHCP", udpFlow("0.0.0.0:68", "255.255.255.255:67"), one(ToServer, dhcpDiscover())},
		{"DHCPv6", "DHCPV6", udpFlow("[fe80::1]:546", "[ff02::1:2]:547"), one(ToServer, []byte{1, 0xaa, 0xbb, 0xcc, 0, 8, 0, 2, 0, 0})},
		{"SSDP", "SSDP", udpFlow("10.0.0.1:40000", "239.255.255.250:1900"), one(ToServer, []byte("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n\r\n"))},
		{"NetBIOS datagram", "NetBIOS.SMBv1", udpFlow("10.0.0.1:138", "10.0.0.255:138"), one(ToServer, netbiosDatagram())},
		{"NetBIOS name", "NetBIOS", udpFlow("10.0.0.1:137", "10.0.0.255:137"), one(ToServer, dnsQuery(9, "FHEPFCELEHFCEPFFFACACACACACACAAA", 32))},
		{"Syslog", "Syslog", udpFlow("10.0.0.1:40000", "10.0.0.2:514"), one(ToServer, []byte("<34>Oct 11 22:14:15 host su: failed"))},
		{"Syslog RFC 5424 any port", "Syslog", udpFlow("10.0.0.1:40000", "10.0.0.2:5140"), one(ToServer, []byte("<165>1 2003-10-11T22:14:15.003Z host app - - - msg"))},
		{"Kerberos UDP", "Kerberos", udpFlow("10.0.0.1:40000", "10.0.0.2:88"), one(ToServer, ber(0x6a, ber(0x30, []byte{0xa1, 3, 2, 1, 5})))},
		{"Kerberos TCP", "Kerberos", tcpFlow("10.0.0.1:40000", "10.0.0.2:88"), one(ToServer, func() []byte {
			m := ber(0x6c, ber(0x30, []byte{0xa1, 3, 2, 1, 5}))
			return cat(binary.BigEndian.AppendUint32(nil, uint32(len(m))), m)
		}())},
		{"LDAP", "LDAP", tcpFlow("10.0.0.1:40000", "10.0.0.2:389"), one(ToServer, ber(0x30, []byte{2, 1, 1}, ber(0x60, []byte{2, 1, 3}, ber(0x04), []byte{0x80, 0})))},
		{"SIP", "SIP", udpFlow("10.0.0.1:5060", "10.0.0.2:5060"), one(ToServer, []byte("INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a\r\n\r\n"))},
		{"RTP", "RTP", udpFlow("10.0.0.1:30000", "10.0.0.2:40000"), pks{{ToServer, rtpPacket(100), 0, 0}, {ToServer, rtpPacket(101), 0, 0}}},
		{"RTCP", "RTCP", udpFlow("10.0.0.1:30001", "10.0.0.2:40001"), one(ToServer, cat([]byte{0x81, 200, 0, 6}, []byte{0xde, 0xad, 0xbe, 0xef}, make([]byte, 20)))},
		{"STUN", "STUN", udpFlow("10.0.0.1:40000", "10.0.0.2:3478"), one(ToServer, stunBinding())},
		{"STUN Teams", "STUN.Skype_TeamsCall", udpFlow("10.0.0.1:40000", "10.0.0.2:50000"), one(ToServer, stunBinding(cat(be16(0x8008), be16(4), []byte{0, 0, 0, 6})))},
		{"STUN then DTLS", "DTLS.GoogleCall", udpFlow("10.0.0.1:40000", "74.125.1.1:3478"), pks{{ToServer, stunBinding(), 0, 0}, {ToServer, dtlsHelloRecord(), 0, 0}}},
		{"DTLS", "DTLS", udpFlow("10.0.0.1:40000", "10.0.0.2:50000"), one(ToServer, dtlsHelloRecord())},
		{"WireGuard", "WireGuard", udpFlow("10.0.0.1:40000", "10.0.0.2:51820"), one(ToServer, cat([]byte{1, 0, 0, 0}, make([]byte, 144)))},
		{"Cloudflare WARP", "CloudflareWarp", udpFlow("10.0.0.1:40000", "162.159.192.1:2408"), one(ToServer, cat([]byte{1, 0x12, 0x34, 0x56}, make([]byte, 144)))},
		{"OpenVPN", "OpenVPN", udpFlow("10.0.0.1:40000", "10.0.0.2:1194"), one(ToServer, cat([]byte{0x38}, []byte("sessid!!"), []byte{0, 0, 0, 0, 0}))},
		{"OpenVPN TCP", "OpenVPN", tcpFlow("10.0.0.1:40000", "10.0.0.2:443"), one(ToServer, cat(be16(14), []byte{0x38}, []byte("sessid!!"), []byte{0, 0, 0, 0, 0}))},
		{"IKE", "IPSec", udpFlow("10.0.0.1:500", "10.0.0.2:500"), one(ToServer, cat([]byte("initspi!"), make([]byte, 8), []byte{33, 0x20, 34, 8, 0, 0, 0, 0}, binary.BigEndian.AppendUint32(nil, 28)))},
		{"BitTorrent", "BitTorrent", tcpFlow("10.0.0.1:40000", "10.0.0.2:6881"), one(ToServer, cat([]byte("\x13BitTorrent protocol"), make([]byte, 48)))},
		{"BitTorrent DHT", "BitTorrent", udpFlow("10.0.0.1:40000", "10.0.0.2:6881"), one(ToServer, []byte("d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"))},
		{"BitTorrent uTP", "BitTorrent", udpFlow("10.0.0.1:40000", "10.0.0.2:50000"), pks{
			{ToServer, cat([]byte{0x41, 0}, be16(0x1234), make([]byte, 16)), 0, 0},
			{ToClient, cat([]byte{0x21, 0}, be16(0x1234), make([]byte, 16)), 0, 0}}},
		{"MQTT", "MQTT", tcpFlow("10.0.0.1:40000", "10.0.0.2:1883"), one(ToServer, cat([]byte{0x10, 15}, []byte("\x00\x04MQTT\x04\x02\x00\x3c\x00\x03abc")))},
		{"ICMP", "ICMP", Flow{Proto: 1, Client: addrPort("10.0.0.1:0"), Server: addrPort("10.0.0.2:0")}, one(ToServer, []byte{8, 0, 0, 0})},
		{"ICMPv6", "ICMPV6", Flow{Proto: 58, Client: addrPort("[fe80::1]:0"), Server: addrPort("[fe80::2]:0")}, one(ToServer, []byte{128, 0, 0, 0})},
		{"IGMP", "IGMP", Flow{Proto: 2, Client: addrPort("10.0.0.1:0"), Server: addrPort("224.0.0.22:0")}, one(ToServer, []byte{0x22, 0, 0, 0})},
		{"ESP", "IPSec", Flow{Proto: 50, Client: addrPort("10.0.0.1:0"), Server: addrPort("10.0.0.2:0")}, one(ToServer, []byte{1, 2, 3, 4})},
		{"TFTP", "TFTP", udpFlow("10.0.0.1:40000", "10.0.0.2:69"), one(ToServer, []byte("\x00\x01boot.img\x00octet\x00"))},
		{"TFTP transfer", "TFTP", udpFlow("10.0.0.2:50000", "10.0.0.1:40000"), pks{
			{ToServer, cat([]byte{0, 3, 0, 1}, make([]byte, 512)), 0, 0}, {ToClient, []byte{0, 4, 0, 1}, 0, 0}}},
		{"MySQL", "MySQL", tcpFlow("10.0.0.1:40000", "10.0.0.2:3306"), one(ToClient, mysqlGreeting())},
		{"PostgreSQL", "PostgreSQL", tcpFlow("10.0.0.1:40000", "10.0.0.2:5432"), one(ToServer, []byte{0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f})},
		{"Modbus", "Modbus", tcpFlow("10.0.0.1:40000", "10.0.0.2:502"), one(ToServer, []byte{0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 10})},
		{"Teredo", "Teredo", udpFlow("10.0.0.1:40000", "10.0.0.2:3544"), one(ToServer, ipv6)},
		{"VXLAN", "VXLAN", udpFlow("10.0.0.1:40000", "10.0.0.2:4789"), one(ToServer, cat([]byte{8, 0, 0, 0, 0, 0, 1, 0}, make([]byte, 60)))},
		{"sFlow", "sFlow", udpFlow("10.0.0.1:40000", "10.0.0.2:6343"), one(ToServer, cat([]byte{0, 0, 0, 5, 0, 0, 0, 1}, make([]byte, 24)))},
		{"NetFlow v5", "NetFlow", udpFlow("10.0.0.1:40000", "10.0.0.2:2055"), one(ToServer, nf5)},
		{"IPFIX", "NetFlow", udpFlow("10.0.0.1:40000", "10.0.0.2:4739"), one(ToServer, ipfix)},
		{"TuyaLP", "TuyaLP", udpFlow("10.0.0.1:49154", "255.255.255.255:6667"), one(ToServer, cat([]byte{0, 0, 0x55, 0xaa}, make([]byte, 20), []byte{0, 0, 0xaa, 0x55}))},
		{"CoAP", "CoAP", udpFlow("10.0.0.1:40000", "10.0.0.2:5683"), one(ToServer, []byte{0x40, 0x01, 0x12, 0x34, 0xb4, 't', 'e', 's', 't'})},
		{"Dropbox LAN sync", "Dropbox", udpFlow("10.0.0.1:17500", "10.0.0.255:17500"), one(ToServer, []byte(`{"host_int": 1234, "version": [2, 0]}`))},
		{"Spotify discovery", "Spotify", udpFlow("10.0.0.1:57621", "10.0.0.255:57621"), one(ToServer, []byte("SpotUdp0\x00\x01\x02"))},
		{"Steam discovery", "Steam", udpFlow("10.0.0.1:27036", "10.0.0.255:27036"), one(ToServer, []byte{0xff, 0xff, 0xff, 0xff, 0x21, 0x4c, 0x5f, 0xa0, 1, 2})},
		{"Discord", "Discord", udpFlow("10.0.0.1:40000", "10.0.0.2:50003"), one(ToServer, cat([]byte{0, 1, 0, 70, 0, 0, 0, 1}, make([]byte, 66)))},
		{"Zoom", "Zoom", udpFlow("10.0.0.1:40000", "10.0.0.2:8801"), one(ToServer, cat([]byte{5, 0, 0, 0}, make([]byte, 30)))},
		{"Ookla", "Ookla", tcpFlow("10.0.0.1:40000", "10.0.0.2:8080"), one(ToServer, []byte("HI 4b3c\n"))},
		{"TeamViewer", "TeamViewer", tcpFlow("10.0.0.1:40000", "10.0.0.2:5938"), one(ToServer, []byte{0x17, 0x24, 0x0a, 0x20, 0, 0})},
		{"WhatsApp", "WhatsApp", tcpFlow("10.0.0.1:40000", "10.0.0.2:5222"), one(ToServer, []byte("WA\x01\x05\x00\x00"))},
		{"Jabber", "Jabber", tcpFlow("10.0.0.1:40000", "10.0.0.2:5222"), one(ToServer, []byte("<stream:stream to='jabber.org' xmlns='jabber:client'>"))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := runFlow(e, tt.f, tt.pkts...)
			if r.Label != tt.label || r.Confidence != ConfDPI {
				t.Errorf("got %s (%s), want %s (dpi)", r.Label, r.Confidence, tt.label)
			}
		})
	}
}

// FTP data connections are named from the endpoint the control
// connection announced.
func TestFTPData(t *testing.T) {
	e := testEngine(t)
	ctl := tcpFlow("10.0.0.1:40000", "192.0.2.1:21")
	var st State
	for _, p := range []pk{
		{ToClient, []byte("220 FTP ready\r\n"), tcpACK, 1},
		{ToServer, []byte("PASV\r\n"), tcpACK, 1},
		{ToClient, []byte("227 Entering Passive Mode (192,0,2,1,200,10).\r\n"), tcpACK, 20},
	} {
		e.Inspect(&st, &ctl, p.dir, p.data, p.flags, p.seq)
	}
	if r := e.Result(&st, &ctl); r.Label != "FTP_CONTROL" {
		t.Fatalf("control: %+v", r)
	}
	r, _ := runFlow(e, tcpFlow("10.0.0.1:40001", "192.0.2.1:51210"), pk{ToServer, nil, tcpSYN, 5})
	if r.Label != "FTP_DATA" || r.Confidence != ConfDPI {
		t.Errorf("data: %+v", r)
	}
	// Taken once: another flow to the same endpoint is not data.
	if r, _ := runFlow(e, tcpFlow("10.0.0.1:40002", "192.0.2.1:51210"), pk{ToServer, nil, tcpSYN, 5}); r.Label == "FTP_DATA" {
		t.Errorf("expectation reused: %+v", r)
	}
	if ap := ftpHostPort([]byte("1,2,3,4,5")); ap.IsValid() {
		t.Error("short PASV accepted")
	}
}

// Flows no dissector names fall back on the port, the address list and
// the DNS cache, and end after the packet budget.
func TestFallbacks(t *testing.T) {
	e := testEngine(t)
	junk := bytes.Repeat([]byte{0x99, 0x12}, 100)
	many := make([]pk, 40)
	for i := range many {
		many[i] = pk{Dir(i & 1), junk, tcpACK, uint32(1 + i*200)}
	}
	for _, tt := range []struct {
		name, label string
		conf        Confidence
		f           Flow
	}{
		{"port guess", "SSH", ConfPort, tcpFlow("10.0.0.1:40000", "10.0.0.2:22")},
		{"port of the client side", "SSH", ConfPort, tcpFlow("10.0.0.2:22", "10.0.0.1:40000")},
		{"address list", "Telegram", ConfIPList, udpFlow("10.0.0.1:40000", "91.108.8.1:533")},
		{"address list and port", "QUIC.Google", ConfIPList, udpFlow("10.0.0.1:40000", "142.250.1.1:443")},
		{"nothing", "Unknown", ConfUnknown, udpFlow("10.0.0.1:40000", "10.0.0.2:40001")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, st := runFlow(e, tt.f, many...)
			if r.Label != tt.label || r.Confidence != tt.conf {
				t.Errorf("got %s (%s)", r.Label, r.Confidence)
			}
			if st.flags&fDone == 0 || int(st.npay) != e.cfg.MaxPackets {
				t.Errorf("budget: done %v after %d payloads", st.flags&fDone != 0, st.npay)
			}
			if !e.Inspect(st, &tt.f, ToServer, junk, tcpACK, 1) {
				t.Error("Inspect after done is not a no-op")
			}
		})
	}
}
