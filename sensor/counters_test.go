package sensor

import (
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/prometheus/client_golang/prometheus"

	"flowlens/internal/pcapfile"
	"flowlens/sensor/capture"
	"flowlens/sensor/dpi"
	"flowlens/sensor/export"
	"flowlens/sensor/flowtable"
	"flowlens/sensor/packet"
)

// fragment is an Ethernet/IPv4 frame of a UDP datagram fragment: offset in
// 8-byte units, more fragments or not; the first carries the UDP header.
func fragment(offset uint16, more bool, payload []byte) []byte {
	eth := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00}
	ip := []byte{0x45, 0, 0, 0, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(payload)))
	flags := offset
	if more {
		flags |= 0x2000
	}
	binary.BigEndian.PutUint16(ip[6:], flags)
	return append(append(eth, ip...), payload...)
}

// The sensor counts IP fragments by kind and decapsulated packets by
// tunnel (flowlens_sensor_fragments_total, _tunnel_packets_total): the
// VXLAN corpus capture against gopacket's count of its VXLAN packets, and
// a fragmented datagram built here.
func TestFragmentAndTunnelCounters(t *testing.T) {
	eng, err := dpi.NewEngine(dpi.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWorker(eng, flowtable.DefaultConfig(), m, func(*export.Flow) {})
	if err != nil {
		t.Fatal(err)
	}
	ci := capture.CaptureInfo{Link: packet.LinkEthernet, VLAN: -1, Timestamp: time.Unix(1_700_000_000, 0)}
	udp := []byte{0x30, 0x39, 0x00, 0x35, 0, 40, 0, 0}
	first := fragment(0, true, append(udp, make([]byte, 24)...))
	later := fragment(4, false, make([]byte, 16))
	for _, f := range [][]byte{first, later} {
		ci.Length, ci.CaptureLength = len(f), len(f)
		w.Packet(f, &ci)
	}

	pkts, err := pcapfile.ReadAll(filepath.Join(corpus, "vxlan.pcap"))
	if err != nil {
		t.Skipf("corpus: %v", err)
	}
	vxlan := 0
	for _, p := range pkts {
		if gopacket.NewPacket(p.Data, layers.LinkType(p.LinkType), gopacket.Default).Layer(layers.LayerTypeVXLAN) != nil {
			vxlan++
		}
		ci := capture.CaptureInfo{Link: packet.LinkType(p.LinkType), VLAN: -1, Timestamp: p.Timestamp, Length: p.Length, CaptureLength: p.CaptureLength}
		w.Packet(p.Data, &ci)
	}
	w.End()
	if vxlan == 0 {
		t.Fatal("gopacket finds no VXLAN packet in vxlan.pcap")
	}
	for _, c := range []struct {
		metric, label string
		want          int
	}{
		{"flowlens_sensor_fragments_total", "first", 1},
		{"flowlens_sensor_fragments_total", "later", 1},
		{"flowlens_sensor_tunnel_packets_total", "vxlan", vxlan},
		{"flowlens_sensor_tunnel_packets_total", "gre", 0},
	} {
		got := -1.0
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() != c.metric {
				continue
			}
			for _, s := range mf.GetMetric() {
				if s.GetLabel()[0].GetValue() == c.label {
					got = s.GetCounter().GetValue()
				}
			}
		}
		if got != float64(c.want) {
			t.Errorf("%s{%s} = %v, want %d", c.metric, c.label, got, c.want)
		}
	}
}
