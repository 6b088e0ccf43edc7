package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"flowlens/schema"
	"flowlens/sink/kafka"
)

// TestCollectToKafka: softflowd exports a capture to `flowlens collect`,
// which produces every flow to an in-process Kafka cluster (kfake); the
// records decode back to the exporter's totals. No libchdb is needed.
func TestCollectToKafka(t *testing.T) {
	needCmd(t, "softflowd")
	topic := kafka.DefaultConfig().TopicName()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	dir := t.TempDir()
	d := &daemon{t: t, dir: dir, netflow: freePort(t, "udp"), sflow: freePort(t, "udp"), httpP: freePort(t, "tcp")}
	d.env = []string{"FLOWLENS_KAFKA_BROKERS=" + brokers[0], "FLOWLENS_KAFKA_LINGER=5ms", "CHDB_LIB_PATH=/nonexistent/libchdb.so"}
	d.command = "collect"
	d.start()
	defer d.stop()

	runSoftflowd(t, filepath.Join(corpus, "dpi", "public", "dropbox.pcap"), d.netflow, 9)
	e := readExpect(t, "softflowd-v9-dropbox")

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var n int
	var bytes, packets uint64
	var f schema.Flow
	for n < e.DataRecords && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if err := kafka.Decode(r.Value, &f); err != nil {
				t.Fatal(err)
			}
			if f.Source != schema.SourceNetFlowV9 || f.Protocol == "" {
				t.Fatalf("record: %+v", f)
			}
			n++
			bytes += f.Bytes
			packets += f.Packets
		})
	}
	if n != e.DataRecords || bytes != e.BytesSum || packets != e.PacketsSum {
		t.Fatalf("kafka holds %d records, %d bytes, %d packets; want %d, %d, %d\n%s", n, bytes, packets, e.DataRecords, e.BytesSum, e.PacketsSum, d.logText())
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
	if _, err := os.Stat(filepath.Join(dir, "data", "chdb")); err == nil {
		t.Fatal("collect opened an embedded store")
	}
}
