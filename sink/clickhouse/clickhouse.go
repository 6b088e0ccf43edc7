// Package clickhouse is the client of a ClickHouse server, or of a cluster
// of them, over the native protocol: it runs the schema migrations
// (schema.DB) and inserts the lander's batches (InsertFlows).
//
// It uses ch-go rather than clickhouse-go/v2 because a schema.Batch already
// is a set of ch-go proto columns: ch-go sends them as one Native block,
// as they are. clickhouse-go's batch API takes rows (Append(values...)) and
// would copy every value of every row into its own columns first.
//
// Connections come from a small pool of at most MaxConns, dialled on
// demand from the addresses in turn (the next address when one is down).
// ch-go's chpool was not used: it dials a single address and would add
// jackc/puddle as a dependency for what fits in a hundred lines here.
//
// Metrics: flowlens_clickhouse_inserts_total, flowlens_clickhouse_rows_total,
// flowlens_clickhouse_errors_total{op} (connect, insert, exec, query),
// flowlens_clickhouse_insert_seconds and flowlens_clickhouse_connections.
package clickhouse

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"
	"github.com/prometheus/client_golang/prometheus"

	"flowlens/schema"
)

var _ schema.DB = (*Client)(nil)

// ErrStopped is returned by calls after Stop.
var ErrStopped = errors.New("clickhouse: client stopped")

type metrics struct {
	inserts    prometheus.Counter
	rows       prometheus.Counter
	errors     *prometheus.CounterVec
	insertTime prometheus.Histogram
	conns      prometheus.GaugeFunc
}

// Client is a ClickHouse client, safe for concurrent use.
type Client struct {
	cfg         Config
	log         *slog.Logger
	m           metrics
	tls         *tls.Config
	insertQuery string

	slots chan struct{} // one per open (or opening) connection

	mu      sync.Mutex
	idle    []idleConn
	open    int
	next    int // index in cfg.Addr of the next dial
	stopped bool
}

type idleConn struct {
	conn  *ch.Client
	since time.Time
}

// idlePing is how long a connection may sit idle before it is pinged
// when taken: the server or a middlebox may have closed it meanwhile.
const idlePing = 30 * time.Second

// New checks cfg and registers the metrics on reg (when not nil); nothing
// is connected before Start.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Client, error) {
	if !cfg.Configured() {
		return nil, &FieldError{Var: "CLICKHOUSE_ADDR", Msg: "no ClickHouse server address"}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{
		cfg:         cfg,
		log:         log,
		insertQuery: InsertQuery(),
		slots:       make(chan struct{}, cfg.MaxConns),
	}
	if cfg.TLS {
		c.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	c.m = metrics{
		inserts: prometheus.NewCounter(prometheus.CounterOpts{Name: "inserts_total",
			Help: "Batches the server acknowledged (including retried ones it deduplicated)."}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{Name: "rows_total",
			Help: "Rows of the acknowledged batches."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "errors_total",
			Help: "Failed operations, by operation: connect (one server), insert, exec, query."}, []string{"op"}),
		insertTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "insert_seconds",
			Help: "Time to insert one batch, until the server acknowledged it.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
	}
	c.m.conns = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "connections", Help: "Open connections."}, func() float64 {
		c.mu.Lock()
		defer c.mu.Unlock()
		return float64(c.open)
	})
	if reg != nil {
		r := prometheus.WrapRegistererWithPrefix("flowlens_clickhouse_", reg)
		for _, m := range []prometheus.Collector{c.m.inserts, c.m.rows, c.m.errors, c.m.insertTime, c.m.conns} {
			if err := r.Register(m); err != nil {
				return nil, err
			}
		}
	}
	for _, op := range []string{"connect", "insert", "exec", "query"} {
		c.m.errors.WithLabelValues(op)
	}
	return c, nil
}

// InsertQuery is the INSERT of a schema.Batch: the columns are named, so
// the table's own column order does not matter.
func InsertQuery() string {
	return "INSERT INTO flows " + schema.ColumnList(schema.Columns) + " VALUES"
}

// Start connects to the first server that answers and, on a cluster,
// checks that the server knows the cluster.
func (c *Client) Start(ctx context.Context) error {
	conn, err := c.acquire(ctx)
	if err != nil {
		return err
	}
	s := conn.ServerInfo()
	c.release(conn, nil)
	c.log.Info("clickhouse connected", "server", s.DisplayName, "version", fmt.Sprintf("%d.%d.%d", s.Major, s.Minor, s.Patch),
		"database", c.cfg.Database, "cluster", c.cfg.Cluster)
	if c.cfg.Cluster == "" || hasMacro(c.cfg.Cluster) {
		return nil
	}
	n, err := c.QueryStrings(ctx, "SELECT toString(count()) FROM system.clusters WHERE cluster = "+quote(c.cfg.Cluster))
	if err != nil {
		return fmt.Errorf("clickhouse: read system.clusters: %w", err)
	}
	if len(n) != 1 || n[0] == "0" {
		return fmt.Errorf("clickhouse: cluster %q is not in system.clusters of %s (remote_servers in its configuration)", c.cfg.Cluster, s.DisplayName)
	}
	return nil
}

func hasMacro(s string) bool {
	for _, r := range s {
		if r == '{' {
			return true
		}
	}
	return false
}

// Stop closes the connections; those in use close when released.
func (c *Client) Stop() error {
	c.mu.Lock()
	c.stopped = true
	idle := c.idle
	c.idle = nil
	c.open -= len(idle)
	c.mu.Unlock()
	for _, ic := range idle {
		_ = ic.conn.Close()
	}
	return nil
}

// Exec runs a statement that returns no rows worth reading (schema.DB).
// The result of an ON CLUSTER statement (one row per host) is read and
// dropped; a host that failed makes the server raise an exception.
func (c *Client) Exec(ctx context.Context, query string) error {
	var res proto.Results
	err := c.do(ctx, "exec", func(*ch.Client) ch.Query {
		return ch.Query{Body: query, Result: res.Auto(), OnResult: func(context.Context, proto.Block) error { return nil }}
	})
	if err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	return nil
}

// QueryStrings runs a query returning one String column (schema.DB).
func (c *Client) QueryStrings(ctx context.Context, query string) ([]string, error) {
	var (
		res proto.Results
		out []string
	)
	err := c.do(ctx, "query", func(*ch.Client) ch.Query {
		res = nil
		out = nil
		return ch.Query{Body: query, Result: res.Auto(), OnResult: func(context.Context, proto.Block) error {
			if len(res) != 1 {
				return fmt.Errorf("%d columns, want one String column", len(res))
			}
			col, ok := res[0].Data.(proto.ColumnOf[string])
			if !ok {
				return fmt.Errorf("column %s is %s, want String", res[0].Name, res[0].Data.Type())
			}
			for i := range col.Rows() {
				out = append(out, col.Row(i))
			}
			return nil
		}}
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	return out, nil
}

// InsertFlows inserts b as one block, synchronously: when it returns nil
// the server has stored the rows, or had stored them already under the
// same token (insert_deduplication_token, within the tables' deduplication
// window). On a cluster the insert waits until every shard has its rows
// (distributed_foreground_insert). It does not retry: the caller owns the
// batch, which is read until InsertFlows returns, and its retries.
func (c *Client) InsertFlows(ctx context.Context, b *schema.Batch, token string) error {
	if b.Rows() == 0 {
		return nil
	}
	start := time.Now()
	err := c.do(ctx, "insert", func(conn *ch.Client) ch.Query {
		return ch.Query{Body: c.insertQuery, Input: b.Input(), Settings: insertSettings(token, c.cfg.Cluster != "", conn.ServerInfo())}
	})
	if err != nil {
		return fmt.Errorf("clickhouse: insert %d rows: %w", b.Rows(), err)
	}
	c.m.insertTime.Observe(time.Since(start).Seconds())
	c.m.inserts.Inc()
	c.m.rows.Add(float64(b.Rows()))
	return nil
}

// insertSettings are the settings of an insert with token ("" for none),
// into a cluster's Distributed table or not, on server.
func insertSettings(token string, cluster bool, server proto.ServerHello) []ch.Setting {
	var s []ch.Setting
	if token != "" {
		s = append(s,
			ch.Setting{Key: "insert_deduplication_token", Value: token, Important: true},
			// A retry must reach the rollup's view even when flows skips
			// it, for the view's own window to tell (the default before
			// ClickHouse 25 drops it, losing a view insert that failed).
			ch.Setting{Key: "deduplicate_blocks_in_dependent_materialized_views", Value: "1"},
		)
	}
	if cluster {
		// Important: a server that does not know the setting must fail
		// the insert, not acknowledge rows still queued for the shards.
		s = append(s, ch.Setting{Key: foregroundInsertSetting(server), Value: "1", Important: true})
	}
	return s
}

// foregroundInsertSetting names the setting that makes an insert into a
// Distributed table wait for the shards: distributed_foreground_insert
// since ClickHouse 23.10, which keeps the old name as an alias; the old
// name for older servers (23.10 itself takes either).
func foregroundInsertSetting(s proto.ServerHello) string {
	if s.Major > 23 || s.Major == 23 && s.Minor >= 11 {
		return "distributed_foreground_insert"
	}
	return "insert_distributed_sync"
}

// do runs the query q builds on a pooled connection, within QueryTimeout.
func (c *Client) do(ctx context.Context, op string, q func(*ch.Client) ch.Query) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.QueryTimeout)
	defer cancel()
	conn, err := c.acquire(ctx)
	if err == nil {
		err = conn.Do(ctx, q(conn))
		c.release(conn, err)
	}
	if err != nil {
		c.m.errors.WithLabelValues(op).Inc()
	}
	return err
}

// acquire takes an idle connection or dials one, waiting while MaxConns
// are in use.
func (c *Client) acquire(ctx context.Context) (*ch.Client, error) {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for a connection (%d in use): %w", c.cfg.MaxConns, ctx.Err())
	}
	for {
		c.mu.Lock()
		if c.stopped {
			c.mu.Unlock()
			<-c.slots
			return nil, ErrStopped
		}
		if len(c.idle) == 0 {
			c.open++ // counted while dialling, so Stop's count stays right
			c.mu.Unlock()
			break
		}
		ic := c.idle[len(c.idle)-1]
		c.idle = c.idle[:len(c.idle)-1]
		c.mu.Unlock()
		if !ic.conn.IsClosed() && (time.Since(ic.since) < idlePing || c.ping(ctx, ic.conn)) {
			return ic.conn, nil
		}
		c.discard(ic.conn)
	}
	conn, err := c.dial(ctx)
	if err != nil {
		c.mu.Lock()
		c.open--
		c.mu.Unlock()
		<-c.slots
		return nil, err
	}
	return conn, nil
}

// ping checks an idle connection, as long as a dial may take: a server
// gone without closing the connection must not hold the caller for the
// whole query timeout.
func (c *Client) ping(ctx context.Context, conn *ch.Client) bool {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	return conn.Ping(ctx) == nil
}

// release returns conn to the pool after a query that ended with err.
// After a server exception the connection is still in step; after any
// other error (network, cancellation) it is closed.
func (c *Client) release(conn *ch.Client, err error) {
	defer func() { <-c.slots }()
	if (err != nil && !ch.IsException(err)) || conn.IsClosed() {
		c.discard(conn)
		return
	}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		c.discard(conn)
		return
	}
	c.idle = append(c.idle, idleConn{conn, time.Now()})
	c.mu.Unlock()
}

func (c *Client) discard(conn *ch.Client) {
	_ = conn.Close()
	c.mu.Lock()
	c.open--
	c.mu.Unlock()
}

// dial connects to the servers in turn, starting after the one the last
// dial started with, so that connections spread over the servers.
func (c *Client) dial(ctx context.Context) (*ch.Client, error) {
	addrs := c.cfg.Addr
	c.mu.Lock()
	first := c.next
	c.next = (c.next + 1) % len(addrs)
	c.mu.Unlock()
	var errs []error
	for i := range addrs {
		addr := addrs[(first+i)%len(addrs)]
		dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
		conn, err := ch.Dial(dctx, ch.Options{
			Address:     addr,
			Database:    c.cfg.Database,
			User:        c.cfg.User,
			Password:    string(c.cfg.Password),
			ClientName:  "flowlens",
			Compression: ch.CompressionLZ4,
			DialTimeout: c.cfg.DialTimeout,
			TLS:         c.tls,
		})
		var ne net.Error
		timedOut := ctx.Err() == nil && (errors.Is(dctx.Err(), context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout())
		cancel()
		if err == nil {
			return conn, nil
		}
		c.m.errors.WithLabelValues("connect").Inc()
		if timedOut {
			err = fmt.Errorf("no answer within %s: %w", c.cfg.DialTimeout, err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("clickhouse: cannot connect (database %q, user %q): %w", c.cfg.Database, c.cfg.User, errors.Join(errs...))
}

func quote(s string) string {
	r := make([]byte, 0, len(s)+2)
	r = append(r, '\'')
	for i := range len(s) {
		if s[i] == '\\' || s[i] == '\'' {
			r = append(r, '\\')
		}
		r = append(r, s[i])
	}
	return string(append(r, '\''))
}
