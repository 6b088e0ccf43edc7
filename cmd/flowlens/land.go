package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"flowlens/internal/httpd"
	"flowlens/lander"
	"flowlens/schema"
	"flowlens/sink/clickhouse"
	"flowlens/sink/embedded"
	"flowlens/sink/kafka"
)

// landCmd is the consumer role: Kafka → the store: the ClickHouse server
// (or cluster) at FLOWLENS_CLICKHOUSE_ADDR, migrated at start, else the
// embedded engine in DATA_DIR (the HTTP SQL endpoint then serves it).
func landCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := DefaultConfig()
	check, dumped, err := roleFlags("land", args, stdout, stderr, &cfg, nil)
	if err != nil || dumped {
		return err
	}
	if len(cfg.Kafka.Brokers) == 0 {
		return fmt.Errorf("%sKAFKA_BROKERS: flowlens land needs the Kafka brokers (host:port, comma-separated)", envPrefix)
	}
	log := cfg.logger(stderr)
	reg := newRegistry()
	var store interface {
		lander.Store
		Start(context.Context) error
		Stop() error
	}
	var querier httpd.Querier
	if cfg.ClickHouse.Configured() {
		c, err := clickhouse.New(cfg.ClickHouse, log, reg)
		if err != nil {
			return err
		}
		store = &migrated{Client: c, tables: cfg.ClickHouse.Tables(cfg.store().Tables), log: log}
	} else {
		s, err := embedded.New(cfg.store(), log, reg)
		if err != nil {
			return err
		}
		store, querier = s, s
	}
	land, err := lander.New(cfg.Land, cfg.Kafka, store, log, reg)
	if err != nil {
		return err
	}
	if check {
		fmt.Fprintln(stdout, "configuration ok")
		return nil
	}
	web := httpd.New(cfg.http(), log, reg, querier)
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

// migrated is the ClickHouse server store, migrated to this build's schema
// at start (idempotent; `flowlens migrate` may have done it already).
type migrated struct {
	*clickhouse.Client
	tables schema.TableConfig
	log    *slog.Logger
}

func (m *migrated) Start(ctx context.Context) error {
	if err := m.Client.Start(ctx); err != nil {
		return err
	}
	applied, err := schema.Migrate(ctx, m.Client, m.tables)
	if err != nil {
		_ = m.Client.Stop()
		return fmt.Errorf("migrate ClickHouse: %w", err)
	}
	m.log.Info("ClickHouse schema ready", "version", schema.Version(), "applied", applied, "cluster", m.tables.Cluster)
	return nil
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
