package decoder

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"flowlens/sensor/export"
)

// writeIPFIXPcap writes msgs as Ethernet/IPv4/UDP frames from
// 192.0.2.10:40000 to 192.0.2.20:4739, one per message, with checksums.
func writeIPFIXPcap(t *testing.T, path string, msgs [][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{192, 0, 2, 10}, DstIP: net.IP{192, 0, 2, 20}}
		udp := &layers.UDP{SrcPort: 40000, DstPort: 4739}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(m)); err != nil {
			t.Fatal(err)
		}
		ci := gopacket.CaptureInfo{Timestamp: sensorExportTime.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}
		if err := w.WritePacket(ci, buf.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
}

// tsharkPackets runs tshark on path, decoding UDP 4739 as IPFIX, and
// returns each packet's layers.
func tsharkPackets(t *testing.T, path string) []map[string]any {
	t.Helper()
	cmd := exec.Command("tshark", "-r", path, "-d", "udp.port==4739,cflow", "-T", "json", "--no-duplicate-keys")
	cmd.Env = append(os.Environ(), "TZ=UTC")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v: %s", err, stderr.String())
	}
	var pkts []struct {
		Source struct {
			Layers map[string]any `json:"layers"`
		} `json:"_source"`
	}
	if err := json.Unmarshal(out, &pkts); err != nil {
		t.Fatalf("tshark json: %v", err)
	}
	var res []map[string]any
	for _, p := range pkts {
		res = append(res, p.Source.Layers)
	}
	return res
}

// strs reads a tshark JSON value: a string, or the array of a field that
// occurs more than once (--no-duplicate-keys).
func strs(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, strs(e)...)
		}
		return out
	}
	return nil
}

func hexColon(b []byte) string {
	var s strings.Builder
	for i, c := range b {
		if i > 0 {
			s.WriteByte(':')
		}
		fmt.Fprintf(&s, "%02x", c)
	}
	return s.String()
}

// wantTshark is what tshark must show for the record(s) of f: one map per
// record, keyed by tshark field name, values in order of occurrence.
func wantTshark(f export.Flow, uni bool) []map[string][]string {
	const ts = "Jan 2, 2006 15:04:05.000000000 UTC"
	addr := func(a netip.Addr) (string, string) {
		if f.Client.Is6() {
			return "v6", a.String()
		}
		return "", a.String()
	}
	rec := func(src, dst netip.Addr, sport, dport uint16, octets, packets []uint64, flags []uint8) map[string][]string {
		sfx, s := addr(src)
		_, d := addr(dst)
		m := map[string][]string{
			"cflow.srcaddr" + sfx: {s}, "cflow.dstaddr" + sfx: {d},
			"cflow.srcport": {fmt.Sprint(sport)}, "cflow.dstport": {fmt.Sprint(dport)},
			"cflow.protocol": {fmt.Sprint(f.Protocol)}, "cflow.vlanid": {fmt.Sprint(f.VLAN)}, "cflow.post_vlanid": {fmt.Sprint(f.VLAN)},
			"cflow.flow_end_reason": {fmt.Sprint(uint8(f.EndReason))},
			"cflow.abstimestart":    {f.Start.UTC().Format(ts)}, "cflow.abstimeend": {f.End.UTC().Format(ts)},
			"cflow.appl_name": {f.Application}, "cflow.application_category_name": {f.Category},
			"cflow.appl_id.classification_engine_id": {"13"},
			"cflow.appl_id.selector_id":              {hexColon(binary.BigEndian.AppendUint32(nil, f.ApplicationID))},
			"cflow.pie.ntop.l7_proto_name":           {f.Application},
			// Wireshark 4.0 knows neither L7_CONFIDENCE (560) nor
			// L7_PROTO_CATEGORY (501): it shows their bytes.
			"cflow.enterprise_private_entry": {"06", hexColon([]byte(f.Category))},
		}
		for _, o := range octets {
			m["cflow.octets"] = append(m["cflow.octets"], fmt.Sprint(o))
		}
		for _, p := range packets {
			m["cflow.packets"] = append(m["cflow.packets"], fmt.Sprint(p))
		}
		for _, fl := range flags {
			m["cflow.tcpflags"] = append(m["cflow.tcpflags"], fmt.Sprintf("0x%04x", fl))
		}
		if f.ServerName != "" {
			m["cflow.pie.ntop.ssl_server_name"] = []string{f.ServerName}
		}
		if f.DNSQuery != "" {
			m["cflow.pie.ntop.dns_query"] = []string{f.DNSQuery}
		}
		return m
	}
	if !uni {
		return []map[string][]string{rec(f.Client, f.Server, f.ClientPort, f.ServerPort,
			[]uint64{f.ClientOctets, f.ServerOctets}, []uint64{f.ClientPackets, f.ServerPackets}, []uint8{f.ClientTCPFlags, f.ServerTCPFlags})}
	}
	out := []map[string][]string{rec(f.Client, f.Server, f.ClientPort, f.ServerPort,
		[]uint64{f.ClientOctets}, []uint64{f.ClientPackets}, []uint8{f.ClientTCPFlags})}
	if f.ServerOctets != 0 || f.ServerPackets != 0 {
		out = append(out, rec(f.Server, f.Client, f.ServerPort, f.ClientPort,
			[]uint64{f.ServerOctets}, []uint64{f.ServerPackets}, []uint8{f.ServerTCPFlags}))
	}
	return out
}

var setKey = regexp.MustCompile(`^Set \d+ \[id=(\d+)\] \((?:(\d+) flows|Data Template)`)

// TestSensorExportTshark checks the exporter against an independent
// decoder: tshark (Wireshark's cflow dissector) reads a capture of the
// messages, and the header fields, the record counts and every data
// field it knows must be what was exported.
func TestSensorExportTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed (apt-get install tshark)")
	}
	for _, uni := range []bool{false, true} {
		t.Run(fmt.Sprintf("unidirectional=%v", uni), func(t *testing.T) {
			cfg := sensorConfig(uni, true)
			cfg.MaxNameLen = 300
			var flows []export.Flow
			var want []map[string][]string
			for i := range 25 {
				f := sensorFlow(i%3 == 2)
				f.ClientPort += uint16(i)
				f.ClientOctets += uint64(i) << 33 // past 32 bits
				f.ApplicationID += uint32(i) << 20
				f.End = f.End.Add(time.Duration(i) * time.Millisecond)
				switch i % 5 {
				case 1:
					f.Application, f.Category, f.ServerName = "DNS", "Network", ""
					f.DNSQuery, f.Protocol, f.ServerPort = fmt.Sprintf("q%d.example.org", i), 17, 53
				case 3:
					f.ServerOctets, f.ServerPackets = 0, 0
				case 4:
					f.ServerName = strings.Repeat("s", 280) + ".example" // long length form
				}
				flows = append(flows, f)
				want = append(want, wantTshark(f, uni)...)
			}
			msgs := encodeSensor(t, cfg, flows...)
			if len(msgs) < 3 {
				t.Fatalf("%d messages: the test wants several", len(msgs))
			}
			path := filepath.Join(t.TempDir(), "sensor.pcap")
			writeIPFIXPcap(t, path, msgs)
			pkts := tsharkPackets(t, path)
			if len(pkts) != len(msgs) {
				t.Fatalf("tshark read %d packets, want %d", len(pkts), len(msgs))
			}
			var got []map[string]any
			seq := 0
			for i, p := range pkts {
				c, _ := p["cflow"].(map[string]any)
				hdr := map[string]string{"cflow.version": "10", "cflow.len": fmt.Sprint(len(msgs[i])),
					"cflow.od_id": "7", "cflow.sequence": fmt.Sprint(seq)}
				for k, v := range hdr {
					if g := strs(c[k]); len(g) != 1 || g[0] != v {
						t.Errorf("message %d: %s = %v, want %s", i, k, g, v)
					}
				}
				if g := strs(c["cflow.timestamp_tree"].(map[string]any)["cflow.exporttime"]); len(g) != 1 || g[0] != "1700000000" {
					t.Errorf("message %d: export time %v", i, g)
				}
				var keys []string
				for k := range c {
					if setKey.MatchString(k) {
						keys = append(keys, k)
					}
				}
				// Sets in message order: "Set 1", "Set 2", ...
				sort.Slice(keys, func(a, b int) bool { return setNum(keys[a]) < setNum(keys[b]) })
				templates := false
				for _, k := range keys {
					m := setKey.FindStringSubmatch(k)
					if m[2] == "" {
						templates = true
						continue
					}
					n, _ := strconv.Atoi(m[2])
					set := c[k].(map[string]any)
					for j := 1; j <= n; j++ {
						r, ok := set[fmt.Sprintf("Flow %d", j)].(map[string]any)
						if !ok {
							t.Fatalf("message %d %s: no Flow %d", i, k, j)
						}
						got = append(got, r)
					}
					seq += n
				}
				if templates != (i == 0) {
					t.Errorf("message %d: template set %v", i, templates)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("tshark saw %d records, want %d", len(got), len(want))
			}
			for i := range want {
				flat := map[string]any{}
				flatten(got[i], flat)
				for k, w := range want[i] {
					if g := strs(flat[k]); !slices.Equal(g, w) {
						t.Errorf("record %d: %s = %q, want %q", i, k, g, w)
					}
				}
			}
		})
	}
}

func setNum(k string) int {
	n, _ := strconv.Atoi(strings.Fields(k)[1])
	return n
}

// flatten lifts the fields of tshark's sub-trees (cflow.timedelta_tree
// holds the absolute times) to the top.
func flatten(m map[string]any, out map[string]any) {
	for k, v := range m {
		if strings.HasSuffix(k, "_tree") {
			if sub, ok := v.(map[string]any); ok {
				flatten(sub, out)
			}
			continue
		}
		out[k] = v
	}
}
