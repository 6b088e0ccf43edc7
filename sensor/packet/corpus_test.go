package packet

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"flowlens/internal/pcapfile"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// corpusDir holds the nDPI project's captures (issue 5).
const corpusDir = "../../../shared/corpus/dpi/public"

// frame is one captured packet of a corpus file.
type frame struct {
	link   LinkType
	data   []byte
	length int
	ts     time.Time
}

// corpusFiles lists the capture files, or skips when the corpus is absent.
func corpusFiles(tb testing.TB) []string {
	tb.Helper()
	entries, err := os.ReadDir(corpusDir)
	if err != nil {
		tb.Skipf("corpus not available: %v", err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".pcap") || strings.HasSuffix(name, ".pcapng") {
			files = append(files, filepath.Join(corpusDir, name))
		}
	}
	if len(files) == 0 {
		tb.Skip("corpus holds no captures")
	}
	return files
}

// readCapture reads a pcap or pcapng file (told apart by its magic, not its
// name: several .pcap files of the corpus are pcapng).
func readCapture(tb testing.TB, path string) []frame {
	tb.Helper()
	pkts, err := pcapfile.ReadAll(path)
	if err != nil {
		tb.Fatal(err)
	}
	frames := make([]frame, len(pkts))
	for i, p := range pkts {
		frames[i] = frame{LinkType(p.LinkType), p.Data, p.Length, p.Timestamp}
	}
	return frames
}

// gopacketDecoder is gopacket's first decoder for a link type, including
// the ones its uint8 LinkType cannot name.
func gopacketDecoder(link LinkType, data []byte) (gopacket.Decoder, []byte, bool) {
	switch link {
	case LinkLinuxSLL2:
		if len(data) < 20 {
			return nil, nil, false
		}
		return layers.EthernetType(binary.BigEndian.Uint16(data)), data[20:], true
	case linkRawBSD12, linkRawBSD14:
		return layers.LinkTypeRaw, data, true
	}
	if link > 255 {
		return nil, nil, false
	}
	return layers.LinkType(link), data, true
}

// oracle is what gopacket finds in a frame: the last IP layer and the
// transport layer right after it.
type oracle struct {
	ok               bool // an IP layer was found
	src, dst         string
	proto            uint8
	l4               gopacket.LayerType
	srcPort, dstPort uint16
	payload          int
	fragment         bool // gopacket stopped at a fragment
}

func decodeOracle(link LinkType, data []byte) oracle {
	var o oracle
	dec, data, ok := gopacketDecoder(link, data)
	if !ok {
		return o
	}
	pkt := gopacket.NewPacket(data, dec, gopacket.DecodeOptions{NoCopy: true})
	ls := pkt.Layers()
	last := -1
	for i, l := range ls {
		switch l := l.(type) {
		case *layers.IPv4:
			last = i
			o.src, o.dst, o.proto = l.SrcIP.String(), l.DstIP.String(), uint8(l.Protocol)
		case *layers.IPv6:
			last = i
			o.src, o.dst, o.proto = l.SrcIP.String(), l.DstIP.String(), uint8(l.NextHeader)
		}
	}
	if last < 0 {
		return o
	}
	o.ok = true
	for _, l := range ls[last+1:] {
		switch l := l.(type) {
		case *layers.IPv6HopByHop:
			o.proto = uint8(l.NextHeader)
			continue
		case *layers.IPv6Routing:
			o.proto = uint8(l.NextHeader)
			continue
		case *layers.IPv6Destination:
			o.proto = uint8(l.NextHeader)
			continue
		case *layers.IPv6Fragment:
			o.proto = uint8(l.NextHeader)
			o.fragment = true
			continue
		case *layers.IPSecAH:
			o.proto = uint8(l.NextHeader)
			continue
		case *layers.TCP:
			o.l4, o.srcPort, o.dstPort, o.payload = l.LayerType(), uint16(l.SrcPort), uint16(l.DstPort), len(l.Payload)
		case *layers.UDP:
			o.l4, o.srcPort, o.dstPort, o.payload = l.LayerType(), uint16(l.SrcPort), uint16(l.DstPort), len(l.Payload)
		case *layers.SCTP:
			o.l4, o.srcPort, o.dstPort = l.LayerType(), uint16(l.SrcPort), uint16(l.DstPort)
		case *layers.ICMPv4, *layers.ICMPv6:
			o.l4 = l.LayerType()
		}
		if l.LayerType() == gopacket.LayerTypeFragment {
			o.fragment = true
		}
		break
	}
	return o
}

// TestDifferential parses every packet of every corpus capture with Parse
// and with gopacket, and requires the same addresses, protocol, ports and
// payload length. Where the two differ by design, the difference is
// counted by kind and bounded: see the cases below.
func TestDifferential(t *testing.T) {
	var total, compared int
	diffs := map[string]int{}
	examples := map[string]string{}
	note := func(kind, file string, i int) {
		diffs[kind]++
		if _, ok := examples[kind]; !ok {
			examples[kind] = filepath.Base(file) + " #" + itoa(i+1)
		}
	}
	var p Packet
	for _, file := range corpusFiles(t) {
		for i, f := range readCapture(t, file) {
			total++
			err := Parse(f.link, f.data, &p)
			o := decodeOracle(f.link, f.data)
			switch {
			case !o.ok && err != nil:
				note("both_not_ip", file, i)
				continue
			case !o.ok:
				t.Errorf("%s #%d: gopacket found no IP, Parse found %s > %s proto %d", file, i+1, p.SrcIP, p.DstIP, p.Proto)
				continue
			case err != nil && p.Flags&FlagTunnelInnerError == 0:
				t.Errorf("%s #%d: Parse: %v; gopacket: %s > %s proto %d", file, i+1, err, o.src, o.dst, o.proto)
				continue
			}
			if p.Flags&FlagTunnelInnerError != 0 {
				// We keep the outer packet as the flow when the inner one
				// is cut; gopacket goes as deep as it can.
				note("tunnel_inner_error", file, i)
				continue
			}
			compared++
			if p.Tunnel != TunnelNone {
				note("tunnel_"+p.Tunnel.String(), file, i)
			}
			if p.VLANTags > 0 {
				note("vlan", file, i)
			}
			if p.MPLS > 0 {
				note("mpls", file, i)
			}
			if p.Link != LinkEthernet {
				note("link_"+p.Link.String(), file, i)
			}
			if p.SrcIP.String() != o.src || p.DstIP.String() != o.dst || p.Proto != o.proto {
				t.Errorf("%s #%d: Parse %s > %s proto %d, gopacket %s > %s proto %d", file, i+1,
					p.SrcIP, p.DstIP, p.Proto, o.src, o.dst, o.proto)
				continue
			}
			if p.Frag == FragFirst && o.fragment {
				// gopacket stops at any fragment; we parse the first one's
				// transport header.
				note("first_fragment_parsed", file, i)
				continue
			}
			if p.Frag == FragLater {
				if !o.fragment && o.l4 != 0 {
					t.Errorf("%s #%d: later fragment, gopacket decoded %v", file, i+1, o.l4)
				}
				note("later_fragment", file, i)
				continue
			}
			switch o.l4 {
			case layers.LayerTypeTCP, layers.LayerTypeUDP:
				if p.SrcPort != o.srcPort || p.DstPort != o.dstPort || len(p.Payload) != o.payload {
					t.Errorf("%s #%d: Parse ports %d > %d payload %d, gopacket %d > %d payload %d", file, i+1,
						p.SrcPort, p.DstPort, len(p.Payload), o.srcPort, o.dstPort, o.payload)
				}
			case layers.LayerTypeSCTP:
				if p.SrcPort != o.srcPort || p.DstPort != o.dstPort {
					t.Errorf("%s #%d: Parse SCTP ports %d > %d, gopacket %d > %d", file, i+1,
						p.SrcPort, p.DstPort, o.srcPort, o.dstPort)
				}
			case 0:
				if p.Proto == ProtoTCP || p.Proto == ProtoUDP {
					// gopacket failed on a transport header we accepted.
					note("gopacket_no_l4", file, i)
					examples["gopacket_no_l4"] += ""
				}
			}
		}
	}
	keys := make([]string, 0, len(diffs))
	for k := range diffs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		t.Logf("%-24s %6d  (first: %s)", k, diffs[k], examples[k])
	}
	t.Logf("%d packets, %d compared field by field", total, compared)
	if compared < total*9/10 {
		t.Errorf("only %d of %d packets compared", compared, total)
	}
	if diffs["gopacket_no_l4"] > 0 {
		t.Errorf("%d TCP/UDP packets gopacket could not decode (first: %s)", diffs["gopacket_no_l4"], examples["gopacket_no_l4"])
	}
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}
