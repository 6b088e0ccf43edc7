package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"flowlens/console"
	"flowlens/internal/httpd"
	"flowlens/schema"
)

// consoleCmd is the scale-out console role: the web console and the
// read-only /api/v1/query on the HTTP port, answered by a ClickHouse
// server's HTTP interface (FLOWLENS_CONSOLE_CLICKHOUSE_URL), with the
// user, password and database of FLOWLENS_CLICKHOUSE_*. It holds no state:
// run as many as needed behind a load balancer.
func consoleCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := DefaultConfig()
	check, dumped, err := roleFlags("console", args, stdout, stderr, &cfg, func(fs *flag.FlagSet) {
		fs.StringVar(&cfg.Console.ClickHouseURL, "clickhouse-url", cfg.Console.ClickHouseURL, "ClickHouse HTTP interface, http://host:8123 ($FLOWLENS_CONSOLE_CLICKHOUSE_URL)")
	})
	if err != nil || dumped {
		return err
	}
	if cfg.Console.ClickHouseURL == "" {
		return fmt.Errorf("%sCONSOLE_CLICKHOUSE_URL: flowlens console needs the ClickHouse server's HTTP interface (http://host:8123)", envPrefix)
	}
	if check {
		fmt.Fprintln(stdout, "configuration ok")
		return nil
	}
	log := cfg.logger(stderr)
	reg := newRegistry()
	wait := max(cfg.Console.QueryTimeout, cfg.Console.SQLTimeout) + 5*time.Second
	srv := &console.Server{URL: cfg.Console.ClickHouseURL, Database: cfg.ClickHouse.Database, User: cfg.ClickHouse.User,
		Password: string(cfg.ClickHouse.Password), Client: &http.Client{Timeout: wait}, Cfg: cfg.Console}
	checkSchema(ctx, srv, log)
	c, err := console.New(cfg.Console, console.Deps{Querier: srv, SQL: srv, Log: log.With("component", "console"), Registerer: reg})
	if err != nil {
		return err
	}
	web := httpd.New(cfg.http(), log, reg, srv)
	c.Register(web)
	if err := web.Start(ctx); err != nil {
		return err
	}
	log.Info("flowlens running", "command", "console", "version", version, "clickhouse", cfg.Console.ClickHouseURL, "database", cfg.ClickHouse.Database)
	<-ctx.Done()
	log.Info("stopping")
	web.Stop()
	return nil
}

// checkSchema logs the store's schema version: the console's long ranges
// need the hourly rollups of version 6 (`flowlens migrate`). An
// unreachable server is only logged: the console starts, and its pages say
// what the server answers once it does.
func checkSchema(ctx context.Context, srv *console.Server, log interface {
	Info(string, ...any)
	Warn(string, ...any)
}) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := srv.Query(ctx, "SELECT max(version) FROM schema_migrations", "TSV")
	if err != nil {
		log.Warn("clickhouse: cannot read the schema version", "err", err)
		return
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(out)))
	switch {
	case err != nil:
		log.Warn("clickhouse: unreadable schema version", "answer", strings.TrimSpace(string(out)))
	case v < schema.Version():
		log.Warn("clickhouse: the schema is older than this build: run flowlens migrate", "stored", v, "build", schema.Version())
	default:
		log.Info("clickhouse schema", "version", v)
	}
}
