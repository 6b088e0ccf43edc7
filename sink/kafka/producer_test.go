package kafka

import (
	"context"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"flowlens/schema"
)

func testConfig(t *testing.T, brokers []string) Config {
	cfg := DefaultConfig()
	cfg.Brokers = brokers
	cfg.Linger = 5 * time.Millisecond
	cfg.SpoolDir = filepath.Join(t.TempDir(), "spool")
	cfg.DrainInterval = 100 * time.Millisecond
	cfg.DeliveryTimeout = time.Second
	cfg.StopTimeout = 2 * time.Second
	return cfg
}

func newCluster(t *testing.T, port int, dataDir string, topics ...string) *kfake.Cluster {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.SeedTopics(4, topics...)}
	if dataDir != "" {
		opts = append(opts, kfake.DataDir(dataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testFlow is flow number i: Bytes carries i so that duplicates and gaps show.
func testFlow(i int) schema.Flow {
	f := fullFlow()
	f.ExporterAddr = netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 7)})
	f.Bytes = uint64(i)
	f.ServerName = "host-" + strconv.Itoa(i)
	return f
}

// consume reads until want distinct flows were seen or the deadline passes,
// and returns how often each flow number arrived.
func consume(t *testing.T, brokers []string, topic string, want int, check func(*kgo.Record, *schema.Flow)) map[uint64]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[uint64]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var f schema.Flow
	for len(seen) < want && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			if err := Decode(r.Value, &f); err != nil {
				t.Fatalf("decode offset %d: %v", r.Offset, err)
			}
			if check != nil {
				check(r, &f)
			}
			seen[f.Bytes]++
		})
	}
	return seen
}

func newProducer(t *testing.T, cfg Config) (*Producer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	p, err := New(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p, reg
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProduceConsumeRoundTrip(t *testing.T) {
	topic := DefaultConfig().TopicName()
	if topic != "flows-v"+strconv.Itoa(schema.RecordVersion()) {
		t.Fatalf("topic %q", topic)
	}
	c := newCluster(t, 0, "", "flows-zstd-v"+strconv.Itoa(schema.RecordVersion()), "flows-lz4-v"+strconv.Itoa(schema.RecordVersion()))
	defer c.Close()
	for _, codec := range []string{"zstd", "lz4"} {
		t.Run(codec, func(t *testing.T) {
			cfg := testConfig(t, c.ListenAddrs())
			cfg.Compression = codec
			cfg.Topic = "flows-" + codec
			p, _ := newProducer(t, cfg)
			const n = 2000
			for i := range n {
				f := testFlow(i)
				p.Put(&f)
			}
			if err := p.Stop(); err != nil {
				t.Fatal(err)
			}
			if got := testutil.ToFloat64(p.m.produced); got != n {
				t.Fatalf("produced %v, want %d", got, n)
			}
			seen := consume(t, c.ListenAddrs(), cfg.TopicName(), n, func(r *kgo.Record, f *schema.Flow) {
				want := testFlow(int(f.Bytes))
				if !reflect.DeepEqual(*f, want) {
					t.Fatalf("flow %d:\n got %+v\nwant %+v", f.Bytes, *f, want)
				}
				if a, _ := netip.AddrFromSlice(r.Key); a != f.ExporterAddr {
					t.Fatalf("key %v, exporter %v", a, f.ExporterAddr)
				}
			})
			for i := range n {
				if seen[uint64(i)] != 1 {
					t.Fatalf("flow %d seen %d times", i, seen[uint64(i)])
				}
			}
		})
	}
}

func TestBrokerOutageSpoolsAndDrains(t *testing.T) {
	// Reserve a port, so the second cluster comes back on the same address.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	topic := DefaultConfig().TopicName()
	// The broker keeps its log and topic ids across the restart, as a
	// real one does.
	kdata := t.TempDir()
	c := newCluster(t, port, kdata, topic)
	brokers := c.ListenAddrs()

	cfg := testConfig(t, brokers)
	cfg.MaxBufferedRecords = 200 // most of the outage goes straight to the spool
	cfg.SpoolSegmentBytes = 64 << 10
	p, reg := newProducer(t, cfg)
	defer p.Stop()

	const before, during = 150, 5000
	for i := range before {
		f := testFlow(i)
		p.Put(&f)
	}
	waitFor(t, "flows before the outage", 10*time.Second, func() bool { return testutil.ToFloat64(p.m.produced) == before })
	c.Close()

	for i := before; i < before+during; i++ {
		f := testFlow(i)
		p.Put(&f)
	}
	// All but what the client still holds in its buffer (up to
	// MaxBufferedRecords, failed to the spool only when its retries give
	// up, which a loaded machine may not reach before the broker returns;
	// then they are delivered from the buffer): the final checks count
	// every flow either way.
	waitFor(t, "the outage to be spooled", 20*time.Second, func() bool {
		return testutil.ToFloat64(p.m.spooled) >= during-float64(cfg.MaxBufferedRecords)
	})
	spooled := testutil.ToFloat64(p.m.spooled)
	if p.spool.bytes() == 0 {
		t.Fatal("spool empty during the outage")
	}

	c = newCluster(t, port, kdata, topic)
	defer c.Close()
	waitFor(t, "the spool to drain", 15*time.Second, func() bool { return p.spool.bytes() == 0 })
	seen := consume(t, brokers, topic, before+during, nil)

	// At least once: every flow arrived, none that was not sent, and
	// the checksum over distinct flows matches.
	h, want := fnv.New64a(), fnv.New64a()
	for i := range before + during {
		if seen[uint64(i)] < 1 {
			t.Fatalf("flow %d lost", i)
		}
		h.Write([]byte(strconv.Itoa(i)))
		want.Write([]byte(strconv.Itoa(i)))
	}
	if len(seen) != before+during || h.Sum64() != want.Sum64() {
		t.Fatalf("%d distinct flows, want %d", len(seen), before+during)
	}
	if got := testutil.ToFloat64(p.m.drained); got < spooled {
		t.Fatalf("drained %v, want >= the %v spooled", got, spooled)
	}
	if got, err := testutil.GatherAndCount(reg, "flowlens_kafka_dropped_total"); err != nil || got != 6 {
		t.Fatalf("dropped series %d, %v", got, err)
	}
	for _, r := range []string{reasonSpoolFull, reasonSpoolError, reasonNoSpool, reasonTorn} {
		if d := testutil.ToFloat64(p.m.dropped.WithLabelValues(r)); d != 0 {
			t.Fatalf("dropped{%s} = %v", r, d)
		}
	}
}

func TestSpoolOverflowIsCounted(t *testing.T) {
	// Nothing listens here: every flow goes to the spool, which holds few.
	cfg := testConfig(t, []string{"127.0.0.1:1"})
	cfg.MaxBufferedRecords = 10
	cfg.SpoolMaxBytes = 4 << 10
	p, _ := newProducer(t, cfg)
	const n = 500
	for i := range n {
		f := testFlow(i)
		p.Put(&f)
	}
	waitFor(t, "all flows accounted", 10*time.Second, func() bool {
		return testutil.ToFloat64(p.m.spooled)+testutil.ToFloat64(p.m.dropped.WithLabelValues(reasonSpoolFull)) == n
	})
	if testutil.ToFloat64(p.m.dropped.WithLabelValues(reasonSpoolFull)) == 0 {
		t.Fatal("no spool_full drops")
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	f := testFlow(0)
	p.Put(&f)
	if d := testutil.ToFloat64(p.m.dropped.WithLabelValues(reasonNotRunning)); d != 1 {
		t.Fatalf("dropped{not_running} = %v", d)
	}
}

// BenchmarkPut measures the collector-side cost of one flow (encode and
// hand-off to kgo) with a kfake broker acknowledging.
func BenchmarkPut(b *testing.B) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, DefaultConfig().TopicName()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cfg := DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.SpoolDir = b.TempDir()
	p, err := New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	f := testFlow(1)
	b.ReportAllocs()
	for b.Loop() {
		p.Put(&f)
	}
	if err := p.Stop(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(testutil.ToFloat64(p.m.spooled), "spooled")
}

// TestSpoolSurvivesRestart: flows spooled while Kafka was away are sent by
// the next run of the producer.
func TestSpoolSurvivesRestart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	cfg := testConfig(t, []string{addr})
	cfg.MaxBufferedRecords = 10
	p, _ := newProducer(t, cfg)
	const n = 1000
	for i := range n {
		f := testFlow(i)
		p.Put(&f)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(p.m.spooled); got != n {
		t.Fatalf("spooled %v at stop, want %d", got, n)
	}

	c := newCluster(t, port, "", cfg.TopicName())
	defer c.Close()
	p2, _ := newProducer(t, cfg)
	defer p2.Stop()
	waitFor(t, "the previous run's spool to drain", 15*time.Second, func() bool { return p2.spool.bytes() == 0 })
	seen := consume(t, []string{addr}, cfg.TopicName(), n, nil)
	if len(seen) != n {
		t.Fatalf("%d distinct flows, want %d", len(seen), n)
	}
}
