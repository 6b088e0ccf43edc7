package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"flowlens/internal/chdb"
	"flowlens/internal/httpd"
)

// queryCmd runs SQL through the running daemon's HTTP endpoint (the daemon
// holds the embedded store), or directly on the data directory when no
// daemon answers.
func queryCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "embedded store directory, used when no daemon answers ($FLOWLENS_DATA_DIR)")
	fs.StringVar(&cfg.HTTPListen, "http", cfg.HTTPListen, "address of the running daemon ($FLOWLENS_HTTP_LISTEN)")
	format := fs.String("format", "PrettyCompactMonoBlock", "any ClickHouse output format: PrettyCompact, JSONEachRow, CSVWithNames, TSV, ...")
	fs.Usage = func() { fmt.Fprintln(stderr, "usage: flowlens query [flags] 'SELECT ...'"); fs.PrintDefaults() }
	if err := loadConfig(fs, args, &cfg); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return flag.ErrHelp
	}
	sql := fs.Arg(0)
	if err := httpd.CheckReadOnly(sql); err != nil {
		return err
	}
	out, err := queryHTTP(ctx, cfg.HTTPListen, sql, *format)
	if isRefused(err) {
		out, err = queryDirect(cfg.DataDir, sql, *format)
	}
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

func queryHTTP(ctx context.Context, listen, sql, format string) ([]byte, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("FLOWLENS_HTTP_LISTEN %q: %w", listen, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: httpd.QueryPath, RawQuery: url.Values{"format": {format}}.Encode()}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(sql))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(strings.TrimSpace(string(body)))
	}
	return body, nil
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

func queryDirect(dir, sql, format string) ([]byte, error) {
	conn, err := chdb.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("no daemon answers and the data directory cannot be opened: %w", err)
	}
	defer conn.Close()
	return conn.Query([]byte(sql), format)
}
