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
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

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

// tapListener wraps kfake's listener: while mute is set, the broker still
// reads and applies requests but its responses are discarded, as when the
// broker dies after appending a batch and before its acknowledgement
// reached the producer.
type tapListener struct {
	net.Listener
	mute *atomic.Bool
}

func (l tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return tapConn{c, l.mute}, nil
}

type tapConn struct {
	net.Conn
	mute *atomic.Bool
}

func (c tapConn) Write(b []byte) (int, error) {
	if c.mute.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// consumeAll reads the whole topic (up to its end offsets) and returns how
// often each flow number arrived, and the number of records.
func consumeAll(t *testing.T, brokers []string, topic string) (map[uint64]int, int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	seen := map[uint64]int{}
	var n int64
	var f schema.Flow
	for n < total && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if err := Decode(r.Value, &f); err != nil {
				t.Fatalf("decode offset %d: %v", r.Offset, err)
			}
			seen[f.Bytes]++
			n++
		})
	}
	if n != total {
		t.Fatalf("read %d of the topic's %d records", n, total)
	}
	return seen, total
}

// TestBrokerKilledWithRecordsInFlight kills the broker while the producer
// streams flows with produce requests in flight, and starts it again on the
// same address with its log. No flow may be lost.
//
// Duplicates are possible, and measured. Every copy beyond the first comes
// from one of two places:
//   - a record the broker appended but whose acknowledgement never came
//     back: it fails by the delivery timeout (AllowIdempotentProduceCancellation
//     lets kgo give up on it), goes to the spool and is re-sent. kgo holds
//     at most MaxBufferedRecords unacknowledged records, so an outage makes
//     at most that many such copies;
//   - a spool segment whose re-send failed part-way (a timeout while the
//     client reconnects after the restart) is re-sent whole: its records
//     acknowledged the first time arrive twice. These are drained_total
//     beyond spooled_total, and each failed attempt re-sends less than one
//     segment.
//
// Kafka keeps each copy at its own offset, so the lander's deduplication
// tokens, made of offsets, store both.
//
// "unanswered": the broker holds produce requests without applying or
// answering them, then is killed: in flight and not stored. "acks lost": the
// broker appends and its answers are lost, then it is killed: in flight and
// stored, the worst case for duplicates.
func TestBrokerKilledWithRecordsInFlight(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ackLoss bool
	}{
		{name: "unanswered"},
		{name: "acks lost", ackLoss: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			port := l.Addr().(*net.TCPAddr).Port
			l.Close()
			topic := DefaultConfig().TopicName()
			kdata := t.TempDir()
			var (
				hold, mute bool // set before the stream starts, read by the broker's goroutine
				armed      atomic.Bool
				inFlight   atomic.Int64 // records in produce requests held or whose answer was lost
			)
			if tc.ackLoss {
				mute = true
			} else {
				hold = true
			}
			var muted atomic.Bool
			start := func() *kfake.Cluster {
				c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(kdata), kfake.SeedTopics(4, topic),
					kfake.ListenFn(func(network, addr string) (net.Listener, error) {
						l, err := net.Listen(network, addr)
						if err != nil {
							return nil, err
						}
						return tapListener{l, &muted}, nil
					}))
				if err != nil {
					t.Fatal(err)
				}
				var kc = c
				c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
					if !armed.Load() {
						return nil, nil, false
					}
					for _, tp := range req.(*kmsg.ProduceRequest).Topics {
						for _, p := range tp.Partitions {
							var b kmsg.RecordBatch
							if b.ReadFrom(p.Records) == nil {
								inFlight.Add(int64(b.NumRecords))
							}
						}
					}
					if hold {
						// Neither applied nor answered: the producer waits.
						kc.KeepControl()
						return nil, nil, true
					}
					muted.Store(mute)
					return nil, nil, false // appended; the answer is lost
				})
				return c
			}
			c := start()
			brokers := c.ListenAddrs()

			cfg := testConfig(t, brokers)
			cfg.MaxBufferedRecords = 2000 // above the drain's batch of 1000
			cfg.SpoolSegmentBytes = 64 << 10
			p, _ := newProducer(t, cfg)
			defer p.Stop()
			f0 := testFlow(0)
			perSegment := int(cfg.SpoolSegmentBytes) / (spoolHeader + 4 + len(Encode(nil, &f0)))

			// The stream: 20 flows every 2 ms, about 10k/s, in the background.
			const n = 20_000
			streamed := make(chan struct{})
			go func() {
				defer close(streamed)
				for i := 0; i < n; {
					for range 20 {
						f := testFlow(i)
						p.Put(&f)
						i++
					}
					time.Sleep(2 * time.Millisecond)
				}
			}()
			waitFor(t, "the stream to flow", 20*time.Second, func() bool { return testutil.ToFloat64(p.m.produced) >= 2000 })
			armed.Store(true)
			waitFor(t, "produce requests in flight", 10*time.Second, func() bool { return inFlight.Load() > 0 })
			buffered, acked := p.cl.BufferedProduceRecords(), testutil.ToFloat64(p.m.produced)
			c.Close()
			killedAt := time.Now()
			armed.Store(false)
			muted.Store(false)
			// Down for longer than the delivery timeout: records in flight
			// fail and are spooled.
			time.Sleep(cfg.DeliveryTimeout + 500*time.Millisecond)
			c = start()
			defer c.Close()
			restarted := time.Now()

			<-streamed
			accounted := func() float64 {
				return testutil.ToFloat64(p.m.produced) + testutil.ToFloat64(p.m.spooled) + testutil.ToFloat64(p.m.dropped.WithLabelValues(reasonSpoolFull)) +
					testutil.ToFloat64(p.m.dropped.WithLabelValues(reasonSpoolError)) + testutil.ToFloat64(p.m.dropped.WithLabelValues(reasonNoSpool))
			}
			waitFor(t, "every flow acknowledged or spooled", 20*time.Second, func() bool { return accounted() == n })
			waitFor(t, "the spool to drain", 20*time.Second, func() bool { return p.spool.bytes() == 0 })
			drainedIn := time.Since(restarted)
			seen, records := consumeAll(t, brokers, topic)

			var lost, dupes, most int
			for i := range n {
				k := seen[uint64(i)]
				switch {
				case k == 0:
					lost++
				case k > 1:
					dupes += k - 1
				}
				most = max(most, k)
			}
			spooled, drained := testutil.ToFloat64(p.m.spooled), testutil.ToFloat64(p.m.drained)
			resent := int(drained - spooled) // copies from segments re-sent whole
			unackedCopies := dupes - resent  // copies of records stored without acknowledgement
			t.Logf("killed with %d records in flight (%d buffered or in flight in all, %v acknowledged before); outage %s; "+
				"spooled %v, drained %v, produce errors %v; spool empty %s after the restart; "+
				"topic holds %d records for %d flows: lost %d, duplicated %d (%d stored unacknowledged, %d from segment re-sends, bound %d + %d per failed drain attempt)",
				inFlight.Load(), buffered, acked, restarted.Sub(killedAt).Round(time.Millisecond),
				spooled, drained, testutil.ToFloat64(p.m.errors), drainedIn.Round(time.Millisecond),
				records, n, lost, dupes, unackedCopies, resent, cfg.MaxBufferedRecords, perSegment)
			if len(seen) != n {
				t.Errorf("%d distinct flow numbers in the topic, want %d", len(seen), n)
			}
			if lost != 0 {
				t.Errorf("%d flows lost", lost)
			}
			// One copy, one from an unacknowledged append, and one per
			// failed drain attempt (two seen after each restart: the
			// first re-sends time out while kgo recovers).
			if most > 3 {
				t.Errorf("a flow arrived %d times", most)
			}
			if unackedCopies < 0 || unackedCopies > cfg.MaxBufferedRecords {
				t.Errorf("%d copies of unacknowledged records, want 0 to %d (what kgo may hold unacknowledged)", unackedCopies, cfg.MaxBufferedRecords)
			}
			if resent > 2*perSegment {
				t.Errorf("%d records re-sent by the drain, more than two failed attempts at one segment (%d records) make", resent, perSegment)
			}
			if tc.ackLoss && unackedCopies == 0 {
				t.Error("records appended without acknowledgement were not duplicated: the outage did not hit them")
			}
			for _, r := range []string{reasonSpoolFull, reasonSpoolError, reasonNoSpool, reasonTorn} {
				if d := testutil.ToFloat64(p.m.dropped.WithLabelValues(r)); d != 0 {
					t.Errorf("dropped{%s} = %v", r, d)
				}
			}
		})
	}
}
