package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

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
// spools, then drains) and a lander killed with SIGKILL while landing.
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

	// Lander crash: kill it while it lands the third export, start it again
	// on the same store.
	before, _ := strconv.Atoi(land.query("SELECT count() FROM flows"))
	runSoftflowd(t, capture("kerberos"), coll.netflow, 9)
	deadline = time.Now().Add(30 * time.Second)
	for {
		n, _ := strconv.Atoi(land.query("SELECT count() FROM flows"))
		if n > before || time.Now().After(deadline) {
			t.Logf("killing the lander with %d of %d rows stored", n, before+c.DataRecords)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = land.cmd.Process.Signal(syscall.SIGKILL)
	_ = land.cmd.Wait()
	land.cmd = nil
	land.log.Close()
	land.start()
	waitSums(t, land, total(a, b, c), "after the lander crash")
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
