//go:build linux && cgo

package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket/afpacket"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"flowlens/sensor/packet"
)

// AFPacket captures live from one interface with gopacket's afpacket
// (TPACKET_V3, mmap'd ring per socket), one socket and goroutine per
// worker. gopacket's afpacket uses cgo for the kernel's structures, hence
// the build constraint; without cgo NewAFPacket returns ErrUnavailable.
type AFPacket struct {
	cfg      AFPacketConfig
	log      *slog.Logger
	handlers []Handler
	stats    []workerStats
	link     packet.LinkType

	started  bool
	stopping atomic.Bool
	stopOnce sync.Once
	stopCh   chan struct{}
	done     chan struct{}
	wg       sync.WaitGroup
	aux      int // packet socket holding the promiscuous membership, or -1
}

// NewAFPacket returns an inert source delivering worker w's packets to
// handlers[w]; it needs one handler per worker.
func NewAFPacket(cfg AFPacketConfig, log *slog.Logger, reg prometheus.Registerer, handlers []Handler) (*AFPacket, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(handlers) != cfg.Workers {
		return nil, fmt.Errorf("capture: %d handlers for %d workers", len(handlers), cfg.Workers)
	}
	if log == nil {
		log = slog.Default()
	}
	s := &AFPacket{cfg: cfg, log: log, handlers: handlers, stats: make([]workerStats, cfg.Workers),
		stopCh: make(chan struct{}), done: make(chan struct{}), aux: -1}
	if reg != nil {
		if err := reg.Register(newCollector(cfg.Interface, true, s.Stats)); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Workers implements Source.
func (s *AFPacket) Workers() int { return s.cfg.Workers }

// LinkType is the link type of the packets delivered (known after Start).
func (s *AFPacket) LinkType() packet.LinkType { return s.link }

// Start opens the sockets, joins them to the fanout group, attaches the
// filter, enables promiscuous mode and starts the workers. On error
// nothing stays open. Sockets belong to the network namespace of the
// calling thread.
func (s *AFPacket) Start(ctx context.Context) (err error) {
	if s.started {
		return ErrClosed
	}
	s.started = true
	defer func() {
		if err != nil {
			close(s.done) // Stop and Done must not wait for workers that never ran
		}
	}()
	cfg := s.cfg
	aux, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) // protocol 0: receives nothing
	if err != nil {
		return fmt.Errorf("capture on %s: packet socket: %w", cfg.Interface, err)
	}
	defer func() {
		if err != nil || !cfg.Promiscuous {
			unix.Close(aux)
		}
	}()
	ifindex, hwtype, err := interfaceInfo(aux, cfg.Interface)
	if err != nil {
		return fmt.Errorf("capture on %s: %w", cfg.Interface, err)
	}
	// Ethernet-framed devices give their link header; anything else
	// (tun, GRE devices, ...) is read without it, as raw IP.
	socktype := afpacket.SocketDgram
	s.link = packet.LinkRaw
	switch hwtype {
	case unix.ARPHRD_ETHER, unix.ARPHRD_LOOPBACK:
		socktype = afpacket.SocketRaw
		s.link = packet.LinkEthernet
	}
	var filter []bpf.RawInstruction
	if cfg.Filter != "" {
		if filter, err = ParseFilter(cfg.Filter); err != nil {
			return fmt.Errorf("capture filter: %w", err)
		}
	}
	group := cfg.fanoutGroup()
	fanout := afpacket.FanoutHash
	if cfg.FanoutDefrag {
		fanout |= afpacket.FanoutHashWithDefrag // PACKET_FANOUT_FLAG_DEFRAG in the type's flag bits
	}
	tps := make([]*afpacket.TPacket, 0, cfg.Workers)
	defer func() {
		if err != nil {
			for _, tp := range tps {
				tp.Close()
			}
		}
	}()
	for w := range cfg.Workers {
		tp, err := afpacket.NewTPacket(
			afpacket.OptInterface(cfg.Interface),
			afpacket.OptTPacketVersion(afpacket.TPacketVersion3),
			socktype,
			afpacket.OptBlockSize(cfg.BlockSize),
			afpacket.OptFrameSize(cfg.FrameSize),
			afpacket.OptNumBlocks(cfg.numBlocks()),
			afpacket.OptBlockTimeout(cfg.BlockTimeout),
			afpacket.OptPollTimeout(cfg.PollTimeout),
		)
		if err != nil {
			return fmt.Errorf("capture on %s: worker %d ring: %w", cfg.Interface, w, err)
		}
		tps = append(tps, tp)
		if filter != nil {
			if err := tp.SetBPF(filter); err != nil {
				return fmt.Errorf("capture on %s: attach filter: %w", cfg.Interface, err)
			}
		}
		if cfg.Workers > 1 {
			if err := tp.SetFanout(fanout, group); err != nil {
				return fmt.Errorf("capture on %s: join fanout group %d: %w (another process may use the group with other settings: set the group id)", cfg.Interface, group, err)
			}
		}
	}
	if cfg.Promiscuous {
		mreq := unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(aux, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			return fmt.Errorf("capture on %s: promiscuous mode: %w", cfg.Interface, err)
		}
		s.aux = aux
	}
	s.log.Info("capture started", "interface", cfg.Interface, "link", s.link.String(), "workers", cfg.Workers,
		"fanout_group", group, "ring_mb_per_worker", cfg.RingSizeMB, "block_size", cfg.BlockSize,
		"promiscuous", cfg.Promiscuous, "filter_instructions", len(filter))
	for w, tp := range tps {
		s.wg.Add(1)
		go s.run(w, tp)
	}
	go func() {
		select {
		case <-ctx.Done():
			s.stopping.Store(true)
		case <-s.stopCh:
		}
	}()
	go func() {
		s.wg.Wait()
		if s.aux >= 0 {
			unix.Close(s.aux) // the kernel drops the promiscuous membership
		}
		close(s.done)
	}()
	return nil
}

// run is worker w's loop. The ring is read and closed only here: the data
// of one read stays valid until the next read, which happens after the
// Handler returned.
func (s *AFPacket) run(w int, tp *afpacket.TPacket) {
	defer s.wg.Done()
	h, st := s.handlers[w], &s.stats[w]
	var local localStats
	ci := CaptureInfo{Link: s.link, VLAN: -1}
	tickEvery := int64(s.cfg.TickInterval)
	lastTick := time.Now().UnixNano()
	var lastErrLog time.Time
	publish := func() {
		local.publish(st)
		if _, v3, err := tp.SocketStats(); err == nil {
			st.kernelPackets.Store(uint64(v3.Packets()))
			st.kernelDrops.Store(uint64(v3.Drops()))
			st.kernelFreezes.Store(uint64(v3.QueueFreezes()))
		}
	}
	tick := func(now time.Time) {
		publish()
		h.Tick(now)
		lastTick = now.UnixNano()
	}
	defer func() {
		publish()
		h.End()
		tp.Close()
	}()
	for !s.stopping.Load() {
		data, gci, err := tp.ZeroCopyReadPacketData()
		if err != nil {
			now := time.Now()
			if !errors.Is(err, afpacket.ErrTimeout) {
				// POLLERR (the interface went down, ...): gopacket returns it
				// until a block is ready again. Count, back off, retry.
				st.readErrors.Add(1)
				if now.Sub(lastErrLog) > time.Minute {
					s.log.Warn("capture read failed, retrying", "interface", s.cfg.Interface, "worker", w, "err", err)
					lastErrLog = now
				}
				select {
				case <-s.stopCh:
				case <-time.After(s.cfg.PollTimeout):
				}
			}
			if now.UnixNano()-lastTick >= tickEvery {
				tick(now)
			}
			continue
		}
		ci.Timestamp = gci.Timestamp
		ci.Length = gci.Length
		ci.CaptureLength = gci.CaptureLength
		ci.InterfaceIndex = gci.InterfaceIndex
		ci.VLAN = -1
		for _, a := range gci.AncillaryData {
			if v, ok := a.(afpacket.AncillaryVLAN); ok {
				ci.VLAN = v.VLAN
			}
		}
		local.count(&ci)
		h.Packet(data, &ci)
		if ci.Timestamp.UnixNano()-lastTick >= tickEvery {
			tick(time.Now())
		}
	}
}

// Stop stops the workers (each within PollTimeout), waits for their
// Handler.End, closes the sockets and leaves promiscuous mode.
func (s *AFPacket) Stop() {
	s.stopOnce.Do(func() {
		s.stopping.Store(true)
		close(s.stopCh)
	})
	if s.started {
		<-s.done
	}
}

// Done implements Source.
func (s *AFPacket) Done() <-chan struct{} { return s.done }

// Err implements Source: workers retry read errors, so it is nil.
func (s *AFPacket) Err() error { return nil }

// Stats implements Source.
func (s *AFPacket) Stats() []Stats {
	out := make([]Stats, len(s.stats))
	for i := range s.stats {
		out[i] = s.stats[i].load()
	}
	return out
}

// interfaceInfo returns an interface's index and ARPHRD hardware type,
// asked in the network namespace of fd.
func interfaceInfo(fd int, name string) (index int, hwtype uint16, err error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, 0, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, 0, fmt.Errorf("no interface %q: %w", name, err)
	}
	index = int(ifr.Uint32())
	ifr, _ = unix.NewIfreq(name)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr); err != nil {
		return 0, 0, fmt.Errorf("hardware type of %q: %w", name, err)
	}
	return index, ifr.Uint16(), nil // sa_family of ifr_hwaddr
}
