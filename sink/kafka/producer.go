// Package kafka is the producer half of `flowlens collect`: it encodes each
// schema.Flow as one protobuf record (message flowlens.flow.Flow of
// schema/flow.proto; Go consumers can read it with schema/flowpb) and
// produces it to Kafka, keyed by exporter address. What Kafka cannot take
// goes to kgo's bounded in-memory buffer, then to a bounded on-disk spool
// that is re-sent when Kafka comes back; what overflows the spool is a
// counted drop.
//
// Delivery is at-least-once: a spooled record that Kafka may already have
// (in flight when the broker went away) or a segment re-sent after a partial
// failure can arrive twice, and spooled records arrive after newer ones of
// the same exporter. Landers deduplicate and order by the flow's own times.
//
// Metrics: flowlens_kafka_produced_total, flowlens_kafka_errors_total,
// flowlens_kafka_spooled_total, flowlens_kafka_drained_total,
// flowlens_kafka_dropped_total{reason} (spool_full, spool_error, no_spool,
// not_running, spool_torn) and flowlens_kafka_spool_bytes.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"flowlens/schema"
)

// Config of the Kafka producer.
type Config struct {
	Brokers []string `env:"KAFKA_BROKERS" json:"brokers"`
	// Topic is the topic prefix; the record version is appended ("flows"
	// gives "flows-v<schema.RecordVersion()>"), so that landers of
	// different record versions never read each other's records, while a
	// migration that only adds tables (version 6's rollups) keeps the topic.
	Topic string `env:"KAFKA_TOPIC" json:"topic"`
	// Compression is "zstd", "lz4" or "none".
	Compression string `env:"KAFKA_COMPRESSION" json:"compression"`
	// Linger is how long a partition batch waits for more records.
	Linger time.Duration `env:"KAFKA_LINGER" json:"linger"`
	// BatchMaxBytes bounds one record batch.
	BatchMaxBytes int32 `env:"KAFKA_BATCH_MAX_BYTES" json:"batch_max_bytes"`
	// MaxBufferedRecords bounds kgo's in-memory buffer; past it, records
	// go straight to the spool.
	MaxBufferedRecords int `env:"KAFKA_MAX_BUFFERED_RECORDS" json:"max_buffered_records"`
	// DeliveryTimeout is how long a buffered record may wait for Kafka
	// before it is moved to the spool.
	DeliveryTimeout time.Duration `env:"KAFKA_DELIVERY_TIMEOUT" json:"delivery_timeout"`
	// SpoolDir holds the on-disk spool; "" disables it (records Kafka
	// cannot take are then dropped, counted). The daemon should point it
	// into its data directory; the default is relative to the working one.
	SpoolDir string `env:"KAFKA_SPOOL_DIR" json:"spool_dir"`
	// SpoolMaxBytes bounds the spool on disk.
	SpoolMaxBytes int64 `env:"KAFKA_SPOOL_MAX_BYTES" json:"spool_max_bytes"`
	// SpoolSegmentBytes is the size at which a segment is sealed.
	SpoolSegmentBytes int64 `env:"KAFKA_SPOOL_SEGMENT_BYTES" json:"spool_segment_bytes"`
	// DrainInterval is how often the spool is flushed to disk and, when
	// Kafka answers, re-sent.
	DrainInterval time.Duration `env:"KAFKA_DRAIN_INTERVAL" json:"drain_interval"`
	// StopTimeout bounds the final flush in Stop; what is left is spooled.
	StopTimeout time.Duration `env:"KAFKA_STOP_TIMEOUT" json:"stop_timeout"`
}

// DefaultConfig returns a configuration for a local single-broker Kafka.
func DefaultConfig() Config {
	return Config{
		Brokers:            []string{"localhost:9092"},
		Topic:              "flows",
		Compression:        "zstd",
		Linger:             50 * time.Millisecond,
		BatchMaxBytes:      1 << 20,
		MaxBufferedRecords: 100_000,
		DeliveryTimeout:    30 * time.Second,
		SpoolDir:           "spool",
		SpoolMaxBytes:      1 << 30,
		SpoolSegmentBytes:  16 << 20,
		DrainInterval:      time.Second,
		StopTimeout:        10 * time.Second,
	}
}

// TopicName is the topic records of the current schema version go to.
func (c Config) TopicName() string { return fmt.Sprintf("%s-v%d", c.Topic, schema.RecordVersion()) }

func (c Config) validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("kafka: no brokers")
	case c.Topic == "":
		return errors.New("kafka: empty topic")
	case c.MaxBufferedRecords <= 0:
		return errors.New("kafka: MaxBufferedRecords must be positive")
	case c.DeliveryTimeout <= 0 || c.DrainInterval <= 0 || c.StopTimeout <= 0:
		return errors.New("kafka: DeliveryTimeout, DrainInterval and StopTimeout must be positive")
	case c.SpoolDir != "" && (c.SpoolMaxBytes <= 0 || c.SpoolSegmentBytes <= 0):
		return errors.New("kafka: SpoolMaxBytes and SpoolSegmentBytes must be positive")
	}
	_, err := c.codec()
	return err
}

func (c Config) codec() ([]kgo.CompressionCodec, error) {
	switch strings.ToLower(c.Compression) {
	case "zstd":
		return []kgo.CompressionCodec{kgo.ZstdCompression(), kgo.NoCompression()}, nil
	case "lz4":
		return []kgo.CompressionCodec{kgo.Lz4Compression(), kgo.NoCompression()}, nil
	case "none", "":
		return []kgo.CompressionCodec{kgo.NoCompression()}, nil
	}
	return nil, fmt.Errorf("kafka: compression %q: accepted values are zstd, lz4, none", c.Compression)
}

// Drop reasons of flowlens_kafka_dropped_total.
const (
	reasonSpoolFull  = "spool_full"  // Kafka unavailable and the spool at its bound
	reasonSpoolError = "spool_error" // the spool could not be written
	reasonNoSpool    = "no_spool"    // Kafka did not take it and no spool is configured
	reasonNotRunning = "not_running" // Put before Start or after Stop
	reasonTorn       = "spool_torn"  // a torn or corrupt tail of a spool segment (one per segment)
	reasonCounters   = "counters_not_carried"
)

type metrics struct {
	produced   prometheus.Counter
	errors     prometheus.Counter
	spooled    prometheus.Counter
	drained    prometheus.Counter
	dropped    *prometheus.CounterVec
	spoolBytes prometheus.GaugeFunc
}

// Producer produces flows to Kafka. Put is safe for concurrent use.
type Producer struct {
	cfg   Config
	log   *slog.Logger
	m     metrics
	topic string
	opts  []kgo.Opt

	mu      sync.RWMutex // held for reading by Put, for writing by Start and Stop
	running bool
	cl      *kgo.Client
	spool   *spool

	recs    sync.Pool // *kgo.Record with Key and Value buffers kept
	promise func(*kgo.Record, error)

	cancel  context.CancelFunc
	drainWG sync.WaitGroup

	lastErrLog atomic.Int64 // unix nanoseconds, rate-limits error logs
}

// New checks cfg and registers the metrics; nothing is connected before Start.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Producer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	codecs, _ := cfg.codec()
	p := &Producer{cfg: cfg, log: log, topic: cfg.TopicName()}
	p.opts = []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(p.topic),
		kgo.ProducerBatchCompression(codecs...),
		kgo.ProducerLinger(cfg.Linger),
		kgo.ProducerBatchMaxBytes(cfg.BatchMaxBytes),
		kgo.MaxBufferedRecords(cfg.MaxBufferedRecords),
		kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout),
		// Records with the same key land on the same partition, so each
		// exporter's flows stay in order (spooled ones come later).
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		// Idempotent writes are kgo's default: kgo's own retries never
		// duplicate. A record stuck in flight to a dead broker must still
		// time out to reach the spool, so cancellation is allowed: such a
		// record may then land twice (at-least-once, as the spool is).
		kgo.AllowIdempotentProduceCancellation(),
	}
	p.recs.New = func() any { return &kgo.Record{Key: make([]byte, 0, 16), Value: make([]byte, 0, 256)} }
	p.promise = p.delivered

	f := prometheus.WrapRegistererWithPrefix("flowlens_kafka_", reg)
	p.m = metrics{
		produced: prometheus.NewCounter(prometheus.CounterOpts{Name: "produced_total", Help: "Flows Kafka acknowledged."}),
		errors:   prometheus.NewCounter(prometheus.CounterOpts{Name: "errors_total", Help: "Produce attempts that failed (the flow is then spooled or dropped)."}),
		spooled:  prometheus.NewCounter(prometheus.CounterOpts{Name: "spooled_total", Help: "Flows written to the on-disk spool."}),
		drained:  prometheus.NewCounter(prometheus.CounterOpts{Name: "drained_total", Help: "Spooled flows Kafka acknowledged on re-send."}),
		dropped:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dropped_total", Help: "Flows lost, by reason."}, []string{"reason"}),
	}
	p.m.spoolBytes = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "spool_bytes", Help: "Size of the on-disk spool."}, func() float64 {
		p.mu.RLock()
		defer p.mu.RUnlock()
		if p.spool == nil {
			return 0
		}
		return float64(p.spool.bytes())
	})
	for _, r := range []string{reasonSpoolFull, reasonSpoolError, reasonNoSpool, reasonNotRunning, reasonTorn, reasonCounters} {
		p.m.dropped.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{p.m.produced, p.m.errors, p.m.spooled, p.m.drained, p.m.dropped, p.m.spoolBytes} {
		if err := f.Register(c); err != nil {
			return nil, fmt.Errorf("kafka: register metrics: %w", err)
		}
	}
	return p, nil
}

// Start opens the spool (taking over what a previous run left), creates the
// Kafka client and starts the drainer. Kafka need not be reachable.
func (p *Producer) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		return errors.New("kafka: already started")
	}
	if p.cfg.SpoolDir != "" {
		s, err := openSpool(p.cfg.SpoolDir, p.cfg.SpoolMaxBytes, p.cfg.SpoolSegmentBytes)
		if err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		if n := len(s.sealed); n > 0 {
			p.log.Info("kafka spool has records from a previous run", "segments", n, "bytes", s.total)
		}
		p.spool = s
	}
	cl, err := kgo.NewClient(p.opts...)
	if err != nil {
		return fmt.Errorf("kafka: client: %w", err)
	}
	p.cl = cl
	p.running = true
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	if p.spool != nil {
		p.drainWG.Add(1)
		go p.drainLoop(dctx)
	}
	p.log.Info("kafka producer started", "brokers", p.cfg.Brokers, "topic", p.topic)
	return nil
}

// PutCounters counts an sFlow interface counter sample that `flowlens
// collect` cannot store: counter samples are not carried over Kafka yet
// (only `flowlens run`, with or without Kafka, stores them).
func (p *Producer) PutCounters(*schema.InterfaceCounters) {
	p.m.dropped.WithLabelValues(reasonCounters).Inc()
}

// Put encodes f and hands it to Kafka without blocking: when kgo's buffer
// is full the record goes to the spool at once. f is not retained.
func (p *Producer) Put(f *schema.Flow) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.running {
		p.m.dropped.WithLabelValues(reasonNotRunning).Inc()
		return
	}
	r := p.recs.Get().(*kgo.Record)
	r.Key = appendAddrKey(r.Key[:0], f)
	r.Value = Encode(r.Value[:0], f)
	p.cl.TryProduce(context.Background(), r, p.promise)
}

func appendAddrKey(b []byte, f *schema.Flow) []byte {
	switch a := f.ExporterAddr; {
	case a.Is4():
		v := a.As4()
		return append(b, v[:]...)
	case a.Is6():
		v := a.As16()
		return append(b, v[:]...)
	}
	return b
}

// delivered is the promise of every Put record: success is counted, failure
// (buffer full, delivery timeout, client closing) goes to the spool.
func (p *Producer) delivered(r *kgo.Record, err error) {
	if err == nil {
		p.m.produced.Inc()
	} else {
		p.m.errors.Inc()
		p.logErr("kafka produce failed, spooling", err)
		p.toSpool(r.Key, r.Value)
	}
	key, value := r.Key[:0], r.Value[:0]
	*r = kgo.Record{Key: key, Value: value}
	if cap(value) <= 64<<10 { // do not keep a rare huge buffer alive
		p.recs.Put(r)
	}
}

func (p *Producer) toSpool(key, value []byte) {
	if p.spool == nil {
		p.m.dropped.WithLabelValues(reasonNoSpool).Inc()
		return
	}
	switch err := p.spool.write(key, value); {
	case err == nil:
		p.m.spooled.Inc()
	case errors.Is(err, errSpoolFull):
		p.m.dropped.WithLabelValues(reasonSpoolFull).Inc()
	default:
		p.m.dropped.WithLabelValues(reasonSpoolError).Inc()
		p.logErr("kafka spool write failed", err)
	}
}

// logErr logs at most one error per second; the counters carry the rest.
func (p *Producer) logErr(msg string, err error) {
	now := time.Now().UnixNano()
	last := p.lastErrLog.Load()
	if now-last < int64(time.Second) || !p.lastErrLog.CompareAndSwap(last, now) {
		return
	}
	p.log.Warn(msg, "error", err)
}

// drainLoop flushes the spool to disk and, when Kafka answers, re-sends the
// oldest segments.
func (p *Producer) drainLoop(ctx context.Context) {
	defer p.drainWG.Done()
	t := time.NewTicker(p.cfg.DrainInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := p.spool.flush(); err != nil {
			p.logErr("kafka spool flush failed", err)
		}
		for ctx.Err() == nil {
			seq, ok, err := p.spool.oldest()
			if err != nil {
				p.logErr("kafka spool seal failed", err)
			}
			if !ok {
				break
			}
			pctx, cancel := context.WithTimeout(ctx, p.cfg.DrainInterval)
			err = p.cl.Ping(pctx)
			cancel()
			if err != nil {
				break // Kafka still away: try again next tick
			}
			if err := p.drainSegment(ctx, seq); err != nil {
				p.logErr("kafka spool drain failed, will retry", err)
				break
			}
		}
	}
}

const drainBatch = 1000

// drainSegment re-sends one segment and deletes it once every record was
// acknowledged. On failure the whole segment is re-sent later: records
// already acknowledged are then duplicated (at-least-once), never lost.
func (p *Producer) drainSegment(ctx context.Context, seq uint64) error {
	var batch []*kgo.Record
	var firstErr error
	send := func() {
		if len(batch) == 0 || firstErr != nil {
			batch = batch[:0]
			return
		}
		sctx, cancel := context.WithTimeout(ctx, p.cfg.DeliveryTimeout+p.cfg.DrainInterval)
		res := p.cl.ProduceSync(sctx, batch...)
		cancel()
		for _, r := range res {
			if r.Err != nil {
				p.m.errors.Inc()
				if firstErr == nil {
					firstErr = r.Err
				}
			} else {
				p.m.drained.Inc()
			}
		}
		batch = batch[:0]
	}
	skipped, err := readSegment(segName(p.cfg.SpoolDir, seq), func(key, value []byte) {
		if firstErr != nil {
			return
		}
		// key and value point into the segment read into memory, which
		// stays alive while the batch refers to it.
		batch = append(batch, &kgo.Record{Key: key, Value: value})
		if len(batch) == drainBatch {
			send()
		}
	})
	if err != nil {
		return err
	}
	send()
	if firstErr != nil {
		return firstErr
	}
	if skipped > 0 {
		p.m.dropped.WithLabelValues(reasonTorn).Inc()
		p.log.Warn("kafka spool segment had a torn or corrupt tail", "segment", seq, "bytes_skipped", skipped)
	}
	return p.spool.remove(seq)
}

// Stop refuses new flows, flushes kgo's buffer to Kafka within StopTimeout
// and spools whatever Kafka did not take, for the next Start.
func (p *Producer) Stop() error {
	p.mu.Lock()
	if !p.running {
		p.mu.Unlock()
		return nil
	}
	p.running = false
	p.mu.Unlock()

	p.cancel()
	p.drainWG.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.StopTimeout)
	defer cancel()
	if err := p.cl.Flush(ctx); err != nil {
		p.log.Warn("kafka flush incomplete at stop, spooling the rest", "error", err)
		// Fails every buffered record through its promise, which spools it.
		actx, acancel := context.WithTimeout(context.Background(), p.cfg.StopTimeout)
		_ = p.cl.AbortBufferedRecords(actx)
		acancel()
	}
	p.cl.Close()
	if p.spool != nil {
		if err := p.spool.close(); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
	}
	return nil
}
