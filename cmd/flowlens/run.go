package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"flowlens/collector"
	"flowlens/console"
	"flowlens/enrich"
	"flowlens/internal/httpd"
	"flowlens/schema"
	"flowlens/sensor"
	"flowlens/sensor/export"
	"flowlens/sink/embedded"
	"flowlens/sink/kafka"
)

// runCmd is the all-in-one daemon: UDP listeners → decoders → enrich →
// embedded store, plus the HTTP server with SQL. With FLOWLENS_KAFKA_BROKERS
// set, flows go through Kafka and an in-process lander (viaKafka).
func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return serve(ctx, "run", args, stdout, stderr, func(cfg Config, log *slog.Logger, reg prometheus.Registerer) (sink, httpd.Querier, error) {
		if len(cfg.Kafka.Brokers) > 0 {
			v, err := newViaKafka(cfg, log, reg)
			if err != nil {
				return nil, nil, err
			}
			return v, v.store, nil
		}
		s, err := embedded.New(cfg.store(), log, reg)
		return s, s, err
	})
}

// collectCmd is the collector without a store: flows go to Kafka, for
// `flowlens land` (or any consumer) to store.
func collectCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return serve(ctx, "collect", args, stdout, stderr, func(cfg Config, log *slog.Logger, reg prometheus.Registerer) (sink, httpd.Querier, error) {
		if len(cfg.Kafka.Brokers) == 0 {
			return nil, nil, fmt.Errorf("%sKAFKA_BROKERS: flowlens collect needs the Kafka brokers (host:port, comma-separated)", envPrefix)
		}
		k := cfg.Kafka
		if k.SpoolDir == "" {
			k.SpoolDir = filepath.Join(cfg.DataDir, "kafka-spool")
		}
		p, err := kafka.New(k, log, reg)
		return p, nil, err
	})
}

// localIPFIX is the loopback address of this daemon's IPFIX listener (or
// of its NetFlow one, which takes IPFIX too), for the in-process sensor.
func localIPFIX(cfg Config) (string, error) {
	for _, l := range append(append([]string{}, cfg.IPFIXListen...), cfg.NetFlowListen...) {
		host, port, err := net.SplitHostPort(l)
		if err != nil {
			continue
		}
		switch host {
		case "", "0.0.0.0":
			host = "127.0.0.1"
		case "::":
			host = "::1"
		}
		return net.JoinHostPort(host, port), nil
	}
	return "", fmt.Errorf("%sIPFIX_LISTEN and %sNETFLOW_LISTEN are disabled: the sensor has nowhere to export", envPrefix, envPrefix)
}

// alertSinkOf is the store of the daemon's alerts: the embedded store,
// directly or behind the Kafka path of run; nil for collect, whose
// alerts go to the metrics and the policy's webhook and syslog only.
func alertSinkOf(out sink, q httpd.Querier) enrich.AlertSink {
	if a, ok := out.(enrich.AlertSink); ok {
		return a
	}
	if a, ok := q.(enrich.AlertSink); ok {
		return a
	}
	return nil
}

// sink is where a daemon's flows go: the embedded store or Kafka.
type sink interface {
	collector.Sink
	Start(context.Context) error
	Stop() error
}

func serve(ctx context.Context, name string, args []string, stdout, stderr io.Writer,
	newSink func(Config, *slog.Logger, prometheus.Registerer) (sink, httpd.Querier, error)) error {
	cfg := DefaultConfig()
	check, dumped, err := roleFlags(name, args, stdout, stderr, &cfg, func(fs *flag.FlagSet) {
		if name == "run" {
			bindSensorFlags(fs, &cfg)
		}
	})
	if err != nil || dumped {
		return err
	}
	log := cfg.logger(stderr)
	reg := newRegistry()
	out, querier, err := newSink(cfg, log, reg)
	if err != nil {
		return err
	}
	if check {
		fmt.Fprintln(stdout, "configuration ok")
		return nil
	}
	if cfg.MemoryLimit > 0 {
		// A soft limit: the GC works harder near it. Queues and batches are
		// bounded by configuration; this bounds what garbage adds.
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	chain, err := enrich.New(cfg.Enrich, log, reg, alertSinkOf(out, querier))
	if err != nil {
		return err
	}
	coll, err := collector.New(collector.Config{UDP: cfg.udp(), Decoder: cfg.decoder(),
		StatePath: filepath.Join(cfg.DataDir, "templates.state"), Enrich: func() func(*schema.Flow) { return chain.NewWorker().Enrich }}, log, reg, out)
	if err != nil {
		return err
	}
	web := httpd.New(cfg.http(), log, reg, querier)
	web.HandleJSON("/api/v1/exporters", func() any { return exportersView(coll.Exporters()) })
	web.HandleJSON("/api/v1/templates", func() any { return templatesView(coll.Exporters()) })

	// Start in data-flow order, the sink first so nothing received is lost;
	// stop in reverse: inputs first, the sink flushes last.
	if err := out.Start(ctx); err != nil {
		return err
	}
	// The web console reads the embedded store through sessions of its own
	// (read-only, parameters bound by the engine): opened once the store
	// is, closed before it stops.
	var cons *console.Embedded
	stopStore := func() {
		if cons != nil {
			cons.Close()
		}
		_ = out.Stop()
	}
	if cfg.Console.Enabled && querier != nil {
		if cons, err = console.OpenEmbedded(cfg.DataDir, cfg.Console); err != nil {
			_ = out.Stop()
			return fmt.Errorf("web console: %w", err)
		}
		c, err := console.New(cfg.Console, console.Deps{Querier: cons, SQL: cons, Log: log.With("component", "console"),
			Exporters: func() any { return exportersView(coll.Exporters()) }, Registerer: reg})
		if err != nil {
			stopStore()
			return err
		}
		c.Register(web)
	}
	if err := chain.Start(ctx); err != nil {
		stopStore()
		return err
	}
	if err := web.Start(ctx); err != nil {
		chain.Stop()
		stopStore()
		return err
	}
	if err := coll.Start(ctx); err != nil {
		web.Stop()
		chain.Stop()
		stopStore()
		return err
	}
	// SIGHUP re-reads the policy file (it is also watched for changes).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := chain.Reload(); err != nil {
					log.Error("policy reload on SIGHUP failed, the previous policy stays", "err", err)
				}
			}
		}
	}()
	// `run --interface`: the DPI sensor in the same process, exporting
	// IPFIX to this daemon's own listener, so its flows take the path of
	// any exporter's.
	var sens *sensor.Sensor
	var exp *export.Exporter
	if name == "run" && cfg.Sensor.Interface != "" {
		ecfg := cfg.Export
		addr, err := localIPFIX(cfg)
		if err == nil {
			ecfg.Collectors = []string{addr}
			exp, err = export.New(ecfg, log, reg)
		}
		if err == nil {
			err = exp.Start(ctx)
		}
		if err == nil {
			sens, err = startSensor(ctx, cfg, nil, exp, log, reg)
			if err != nil {
				exp.Stop()
			}
		}
		if err != nil {
			coll.Stop()
			web.Stop()
			chain.Stop()
			stopStore()
			return fmt.Errorf("sensor on %s: %w", cfg.Sensor.Interface, err)
		}
		log.Info("sensor running", "interface", cfg.Sensor.Interface, "export", addr)
	}
	log.Info("flowlens running", "command", name, "version", version, "data_dir", cfg.DataDir)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping")
	case err := <-web.Err():
		runErr = fmt.Errorf("http server: %w", err)
	}
	stopped := make(chan error, 1)
	go func() {
		if sens != nil {
			sens.Stop()
			exp.Stop()
			time.Sleep(200 * time.Millisecond) // the last IPFIX messages reach the listener
		}
		coll.Stop()
		web.Stop()
		if cons != nil {
			cons.Close()
		}
		chain.Stop() // the detections' last counts reach the store
		stopped <- out.Stop()
	}()
	select {
	case err := <-stopped:
		if err != nil && runErr == nil {
			runErr = fmt.Errorf("flush on stop: %w", err)
		}
	case <-time.After(60 * time.Second):
		runErr = fmt.Errorf("stop timed out after 60s")
	}
	log.Info("stopped")
	return runErr
}
