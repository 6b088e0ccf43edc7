// Package sensor is `flowlens sensor`: packets from a capture source
// (AF_PACKET or capture files) go through one pipeline per worker —
// parse (sensor/packet) → flow table (sensor/flowtable) → classification
// of the first packets of each flow (sensor/dpi) — and every flow, or slice
// of a long flow, leaves labelled as an export.Flow: to the IPFIX exporter
// (sensor/export), or to any other Out (`flowlens classify` prints JSON).
//
// A worker owns its flow table and runs on one goroutine, so the hot path
// takes no lock; AF_PACKET's fanout hashes each flow to one worker. The
// classification engine (rule tables, DNS answer cache) is shared.
package sensor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"flowlens/sensor/capture"
	"flowlens/sensor/dpi"
	"flowlens/sensor/export"
	"flowlens/sensor/flowtable"
	"flowlens/sensor/packet"
)

// Out receives each exported flow. The Flow is reused after the call: copy
// what must outlive it. Calls come from the workers' goroutines,
// concurrently when there are several workers.
type Out func(*export.Flow)

// flowState is the per-flow data the table keeps for the sensor.
type flowState struct {
	dpi  dpi.State
	done bool // the classifier needs no more packets
}

// Metrics are the sensor's counters, shared by its workers. Each worker
// adds to its own atomic counters; the collector sums them at scrape time,
// so packets never contend on a shared cache line.
type Metrics struct {
	workers atomic.Pointer[[]*workerCounters]
	engine  *dpi.Engine
}

type workerCounters struct {
	packets     atomic.Uint64
	bytes       atomic.Uint64
	parseErrors [64]atomic.Uint64 // by packet.Error
	flows       [8]atomic.Uint64  // by flowtable.Reason
	classified  [8]atomic.Uint64  // emitted flows by dpi.Confidence
	fragments   [4]atomic.Uint64  // by packet.FragKind (FragNone unused)
	tunnels     [16]atomic.Uint64 // decapsulated packets by packet.TunnelKind
	_           [64]byte
}

var (
	descPackets    = prometheus.NewDesc("flowlens_sensor_packets_total", "Packets handed to the sensor's workers.", nil, nil)
	descBytes      = prometheus.NewDesc("flowlens_sensor_bytes_total", "Wire bytes of those packets.", nil, nil)
	descParseErr   = prometheus.NewDesc("flowlens_sensor_dropped_packets_total", "Packets not accounted to a flow, by reason (the parser's).", []string{"reason"}, nil)
	descFlows      = prometheus.NewDesc("flowlens_sensor_flows_total", "Flows (or slices of long flows) exported, by why they left the flow table: idle, active, end, evicted, flush.", []string{"reason"}, nil)
	descClassified = prometheus.NewDesc("flowlens_sensor_classified_flows_total", "Flows exported, by the confidence of their label: dpi, dns_cache, ip_list, port_guess, unknown.", []string{"confidence"}, nil)
	descFragments  = prometheus.NewDesc("flowlens_sensor_fragments_total", "IP fragments, by kind: first (carries the ports, classified) or later (counted to the flow of its addresses and protocol).", []string{"kind"}, nil)
	descTunnels    = prometheus.NewDesc("flowlens_sensor_tunnel_packets_total", "Packets taken out of a tunnel (the flow is the inner packet's; teredo is only labelled), by tunnel.", []string{"tunnel"}, nil)
	descHeld       = prometheus.NewDesc("flowlens_sensor_dpi_reassembly_bytes", "Bytes held by TCP/QUIC reassembly buffers of flows being classified.", nil, nil)
	descDPI        = prometheus.NewDesc("flowlens_sensor_dpi_events_total", "Classifier events: segments (copied for reassembly), out_of_order, retransmits, reassembly_drops (bytes past a bound), reassembly_refused (memory bound reached).", []string{"event"}, nil)
)

// NewMetrics registers the sensor's metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{}
	m.workers.Store(&[]*workerCounters{})
	if reg != nil {
		if err := reg.Register(m); err != nil {
			return nil, fmt.Errorf("sensor: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) add() *workerCounters {
	for {
		old := m.workers.Load()
		c := &workerCounters{}
		next := append(append([]*workerCounters{}, *old...), c)
		if m.workers.CompareAndSwap(old, &next) {
			return c
		}
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descBytes, descParseErr, descFlows, descClassified, descFragments, descTunnels, descHeld, descDPI} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	var packets, bytes uint64
	var perr [64]uint64
	var flows, cls [8]uint64
	var frags [4]uint64
	var tuns [16]uint64
	for _, w := range *m.workers.Load() {
		packets += w.packets.Load()
		bytes += w.bytes.Load()
		for i := range perr {
			perr[i] += w.parseErrors[i].Load()
		}
		for i := range flows {
			flows[i] += w.flows[i].Load()
			cls[i] += w.classified[i].Load()
		}
		for i := range frags {
			frags[i] += w.fragments[i].Load()
		}
		for i := range tuns {
			tuns[i] += w.tunnels[i].Load()
		}
	}
	ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(packets))
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(bytes))
	for _, e := range packet.Errors() {
		ch <- prometheus.MustNewConstMetric(descParseErr, prometheus.CounterValue, float64(perr[int(e)%len(perr)]), e.String())
	}
	for _, r := range flowtable.Reasons() {
		ch <- prometheus.MustNewConstMetric(descFlows, prometheus.CounterValue, float64(flows[int(r)%len(flows)]), r.String())
	}
	for c := dpi.ConfUnknown; c <= dpi.ConfDPI; c++ {
		ch <- prometheus.MustNewConstMetric(descClassified, prometheus.CounterValue, float64(cls[c]), c.String())
	}
	for _, k := range []packet.FragKind{packet.FragFirst, packet.FragLater} {
		ch <- prometheus.MustNewConstMetric(descFragments, prometheus.CounterValue, float64(frags[int(k)%len(frags)]), k.String())
	}
	for k := packet.TunnelGRE; k <= packet.TunnelTeredo; k++ {
		ch <- prometheus.MustNewConstMetric(descTunnels, prometheus.CounterValue, float64(tuns[int(k)%len(tuns)]), k.String())
	}
	if m.engine != nil {
		st := m.engine.Stats()
		ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, float64(st.ReassemblyHeld))
		for ev, v := range map[string]uint64{"segments": st.Segments, "out_of_order": st.OutOfOrder, "retransmits": st.Retransmits,
			"reassembly_drops": st.ReassemblyDrops, "reassembly_refused": st.ReassemblyRefused} {
			ch <- prometheus.MustNewConstMetric(descDPI, prometheus.CounterValue, float64(v), ev)
		}
	}
}

// Worker is one worker's pipeline; it implements capture.Handler.
type Worker struct {
	eng   *dpi.Engine
	table *flowtable.Table[flowState]
	out   Out
	c     *workerCounters
	clock *atomic.Int64 // capture time for the classifier, when replaying files

	pkt packet.Packet
	ef  export.Flow
}

// NewWorker returns the pipeline of one worker: its own flow table, the
// shared engine, flows to out.
func NewWorker(eng *dpi.Engine, cfg flowtable.Config, m *Metrics, out Out) (*Worker, error) {
	w := &Worker{eng: eng, out: out, c: m.add()}
	m.engine = eng
	t, err := flowtable.New(cfg, w.emit)
	if err != nil {
		return nil, err
	}
	w.table = t
	return w, nil
}

// Packet implements capture.Handler.
func (w *Worker) Packet(data []byte, ci *capture.CaptureInfo) {
	w.c.packets.Add(1)
	w.c.bytes.Add(uint64(ci.Length))
	p := &w.pkt
	if err := packet.Parse(ci.Link, data, p); err != nil {
		var pe packet.Error
		if errors.As(err, &pe) {
			w.c.parseErrors[int(pe)%len(w.c.parseErrors)].Add(1)
		}
		return
	}
	p.Len = ci.Length
	if p.Frag != packet.FragNone {
		w.c.fragments[int(p.Frag)%len(w.c.fragments)].Add(1)
	}
	if p.Tunnel != packet.TunnelNone {
		w.c.tunnels[int(p.Tunnel)%len(w.c.tunnels)].Add(1)
	}
	ci.ApplyVLAN(p)
	if w.clock != nil {
		w.clock.Store(ci.Timestamp.UnixNano())
	}
	e, dir := w.table.Packet(p, ci.Timestamp)
	if e == nil || e.State.done {
		return
	}
	f := dpi.Flow{Proto: e.Key.Proto, Client: e.Client(), Server: e.Server()}
	e.State.done = w.eng.Inspect(&e.State.dpi, &f, dpi.Dir(dir), p.Payload, p.TCPFlags, p.Seq)
}

// Tick implements capture.Handler: expire flows on a quiet link.
func (w *Worker) Tick(now time.Time) { w.table.Expire(now) }

// End implements capture.Handler: export every flow left.
func (w *Worker) End() { w.table.Flush() }

var endReasons = [...]export.EndReason{
	flowtable.ReasonIdle:    export.EndIdleTimeout,
	flowtable.ReasonActive:  export.EndActiveTimeout,
	flowtable.ReasonEnd:     export.EndOfFlow,
	flowtable.ReasonEvicted: export.EndLackOfResources,
	flowtable.ReasonFlush:   export.EndForced,
}

// confidences maps the classifier's confidence to the exporter's.
var confidences = [...]export.Confidence{
	dpi.ConfUnknown:  export.ConfidenceUnknown,
	dpi.ConfPort:     export.ConfidencePortGuess,
	dpi.ConfIPList:   export.ConfidenceIPList,
	dpi.ConfDNSCache: export.ConfidenceDNSCache,
	dpi.ConfDPI:      export.ConfidenceDPI,
}

// emit labels a flow leaving the table and hands it to out. A flow that
// ends gives its classifier buffers back; a slice keeps them, and its label
// carries on to the next slice.
func (w *Worker) emit(e *flowtable.Entry[flowState], r flowtable.Reason) {
	f := dpi.Flow{Proto: e.Key.Proto, Client: e.Client(), Server: e.Server()}
	res := w.eng.Result(&e.State.dpi, &f)
	if r != flowtable.ReasonActive {
		w.eng.Release(&e.State.dpi)
	}
	w.c.flows[int(r)%len(w.c.flows)].Add(1)
	w.c.classified[int(res.Confidence)%len(w.c.classified)].Add(1)
	ef := &w.ef
	*ef = export.Flow{
		Client: f.Client.Addr(), Server: f.Server.Addr(), ClientPort: f.Client.Port(), ServerPort: f.Server.Port(),
		Protocol: e.Key.Proto, VLAN: e.Key.VLAN,
		ClientOctets: e.Bytes[flowtable.FromClient], ClientPackets: e.Packets[flowtable.FromClient],
		ServerOctets: e.Bytes[flowtable.FromServer], ServerPackets: e.Packets[flowtable.FromServer],
		Start: e.FirstSeen(), End: e.LastSeen(),
		ClientTCPFlags: e.TCPFlags[flowtable.FromClient], ServerTCPFlags: e.TCPFlags[flowtable.FromServer],
		// The exporter writes the RFC 6759 engine (dpi.AppIDEngine) itself.
		Application: res.Label, ApplicationID: res.AppID & 0x00ffffff, Category: res.Category,
		Confidence: confidences[res.Confidence%dpi.Confidence(len(confidences))],
		ServerName: res.ServerName, DNSQuery: res.DNSQuery,
		DNSQType: res.DNSQType, DNSRCode: res.DNSRCode, DNSAnswered: res.DNSAnswered,
	}
	if int(r) < len(endReasons) {
		ef.EndReason = endReasons[r]
	}
	if w.out != nil {
		w.out(ef)
	}
}

// Config of a sensor.
type Config struct {
	Flows flowtable.Config
	DPI   dpi.Config
	// CaptureClock runs the classifier's clock (DNS answer expiry) on
	// packet time, for replaying capture files.
	CaptureClock bool
}

// DefaultConfig is the flow table's and the classifier's defaults.
func DefaultConfig() Config {
	return Config{Flows: flowtable.DefaultConfig(), DPI: dpi.DefaultConfig()}
}

// Sensor is the component: a capture source whose workers run the
// pipeline, flows to out.
type Sensor struct {
	src  capture.Source
	log  *slog.Logger
	done chan struct{}
}

// NewSource is how a sensor gets its capture source, given one handler
// per worker (the AF_PACKET source wants them all; a file, one).
type NewSource func(handlers []capture.Handler) (capture.Source, error)

// New builds the engine, one worker per source worker, and the source.
func New(cfg Config, workers int, newSource NewSource, out Out, log *slog.Logger, reg prometheus.Registerer) (*Sensor, *dpi.Engine, error) {
	var clock *atomic.Int64
	if cfg.CaptureClock {
		clock = new(atomic.Int64)
		cfg.DPI.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	}
	eng, err := dpi.NewEngine(cfg.DPI)
	if err != nil {
		return nil, nil, err
	}
	m, err := NewMetrics(reg)
	if err != nil {
		return nil, nil, err
	}
	hs := make([]capture.Handler, max(workers, 1))
	for i := range hs {
		w, err := NewWorker(eng, cfg.Flows, m, out)
		if err != nil {
			return nil, nil, err
		}
		w.clock = clock
		hs[i] = w
	}
	src, err := newSource(hs)
	if err != nil {
		return nil, nil, err
	}
	return &Sensor{src: src, log: log, done: make(chan struct{})}, eng, nil
}

// Start starts capturing.
func (s *Sensor) Start(ctx context.Context) error { return s.src.Start(ctx) }

// Done is closed when the source has ended (a file was read, or Stop).
func (s *Sensor) Done() <-chan struct{} { return s.src.Done() }

// Err is why the source stopped (nil at the end of a file or after Stop).
func (s *Sensor) Err() error { return s.src.Err() }

// Stop stops capturing; every worker exports its flows before it returns.
func (s *Sensor) Stop() { s.src.Stop() }
