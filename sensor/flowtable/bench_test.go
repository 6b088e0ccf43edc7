package flowtable

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"flowlens/sensor/packet"
)

// flowPacket points p at flow i: distinct client address and port per i.
func flowPacket(p *packet.Packet, i int) {
	p.SrcIP = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	p.SrcPort = uint16(1024 + i%50000)
}

func benchPacket() *packet.Packet {
	return &packet.Packet{Proto: packet.ProtoTCP, DstIP: netip.MustParseAddr("198.51.100.1"), DstPort: 443,
		TCPFlags: packet.TCPAck, IPLen: 1500}
}

// BenchmarkPacketExisting: one op is one packet of a flow already in the
// table, spread over the given number of flows (the larger, the more cache
// misses per lookup).
func BenchmarkPacketExisting(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 17} {
		b.Run(itoa(n)+"flows", func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.MaxFlows = n
			tab, _ := New(cfg, func(*Entry[struct{}], Reason) {})
			p := benchPacket()
			for i := range n {
				flowPacket(p, i)
				tab.Packet(p, t0)
			}
			ts := t0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				flowPacket(p, (i*7919)%n) // a stride, not the LRU order
				if i&1023 == 0 {
					ts = ts.Add(time.Millisecond)
				}
				tab.Packet(p, ts)
			}
		})
	}
}

// BenchmarkNewFlows: one op is a packet opening a new flow in a full table,
// so each also evicts one (the steady state of a flow flood).
func BenchmarkNewFlows(b *testing.B) {
	cfg := DefaultConfig()
	cfg.MaxFlows = 1 << 16
	tab, _ := New(cfg, func(*Entry[struct{}], Reason) {})
	p := benchPacket()
	p.TCPFlags = packet.TCPSyn
	ts := t0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		flowPacket(p, i)
		p.DstPort = uint16(i >> 24)
		if i&1023 == 0 {
			ts = ts.Add(time.Millisecond)
		}
		tab.Packet(p, ts)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
}

// BenchmarkBytesPerFlow reports the heap a table holds per flow, measured
// with runtime.MemStats before and after filling it, for an empty State
// and for a State of 256 bytes (an order of magnitude for DPI state). The
// sensor's real per-flow figure, with its real state filled by real
// packets, is sensor.BenchmarkFlowMemory.
func BenchmarkBytesPerFlow(b *testing.B) {
	const n = 1 << 18
	b.Run("state0", func(b *testing.B) { benchBytesPerFlow[struct{}](b, n) })
	b.Run("state256", func(b *testing.B) { benchBytesPerFlow[[256]byte](b, n) })
}

func benchBytesPerFlow[S any](b *testing.B, n int) {
	var perFlow float64
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		cfg := DefaultConfig()
		cfg.MaxFlows = n
		tab, _ := New(cfg, func(*Entry[S], Reason) {})
		p := benchPacket()
		for i := range n {
			flowPacket(p, i)
			tab.Packet(p, t0)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perFlow = float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
		runtime.KeepAlive(tab)
	}
	b.ReportMetric(perFlow, "bytes/flow")
	b.ReportMetric(0, "ns/op")
}

func itoa(i int) string {
	if i >= 1024 && i%1024 == 0 {
		return itoa(i/1024) + "k"
	}
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
