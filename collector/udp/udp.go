// Package udp receives export datagrams on UDP sockets and hands them to
// worker goroutines. It knows nothing of the protocols: that is decoder's job.
//
// Each listener opens several SO_REUSEPORT sockets so the kernel spreads
// datagrams over reader goroutines. Readers never block on the workers: a
// datagram that finds its worker's queue full is a counted drop. Datagrams of
// one exporter always go to the same worker, so a template is learnt before
// the data that follows it and template state needs no lock.
//
// Before a datagram is copied, its reader checks the source against the
// allow-list and the exporter's token bucket (gate.go). Queues are bounded
// in datagrams and in bytes, so a flood of 64 KiB datagrams cannot hold
// more memory than QueueSize ordinary ones.
package udp

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Listener is one UDP address to receive on.
type Listener struct {
	Name string // metric label: netflow, ipfix, sflow
	Addr string // host:port; IPv4 or IPv6 ("[::]:2055"); ":2055" is dual-stack
}

// Config of the UDP intake.
type Config struct {
	Listeners []Listener
	Sockets   int // SO_REUSEPORT sockets (and reader goroutines) per listener
	RcvBuf    int // SO_RCVBUF bytes asked for each socket; 0 keeps the kernel default
	Workers   int // worker goroutines consuming datagrams
	QueueSize int // datagrams queued per worker before drops

	// Allow, when not empty, lists the exporter prefixes accepted; other
	// sources are counted drops (reason "not_allowed").
	Allow []netip.Prefix
	// RateLimit bounds the datagrams per second accepted from one exporter
	// address (0: no limit); the excess is counted (reason "rate_limited").
	// The bucket holds one second of rate. Each reader goroutine keeps its
	// own buckets, for the defaultRateTableSize exporters it saw last: an
	// exporter whose datagrams come from several source ports may be spread
	// by the kernel over the sockets of a listener, each enforcing the rate.
	RateLimit float64
}

// Queue memory: a worker's queue holds at most QueueSize datagrams and
// QueueSize×queueBytesPerDatagram bytes of buffers (but always at least
// one datagram). Buffers larger than maxPooledBuf are not reused.
const (
	queueBytesPerDatagram = 2048
	maxPooledBuf          = 9216 // a jumbo frame
)

// DefaultConfig listens on nothing; the daemon fills the listeners.
func DefaultConfig() Config {
	return Config{Sockets: 2, RcvBuf: 8 << 20, Workers: 2, QueueSize: 4096}
}

// Validate reports invalid settings.
func (c Config) Validate() error {
	switch {
	case c.Sockets < 1 || c.Sockets > 64:
		return fmt.Errorf("sockets per listener must be 1..64, got %d", c.Sockets)
	case c.Workers < 1 || c.Workers > 256:
		return fmt.Errorf("workers must be 1..256, got %d", c.Workers)
	case c.QueueSize < 1:
		return fmt.Errorf("queue size must be >= 1, got %d", c.QueueSize)
	case c.RcvBuf < 0:
		return fmt.Errorf("receive buffer must be >= 0, got %d", c.RcvBuf)
	}
	for _, l := range c.Listeners {
		if _, _, err := net.SplitHostPort(l.Addr); err != nil {
			return fmt.Errorf("%s listen address %q: %w", l.Name, l.Addr, err)
		}
	}
	return nil
}

// Datagram is one received datagram. Payload is only valid during the
// handler call.
type Datagram struct {
	Payload  []byte
	Source   netip.AddrPort
	Received time.Time
	Listener string
}

// Handler consumes datagrams on worker w (0 <= w < Workers). It is called
// from one goroutine per worker.
type Handler func(w int, d *Datagram)

type packet struct {
	buf      []byte
	src      netip.AddrPort
	received time.Time
	listener string
}

type metrics struct {
	received   *prometheus.CounterVec
	bytes      *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	kernel     *prometheus.CounterVec
	queueDepth *prometheus.GaugeVec
}

// Intake is the UDP intake component.
type Intake struct {
	cfg     Config
	log     *slog.Logger
	handler Handler
	m       metrics
	seed    maphash.Seed

	queues     []chan *packet
	queued     []atomic.Int64 // bytes of buffers in each queue
	queueBytes int64
	allow      *allowList
	// rateTableSize bounds each reader's token buckets (tests shrink it).
	rateTableSize int
	pool          sync.Pool
	conns         []*net.UDPConn
	addrs         []net.Addr

	readers sync.WaitGroup
	workers sync.WaitGroup
}

// New returns an inert intake.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer, h Handler) (*Intake, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	in := &Intake{cfg: cfg, log: log, handler: h, seed: maphash.MakeSeed(),
		allow: newAllowList(cfg.Allow), rateTableSize: defaultRateTableSize,
		queueBytes: int64(cfg.QueueSize) * queueBytesPerDatagram}
	in.pool.New = func() any { return &packet{buf: make([]byte, 0, queueBytesPerDatagram)} }
	in.m = metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flowlens_collector_datagrams_received_total",
			Help: "Datagrams read from the sockets."}, []string{"listener"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flowlens_collector_bytes_received_total",
			Help: "UDP payload bytes read from the sockets."}, []string{"listener"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flowlens_collector_datagrams_dropped_total",
			Help: "Datagrams read but not decoded, by reason (queue_full: decoders behind; truncated: larger than 64 KiB; not_allowed: source not in the allow-list; rate_limited: over the exporter's rate)."}, []string{"listener", "reason"}),
		kernel: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flowlens_collector_kernel_drops_total",
			Help: "Datagrams the kernel dropped because the socket buffer was full (SO_RXQ_OVFL)."}, []string{"listener"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flowlens_collector_queue_depth",
			Help: "Datagrams waiting in each worker's queue."}, []string{"worker"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{in.m.received, in.m.bytes, in.m.dropped, in.m.kernel, in.m.queueDepth} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	for _, l := range cfg.Listeners {
		in.m.received.WithLabelValues(l.Name)
		in.m.kernel.WithLabelValues(l.Name)
		for _, reason := range []string{"queue_full", "truncated", "not_allowed", "rate_limited"} {
			in.m.dropped.WithLabelValues(l.Name, reason)
		}
	}
	return in, nil
}

// Addrs returns the bound addresses (useful with port 0), one per listener.
func (in *Intake) Addrs() []net.Addr { return in.addrs }

// Start binds every socket, then starts the workers and readers.
func (in *Intake) Start(ctx context.Context) error {
	in.queues = make([]chan *packet, in.cfg.Workers)
	in.queued = make([]atomic.Int64, in.cfg.Workers)
	if in.allow != nil || in.cfg.RateLimit > 0 {
		in.log.Info("exporter admission", "allow_prefixes", len(in.cfg.Allow), "allow_ranges", in.allow.len(),
			"rate_limit", in.cfg.RateLimit, "rate_table_per_reader", in.rateTableSize)
	}
	for w := range in.queues {
		in.queues[w] = make(chan *packet, in.cfg.QueueSize)
	}
	for _, l := range in.cfg.Listeners {
		addr := l.Addr
		for i := range in.cfg.Sockets {
			conn, err := in.listen(ctx, addr)
			if err != nil {
				in.closeConns()
				return fmt.Errorf("listen %s on %s: %w", l.Name, addr, err)
			}
			if i == 0 {
				// With port 0, the following sockets must join the first's port.
				addr = conn.LocalAddr().String()
				in.addrs = append(in.addrs, conn.LocalAddr())
				in.log.Info("listening", "listener", l.Name, "addr", addr, "sockets", in.cfg.Sockets,
					"rcvbuf_requested", in.cfg.RcvBuf, "rcvbuf_granted", rcvBuf(conn))
			}
			in.conns = append(in.conns, conn)
			in.readers.Add(1)
			go in.read(conn, l.Name)
		}
	}
	for w := range in.queues {
		in.workers.Add(1)
		go in.work(w)
	}
	return nil
}

func (in *Intake) listen(ctx context.Context, addr string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
				return
			}
			if in.cfg.RcvBuf > 0 {
				// SO_RCVBUFFORCE passes net.core.rmem_max when we are root.
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, in.cfg.RcvBuf) != nil {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, in.cfg.RcvBuf)
				}
			}
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// rcvBuf returns the receive buffer the kernel granted (it doubles the
// request for bookkeeping, and caps it without CAP_NET_ADMIN).
func rcvBuf(conn *net.UDPConn) int {
	raw, err := conn.SyscallConn()
	if err != nil {
		return 0
	}
	var v int
	_ = raw.Control(func(fd uintptr) { v, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
	return v
}

func (in *Intake) read(conn *net.UDPConn, listener string) {
	defer in.readers.Done()
	buf := make([]byte, 65536)
	oob := make([]byte, unix.CmsgSpace(4))
	received := in.m.received.WithLabelValues(listener)
	bytes := in.m.bytes.WithLabelValues(listener)
	queueFull := in.m.dropped.WithLabelValues(listener, "queue_full")
	truncated := in.m.dropped.WithLabelValues(listener, "truncated")
	kernel := in.m.kernel.WithLabelValues(listener)
	notAllowedC := in.m.dropped.WithLabelValues(listener, "not_allowed")
	rateLimitedC := in.m.dropped.WithLabelValues(listener, "rate_limited")
	g := gate{allow: in.allow, rate: newRateTable(in.cfg.RateLimit, in.rateTableSize)}
	var lastOvfl uint32
	var errLogged time.Time
	for {
		n, oobn, flags, src, err := conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if time.Since(errLogged) > time.Minute {
				in.log.Warn("udp read error", "listener", listener, "err", err)
				errLogged = time.Now()
			}
			continue
		}
		now := time.Now()
		received.Inc()
		bytes.Add(float64(n))
		if oobn >= unix.CmsgSpace(4) {
			if ovfl, ok := parseOverflow(oob[:oobn]); ok && ovfl != lastOvfl {
				kernel.Add(float64(ovfl - lastOvfl)) // wraps correctly in uint32
				lastOvfl = ovfl
			}
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		switch g.admit(src.Addr(), now.UnixNano()) {
		case notAllowed:
			notAllowedC.Inc()
			continue
		case rateLimited:
			rateLimitedC.Inc()
			continue
		}
		if flags&unix.MSG_TRUNC != 0 {
			truncated.Inc()
			continue
		}
		w := 0
		if len(in.queues) > 1 {
			a := src.Addr().As16()
			w = int(maphash.Bytes(in.seed, a[:]) % uint64(len(in.queues)))
		}
		// Reserve the buffer's bytes before copying, so that a flood of
		// large datagrams against a full queue allocates nothing.
		p := in.pool.Get().(*packet)
		size := int64(max(cap(p.buf), n))
		if q := in.queued[w].Add(size); q > in.queueBytes && q != size {
			in.queued[w].Add(-size)
			queueFull.Inc()
			in.pool.Put(p)
			continue
		}
		p.buf = append(p.buf[:0], buf[:n]...)
		if grown := int64(cap(p.buf)) - size; grown != 0 {
			in.queued[w].Add(grown) // append rounds up to a size class
			size += grown
		}
		p.src, p.received, p.listener = src, now, listener
		select {
		case in.queues[w] <- p:
		default:
			in.queued[w].Add(-size)
			queueFull.Inc()
			in.release(p)
		}
	}
}

// parseOverflow extracts the SO_RXQ_OVFL counter from a control message:
// the socket's cumulative count of datagrams dropped for lack of room.
func parseOverflow(oob []byte) (uint32, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_RXQ_OVFL && len(m.Data) >= 4 {
			return uint32(m.Data[0]) | uint32(m.Data[1])<<8 | uint32(m.Data[2])<<16 | uint32(m.Data[3])<<24, true
		}
	}
	return 0, false
}

func (in *Intake) work(w int) {
	defer in.workers.Done()
	depth := in.m.queueDepth.WithLabelValues(fmt.Sprint(w))
	var d Datagram
	for p := range in.queues[w] {
		depth.Set(float64(len(in.queues[w])))
		in.queued[w].Add(-int64(cap(p.buf)))
		d = Datagram{Payload: p.buf, Source: p.src, Received: p.received, Listener: p.listener}
		in.handler(w, &d)
		in.release(p)
	}
}

// release returns p to the pool unless its buffer grew beyond the usual
// datagram: a burst of large datagrams must not stay pinned in the pool.
func (in *Intake) release(p *packet) {
	if cap(p.buf) <= maxPooledBuf {
		in.pool.Put(p)
	}
}

func (in *Intake) closeConns() {
	for _, c := range in.conns {
		_ = c.Close()
	}
	in.conns = nil
}

// Stop closes the sockets, then lets the workers finish what was queued.
func (in *Intake) Stop() {
	in.closeConns()
	in.readers.Wait()
	for _, q := range in.queues {
		close(q)
	}
	in.workers.Wait()
}
