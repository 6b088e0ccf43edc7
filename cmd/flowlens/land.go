package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"flowlens/internal/httpd"
	"flowlens/lander"
	"flowlens/schema"
	"flowlens/sink/embedded"
	"flowlens/sink/kafka"
)

// landCmd is the consumer role: Kafka → the store. It stores into the
// embedded engine in DATA_DIR (the HTTP SQL endpoint then serves it).
func landCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("land", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bindFlags(fs, &cfg)
	check := fs.Bool("check", false, "validate the configuration and exit")
	dump := fs.Bool("dump", false, "print the effective configuration and exit")
	if err := loadConfig(fs, args, &cfg); err != nil {
		return err
	}
	if *dump {
		return cfg.dump(stdout)
	}
	if len(cfg.Kafka.Brokers) == 0 {
		return fmt.Errorf("%sKAFKA_BROKERS: flowlens land needs the Kafka brokers (host:port, comma-separated)", envPrefix)
	}
	log := cfg.logger(stderr)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	store, err := embedded.New(cfg.store(), log, reg)
	if err != nil {
		return err
	}
	land, err := lander.New(cfg.Land, cfg.Kafka, store, log, reg)
	if err != nil {
		return err
	}
	if *check {
		fmt.Fprintln(stdout, "configuration ok")
		return nil
	}
	web := httpd.New(cfg.http(), log, reg, store)
	if err := store.Start(ctx); err != nil {
		return err
	}
	if err := land.Start(ctx); err != nil {
		_ = store.Stop()
		return err
	}
	if err := web.Start(ctx); err != nil {
		_ = land.Stop()
		_ = store.Stop()
		return err
	}
	log.Info("flowlens running", "command", "land", "version", version, "topic", cfg.Kafka.TopicName(), "group", cfg.Land.Group)
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping")
	case err := <-web.Err():
		runErr = fmt.Errorf("http server: %w", err)
	}
	web.Stop()
	runErr = errors.Join(runErr, land.Stop(), store.Stop())
	log.Info("stopped")
	return runErr
}

// viaKafka is `flowlens run` with FLOWLENS_KAFKA_BROKERS: the collector
// produces to Kafka and an in-process lander stores into the embedded
// engine, so collectors or landers can later move to other machines
// without changing anything else. Interface counters go straight to the
// store (they are not carried over Kafka).
type viaKafka struct {
	store *embedded.Store
	land  *lander.Lander
	prod  *kafka.Producer
}

func newViaKafka(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*viaKafka, error) {
	store, err := embedded.New(cfg.store(), log, reg)
	if err != nil {
		return nil, err
	}
	k := cfg.Kafka
	if k.SpoolDir == "" {
		k.SpoolDir = filepath.Join(cfg.DataDir, "kafka-spool")
	}
	prod, err := kafka.New(k, log, reg)
	if err != nil {
		return nil, err
	}
	land, err := lander.New(cfg.Land, k, store, log, reg)
	if err != nil {
		return nil, err
	}
	return &viaKafka{store: store, land: land, prod: prod}, nil
}

func (v *viaKafka) Put(f *schema.Flow)                      { v.prod.Put(f) }
func (v *viaKafka) PutCounters(c *schema.InterfaceCounters) { v.store.PutCounters(c) }

// Start opens the store, then the lander, then the producer.
func (v *viaKafka) Start(ctx context.Context) error {
	if err := v.store.Start(ctx); err != nil {
		return err
	}
	if err := v.land.Start(ctx); err != nil {
		_ = v.store.Stop()
		return err
	}
	if err := v.prod.Start(ctx); err != nil {
		_ = v.land.Stop()
		_ = v.store.Stop()
		return err
	}
	return nil
}

// Stop flushes the producer to Kafka (or its spool), lets the lander
// insert what it holds, and closes the store. Records still in Kafka are
// landed at the next start.
func (v *viaKafka) Stop() error {
	return errors.Join(v.prod.Stop(), v.land.Stop(), v.store.Stop())
}
