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

// Config of the collector.
type Config struct {
	UDP     udp.Config
	Decoder decoder.Config
}

// Collector is the UDP collector component.
type Collector struct {
	log      *slog.Logger
	intake   *udp.Intake
	decoders []*decoder.Decoder
	emits    []func(*schema.Flow)
	errs     *prometheus.CounterVec
	errLog   []time.Time
}

// New wires the intake to per-worker decoders and the sink.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer, sink Sink) (*Collector, error) {
	c := &Collector{log: log}
	c.decoders = make([]*decoder.Decoder, cfg.UDP.Workers)
	c.emits = make([]func(*schema.Flow), cfg.UDP.Workers)
	c.errLog = make([]time.Time, cfg.UDP.Workers)
	for i := range c.decoders {
		c.decoders[i] = decoder.New(cfg.Decoder)
		c.emits[i] = func(f *schema.Flow) {
			enrich.Label(f)
			sink.Put(f)
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
}

// Start starts listening.
func (c *Collector) Start(ctx context.Context) error { return c.intake.Start(ctx) }

// Stop stops listening and decodes what was queued.
func (c *Collector) Stop() { c.intake.Stop() }

// Intake exposes the UDP intake (bound addresses).
func (c *Collector) Intake() *udp.Intake { return c.intake }
