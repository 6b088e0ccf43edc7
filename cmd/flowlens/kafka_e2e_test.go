package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"flowlens/sink/kafka"
)

// kafkaCluster is an in-process Kafka (kfake) on a fixed port with its log
// on disk, so that it can be stopped and started again like a broker.
type kafkaCluster struct {
	t    *testing.T
	port int
	dir  string
	c    *kfake.Cluster
}

func newKafkaCluster(t *testing.T) *kafkaCluster {
	k := &kafkaCluster{t: t, port: freePort(t, "tcp"), dir: t.TempDir()}
	k.start()
	t.Cleanup(k.stop)
	return k
}

func (k *kafkaCluster) start() {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(k.port), kfake.DataDir(k.dir),
		kfake.SeedTopics(4, kafka.DefaultConfig().TopicName()))
	if err != nil {
		k.t.Fatal(err)
	}
	k.c = c
}

func (k *kafkaCluster) stop() {
	if k.c != nil {
		k.c.Close()
		k.c = nil
	}
}

func (k *kafkaCluster) addr() string { return fmt.Sprintf("127.0.0.1:%d", k.port) }

// sums is count, sum(bytes), sum(packets) of the stored flows.
func sums(d *daemon) string {
	return d.query("SELECT count(), sum(bytes), sum(packets) FROM flows")
}

// waitSums waits until the store's sums are want and stay so.
func waitSums(t *testing.T, d *daemon, want string, what string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := sums(d)
		if got == want {
			time.Sleep(time.Second) // nothing more arrives
			if got = sums(d); got == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: store holds %q (count, bytes, packets), want %q\n%s", what, got, want, d.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func total(es ...expect) string {
	var n int
	var b, p uint64
	for _, e := range es {
		n += e.DataRecords
		b += e.BytesSum
		p += e.PacketsSum
	}
	return fmt.Sprintf("%d\t%d\t%d", n, b, p)
}

// TestKafkaChain is the scale-out chain with real processes: softflowd →
// `flowlens collect` → Kafka (kfake) → `flowlens land` → chDB. Every
// exported record is stored exactly once (count, bytes and packets equal
// softflowd's export as tshark read it), across a broker outage (collect
// spools, then drains) and a lander killed with SIGKILL between a batch's
// insert and its commit (the restart replays it; the token deduplicates it).
func TestKafkaChain(t *testing.T) {
	needChdb(t)
	needCmd(t, "softflowd")
	k := newKafkaCluster(t)

	coll := &daemon{t: t, dir: t.TempDir(), netflow: freePort(t, "udp"), sflow: freePort(t, "udp"), httpP: freePort(t, "tcp"), command: "collect"}
	coll.env = []string{"FLOWLENS_KAFKA_BROKERS=" + k.addr(), "FLOWLENS_KAFKA_LINGER=5ms",
		"FLOWLENS_KAFKA_DELIVERY_TIMEOUT=1s", "FLOWLENS_KAFKA_DRAIN_INTERVAL=200ms", "CHDB_LIB_PATH=/nonexistent/libchdb.so"}
	coll.start()
	defer coll.stop()

	land := &daemon{t: t, dir: t.TempDir(), netflow: freePort(t, "udp"), sflow: freePort(t, "udp"), httpP: freePort(t, "tcp"), command: "land"}
	land.env = []string{"FLOWLENS_KAFKA_BROKERS=" + k.addr(), "FLOWLENS_LAND_BATCH_SIZE=20", "FLOWLENS_LAND_MAX_ROWS=40",
		"FLOWLENS_LAND_BATCH_INTERVAL=100ms", "FLOWLENS_LAND_SESSION_TIMEOUT=6s"}
	land.start()
	defer land.stop()

	capture := func(name string) string { return filepath.Join(corpus, "dpi", "public", name+".pcap") }
	a, b, c := readExpect(t, "softflowd-v9-dropbox"), readExpect(t, "softflowd-v9-http_ipv6"), readExpect(t, "softflowd-v9-kerberos")

	runSoftflowd(t, capture("dropbox"), coll.netflow, 9)
	waitSums(t, land, total(a), "first export")

	// Broker outage: the collector spools what Kafka cannot take and
	// drains it when the broker is back.
	k.stop()
	runSoftflowd(t, capture("http_ipv6"), coll.netflow, 9)
	deadline := time.Now().Add(30 * time.Second)
	for coll.metric("flowlens_kafka_spooled_total") < float64(b.DataRecords) {
		if time.Now().After(deadline) {
			t.Fatalf("collector spooled %v records during the outage, want %d\n%s", coll.metric("flowlens_kafka_spooled_total"), b.DataRecords, coll.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
	k.start()
	waitSums(t, land, total(a, b), "after the broker outage")
	if got := coll.metric("flowlens_kafka_drained_total"); got < float64(b.DataRecords) {
		t.Errorf("drained_total = %v, want >= %d", got, b.DataRecords)
	}

	// Lander crash in the middle of a batch. The broker watches the
	// lander's commits; at the first final commit of the third export,
	// that batch's intent is committed and the store has acknowledged its
	// insert (the lander commits only after that): the broker kills the
	// lander with SIGKILL there and never applies the commit. The restarted
	// lander must read the intent, re-form the same batch and insert it with
	// the same token, which the store skips.
	type batch struct {
		partition  int32
		first, end int64
	}
	const (
		watching = iota
		killed   // until the process is reaped, refuse every commit
		released
	)
	var phase atomic.Int32
	cut := make(chan batch, 1)
	intents := map[int32]int64{} // control functions run one at a time
	proc, kc := land.cmd.Process, k.c
	kc.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		switch phase.Load() {
		case killed:
			kc.KeepControl()
			return nil, errors.New("lander killed"), true
		case released:
			kc.DropControl()
			return nil, nil, false
		}
		for _, tp := range req.(*kmsg.OffsetCommitRequest).Topics {
			for _, p := range tp.Partitions {
				if p.Metadata != nil && strings.HasPrefix(*p.Metadata, "flowlens-land end=") {
					intents[p.Partition] = p.Offset
					continue
				}
				first, ok := intents[p.Partition]
				if !ok {
					continue
				}
				_ = proc.Signal(syscall.SIGKILL)
				phase.Store(killed)
				cut <- batch{p.Partition, first, p.Offset}
				kc.KeepControl()
				return nil, errors.New("lander killed"), true
			}
		}
		return nil, nil, false
	})
	runSoftflowd(t, capture("kerberos"), coll.netflow, 9)
	var inFlight batch
	select {
	case inFlight = <-cut:
	case <-time.After(30 * time.Second):
		t.Fatalf("the lander committed no batch of the third export\n%s", land.logText())
	}
	_ = land.cmd.Wait()
	phase.Store(released)
	t.Logf("lander killed after inserting partition %d offsets [%d, %d) and before committing them", inFlight.partition, inFlight.first, inFlight.end)
	land.cmd = nil
	land.log.Close()
	land.start()
	waitSums(t, land, total(a, b, c), "after the lander crash")
	// The killed batch was replayed, not read afresh: with the final
	// count exact, its second insert was skipped by the token.
	t.Logf("restarted lander: replays_total %v, rows_total %v (deduplicated rows included)", land.metric("flowlens_land_replays_total"), land.metric("flowlens_land_rows_total"))
	if got := land.metric("flowlens_land_replays_total"); got < 1 {
		t.Errorf("replays_total = %v after the restart: the batch in flight at the kill was not replayed from its intent", got)
	}
	if got := land.metric("flowlens_land_dropped_total"); got != 0 {
		t.Errorf("lander dropped %v records", got)
	}
	if got := coll.metricBy("flowlens_kafka_dropped_total", ""); got != 0 {
		t.Errorf("collector dropped %v records", got)
	}
}

// TestRunThroughKafka: `flowlens run` with FLOWLENS_KAFKA_BROKERS goes
// through Kafka and an in-process lander into its embedded store.
func TestRunThroughKafka(t *testing.T) {
	needChdb(t)
	needCmd(t, "softflowd")
	k := newKafkaCluster(t)
	d := startDaemon(t, t.TempDir(), "FLOWLENS_KAFKA_BROKERS="+k.addr(), "FLOWLENS_KAFKA_LINGER=5ms", "FLOWLENS_LAND_BATCH_INTERVAL=100ms")
	runSoftflowd(t, filepath.Join(corpus, "dpi", "public", "dropbox.pcap"), d.netflow, 10)
	e := readExpect(t, "softflowd-ipfix-dropbox")
	waitSums(t, d, total(e), "run through Kafka")
	if got := d.metric("flowlens_kafka_produced_total"); got != float64(e.DataRecords) {
		t.Errorf("produced_total = %v, want %d", got, e.DataRecords)
	}
	if got := d.metric("flowlens_land_rows_total"); got != float64(e.DataRecords) {
		t.Errorf("land rows_total = %v, want %d", got, e.DataRecords)
	}
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range d.metricNames() {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("metric %s is not in docs/metrics.md", name)
		}
	}
}
