// Package collector is the flow intake: UDP datagrams (collector/udp) or
// capture files (collector/pcap) go through one decoder per worker, the
// enrich stage, then to a sink.
package collector

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"flowlens/collector/udp"
	"flowlens/decoder"
	"flowlens/enrich"
	"flowlens/schema"
)

// Sink takes normalised flows. Put must copy what it keeps and not block
// for long (a full sink counts a drop).
type Sink interface {
	Put(*schema.Flow)
}

// CountersSink takes sFlow interface counter samples; a Sink that also
// implements it receives them.
type CountersSink interface {
	PutCounters(*schema.InterfaceCounters)
}

// Config of the collector.
type Config struct {
	UDP     udp.Config
	Decoder decoder.Config
	// StatePath is where template and sampling state is kept across
	// restarts; empty keeps nothing.
	StatePath string
	// Enrich returns the function each worker runs on every decoded flow
	// before the sink, called once per worker so that each can keep
	// lock-free state (enrich.Chain's NewWorker); nil: enrich.Label only.
	Enrich func() func(*schema.Flow)
}

// Collector is the UDP collector component.
type Collector struct {
	log      *slog.Logger
	intake   *udp.Intake
	decoders []*decoder.Decoder
	emits    []func(*schema.Flow)
	errLog   []time.Time

	statePath string
	snaps     []snapshot
}

// New wires the intake to per-worker decoders and the sink.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer, sink Sink) (*Collector, error) {
	c := &Collector{log: log, statePath: cfg.StatePath, snaps: make([]snapshot, cfg.UDP.Workers)}
	c.decoders = make([]*decoder.Decoder, cfg.UDP.Workers)
	c.emits = make([]func(*schema.Flow), cfg.UDP.Workers)
	c.errLog = make([]time.Time, cfg.UDP.Workers)
	for i := range c.decoders {
		c.decoders[i] = decoder.New(cfg.Decoder)
		enrichFlow := enrich.Label
		if cfg.Enrich != nil {
			enrichFlow = cfg.Enrich()
		}
		c.emits[i] = func(f *schema.Flow) {
			enrichFlow(f)
			sink.Put(f)
		}
		if cs, ok := sink.(CountersSink); ok {
			c.decoders[i].OnCounters(cs.PutCounters)
		}
	}
	intake, err := udp.New(cfg.UDP, log, reg, c.handle)
	if err != nil {
		return nil, err
	}
	c.intake = intake
	if reg != nil {
		if err := reg.Register(NewDecoderMetrics(c.decoders)); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Collector) handle(w int, d *udp.Datagram) {
	if err := c.decoders[w].Decode(d.Payload, d.Source, d.Received, c.emits[w]); err != nil {
		// Counted by the decoder; log at most once a minute per worker.
		if d.Received.Sub(c.errLog[w]) > time.Minute {
			c.log.Warn("cannot decode datagram (further errors this minute are only counted)",
				"exporter", d.Source.Addr(), "listener", d.Listener, "err", err)
			c.errLog[w] = d.Received
		}
	}
	if c.statePath != "" {
		c.maybeSnapshot(w, d.Received)
	}
}

// Start loads the saved template state, then starts listening.
func (c *Collector) Start(ctx context.Context) error {
	n, err := c.loadState()
	if err != nil {
		c.log.Warn("saved template state not loaded: templates will be learnt again", "err", err)
	} else if n > 0 {
		c.log.Info("template state loaded", "path", c.statePath, "exporters", n)
	}
	return c.intake.Start(ctx)
}

// Stop stops listening, decodes what was queued and saves the template
// state (the workers are idle then, so every decoder is snapshot fresh).
func (c *Collector) Stop() {
	c.intake.Stop()
	if c.statePath == "" {
		return
	}
	for w := range c.snaps {
		c.snaps[w].last = time.Time{}
		c.maybeSnapshot(w, time.Now())
	}
	if err := c.saveState(); err != nil {
		c.log.Error("cannot save template state", "path", c.statePath, "err", err)
	}
}

// Exporters merges what every worker's decoder knows of each exporter.
// Safe to call while collecting.
func (c *Collector) Exporters() []decoder.ExporterInfo {
	var out []decoder.ExporterInfo
	for _, d := range c.decoders {
		for _, e := range d.Exporters() {
			if e.Datagrams > 0 {
				out = append(out, e)
			}
		}
	}
	return out
}

// Intake exposes the UDP intake (bound addresses).
func (c *Collector) Intake() *udp.Intake { return c.intake }
