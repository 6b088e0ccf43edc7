package sensor

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"flowlens/sensor/capture"
	"flowlens/sensor/dpi"
	"flowlens/sensor/export"
	"flowlens/sensor/flowtable"
	"flowlens/sensor/packet"
)

// BenchmarkFlowMemory measures the heap the sensor holds per live flow:
// a real Worker (its flow table of flowState, the dpi.State inside, the
// strings a classified flow keeps, the reassembly buffers of flows still
// being classified, the table's index map and entry chunks), filled with
// memFlows distinct flows by real packets through Worker.Packet, the
// heap measured with runtime.MemStats before and after. One op is one
// whole measurement (-benchtime 1x is enough:
// `go test ./sensor -run '^$' -bench FlowMemory -benchtime 1x`). Two loads:
//
//   - corpus: every nDPI corpus capture replayed over and over, each copy
//     on its own VLAN (the VLAN is part of the flow key, as on a trunk), so
//     each copy's flows are new flows with the corpus's mix of TLS, QUIC,
//     DNS, HTTP... at the state their first packets leave them in. All
//     packets carry one timestamp, so no flow times out or ends after its
//     TCP linger: every flow stays in the table (a live table, not a
//     replay's end state).
//   - syn: one TCP SYN per flow, the least a flow holds (nothing
//     classified yet, no strings, no buffers).
//
// It reports bytes/flow (the heap growth over the flows in the table),
// entry-bytes (the size of one table entry, state included: the part
// that does not depend on the traffic), state-bytes (dpi.State alone) and
// reassembly-bytes/flow (buffers held by flows in mid-handshake, included
// in bytes/flow). The engine (rule table, DNS cache, buffer pools) is
// shared by the workers and warmed before the first measurement, so it is
// not charged to the flows. ndpiReader's own "Flow Memory (per flow)",
// when ndpiReader is installed, is reported as ndpi-flow-bytes: it is the
// size of nDPI's per-flow structure alone. For syn, the same flows also go
// through ndpiReader (nDPI 4.2), whose own "Actual Memory" growth per flow
// is ndpi-bytes/flow: the same measure on the peer, in the same run.
func BenchmarkFlowMemory(b *testing.B) {
	ndpi := ndpiFlowBytes(corpusCaptures(b)[0])
	b.Run("corpus", func(b *testing.B) {
		caps := corpusCaptures(b)
		var frames [][]frame
		for _, c := range caps {
			frames = append(frames, loadFrames(b, c))
		}
		benchFlowMemory(b, ndpi, func(w *Worker, ts time.Time, vlan int) {
			for _, fs := range frames {
				for i := range fs {
					ci := fs[i].ci
					ci.Timestamp, ci.VLAN = ts, vlan
					w.Packet(fs[i].data, &ci)
				}
			}
		})
	})
	b.Run("syn", func(b *testing.B) {
		frame := synFrame()
		ci := capture.CaptureInfo{Length: len(frame), CaptureLength: len(frame), Link: packet.LinkEthernet}
		const perVLAN = 1 << 16
		benchFlowMemory(b, ndpi, func(w *Worker, ts time.Time, vlan int) {
			ci.Timestamp, ci.VLAN = ts, vlan
			for i := range perVLAN {
				// Client 10.0.x.y:port, a distinct address per flow and VLAN.
				binary.BigEndian.PutUint16(frame[28:], uint16(i))
				binary.BigEndian.PutUint16(frame[34:], uint16(1024+i%60000))
				w.Packet(frame, &ci)
			}
		})
		if ndpi > 0 {
			// The same flows through ndpiReader, as 802.1Q-tagged frames.
			var frames [][]byte
			for vlan := range 2 {
				for i := range perVLAN {
					f := append(append(append([]byte(nil), frame[:12]...), 0x81, 0x00, 0, byte(vlan+1)), frame[12:]...)
					binary.BigEndian.PutUint16(f[32:], uint16(i))
					binary.BigEndian.PutUint16(f[38:], uint16(1024+i%60000))
					frames = append(frames, f)
				}
			}
			b.ReportMetric(ndpiBytesPerFlow(b, frames), "ndpi-bytes/flow")
		}
	})
}

// memFlows is how many flows a measurement loads (at least).
const memFlows = 100_000

var ndpiFlowMemory = regexp.MustCompile(`Flow Memory \(per flow\):\s+([0-9.]+) (B|KB)`)

// benchFlowMemory fills a fresh worker by calling pass with VLANs 1, 2, ...
// until its table holds memFlows flows, and reports the heap per flow.
func benchFlowMemory(b *testing.B, ndpi float64, pass func(w *Worker, ts time.Time, vlan int)) {
	eng, err := dpi.NewEngine(dpi.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	m, _ := NewMetrics(nil)
	cfg := flowtable.DefaultConfig()
	cfg.MaxFlows = 4 * memFlows // no eviction
	ts := time.Unix(1_700_000_000, 0)
	// Warm the shared engine (DNS cache, label cache, pools) on VLAN 0.
	warm, err := NewWorker(eng, cfg, m, func(*export.Flow) {})
	if err != nil {
		b.Fatal(err)
	}
	pass(warm, ts, 0)
	warm.End()
	warm = nil

	var perFlow, reasm float64
	var flows int
	var ended, packets uint64
	var passes int
	for range b.N {
		var before, after runtime.MemStats
		// Twice: the second empties the pools' victim caches.
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&before)
		heldBefore := eng.Stats().ReassemblyHeld
		w, err := NewWorker(eng, cfg, m, func(*export.Flow) {})
		if err != nil {
			b.Fatal(err)
		}
		vlan := 1
		for ; w.table.Len() < memFlows; vlan++ {
			if vlan > 4094 {
				b.Fatalf("only %d flows after %d VLANs", w.table.Len(), vlan)
			}
			pass(w, ts, vlan)
		}
		passes = vlan - 1
		packets = w.c.packets.Load()
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&after)
		flows = w.table.Len()
		perFlow = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(flows)
		reasm = float64(eng.Stats().ReassemblyHeld-heldBefore) / float64(flows)
		st := w.table.Stats()
		ended = 0
		for _, n := range st.Emitted {
			ended += n
		}
		w.End() // gives the buffers back, for the next run
		runtime.KeepAlive(w)
	}
	b.ReportMetric(perFlow, "bytes/flow")
	b.ReportMetric(reasm, "reassembly-bytes/flow")
	b.ReportMetric(float64(flows), "flows")
	// Flows that ended while loading (a SYN reusing the ports of a closed
	// connection): not in the table, not in the count.
	b.ReportMetric(float64(ended), "ended")
	b.ReportMetric(float64(passes), "passes")
	b.ReportMetric(float64(packets), "packets")
	b.ReportMetric(float64(unsafe.Sizeof(flowtable.Entry[flowState]{})), "entry-bytes")
	b.ReportMetric(float64(unsafe.Sizeof(dpi.State{})), "state-bytes")
	if ndpi > 0 {
		b.ReportMetric(ndpi, "ndpi-flow-bytes")
	}
	b.ReportMetric(0, "ns/op")
}

// ndpiFlowBytes is ndpiReader's "Flow Memory (per flow)" for a capture, 0
// without ndpiReader.
func ndpiFlowBytes(path string) float64 {
	out, err := exec.Command("ndpiReader", "-i", path, "-v", "0").CombinedOutput()
	if err != nil {
		return 0
	}
	m := ndpiFlowMemory.FindSubmatch(out)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	if string(m[2]) == "KB" {
		v *= 1024
	}
	return v
}

var ndpiActual = regexp.MustCompile(`Actual Memory:\s+([0-9.]+) (B|KB|MB|GB)`)

// ndpiBytesPerFlow runs ndpiReader over frames (one flow each, all at one
// time so none times out) and over the first alone, and returns the
// growth of its own "Actual Memory" (what its allocator wrapper holds at
// the end) per flow.
func ndpiBytesPerFlow(b *testing.B, frames [][]byte) float64 {
	dir := b.TempDir()
	actual := func(frames [][]byte) float64 {
		path := filepath.Join(dir, "flows.pcap")
		if err := os.WriteFile(path, pcapAtOneTime(frames), 0o644); err != nil {
			b.Fatal(err)
		}
		out, err := exec.Command("ndpiReader", "-i", path, "-v", "0").CombinedOutput()
		if err != nil {
			b.Fatalf("ndpiReader: %v: %s", err, out)
		}
		m := ndpiActual.FindSubmatch(out)
		if m == nil {
			b.Fatalf("ndpiReader: no Actual Memory in %s", out)
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v * map[string]float64{"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[string(m[2])]
	}
	return (actual(frames) - actual(frames[:1])) / float64(len(frames)-1)
}

// pcapAtOneTime is a classic Ethernet pcap of frames, all with one timestamp.
func pcapAtOneTime(frames [][]byte) []byte {
	out := make([]byte, 24, 24+len(frames)*80)
	binary.LittleEndian.PutUint32(out[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(out[4:], 2)
	binary.LittleEndian.PutUint16(out[6:], 4)
	binary.LittleEndian.PutUint32(out[16:], 65535)
	binary.LittleEndian.PutUint32(out[20:], uint32(packet.LinkEthernet))
	for _, f := range frames {
		out = binary.LittleEndian.AppendUint32(out, 1_700_000_000)
		out = binary.LittleEndian.AppendUint32(out, 0)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(f)))
		out = binary.LittleEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}

// synFrame is an Ethernet/IPv4 TCP SYN from 10.0.x.y to 198.51.100.1:443.
func synFrame() []byte {
	f := make([]byte, 14+20+20)
	copy(f, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00})
	ip := f[14:]
	copy(ip, []byte{0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 198, 51, 100, 1})
	tcp := f[34:]
	binary.BigEndian.PutUint16(tcp[2:], 443)
	binary.BigEndian.PutUint32(tcp[4:], 1000)
	tcp[12] = 5 << 4
	tcp[13] = packet.TCPSyn
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	return f
}
