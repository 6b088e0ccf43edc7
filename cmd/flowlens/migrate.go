package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"flowlens/internal/chdb"
	"flowlens/schema"
	"flowlens/sink/clickhouse"
)

// migrateCmd brings the configured store to the schema of this build: the
// ClickHouse server (or cluster) when FLOWLENS_CLICKHOUSE_ADDR is set, the
// embedded store in the data directory otherwise. `--print` shows the
// statements instead, without connecting, for review.
func migrateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bindFlags(fs, &cfg)
	to := fs.Int("to", schema.Version(), "migrate up to this schema version (to build an older release's schema)")
	printOnly := fs.Bool("print", false, "print the statements a new store would run, without connecting")
	printBackfill := fs.Bool("print-backfill", false, "print the statements filling the hourly rollups from a shard's stored flows (a cluster migrated to version 6), without connecting")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: flowlens migrate [--to N] [--print] [--print-backfill] [flags]")
		fs.PrintDefaults()
	}
	if err := loadConfig(fs, args, &cfg); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("migrate takes no arguments, got %q", fs.Args())
	}
	if *to < 1 || *to > schema.Version() {
		return fmt.Errorf("--to %d: this build knows schema versions 1 to %d", *to, schema.Version())
	}
	tables := cfg.store().Tables
	if cfg.ClickHouse.Configured() {
		tables = cfg.ClickHouse.Tables(tables)
	}
	if *printBackfill {
		if tables.Cluster != "" && tables.Database == "" {
			tables.Database = cfg.ClickHouse.Database
		}
		fmt.Fprintln(stdout, "-- Run on one replica of each shard, landers stopped, in this order: fills the hourly rollups from the shard's flows, then servers_1d from servers_1h (hosts_1d and top_conversations_1d fill themselves).")
		for _, name := range schema.BackfilledRollups() {
			s, err := schema.Backfill(tables, name)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s;\n", s)
		}
		return nil
	}
	if *printOnly {
		script, err := schema.Script(tables, *to)
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, script)
		return err
	}

	db, where, closeDB, err := openForMigration(ctx, cfg, cfg.logger(stderr))
	if err != nil {
		return err
	}
	defer closeDB()
	applied, err := schema.MigrateTo(ctx, db, tables, *to)
	desc := map[int]string{}
	for _, m := range schema.Migrations {
		desc[m.Version] = m.Description
	}
	for _, v := range applied {
		fmt.Fprintf(stdout, "applied %d: %s\n", v, desc[v])
	}
	if err != nil {
		return fmt.Errorf("migrate %s: %w", where, err)
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "nothing to apply")
	}
	v, err := schema.StoredVersion(ctx, db, tables)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", where, err)
	}
	fmt.Fprintf(stdout, "%s: schema version %d\n", where, v)
	return nil
}

// openForMigration connects to the configured store, and names it.
func openForMigration(ctx context.Context, cfg Config, log *slog.Logger) (schema.DB, string, func(), error) {
	if cfg.ClickHouse.Configured() {
		ch := cfg.ClickHouse
		c, err := clickhouse.New(ch, log, nil)
		if err != nil {
			return nil, "", nil, err
		}
		if err := c.Start(ctx); err != nil {
			return nil, "", nil, err
		}
		where := fmt.Sprintf("clickhouse %s, database %s", strings.Join(ch.Addr, ","), ch.Database)
		if ch.Cluster != "" {
			where += ", cluster " + ch.Cluster
		}
		return c, where, func() { _ = c.Stop() }, nil
	}
	conn, err := chdb.Open(cfg.DataDir)
	if err != nil {
		if errors.Is(err, chdb.ErrNoLibrary) {
			return nil, "", nil, fmt.Errorf("embedded store in %s: %w", cfg.DataDir, err)
		}
		return nil, "", nil, fmt.Errorf("embedded store in %s (stop the daemon using it first): %w", cfg.DataDir, err)
	}
	return chdbDB{conn}, "embedded store " + cfg.DataDir, conn.Close, nil
}

// chdbDB is a schema.DB on a chDB session, as the embedded store runs
// its statements (the store itself would migrate to the latest version
// on Start, which --to must not).
type chdbDB struct{ conn *chdb.Conn }

func (d chdbDB) Exec(_ context.Context, query string) error {
	_, err := d.conn.Query([]byte(query), "")
	return err
}

func (d chdbDB) QueryStrings(_ context.Context, query string) ([]string, error) {
	out, err := d.conn.Query([]byte(query), "TSVRaw")
	if err != nil {
		return nil, err
	}
	text := strings.TrimSuffix(string(out), "\n")
	if text == "" {
		return nil, nil
	}
	return strings.Split(text, "\n"), nil
}
