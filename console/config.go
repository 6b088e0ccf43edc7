package console

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Config of the console. The daemon reads it from the environment with
// its FLOWLENS_ prefix (FLOWLENS_CONSOLE_*).
type Config struct {
	// Enabled serves the console on the HTTP port.
	Enabled bool `env:"CONSOLE_ENABLED" json:"enabled"`
	// BasicUser and BasicPassword, when set, ask for HTTP basic auth on the
	// console's API (the static page itself holds no data).
	BasicUser     string `env:"CONSOLE_USER" json:"user"`
	BasicPassword string `env:"CONSOLE_PASSWORD" json:"-"`
	// Token, when set, is accepted as "Authorization: Bearer <token>".
	Token string `env:"CONSOLE_TOKEN" json:"-"`
	// QueryTimeout bounds each of the pages' own queries (max_execution_time).
	QueryTimeout time.Duration `env:"CONSOLE_QUERY_TIMEOUT" json:"query_timeout"`
	// SQL page limits: rows returned, execution time, bytes of result.
	SQLMaxRows  int           `env:"CONSOLE_SQL_MAX_ROWS" json:"sql_max_rows"`
	SQLTimeout  time.Duration `env:"CONSOLE_SQL_TIMEOUT" json:"sql_timeout"`
	SQLMaxBytes int64         `env:"CONSOLE_SQL_MAX_BYTES" json:"sql_max_bytes"`
	// SQLRemote lets non-loopback clients use the SQL page when no auth is
	// configured. With auth set, authenticated clients may use it anyway.
	SQLRemote bool `env:"CONSOLE_SQL_REMOTE" json:"sql_remote"`
	// ClickHouseURL is the HTTP interface (http://host:8123) of the
	// ClickHouse server `flowlens console` reads, with the user, password
	// and database of FLOWLENS_CLICKHOUSE_*: give it a read-only user.
	ClickHouseURL string `env:"CONSOLE_CLICKHOUSE_URL" json:"clickhouse_url"`
}

// DefaultConfig serves the console without auth, pages' queries bounded to
// 10 s, the SQL page to 10,000 rows, 30 s and 64 MiB.
func DefaultConfig() Config {
	return Config{
		Enabled:      true,
		QueryTimeout: 10 * time.Second,
		SQLMaxRows:   10_000,
		SQLTimeout:   30 * time.Second,
		SQLMaxBytes:  64 << 20,
	}
}

// Validate reports invalid settings, naming the variable.
func (c Config) Validate() error {
	var errs []error
	bad := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("CONSOLE_%s: %s", name, fmt.Sprintf(format, a...)))
	}
	if (c.BasicUser == "") != (c.BasicPassword == "") {
		bad("USER", "CONSOLE_USER and CONSOLE_PASSWORD go together (both set, or neither)")
	}
	if c.Token != "" && len(c.Token) < 16 {
		bad("TOKEN", "a bearer token needs at least 16 characters, got %d", len(c.Token))
	}
	if c.QueryTimeout < time.Second || c.QueryTimeout > time.Hour {
		bad("QUERY_TIMEOUT", "must be between 1s and 1h, got %s", c.QueryTimeout)
	}
	if c.SQLMaxRows < 1 || c.SQLMaxRows > 10_000_000 {
		bad("SQL_MAX_ROWS", "must be between 1 and 10000000, got %d", c.SQLMaxRows)
	}
	if c.SQLTimeout < time.Second || c.SQLTimeout > time.Hour {
		bad("SQL_TIMEOUT", "must be between 1s and 1h, got %s", c.SQLTimeout)
	}
	if c.SQLMaxBytes < 1<<10 {
		bad("SQL_MAX_BYTES", "must be at least 1024, got %d", c.SQLMaxBytes)
	}
	if c.ClickHouseURL != "" {
		u, err := url.Parse(c.ClickHouseURL)
		switch {
		case err != nil:
			bad("CLICKHOUSE_URL", "%v", err)
		case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
			bad("CLICKHOUSE_URL", "want http://host:8123 or https://host:8443, got %q", c.ClickHouseURL)
		case u.User != nil:
			bad("CLICKHOUSE_URL", "put the user and password in FLOWLENS_CLICKHOUSE_USER and FLOWLENS_CLICKHOUSE_PASSWORD, not in the URL")
		}
	}
	return errors.Join(errs...)
}

func (c Config) authRequired() bool { return c.BasicUser != "" || c.Token != "" }
