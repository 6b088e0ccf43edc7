package clickhouse

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"flowlens/schema"
)

// Config of the ClickHouse client. The environment variables carry the
// caller's prefix (FLOWLENS_ in the daemon).
type Config struct {
	// Addr lists servers as host:port of the native protocol (9000, 9440
	// with TLS). Connections go to the first that answers, in turn, so any
	// server of a cluster will do. Empty: no ClickHouse server configured.
	Addr     []string `env:"CLICKHOUSE_ADDR" json:"addr"`
	Database string   `env:"CLICKHOUSE_DATABASE" json:"database"`
	User     string   `env:"CLICKHOUSE_USER" json:"user"`
	Password Secret   `env:"CLICKHOUSE_PASSWORD" json:"password"`
	// Cluster is the cluster (remote_servers name, or a macro such as
	// {cluster}) the tables are spread over: each table is then a
	// Replicated table on every shard plus a Distributed table over them
	// (schema/cluster.go). "" for a single server.
	Cluster string `env:"CLICKHOUSE_CLUSTER" json:"cluster"`
	TLS     bool   `env:"CLICKHOUSE_TLS" json:"tls"`
	// DialTimeout bounds the connection and handshake to one server.
	DialTimeout time.Duration `env:"CLICKHOUSE_DIAL_TIMEOUT" json:"dial_timeout"`
	// QueryTimeout bounds one statement or insert, waiting for a
	// connection included. ON CLUSTER statements wait for every host, up
	// to the server's distributed_ddl_task_timeout (180 s by default).
	QueryTimeout time.Duration `env:"CLICKHOUSE_QUERY_TIMEOUT" json:"query_timeout"`
	// MaxConns bounds the open connections; a caller beyond it waits.
	MaxConns int `env:"CLICKHOUSE_MAX_CONNS" json:"max_conns"`
}

// DefaultConfig is a local server's default user and database, not
// configured (no address).
func DefaultConfig() Config {
	return Config{
		Database:     "default",
		User:         "default",
		DialTimeout:  5 * time.Second,
		QueryTimeout: 5 * time.Minute,
		MaxConns:     4,
	}
}

// Configured reports whether a server address is set.
func (c Config) Configured() bool { return len(c.Addr) > 0 }

// Tables returns t (the TTLs) with the cluster layout of c.
func (c Config) Tables(t schema.TableConfig) schema.TableConfig {
	t.Cluster, t.Database = c.Cluster, c.Database
	return t
}

// FieldError is an invalid setting, named by its environment variable.
type FieldError struct {
	Var string // e.g. FLOWLENS_CLICKHOUSE_ADDR
	Msg string
}

func (e *FieldError) Error() string { return e.Var + ": " + e.Msg }

// Validate reports every invalid setting, naming its variable without
// prefix. An unconfigured client (no Addr) is valid unless other settings
// need a server.
func (c Config) Validate() error { return c.ValidateEnv("") }

// ValidateEnv is Validate naming the variables with prefix (the daemon's
// FLOWLENS_). The error joins *FieldError values.
func (c Config) ValidateEnv(prefix string) error {
	var errs []error
	bad := func(v, format string, args ...any) {
		errs = append(errs, &FieldError{Var: prefix + v, Msg: fmt.Sprintf(format, args...)})
	}
	for _, a := range c.Addr {
		host, port, err := net.SplitHostPort(a)
		if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
			bad("CLICKHOUSE_ADDR", "%q is not host:port (the native protocol: clickhouse:9000, or 9440 with TLS)", a)
		}
	}
	if !c.Configured() {
		if c.Cluster != "" {
			bad("CLICKHOUSE_CLUSTER", "%q is set but %sCLICKHOUSE_ADDR is empty: the cluster needs a server to connect to", c.Cluster, prefix)
		}
		return errors.Join(errs...)
	}
	if err := schema.ValidDatabase(c.Database); err != nil {
		bad("CLICKHOUSE_DATABASE", "%v", err)
	}
	if strings.TrimSpace(c.User) == "" {
		bad("CLICKHOUSE_USER", "must not be empty (the server's default user is \"default\")")
	}
	if err := schema.ValidCluster(c.Cluster); err != nil {
		bad("CLICKHOUSE_CLUSTER", "%v", err)
	}
	if c.DialTimeout <= 0 {
		bad("CLICKHOUSE_DIAL_TIMEOUT", "must be > 0, got %s", c.DialTimeout)
	}
	if c.QueryTimeout <= 0 {
		bad("CLICKHOUSE_QUERY_TIMEOUT", "must be > 0, got %s", c.QueryTimeout)
	}
	if c.MaxConns < 1 || c.MaxConns > 1024 {
		bad("CLICKHOUSE_MAX_CONNS", "%d is out of range 1..1024", c.MaxConns)
	}
	return errors.Join(errs...)
}

// Secret is a string that prints redacted (in --dump, logs and JSON), so
// that the password does not leak where the configuration is shown.
type Secret string

const redacted = "(redacted)"

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// MarshalText redacts the secret in JSON and text encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
