// Package lander is `flowlens land`: a Kafka consumer group that reads the
// flows `flowlens collect` produced and inserts them into ClickHouse (a
// server, or the embedded engine).
//
// Delivery is exactly-once into the table, built from two at-least-once
// halves:
//
//   - Each insert holds the records of one partition's offset range
//     [first, end) and carries insert_deduplication_token
//     "<topic>/<partition>/<first>-<end>". The table remembers the last
//     schema.DedupWindow tokens and skips an insert it has seen.
//   - Before inserting, the lander commits the range's start with the
//     metadata "flowlens-land end=<end>" (the intent); after ClickHouse
//     acknowledged, it commits end. A lander that takes the partition over
//     after a crash, a kill or a rebalance reads the intent and cuts its
//     first batch at exactly the same end, so its retry carries the same
//     token and is skipped if the first insert had landed.
//
// Without the intent, a successor would cut batches where its own size and
// time limits fall, the token would differ, and a crash between insert and
// commit would store the range twice.
//
// Duplicates the producer made (a record re-sent from the collector's spool
// after Kafka had in fact stored it) have their own offsets and are not
// removed here; see sink/kafka.
//
// Inserts that fail are retried with backoff until they succeed or the
// lander stops: Kafka holds the data meanwhile, nothing is dropped. A commit
// that fails ends the Kafka session: held batches are discarded and the
// lander rejoins, so consumption restarts from the committed offsets.
package lander

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"flowlens/schema"
	"flowlens/sink/kafka"
)

// Store is where batches go: sink/embedded (chDB) or sink/clickhouse.
type Store interface {
	// InsertFlows stores b. When it returns nil the rows are stored, or
	// were already stored by an insert with the same token.
	InsertFlows(ctx context.Context, b *schema.Batch, token string) error
}

// Config of the lander. Brokers and topic come from kafka.Config.
type Config struct {
	// Group is the Kafka consumer group; landers sharing it share the
	// topic's partitions.
	Group string `env:"LAND_GROUP" json:"group"`
	// BatchSize is the most rows of one partition in one insert.
	BatchSize int `env:"LAND_BATCH_SIZE" json:"batch_size"`
	// BatchInterval is the longest a row waits for its insert.
	BatchInterval time.Duration `env:"LAND_BATCH_INTERVAL" json:"batch_interval"`
	// MaxRows bounds the rows held across all partitions; past it the
	// largest batch is inserted early.
	MaxRows int `env:"LAND_MAX_ROWS" json:"max_rows"`
	// SessionTimeout is how long a silent lander keeps its partitions
	// before the group hands them to the others.
	SessionTimeout time.Duration `env:"LAND_SESSION_TIMEOUT" json:"session_timeout"`
	// StopTimeout bounds the final inserts of held batches at stop; what
	// is not inserted then is read again by the next lander.
	StopTimeout time.Duration `env:"LAND_STOP_TIMEOUT" json:"stop_timeout"`
}

// DefaultConfig inserts up to 200k rows per partition, every 2 s at most:
// the embedded store's batch size (large inserts cost less CPU per row,
// BenchmarkLand with LAND_BENCH_BATCH).
func DefaultConfig() Config {
	return Config{
		Group:          "flowlens-land",
		BatchSize:      200_000,
		BatchInterval:  2 * time.Second,
		MaxRows:        800_000,
		SessionTimeout: 30 * time.Second,
		StopTimeout:    30 * time.Second,
	}
}

// Validate reports invalid settings.
func (c Config) Validate() error {
	switch {
	case c.Group == "":
		return errors.New("land: empty consumer group")
	case c.BatchSize < 1:
		return fmt.Errorf("land: batch size must be >= 1, got %d", c.BatchSize)
	case c.MaxRows < c.BatchSize:
		return fmt.Errorf("land: max rows (%d) must be >= batch size (%d)", c.MaxRows, c.BatchSize)
	case c.BatchInterval <= 0 || c.StopTimeout <= 0:
		return errors.New("land: batch interval and stop timeout must be > 0")
	case c.SessionTimeout < time.Second:
		return fmt.Errorf("land: session timeout must be >= 1s, got %s", c.SessionTimeout)
	}
	return nil
}

// intentPrefix starts the commit metadata of a batch being inserted.
const intentPrefix = "flowlens-land end="

type metrics struct {
	records      prometheus.Counter
	rows         prometheus.Counter
	inserts      prometheus.Counter
	insertErrors prometheus.Counter
	insertTime   prometheus.Histogram
	dropped      *prometheus.CounterVec
	reread       *prometheus.CounterVec
	commitErrors prometheus.Counter
	replays      prometheus.Counter
	sessions     prometheus.Counter
	fetchErrors  prometheus.Counter
	held         prometheus.GaugeFunc
}

// part is one assigned partition's batch being filled.
type part struct {
	topic   string
	id      int32
	batch   *schema.Batch
	records int   // records in [first, next), decodable or not
	first   int64 // offset of the batch's first record
	next    int64 // offset after its last record
	epoch   int32 // leader epoch of the last record
	since   time.Time
	// replayEnd > 0: a previous owner committed the intent to insert
	// [first, replayEnd); the batch is cut exactly there.
	replayEnd int64
}

type tp struct {
	topic string
	id    int32
}

// Lander is the consumer component.
type Lander struct {
	cfg   Config
	kcfg  kafka.Config
	topic string
	store Store
	log   *slog.Logger
	m     metrics

	mu    sync.Mutex // parts and held: the poll loop and the group callbacks
	parts map[tp]*part
	held  int
	free  []*schema.Batch

	flow   schema.Flow
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns an inert lander; Start joins the group.
func New(cfg Config, kcfg kafka.Config, store Store, log *slog.Logger, reg prometheus.Registerer) (*Lander, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(kcfg.Brokers) == 0 || kcfg.Topic == "" {
		return nil, errors.New("land: Kafka brokers and topic are required")
	}
	l := &Lander{cfg: cfg, kcfg: kcfg, topic: kcfg.TopicName(), store: store, log: log, parts: map[tp]*part{}}
	f := prometheus.WrapRegistererWithPrefix("flowlens_land_", reg)
	l.m = metrics{
		records:      prometheus.NewCounter(prometheus.CounterOpts{Name: "records_total", Help: "Kafka records consumed."}),
		rows:         prometheus.NewCounter(prometheus.CounterOpts{Name: "rows_total", Help: "Rows the store acknowledged (including inserts it deduplicated)."}),
		inserts:      prometheus.NewCounter(prometheus.CounterOpts{Name: "inserts_total", Help: "Inserts the store acknowledged."}),
		insertErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "insert_errors_total", Help: "Insert attempts that failed (retried)."}),
		insertTime:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "insert_seconds", Help: "Time of successful inserts.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		dropped:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dropped_total", Help: "Records not stored, by reason."}, []string{"reason"}),
		reread:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reread_total", Help: "Held records given back to Kafka uninserted (read again later), by reason."}, []string{"reason"}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "commit_errors_total", Help: "Offset commits that failed (the session restarts)."}),
		replays:      prometheus.NewCounter(prometheus.CounterOpts{Name: "replays_total", Help: "Batches re-formed from a previous owner's intent (inserted again with the same token)."}),
		sessions:     prometheus.NewCounter(prometheus.CounterOpts{Name: "sessions_total", Help: "Kafka consumer sessions started."}),
		fetchErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "fetch_errors_total", Help: "Fetch errors reported by the Kafka client."}),
	}
	l.m.held = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "held_rows", Help: "Rows held in batches not yet inserted."}, func() float64 {
		l.mu.Lock()
		defer l.mu.Unlock()
		return float64(l.held)
	})
	l.m.dropped.WithLabelValues("undecodable")
	for _, r := range []string{"revoked", "session_restart", "stopped"} {
		l.m.reread.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{l.m.records, l.m.rows, l.m.inserts, l.m.insertErrors, l.m.insertTime,
		l.m.dropped, l.m.reread, l.m.commitErrors, l.m.replays, l.m.sessions, l.m.fetchErrors, l.m.held} {
		if err := f.Register(c); err != nil {
			return nil, fmt.Errorf("land: register metrics: %w", err)
		}
	}
	return l, nil
}

// Start joins the consumer group and lands in the background. Kafka need
// not be reachable yet.
func (l *Lander) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		backoff := 100 * time.Millisecond
		for ctx.Err() == nil {
			err := l.session(ctx)
			if err == nil || ctx.Err() != nil {
				return
			}
			l.log.Error("kafka session ended, rejoining", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
		}
	}()
	l.log.Info("lander started", "brokers", l.kcfg.Brokers, "topic", l.topic, "group", l.cfg.Group)
	return nil
}

// Stop inserts the held batches (bounded by StopTimeout), commits them and
// leaves the group.
func (l *Lander) Stop() error {
	if l.cancel == nil {
		return nil
	}
	l.cancel()
	<-l.done
	l.cancel = nil
	return nil
}

// session is one membership of the group, from join to stop or to a
// commit failure. Its batches do not outlive it.
func (l *Lander) session(ctx context.Context) error {
	l.m.sessions.Inc()
	var cl *kgo.Client
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(l.kcfg.Brokers...),
		kgo.ConsumerGroup(l.cfg.Group),
		kgo.ConsumeTopics(l.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		// Group callbacks run only between polls, never during an insert.
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(l.cfg.SessionTimeout),
		kgo.HeartbeatInterval(max(l.cfg.SessionTimeout/10, 100*time.Millisecond)),
		kgo.OnPartitionsAssigned(func(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
			l.assigned(ctx, cl, assigned)
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
			l.forget(revoked, "revoked")
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			l.forget(lost, "revoked")
		}),
	)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer func() {
		l.forget(nil, "session_restart")
		cl.Close()
	}()
	for {
		pctx, cancel := context.WithTimeout(ctx, l.pollWait())
		fs := cl.PollRecords(pctx, 10_000)
		cancel()
		if fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			l.m.fetchErrors.Inc()
			l.log.Warn("kafka fetch error", "topic", topic, "partition", p, "err", err)
		})
		var err error
		fs.EachRecord(func(r *kgo.Record) {
			if err == nil {
				err = l.add(ctx, cl, r)
			}
		})
		if err == nil {
			err = l.flushDue(ctx, cl, time.Now())
		}
		if ctx.Err() != nil {
			// Stopping: insert and commit what is held, with a bounded
			// context of its own; then leave.
			sctx, scancel := context.WithTimeout(context.Background(), l.cfg.StopTimeout)
			if err == nil {
				err = l.flushAll(sctx, cl)
			}
			scancel()
			cl.AllowRebalance()
			if err != nil {
				l.log.Warn("lander stopped with batches not inserted; the next lander reads them again", "err", err)
			}
			l.forget(nil, "stopped")
			return nil
		}
		cl.AllowRebalance()
		if err != nil {
			return err
		}
	}
}

// pollWait is how long a poll may wait: until the oldest held batch is due.
func (l *Lander) pollWait() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	wait := l.cfg.BatchInterval
	now := time.Now()
	for _, p := range l.parts {
		if p.records > 0 && p.replayEnd == 0 {
			wait = min(wait, p.since.Add(l.cfg.BatchInterval).Sub(now))
		}
	}
	return max(wait, 10*time.Millisecond)
}

// assigned reads the committed metadata of new partitions: an intent left
// by the previous owner fixes where their first batch ends.
func (l *Lander) assigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, l.cfg.Group)
	if err != nil {
		// Without the intents a retry could duplicate: mark the
		// partitions, and the first record of one ends the session.
		l.log.Error("read committed offsets failed; the partitions are not landed until the session restarts", "err", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for topic, ids := range assigned {
		for _, id := range ids {
			p := l.partLocked(topic, id)
			if err != nil {
				p.replayEnd = -1
				continue
			}
			o, ok := offs.Lookup(topic, id)
			if !ok || o.Err != nil || !strings.HasPrefix(o.Metadata, intentPrefix) {
				continue
			}
			end, perr := strconv.ParseInt(strings.TrimPrefix(o.Metadata, intentPrefix), 10, 64)
			if perr != nil || end <= o.At {
				l.log.Warn("ignoring malformed lander intent", "topic", topic, "partition", id, "metadata", o.Metadata)
				continue
			}
			p.replayEnd = end
			l.log.Info("partition has an unfinished insert of its previous owner; replaying it", "topic", topic, "partition", id, "from", o.At, "to", end)
		}
	}
}

// forget discards the held batches of the given partitions (all when nil):
// they were not inserted and no intent names them, so whoever consumes the
// partitions next reads them again.
func (l *Lander) forget(which map[string][]int32, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	drop := func(k tp) {
		p, ok := l.parts[k]
		if !ok {
			return
		}
		l.m.reread.WithLabelValues(reason).Add(float64(p.records))
		l.held -= p.batch.Rows()
		p.batch.Reset()
		l.free = append(l.free, p.batch)
		delete(l.parts, k)
	}
	if which == nil {
		for k := range l.parts {
			drop(k)
		}
		return
	}
	for topic, ids := range which {
		for _, id := range ids {
			drop(tp{topic, id})
		}
	}
}

func (l *Lander) partLocked(topic string, id int32) *part {
	k := tp{topic, id}
	p := l.parts[k]
	if p == nil {
		p = &part{topic: topic, id: id}
		if n := len(l.free); n > 0 {
			p.batch, l.free = l.free[n-1], l.free[:n-1]
		} else {
			p.batch = schema.NewBatch()
		}
		l.parts[k] = p
	}
	return p
}

// add appends one record to its partition's batch and inserts the batch
// when it is full or reaches the replayed intent's end.
func (l *Lander) add(ctx context.Context, cl *kgo.Client, r *kgo.Record) error {
	l.m.records.Inc()
	l.mu.Lock()
	p := l.partLocked(r.Topic, r.Partition)
	if p.replayEnd < 0 {
		l.mu.Unlock()
		return errors.New("partition assigned without its committed metadata")
	}
	l.mu.Unlock()
	if p.replayEnd > 0 && r.Offset >= p.replayEnd {
		// The intent's last records are gone (retention, compaction):
		// the range ends here.
		if err := l.flush(ctx, cl, p); err != nil {
			return err
		}
	}
	if p.records == 0 {
		p.first, p.since = r.Offset, time.Now()
	}
	if err := kafka.Decode(r.Value, &l.flow); err != nil {
		l.m.dropped.WithLabelValues("undecodable").Inc()
	} else {
		p.batch.Append(&l.flow)
		l.mu.Lock()
		l.held++
		l.mu.Unlock()
	}
	p.records++
	p.next, p.epoch = r.Offset+1, r.LeaderEpoch
	switch {
	case p.replayEnd > 0:
		if p.next >= p.replayEnd {
			return l.flush(ctx, cl, p)
		}
	case p.batch.Rows() >= l.cfg.BatchSize:
		return l.flush(ctx, cl, p)
	case l.overHeld():
		return l.flush(ctx, cl, l.largest())
	}
	return nil
}

func (l *Lander) overHeld() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held >= l.cfg.MaxRows
}

func (l *Lander) largest() *part {
	l.mu.Lock()
	defer l.mu.Unlock()
	var big *part
	for _, p := range l.parts {
		if p.replayEnd == 0 && (big == nil || p.batch.Rows() > big.batch.Rows()) {
			big = p
		}
	}
	return big
}

// flushDue inserts the batches that waited BatchInterval.
func (l *Lander) flushDue(ctx context.Context, cl *kgo.Client, now time.Time) error {
	for _, p := range l.snapshot() {
		if p.records > 0 && p.replayEnd == 0 && now.Sub(p.since) >= l.cfg.BatchInterval {
			if err := l.flush(ctx, cl, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// flushAll inserts every held batch; a replayed intent that did not reach
// its end stays uninserted (its records were not all read).
func (l *Lander) flushAll(ctx context.Context, cl *kgo.Client) error {
	for _, p := range l.snapshot() {
		if p.records > 0 && p.replayEnd == 0 {
			if err := l.flush(ctx, cl, p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *Lander) snapshot() []*part {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*part, 0, len(l.parts))
	for _, p := range l.parts {
		out = append(out, p)
	}
	return out
}

// flush lands p's batch: intent commit, insert (retried until it succeeds
// or ctx ends), final commit.
func (l *Lander) flush(ctx context.Context, cl *kgo.Client, p *part) error {
	if p == nil || p.records == 0 {
		if p != nil {
			p.replayEnd = 0
		}
		return nil
	}
	end := p.next
	if p.replayEnd > 0 {
		end = p.replayEnd
		l.m.replays.Inc()
	} else if err := l.commit(ctx, cl, p, p.first, intentPrefix+strconv.FormatInt(end, 10)); err != nil {
		return fmt.Errorf("commit intent %s/%d at %d: %w", p.topic, p.id, p.first, err)
	}
	token := p.topic + "/" + strconv.Itoa(int(p.id)) + "/" + strconv.FormatInt(p.first, 10) + "-" + strconv.FormatInt(end, 10)
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		err := l.store.InsertFlows(ctx, p.batch, token)
		if err == nil {
			l.m.insertTime.Observe(time.Since(start).Seconds())
			break
		}
		l.m.insertErrors.Inc()
		l.log.Error("insert failed, retrying", "token", token, "rows", p.batch.Rows(), "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("insert %s abandoned: %w", token, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
	l.m.inserts.Inc()
	l.m.rows.Add(float64(p.batch.Rows()))
	if err := l.commit(ctx, cl, p, end, ""); err != nil {
		// Stored but not committed: the intent makes the re-read
		// batch a deduplicated retry.
		return fmt.Errorf("commit %s/%d at %d: %w", p.topic, p.id, end, err)
	}
	l.mu.Lock()
	l.held -= p.batch.Rows()
	l.mu.Unlock()
	p.batch.Reset()
	p.records, p.replayEnd = 0, 0
	return nil
}

// commit commits offset for p with metadata, synchronously, and reports
// the broker's per-partition error (a stale generation after a rebalance,
// for one).
func (l *Lander) commit(ctx context.Context, cl *kgo.Client, p *part, offset int64, metadata string) error {
	var out error
	cctx := kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			for j := range req.Topics[i].Partitions {
				req.Topics[i].Partitions[j].Metadata = &metadata
			}
		}
		return nil
	})
	cl.CommitOffsetsSync(cctx, map[string]map[int32]kgo.EpochOffset{p.topic: {p.id: {Epoch: p.epoch, Offset: offset}}},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				out = err
				return
			}
			for _, t := range resp.Topics {
				for _, pr := range t.Partitions {
					if e := kerr.ErrorForCode(pr.ErrorCode); e != nil {
						out = e
					}
				}
			}
		})
	if out != nil {
		l.m.commitErrors.Inc()
	}
	return out
}
