// Package embedded stores flows into an in-process ClickHouse engine
// (chDB), the default single-machine store: same tables, same SQL as a
// ClickHouse server, no server to run.
//
// Batches are encoded as one Native-format block (ch-go proto columns, filled
// as flows arrive), written to a spool file in the data directory and
// inserted with INSERT ... SELECT FROM file(..., 'Native'). BenchmarkInsert
// compares this with JSONEachRow text inline (3x slower) and with the Native
// block inline after "INSERT ... FORMAT Native" (chdb_query_n takes binary
// data, but libchdb 26.5 fails on inline Native blocks above a few hundred
// KB: CANNOT_READ_ALL_DATA); see docs/architecture.md.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"flowlens/internal/chdb"
	"flowlens/schema"
)

// Config of the embedded store.
type Config struct {
	DataDir       string
	BatchSize     int           // rows per insert
	BatchInterval time.Duration // longest time a row waits before insert
	MaxPending    int           // full batches waiting for insert before rows are dropped
	MaxAttempts   int           // insert attempts of one batch before it is dropped
	Tables        schema.TableConfig
}

// DefaultConfig stores into ./data in batches of 200k rows or 2 s. Large
// batches make fewer MergeTree parts, hence fewer background merges: on one
// core, 200k-row batches sustain about 1.3x the insert rate of 50k-row ones
// (docs/benchmarks.md).
func DefaultConfig() Config {
	return Config{
		DataDir:       "data",
		BatchSize:     200_000,
		BatchInterval: 2 * time.Second,
		MaxPending:    4,
		MaxAttempts:   8, // about 13 s of backoff
		Tables:        schema.DefaultTableConfig(),
	}
}

// Validate reports invalid settings.
func (c Config) Validate() error {
	switch {
	case c.DataDir == "":
		return errors.New("data directory must not be empty")
	case c.BatchSize < 1:
		return fmt.Errorf("batch size must be >= 1, got %d", c.BatchSize)
	case c.BatchInterval <= 0:
		return fmt.Errorf("batch interval must be > 0, got %s", c.BatchInterval)
	case c.MaxAttempts < 1:
		return fmt.Errorf("max attempts must be >= 1, got %d", c.MaxAttempts)
	case c.MaxPending < 1:
		return fmt.Errorf("max pending batches must be >= 1, got %d", c.MaxPending)
	}
	return c.Tables.Validate()
}

type metrics struct {
	rows        prometheus.Counter
	dropped     *prometheus.CounterVec
	flushes     prometheus.Counter
	errors      prometheus.Counter
	flushTime   prometheus.Histogram
	pending     prometheus.GaugeFunc
	counterRows prometheus.Counter
	alertRows   prometheus.Counter
}

// Store is the embedded store component.
type Store struct {
	cfg  Config
	log  *slog.Logger
	m    metrics
	conn *chdb.Conn

	spool       string // file holding the batch being inserted
	insertQuery []byte

	// InsertFlows (the lander's path) has its own spool file.
	landMu    sync.Mutex
	landSpool string

	// sFlow interface counters and alerts: a few rows a minute each.
	counters sideTable[schema.InterfaceCounters]
	alerts   sideTable[schema.Alert]

	mu      sync.Mutex
	active  *schema.Batch
	free    []*schema.Batch
	full    chan *schema.Batch
	stopped bool

	kick chan struct{}
	done chan struct{}
	stop context.CancelFunc
}

// New returns an inert store; Start opens it.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{
		cfg:  cfg,
		log:  log,
		full: make(chan *schema.Batch, cfg.MaxPending),
		kick: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	s.m = metrics{
		rows: prometheus.NewCounter(prometheus.CounterOpts{Name: "flowlens_store_rows_total",
			Help: "Rows durably inserted into the store."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flowlens_store_dropped_rows_total",
			Help: "Rows the store could not take, by reason."}, []string{"reason"}),
		flushes: prometheus.NewCounter(prometheus.CounterOpts{Name: "flowlens_store_flushes_total",
			Help: "Batches inserted."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "flowlens_store_flush_errors_total",
			Help: "Failed insert attempts (the batch is kept and retried)."}),
		flushTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "flowlens_store_flush_seconds",
			Help: "Time to insert one batch.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		counterRows: prometheus.NewCounter(prometheus.CounterOpts{Name: "flowlens_store_counter_rows_total",
			Help: "sFlow interface counter rows inserted into interface_counters."}),
		alertRows: prometheus.NewCounter(prometheus.CounterOpts{Name: "flowlens_store_alert_rows_total",
			Help: "Alert rows inserted into alerts."}),
	}
	s.m.pending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flowlens_store_pending_batches",
		Help: "Full batches waiting for insert."}, func() float64 { return float64(len(s.full)) })
	if reg != nil {
		for _, c := range []prometheus.Collector{s.m.rows, s.m.dropped, s.m.flushes, s.m.errors, s.m.flushTime, s.m.pending, s.m.counterRows, s.m.alertRows} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	s.m.dropped.WithLabelValues("store_backlog")
	s.m.dropped.WithLabelValues("stopped")
	s.m.dropped.WithLabelValues("insert_failed")
	s.m.dropped.WithLabelValues("counters_backlog")
	s.m.dropped.WithLabelValues("alerts_backlog")
	s.counters = sideTable[schema.InterfaceCounters]{table: "interface_counters", cols: schema.CounterColumns, max: MaxCounterRows, rows: s.m.counterRows, backlog: "counters_backlog"}
	s.alerts = sideTable[schema.Alert]{table: "alerts", cols: schema.AlertColumns, max: MaxAlertRows, rows: s.m.alertRows, backlog: "alerts_backlog"}
	return s, nil
}

// Start opens the engine in the data directory, migrates the schema and
// starts the flusher.
func (s *Store) Start(ctx context.Context) error {
	conn, err := chdb.Open(s.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("open embedded store in %s: %w", s.cfg.DataDir, err)
	}
	s.conn = conn
	abs, err := filepath.Abs(filepath.Join(s.cfg.DataDir, "spool.native"))
	if err != nil {
		conn.Close()
		return err
	}
	s.spool, s.insertQuery = abs, insertSQL("flows", schema.ColumnList(schema.Columns), abs)
	s.landSpool = filepath.Join(filepath.Dir(abs), "spool-land.native")
	s.counters.open(filepath.Join(filepath.Dir(abs), "spool-counters.native"))
	s.alerts.open(filepath.Join(filepath.Dir(abs), "spool-alerts.native"))
	applied, err := schema.Migrate(ctx, s, s.cfg.Tables)
	if err != nil {
		conn.Close()
		return fmt.Errorf("migrate embedded store: %w", err)
	}
	s.log.Info("embedded store open", "dir", s.cfg.DataDir, "schema_version", schema.Version(), "applied", applied)
	s.active = schema.NewBatch()
	for range s.cfg.MaxPending {
		s.free = append(s.free, schema.NewBatch())
	}
	fctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go s.flusher(fctx)
	return nil
}

// Put appends a flow to the current batch. It never blocks on the engine:
// when every batch is waiting for insert the row is a counted drop.
func (s *Store) Put(f *schema.Flow) {
	s.mu.Lock()
	if s.stopped || s.active == nil {
		s.mu.Unlock()
		s.m.dropped.WithLabelValues("stopped").Inc()
		return
	}
	if s.active.Rows() >= s.cfg.BatchSize && !s.rotateLocked() {
		s.mu.Unlock()
		s.m.dropped.WithLabelValues("store_backlog").Inc()
		return
	}
	s.active.Append(f)
	s.mu.Unlock()
}

// MaxCounterRows bounds the interface counter rows held between flushes.
const MaxCounterRows = 100_000

// MaxAlertRows bounds the alert rows held between flushes.
const MaxAlertRows = 100_000

// PutCounters appends one interface counter sample; it is inserted at the
// next flush.
func (s *Store) PutCounters(c *schema.InterfaceCounters) { s.counters.put(s, c) }

// PutAlert appends one alert; it is inserted at the next flush.
func (s *Store) PutAlert(a *schema.Alert) { s.alerts.put(s, a) }

// flushSide inserts the counter and alert rows held.
func (s *Store) flushSide() {
	s.counters.flush(s)
	s.alerts.flush(s)
}

// sideTable is a small table beside flows (interface counters, alerts):
// one batch, inserted whole at each flush; on failure its rows are kept
// for the next flush, up to max, beyond which they are counted drops.
type sideTable[T any] struct {
	table   string
	cols    []schema.ColumnOf[T]
	max     int
	rows    prometheus.Counter
	backlog string // the drop reason

	mu    sync.Mutex
	batch *schema.BatchOf[T]
	spool string
	query []byte
}

func (t *sideTable[T]) open(spool string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.spool, t.query = spool, insertSQL(t.table, schema.ColumnList(t.cols), spool)
	t.batch = schema.NewBatchOf(t.cols)
}

func (t *sideTable[T]) put(s *Store, v *T) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.batch == nil || t.batch.Rows() >= t.max {
		s.m.dropped.WithLabelValues(t.backlog).Inc()
		return
	}
	t.batch.Append(v)
}

func (t *sideTable[T]) flush(s *Store) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.batch == nil || t.batch.Rows() == 0 {
		return
	}
	if err := insertBatch(s.conn, t.batch, t.spool, t.query); err != nil {
		s.m.errors.Inc()
		s.log.Error("insert failed, rows kept for the next flush", "table", t.table, "rows", t.batch.Rows(), "err", err)
		return
	}
	t.rows.Add(float64(t.batch.Rows()))
	t.batch.Reset()
}

// rotateLocked queues the active batch and takes a free one. It fails when
// no free batch is left (the engine is behind).
func (s *Store) rotateLocked() bool {
	if s.active.Rows() == 0 {
		return true
	}
	if len(s.free) == 0 {
		return false
	}
	s.full <- s.active // cannot block: MaxPending batches exist besides active
	s.active = s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return true
}

func (s *Store) flusher(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.cfg.BatchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.mu.Lock()
			s.rotateLocked()
			s.mu.Unlock()
		case <-s.kick:
		}
		s.drain(ctx)
		s.flushSide()
	}
}

// drain inserts every queued batch. A failing insert is retried with
// backoff (meanwhile new rows queue, then drop as store_backlog); a batch
// the engine rejects MaxAttempts times is dropped and counted, so that one
// poison batch cannot stall the store for good.
func (s *Store) drain(ctx context.Context) {
	for {
		var b *schema.Batch
		select {
		case b = <-s.full:
		default:
			return
		}
		backoff := 100 * time.Millisecond
		for attempt := 1; ; attempt++ {
			err := s.insert(b)
			if err == nil {
				break
			}
			s.m.errors.Inc()
			if attempt >= s.cfg.MaxAttempts {
				s.log.Error("insert into embedded store failed, batch dropped", "rows", b.Rows(), "attempts", attempt, "err", err)
				s.m.dropped.WithLabelValues("insert_failed").Add(float64(b.Rows()))
				break
			}
			s.log.Error("insert into embedded store failed, retrying", "rows", b.Rows(), "attempt", attempt, "err", err)
			select {
			case <-ctx.Done():
				// Stop: one last try happens in Stop's final drain.
				s.full <- b
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
		}
		b.Reset()
		s.mu.Lock()
		s.free = append(s.free, b)
		s.mu.Unlock()
	}
}

func (s *Store) insert(b *schema.Batch) error {
	start := time.Now()
	if err := insertBatch(s.conn, b, s.spool, s.insertQuery); err != nil {
		return err
	}
	s.m.flushTime.Observe(time.Since(start).Seconds())
	s.m.flushes.Inc()
	s.m.rows.Add(float64(b.Rows()))
	return nil
}

// insertBatch writes b's Native block to spool and runs query, which reads it.
func insertBatch[T any](conn *chdb.Conn, b *schema.BatchOf[T], spool string, query []byte) error {
	data, err := b.Native()
	if err != nil {
		return err
	}
	if err := os.WriteFile(spool, data, 0o600); err != nil {
		return fmt.Errorf("write spool %s: %w", spool, err)
	}
	_, err = conn.Query(query, "")
	return err
}

// insertSQL reads a spooled Native block into table, naming the columns so
// that the table's own column order does not matter.
func insertSQL(table, columns, spool string) []byte {
	return insertSQLToken(table, columns, spool, "")
}

// insertSQLToken is insertSQL with an insert_deduplication_token: the
// engine skips an insert whose token it has seen among the table's last
// schema.DedupWindow inserts.
func insertSQLToken(table, columns, spool, token string) []byte {
	settings := ""
	if token != "" {
		settings = "SETTINGS insert_deduplication_token = " + quoteSQL(token) + " "
	}
	return []byte("INSERT INTO " + table + " " + columns + " " + settings + "SELECT * FROM file(" + quoteSQL(spool) + ", 'Native')")
}

// InsertFlows inserts b at once, synchronously, with a deduplication token
// (`flowlens land`): when it returns nil the rows are stored, or were
// already stored by an earlier insert with the same token. It does not
// retry; the caller owns the batch and its retries.
func (s *Store) InsertFlows(_ context.Context, b *schema.Batch, token string) error {
	if b.Rows() == 0 {
		return nil
	}
	s.landMu.Lock()
	defer s.landMu.Unlock()
	if s.conn == nil {
		return chdb.ErrClosed
	}
	start := time.Now()
	q := insertSQLToken("flows", schema.ColumnList(schema.Columns), s.landSpool, token)
	if err := insertBatch(s.conn, b, s.landSpool, q); err != nil {
		s.m.errors.Inc()
		return err
	}
	s.m.flushTime.Observe(time.Since(start).Seconds())
	s.m.flushes.Inc()
	s.m.rows.Add(float64(b.Rows()))
	return nil
}

func quoteSQL(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// Stop flushes what was accepted and closes the engine.
func (s *Store) Stop() error {
	if s.conn == nil {
		return nil
	}
	s.stop()
	<-s.done
	// Everything accepted: the queued batches, oldest first, then the active
	// one (not pushed into the channel, which may be full when the engine
	// was behind).
	s.mu.Lock()
	s.stopped = true
	var last []*schema.Batch
	for len(s.full) > 0 {
		last = append(last, <-s.full)
	}
	if s.active.Rows() > 0 {
		last = append(last, s.active)
	}
	s.mu.Unlock()
	var errs []error
	for _, b := range last {
		if err := s.insert(b); err != nil {
			s.m.dropped.WithLabelValues("stopped").Add(float64(b.Rows()))
			errs = append(errs, err)
		}
	}
	s.flushSide()
	s.landMu.Lock()
	s.conn.Close()
	s.conn = nil
	s.landMu.Unlock()
	return errors.Join(errs...)
}

// Flush inserts everything accepted so far and returns when it is stored.
// Tests and `flowlens query` use it to see fresh rows.
func (s *Store) Flush(ctx context.Context) {
	s.mu.Lock()
	s.rotateLocked()
	s.mu.Unlock()
	for len(s.full) > 0 {
		select {
		case <-ctx.Done():
			return
		case s.kick <- struct{}{}:
		case <-time.After(5 * time.Millisecond):
		}
	}
	// The flusher may still be inserting the last batch it took.
	s.mu.Lock()
	n := len(s.free)
	s.mu.Unlock()
	for n < s.cfg.MaxPending {
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
		s.mu.Lock()
		n = len(s.free)
		s.mu.Unlock()
	}
	s.flushSide()
}

// Exec runs a statement (schema.DB).
func (s *Store) Exec(_ context.Context, query string) error {
	_, err := s.conn.Query([]byte(query), "")
	return err
}

// QueryStrings runs a query returning one String column (schema.DB).
func (s *Store) QueryStrings(_ context.Context, query string) ([]string, error) {
	out, err := s.conn.Query([]byte(query), "TSVRaw")
	if err != nil {
		return nil, err
	}
	text := strings.TrimSuffix(string(out), "\n")
	if text == "" {
		return nil, nil
	}
	return strings.Split(text, "\n"), nil
}

// Query runs a user query and returns its output in format (any ClickHouse
// output format: PrettyCompact, JSONEachRow, CSV, ...).
func (s *Store) Query(_ context.Context, query, format string) ([]byte, error) {
	if s.conn == nil {
		return nil, chdb.ErrClosed
	}
	return s.conn.Query([]byte(query), format)
}
