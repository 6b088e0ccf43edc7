package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"flowlens/collector"
	"flowlens/internal/httpd"
	"flowlens/sink/embedded"
)

// runCmd is the all-in-one daemon: UDP listeners → decoders → enrich →
// embedded store, plus the HTTP server.
func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
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
	if *check {
		fmt.Fprintln(stdout, "configuration ok")
		return nil
	}
	log := cfg.logger(stderr)
	if cfg.MemoryLimit > 0 {
		// A soft limit: the GC works harder near it. Queues and batches are
		// bounded by configuration; this bounds what garbage adds.
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	store, err := embedded.New(cfg.store(), log, reg)
	if err != nil {
		return err
	}
	coll, err := collector.New(collector.Config{UDP: cfg.udp(), Decoder: cfg.decoder(),
		StatePath: filepath.Join(cfg.DataDir, "templates.state")}, log, reg, store)
	if err != nil {
		return err
	}
	web := httpd.New(cfg.http(), log, reg, store)
	web.HandleJSON("/api/v1/exporters", func() any { return exportersView(coll.Exporters()) })
	web.HandleJSON("/api/v1/templates", func() any { return templatesView(coll.Exporters()) })

	// Start in data-flow order, sinks first so nothing received is lost;
	// stop in reverse: inputs first, the store flushes last.
	if err := store.Start(ctx); err != nil {
		return err
	}
	if err := web.Start(ctx); err != nil {
		_ = store.Stop()
		return err
	}
	if err := coll.Start(ctx); err != nil {
		web.Stop()
		_ = store.Stop()
		return err
	}
	log.Info("flowlens running", "version", version, "data_dir", cfg.DataDir)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping")
	case err := <-web.Err():
		runErr = fmt.Errorf("http server: %w", err)
	}
	stopped := make(chan error, 1)
	go func() {
		coll.Stop()
		web.Stop()
		stopped <- store.Stop()
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
