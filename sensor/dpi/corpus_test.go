package dpi

import (
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"flowlens/internal/pcapfile"

	"github.com/google/gopacket/layers"
)

// The corpus of nDPI captures (issue 5), with nDPI's expected output.
// FLOWLENS_DPI_CORPUS points elsewhere.
func corpusDir() string {
	if d := os.Getenv("FLOWLENS_DPI_CORPUS"); d != "" {
		return d
	}
	return "../../../shared/corpus/dpi/public"
}

func corpusFiles(tb testing.TB) []string {
	tb.Helper()
	entries, err := os.ReadDir(corpusDir())
	if err != nil {
		tb.Skipf("corpus not available: %v", err)
	}
	var files []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasSuffix(n, ".pcap") || strings.HasSuffix(n, ".pcapng") {
			files = append(files, filepath.Join(corpusDir(), n))
		}
	}
	if len(files) == 0 {
		tb.Skip("corpus holds no captures")
	}
	sort.Strings(files)
	return files
}

// frame is a captured packet.
type frame struct {
	link layers.LinkType
	data []byte
	wire int
	ts   time.Time
}

// readFrames reads pcap or pcapng (by magic: some ".pcap" files are pcapng).
func readFrames(tb testing.TB, path string) []frame {
	tb.Helper()
	pkts, err := pcapfile.ReadAll(path)
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]frame, len(pkts))
	for i, p := range pkts {
		out[i] = frame{layers.LinkType(p.LinkType), p.Data, p.Length, p.Timestamp}
	}
	return out
}

// l4 is a parsed packet: what the classifier needs.
type l4 struct {
	proto    uint8
	src, dst netip.AddrPort
	payload  []byte
	flags    uint8
	seq      uint32
}

// parseFrame decodes link, VLAN, IPv4/IPv6 and TCP/UDP/ICMP headers, and
// decapsulates VXLAN as nDPI does. It is the test's own small parser, not
// the sensor's.
func parseFrame(link layers.LinkType, b []byte) (l4, bool) {
	var et uint16
	switch link {
	case layers.LinkTypeEthernet:
		if len(b) < 14 {
			return l4{}, false
		}
		et, b = binary.BigEndian.Uint16(b[12:]), b[14:]
	case layers.LinkTypeLinuxSLL:
		if len(b) < 16 {
			return l4{}, false
		}
		et, b = binary.BigEndian.Uint16(b[14:]), b[16:]
	case layers.LinkTypeRaw, 12, 14, 228, 229:
		if len(b) < 1 {
			return l4{}, false
		}
		et = 0x0800
		if b[0]>>4 == 6 {
			et = 0x86dd
		}
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		if len(b) < 4 {
			return l4{}, false
		}
		b = b[4:]
		et = 0x0800
		if len(b) > 0 && b[0]>>4 == 6 {
			et = 0x86dd
		}
	default:
		return l4{}, false
	}
	for {
		switch et {
		case 0x8100, 0x88a8, 0x9100:
			if len(b) < 4 {
				return l4{}, false
			}
			et, b = binary.BigEndian.Uint16(b[2:]), b[4:]
			continue
		case 0x8864: // PPPoE session, then PPP
			if len(b) < 8 {
				return l4{}, false
			}
			switch binary.BigEndian.Uint16(b[6:]) {
			case 0x0021:
				et = 0x0800
			case 0x0057:
				et = 0x86dd
			default:
				return l4{}, false
			}
			b = b[8:]
		case 0x8847: // MPLS: skip labels to the bottom of the stack
			for {
				if len(b) < 4 {
					return l4{}, false
				}
				bos := b[2]&1 == 1
				b = b[4:]
				if bos {
					break
				}
			}
			if len(b) == 0 {
				return l4{}, false
			}
			et = 0x0800
			if b[0]>>4 == 6 {
				et = 0x86dd
			}
		}
		break
	}
	var p l4
	var src, dst netip.Addr
	switch et {
	case 0x0800:
		if len(b) < 20 || b[0]>>4 != 4 {
			return l4{}, false
		}
		hl := int(b[0]&15) * 4
		tl := int(binary.BigEndian.Uint16(b[2:]))
		if hl < 20 || len(b) < hl {
			return l4{}, false
		}
		if tl >= hl && tl < len(b) {
			b = b[:tl]
		}
		if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
			return l4{}, false // not the first fragment
		}
		p.proto = b[9]
		src, dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		b = b[hl:]
	case 0x86dd:
		if len(b) < 40 {
			return l4{}, false
		}
		pl := int(binary.BigEndian.Uint16(b[4:]))
		nh := b[6]
		src, dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		b = b[40:]
		if pl <= len(b) {
			b = b[:pl]
		}
		for nh == 0 || nh == 43 || nh == 60 || nh == 44 {
			if len(b) < 8 {
				return l4{}, false
			}
			if nh == 44 && binary.BigEndian.Uint16(b[2:])&0xfff8 != 0 {
				return l4{}, false
			}
			l := 8
			if nh != 44 {
				l = (int(b[1]) + 1) * 8
			}
			if len(b) < l {
				return l4{}, false
			}
			nh, b = b[0], b[l:]
		}
		p.proto = nh
	default:
		return l4{}, false
	}
	var sp, dp uint16
	switch p.proto {
	case 4, 41: // IP in IP (6in4 tunnels): nDPI classifies the inner packet
		if len(b) > 0 && (b[0]>>4 == 4 || b[0]>>4 == 6) {
			return parseFrame(layers.LinkTypeRaw, b)
		}
		p.payload = b
	case 6:
		if len(b) < 20 {
			return l4{}, false
		}
		sp, dp = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
		p.seq = binary.BigEndian.Uint32(b[4:])
		p.flags = b[13]
		off := int(b[12]>>4) * 4
		if off < 20 || off > len(b) {
			return l4{}, false
		}
		p.payload = b[off:]
	case 17:
		if len(b) < 8 {
			return l4{}, false
		}
		sp, dp = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
		p.payload = b[8:]
		if ul := int(binary.BigEndian.Uint16(b[4:])); ul >= 8 && ul-8 < len(p.payload) {
			p.payload = p.payload[:ul-8]
		}
		if dp == 4789 && len(p.payload) >= 8+14 && p.payload[0]&0x08 != 0 {
			return parseFrame(layers.LinkTypeEthernet, p.payload[8:])
		}
	default:
		p.payload = b
	}
	p.src, p.dst = netip.AddrPortFrom(src.Unmap(), sp), netip.AddrPortFrom(dst.Unmap(), dp)
	return p, true
}

// flowKey is the test's flow key: L4 protocol and the unordered endpoints.
type flowKey struct {
	proto uint8
	a, b  netip.AddrPort
}

func keyOf(proto uint8, x, y netip.AddrPort) flowKey {
	if x.Addr().Less(y.Addr()) || x.Addr() == y.Addr() && x.Port() < y.Port() {
		return flowKey{proto, x, y}
	}
	return flowKey{proto, y, x}
}

// testFlow is one flow of the test's own flow table.
type testFlow struct {
	f       Flow
	st      State
	done    bool
	packets int
}

// event is one packet of a capture, pre-parsed for the benchmark.
type event struct {
	flow    int
	dir     Dir
	payload []byte
	flags   uint8
	seq     uint32
	ts      time.Time
}

// flowsOf builds the flows of a capture and the packet events.
func flowsOf(frames []frame) ([]*testFlow, map[flowKey]int, []event) {
	idx := map[flowKey]int{}
	var flows []*testFlow
	var evs []event
	for _, fr := range frames {
		p, ok := parseFrame(fr.link, fr.data)
		if !ok {
			continue
		}
		if p.proto == 1 || p.proto == 58 || p.proto != 6 && p.proto != 17 {
			p.src, p.dst = netip.AddrPortFrom(p.src.Addr(), 0), netip.AddrPortFrom(p.dst.Addr(), 0)
		}
		k := keyOf(p.proto, p.src, p.dst)
		i, ok := idx[k]
		if !ok {
			i = len(flows)
			idx[k] = i
			flows = append(flows, &testFlow{f: Flow{Proto: p.proto, Client: p.src, Server: p.dst}})
		}
		dir := ToServer
		if p.src != flows[i].f.Client {
			dir = ToClient
		}
		flows[i].packets++
		evs = append(evs, event{i, dir, p.payload, p.flags, p.seq, fr.ts})
	}
	return flows, idx, evs
}

// classify runs a fresh engine over a capture, with the capture's clock.
func classify(tb testing.TB, path string) ([]*testFlow, map[flowKey]int, *Engine) {
	tb.Helper()
	frames := readFrames(tb, path)
	flows, idx, evs := flowsOf(frames)
	var now time.Time
	cfg := DefaultConfig()
	cfg.Now = func() time.Time { return now }
	e, err := NewEngine(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	for _, ev := range evs {
		now = ev.ts
		fl := flows[ev.flow]
		if fl.done {
			continue
		}
		fl.done = e.Inspect(&fl.st, &fl.f, ev.dir, ev.payload, ev.flags, ev.seq)
	}
	// The capture ended: the flows leave the table.
	for _, fl := range flows {
		e.Release(&fl.st)
	}
	if h := e.Stats().ReassemblyHeld; h != 0 {
		tb.Errorf("%s: %d buffer bytes still held after every flow was released", path, h)
	}
	return flows, idx, e
}
