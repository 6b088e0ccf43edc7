package console

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"flowlens/internal/chdb"
)

// Embedded answers the console from the embedded store (chDB) of this
// process, through its own engine sessions on the store's data directory:
// libchdb runs one engine per process and lets further connections to the
// same path attach to it as independent sessions. That gives the console
// what the store's Query lacks:
//
//   - server-side parameters (chdb_query_with_params_n: values travel
//     beside the SQL text and are bound by the engine after parsing);
//   - sessions locked read-only (SET readonly = 1, after the limits), so
//     that neither the pages nor the SQL page can write, change a limit or
//     read local files through table functions, whatever the SQL says.
//
// Open it after the store started and close it before the store stops.
type Embedded struct {
	pages *chdb.Conn // the pages' queries: readonly, QueryTimeout
	sql   *chdb.Conn // the SQL page: readonly, row/time/bytes limits
}

// OpenEmbedded opens the console's sessions on dataDir, the directory of
// the running embedded store, with cfg's limits.
func OpenEmbedded(dataDir string, cfg Config) (*Embedded, error) {
	secs := func(d time.Duration) string { return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10) }
	e := &Embedded{}
	for _, s := range []struct {
		conn  **chdb.Conn
		setup []string
	}{
		{&e.pages, []string{
			"SET max_execution_time = " + secs(cfg.QueryTimeout),
			"SET readonly = 1",
		}},
		{&e.sql, []string{
			"SET max_execution_time = " + secs(cfg.SQLTimeout),
			"SET max_result_rows = " + strconv.Itoa(cfg.SQLMaxRows),
			"SET max_result_bytes = " + strconv.FormatInt(cfg.SQLMaxBytes, 10),
			"SET result_overflow_mode = 'break'",
			"SET readonly = 1", // last: from here on no setting can change
		}},
	} {
		c, err := chdb.Open(dataDir)
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("console: engine session on %s: %w", dataDir, err)
		}
		*s.conn = c
		for _, q := range s.setup {
			if _, err := c.Query([]byte(q), ""); err != nil {
				e.Close()
				return nil, fmt.Errorf("console session %q: %w", q, err)
			}
		}
	}
	return e, nil
}

// Query runs a read-only query (httpd.Querier) on the pages' session.
func (e *Embedded) Query(_ context.Context, query, format string) ([]byte, error) {
	return e.pages.Query([]byte(query), format)
}

// QueryParams runs query binding its {name:Type} placeholders to params.
func (e *Embedded) QueryParams(_ context.Context, query, format string, params map[string]string) ([]byte, error) {
	return e.pages.QueryParams(query, format, params)
}

// QuerySQL runs a user's query on the SQL page's session: read-only, with
// the row, byte and time limits of the Config given to OpenEmbedded.
func (e *Embedded) QuerySQL(_ context.Context, query, format string) ([]byte, error) {
	return e.sql.Query([]byte(query), format)
}

// Close ends the console's sessions (before the store stops).
func (e *Embedded) Close() {
	for _, c := range []*chdb.Conn{e.pages, e.sql} {
		if c != nil {
			c.Close()
		}
	}
}
