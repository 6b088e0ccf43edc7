// Command flowlens collects NetFlow v5/v9, IPFIX and sFlow, and stores the
// flows in ClickHouse tables, embedded (chDB) by default.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

var version = "dev"

const usage = `flowlens: network flow collector and store.

Usage:
  flowlens run [flags]            collect flows and store them in the embedded store
                                  (through Kafka and an in-process lander when FLOWLENS_KAFKA_BROKERS is set)
  flowlens collect [flags]        collect flows and produce them to Kafka (FLOWLENS_KAFKA_BROKERS)
  flowlens land [flags]           consume flows from Kafka and store them (consumer group FLOWLENS_LAND_GROUP),
                                  into ClickHouse at FLOWLENS_CLICKHOUSE_ADDR, else the embedded store
  flowlens console [flags]        serve the web console from the ClickHouse server at FLOWLENS_CONSOLE_CLICKHOUSE_URL
  flowlens migrate [--to N] [--print]  apply the schema to the ClickHouse server/cluster (or the embedded store)
  flowlens sensor --interface IF [--export HOST:PORT]   DPI sensor: capture, classify, export IPFIX with labels
  flowlens sensor --pcap FILE [--export HOST:PORT]      the same on capture files
  flowlens classify FILE.pcap...  classify the flows of captures, one JSON object per flow
  flowlens query [flags] 'SQL'    run a read-only SQL query (through a running daemon, or on the data directory)
  flowlens decode FILE.pcap...    decode export datagrams in captures, one JSON object per flow
  flowlens version

Configuration comes from FLOWLENS_* environment variables (docs/configuration.md);
flags override them. 'flowlens run --check' validates and exits, '--dump' prints the
effective configuration.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP reloads the policy once `run` or `collect` has started; until
	// then (and in every other command) it must not kill the process, as
	// Go's default would: a reload sent during start-up is simply absorbed.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
	if err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "flowlens:", err)
		}
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	switch args[0] {
	case "run":
		return runCmd(ctx, args[1:], stdout, stderr)
	case "collect":
		return collectCmd(ctx, args[1:], stdout, stderr)
	case "land":
		return landCmd(ctx, args[1:], stdout, stderr)
	case "console":
		return consoleCmd(ctx, args[1:], stdout, stderr)
	case "migrate":
		return migrateCmd(ctx, args[1:], stdout, stderr)
	case "sensor":
		return sensorCmd(ctx, args[1:], stdout, stderr)
	case "classify":
		return classifyCmd(ctx, args[1:], stdout, stderr)
	case "query":
		return queryCmd(ctx, args[1:], stdout, stderr)
	case "decode":
		return decodeCmd(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "flowlens", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}
