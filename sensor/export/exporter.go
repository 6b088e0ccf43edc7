package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Drop reasons of flowlens_sensor_export_dropped_total.
const (
	reasonQueueFull  = "queue_full"  // the writer is behind: Export found the queue full
	reasonNotRunning = "not_running" // Export before Start or after Stop
	reasonTooLarge   = "too_large"   // a flow whose records cannot fit in an empty message (validation prevents it)
	reasonStopped    = "stopped"     // still queued when StopTimeout ran out
)

type collectorConn struct {
	addr     string
	conn     *net.UDPConn
	messages prometheus.Counter
	bytes    prometheus.Counter
	errors   prometheus.Counter
	lastLog  time.Time
}

type metrics struct {
	records   prometheus.Counter
	flows     prometheus.Counter
	templates prometheus.Counter
	dropped   *prometheus.CounterVec
	queueFull prometheus.Counter // dropped{queue_full}, resolved once for Export
	notRun    prometheus.Counter
	tooLarge  prometheus.Counter
	stopped   prometheus.Counter
	messages  *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	sendErrs  *prometheus.CounterVec
	queue     prometheus.GaugeFunc
}

// Exporter sends flows as IPFIX over UDP. Export is safe for concurrent
// use and never blocks; one writer goroutine encodes and sends.
type Exporter struct {
	cfg Config
	log *slog.Logger
	m   metrics
	enc *Encoder
	now func() time.Time

	mu      sync.RWMutex // Export holds it for reading; Start and Stop for writing
	running bool
	queue   chan Flow
	// lost counts data records dropped on a full queue; the writer adds
	// them to the sequence number (Encoder.Skip) so collectors see a gap.
	lost  atomic.Uint64
	conns []*collectorConn
	stop  chan struct{}
	done  chan struct{}

	// Writer state (the writer goroutine only).
	opened       time.Time // when the open message was begun
	lastTpl      time.Time
	msgsSinceTpl int
}

// New checks cfg and registers the metrics; nothing is sent before Start.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Exporter, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	enc, err := NewEncoder(cfg)
	if err != nil {
		return nil, err
	}
	x := &Exporter{cfg: cfg, log: log, enc: enc, now: time.Now, queue: make(chan Flow, cfg.QueueSize)}
	f := prometheus.WrapRegistererWithPrefix("flowlens_sensor_export_", reg)
	m := metrics{
		records:   prometheus.NewCounter(prometheus.CounterOpts{Name: "records_total", Help: "IPFIX data records sent (one per flow as biflow, up to two when unidirectional)."}),
		flows:     prometheus.NewCounter(prometheus.CounterOpts{Name: "flows_total", Help: "Flows taken from the queue and encoded."}),
		templates: prometheus.NewCounter(prometheus.CounterOpts{Name: "template_sends_total", Help: "Messages that carried the template set."}),
		dropped:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dropped_total", Help: "Flows not exported, by reason."}, []string{"reason"}),
		messages:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "messages_total", Help: "IPFIX messages sent, per collector."}, []string{"collector"}),
		bytes:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bytes_total", Help: "Bytes of IPFIX messages sent (UDP payload), per collector."}, []string{"collector"}),
		sendErrs:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "send_errors_total", Help: "Messages a collector's socket refused (the message is lost for that collector)."}, []string{"collector"}),
	}
	m.queue = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "queue_length", Help: "Flows waiting for the writer."}, func() float64 { return float64(len(x.queue)) })
	m.queueFull = m.dropped.WithLabelValues(reasonQueueFull)
	m.notRun = m.dropped.WithLabelValues(reasonNotRunning)
	m.tooLarge = m.dropped.WithLabelValues(reasonTooLarge)
	m.stopped = m.dropped.WithLabelValues(reasonStopped)
	for _, c := range []prometheus.Collector{m.records, m.flows, m.templates, m.dropped, m.messages, m.bytes, m.sendErrs, m.queue} {
		if err := f.Register(c); err != nil {
			return nil, fmt.Errorf("export: register metrics: %w", err)
		}
	}
	x.m = m
	for _, a := range cfg.Collectors {
		x.conns = append(x.conns, &collectorConn{addr: a,
			messages: m.messages.WithLabelValues(a), bytes: m.bytes.WithLabelValues(a), errors: m.sendErrs.WithLabelValues(a)})
	}
	return x, nil
}

// Start resolves the collectors, opens one UDP socket each, sends the
// templates and starts the writer. A collector that is not listening is
// not an error: its sends fail and are counted.
func (x *Exporter) Start(ctx context.Context) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.running {
		return errors.New("export: already started")
	}
	for _, c := range x.conns {
		ua, err := net.ResolveUDPAddr("udp", c.addr)
		if err != nil {
			x.closeConns()
			return fmt.Errorf("export: collector %s: %w", c.addr, err)
		}
		conn, err := net.DialUDP("udp", nil, ua)
		if err != nil {
			x.closeConns()
			return fmt.Errorf("export: collector %s: %w", c.addr, err)
		}
		c.conn = conn
	}
	x.stop, x.done = make(chan struct{}), make(chan struct{})
	x.running = true
	x.sendTemplates(x.now())
	go x.run()
	x.log.Info("ipfix export started", "collectors", x.cfg.Collectors, "observation_domain", x.cfg.ObservationDomainID,
		"biflow", !x.cfg.Unidirectional, "ntop", x.cfg.Ntop)
	return nil
}

func (x *Exporter) closeConns() {
	for _, c := range x.conns {
		if c.conn != nil {
			c.conn.Close()
			c.conn = nil
		}
	}
}

// Export queues a copy of f for export without blocking. It returns false
// when f was dropped (queue full, or the exporter is not running): the
// drop is counted, and a dropped record advances the sequence number.
func (x *Exporter) Export(f *Flow) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if !x.running {
		x.m.notRun.Inc()
		return false
	}
	select {
	case x.queue <- *f:
		return true
	default:
		x.m.queueFull.Inc()
		n := uint64(1)
		if x.cfg.Unidirectional && (f.ServerPackets != 0 || f.ServerOctets != 0) {
			n = 2
		}
		x.lost.Add(n)
		return false
	}
}

// Stop sends what is queued (within StopTimeout; the rest is counted as
// stopped), then closes the sockets. Export after Stop drops.
func (x *Exporter) Stop() {
	x.mu.Lock()
	if !x.running {
		x.mu.Unlock()
		return
	}
	x.running = false
	x.mu.Unlock()
	close(x.stop)
	<-x.done
	x.closeConns()
	x.log.Info("ipfix export stopped")
}

// run is the writer: it fills messages from the queue and sends one when
// the next flow does not fit or FlushInterval has passed since it began.
func (x *Exporter) run() {
	defer close(x.done)
	tick := time.NewTicker(x.cfg.FlushInterval / 2)
	defer tick.Stop()
	for {
		select {
		case f := <-x.queue:
			x.add(&f)
		case <-tick.C:
			x.tick(x.now())
		case <-x.stop:
			x.drain()
			return
		}
	}
}

// drain encodes what is queued until the queue is empty or StopTimeout
// passed, sends the last message, and counts the rest as stopped.
func (x *Exporter) drain() {
	deadline := time.Now().Add(x.cfg.StopTimeout)
	for time.Now().Before(deadline) {
		select {
		case f := <-x.queue:
			x.add(&f)
			continue
		default:
		}
		break
	}
	x.flush(x.now())
	// Export no longer queues (running is false): what is left stays.
	x.m.stopped.Add(float64(len(x.queue)))
	for len(x.queue) > 0 {
		<-x.queue
	}
}

func (x *Exporter) add(f *Flow) {
	x.m.flows.Inc()
	if !x.enc.open {
		x.begin(x.now())
	}
	if x.enc.Add(f) {
		return
	}
	now := x.now()
	x.flush(now)
	x.begin(now)
	if x.enc.Add(f) {
		return
	}
	// Both records of a unidirectional flow with long strings may not fit
	// one message: one message each.
	if x.cfg.Unidirectional && x.enc.AddRecord(f, false) {
		x.flush(now)
		x.begin(now)
		if x.enc.AddRecord(f, true) {
			return
		}
	}
	x.m.tooLarge.Inc() // configuration checks make this unreachable
	x.lost.Add(1)      // a gap in the sequence, as for a queue drop
}

// tick sends the open message once it has waited FlushInterval, and the
// templates alone when nothing was sent for TemplateInterval.
func (x *Exporter) tick(now time.Time) {
	if x.enc.open {
		if now.Sub(x.opened) >= x.cfg.FlushInterval {
			x.flush(now)
		}
		return
	}
	if now.Sub(x.lastTpl) >= x.cfg.TemplateInterval {
		x.sendTemplates(now)
	}
}

func (x *Exporter) templatesDue(now time.Time) bool {
	return now.Sub(x.lastTpl) >= x.cfg.TemplateInterval ||
		(x.cfg.TemplateEveryMessages > 0 && x.msgsSinceTpl >= x.cfg.TemplateEveryMessages)
}

func (x *Exporter) begin(now time.Time) {
	if n := x.lost.Swap(0); n > 0 {
		x.enc.Skip(uint32(n))
	}
	tpl := x.templatesDue(now)
	if tpl {
		x.lastTpl, x.msgsSinceTpl = now, 0
		x.m.templates.Inc()
	}
	x.enc.Begin(now, tpl)
	x.opened = now
}

func (x *Exporter) sendTemplates(now time.Time) {
	x.lastTpl, x.msgsSinceTpl = now, 0
	x.m.templates.Inc()
	x.enc.Begin(now, true)
	x.send(x.enc.Finish())
}

// flush sends the open message, if it holds records or templates,
// stamped with now.
func (x *Exporter) flush(now time.Time) {
	if !x.enc.open {
		return
	}
	x.enc.SetExportTime(now)
	n := x.enc.Records()
	msg := x.enc.Finish()
	if n == 0 && len(msg) == headerLen {
		return // nothing in it; the sequence number did not move
	}
	x.m.records.Add(float64(n))
	x.send(msg)
}

// send writes msg to every collector. The sequence number is shared: all
// collectors get the same messages, so each transport session's count is
// the same, and a message one collector refused is a gap for it only.
func (x *Exporter) send(msg []byte) {
	x.msgsSinceTpl++
	for _, c := range x.conns {
		n, err := c.conn.Write(msg)
		if err != nil {
			c.errors.Inc()
			if now := time.Now(); now.Sub(c.lastLog) >= 10*time.Second {
				c.lastLog = now
				x.log.Warn("ipfix send failed", "collector", c.addr, "err", err)
			}
			continue
		}
		c.messages.Inc()
		c.bytes.Add(float64(n))
	}
}
