package console

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Server answers the console from a ClickHouse server over its HTTP
// interface (port 8123), for the scale-out `flowlens console` role.
// Parameters go as param_<name> URL parameters and the limits as settings
// of the request, readonly=1 among them, so that a query's own SETTINGS
// clause cannot lift them. Give it a ClickHouse user whose profile is
// read-only too (readonly = 1 in users.xml): the server's word is the last.
type Server struct {
	URL      string // http://host:8123
	Database string
	User     string
	Password string
	Client   *http.Client
	Cfg      Config
}

// Query runs a read-only query (httpd.Querier).
func (s *Server) Query(ctx context.Context, query, format string) ([]byte, error) {
	return s.QueryParams(ctx, query, format, nil)
}

// QueryParams runs query with its parameters bound by the server.
func (s *Server) QueryParams(ctx context.Context, query, format string, params map[string]string) ([]byte, error) {
	set := url.Values{}
	set.Set("max_execution_time", strconv.FormatInt(int64(s.Cfg.QueryTimeout/time.Second), 10))
	set.Set("readonly", "1")
	return s.do(ctx, query, format, params, set)
}

// QuerySQL runs a user's query under the SQL page's limits.
func (s *Server) QuerySQL(ctx context.Context, query, format string) ([]byte, error) {
	set := url.Values{}
	set.Set("max_execution_time", strconv.FormatInt(int64(s.Cfg.SQLTimeout/time.Second), 10))
	set.Set("max_result_rows", strconv.Itoa(s.Cfg.SQLMaxRows))
	set.Set("max_result_bytes", strconv.FormatInt(s.Cfg.SQLMaxBytes, 10))
	set.Set("result_overflow_mode", "break")
	set.Set("readonly", "1")
	return s.do(ctx, query, format, nil, set)
}

func (s *Server) do(ctx context.Context, query, format string, params map[string]string, set url.Values) ([]byte, error) {
	u, err := url.Parse(s.URL)
	if err != nil {
		return nil, fmt.Errorf("clickhouse url: %w", err)
	}
	v := url.Values{}
	for k, vs := range set {
		if k != "readonly" {
			v[k] = vs
		}
	}
	if s.Database != "" {
		v.Set("database", s.Database)
	}
	if format != "" {
		v.Set("default_format", format)
	}
	for k, p := range params {
		v.Set("param_"+k, p)
	}
	// readonly goes last: the server applies URL settings in order, and
	// after readonly=1 it refuses to change any other (Encode sorts, which
	// would put result_overflow_mode after it).
	u.RawQuery = v.Encode()
	if ro := set.Get("readonly"); ro != "" {
		u.RawQuery += "&readonly=" + url.QueryEscape(ro)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(query))
	if err != nil {
		return nil, err
	}
	if s.User != "" {
		req.SetBasicAuth(s.User, s.Password)
	}
	c := s.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.Cfg.SQLMaxBytes+1<<20))
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("clickhouse: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}
