// Command kfake runs an in-process Kafka cluster (github.com/twmb/franz-go's
// kfake, which speaks the real protocol) until SIGTERM: the broker of the
// Kafka benchmarks (bench/e2e.sh flowlens-kafka, flowlens-collect), and a
// way to try `flowlens run` with FLOWLENS_KAFKA_BROKERS without a Kafka
// installation. Not for production: it keeps its log in memory unless
// -data-dir is given.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"

	"flowlens/sink/kafka"
)

func main() {
	port := flag.Int("port", 9092, "TCP port of the broker (127.0.0.1)")
	partitions := flag.Int("partitions", 4, "partitions of the seeded topic")
	topic := flag.String("topic", kafka.DefaultConfig().TopicName(), "topic to create")
	dataDir := flag.String("data-dir", "", "keep the log on disk here (default: in memory)")
	flag.Parse()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(*port), kfake.SeedTopics(int32(*partitions), *topic)}
	if *dataDir != "" {
		opts = append(opts, kfake.DataDir(*dataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfake:", err)
		os.Exit(1)
	}
	fmt.Println("kfake listening on", c.ListenAddrs())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	c.Close()
}
