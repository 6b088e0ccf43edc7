package pcap

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"flowlens/internal/pcapfile/pcapfiletest"
)

var corpusDir = filepath.Join("..", "..", "..", "shared", "corpus", "flows")

// buildPcap writes a classic pcap with one frame per entry.
func buildPcap(link uint32, frames ...[]byte) []byte {
	return pcapfiletest.Classic(link, 65535, frames...)
}

func ipv4UDP(payload []byte, flags uint16) []byte {
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 198, 51, 100, 1}
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	binary.BigEndian.PutUint16(ip[6:], flags)
	udp := []byte{0x08, 0x07, 0x07, 0xd3, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	return append(append(ip, udp...), payload...)
}

func ipv6UDP(payload []byte) []byte {
	ip := make([]byte, 40)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(8+len(payload)))
	ip[6], ip[7] = 17, 64
	ip[8], ip[9], ip[23] = 0x20, 0x01, 1
	ip[24], ip[25], ip[39] = 0x20, 0x01, 2
	udp := []byte{0x18, 0xc7, 0x18, 0xc7, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	return append(append(ip, udp...), payload...)
}

func TestReadUDPLinkTypes(t *testing.T) {
	payload := []byte("hello")
	eth := func(etype uint16, rest []byte) []byte {
		h := make([]byte, 14)
		binary.BigEndian.PutUint16(h[12:], etype)
		return append(h, rest...)
	}
	sll := func(rest []byte) []byte {
		h := make([]byte, 16)
		binary.BigEndian.PutUint16(h[14:], 0x0800)
		return append(h, rest...)
	}
	null := func(rest []byte) []byte { return append([]byte{2, 0, 0, 0}, rest...) }
	vlan := append([]byte{0, 100, 0x08, 0x00}, ipv4UDP(payload, 0)...)
	padded := append(eth(0x0800, ipv4UDP(payload, 0)), 0, 0, 0, 0) // Ethernet padding
	cases := []struct {
		name      string
		link      uint32
		frame     []byte
		udp, frag uint64
		src       string
	}{
		{"ethernet", 1, eth(0x0800, ipv4UDP(payload, 0)), 1, 0, "192.0.2.1:2055"},
		{"ethernet-padding", 1, padded, 1, 0, "192.0.2.1:2055"},
		{"vlan", 1, eth(0x8100, vlan), 1, 0, "192.0.2.1:2055"},
		{"ipv6", 1, eth(0x86dd, ipv6UDP(payload)), 1, 0, "[2001::1]:6343"},
		{"sll", 113, sll(ipv4UDP(payload, 0)), 1, 0, "192.0.2.1:2055"},
		{"raw", 101, ipv4UDP(payload, 0), 1, 0, "192.0.2.1:2055"},
		{"raw-v6", 229, ipv6UDP(payload), 1, 0, "[2001::1]:6343"},
		{"null", 0, null(ipv4UDP(payload, 0)), 1, 0, "192.0.2.1:2055"},
		{"loop", 108, null(ipv6UDP(payload)), 1, 0, "[2001::1]:6343"},
		{"fragment", 1, eth(0x0800, ipv4UDP(payload, 0x2000)), 0, 1, ""},
		{"later-fragment", 1, eth(0x0800, ipv4UDP(payload, 0x0010)), 0, 1, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []Datagram
			st, err := ReadUDP(bytes.NewReader(buildPcap(c.link, c.frame)), func(d Datagram) error {
				d.Payload = bytes.Clone(d.Payload)
				got = append(got, d)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if st.UDP != c.udp || st.Fragments != c.frag || uint64(len(got)) != c.udp {
				t.Fatalf("stats %+v, %d datagrams", st, len(got))
			}
			if c.udp == 0 {
				return
			}
			if string(got[0].Payload) != "hello" || got[0].Src != netip.MustParseAddrPort(c.src) {
				t.Errorf("got %q from %s", got[0].Payload, got[0].Src)
			}
			if !got[0].Timestamp.Equal(time.Unix(1700000000, 0)) {
				t.Errorf("timestamp %s", got[0].Timestamp)
			}
		})
	}
}

func TestReadUDPHostileSnaplen(t *testing.T) {
	b := buildPcap(1, make([]byte, 10))
	binary.LittleEndian.PutUint32(b[16:], 0xffffffff)
	binary.LittleEndian.PutUint32(b[24+8:], 0xfffffff0) // capture length
	if _, err := ReadUDP(bytes.NewReader(b), func(Datagram) error { return nil }); err == nil {
		t.Fatal("want an error for a capture length beyond the snap length")
	}
}

func TestReadUDPCorpus(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*.pcap"))
	if len(files) == 0 {
		t.Skip("corpus not available")
	}
	for _, path := range files {
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		st, err := ReadUDP(fh, func(Datagram) error { return nil })
		fh.Close()
		if err != nil || st.UDP == 0 {
			t.Errorf("%s: %+v %v", filepath.Base(path), st, err)
		}
	}
}

func TestReadUDPNotPcap(t *testing.T) {
	if _, err := ReadUDP(bytes.NewReader([]byte("not a capture at all, sorry")), func(Datagram) error { return nil }); err == nil {
		t.Fatal("want error")
	}
}

func FuzzReadUDP(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*.pcap"))
	for _, path := range files {
		if b, err := os.ReadFile(path); err == nil && len(b) < 8<<10 {
			f.Add(b)
		}
	}
	f.Add(buildPcap(1, []byte{1, 2, 3}))
	// A minimal pcapng: section header, interface, enhanced packet.
	ng := []byte{
		0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0,
		1, 0, 0, 0, 20, 0, 0, 0, 101, 0, 0, 0, 0, 0, 4, 0, 20, 0, 0, 0,
	}
	pkt := ipv4UDP([]byte("hey"), 0)
	epb := make([]byte, 32+len(pkt)+(4-len(pkt)%4)%4)
	binary.LittleEndian.PutUint32(epb[0:], 6)
	binary.LittleEndian.PutUint32(epb[4:], uint32(len(epb)))
	binary.LittleEndian.PutUint32(epb[20:], uint32(len(pkt)))
	binary.LittleEndian.PutUint32(epb[24:], uint32(len(pkt)))
	copy(epb[28:], pkt)
	binary.LittleEndian.PutUint32(epb[len(epb)-4:], uint32(len(epb)))
	f.Add(append(ng, epb...))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ReadUDP(bytes.NewReader(data), func(d Datagram) error {
			if !d.Src.IsValid() {
				t.Fatalf("invalid source %v", d.Src)
			}
			return nil
		})
	})
}
