package lander

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"flowlens/internal/chdb"
	"flowlens/schema"
	"flowlens/sink/embedded"
	"flowlens/sink/kafka"
)

// env is one test's Kafka (kfake, 4 partitions) and embedded store.
type env struct {
	t       testing.TB
	cluster *kfake.Cluster
	kcfg    kafka.Config
	store   *embedded.Store
	prod    *kgo.Client
	next    int // number of the next flow produced
}

func newEnv(t testing.TB, opts ...kfake.Opt) *env {
	t.Helper()
	kcfg := kafka.DefaultConfig()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(4, kcfg.TopicName())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	kcfg.Brokers = c.ListenAddrs()
	scfg := embedded.DefaultConfig()
	scfg.DataDir = t.TempDir()
	s, err := embedded.New(scfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		if errors.Is(err, chdb.ErrNoLibrary) && os.Getenv("CI") == "" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	prod, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...), kgo.DefaultProduceTopic(kcfg.TopicName()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	return &env{t: t, cluster: c, kcfg: kcfg, store: s, prod: prod, next: 1}
}

// produce sends n flows numbered from e.next, keyed by 8 exporters as the
// collector keys them. Bytes carries the number: the checksum below sees
// any loss or duplicate.
func (e *env) produce(n int) {
	e.t.Helper()
	var recs []*kgo.Record
	for range n {
		f := flowNumber(e.next)
		e.next++
		recs = append(recs, &kgo.Record{Key: f.ExporterAddr.AsSlice(), Value: kafka.Encode(nil, &f)})
	}
	if err := e.prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
}

// flowNumber is flow i of the tests: Bytes carries i.
func flowNumber(i int) schema.Flow {
	return schema.Flow{TimeReceived: uint32(time.Now().Unix()), Source: schema.SourceIPFIX,
		ExporterAddr: netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 8)}), Bytes: uint64(i), Packets: 1,
		SrcAddr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), DstAddr: netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}),
		SrcPort: uint16(i), DstPort: 443, IPProtocol: 6, Protocol: "TLS", ServerName: "h" + strconv.Itoa(i%1000)}
}

// produced is how many flows were produced so far.
func (e *env) produced() int { return e.next - 1 }

func (e *env) lander(cfg Config, store Store) (*Lander, *prometheus.Registry) {
	e.t.Helper()
	if store == nil {
		store = e.store
	}
	reg := prometheus.NewRegistry()
	l, err := New(cfg, e.kcfg, store, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return l, reg
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.BatchSize = 500
	cfg.MaxRows = 1000
	cfg.BatchInterval = 50 * time.Millisecond
	cfg.SessionTimeout = 6 * time.Second
	cfg.StopTimeout = 5 * time.Second
	return cfg
}

func (e *env) query(q string) string {
	e.t.Helper()
	out, err := e.store.Query(context.Background(), q, "TSV")
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// checksum is count, distinct flow numbers and their sum: every flow
// exactly once gives "n n n(n+1)/2".
func (e *env) checksum() string {
	return e.query("SELECT count(), uniqExact(bytes), sum(bytes) FROM flows")
}

func want(n int) string { return fmt.Sprintf("%d\t%d\t%d", n, n, n*(n+1)/2) }

// waitExactlyOnce waits until the store holds every produced flow, then
// checks that it holds each once (and the rollup agrees).
func (e *env) waitExactlyOnce(d time.Duration) {
	e.t.Helper()
	n := e.produced()
	deadline := time.Now().Add(d)
	for {
		got := e.checksum()
		if got == want(n) {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("store checksum %q, want %q (count, distinct, sum)", got, want(n))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := e.query("SELECT sum(flows) FROM flows_1m"); got != strconv.Itoa(n) {
		e.t.Fatalf("rollup counts %s flows, want %d", got, n)
	}
}

func TestLandExactlyOnce(t *testing.T) {
	e := newEnv(t)
	e.produce(3000)
	l, reg := e.lander(testConfig(), nil)
	e.waitExactlyOnce(20 * time.Second)
	e.produce(2000)
	e.waitExactlyOnce(20 * time.Second)
	if err := l.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(l.m.rows); got != 5000 {
		t.Errorf("rows_total = %v, want 5000", got)
	}
	if got := testutil.ToFloat64(l.m.replays); got != 0 {
		t.Errorf("replays_total = %v on a clean run", got)
	}
	// A restarted lander finds everything committed: nothing more lands.
	l2, _ := e.lander(testConfig(), nil)
	time.Sleep(time.Second)
	l2.Stop()
	e.waitExactlyOnce(time.Second)
	_ = reg
}

// gate is a store that can hold inserts, before or after the real insert,
// until the lander gives up (its context ends): a lander stopped there is
// like one killed between its intent commit and the insert, or between the
// insert and the final commit.
type gate struct {
	Store
	after   bool          // hold after inserting (else before)
	armed   atomic.Bool   // the next insert is held
	held    chan struct{} // closed when an insert is being held
	once    sync.Once
	inserts atomic.Int64
}

func (g *gate) InsertFlows(ctx context.Context, b *schema.Batch, token string) error {
	if !g.armed.Load() {
		g.inserts.Add(1)
		return g.Store.InsertFlows(ctx, b, token)
	}
	if g.after {
		if err := g.Store.InsertFlows(ctx, b, token); err != nil {
			return err
		}
	}
	g.once.Do(func() { close(g.held) })
	<-ctx.Done()
	return ctx.Err()
}

// TestLanderCrashIsExactlyOnce kills a lander in the middle of a batch —
// after its intent was committed, before and after the rows reached the
// store — and starts another: it reads the intent, re-forms the same batch
// and inserts it with the same token, so every flow is stored once.
func TestLanderCrashIsExactlyOnce(t *testing.T) {
	for _, after := range []bool{false, true} {
		t.Run(map[bool]string{false: "before insert", true: "after insert"}[after], func(t *testing.T) {
			e := newEnv(t)
			e.produce(2000)
			g := &gate{Store: e.store, after: after, held: make(chan struct{})}
			l, _ := e.lander(testConfig(), g)
			// Let some batches land normally, then hold one mid-flight.
			deadline := time.Now().Add(10 * time.Second)
			for g.inserts.Load() < 2 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			g.armed.Store(true)
			e.produce(1500)
			select {
			case <-g.held:
			case <-time.After(10 * time.Second):
				t.Fatal("no insert reached the gate")
			}
			l.Stop() // the held insert is abandoned; its intent stays committed
			e.produce(500)
			// The successor cuts batches elsewhere: without the intent
			// its retry would carry another token.
			cfg := testConfig()
			cfg.BatchSize, cfg.MaxRows = 700, 1400
			l2, _ := e.lander(cfg, nil)
			defer l2.Stop()
			e.waitExactlyOnce(20 * time.Second)
			if got := testutil.ToFloat64(l2.m.replays); got < 1 {
				t.Errorf("replays_total = %v: the successor did not replay the intent", got)
			}
		})
	}
}

// TestTwoLandersShareAndHandOver runs two landers in one group: both land
// (the partitions are shared), and when one stops the other takes its
// partitions over; every flow is stored once.
func TestTwoLandersShareAndHandOver(t *testing.T) {
	e := newEnv(t)
	a, _ := e.lander(testConfig(), nil)
	e.produce(2000)
	e.waitExactlyOnce(20 * time.Second)
	b, _ := e.lander(testConfig(), nil)
	defer b.Stop()
	// Produce while the group rebalances, until b has landed some.
	deadline := time.Now().Add(20 * time.Second)
	for testutil.ToFloat64(b.m.rows) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the second lander never landed anything")
		}
		e.produce(200)
		time.Sleep(100 * time.Millisecond)
	}
	e.waitExactlyOnce(20 * time.Second)
	aRows := testutil.ToFloat64(a.m.rows)
	a.Stop()
	e.produce(2000)
	e.waitExactlyOnce(30 * time.Second)
	if testutil.ToFloat64(a.m.rows) != aRows {
		t.Error("stopped lander kept landing")
	}
	t.Logf("rows landed: a %v, b %v", aRows, testutil.ToFloat64(b.m.rows))
}

// owned is how many partitions l was assigned in its current session.
func owned(l *Lander) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.parts)
}

// TestLanderDiesWithoutLeaving: a lander that dies in the middle of a
// batch without leaving the group (a crash or kill -9 sends no
// LeaveGroup) keeps its partitions until its session times out; only then
// does the survivor take them over. It replays the dead lander's intent,
// and every flow is stored once (checksum over all rows).
//
// The death is a Stop with an insert held by the gate (so no held batch is
// inserted on the way out) whose LeaveGroup the broker never applies: its
// client is gone, its heartbeats stop, and the group learns of it only by
// the session timeout, as with a process that was killed.
func TestLanderDiesWithoutLeaving(t *testing.T) {
	for _, after := range []bool{false, true} {
		t.Run(map[bool]string{false: "before insert", true: "after insert"}[after], func(t *testing.T) {
			e := newEnv(t, kfake.GroupMinSessionTimeout(time.Second))
			cfg := testConfig()
			cfg.SessionTimeout = 2 * time.Second
			g := &gate{Store: e.store, after: after, held: make(chan struct{})}
			a, _ := e.lander(cfg, g)
			e.produce(2000)
			e.waitExactlyOnce(20 * time.Second)
			b, _ := e.lander(cfg, nil)
			defer b.Stop()
			deadline := time.Now().Add(20 * time.Second)
			for testutil.ToFloat64(b.m.rows) == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the second lander never landed anything")
				}
				e.produce(200)
				time.Sleep(100 * time.Millisecond)
			}
			e.waitExactlyOnce(20 * time.Second)
			if owned(a) == 0 || owned(b) == 0 || owned(a)+owned(b) != 4 {
				t.Fatalf("partitions owned: a %d, b %d; want them shared", owned(a), owned(b))
			}

			// a dies in the middle of a batch: its intent is committed,
			// the insert held (before or after the rows reached the store).
			g.armed.Store(true)
			e.produce(1500)
			select {
			case <-g.held:
			case <-time.After(10 * time.Second):
				t.Fatal("no insert of the first lander reached the gate")
			}
			var leaves atomic.Int32
			e.cluster.ControlKey(int16(kmsg.LeaveGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
				// Answered without being applied: the member stays in
				// the group. kgo does not retry UNKNOWN_MEMBER_ID.
				leaves.Add(1)
				resp := req.(*kmsg.LeaveGroupRequest).ResponseKind().(*kmsg.LeaveGroupResponse)
				resp.ErrorCode = kerr.UnknownMemberID.Code
				return resp, nil, true
			})
			aRows := testutil.ToFloat64(a.m.rows)
			a.Stop()
			died := time.Now()
			if n := leaves.Load(); n != 1 {
				t.Fatalf("%d LeaveGroup requests intercepted, want 1: the death must not leave the group", n)
			}
			e.produce(500)

			deadline = time.Now().Add(20 * time.Second)
			for owned(b) != 4 {
				if time.Now().After(deadline) {
					t.Fatalf("the survivor owns %d partitions %s after the death", owned(b), time.Since(died))
				}
				time.Sleep(10 * time.Millisecond)
			}
			takeover := time.Since(died)
			// A leave would hand the partitions over at b's next
			// heartbeat (200 ms); the session timeout takes about 2 s.
			if takeover < cfg.SessionTimeout/2 {
				t.Errorf("partitions handed over %s after the death: before the session timeout (%s), a leave reached the group", takeover, cfg.SessionTimeout)
			}
			e.waitExactlyOnce(30 * time.Second)
			if got := testutil.ToFloat64(b.m.replays); got < 1 {
				t.Errorf("replays_total = %v: the survivor did not replay the dead lander's intent", got)
			}
			if testutil.ToFloat64(a.m.rows) != aRows {
				t.Error("the dead lander kept landing")
			}
			t.Logf("takeover %s after the death (session timeout %s); rows landed: a %v, b %v (replays %v); store %s",
				takeover.Round(time.Millisecond), cfg.SessionTimeout, aRows, testutil.ToFloat64(b.m.rows), testutil.ToFloat64(b.m.replays), e.checksum())
		})
	}
}

// flaky fails every insert while down is set.
type flaky struct {
	Store
	down  atomic.Bool
	fails atomic.Int64
}

func (f *flaky) InsertFlows(ctx context.Context, b *schema.Batch, token string) error {
	if f.down.Load() {
		f.fails.Add(1)
		return errors.New("store unavailable")
	}
	return f.Store.InsertFlows(ctx, b, token)
}

// TestStoreOutage: while the store refuses inserts the lander retries and
// Kafka keeps the records; nothing is dropped.
func TestStoreOutage(t *testing.T) {
	e := newEnv(t)
	f := &flaky{Store: e.store}
	f.down.Store(true)
	l, _ := e.lander(testConfig(), f)
	defer l.Stop()
	e.produce(3000)
	deadline := time.Now().Add(10 * time.Second)
	for f.fails.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := e.checksum(); got != "0\t0\t0" {
		t.Fatalf("rows stored while the store was down: %s", got)
	}
	f.down.Store(false)
	e.waitExactlyOnce(30 * time.Second)
	if got := testutil.ToFloat64(l.m.insertErrors); got < 3 {
		t.Errorf("insert_errors_total = %v", got)
	}
}

// TestUndecodableRecordsAreCountedAndSkipped: a record that is not a flow
// is a counted drop; its offset is committed with its batch.
func TestUndecodableRecordsAreCountedAndSkipped(t *testing.T) {
	e := newEnv(t)
	e.produce(100)
	if err := e.prod.ProduceSync(context.Background(), &kgo.Record{Key: []byte{1}, Value: []byte{0xff, 0xff, 0xff}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	e.produce(100)
	l, _ := e.lander(testConfig(), nil)
	e.waitExactlyOnce(20 * time.Second)
	l.Stop()
	if got := testutil.ToFloat64(l.m.dropped.WithLabelValues("undecodable")); got != 1 {
		t.Errorf("undecodable drops = %v, want 1", got)
	}
	if got := testutil.ToFloat64(l.m.records); got != 201 {
		t.Errorf("records_total = %v, want 201", got)
	}
}

func TestConfigValidate(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"group":    func(c *Config) { c.Group = "" },
		"batch":    func(c *Config) { c.BatchSize = 0 },
		"max rows": func(c *Config) { c.MaxRows = c.BatchSize - 1 },
		"interval": func(c *Config) { c.BatchInterval = 0 },
		"session":  func(c *Config) { c.SessionTimeout = time.Millisecond },
	} {
		c := DefaultConfig()
		mod(&c)
		if c.Validate() == nil {
			t.Errorf("%s: invalid config accepted", name)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}
