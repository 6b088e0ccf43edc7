// Package capture reads packets for the sensor, live from AF_PACKET
// (TPACKET_V3 rings, one socket per worker joined in a PACKET_FANOUT hash
// group) or from pcap and pcapng files, and hands each packet to its
// worker's Handler. It knows nothing about protocols: sensor/packet
// parses what it delivers.
//
// Why push, with the source owning the worker goroutines: an AF_PACKET
// read returns a slice into the kernel ring that the next read gives back
// to the kernel, and closing the socket unmaps the ring. If the source
// runs the read loop, it alone decides when a slice is dead (after the
// Handler returns) and closes the ring on the goroutine that read it, so
// no packet bytes can be touched after the unmap, whatever the caller
// does. The worker that reads a socket is the worker that owns the flows
// that socket's fanout share hashes to: the Handler runs the flow table
// and DPI there, with no lock and no copy.
//
// Files are for offline use and tests: one worker, packet time only.
// FileReader is the same reader as a pull API for tools that want a loop
// of their own.
package capture

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"flowlens/sensor/packet"
)

// CaptureInfo describes one captured packet.
type CaptureInfo struct {
	Timestamp     time.Time
	Length        int             // on the wire
	CaptureLength int             // len(data): less than Length when the capture cut it
	Link          packet.LinkType // how to parse data
	// VLAN is the VLAN id the kernel took out of the frame (Linux strips
	// the outer 802.1Q/802.1ad tag of received frames and reports it
	// beside the data), or -1. It is the frame's outermost VLAN: override
	// packet.Packet.VLAN with it when set (ApplyVLAN).
	VLAN           int
	InterfaceIndex int
}

// ApplyVLAN sets the VLAN ids of a parsed packet from ci: the tag the
// kernel stripped is the outermost, and what Parse found in the frame (if
// anything) the inner one.
func (ci *CaptureInfo) ApplyVLAN(p *packet.Packet) {
	if ci.VLAN < 0 {
		return
	}
	p.InnerVLAN = p.VLAN
	p.VLAN = uint16(ci.VLAN)
	if p.VLANTags < 255 {
		p.VLANTags++
	}
}

// Handler consumes the packets of one worker. All its calls come from the
// worker's goroutine, in order.
type Handler interface {
	// Packet is called for each packet. data points into the capture
	// buffer (the kernel ring for AF_PACKET) and is valid only during the
	// call: copy what must outlive it. ci is reused too.
	Packet(data []byte, ci *CaptureInfo)
	// Tick is called with the wall clock at least every TickInterval of a
	// live capture, packets or not, so the worker can expire flows on a
	// quiet link (flowtable.Table.Expire) and flush what it batches. File
	// sources never tick: packet time drives everything.
	Tick(now time.Time)
	// End is called once after the worker's last packet (end of the file,
	// Stop, or a fatal error), to flush flows (flowtable.Table.Flush).
	End()
}

// Funcs adapts functions to a Handler; nil ones do nothing.
type Funcs struct {
	PacketFunc func(data []byte, ci *CaptureInfo)
	TickFunc   func(now time.Time)
	EndFunc    func()
}

// Packet implements Handler.
func (f Funcs) Packet(data []byte, ci *CaptureInfo) {
	if f.PacketFunc != nil {
		f.PacketFunc(data, ci)
	}
}

// Tick implements Handler.
func (f Funcs) Tick(now time.Time) {
	if f.TickFunc != nil {
		f.TickFunc(now)
	}
}

// End implements Handler.
func (f Funcs) End() {
	if f.EndFunc != nil {
		f.EndFunc()
	}
}

// Source is a packet source running one goroutine per worker.
//
// Start opens everything (sockets, file) and fails without leaving
// anything open; then the workers run until the input ends, Stop is
// called, or the context given to Start is done. Stop returns once every
// worker's Handler.End has returned and the sockets are closed.
type Source interface {
	Workers() int
	Start(ctx context.Context) error
	Stop()
	// Done is closed when every worker has returned.
	Done() <-chan struct{}
	// Err is why the workers stopped: nil at the end of a file or after
	// Stop, the read error otherwise. Valid once Done is closed.
	Err() error
	// Stats returns the counters of each worker.
	Stats() []Stats
}

// ErrClosed is returned by Start on a source that was already started.
var ErrClosed = errors.New("capture: source already started")

// Stats are one worker's counters.
type Stats struct {
	Packets   uint64 // packets handed to the Handler
	Bytes     uint64 // their wire length
	Truncated uint64 // packets the capture cut (CaptureLength < Length)
	// Kernel counters of the worker's AF_PACKET socket (TPACKET_V3
	// statistics, summed since Start): packets the socket received
	// (including the dropped ones), dropped because the ring was full, and
	// times the ring froze (all blocks full).
	KernelPackets uint64
	KernelDrops   uint64
	KernelFreezes uint64
	// ReadErrors counts failed reads that were retried (poll errors while
	// the interface is down).
	ReadErrors uint64
}

// workerStats is Stats shared with the scrape: the worker publishes its
// local counts at every tick and at the end, so the packet loop does no
// atomic operation. It fills a cache line so workers do not share one.
type workerStats struct {
	packets, bytes, truncated                 atomic.Uint64
	kernelPackets, kernelDrops, kernelFreezes atomic.Uint64
	readErrors                                atomic.Uint64
	_                                         [8]byte
}

func (w *workerStats) load() Stats {
	return Stats{
		Packets: w.packets.Load(), Bytes: w.bytes.Load(), Truncated: w.truncated.Load(),
		KernelPackets: w.kernelPackets.Load(), KernelDrops: w.kernelDrops.Load(), KernelFreezes: w.kernelFreezes.Load(),
		ReadErrors: w.readErrors.Load(),
	}
}

// localStats are a worker's own counts between publications.
type localStats struct {
	packets, bytes, truncated uint64
}

func (l *localStats) count(ci *CaptureInfo) {
	l.packets++
	l.bytes += uint64(ci.Length)
	if ci.CaptureLength < ci.Length {
		l.truncated++
	}
}

func (l *localStats) publish(w *workerStats) {
	w.packets.Store(l.packets)
	w.bytes.Store(l.bytes)
	w.truncated.Store(l.truncated)
}

var (
	_ Source = (*AFPacket)(nil)
	_ Source = (*File)(nil)
)
